//! An async `limit` lookup that answers something other than a tier is refused at the path.
use ratelimit_runtime::ratelimit;

async fn plan_of(_api_key: String) -> u32 {
    10
}

#[ratelimit(limit = plan_of, scope = "header:X-API-Key")]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
