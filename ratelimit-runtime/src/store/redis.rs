//! The Redis store: one limit for a whole fleet, one round trip per decision.
//!
//! Every decision is one call of one script (`decide.lua`), whatever the number of checks: the
//! script reads each key, decides each check with the same arithmetic as the Rust algorithms,
//! and writes all of them or none. The script is loaded once and reloaded by itself after
//! `NOSCRIPT` (a restarted Redis). Keys expire once their state no longer matters. The keys of
//! one decision share a hash tag, so the script runs on Redis Cluster too.
//!
//! On a single Redis, decisions that arrive while others are in flight travel together: each
//! thread that asks for decisions (an Actix worker) has a lane of its own (`lane.rs`), a task
//! on its runtime with its own connection, which sends whatever decisions are waiting as one
//! script call, each still decided (and charged) on its own, in order. Each decision still
//! costs one round trip of latency, but Redis pays the script's fixed cost once per batch
//! rather than once per request, which is most of its cost, and no decision crosses threads
//! (measured in BENCHMARKS.md). The other commands (concurrency slots, resets, leases) go
//! through a thread of the store's own. On a Cluster, decisions go one per call, to the slot of
//! their keys.
//!
//! Redis keeps time in microseconds (Lua numbers are doubles, exact to 2^53): instants go in
//! rounded down to the microsecond and come back as whole microseconds. A limit whose
//! arithmetic would not stay exact is refused before any round trip (see `exact.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, RedisResult, Script};
use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};

use super::exact::{exact_in_redis, gcra_in_nanos};
use super::lane::Lanes;
use super::reply::{flag, integers};
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
    /// How long a concurrency slot stays taken without renewal (default 5 s, at least 100 ms):
    /// a process that dies or loses Redis holds its slots at most this long. A request in
    /// flight renews its slot every third of it.
    pub lease: Duration,
}

impl Default for RedisOptions {
    fn default() -> RedisOptions {
        RedisOptions {
            timeout: Duration::from_millis(50),
            time: TimeSource::Server,
            prefix: "ratelimit".to_string(),
            lease: Duration::from_secs(5),
        }
    }
}

/// Limiter state in Redis or Redis Cluster.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    options: Arc<RedisOptions>,
}

#[derive(Clone)]
enum Connection {
    /// Decisions go on the lane of the thread that asks ([`Lanes`]), in batches; the other
    /// commands (slots, resets, leases) go to the store's thread, one by one.
    Single(Arc<Single>),
    Cluster(ClusterConnection, Script),
}

struct Single {
    work: mpsc::UnboundedSender<Work>,
    lanes: Lanes,
}

/// What the store's thread is asked to do.
// Decisions, the common work, travel unboxed: the enum is a `Job`'s size whatever else it holds.
#[allow(clippy::large_enum_variant)]
enum Work {
    Decide(Job),
    Command(Command),
}

/// A command on its own, and where its answer goes (nowhere for a give-back sent from a drop).
struct Command {
    command: redis::Cmd,
    /// The script an `EVALSHA` command runs, loaded again if Redis lost it.
    script: Option<&'static Script>,
    done: Option<oneshot::Sender<Result<redis::Value, StoreError>>>,
}

/// One decision waiting for a lane or the store's thread.
pub(super) struct Job {
    checks: SmallVec<[Check; 4]>,
    now: UnixNanos,
    /// False for a peek: decided, never written.
    charge: bool,
    pub(super) done: oneshot::Sender<Result<Verdict, StoreError>>,
}

/// The most decisions one script call carries.
pub(super) const MAX_BATCH: usize = 64;

pub(super) fn script() -> Script {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("decide.lua")
    ))
}

impl RedisStore {
    /// Connects to one Redis (`redis://host:port/db`), reconnecting by itself when the
    /// connection drops. The connection lives on a thread of the store's own, which ends when
    /// the store (and every clone) is dropped.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::new(format!("invalid Redis URL: {e}")))?;
        let options = Arc::new(options);
        let (jobs, queue) = mpsc::unbounded_channel();
        let (ready, connected) = oneshot::channel();
        let thread_options = Arc::clone(&options);
        let lanes = Lanes::new(client.clone(), Arc::clone(&options));
        std::thread::Builder::new()
            .name("ratelimit-redis".into())
            .spawn(move || serve_decisions(client, thread_options, queue, ready))
            .map_err(|e| StoreError::new(format!("cannot start the Redis thread: {e}")))?;
        let wait = options.timeout.max(Duration::from_millis(500));
        with_timeout(wait, async {
            connected
                .await
                .unwrap_or_else(|_| Err(StoreError::new("the Redis thread stopped")))
        })
        .await?;
        Ok(RedisStore {
            connection: Connection::Single(Arc::new(Single { work: jobs, lanes })),
            options,
        })
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
        Ok(RedisStore {
            connection: Connection::Cluster(connection, script()),
            options: Arc::new(options),
        })
    }

    /// The Redis key of a check: `{prefix}:{tag}:{key}`, the tag shared by the checks of one
    /// decision so that Redis Cluster keeps them in one slot.
    pub fn key_of(&self, check: &Check) -> String {
        key_of(&self.options.prefix, check)
    }
}

pub(crate) fn key_of(prefix: &str, check: &Check) -> String {
    format!("{prefix}:{{{:016x}}}:{:032x}", check.group, check.key)
}

impl Store for RedisStore {
    async fn decide(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        self.run(checks, now, true).await
    }

    async fn peek(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        self.run(checks, now, false).await
    }

    async fn reset(&self, checks: &[Check]) -> Result<(), StoreError> {
        // One key per command: on a Cluster the keys of several rules may sit in different slots.
        for check in checks {
            let mut command = redis::cmd("DEL");
            command.arg(self.key_of(check));
            self.command(command).await?;
        }
        Ok(())
    }
}

/// Takes a slot of a concurrency limit: drops expired leases, then adds this one if there is
/// room. Returns `{taken (1 or 0), slots held now}`. Redis's clock decides expiry.
const TAKE_SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, id, limit, lease = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local held = redis.call('ZCARD', key)
if held >= limit then return {0, held} end
redis.call('ZADD', key, now + lease, id)
redis.call('PEXPIRE', key, lease)
return {1, held + 1}
";

/// Extends a lease still held: `1`, or `0` when it had expired (the slot is gone).
const RENEW_SLOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, id, lease = KEYS[1], ARGV[1], tonumber(ARGV[2])
local expiry = redis.call('ZSCORE', key, id)
if not expiry or tonumber(expiry) <= now then return 0 end
redis.call('ZADD', key, now + lease, id)
redis.call('PEXPIRE', key, lease)
return 1
";

impl RedisStore {
    /// Writes `mark` (what tells a fleet's key-naming secret apart) for a day, and returns the
    /// mark it replaced.
    pub(crate) async fn swap_fleet_mark(&self, mark: &str) -> Result<Option<String>, StoreError> {
        let mut command = redis::cmd("SET");
        command
            .arg(format!("{}:fleet-key", self.options.prefix))
            .arg(mark)
            .arg("PX")
            .arg(86_400_000)
            .arg("GET");
        redis::from_redis_value(self.command(command).await?)
            .map_err(|e| StoreError::new(format!("Redis answered an unexpected reply: {e}")))
    }

    /// The Redis key of a concurrency limit's slots.
    pub fn slots_key(&self, key: u128, group: u64) -> String {
        format!("{}:{{{group:016x}}}:{key:032x}:slots", self.options.prefix)
    }

    /// Takes one of `limit` slots of `key` under the lease `id`, for `lease` unless renewed:
    /// `Ok(Ok(held))` or `Ok(Err(held))` when all are taken.
    pub async fn take_slot(
        &self,
        key: &str,
        id: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Result<u32, u32>, StoreError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(TAKE_SLOT)
            .arg(1)
            .arg(key)
            .arg(id)
            .arg(limit)
            .arg(lease_millis(lease));
        read_slot(self.command(command).await?)
    }

    /// Extends the lease `id` of `key`; `false` when it had already expired.
    pub async fn renew_slot(
        &self,
        key: &str,
        id: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(RENEW_SLOT)
            .arg(1)
            .arg(key)
            .arg(id)
            .arg(lease_millis(lease));
        let renewed: i64 = redis::from_redis_value(self.command(command).await?)
            .map_err(|e| StoreError::new(format!("Redis answered an unexpected reply: {e}")))?;
        Ok(renewed == 1)
    }

    /// Gives the lease `id` of `key` back, in one round trip, without waiting for the answer:
    /// called from a drop. Should it be lost, the lease expires by itself.
    pub fn give_slot(&self, key: &str, id: &str) {
        let mut command = redis::cmd("ZREM");
        command.arg(key).arg(id);
        match &self.connection {
            Connection::Single(single) => {
                let _ = single.work.send(Work::Command(Command {
                    command,
                    script: None,
                    done: None,
                }));
            }
            Connection::Cluster(connection, _) => {
                let mut connection = connection.clone();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = command.query_async::<()>(&mut connection).await;
                    });
                }
            }
        }
    }

    /// One command, answered within the store's timeout.
    async fn command(&self, command: redis::Cmd) -> Result<redis::Value, StoreError> {
        self.send(command, None).await
    }

    /// An `EVALSHA` of one of the crate's own scripts other than the decisions' (leases),
    /// answered within the store's timeout; the script is loaded again if Redis lost it. The
    /// keys of one call must share a hash tag.
    pub(crate) async fn eval(
        &self,
        script: &'static Script,
        command: redis::Cmd,
    ) -> Result<redis::Value, StoreError> {
        self.send(command, Some(script)).await
    }

    async fn send(
        &self,
        command: redis::Cmd,
        script: Option<&'static Script>,
    ) -> Result<redis::Value, StoreError> {
        let answer = async {
            match &self.connection {
                Connection::Single(single) => {
                    let (done, answer) = oneshot::channel();
                    let sent = single.work.send(Work::Command(Command {
                        command,
                        script,
                        done: Some(done),
                    }));
                    sent.map_err(|_| StoreError::new("the Redis thread stopped"))?;
                    answer
                        .await
                        .unwrap_or_else(|_| Err(StoreError::new("the Redis thread stopped")))
                }
                Connection::Cluster(connection, _) => {
                    let mut connection = connection.clone();
                    query(&command, script, &mut connection)
                        .await
                        .map_err(redis_error)
                }
            }
        };
        with_timeout(self.options.timeout, answer).await
    }
}

impl RedisStore {
    pub(crate) fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// Whether this is a Redis Cluster, where the keys of one call must share a slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(..))
    }
}

fn lease_millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `TAKE_SLOT`'s reply: `Ok(held)` when the slot was taken, `Err(held)` when all are.
pub(super) fn read_slot(reply: redis::Value) -> Result<Result<u32, u32>, StoreError> {
    let reply = integers(&reply)?;
    let garbage = || StoreError::new(format!("Redis answered an unexpected reply: {reply:?}"));
    let [taken, held] = reply[..] else {
        return Err(garbage());
    };
    // A count of slots held is never negative, nor more than a limit (`u32`) holds.
    let held = u32::try_from(held).map_err(|_| garbage())?;
    Ok(if flag(taken).ok_or_else(garbage)? {
        Ok(held)
    } else {
        Err(held)
    })
}

impl RedisStore {
    /// Decides (and charges, unless `charge` is false) `checks` in one round trip.
    async fn run(
        &self,
        checks: &[Check],
        now: UnixNanos,
        charge: bool,
    ) -> Result<Verdict, StoreError> {
        checks.iter().try_for_each(exact_check)?;
        let answer = async {
            match &self.connection {
                Connection::Single(single) => {
                    let (done, answer) = oneshot::channel();
                    let job = Job {
                        checks: checks.iter().copied().collect(),
                        now,
                        charge,
                        done,
                    };
                    let sent = match single.lanes.here() {
                        Some(lane) => lane.send(job).is_ok(),
                        // Not on a single-threaded runtime: the store's thread decides.
                        None => single.work.send(Work::Decide(job)).is_ok(),
                    };
                    if !sent {
                        return Err(StoreError::new("the Redis connection task stopped"));
                    }
                    answer
                        .await
                        .unwrap_or_else(|_| Err(StoreError::new("the Redis thread stopped")))
                }
                Connection::Cluster(_, _) if checks.windows(2).any(|w| w[0].group != w[1].group) => {
                    Err(StoreError::unsupported(
                        "the limits of this handler have different budget names (`shared`), so their keys \
                         live in different Redis Cluster slots and cannot be decided together; give them one name",
                    ))
                }
                Connection::Cluster(connection, script) => {
                    let mut connection = connection.clone();
                    let decisions = [Decide {
                        checks,
                        now,
                        charge,
                    }];
                    let mut answers =
                        call(script, &mut connection, &self.options, &decisions).await?;
                    answers
                        .pop()
                        .unwrap_or_else(|| Err(StoreError::new("Redis answered no decision")))
                }
            }
        };
        with_timeout(self.options.timeout, answer).await
    }
}

/// The store's thread: connects, then sends waiting decisions in batches until the store is
/// dropped.
fn serve_decisions(
    client: redis::Client,
    options: Arc<RedisOptions>,
    mut queue: mpsc::UnboundedReceiver<Work>,
    ready: oneshot::Sender<Result<(), StoreError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(StoreError::new(format!(
                "cannot start the Redis runtime: {e}"
            ))));
            return;
        }
    };
    runtime.block_on(async move {
        let script = script();
        let manager = match connect_manager(client, &options, &script).await {
            Ok(manager) => manager,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while let Some(first) = queue.recv().await {
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(work) = next.take() {
                match work {
                    Work::Decide(job) => batch.push(job),
                    Work::Command(command) => {
                        tokio::spawn(send_command(manager.clone(), command));
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            if batch.is_empty() {
                continue;
            }
            // In flight while the next batch gathers: the connection is multiplexed.
            tokio::spawn(send_batch(
                manager.clone(),
                script.clone(),
                Arc::clone(&options),
                batch,
            ));
        }
    });
}

pub(super) async fn connect_manager(
    client: redis::Client,
    options: &RedisOptions,
    script: &Script,
) -> Result<ConnectionManager, StoreError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.timeout.max(Duration::from_millis(200))))
        .set_response_timeout(Some(options.timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    let mut manager = ConnectionManager::new_with_config(client, config)
        .await
        .map_err(redis_error)?;
    // Loaded now, so that the first decisions do not pay for it within their timeout.
    script.load_async(&mut manager).await.map_err(redis_error)?;
    Ok(manager)
}

pub(super) async fn send_batch(
    mut manager: ConnectionManager,
    script: Script,
    options: Arc<RedisOptions>,
    mut batch: Vec<Job>,
) {
    // A caller that gave up (timed out, its client gone) was answered by the failure policy:
    // deciding it now would charge a request that may have been refused.
    batch.retain(|job| !job.done.is_closed());
    if batch.is_empty() {
        return;
    }
    let decisions: Vec<Decide<'_>> = batch
        .iter()
        .map(|job| Decide {
            checks: &job.checks,
            now: job.now,
            charge: job.charge,
        })
        .collect();
    match call(&script, &mut manager, &options, &decisions).await {
        Ok(answers) => {
            for (job, answer) in batch.into_iter().zip(answers) {
                let _ = job.done.send(answer);
            }
        }
        Err(error) => {
            for job in batch {
                let _ = job.done.send(Err(error.clone()));
            }
        }
    }
}

async fn send_command(
    mut manager: ConnectionManager,
    Command {
        command,
        script,
        done,
    }: Command,
) {
    let answer = query(&command, script, &mut manager)
        .await
        .map_err(redis_error);
    if let Some(done) = done {
        let _ = done.send(answer);
    }
}

/// Sends `command`; when it is an `EVALSHA` of `script` that Redis no longer has (restarted,
/// flushed), loads the script and sends it again, once.
async fn query<T: FromRedisValue, C: ConnectionLike>(
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
async fn call<C: ConnectionLike>(
    script: &Script,
    connection: &mut C,
    options: &RedisOptions,
    decisions: &[Decide<'_>],
) -> Result<Vec<Result<Verdict, StoreError>>, StoreError> {
    // The command is written in one buffer (keys, then arguments), without a string per
    // argument: this is the path every decision takes.
    let server_time = options.time == TimeSource::Server;
    let keys: usize = decisions.iter().map(|d| d.checks.len()).sum();
    let mut command = redis::cmd("EVALSHA");
    command.arg(script.get_hash()).arg(keys);
    let mut key = Vec::with_capacity(options.prefix.len() + 56);
    for check in decisions.iter().flat_map(|d| d.checks) {
        key.clear();
        write_key(&mut key, &options.prefix, check);
        command.arg(&key[..]);
    }
    command
        .arg(if server_time { "server" } else { "client" })
        .arg(decisions.len());
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
        for check in *checks {
            command
                .arg(algorithm_code(check))
                .arg(check.limit.quota.limit())
                .arg(check.limit.quota.period_secs())
                .arg(check.limit.capacity.get())
                .arg(check.cost)
                .arg(check.max_wait / 1_000);
        }
    }
    let reply = query(&command, Some(script), connection)
        .await
        .map_err(redis_error)?;
    read_reply(reply, decisions, server_time)
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

async fn with_timeout<T>(
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
pub(crate) fn shift(t: UnixNanos, from: UnixNanos, to: UnixNanos) -> UnixNanos {
    to.saturating_add(t.saturating_sub(from))
}

fn redis_error(e: redis::RedisError) -> StoreError {
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
pub(crate) fn algorithm_code(check: &Check) -> u8 {
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
pub(crate) fn exact_check(check: &Check) -> Result<(), StoreError> {
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
                limit: reported_limit(check),
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

/// The limit the memory store reports for the same check.
pub(crate) fn reported_limit(check: &Check) -> u32 {
    if check.algorithm.reports_capacity() {
        check.limit.capacity.get()
    } else {
        check.limit.quota.limit()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.connection {
            Connection::Single(..) => "single",
            Connection::Cluster(..) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("connection", &kind)
            .field("options", &self.options)
            .finish()
    }
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
