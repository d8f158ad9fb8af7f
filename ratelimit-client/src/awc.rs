//! A wrapper around `awc::Client` that paces requests and retries refused ones.
//!
//! ```no_run
//! # async fn example() -> Result<(), ratelimit_client::awc::SendError> {
//! use ratelimit_client::awc::PacedClient;
//!
//! let client = PacedClient::new(awc::Client::default());
//! let request = client.client().get("http://127.0.0.1:8080/data").insert_header(("X-API-Key", "key1"));
//! let response = client.send(request).await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::time::{Instant, SystemTime};

use awc::error::{FreezeRequestError, SendRequestError};
use awc::{ClientRequest, ClientResponse, FrozenClientRequest, SendClientRequest};
use bytes::Bytes;

use crate::policy::Decision;
use crate::{
    may_retry, Exchange, Origin, Pacer, RateLimitStatus, RetryPolicy, Step, WaitBudgetExceeded,
};

/// An `awc::Client` whose requests are paced by what the server said and retried when refused
/// (see the crate docs). Clones share one [`Pacer`], so concurrent tasks share what each
/// response taught.
#[derive(Clone, Default)]
pub struct PacedClient {
    client: awc::Client,
    pacer: Pacer,
    policy: RetryPolicy,
}

/// Why a paced request failed.
#[derive(Debug)]
pub enum SendError {
    /// The request could not be prepared (an invalid URL or header).
    Request(FreezeRequestError),
    /// No response: connection refused, timeout, ...
    Send(SendRequestError),
    /// The wait before sending would overrun the wait budget.
    WaitBudget(WaitBudgetExceeded),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Request(err) => write!(f, "invalid request: {err}"),
            SendError::Send(err) => err.fmt(f),
            SendError::WaitBudget(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for SendError {}

impl PacedClient {
    /// Wraps `client` with [`RetryPolicy::default`] and a pacer of its own.
    pub fn new(client: awc::Client) -> PacedClient {
        PacedClient {
            client,
            pacer: Pacer::new(),
            policy: RetryPolicy::default(),
        }
    }

    /// The same client with another retry policy.
    pub fn with_policy(self, policy: RetryPolicy) -> PacedClient {
        PacedClient { policy, ..self }
    }

    /// The same client with another pacer, to share one between clients.
    pub fn with_pacer(self, pacer: Pacer) -> PacedClient {
        PacedClient { pacer, ..self }
    }

    /// The wrapped client, to build requests with.
    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// The pacer: its [`Pacer::stats`] count what the requests did.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Sends `request` without a body, paced, retried when refused and repeatable.
    pub async fn send<S>(&self, request: ClientRequest) -> Result<ClientResponse<S>, SendError>
    where
        SendClientRequest: Future<Output = Result<ClientResponse<S>, SendRequestError>>,
    {
        let frozen = request.freeze().map_err(SendError::Request)?;
        self.run(&frozen, || frozen.send()).await
    }

    /// Sends `request` with `body`, paced, retried when refused and repeatable (the body is
    /// sent again as it is).
    pub async fn send_body<S>(
        &self,
        request: ClientRequest,
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse<S>, SendError>
    where
        SendClientRequest: Future<Output = Result<ClientResponse<S>, SendRequestError>>,
    {
        let body = body.into();
        let frozen = request.freeze().map_err(SendError::Request)?;
        self.run(&frozen, || frozen.send_body(body.clone())).await
    }

    async fn run<S>(
        &self,
        request: &FrozenClientRequest,
        send: impl Fn() -> SendClientRequest,
    ) -> Result<ClientResponse<S>, SendError>
    where
        SendClientRequest: Future<Output = Result<ClientResponse<S>, SendRequestError>>,
    {
        let mut exchange = Exchange::new(
            &self.pacer,
            self.policy,
            origin_of(request),
            repeatable(request),
        );
        loop {
            let permit = loop {
                match exchange.next_step(Instant::now()) {
                    Ok(Step::Send(permit)) => break permit,
                    Ok(Step::Wait(time)) => tokio::time::sleep(time).await,
                    Err(err) => return Err(SendError::WaitBudget(err)),
                }
            };
            let response = send().await.map_err(SendError::Send)?;
            let status = status_of(&response);
            let code = response.status().as_u16();
            if let Decision::Deliver(_) =
                exchange.on_response(permit, Instant::now(), code, &status)
            {
                return Ok(response);
            }
        }
    }
}

fn origin_of(request: &FrozenClientRequest) -> Origin {
    let uri = request.get_uri();
    Origin::new(
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or(""),
        uri.port_u16(),
    )
}

fn repeatable(request: &FrozenClientRequest) -> bool {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    may_retry(request.get_method().as_str(), headers)
}

fn status_of<S>(response: &ClientResponse<S>) -> RateLimitStatus {
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()));
    RateLimitStatus::from_headers(headers, SystemTime::now())
}
