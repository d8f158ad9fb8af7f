//! Script replies as the Redis store reads them: arrays of integers, nothing else.

use redis::Value;

use super::StoreError;

/// The integers of a script's reply.
///
/// The store's scripts return Lua tables of integers, which Redis sends as an array of
/// integers. The Redis client would also read strings, doubles (cut to an integer, NaN as 0),
/// sets and maps as integers; any of those in a reply means that something other than the
/// script answered (a proxy, another script under the name), so the reply is refused rather
/// than read as a decision.
pub(super) fn integers(reply: &Value) -> Result<Vec<i64>, StoreError> {
    let garbage = || StoreError::new(format!("Redis answered an unexpected reply: {reply:?}"));
    let Value::Array(items) = reply else {
        return Err(garbage());
    };
    items
        .iter()
        .map(|item| match item {
            Value::Int(n) => Ok(*n),
            _ => Err(garbage()),
        })
        .collect()
}

/// A flag of a reply: 1 or 0.
pub(super) fn flag(n: i64) -> Option<bool> {
    match n {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}
