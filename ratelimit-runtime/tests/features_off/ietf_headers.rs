use ratelimit_runtime::{HeaderStyle, RateLimiter};

fn main() {
    let _ = RateLimiter::builder().header_style(HeaderStyle::Ietf).build();
}
