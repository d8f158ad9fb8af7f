use ratelimit_runtime::RateLimiter;

fn main() {
    let limiter = RateLimiter::builder().metrics(false).build().unwrap();
    let _ = limiter.metrics();
    let _ = ratelimit_runtime::metrics_endpoint("/metrics");
}
