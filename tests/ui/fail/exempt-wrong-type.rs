//! An `exempt` function of the wrong type is reported at the path given.
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn not_a_predicate(_: &HttpRequest) -> String {
    String::new()
}

#[ratelimit(limit = 3, per = 30, exempt = not_a_predicate)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
