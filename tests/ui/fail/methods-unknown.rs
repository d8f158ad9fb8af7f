//! A method name that is not an HTTP method is refused, naming the methods.
use ratelimit_runtime::ratelimit;

#[ratelimit(limit = 3, per = 60, methods = ["POST", "PSOT"])]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
