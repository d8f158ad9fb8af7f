//! `quota!` gives a `Quota` in a `const`, for tier functions.
use actix_web::{get, HttpRequest, HttpResponse};
use ratelimit_runtime::{quota, ratelimit, Quota, Tier};

const PRO: Quota = quota!("1000/hour");

fn tier(req: &HttpRequest) -> Tier {
    if req.headers().contains_key("x-pro") {
        Tier::new("pro", PRO)
    } else {
        Tier::new("free", quota!("6 per 10 seconds"))
    }
}

#[get("/tiered")]
#[ratelimit(limit = tier)]
async fn tiered() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() {
    assert_eq!((PRO.limit(), PRO.period_secs()), (1_000, 3_600));
    let _ = tiered;
}
