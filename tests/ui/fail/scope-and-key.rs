//! A key function of the request replaces `scope`: giving both is refused (only an async
//! lookup, asked the scope's key, takes a `scope`).
use actix_web::HttpRequest;
use ratelimit_runtime::ratelimit;

fn tenant(_: &HttpRequest) -> String {
    "t".into()
}

#[ratelimit(limit = 3, per = 30, scope = "ip", key = tenant)]
async fn handler() -> &'static str {
    "never"
}

fn main() {}
