//! A `reqwest-middleware` middleware that paces requests and retries refused ones.
//!
//! ```no_run
//! # async fn example() -> Result<(), reqwest_middleware::Error> {
//! use ratelimit_client::reqwest::RateLimitMiddleware;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RateLimitMiddleware::new())
//!     .build();
//! let response = client
//!     .get("http://127.0.0.1:8080/data")
//!     .header("X-API-Key", "key1")
//!     .send()
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::time::{Instant, SystemTime};

use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next, Result};

use crate::policy::Decision;
use crate::{may_retry, Exchange, Origin, Pacer, RateLimitStatus, RetryPolicy, Step};

/// Paces requests by what the servers said and retries refused ones (see the crate docs).
///
/// Clones of a client built with it share one [`Pacer`], so concurrent tasks share what each
/// response taught. A request that may not be sent twice (a method that is not idempotent
/// without an `Idempotency-Key`, or a streamed body) is never retried. A request whose wait
/// would overrun the [`RetryPolicy::wait_budget`] fails with a middleware error wrapping
/// [`WaitBudgetExceeded`](crate::WaitBudgetExceeded).
#[derive(Debug, Clone, Default)]
pub struct RateLimitMiddleware {
    pacer: Pacer,
    policy: RetryPolicy,
}

impl RateLimitMiddleware {
    /// A middleware with [`RetryPolicy::default`] and a pacer of its own.
    pub fn new() -> RateLimitMiddleware {
        RateLimitMiddleware::default()
    }

    /// The same middleware with another retry policy.
    pub fn with_policy(self, policy: RetryPolicy) -> RateLimitMiddleware {
        RateLimitMiddleware { policy, ..self }
    }

    /// The same middleware with another pacer, to share one between clients.
    pub fn with_pacer(self, pacer: Pacer) -> RateLimitMiddleware {
        RateLimitMiddleware { pacer, ..self }
    }

    /// The pacer: its [`Pacer::stats`] count what the requests did.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }
}

fn origin_of(request: &Request) -> Origin {
    let url = request.url();
    Origin::new(url.scheme(), url.host_str().unwrap_or(""), url.port())
}

fn repeatable(request: &Request) -> bool {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    // A streamed body cannot be sent twice; try_clone says so.
    may_retry(request.method().as_str(), headers) && request.try_clone().is_some()
}

fn status_of(response: &Response) -> RateLimitStatus {
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    RateLimitStatus::from_headers(headers, SystemTime::now())
}

#[async_trait::async_trait]
impl Middleware for RateLimitMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        let repeatable = repeatable(&request);
        let mut exchange = Exchange::new(&self.pacer, self.policy, origin_of(&request), repeatable);
        loop {
            // `repeatable` checked that the request can be copied; without a copy it goes once.
            let attempt = match request.try_clone() {
                Some(copy) if repeatable => copy,
                _ => return send_once(&mut exchange, request, extensions, next).await,
            };
            let (response, decision) =
                attempt_once(&mut exchange, attempt, extensions, &next).await?;
            if let Decision::Deliver(_) = decision {
                return Ok(response);
            }
        }
    }
}

/// Waits for the pacer's go, sends, and records the answer.
async fn attempt_once(
    exchange: &mut Exchange,
    request: Request,
    extensions: &mut Extensions,
    next: &Next<'_>,
) -> Result<(Response, Decision)> {
    let permit = loop {
        match exchange
            .next_step(Instant::now())
            .map_err(Error::middleware)?
        {
            Step::Send(permit) => break permit,
            Step::Wait(time) => tokio::time::sleep(time).await,
        }
    };
    let response = next.clone().run(request, extensions).await?;
    let code = response.status().as_u16();
    let decision = exchange.on_response(permit, Instant::now(), code, &status_of(&response));
    Ok((response, decision))
}

/// A request that may not be sent twice: paced like any other, never retried.
async fn send_once(
    exchange: &mut Exchange,
    request: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> Result<Response> {
    let (response, _) = attempt_once(exchange, request, extensions, &next).await?;
    Ok(response)
}
