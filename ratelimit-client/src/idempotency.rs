//! Which requests may be sent twice.

/// The header by which a client marks a non-idempotent request as safe to repeat: the server
/// answers a repeat with the first outcome instead of acting twice.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether the method is idempotent (RFC 9110 §9.2.2), so that repeating it has the effect of
/// sending it once. Method names are case-sensitive: `get` is not `GET`.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// Whether a request may be retried after a 429: an idempotent method, or any method carrying
/// an `Idempotency-Key` header.
pub fn may_retry<'a, I>(method: &str, headers: I) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    is_idempotent(method)
        || headers
            .into_iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(IDEMPOTENCY_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods() {
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            assert!(is_idempotent(method), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "PURGE", "get", ""] {
            assert!(!is_idempotent(method), "{method}");
        }
    }

    #[test]
    fn a_post_needs_an_idempotency_key() {
        let plain: [(&str, &[u8]); 1] = [("Content-Type", b"application/json")];
        assert!(!may_retry("POST", plain));
        let keyed: [(&str, &[u8]); 2] = [
            ("Content-Type", b"application/json"),
            (
                "Idempotency-Key",
                b"\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
            ),
        ];
        assert!(may_retry("POST", keyed));
        assert!(may_retry("PATCH", [("IDEMPOTENCY-KEY", &b"k"[..])]));
        assert!(may_retry("GET", []));
    }
}
