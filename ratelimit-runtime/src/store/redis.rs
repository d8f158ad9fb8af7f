//! The Redis store: one limit for a whole fleet, one round trip per decision.
//!
//! Every decision is one `EVALSHA` of one script (`decide.lua`), whatever the number of checks:
//! the script reads each key, decides each check with the same arithmetic as the Rust
//! algorithms, and writes all of them or none. The script is loaded once and reloaded by itself
//! after `NOSCRIPT` (a restarted Redis). Keys expire once their state no longer matters. The keys
//! of one decision share a hash tag, so the script runs on Redis Cluster too.
//!
//! Redis keeps time in microseconds (Lua numbers are doubles, exact to 2^53): instants go in
//! rounded down to the microsecond and come back as whole microseconds.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::Script;
use smallvec::SmallVec;

use super::{Check, Store, StoreError, Verdict};
use crate::algorithm::AlgorithmKind;
use crate::clock::UnixNanos;
use crate::decision::Decision;

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

/// Options of a [`RedisStore`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// The longest a decision may wait for Redis (default 50 ms); a slower answer is a failure.
    pub timeout: Duration,
    /// Where the instant of a decision comes from.
    pub time: TimeSource,
    /// Prefix of every key (default `ratelimit`).
    pub prefix: String,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            timeout: Duration::from_millis(50),
            time: TimeSource::Server,
            prefix: "ratelimit".to_string(),
        }
    }
}

/// Limiter state in Redis or Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    script: Script,
    options: RedisOptions,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Doubles are exact below this: scaled values must stay under it.
const EXACT: u128 = 1 << 53;
const MICROS_PER_SEC: u128 = 1_000_000;

impl RedisStore {
    /// Connects to one Redis (`redis://host:port/db`), reconnecting by itself when the
    /// connection drops.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::new(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let store = with_timeout(options.timeout.max(Duration::from_millis(500)), async {
            let mut manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(redis_error)?;
            let store = RedisStore::with_connection(Connection::Single(manager.clone()), options);
            // Loaded now, so that the first decisions do not pay for it within their timeout.
            store
                .script
                .load_async(&mut manager)
                .await
                .map_err(redis_error)?;
            Ok(store)
        })
        .await?;
        Ok(store)
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster<S: AsRef<str>>(
        nodes: &[S],
        options: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let client = ClusterClient::builder(nodes)
            .connection_timeout(options.timeout.max(Duration::from_millis(200)))
            .response_timeout(options.timeout)
            .retries(2)
            .build()
            .map_err(|e| StoreError::new(format!("invalid Redis Cluster nodes: {e}")))?;
        let connection = with_timeout(options.timeout.max(Duration::from_secs(2)), async {
            client.get_async_connection().await.map_err(redis_error)
        })
        .await?;
        Ok(RedisStore::with_connection(
            Connection::Cluster(connection),
            options,
        ))
    }

    fn with_connection(connection: Connection, options: RedisOptions) -> RedisStore {
        RedisStore {
            connection,
            script: Script::new(include_str!("decide.lua")),
            options,
        }
    }

    /// The Redis key of a check: `{prefix}:{tag}:{key}`, the tag shared by the checks of one
    /// decision so that Redis Cluster keeps them in one slot.
    pub fn key_of(&self, check: &Check) -> String {
        format!(
            "{}:{{{:016x}}}:{:016x}",
            self.options.prefix, check.group, check.key
        )
    }

    async fn run(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        let mut invocation = self.script.prepare_invoke();
        let now_arg = match self.options.time {
            TimeSource::Server => String::new(),
            TimeSource::Client => (now / 1_000).to_string(),
        };
        invocation.arg(now_arg);
        for check in checks {
            exact_in_redis(check)?;
            invocation
                .key(self.key_of(check))
                .arg(algorithm_code(check.algorithm))
                .arg(check.limit.quota.limit())
                .arg(check.limit.quota.period_secs())
                .arg(check.limit.capacity.get())
                .arg(check.cost);
        }
        let reply: Vec<i64> = match self.connection.clone() {
            Connection::Single(mut c) => invoke(&invocation, &mut c).await?,
            Connection::Cluster(mut c) => invoke(&invocation, &mut c).await?,
        };
        let mut verdict = parse_reply(&reply, checks)?;
        if self.options.time == TimeSource::Server {
            // Redis's clock decided; the limiter reports against its own. Moving the instants by
            // the difference keeps Retry-After right on a server whose clock is skewed.
            let redis_now = reply[0].max(0) as u64 * 1_000;
            for d in &mut verdict.decisions {
                d.reset_at = shift(d.reset_at, redis_now, now);
                d.retry_at = shift(d.retry_at, redis_now, now);
            }
        }
        Ok(verdict)
    }
}

async fn invoke<C: ConnectionLike>(
    invocation: &redis::ScriptInvocation<'_>,
    connection: &mut C,
) -> Result<Vec<i64>, StoreError> {
    invocation
        .invoke_async(connection)
        .await
        .map_err(redis_error)
}

impl Store for RedisStore {
    async fn decide(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        with_timeout(self.options.timeout, self.run(checks, now)).await
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("connection", &kind)
            .field("options", &self.options)
            .finish()
    }
}

async fn with_timeout<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::new(format!(
            "Redis did not answer within {limit:?}"
        ))),
    }
}

/// `t` on Redis's clock (`from`) as the same distance from `to`.
fn shift(t: UnixNanos, from: UnixNanos, to: UnixNanos) -> UnixNanos {
    to.saturating_add(t.saturating_sub(from))
}

fn redis_error(e: redis::RedisError) -> StoreError {
    StoreError::new(format!("Redis: {e}"))
}

fn algorithm_code(kind: AlgorithmKind) -> u8 {
    match kind {
        AlgorithmKind::FixedWindow => 1,
        AlgorithmKind::SlidingWindow => 2,
        AlgorithmKind::SlidingLog => 3,
        AlgorithmKind::TokenBucket => 4,
        AlgorithmKind::LeakyBucket => 5,
        AlgorithmKind::Gcra => 6,
    }
}

/// Refuses a quota whose scaled arithmetic would not be exact in the script's doubles.
fn exact_in_redis(check: &Check) -> Result<(), StoreError> {
    let period = u128::from(check.limit.quota.period_secs()) * MICROS_PER_SEC;
    let cost = u128::from(check.cost);
    // The largest product each script step forms: counts times the period, where it scales.
    let largest = match check.algorithm {
        AlgorithmKind::FixedWindow | AlgorithmKind::SlidingLog | AlgorithmKind::Gcra => period,
        AlgorithmKind::SlidingWindow => (u128::from(check.limit.quota.limit()) + cost) * period,
        AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket => {
            (u128::from(check.limit.capacity.get()) + cost) * period
        }
    };
    if largest < EXACT {
        return Ok(());
    }
    Err(StoreError::unsupported(format!(
        "{} ({} per {} s, capacity {}) is too large to count exactly in Redis: limit × period in µs must stay below 2^53",
        check.algorithm,
        check.limit.quota.limit(),
        check.limit.quota.period_secs(),
        check.limit.capacity
    )))
}

/// `[now, all allowed, (allowed, remaining, reset, retry) per check]`, times in µs.
fn parse_reply(reply: &[i64], checks: &[Check]) -> Result<Verdict, StoreError> {
    let garbage = || StoreError::new(format!("Redis answered an unexpected reply: {reply:?}"));
    let [_, all, rest @ ..] = reply else {
        return Err(garbage());
    };
    if rest.len() != 4 * checks.len() || !matches!(all, 0 | 1) {
        return Err(garbage());
    }
    let micros = |t: i64| {
        u64::try_from(t)
            .map(|t| t.saturating_mul(1_000))
            .map_err(|_| garbage())
    };
    let mut decisions = SmallVec::new();
    for (values, check) in rest.chunks_exact(4).zip(checks) {
        let &[allowed, remaining, reset, retry] = values else {
            return Err(garbage());
        };
        decisions.push(Decision {
            allowed: allowed == 1,
            limit: reported_limit(check),
            remaining: u32::try_from(remaining).map_err(|_| garbage())?,
            reset_at: micros(reset)?,
            retry_at: micros(retry)?,
        });
    }
    Ok(Verdict {
        decisions,
        allowed: *all == 1,
    })
}

/// The limit the memory store reports for the same check: the quota's limit for windows and
/// logs, the capacity for buckets.
fn reported_limit(check: &Check) -> u32 {
    match check.algorithm {
        AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket | AlgorithmKind::Gcra => {
            check.limit.capacity.get()
        }
        _ => check.limit.quota.limit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Limit;
    use crate::quota::Quota;

    fn check(algorithm: AlgorithmKind, limit: u32, per: u32) -> Check {
        Check {
            key: 1,
            group: 2,
            algorithm,
            limit: Limit::new(Quota::from_parts(limit, per).unwrap()),
            cost: 1,
        }
    }

    #[test]
    fn garbage_replies_are_errors() {
        let one = [check(AlgorithmKind::Gcra, 10, 1)];
        assert!(parse_reply(&[], &one).is_err());
        assert!(parse_reply(&[1, 1, 1, 9, 5], &one).is_err(), "too short");
        assert!(
            parse_reply(&[1, 7, 1, 9, 5, 5], &one).is_err(),
            "not a boolean"
        );
        assert!(
            parse_reply(&[1, 1, 1, -9, 5, 5], &one).is_err(),
            "negative remaining"
        );
        let ok = parse_reply(&[1, 1, 1, 9, 5, 6], &one).unwrap();
        assert_eq!(ok.decisions[0].retry_at, 6_000);
    }

    #[test]
    fn quotas_beyond_exact_doubles_are_refused() {
        assert!(exact_in_redis(&check(AlgorithmKind::TokenBucket, 100_000, 86_400)).is_ok());
        assert!(
            exact_in_redis(&check(AlgorithmKind::TokenBucket, 2_000_000, 86_400 * 30)).is_err()
        );
    }
}
