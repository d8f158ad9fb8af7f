//! The 64-bit key of one rule's state for one client.
//!
//! Parts are written as explicit bytes (never through `Hash` impls, whose output may change
//! between Rust versions): with the same hash function, every process of a fleet computes the
//! same key. In memory the hash is seeded at random per process (so that nobody can aim
//! collisions at the table); on Redis it is XXH3 with a fixed seed, stable across processes,
//! machines and versions.

use std::hash::Hasher;
use std::net::IpAddr;

use super::{Identity, Scope};
use crate::algorithm::Limit;
use crate::rule::Rule;

/// Writes what identifies a rule's budget: its name, scope and algorithm, and the limit.
pub(crate) fn write_rule(h: &mut impl Hasher, prefix: &str, rule: &Rule, limit: &Limit) {
    write_str(h, prefix);
    write_str(h, &rule.name);
    match &rule.scope {
        Scope::Ip => h.write_u8(1),
        Scope::Global => h.write_u8(2),
        Scope::Header(name) => {
            h.write_u8(3);
            write_str(h, name);
        }
        // A function's address differs between processes: the rule's name tells custom keys
        // apart (the attribute appends the function's path to it).
        Scope::Custom(_) => h.write_u8(4),
    }
    write_str(h, rule.algorithm.name());
    h.write(&limit.quota.limit().to_le_bytes());
    h.write(&limit.quota.period_secs().to_le_bytes());
    h.write(&limit.capacity.get().to_le_bytes());
}

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

fn write_str(h: &mut impl Hasher, s: &str) {
    write_bytes(h, s.as_bytes());
}

/// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
fn write_bytes(h: &mut impl Hasher, bytes: &[u8]) {
    h.write(&(bytes.len() as u64).to_le_bytes());
    h.write(bytes);
}
