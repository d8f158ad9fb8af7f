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

use redis::aio::ConnectionManager;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

mod lane;
mod lease;
mod options;
mod refund;
mod reply;
#[cfg(test)]
mod reply_properties;
mod sentinel;
mod tls;
mod url;
mod wire;

pub use lease::{can_lease, Grant, LeaseAnswer, LeaseAsk, LEASE_SHARE, WINDOW_LEASE_SHARE};
pub use options::{RedisOptions, TimeSource};
pub(crate) use sentinel::SentinelSpec;
pub(crate) use tls::{is_insecure, is_tls};
pub use tls::{ClientCertificate, RedisTls};
pub(crate) use url::redacted;

use crate::clock::UnixNanos;
use crate::store::{Check, Store, StoreError, Verdict};
use lane::Lanes;
use reply::{flag, integers};
use sentinel::{Endpoint, Master};
use wire::{
    call, connect_manager, exact_check, key_of, load_decider, query, redis_error, send_batch,
    with_timeout, Decide, Job, Via, MAX_BATCH,
};

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
    Cluster(ClusterConnection, Via),
}

struct Single {
    work: mpsc::UnboundedSender<Work>,
    lanes: Lanes,
}

/// What the store's thread serves: where it connects, and what it is asked.
struct Serve {
    endpoint: Endpoint,
    options: Arc<RedisOptions>,
    queue: mpsc::UnboundedReceiver<Work>,
    ready: oneshot::Sender<Result<(), StoreError>>,
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

impl RedisStore {
    /// Connects to one Redis (`redis://host:port/db`), reconnecting by itself when the
    /// connection drops. The connection lives on a thread of the store's own, which ends when
    /// the store (and every clone) is dropped.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let client = if tls::is_tls(url) {
            redis::Client::build_with_tls(url, options.tls.certificates())
        } else {
            redis::Client::open(url)
        }
        .map_err(|e| StoreError::new(format!("invalid Redis URL: {e}")))?;
        RedisStore::start(Endpoint::Direct(Arc::new(client)), options).await
    }

    /// Connects to the master that the sentinels at `sentinels` name `master`, and follows it
    /// through failovers: when a call fails, the sentinels are asked again, and once they name
    /// another node every connection is remade to it. `master` is the name, or a URL whose
    /// host is the name and whose user, password, database and scheme (`rediss://`) are the
    /// master's; with a name alone the master takes the sentinels' user, password and TLS.
    /// The sentinels' own user and password come from their URLs (the same for all).
    pub async fn connect_sentinel<S: AsRef<str>>(
        master: &str,
        sentinels: &[S],
        options: RedisOptions,
    ) -> Result<RedisStore, StoreError> {
        let sentinels: Vec<String> = sentinels.iter().map(|s| s.as_ref().to_string()).collect();
        let master = Arc::new(Master::new(master, &sentinels, &options)?);
        RedisStore::start(Endpoint::Sentinel(master), options).await
    }

    /// Starts the store's thread, connected to `endpoint`.
    async fn start(endpoint: Endpoint, options: RedisOptions) -> Result<RedisStore, StoreError> {
        let options = Arc::new(options);
        let (jobs, queue) = mpsc::unbounded_channel();
        let (ready, connected) = oneshot::channel();
        let serve = Serve {
            endpoint: endpoint.clone(),
            options: Arc::clone(&options),
            queue,
            ready,
        };
        let lanes = Lanes::new(endpoint, Arc::clone(&options));
        std::thread::Builder::new()
            .name("ratelimit-redis".into())
            .spawn(move || serve_decisions(serve))
            .map_err(|e| StoreError::new(format!("cannot start the Redis thread: {e}")))?;
        // Long enough for the connection's own retries to end with their reason (a refused
        // certificate, a wrong password), which the limiter logs: it connects in the
        // background, so no request waits for this.
        let wait = options.timeout.max(Duration::from_secs(5));
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
        let mut builder = ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(options.timeout.max(Duration::from_millis(200)))
            .response_timeout(options.timeout)
            .retries(2);
        if nodes.iter().any(|node| tls::is_tls(node)) {
            builder = builder.certs(options.tls.certificates());
        }
        let client = builder
            .build()
            .map_err(|e| StoreError::new(format!("invalid Redis Cluster nodes: {e}")))?;
        let (connection, via) = with_timeout(options.timeout.max(Duration::from_secs(2)), async {
            let mut connection = client.get_async_connection().await.map_err(redis_error)?;
            // On every master: a decision goes to the one holding its keys.
            let via = load_decider(&mut connection).await.map_err(redis_error)?;
            Ok((connection, via))
        })
        .await?;
        Ok(RedisStore {
            connection: Connection::Cluster(connection, via),
            options: Arc::new(options),
        })
    }

    /// The Redis key of a check: `{prefix}:{tag}:{key}`, the tag shared by the checks of one
    /// decision so that Redis Cluster keeps them in one slot.
    pub fn key_of(&self, check: &Check) -> String {
        key_of(&self.options.prefix, check)
    }
}

impl Store for RedisStore {
    async fn decide(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        self.run(checks, now, true).await
    }

    async fn peek(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        self.run(checks, now, false).await
    }

    async fn refund(
        &self,
        checks: &[Check],
        charged_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<(), StoreError> {
        self.refund_checks(checks, charged_at, now).await
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
                Connection::Cluster(connection, via) => {
                    let mut connection = connection.clone();
                    let decisions = [Decide {
                        checks,
                        now,
                        charge,
                    }];
                    let mut answers =
                        call(*via, &mut connection, &self.options, &decisions).await?;
                    answers
                        .pop()
                        .unwrap_or_else(|| Err(StoreError::new("Redis answered no decision")))
                }
            }
        };
        with_timeout(self.options.timeout, answer).await
    }
}

/// How often the store's thread tries to connect to a new master that does not answer yet.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// The store's thread: connects, then sends waiting decisions in batches until the store is
/// dropped. Behind Sentinel it also asks the sentinels again when calls fail, and remakes its
/// connection when they name another master.
fn serve_decisions(
    Serve {
        endpoint,
        options,
        mut queue,
        ready,
    }: Serve,
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
        if let Endpoint::Sentinel(master) = &endpoint {
            if let Err(e) = master.resolve(&options).await {
                let _ = ready.send(Err(e));
                return;
            }
            tokio::spawn(Arc::clone(master).watch(Arc::clone(&options)));
        }
        let connect = |endpoint: &Endpoint| {
            let (options, endpoint) = (Arc::clone(&options), endpoint.clone());
            async move {
                let (client, generation) = endpoint.current()?;
                let manager = connect_manager(client, &options).await;
                if manager.is_err() {
                    endpoint.failed();
                }
                Ok::<_, StoreError>((manager?, generation))
            }
        };
        let ((mut manager, mut via), mut generation) = match connect(&endpoint).await {
            Ok(connected) => connected,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut last_try: Option<tokio::time::Instant> = None;
        while let Some(first) = queue.recv().await {
            let due = last_try.is_none_or(|at| at.elapsed() >= RECONNECT_EVERY);
            if endpoint.generation() != generation && due {
                // Another master: its connection is made before the work goes on; should it
                // fail, the old one serves (its calls fail) until the next try, a quarter of
                // a second later at the soonest.
                last_try = Some(tokio::time::Instant::now());
                match connect(&endpoint).await {
                    Ok(((new, new_via), new_generation)) => {
                        (manager, via, generation) = (new, new_via, new_generation);
                    }
                    Err(e) => tracing::debug!("rate limiter: {e}"),
                }
            }
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(work) = next.take() {
                match work {
                    Work::Decide(job) => batch.push(job),
                    Work::Command(command) => {
                        tokio::spawn(send_command(manager.clone(), endpoint.clone(), command));
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
            let (manager, options) = (manager.clone(), Arc::clone(&options));
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                if let Err(error) = send_batch(manager, via, options, batch).await {
                    endpoint.failed_with(&error);
                }
            });
        }
    });
}

async fn send_command(
    mut manager: ConnectionManager,
    endpoint: Endpoint,
    Command {
        command,
        script,
        done,
    }: Command,
) {
    let answer = query(&command, script, &mut manager)
        .await
        .map_err(redis_error);
    if let Err(error) = &answer {
        endpoint.failed_with(error);
    }
    if let Some(done) = done {
        let _ = done.send(answer);
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.connection {
            Connection::Single(single) if single.lanes.is_sentinel() => "sentinel",
            Connection::Single(..) => "single",
            Connection::Cluster(..) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("connection", &kind)
            .field("options", &self.options)
            .finish()
    }
}
