//! The key of one rule's state for one client.
//!
//! Parts are written as explicit bytes (never through `Hash` impls, whose output may change
//! between Rust versions): with the same hash function, every process of a fleet computes the
//! same key. In memory the hash is 64 bits seeded at random per process (so that nobody can aim
//! collisions at the table); on Redis it is 128 bits of SipHash-1-3 keyed by the fleet's
//! secret ([`FleetKey`]), stable across processes, machines and versions.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};
use std::net::IpAddr;

use super::Identity;

/// Writes a client identity.
pub(crate) fn write_identity(h: &mut impl Hasher, identity: &Identity<'_>) {
    match identity {
        Identity::Global => h.write_u8(1),
        Identity::Ip(ip) => {
            h.write_u8(2);
            write_ip(h, ip);
        }
        Identity::Header(bytes) => {
            h.write_u8(3);
            write_bytes(h, bytes);
        }
        Identity::Custom(key) => {
            h.write_u8(4);
            write_str(h, key);
        }
        Identity::Anonymous(ip) => {
            h.write_u8(5);
            write_ip(h, ip);
        }
        Identity::Unknown => h.write_u8(6),
    }
}

fn write_ip(h: &mut impl Hasher, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
}

pub(crate) fn write_str(h: &mut impl Hasher, s: &str) {
    write_bytes(h, s.as_bytes());
}

/// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
fn write_bytes(h: &mut impl Hasher, bytes: &[u8]) {
    h.write(&(bytes.len() as u64).to_le_bytes());
    h.write(bytes);
}

/// The fleet's key for Redis key names: SipHash-1-3 keys derived from a secret every process of
/// a fleet shares. Key names are then 128 bits nobody without the secret can aim at: no
/// crafted header value lands on another client's budget, and accidental collisions between
/// clients are out of reach too (about 2^-64 among 2^32 keys).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FleetKey {
    keys: (u64, u64),
    secret: bool,
}

/// Domain separation of the derivation, so that the keys are never the secret's plain hash.
const DERIVE: (u64, u64) = (0x7261_7465_6c69_6d69, 0x742d_6b65_792d_7631);

impl FleetKey {
    /// The keys of `secret` (any bytes; at least 16 random ones to be worth the name).
    pub(crate) fn from_secret(secret: &[u8]) -> FleetKey {
        let mut h = SipHasher13::new_with_keys(DERIVE.0, DERIVE.1);
        write_bytes(&mut h, secret);
        let derived = h.finish128();
        FleetKey {
            keys: (derived.h1, derived.h2),
            secret: true,
        }
    }

    /// Keys anyone can know: names are stable across a fleet but can be aimed at.
    pub(crate) fn public() -> FleetKey {
        FleetKey {
            keys: DERIVE,
            secret: false,
        }
    }

    /// Whether a secret was given.
    pub(crate) fn is_secret(&self) -> bool {
        self.secret
    }

    /// What tells this key from another without revealing it: the name of a fixed text, as
    /// hex. Processes that agree on the secret agree on it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn mark(&self) -> String {
        format!("{:032x}", self.name(|h| write_str(h, "fleet key mark")))
    }

    /// A hasher whose 128-bit output is a key name.
    pub(crate) fn hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.keys.0, self.keys.1)
    }

    /// The 128-bit name of what `write` writes.
    pub(crate) fn name(&self, write: impl FnOnce(&mut SipHasher13)) -> u128 {
        let mut h = self.hasher();
        write(&mut h);
        h.finish128().as_u128()
    }
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.write_str(if self.secret {
            "FleetKey(secret)"
        } else {
            "FleetKey(public)"
        })
    }
}
