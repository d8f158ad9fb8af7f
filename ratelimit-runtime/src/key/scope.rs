use std::borrow::Cow;
use std::net::IpAddr;

use actix_web::HttpRequest;

use super::ClientIp;

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
        let anonymous = || match client_ip.of(req) {
            Some(ip) => Identity::Anonymous(ip),
            None => Identity::Unknown,
        };
        match self {
            Scope::Global => Identity::Global,
            Scope::Ip => client_ip.of(req).map_or(Identity::Unknown, Identity::Ip),
            Scope::Header(name) => match req.headers().get(name.as_ref()) {
                Some(value) if !value.as_bytes().trim_ascii().is_empty() => {
                    Identity::Header(value.as_bytes())
                }
                _ => anonymous(),
            },
            Scope::Custom(key) => match key(req) {
                Some(key) if !key.is_empty() => Identity::Custom(key),
                _ => anonymous(),
            },
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
