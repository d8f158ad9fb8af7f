//! The front page (README.md) and the manual (docs/*.md) say things the code must bear out:
//!
//! - every Rust snippet of either compiles as written, in the place its text puts it: each one
//!   appears, line for line, in the module `snippets` below (or in
//!   `examples/getting_started.rs`), which the suite compiles. A snippet changed in the docs and
//!   not here, or written so that it would not compile where the text says, fails
//!   `every_snippet_is_compiled_code`;
//! - the front page's two commands are the ones CI runs (`.ci/run`), byte for byte;
//! - the front page lists every endpoint of the example server, and docs/guide.md's
//!   *Configuration* every environment variable the builder reads;
//! - every relative link between the pages lands on a file and, with a `#fragment`, on one of
//!   its headings (docs/guide.md's *Layout*, the runtime's modules, is checked against the code
//!   by `tests/layout.rs`).

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A file of the repository, as text.
fn read(path: &str) -> String {
    let full = Path::new(ROOT).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The pages of the documentation: the front page, then docs/*.md in name order, each with
/// its path from the repository's root.
fn pages() -> Vec<(String, String)> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("the docs/ directory")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut pages = vec![("README.md".to_string(), read("README.md"))];
    for path in docs {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        let text = read(&name);
        pages.push((name, text));
    }
    pages
}

/// The lines of `text` that hold code, trimmed: indentation and blank lines aside.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_snippet_is_compiled_code() {
    // Only the code of the module below (not this test, which names none), and the example.
    let this = include_str!("readme.rs");
    let snippets_module = &this[this.find("\nmod snippets {").expect("the module")..];
    let compiled = [
        snippets_module,
        include_str!("../examples/getting_started.rs"),
    ];
    let mut snippets = 0;
    for (page, text) in pages() {
        for (i, block) in text.split("```rust\n").skip(1).enumerate() {
            let snippet = block.split("\n```").next().unwrap();
            let lines = code_lines(snippet);
            snippets += 1;
            let found = compiled.iter().any(|code| {
                let code = code_lines(code);
                code.windows(lines.len()).any(|w| w == lines.as_slice())
            });
            assert!(
                found,
                "snippet {} of {page} is not compiled anywhere:\n{snippet}",
                i + 1
            );
        }
    }
    assert!(snippets >= 15, "only {snippets} snippets found");
}

/// The lines of a page outside its fenced code blocks.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            let fence = line.trim_start().starts_with("```");
            fenced ^= fence;
            !fence && !fenced
        })
        .collect()
}

/// A heading's level and title, for a line outside fenced blocks that is one.
fn heading(line: &str) -> Option<(usize, &str)> {
    let title = line.trim_start_matches('#');
    let level = line.len() - title.len();
    (level > 0 && title.starts_with(' ')).then(|| (level, title.trim()))
}

/// The text of a page's section: from its heading (`## Two commands`) to the next heading of
/// the same level or higher, code blocks included.
fn section(text: &str, of: &str) -> String {
    let (level, title) = heading(of).expect("a heading");
    let mut fenced = false;
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            if let Some((l, t)) = heading(line) {
                if inside && l <= level {
                    break;
                }
                inside |= l == level && t == title;
            }
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.is_empty(), "a section `{of}`");
    out
}

#[test]
fn the_two_commands_are_the_ones_ci_runs() {
    let readme = read("README.md");
    let two = section(&readme, "## Two commands");
    let block = two
        .split("```sh\n")
        .nth(1)
        .expect("a sh block")
        .split("\n```")
        .next()
        .unwrap();
    let lines: Vec<&str> = block.lines().collect();
    assert_eq!(
        lines,
        [
            "cargo run --example server     # the example server on http://127.0.0.1:8080",
            "./scripts/test.sh              # every test: fmt, clippy, unit, integration, ui, doc and Redis tests",
        ],
        "the front page's two commands"
    );
    assert!(read(".ci/run")
        .lines()
        .any(|l| l == "exec ./scripts/test.sh"));
    assert!(Path::new(ROOT).join("scripts/test.sh").exists());
    assert!(Path::new(ROOT).join("examples/server.rs").exists());
}

#[test]
fn the_front_page_lists_every_endpoint_of_the_example_server() {
    let readme = read("README.md");
    let two = section(&readme, "## Two commands");
    // The paths of the endpoint table's first column: `GET /slow?ms=N` lists `/slow`.
    let listed: Vec<&str> = two
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter_map(|cell| cell.split(' ').nth(1))
        .map(|path| path.split('?').next().unwrap())
        .collect();
    let server = read("examples/server.rs");
    let mut routes = vec!["/metrics".to_string()];
    for attr in ["#[get(\"", "#[post(\"", "#[route(\""] {
        for (at, _) in server.match_indices(attr) {
            let rest = &server[at + attr.len()..];
            routes.push(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    for route in &routes {
        // A path served for another one (`/demo/ratelimit.js` for `/demo`) is named in its row.
        let named = listed.contains(&route.as_str()) || two.contains(&format!("`{route}`"));
        assert!(named, "README.md's *Two commands* does not list `{route}`");
    }
    for variable in [
        "BIND",
        "REDIS_URL",
        "RATELIMIT_HEADERS",
        "RATELIMIT_OVERRIDES",
        "RATELIMIT_LEASES",
    ] {
        assert!(
            two.contains(variable),
            "README.md's *Two commands* does not name {variable}"
        );
    }
}

#[test]
fn the_guide_names_every_variable_the_builder_reads() {
    let environment = read("ratelimit-runtime/src/environment.rs");
    let guide = read("docs/guide.md");
    let configuration = section(&guide, "## Configuration");
    let mut variables: Vec<&str> = environment
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("REDIS_") || s.starts_with("RATELIMIT_"))
        .filter(|s| s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        .collect();
    variables.sort_unstable();
    variables.dedup();
    assert!(variables.len() >= 10, "only {variables:?} found");
    for variable in variables {
        assert!(
            configuration.contains(&format!("`{variable}")),
            "docs/guide.md's *Configuration* does not name {variable}"
        );
    }
}

/// A page without its fenced code blocks and inline code: the text whose links count.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for line in outside_fences(text) {
        // Inline code out: `a](b` in backticks is no link.
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// The anchors GitHub gives a page's headings: lowercase, punctuation (backticks too) dropped,
/// spaces as hyphens, `-1`, `-2` after a repeated one.
fn anchors(text: &str) -> Vec<String> {
    let mut anchors: Vec<String> = Vec::new();
    for (_, title) in outside_fences(text).into_iter().filter_map(heading) {
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let repeats = anchors.iter().filter(|a| **a == slug).count();
        if repeats > 0 {
            anchors.push(format!("{slug}-{repeats}"));
        }
        anchors.push(slug);
    }
    anchors
}

/// Pages other changes write, which a link may name before they land: checked once they exist.
const WRITTEN_ELSEWHERE: &[&str] = &["deploy/README.md"];

#[test]
fn every_link_between_the_pages_lands() {
    let mut links = 0;
    for (page, text) in pages() {
        let dir = Path::new(&page).parent().unwrap();
        let prose = prose(&text);
        for (at, _) in prose.match_indices("](") {
            let rest = &prose[at + 2..];
            let target = &rest[..rest.find(')').expect("a closing parenthesis")];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target, None),
            };
            // A path from the repository's root, `..` resolved.
            let mut path = PathBuf::new();
            let joined = if file.is_empty() {
                Path::new(&page).to_path_buf()
            } else {
                dir.join(file)
            };
            for part in joined.components() {
                match part {
                    std::path::Component::ParentDir => {
                        assert!(path.pop(), "{page}: `{target}` leaves the repository")
                    }
                    std::path::Component::CurDir => {}
                    part => path.push(part),
                }
            }
            let name = path.to_string_lossy().into_owned();
            if !Path::new(ROOT).join(&path).exists() {
                assert!(
                    WRITTEN_ELSEWHERE.contains(&name.as_str()),
                    "{page}: `{target}`: no file {name}"
                );
                continue;
            }
            if let Some(fragment) = fragment {
                assert!(
                    anchors(&read(&name)).iter().any(|a| a == fragment),
                    "{page}: `{target}`: {name} has no heading whose anchor is `#{fragment}`"
                );
            }
        }
    }
    assert!(links >= 40, "only {links} links found");
}

/// The snippets in their places, as the README and docs/ write them (rustfmt would rewrap them).
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

    // The front page: stacked limits.

    mod stacked {
        use super::*;

        #[get("/search")]
        #[ratelimit("100/hour;10/second", scope = "header:X-API-Key")]   // two rates, one attribute
        #[ratelimit(limit = 1000, per = 60, scope = "global")]           // and one budget for everyone
        async fn search() -> impl Responder {
            "results"
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
