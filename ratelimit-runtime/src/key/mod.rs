//! Who a request counts against: scopes, the client's address, trusted proxies.

mod client_ip;
pub(crate) mod fingerprint;
pub(crate) mod scope;

pub use client_ip::{ClientIp, InvalidProxy, ProxyHeader};
pub use scope::{Identity, Scope};
