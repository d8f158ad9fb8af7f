use std::borrow::Cow;
use std::net::IpAddr;

use actix_web::HttpRequest;

use super::ClientIp;
use crate::lookup::{Choice, Chooser};

/// What a limit is counted per.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Per client address (the default): the TCP peer, or the client named by trusted proxies.
    Ip,
    /// One budget for everyone.
    Global,
    /// Per value of a request header, such as an API key. A request without the header (or
    /// with an empty value) is counted per client address instead, in a budget of its own: it
    /// never escapes the limit. Write the name in lowercase: it is part of the key.
    Header(Cow<'static, str>),
    /// Per value of a function of the request; `None` is counted per client address, as a
    /// missing header is. The rule's name tells custom keys apart: two rules with the same name,
    /// quota and algorithm but different key functions would share budgets (the attribute names
    /// each after its function).
    Custom(fn(&HttpRequest) -> Option<String>),
    /// A key function as the attribute wraps it: of the request, as [`Custom`](Self::Custom),
    /// or an async lookup (see [`lookup`](crate::lookup)) of the key `of` gives, whose answers
    /// the limiter caches: `None` (or a key without a value under `of`) counts the request per
    /// client address.
    Chosen {
        /// The key function.
        key: Chooser<Option<String>>,
        /// Where the key a lookup is asked comes from (`Scope::Ip` unless the attribute names
        /// a `scope`).
        of: &'static Scope,
    },
}

/// The client a request is counted against, borrowed from the request where possible.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity<'r> {
    /// Everyone.
    Global,
    /// A client address (IPv6 already grouped by prefix).
    Ip(IpAddr),
    /// The bytes of a header value.
    Header(&'r [u8]),
    /// A custom key.
    Custom(String),
    /// A request without its scoped header or custom key, counted per address.
    Anonymous(IpAddr),
    /// A request whose client address is unknown (no peer address, e.g. a Unix socket): all such
    /// requests share one budget.
    Unknown,
}

impl Scope {
    /// The identity of `req` under this scope.
    pub fn identify<'r>(&self, req: &'r HttpRequest, client_ip: &ClientIp) -> Identity<'r> {
        let anonymous = || Identity::anonymous(req, client_ip);
        match self {
            Scope::Global => Identity::Global,
            Scope::Ip => client_ip.of(req).map_or(Identity::Unknown, Identity::Ip),
            Scope::Header(name) => match req.headers().get(name.as_ref()) {
                Some(value) if !value.as_bytes().trim_ascii().is_empty() => {
                    Identity::Header(value.as_bytes())
                }
                _ => anonymous(),
            },
            Scope::Custom(key) => custom(key(req)).unwrap_or_else(anonymous),
            Scope::Chosen { key, of } => match key.looks_up {
                // The key to look up: the limiter asks the lookup, then counts its answer.
                true => of.identify(req, client_ip),
                false => match (key.choose)(req, None) {
                    Choice::Now(key) => custom(key).unwrap_or_else(anonymous),
                    Choice::Later(_) => anonymous(),
                },
            },
        }
    }

    /// The key lookup of this scope, if it is one, and where the key it is asked comes from.
    pub(crate) fn lookup(&self) -> Option<(Chooser<Option<String>>, &'static Scope)> {
        match self {
            Scope::Chosen { key, of } if key.looks_up => Some((*key, of)),
            _ => None,
        }
    }
}

/// A custom key's identity; `None` for no key (or an empty one).
pub(crate) fn custom(key: Option<String>) -> Option<Identity<'static>> {
    key.filter(|key| !key.is_empty()).map(Identity::Custom)
}

impl Identity<'_> {
    /// The client's key as an operator names it (`peek`, `reset`, per-client entries): an
    /// address, a header's value, a custom key; `None` for everyone, a request without its key,
    /// an unknown client, a header value that is not UTF-8.
    pub fn name(&self) -> Option<Cow<'_, str>> {
        match self {
            Identity::Ip(ip) => Some(Cow::Owned(ip.to_string())),
            Identity::Header(bytes) => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Identity::Custom(key) => Some(Cow::Borrowed(key)),
            Identity::Global | Identity::Anonymous(_) | Identity::Unknown => None,
        }
    }

    /// A request without its key, counted per address (or, with no address, with every such
    /// request).
    pub(crate) fn anonymous(req: &HttpRequest, client_ip: &ClientIp) -> Identity<'static> {
        match client_ip.of(req) {
            Some(ip) => Identity::Anonymous(ip),
            None => Identity::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn peer(ip: &str) -> TestRequest {
        TestRequest::default().peer_addr(format!("{ip}:4000").parse().unwrap())
    }

    fn api_key(req: &HttpRequest) -> Option<String> {
        req.query_string().strip_prefix("key=").map(str::to_owned)
    }

    #[test]
    fn header_scope_falls_back_to_the_address() {
        let scope = Scope::Header("X-API-Key".into());
        let ips = ClientIp::default();
        let with = peer("10.0.0.1")
            .insert_header(("x-api-key", "k1"))
            .to_http_request();
        assert_eq!(scope.identify(&with, &ips), Identity::Header(b"k1"));
        let without = peer("10.0.0.1").to_http_request();
        let anon = Identity::Anonymous("10.0.0.1".parse().unwrap());
        assert_eq!(scope.identify(&without, &ips), anon);
        let blank = peer("10.0.0.1")
            .insert_header(("x-api-key", "  "))
            .to_http_request();
        assert_eq!(scope.identify(&blank, &ips), anon);
    }

    #[test]
    fn non_utf8_header_values_are_keys_too() {
        let scope = Scope::Header("x-api-key".into());
        let value = actix_web::http::header::HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        let req = peer("10.0.0.1")
            .insert_header(("x-api-key", value))
            .to_http_request();
        assert_eq!(
            scope.identify(&req, &ClientIp::default()),
            Identity::Header(b"\xff\xfe")
        );
    }

    #[test]
    fn custom_keys_and_missing_peers() {
        let scope = Scope::Custom(api_key);
        let ips = ClientIp::default();
        let req = peer("10.0.0.2").uri("/?key=abc").to_http_request();
        assert_eq!(scope.identify(&req, &ips), Identity::Custom("abc".into()));
        let none = TestRequest::default().to_http_request();
        assert_eq!(scope.identify(&none, &ips), Identity::Unknown);
        assert_eq!(Scope::Ip.identify(&none, &ips), Identity::Unknown);
        assert_eq!(Scope::Global.identify(&none, &ips), Identity::Global);
    }
}
