//! Every Rust snippet of README.md compiles as written, in the place its text puts it: each one
//! appears, line for line, in the code below (or in `examples/getting_started.rs`), which the
//! suite compiles. A snippet changed in the README and not here, or written so that it would
//! not compile where the text says, fails `every_readme_snippet_is_compiled_code`.

/// The lines of `text` that hold code, trimmed: indentation and blank lines aside.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_readme_snippet_is_compiled_code() {
    let readme = include_str!("../README.md");
    // Only the code of the module below (not this test, which names none), and the example.
    let this = include_str!("readme.rs");
    let snippets_module = &this[this.find("\nmod snippets {").expect("the module")..];
    let compiled = [
        snippets_module,
        include_str!("../examples/getting_started.rs"),
    ];
    let mut snippets = 0;
    for (i, block) in readme.split("```rust\n").skip(1).enumerate() {
        let snippet = block.split("\n```").next().unwrap();
        let lines = code_lines(snippet);
        snippets += 1;
        let found = compiled.iter().any(|code| {
            let code = code_lines(code);
            code.windows(lines.len()).any(|w| w == lines.as_slice())
        });
        assert!(
            found,
            "README snippet {} is not compiled anywhere:\n{snippet}",
            i + 1
        );
    }
    assert!(snippets >= 15, "only {snippets} snippets found");
}

/// The snippets in their places, as the README writes them (rustfmt would rewrap them).
#[rustfmt::skip]
#[allow(dead_code, unused_variables, clippy::all)]
mod snippets {
    use std::error::Error;

    use actix_web::{get, web, App, HttpRequest, HttpResponse, HttpServer, Responder};
    use ratelimit_runtime::{
        quota, ratelimit, DefaultLimits, HeaderStyle, Leases, Quota, RateLimitInfo, RateLimiter,
        Tier,
    };
    use serde_json::json;

    // Counting only what matters: `deduct_when`.

    mod deduct_when {
        use super::*;
        use actix_web::http::StatusCode;
        use actix_web::post;

        #[derive(serde::Deserialize)]
        struct Credentials {
            password: String,
        }

        fn failed_login(res: &HttpResponse) -> bool {
            res.status() == StatusCode::UNAUTHORIZED
        }

        #[post("/login")]
        #[ratelimit(limit = 5, per = 60, deduct_when = failed_login, penalty = "3/10 minutes")]
        async fn login(body: web::Json<Credentials>) -> HttpResponse {
            if body.password == "letmein" {
                HttpResponse::Ok().json(json!({"login": "ok"}))
            } else {
                HttpResponse::Unauthorized().json(json!({"error": "invalid_credentials"}))
            }
        }
    }

    // Costs known per request.

    mod settle {
        use super::*;
        use std::collections::HashMap;

        fn max_tokens(req: &HttpRequest) -> u32 {
            web::Query::<HashMap<String, u32>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("max_tokens").copied())
                .unwrap_or(100)
        }

        #[get("/llm")]
        #[ratelimit(limit = 1000, per = 60, scope = "header:X-API-Key", cost = max_tokens)]
        async fn llm(info: RateLimitInfo) -> HttpResponse {
            let used = 100; // what the model produced
            info.settle(used);
            HttpResponse::Ok().json(json!({ "tokens": used }))
        }
    }

    // Adaptive concurrency.

    mod adaptive {
        use super::*;
        use ratelimit_runtime::Priority;

        fn priority_of(req: &HttpRequest) -> Priority {
            match req.headers().get("x-priority").map(|v| v.as_bytes()) {
                Some(b"critical") => Priority::Critical,   // checkout, login: shed last
                Some(b"sheddable") => Priority::Sheddable, // prefetches, analytics: shed first
                _ => Priority::Normal,
            }
        }

        #[get("/busy")]
        #[ratelimit(concurrency = "adaptive", priority = priority_of)]
        async fn busy() -> HttpResponse {
            HttpResponse::Ok().finish()
        }
    }

    // Tiers that look things up.

    mod lookups {
        use super::*;

        async fn plans_db(api_key: &str) -> Result<&'static str, String> {
            Ok(if api_key.starts_with("pro_") { "pro" } else { "free" })
        }

        async fn plan_of(api_key: String) -> Result<Tier, String> {
            match plans_db(&api_key).await? {                   // your own lookup
                "pro" => Ok(Tier::new("pro", quota!("1000/hour"))),
                _ => Ok(Tier::new("free", quota!("100/hour"))),
            }
        }

        #[get("/reports")]
        #[ratelimit(limit = plan_of, scope = "header:X-API-Key")]
        async fn reports() -> HttpResponse {
            HttpResponse::Ok().finish()
        }
    }

    // Arguments: `methods`.

    mod methods {
        use super::*;
        use actix_web::http::Method;
        use actix_web::route;

        #[route("/items", method = "GET", method = "POST")]
        #[ratelimit(limit = 3, per = 60, scope = "header:X-API-Key", methods = ["POST"])]
        async fn items(req: HttpRequest) -> HttpResponse {
            match *req.method() {
                Method::POST => HttpResponse::Created().finish(), // creates
                _ => HttpResponse::Ok().finish(),                 // lists
            }
        }
    }

    // The opening example, and the Flask comparison.

    mod opening {
        use super::*;

        #[get("/rate-limited")]
        #[ratelimit(limit = 300, per = 30, scope = "ip")]
        async fn index() -> impl Responder {
            web::Json(json!({"response": "This is a rate limited response"}))
        }
    }

    mod flask {
        use super::*;

        #[get("/rate-limited")]
        #[ratelimit(limit = 300, per = 30)]
        async fn index() -> impl Responder {
            web::Json(json!({"response": "This is a rate limited response"}))
        }
    }

    // Metrics: the endpoint in an app.

    fn metrics(limiter: RateLimiter) {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(limiter.clone())
                .service(ratelimit_runtime::metrics_endpoint("/metrics"))   // or limiter.metrics() as text
        });
    }

    // Soft limits.

    async fn cheap_search() -> &'static str {
        "cheap"
    }

    async fn full_search() -> &'static str {
        "full"
    }

    #[get("/search")]
    #[ratelimit(limit = 100, per = 60, soft = 80)]
    async fn search(info: RateLimitInfo) -> impl Responder {
        if info.degraded() { cheap_search().await } else { full_search().await }
    }

    // Overrides, peek and reset: an operator's code, beside the app.

    fn overrides(limiter: &RateLimiter) -> Result<(), Box<dyn Error>> {
        limiter.set_override("server::data", "20/minute")?;   // or "20/minute;2/second"
        limiter.clear_override("server::data");
        limiter.rules();                                        // every rule's name
        Ok(())
    }

    async fn peek_and_reset(limiter: &RateLimiter) -> Result<(), Box<dyn Error>> {
        let info = limiter.peek("server::data", "key1").await?;    // spends nothing
        println!("{} left, next request allowed: {}", info.remaining(), info.is_allowed());
        limiter.reset("server::data", "key1").await?;               // unblock a customer
        Ok(())
    }

    // Concurrency limits and waiting.

    #[get("/report")]
    #[ratelimit(concurrency = 5, scope = "header:X-API-Key")]   // at most 5 in flight per key
    #[ratelimit("100/hour", scope = "header:X-API-Key")]        // and a rate, all or nothing
    async fn report() -> impl Responder {
        "the report"
    }

    #[get("/queued")]
    #[ratelimit(limit = 5, per = 1, algorithm = "gcra", max_wait = "2s")]
    async fn queued() -> &'static str {
        "served in turn"
    }

    // Limits outside handlers.

    async fn outside_handlers(limiter: &RateLimiter) -> Result<(), Box<dyn Error>> {
        let calls = Quota::from_parts(10, 1).unwrap();            // a partner API allows 10 per second
        if limiter.check_key(&calls, "partner-api", 1).await.is_allowed() { /* call it */ }
        limiter.until_ready(&calls, "partner-api", 1).await?;     // or wait for the next turn
        Ok(())
    }

    // Configuration: a limiter built once, outside the factory, and default limits the same way.

    #[get("/")]
    async fn index() -> &'static str {
        "index"
    }

    fn is_health_check(req: &HttpRequest) -> bool {
        matches!(req.path(), "/healthz" | "/readyz")
    }

    async fn configured() -> Result<(), Box<dyn Error>> {
        let limiter = RateLimiter::builder()
            .trusted_proxies(["10.0.0.0/8"])   // see below
            .max_keys(500_000)                 // hard cap on tracked keys (default 1,000,000)
            .key_prefix("shop")                // apps sharing a store keep apart
            .header_style(HeaderStyle::XRateLimit)
            .build()?;
        HttpServer::new(move || App::new().app_data(limiter.clone()).service(index))
            .bind(("127.0.0.1", 8080))?
            .run()
            .await?;
        Ok(())
    }

    async fn with_defaults() -> Result<(), Box<dyn Error>> {
        // Made once, outside the factory (whose closure cannot use `?`), and cloned into each worker.
        let defaults = DefaultLimits::new("200/day;50/hour")?.exempt(is_health_check);
        HttpServer::new(move || App::new().wrap(defaults.clone()).service(index))
            .bind(("127.0.0.1", 8080))?
            .run()
            .await?;
        Ok(())
    }

    // Keys checked before they get a budget.

    fn is_issued(key: &str) -> bool {
        key == "ent_demo"
    }

    fn tier_quota(req: &HttpRequest) -> Tier {
        Tier::new("free", quota!("100/hour"))
    }

    fn issued_key(req: &HttpRequest) -> Option<String> {
        let key = req.headers().get("x-api-key")?.to_str().ok()?;
        is_issued(key).then(|| key.to_owned())   // your own lookup
    }

    #[get("/tiered")]
    #[ratelimit(limit = tier_quota, key = issued_key)]
    async fn tiered() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    // Leases.

    fn leases() -> Result<(), Box<dyn Error>> {
        let limiter = RateLimiter::builder()
            .redis("redis://10.0.0.5:6379")
            .redis_leases(Leases::new())          // lifetime 100 ms; `.lifetime(..)` to change it
            .build()?;
        Ok(())
    }

    // The client crate.

    async fn with_reqwest() -> Result<(), Box<dyn Error>> {
        use ratelimit_client::reqwest::RateLimitMiddleware;

        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(RateLimitMiddleware::new())
            .build();
        let response = client.get("http://127.0.0.1:8080/data").header("X-API-Key", "key1").send().await?;
        Ok(())
    }

    async fn with_awc() -> Result<(), Box<dyn Error>> {
        use ratelimit_client::awc::PacedClient;

        let client = PacedClient::new(awc::Client::default());
        let request = client.client().get("http://127.0.0.1:8080/data").insert_header(("X-API-Key", "key1"));
        let response = client.send(request).await?;
        Ok(())
    }
}
