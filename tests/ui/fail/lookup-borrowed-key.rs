//! An async `limit` lookup takes the client's key as a `String`: one that borrows it is
//! refused at the path, saying what a lookup takes.
use ratelimit_runtime::{quota, ratelimit, Tier};

async fn plan_of(_api_key: &str) -> Tier {
    Tier::new("free", quota!("10/minute"))
}

#[ratelimit(limit = plan_of, scope = "header:X-API-Key")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
