use ratelimit_runtime::RateLimiter;

fn main() {
    let limiter = RateLimiter::builder()
        .redis("redis://127.0.0.1:6379")
        .build()
        .unwrap();
    let _ = limiter.redis_stats();
    let _ = ratelimit_runtime::store::RedisStore::connect;
}
