//! Async lookups in each form the attribute takes: tiers and quotas, plain, `Option` and
//! `Result`; keys with and without a `scope`, plain, `Option` and `Result`.
use ratelimit_runtime::{quota, ratelimit, Quota, Tier};

async fn tier(_: String) -> Tier {
    Tier::new("free", quota!("10/minute"))
}
async fn maybe_quota(_: String) -> Option<Quota> {
    Some(quota!("10/minute"))
}
async fn fallible_tier(_: String) -> Result<Tier, std::io::Error> {
    Ok(Tier::new("pro", quota!("100/minute")))
}
async fn account(key: String) -> String {
    key
}
async fn maybe_account(key: String) -> Option<String> {
    Some(key)
}
async fn fallible_account(key: String) -> Result<Option<String>, String> {
    Ok(Some(key))
}

#[ratelimit(limit = tier, scope = "header:X-API-Key")]
async fn a() -> &'static str {
    "a"
}

#[ratelimit(limit = maybe_quota)]
async fn b() -> &'static str {
    "b"
}

#[ratelimit(limit = fallible_tier, scope = "header:X-API-Key", key = account)]
async fn c() -> &'static str {
    "c"
}

#[ratelimit(limit = 5, per = 60, key = maybe_account)]
async fn d() -> &'static str {
    "d"
}

#[ratelimit(limit = 5, per = 60, scope = "ip", key = fallible_account)]
async fn e() -> &'static str {
    "e"
}

fn main() {}
