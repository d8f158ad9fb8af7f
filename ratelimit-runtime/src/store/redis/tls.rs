//! TLS for `rediss://` URLs, through rustls: the system's roots and a private CA, and a client
//! certificate for mutual TLS.

use std::fmt;
use std::path::Path;

/// TLS of the connections to Redis, used for `rediss://` URLs (one Redis, or every node of a
/// Cluster). A server's certificate must chain to the system's roots or to [`ca`](Self::ca),
/// and name the URL's host. Turning both checks off takes a URL ending in `#insecure`, which
/// the limiter logs as a warning when it is built: meant for a test bench, never production.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA certificates to trust besides the system's roots (PEM): a private CA.
    pub ca: Option<Vec<u8>>,
    /// A client certificate chain and its private key (PEM), for Redis that asks for them
    /// (`tls-auth-clients yes`).
    pub client: Option<ClientCertificate>,
}

/// A client certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain, the client's own first.
    pub chain: Vec<u8>,
    /// The private key.
    pub key: Vec<u8>,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("chain", &format_args!("{} bytes", self.chain.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field(
                "ca",
                &self.ca.as_ref().map(|ca| format!("{} bytes", ca.len())),
            )
            .field("client", &self.client)
            .finish()
    }
}

impl RedisTls {
    /// TLS from PEM files: a CA to trust, and a client certificate and its key (both or
    /// neither). The error names the file that could not be read.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<RedisTls, String> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .map_err(|e| format!("cannot read the Redis TLS {what} {}: {e}", path.display()))
        };
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some(ClientCertificate {
                chain: read(cert, "client certificate")?,
                key: read(key, "client key")?,
            }),
            (None, None) => None,
            (Some(_), None) => return Err("a Redis TLS client certificate needs its key".into()),
            (None, Some(_)) => return Err("a Redis TLS client key needs its certificate".into()),
        };
        Ok(RedisTls {
            ca: ca.map(|ca| read(ca, "CA")).transpose()?,
            client,
        })
    }

    /// The certificates as the `redis` crate takes them. Its root store replaces the system's
    /// when given one, so a private CA comes with the system's roots, as PEM.
    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        let root_cert = match &self.ca {
            None => None,
            Some(ca) => {
                let mut roots = Vec::new();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let pem = pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec());
                    roots.extend_from_slice(pem::encode(&pem).as_bytes());
                }
                roots.extend_from_slice(ca);
                Some(roots)
            }
        };
        redis::TlsCertificates {
            client_tls: self.client.as_ref().map(|client| redis::ClientTlsConfig {
                client_cert: client.chain.clone(),
                client_key: client.key.clone(),
            }),
            root_cert,
        }
    }
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls(url: &str) -> bool {
    url.trim_start()
        .to_ascii_lowercase()
        .starts_with("rediss://")
}

/// Whether `url` turns the certificate and name checks off.
pub(crate) fn is_insecure(url: &str) -> bool {
    is_tls(url) && url.trim_end().ends_with("#insecure")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_and_a_missing_one_is_named() {
        let dir = std::env::temp_dir().join(format!("ratelimit-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, cert, key) = (dir.join("ca.pem"), dir.join("c.pem"), dir.join("c.key"));
        for (path, text) in [(&ca, "CA"), (&cert, "CERT"), (&key, "KEY")] {
            std::fs::write(path, text).unwrap();
        }
        let tls = RedisTls::from_files(Some(&ca), Some(&cert), Some(&key)).unwrap();
        assert_eq!(tls.ca.as_deref(), Some(&b"CA"[..]));
        let client = tls.client.as_ref().unwrap();
        assert_eq!(
            (&client.chain[..], &client.key[..]),
            (&b"CERT"[..], &b"KEY"[..])
        );
        // The key never shows.
        assert!(!format!("{tls:?}").contains("KEY"));
        let missing = dir.join("missing.pem");
        let error = RedisTls::from_files(Some(&missing), None, None).unwrap_err();
        assert!(
            error.contains("missing.pem") && error.contains("CA"),
            "{error}"
        );
        assert!(RedisTls::from_files(None, Some(&cert), None).is_err());
        assert!(RedisTls::from_files(None, None, Some(&key)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_ca_comes_with_the_system_roots() {
        let tls = RedisTls {
            ca: Some(b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n".to_vec()),
            client: None,
        };
        let roots = tls.certificates().root_cert.unwrap();
        let system = rustls_native_certs::load_native_certs().certs.len();
        let count = String::from_utf8(roots)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count();
        assert_eq!(count, system + 1);
        assert!(RedisTls::default().certificates().root_cert.is_none());
    }

    #[test]
    fn tls_and_insecure_urls_are_told_apart() {
        assert!(is_tls("rediss://h:6380") && is_tls("REDISS://h"));
        assert!(!is_tls("redis://h:6379"));
        assert!(is_insecure("rediss://h:6380/#insecure"));
        assert!(!is_insecure("rediss://h:6380") && !is_insecure("redis://h/#insecure"));
    }
}
