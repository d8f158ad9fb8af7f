use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use actix_web::http::header::{HeaderMap, HeaderName, FORWARDED};
use actix_web::HttpRequest;
use ipnet::IpNet;

/// Which forwarding header trusted proxies write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// A trusted-proxy entry that is neither an address nor a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidProxy(pub String);

impl fmt::Display for InvalidProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an IP address or network (write `10.0.0.1` or `10.0.0.0/8`)",
            self.0
        )
    }
}

impl std::error::Error for InvalidProxy {}

/// Finds the client address of a request, which clients cannot forge.
///
/// The client is the TCP peer, unless the peer is a configured trusted proxy: then it is the
/// rightmost address of the forwarding header that is not itself a trusted proxy. Addresses
/// left of it were written by the client and are ignored. IPv6 clients are grouped by prefix
/// (/64 by default, what one subscriber is usually given).
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ProxyHeader,
    ipv6_prefix: u8,
}

impl Default for ClientIp {
    fn default() -> ClientIp {
        ClientIp {
            trusted: Vec::new(),
            header: ProxyHeader::default(),
            ipv6_prefix: 64,
        }
    }
}

impl ClientIp {
    /// Trusts `proxies` (addresses or networks) to write `header`.
    pub fn trusting<I, S>(proxies: I, header: ProxyHeader) -> Result<ClientIp, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let trusted = proxies
            .into_iter()
            .map(|p| parse_net(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(ClientIp {
            trusted,
            header,
            ..ClientIp::default()
        })
    }

    /// Groups IPv6 clients by their first `bits` bits (capped at 128).
    pub fn with_ipv6_prefix(mut self, bits: u8) -> ClientIp {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The client address of `req`, grouped; `None` when the request has no peer address.
    pub fn of(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        let client = if self.is_trusted(peer) {
            self.forwarded_client(req.headers(), peer)
        } else {
            peer
        };
        Some(self.group(client))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Walks the forwarding chain from the right, past trusted proxies. A malformed entry ends
    /// the walk at the last hop we trust, which is then counted as the client: stricter for the
    /// clients behind it, never a fresh budget for a forger.
    fn forwarded_client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let (name, parse): (HeaderName, fn(&str) -> Option<IpAddr>) = match self.header {
            ProxyHeader::XForwardedFor => {
                (HeaderName::from_static("x-forwarded-for"), parse_xff_entry)
            }
            ProxyHeader::Forwarded => (FORWARDED, parse_forwarded_entry),
        };
        let mut hop = peer;
        // Several header lines form one list, in order.
        let lines: Vec<&str> = headers
            .get_all(name)
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .collect();
        for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            match parse(entry.trim()) {
                Some(ip) if self.is_trusted(ip) => hop = ip,
                Some(ip) => return ip,
                None => return hop,
            }
        }
        hop
    }

    /// `ip` as its client group (IPv6 by prefix).
    pub(crate) fn group(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) if self.ipv6_prefix < 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            other => other,
        }
    }
}

fn parse_net(text: &str) -> Result<IpNet, InvalidProxy> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| InvalidProxy(text.to_string()))
}

/// An `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port.
fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    parse_node(entry)
}

/// A `Forwarded` element: `for=...` among `;`-separated pairs, the node possibly quoted.
fn parse_forwarded_entry(element: &str) -> Option<IpAddr> {
    let node = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    parse_node(node.trim_matches('"'))
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest
            .split_once(']')?
            .0
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(format!("{peer}:1234").parse().unwrap());
        for &(name, value) in headers {
            req = req.append_header((name, value));
        }
        req.to_http_request()
    }

    fn behind_proxy() -> ClientIp {
        ClientIp::trusting(["10.0.0.0/8", "192.168.1.1"], ProxyHeader::XForwardedFor).unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let req = request("203.0.113.9", &[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(ClientIp::default().of(&req), Some(ip("203.0.113.9")));
        assert_eq!(behind_proxy().of(&req), Some(ip("203.0.113.9")));
    }

    #[test]
    fn rightmost_untrusted_address_behind_trusted_proxies() {
        let xff = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")];
        let req = request("192.168.1.1", &xff);
        assert_eq!(behind_proxy().of(&req), Some(ip("198.51.100.7")));
        let split = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            behind_proxy().of(&request("10.0.0.2", &split)),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn malformed_or_missing_chains_count_the_last_trusted_hop() {
        let ips = behind_proxy();
        assert_eq!(ips.of(&request("10.0.0.2", &[])), Some(ip("10.0.0.2")));
        let junk = [("x-forwarded-for", "1.1.1.1, not-an-ip, 10.9.9.9")];
        assert_eq!(ips.of(&request("10.0.0.2", &junk)), Some(ip("10.9.9.9")));
        let all_trusted = [("x-forwarded-for", "10.3.3.3")];
        assert_eq!(
            ips.of(&request("10.0.0.2", &all_trusted)),
            Some(ip("10.3.3.3"))
        );
        let empty = [("x-forwarded-for", "")];
        assert_eq!(ips.of(&request("10.0.0.2", &empty)), Some(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_header() {
        let ips = ClientIp::trusting(["10.0.0.0/8"], ProxyHeader::Forwarded).unwrap();
        let fwd = [(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.5"#,
        )];
        assert_eq!(
            ips.of(&request("10.0.0.2", &fwd)),
            Some(ip("2001:db8:cafe::"))
        );
        let xff_ignored = [("x-forwarded-for", "7.7.7.7")];
        assert_eq!(
            ips.of(&request("10.0.0.2", &xff_ignored)),
            Some(ip("10.0.0.2"))
        );
    }

    #[test]
    fn ipv6_grouping_and_mapped_v4() {
        let req = request("[2001:db8:1:2:3:4:5:6]", &[]);
        assert_eq!(ClientIp::default().of(&req), Some(ip("2001:db8:1:2::")));
        assert_eq!(
            ClientIp::default().with_ipv6_prefix(128).of(&req),
            Some(ip("2001:db8:1:2:3:4:5:6"))
        );
        assert_eq!(
            ClientIp::default().with_ipv6_prefix(0).of(&req),
            Some(ip("::"))
        );
        let mapped = request("[::ffff:1.2.3.4]", &[]);
        assert_eq!(ClientIp::default().of(&mapped), Some(ip("1.2.3.4")));
    }

    #[test]
    fn entry_forms() {
        assert_eq!(parse_node("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("1.2.3.4:99999"), None);
        assert_eq!(
            parse_forwarded_entry("proto=http;FOR=1.2.3.4"),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(parse_forwarded_entry("for=_hidden"), None);
        assert!(ClientIp::trusting(["nope"], ProxyHeader::Forwarded).is_err());
    }
}
