//! The origin (scheme, host, port) that rate-limit knowledge is kept for.

use std::fmt;

/// Scheme, host and port of a URL (RFC 6454): requests to one origin share what the server
/// said about the rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of a URL's parts; scheme and host compare case-insensitively, and a missing
    /// port is the scheme's default (80 for `http`/`ws`, 443 for `https`/`wss`, else 0).
    pub fn new(scheme: &str, host: &str, port: Option<u16>) -> Origin {
        let scheme = scheme.to_ascii_lowercase();
        let port = port.unwrap_or(match scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => 0,
        });
        Origin {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ports_and_case() {
        assert_eq!(
            Origin::new("HTTP", "Example.COM", None),
            Origin::new("http", "example.com", Some(80))
        );
        assert_ne!(
            Origin::new("http", "example.com", None),
            Origin::new("https", "example.com", None)
        );
        assert_eq!(
            Origin::new("https", "a.b", None).to_string(),
            "https://a.b:443"
        );
    }
}
