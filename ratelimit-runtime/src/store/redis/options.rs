//! The options of a [`RedisStore`](super::RedisStore).

use std::time::Duration;

use super::tls::RedisTls;

/// Where a decision's instant comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeSource {
    /// Redis's own clock (`TIME`): servers with skewed clocks still agree. The default.
    #[default]
    Server,
    /// The instant the limiter passes in, from its [`Clock`](crate::Clock): for tests on a
    /// manual clock.
    Client,
}

/// Options of a [`RedisStore`](super::RedisStore).
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// The longest a decision may wait for Redis (default 50 ms); a slower answer is a failure.
    pub timeout: Duration,
    /// Where the instant of a decision comes from.
    pub time: TimeSource,
    /// Prefix of every key (default `ratelimit`).
    pub prefix: String,
    /// How long a concurrency slot stays taken without renewal (default 5 s, at least 100 ms):
    /// a process that dies or loses Redis holds its slots at most this long. A request in
    /// flight renews its slot every third of it.
    pub lease: Duration,
    /// TLS for `rediss://` URLs: a private CA, a client certificate (see [`RedisTls`]).
    pub tls: RedisTls,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            timeout: Duration::from_millis(50),
            time: TimeSource::Server,
            prefix: "ratelimit".to_string(),
            lease: Duration::from_secs(5),
            tls: RedisTls::default(),
        }
    }
}
