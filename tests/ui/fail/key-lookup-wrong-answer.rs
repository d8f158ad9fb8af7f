//! An async `key` lookup that answers something other than a key is refused at the path.
use ratelimit_runtime::ratelimit;

async fn account_of(_api_key: String) -> u64 {
    7
}

#[ratelimit(limit = 3, per = 30, scope = "header:X-API-Key", key = account_of)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
