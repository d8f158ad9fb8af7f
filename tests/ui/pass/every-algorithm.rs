//! Every algorithm by name, with `burst` where the algorithm has a capacity.
use actix_web::{get, App};
use ratelimit_runtime::ratelimit;

#[get("/")]
#[ratelimit(limit = 10, per = 1, algorithm = "fixed_window")]
#[ratelimit(limit = 20, per = 2, algorithm = "sliding_window")]
#[ratelimit(limit = 30, per = 3, algorithm = "sliding_log")]
#[ratelimit(limit = 40, per = 4, algorithm = "token_bucket", burst = 80)]
#[ratelimit(limit = 50, per = 5, algorithm = "leaky_bucket", burst = 5)]
#[ratelimit(limit = 60, per = 6, algorithm = "gcra", burst = 6, cost = 6)]
async fn all() -> &'static str {
    "ok"
}

fn main() {
    let _ = App::new().service(all);
}
