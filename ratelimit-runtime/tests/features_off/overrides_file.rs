use ratelimit_runtime::RateLimiter;

fn main() {
    let limiter = RateLimiter::builder()
        .overrides_file("overrides.toml")
        .build()
        .unwrap();
    let _ = limiter.reload_overrides();
}
