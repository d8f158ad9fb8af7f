//! What travels on the wire to Redis: the decision script, its calls in batches and their
//! replies, the key names and the errors. The store (`mod.rs`) and its lanes (`lane.rs`) both
//! send through here; nothing here knows either.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult, Script};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::options::{RedisOptions, TimeSource};
use super::reply::{flag, integers};
use crate::algorithm::AlgorithmKind;
use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::store::exact::{exact_in_redis, gcra_in_nanos};
use crate::store::{Check, StoreError, Verdict};

/// One decision waiting for a lane or the store's thread.
pub(super) struct Job {
    pub(super) checks: SmallVec<[Check; 4]>,
    pub(super) now: UnixNanos,
    /// False for a peek: decided, never written.
    pub(super) charge: bool,
    pub(super) done: oneshot::Sender<Result<Verdict, StoreError>>,
}

/// The most decisions one script call carries.
pub(super) const MAX_BATCH: usize = 64;

/// The decisions' Lua (`common.lua` and `decide.lua`), as a script and as a Redis function
/// library of the same text. Both are named after the text, so that processes of two versions
/// sharing a Redis each call their own.
struct Decider {
    script: Script,
    /// `FUNCTION LOAD`'s argument, and the function's name.
    library: String,
    function: String,
}

static DECIDER: LazyLock<Decider> = LazyLock::new(|| {
    let body = concat!(include_str!("common.lua"), include_str!("decide.lua"));
    // A script reads its keys and arguments as globals, which decide.lua's locals then hide.
    let script = Script::new(&format!(
        "local CALL_KEYS, CALL_ARGV = KEYS, ARGV\n{body}\nreturn decide_call(CALL_KEYS, CALL_ARGV)\n"
    ));
    let version = &script.get_hash()[..16];
    let function = format!("ratelimit_decide_{version}");
    let library = format!(
        "#!lua name=ratelimit_{version}\n{body}\nredis.register_function('{function}', decide_call)\n"
    );
    Decider {
        script,
        library,
        function,
    }
});

/// How a connection calls the decisions' Lua.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// `FCALL` of the function (Redis 7.0 and later): what the library defines is made once,
    /// when it is loaded, not on every call, which saves Redis about 4 µs a call.
    Function,
    /// `EVALSHA` of the script: Redis before 7.0, or a user the ACL lets run scripts only.
    Script,
}

/// Loads the decisions' Lua on `connection`: the script always (it is also what a Redis that
/// lost the function falls back to), the function library where Redis has functions. A Redis
/// Cluster loads the library on every master.
pub(super) async fn load_decider<C: ConnectionLike>(connection: &mut C) -> RedisResult<Via> {
    DECIDER.script.load_async(connection).await?;
    load_library(connection).await
}

async fn load_library<C: ConnectionLike>(connection: &mut C) -> RedisResult<Via> {
    let loaded = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(&DECIDER.library)
        .query_async::<redis::Value>(connection)
        .await;
    match loaded {
        Ok(_) => Ok(Via::Function),
        // Loaded before, by this process or another of the same version.
        Err(e) if e.to_string().contains("already exists") => Ok(Via::Function),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
        Err(e) => {
            tracing::debug!("rate limiter: Redis functions unavailable ({e}); using scripts");
            Ok(Via::Script)
        }
    }
}

/// Sends a decisions call (`build` writes it for either way of calling); when Redis lost the
/// Lua it names (a restart, a flush), loads it and sends the call again, once, as a script if
/// Redis no longer takes the function.
async fn query_decisions<C: ConnectionLike>(
    build: impl Fn(Via) -> redis::Cmd,
    via: Via,
    connection: &mut C,
) -> RedisResult<redis::Value> {
    if via == Via::Script {
        return query(&build(Via::Script), Some(&DECIDER.script), connection).await;
    }
    let command = build(Via::Function);
    match command.query_async(connection).await {
        Err(e) if e.to_string().contains("Function not found") => {
            match load_library(connection).await? {
                Via::Function => command.query_async(connection).await,
                Via::Script => query(&build(Via::Script), Some(&DECIDER.script), connection).await,
            }
        }
        answer => answer,
    }
}

pub(super) fn key_of(prefix: &str, check: &Check) -> String {
    format!("{prefix}:{{{:016x}}}:{:032x}", check.group, check.key)
}

pub(super) async fn connect_manager(
    client: redis::Client,
    options: &RedisOptions,
) -> Result<(ConnectionManager, Via), StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.timeout.max(Duration::from_millis(200))))
        .set_response_timeout(Some(options.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let mut manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(redis_error)?;
    // Loaded now, so that the first decisions do not pay for it within their timeout.
    let via = load_decider(&mut manager).await.map_err(redis_error)?;
    Ok((manager, via))
}

/// Sends a batch of decisions in one call and answers each; the error when the call failed
/// (each decision then has it).
pub(super) async fn send_batch(
    mut manager: ConnectionManager,
    via: Via,
    options: Arc<RedisOptions>,
    mut batch: Vec<Job>,
) -> Result<(), StoreError> {
    // A caller that gave up (timed out, its client gone) was answered by the failure policy:
    // deciding it now would charge a request that may have been refused.
    batch.retain(|job| !job.done.is_closed());
    if batch.is_empty() {
        return Ok(());
    }
    let decisions: Vec<Decide<'_>> = batch
        .iter()
        .map(|job| Decide {
            checks: &job.checks,
            now: job.now,
            charge: job.charge,
        })
        .collect();
    match call(via, &mut manager, &options, &decisions).await {
        Ok(answers) => {
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.done.send(answer);
            }
            Ok(())
        }
        Err(error) => {
            for job in batch {
                let _ = job.done.send(Err(error.clone()));
            }
            Err(error)
        }
    }
}

/// Sends `command`; when it is an `EVALSHA` of `script` that Redis no longer has (restarted,
/// flushed), loads the script and sends it again, once.
pub(super) async fn query<T: FromRedisValue, C: ConnectionLike>(
    command: &redis::Cmd,
    script: Option<&Script>,
    connection: &mut C,
) -> RedisResult<T> {
    match (command.query_async(connection).await, script) {
        (Err(e), Some(script))
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            script.load_async(connection).await?;
            command.query_async(connection).await
        }
        (answer, _) => answer,
    }
}

/// One decision of a script call.
pub(super) struct Decide<'a> {
    pub(super) checks: &'a [Check],
    pub(super) now: UnixNanos,
    pub(super) charge: bool,
}

/// One script call deciding `decisions` in order; one answer per decision.
pub(super) async fn call<C: ConnectionLike>(
    via: Via,
    connection: &mut C,
    options: &RedisOptions,
    decisions: &[Decide<'_>],
) -> Result<Vec<Result<Verdict, StoreError>>, StoreError> {
    let server_time = options.time == TimeSource::Server;
    let reply = query_decisions(
        |via| decisions_command(via, options, decisions),
        via,
        connection,
    )
    .await
    .map_err(redis_error)?;
    read_reply(reply, decisions, server_time)
}

/// The decisions call of `decisions`, by `via`: written in one buffer (keys, then arguments),
/// without a string per argument, since this is the path every decision takes.
fn decisions_command(via: Via, options: &RedisOptions, decisions: &[Decide<'_>]) -> redis::Cmd {
    let server_time = options.time == TimeSource::Server;
    let keys: usize = decisions.iter().map(|d| d.checks.len()).sum();
    let mut command = match via {
        Via::Function => redis::cmd("FCALL").arg(&DECIDER.function).to_owned(),
        Via::Script => redis::cmd("EVALSHA")
            .arg(DECIDER.script.get_hash())
            .to_owned(),
    };
    command.arg(keys);
    let mut key = Vec::with_capacity(options.prefix.len() + 56);
    for check in decisions.iter().flat_map(|d| d.checks) {
        key.clear();
        write_key(&mut key, &options.prefix, check);
        command.arg(&key[..]);
    }
    // Each limit once (a batch mostly holds a few): checks name theirs by its place.
    let mut specs: SmallVec<[Spec; 8]> = SmallVec::new();
    let mut places: SmallVec<[usize; 64]> = SmallVec::new();
    for check in decisions.iter().flat_map(|d| d.checks) {
        let spec = Spec::of(check);
        let place = match specs.iter().position(|s| *s == spec) {
            Some(place) => place,
            None => {
                specs.push(spec);
                specs.len() - 1
            }
        };
        places.push(place + 1);
    }
    command
        .arg(if server_time { "server" } else { "client" })
        .arg(specs.len());
    for spec in &specs {
        spec.write(&mut command);
    }
    command.arg(decisions.len());
    let mut places = places.into_iter();
    for Decide {
        checks,
        now,
        charge,
    } in decisions
    {
        // A peek is told by a negative number of checks.
        let count = checks.len() as i64;
        command
            .arg(if *charge { count } else { -count })
            .arg(now / 1_000);
        for (check, place) in checks.iter().zip(places.by_ref()) {
            command.arg(place).arg(check.cost);
            // A probe is told by a max wait of -1: evaluated, never written.
            if check.probe {
                command.arg(-1);
            } else {
                command.arg(check.max_wait / 1_000);
            }
        }
    }
    command
}

/// A limit as `decide.lua` is told it, once per call: algorithm, limit, period, capacity.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Spec {
    algorithm: u8,
    limit: u32,
    period: u32,
    capacity: u32,
}

impl Spec {
    fn of(check: &Check) -> Spec {
        Spec {
            algorithm: algorithm_code(check),
            limit: check.limit.quota.limit(),
            period: check.limit.quota.period_secs(),
            capacity: check.limit.capacity.get(),
        }
    }

    fn write(&self, command: &mut redis::Cmd) {
        command
            .arg(self.algorithm)
            .arg(self.limit)
            .arg(self.period)
            .arg(self.capacity);
    }
}

/// Writes the arguments `lease.lua` and `refund.lua` begin each check with: its algorithm, the
/// quota's limit and period, the capacity and the cost.
pub(super) fn write_limit(command: &mut redis::Cmd, check: &Check) {
    Spec::of(check).write(command);
    command.arg(check.cost);
}

/// Writes `check`'s key, as [`key_of`] makes it, into `out`.
fn write_key(out: &mut Vec<u8>, prefix: &str, check: &Check) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |out: &mut Vec<u8>, value: u128, digits: u32| {
        out.extend(
            (0..digits)
                .rev()
                .map(|i| HEX[((value >> (4 * i)) & 0xf) as usize]),
        );
    };
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(b":{");
    hex(out, u128::from(check.group), 16);
    out.extend_from_slice(b"}:");
    hex(out, check.key, 32);
}

pub(super) async fn with_timeout<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::timeout(format!(
            "Redis did not answer within {limit:?}"
        ))),
    }
}

/// `t` on Redis's clock (`from`) as the same distance from `to`.
pub(super) fn shift(t: UnixNanos, from: UnixNanos, to: UnixNanos) -> UnixNanos {
    to.saturating_add(t.saturating_sub(from))
}

pub(super) fn redis_error(e: redis::RedisError) -> StoreError {
    let message = format!("Redis: {e}");
    if e.is_timeout() {
        return StoreError::timeout(message);
    }
    // The script's own refusal of a key it does not recognise: that decision's fault, not Redis's.
    if message.contains(CORRUPT) {
        return StoreError::unsupported(message);
    }
    StoreError::new(message)
}

/// What the script raises for a key holding another type or a corrupt state.
const CORRUPT: &str = "ratelimit: a key holds another type or a corrupt state";

/// The script's number for `check`'s arithmetic: one per algorithm, and GCRA's second,
/// nanosecond form above 10,000 per second.
pub(super) fn algorithm_code(check: &Check) -> u8 {
    match check.algorithm {
        AlgorithmKind::FixedWindow => 1,
        AlgorithmKind::SlidingWindow => 2,
        AlgorithmKind::SlidingLog => 3,
        AlgorithmKind::TokenBucket => 4,
        AlgorithmKind::LeakyBucket => 5,
        AlgorithmKind::Gcra if gcra_in_nanos(&check.limit) => 7,
        AlgorithmKind::Gcra => 6,
    }
}

/// Refuses a check whose arithmetic would not be exact in the script's doubles. The limiter
/// refuses such rules before they reach the store; this guards the store used on its own.
pub(super) fn exact_check(check: &Check) -> Result<(), StoreError> {
    exact_in_redis(check.algorithm, &check.limit, check.cost).map_err(|why| {
        StoreError::unsupported(format!(
            "{} ({} per {} s, capacity {}) cannot be decided exactly: {why}",
            check.algorithm,
            check.limit.quota.limit(),
            check.limit.quota.period_secs(),
            check.limit.capacity
        ))
    })
}

/// The answers of a script call's `reply` to `decisions`, in order.
pub(super) fn read_reply(
    reply: redis::Value,
    decisions: &[Decide<'_>],
    server_time: bool,
) -> Result<Vec<Result<Verdict, StoreError>>, StoreError> {
    parse_reply(&integers(&reply)?, decisions, server_time)
}

/// `[server now, per decision: outcome (1, 0, -1), (allowed, remaining, reset, retry) per
/// check]`, times in µs. On server time, instants move by the difference between Redis's clock
/// and the limiter's, so that Retry-After is right even on a server whose clock is skewed.
fn parse_reply(
    reply: &[i64],
    decisions: &[Decide<'_>],
    server_time: bool,
) -> Result<Vec<Result<Verdict, StoreError>>, StoreError> {
    let garbage = || StoreError::new(format!("Redis answered an unexpected reply: {reply:?}"));
    let expected = 1 + decisions
        .iter()
        .map(|d| 1 + 4 * d.checks.len())
        .sum::<usize>();
    let Some((server_now, mut rest)) = reply.split_first() else {
        return Err(garbage());
    };
    if reply.len() != expected {
        return Err(garbage());
    }
    let micros = |t: i64| {
        u64::try_from(t)
            .map(|t| t.saturating_mul(1_000))
            .map_err(|_| garbage())
    };
    let server_now = micros(*server_now)?;
    let mut answers = Vec::with_capacity(decisions.len());
    for Decide { checks, now, .. } in decisions {
        let (&outcome, values) = rest.split_first().ok_or_else(garbage)?;
        let (values, more) = values.split_at(4 * checks.len());
        rest = more;
        if outcome == -1 {
            answers.push(Err(StoreError::unsupported(format!(
                "Redis refused the decision: {CORRUPT}"
            ))));
            continue;
        }
        if !matches!(outcome, 0 | 1) {
            return Err(garbage());
        }
        let at = |t: i64| {
            micros(t).map(|t| {
                if server_time {
                    shift(t, server_now, *now)
                } else {
                    t
                }
            })
        };
        let mut decisions: SmallVec<[Decision; 4]> = SmallVec::new();
        for (v, check) in values.chunks_exact(4).zip(checks.iter()) {
            decisions.push(Decision {
                allowed: flag(v[0]).ok_or_else(garbage)?,
                limit: check.reported_limit(),
                remaining: u32::try_from(v[1]).map_err(|_| garbage())?,
                reset_at: at(v[2])?,
                retry_at: at(v[3])?,
            });
        }
        // The outcome is every check's flag together: an admission that a check refused (or a
        // refusal that none did) is not the script's.
        if decisions.iter().all(|d| d.allowed) != (outcome == 1) {
            return Err(garbage());
        }
        answers.push(Ok(Verdict {
            decisions,
            allowed: outcome == 1,
        }));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Limit;
    use crate::quota::Quota;

    fn check(algorithm: AlgorithmKind, limit: u32, per: u32) -> Check {
        let limit = Limit::new(Quota::from_parts(limit, per).unwrap());
        Check {
            key: 1,
            group: 2,
            algorithm,
            limit,
            cost: 1,
            max_wait: 0,
            probe: false,
        }
    }

    fn decide(checks: &[Check], now: UnixNanos) -> Decide<'_> {
        Decide {
            checks,
            now,
            charge: true,
        }
    }

    #[test]
    fn replies_are_split_per_decision_and_garbage_refused() {
        let one = [check(AlgorithmKind::Gcra, 10, 1)];
        let two = [
            check(AlgorithmKind::Gcra, 10, 1),
            check(AlgorithmKind::FixedWindow, 5, 1),
        ];
        let batch = [decide(&one, 0), decide(&two, 0)];
        let reply = [7, 1, 1, 9, 5, 6, -1, 0, 0, 0, 0, 0, 0, 0, 0];
        let answers = parse_reply(&reply, &batch, false).unwrap();
        assert_eq!(answers[0].as_ref().unwrap().decisions[0].retry_at, 6_000);
        assert!(answers[1].is_err(), "a failed decision fails alone");
        assert!(parse_reply(&[], &batch, false).is_err());
        assert!(
            parse_reply(&reply[..10], &batch, false).is_err(),
            "too short"
        );
        let mut bad = reply;
        bad[1] = 7;
        assert!(parse_reply(&bad, &batch, false).is_err(), "not an outcome");
        let mut negative = reply;
        negative[3] = -9;
        assert!(
            parse_reply(&negative, &batch, false).is_err(),
            "negative remaining"
        );
    }

    #[test]
    fn keys_are_written_as_they_are_named() {
        let check = Check {
            key: 0xdead_beef,
            group: u64::MAX - 1,
            ..check(AlgorithmKind::Gcra, 10, 1)
        };
        let mut written = Vec::new();
        write_key(&mut written, "app", &check);
        assert_eq!(written, key_of("app", &check).into_bytes());
    }

    #[test]
    fn server_time_is_reported_on_the_limiter_clock() {
        let one = [check(AlgorithmKind::Gcra, 10, 1)];
        // Redis's clock is 5 s ahead of ours; retry 2 s after its now.
        let batch = [decide(&one, 100_000_000_000)];
        let reply = [105_000_000, 0, 0, 0, 107_000_000, 107_000_000];
        let verdict = parse_reply(&reply, &batch, true)
            .unwrap()
            .remove(0)
            .unwrap();
        assert_eq!(verdict.decisions[0].retry_at, 102_000_000_000);
    }

    #[test]
    fn quotas_beyond_exact_doubles_are_refused_before_a_round_trip() {
        assert!(exact_check(&check(AlgorithmKind::TokenBucket, 100_000, 86_400)).is_ok());
        let too_large = exact_check(&check(AlgorithmKind::TokenBucket, 2_000_000, 86_400 * 30));
        assert!(too_large.is_err_and(|e| e.is_unsupported() && e.to_string().contains("2^53")));
        assert!(exact_check(&check(AlgorithmKind::Gcra, 50_000, 1)).is_ok());
    }

    #[test]
    fn gcra_above_ten_thousand_per_second_takes_its_nanosecond_form() {
        assert_eq!(algorithm_code(&check(AlgorithmKind::Gcra, 10_000, 1)), 6);
        assert_eq!(algorithm_code(&check(AlgorithmKind::Gcra, 50_000, 1)), 7);
        assert_eq!(
            algorithm_code(&check(AlgorithmKind::TokenBucket, 50_000, 1)),
            4
        );
    }
}
