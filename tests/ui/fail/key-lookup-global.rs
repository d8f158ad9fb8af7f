//! A `key` lookup is asked the key its scope gives: `"global"` gives none, so the pair is refused.
use ratelimit_runtime::ratelimit;

async fn account_of(api_key: String) -> Option<String> {
    Some(api_key)
}

#[ratelimit(limit = 3, per = 30, scope = "global", key = account_of)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
