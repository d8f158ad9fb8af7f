use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use actix_web::http::header::{HeaderMap, HeaderName, FORWARDED};
use actix_web::HttpRequest;
use ipnet::IpNet;
use smallvec::SmallVec;

/// The most forwarding entries read: a chain longer than any real one of proxies ends there,
/// at the last hop trusted, so a header of a million commas costs no more than this.
const MAX_HOPS: usize = 64;

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

    /// The trusted proxies, for a log line: `none`, or the networks.
    pub(crate) fn describe_trusted(&self) -> String {
        if self.trusted.is_empty() {
            return "none".to_string();
        }
        let nets: Vec<String> = self.trusted.iter().map(ToString::to_string).collect();
        nets.join(",")
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Walks the forwarding chain from the right, past trusted proxies. Entries are split and
    /// read as bytes: a client's own non-ASCII entry spoils only that entry, never the whole
    /// line (whose rightmost entries an appending proxy wrote). A malformed entry ends the walk
    /// at the last hop we trust, which is then counted as the client: stricter for the clients
    /// behind it, never a fresh budget for a forger.
    fn forwarded_client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let (name, parse): (HeaderName, EntryParser) = match self.header {
            ProxyHeader::XForwardedFor => {
                (HeaderName::from_static("x-forwarded-for"), parse_xff_entry)
            }
            ProxyHeader::Forwarded => (FORWARDED, parse_forwarded_entry),
        };
        let mut hop = peer;
        // Several header lines form one list, in order: the last line's last entry is nearest.
        let lines: SmallVec<[&[u8]; 2]> = headers.get_all(name).map(|v| v.as_bytes()).collect();
        let entries = lines
            .iter()
            .rev()
            .flat_map(|line| line.rsplit(|&b| b == b','));
        for entry in entries.take(MAX_HOPS) {
            match parse(entry.trim_ascii()) {
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

/// Reads one entry of a forwarding header, as bytes.
type EntryParser = fn(&[u8]) -> Option<IpAddr>;

/// An `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port.
fn parse_xff_entry(entry: &[u8]) -> Option<IpAddr> {
    parse_node(std::str::from_utf8(entry).ok()?)
}

/// A `Forwarded` element: `for=...` among `;`-separated pairs, the node possibly quoted.
fn parse_forwarded_entry(element: &[u8]) -> Option<IpAddr> {
    let node = element.split(|&b| b == b';').find_map(|pair| {
        let at = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
        key.eq_ignore_ascii_case(b"for").then_some(value)
    })?;
    let node = node
        .strip_prefix(b"\"")
        .and_then(|n| n.strip_suffix(b"\""))
        .unwrap_or(node);
    parse_node(std::str::from_utf8(node).ok()?)
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
            parse_forwarded_entry(b"proto=http;FOR=1.2.3.4"),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(parse_forwarded_entry(b"for=_hidden"), None);
        assert_eq!(
            parse_forwarded_entry(b"for=\"1.2.3.4\""),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(parse_xff_entry(b"1.2.3.4\xff"), None);
        assert!(ClientIp::trusting(["nope"], ProxyHeader::Forwarded).is_err());
    }

    fn raw_request(peer: &str, name: &str, lines: &[&[u8]]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(format!("{peer}:1234").parse().unwrap());
        for &line in lines {
            let value = actix_web::http::header::HeaderValue::from_bytes(line).unwrap();
            req = req.append_header((name, value));
        }
        req.to_http_request()
    }

    #[test]
    fn a_non_ascii_entry_spoils_only_itself() {
        let ips = behind_proxy();
        // What nginx's `$proxy_add_x_forwarded_for` forwards for a client that sent `\xff`.
        let appended = raw_request("10.0.0.2", "x-forwarded-for", &[b"\xff, 6.6.6.6"]);
        assert_eq!(ips.of(&appended), Some(ip("6.6.6.6")));
        let two_lines = raw_request(
            "10.0.0.2",
            "x-forwarded-for",
            &[b"1.1.1.1, \xc3\x28", b"6.6.6.6, 10.1.1.1"],
        );
        assert_eq!(ips.of(&two_lines), Some(ip("6.6.6.6")));
        // A proxy's own entry spoiled: the walk ends at the last hop trusted, as for junk.
        let spoiled = raw_request("10.0.0.2", "x-forwarded-for", &[b"6.6.6.6, 10.1.1.1\xff"]);
        assert_eq!(ips.of(&spoiled), Some(ip("10.0.0.2")));
        let forwarded = ClientIp::trusting(["10.0.0.0/8"], ProxyHeader::Forwarded).unwrap();
        let appended = raw_request("10.0.0.2", "forwarded", &[b"for=\xff\xfe, for=6.6.6.6"]);
        assert_eq!(forwarded.of(&appended), Some(ip("6.6.6.6")));
    }

    #[test]
    fn a_chain_of_any_length_is_read_in_bounded_time() {
        let ips = behind_proxy();
        let mut line = b"6.6.6.6".to_vec();
        line.extend(b", 10.1.1.1".repeat(100_000));
        let long = raw_request("10.0.0.2", "x-forwarded-for", &[&line]);
        // Past 64 trusted hops the walk stops at the last of them.
        assert_eq!(ips.of(&long), Some(ip("10.1.1.1")));
        let commas = raw_request("10.0.0.2", "x-forwarded-for", &[&[b','; 1_000_000]]);
        assert_eq!(ips.of(&commas), Some(ip("10.0.0.2")));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2_000);
            ProptestConfig::with_cases(cases)
        }

        /// Bytes a header value may hold (no control characters but tab), biased towards
        /// the separators and address characters a forger would try.
        fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop_oneof![
                4 => prop::sample::select(b", ;=\"[]:.0123456789abcdef_for".to_vec()),
                2 => 0x80u8..=0xff,
                1 => 0x20u8..0x7f,
                1 => Just(b'\t'),
            ];
            prop::collection::vec(byte, 0..80)
        }

        fn client() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u16; 8]>().prop_map(IpAddr::from),
            ]
            .prop_filter("an untrusted client", |ip| {
                !behind_proxy().is_trusted(ip.to_canonical())
            })
        }

        proptest! {
            #![proptest_config(config())]

            /// Whatever a client writes, an appending proxy's entry for it is what counts.
            #[test]
            fn a_forged_prefix_never_changes_the_client(
                prefix in value_bytes(),
                client in client(),
                separate_line in any::<bool>(),
            ) {
                let ips = behind_proxy();
                let expected = Some(ips.group(client.to_canonical()));
                let own = client.to_string().into_bytes();
                let mut joined = prefix.clone();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(&own);
                let lines: Vec<&[u8]> = if separate_line {
                    vec![&prefix, &own]
                } else {
                    vec![&joined]
                };
                let req = raw_request("10.0.0.2", "x-forwarded-for", &lines);
                prop_assert_eq!(ips.of(&req), expected);

                let forwarded =
                    ClientIp::trusting(["10.0.0.0/8", "192.168.1.1"], ProxyHeader::Forwarded)
                        .unwrap();
                let node = match client {
                    IpAddr::V4(v4) => format!("for={v4}"),
                    IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
                };
                let mut element = prefix;
                element.extend_from_slice(b", ");
                element.extend_from_slice(node.as_bytes());
                let req = raw_request("10.0.0.2", "forwarded", &[&element]);
                prop_assert_eq!(forwarded.of(&req), expected);
            }

            /// Any header lines at all: an address, never a panic, and from an untrusted peer
            /// always the peer.
            #[test]
            fn any_bytes_give_an_address(
                lines in prop::collection::vec(value_bytes(), 0..4),
                trusted_peer in any::<bool>(),
            ) {
                let ips = behind_proxy();
                let peer = if trusted_peer { "10.0.0.2" } else { "203.0.113.9" };
                let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
                let req = raw_request(peer, "x-forwarded-for", &lines);
                let found = ips.of(&req);
                prop_assert!(found.is_some());
                if !trusted_peer {
                    prop_assert_eq!(found, Some(ip("203.0.113.9")));
                }
            }
        }
    }
}
