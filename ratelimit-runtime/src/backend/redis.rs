//! A limiter on Redis: the store a fleet shares, its leases and local cache of denials, and
//! the failure policy that answers while Redis fails (feature `redis`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::sync::{Notify, OnceCell};

use super::resync::{Owed, Unsynced, MAX_KEYS};
use super::{take_in_memory, Outcome};
use crate::clock::{Clock, UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;
use crate::leases::{LeaseStats, LeaseTable, Leases, Spent};
use crate::metrics::StoreLabel;
use crate::slots::{slot_id, Held, SlotAnswer};
use crate::store::{
    redacted, BlockedKeys, Check, LeaseAsk, MemoryStore, RedisOptions, RedisStore, Store,
    StoreError, Verdict,
};

/// What a limiter on Redis does when Redis fails (unreachable, too slow, an error, a garbage
/// reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Decide in process memory meanwhile (limits then count per process, not per fleet), log
    /// the switch once, count the decisions, and go back to Redis by itself once it answers.
    /// The default: never a 5xx, never an unlimited request.
    #[default]
    Fallback,
    /// Let requests through unlimited meanwhile (no rate-limit headers); logged and counted.
    FailOpen,
    /// Refuse requests meanwhile with `503 Service Unavailable` and `Retry-After`.
    FailClosed,
}

/// Where Redis is. Shown (`Debug`, `Display`, logs) with any password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis: `redis://host:port/db`.
    Single(String),
    /// A Redis Cluster, through any of its nodes.
    Cluster(Vec<String>),
    /// The master that a set of sentinels names, followed through failovers.
    Sentinel {
        /// Its name (`mymaster`), or a URL whose host is the name and whose user, password,
        /// database and scheme are the master's (`rediss://app:secret@mymaster/0`); with a
        /// name alone the master takes the user, password and TLS of the sentinels' URLs.
        master: String,
        /// The sentinels' URLs (`redis://:password@h1:26379`), one user and password for all.
        sentinels: Vec<String>,
    },
}

impl RedisTarget {
    /// Its URLs: the one, or every node's.
    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        let urls: &[String] = match self {
            RedisTarget::Single(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(nodes)
            | RedisTarget::Sentinel {
                sentinels: nodes, ..
            } => nodes,
        };
        let master = match self {
            RedisTarget::Sentinel { master, .. } if master.contains("://") => Some(master.as_str()),
            _ => None,
        };
        urls.iter().map(String::as_str).chain(master)
    }

    /// What is wrong with it, where it can be known before connecting: a Sentinel
    /// configuration without its master's name or sentinels, say.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            RedisTarget::Sentinel { master, sentinels } => {
                crate::store::SentinelSpec::parse(master, sentinels).map(drop)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Single(url) => write!(f, "Redis at {}", redacted(url)),
            RedisTarget::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| redacted(n)).collect();
                write!(f, "the Redis Cluster at {}", nodes.join(","))
            }
            RedisTarget::Sentinel { master, sentinels } => {
                let sentinels: Vec<String> = sentinels.iter().map(|n| redacted(n)).collect();
                write!(
                    f,
                    "the Redis master {} of the sentinels at {}",
                    redacted(master),
                    sentinels.join(",")
                )
            }
        }
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Single(url) => f.debug_tuple("Single").field(&redacted(url)).finish(),
            RedisTarget::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| redacted(n)).collect();
                f.debug_tuple("Cluster").field(&nodes).finish()
            }
            RedisTarget::Sentinel { master, sentinels } => {
                let sentinels: Vec<String> = sentinels.iter().map(|n| redacted(n)).collect();
                f.debug_struct("Sentinel")
                    .field("master", &redacted(master))
                    .field("sentinels", &sentinels)
                    .finish()
            }
        }
    }
}

/// Counters of a limiter on Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Redis decisions that failed, whatever the kind.
    pub errors: u64,
    /// Of those, decisions Redis did not answer in time.
    pub timeouts: u64,
    /// Of those, decisions refused for the rule itself, while Redis stays in use for the rest:
    /// a limit Redis cannot decide exactly (known only per request, a tier function's; answered
    /// `500`, never decided elsewhere), or a key holding something else (answered by the
    /// failure policy).
    pub refused: u64,
    /// Decisions made by the failure policy instead of Redis.
    pub degraded_decisions: u64,
    /// Denials answered from the local cache of blocked keys, without Redis.
    pub blocked_cache_hits: u64,
    /// Whether Redis is considered down now.
    pub degraded: bool,
    /// Leases of Redis budgets, when they are on.
    pub leases: Option<LeaseStats>,
    /// Units admitted in process memory while Redis was away (the fallback) and charged to
    /// Redis once it answered again.
    pub resynced_units: u64,
    /// Units admitted in process memory while Redis was away that will not be charged: their
    /// key found the table of keys to resync full, or Redis refuses the key.
    pub unsynced_dropped_units: u64,
}

/// The shortest concurrency lease: renewed every third of it, it must outlast a round trip.
const MIN_LEASE: Duration = Duration::from_millis(100);

/// How long Redis is left alone after a failure before it is tried again.
const RETRY_AFTER_FAILURE: u64 = NANOS_PER_SEC;
const BLOCKED_KEYS: usize = 100_000;

/// How many times a lease's timer looks at a lease that is not over yet before leaving it to
/// its key's next call.
const TIMER_LOOKS: usize = 64;

/// Until when a denial of a leasable key is first answered from the cache: two lease
/// lifetimes, as the units other processes held in leases when it was made go back to Redis
/// within a lifetime (and a timer's tick) of their grant. Redis is then asked once more, and a
/// second denial holds to its `retry_at` (see [`BlockedKeys::remember_until`]). A denial
/// cached to the end of the window at once would strand those units: every process that saw
/// a denial would stop asking.
fn denied_until(leases: &LeaseTable, now: UnixNanos) -> UnixNanos {
    let lifetime = u64::try_from(leases.lifetime().as_nanos()).unwrap_or(u64::MAX);
    now.saturating_add(lifetime.saturating_mul(2))
}

pub(crate) struct RedisBackend {
    target: RedisTarget,
    options: RedisOptions,
    policy: FailurePolicy,
    store: OnceCell<RedisStore>,
    /// The mark of the fleet's key-naming secret, compared with the one Redis holds.
    fleet_mark: String,
    /// Whether a connection attempt is under way, and its end announced.
    connecting: AtomicBool,
    /// Why the last connection attempt failed, if it did.
    connect_error: std::sync::Mutex<Option<String>>,
    connected: Notify,
    blocked: BlockedKeys,
    /// Units of Redis budgets held here, when leases are on.
    leases: Option<LeaseTable>,
    /// The limiter's clock, for leases that end while their keys are quiet.
    clock: Arc<dyn Clock>,
    /// Until when (limiter time) Redis is skipped after a failure.
    skip_until: AtomicU64,
    degraded: AtomicBool,
    /// Seeds keys for the in-memory fallback.
    local_seed: ahash::RandomState,
    /// Failures other than timeouts and refusals; `errors` is the sum of the three kinds.
    failures: AtomicU64,
    timeouts: AtomicU64,
    refused: AtomicU64,
    degraded_decisions: AtomicU64,
    /// What the fallback admitted, to charge to Redis once it answers again.
    unsynced: Unsynced,
    /// Whether a resync is under way.
    resyncing: AtomicBool,
}

impl RedisBackend {
    pub(crate) fn new(
        target: RedisTarget,
        options: RedisOptions,
        policy: FailurePolicy,
        leases: Option<Leases>,
        fleet_mark: String,
        clock: Arc<dyn Clock>,
    ) -> RedisBackend {
        RedisBackend {
            target,
            options,
            fleet_mark,
            policy,
            store: OnceCell::new(),
            connecting: AtomicBool::new(false),
            connect_error: std::sync::Mutex::new(None),
            connected: Notify::new(),
            blocked: BlockedKeys::new(BLOCKED_KEYS),
            leases: leases.map(LeaseTable::new),
            clock,
            skip_until: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            local_seed: ahash::RandomState::new(),
            failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            degraded_decisions: AtomicU64::new(0),
            unsynced: Unsynced::new(MAX_KEYS),
            resyncing: AtomicBool::new(false),
        }
    }

    /// Where limits are kept and what happens when Redis fails, in words for a log line.
    pub(crate) fn describe(&self) -> String {
        format!(
            "on {}; when it fails: {}; leases {}",
            self.target,
            match self.policy {
                FailurePolicy::Fallback => "fall back to process memory",
                FailurePolicy::FailOpen => "let requests through (fail open)",
                FailurePolicy::FailClosed => "refuse with 503 (fail closed)",
            },
            if self.leases.is_some() { "on" } else { "off" },
        )
    }

    /// Decides `checks` on Redis without charging them; a failure is the caller's to see.
    pub(crate) async fn peek(
        self: &Arc<Self>,
        checks: &[Check],
        now: UnixNanos,
    ) -> Result<Verdict, StoreError> {
        self.store().await?.peek(checks, now).await
    }

    /// Forgets the state of `checks`: their keys, the local cache of their denials, their
    /// leases and their state in the fallback store.
    pub(crate) async fn reset(
        self: &Arc<Self>,
        memory: &MemoryStore,
        checks: &[Check],
    ) -> Result<(), StoreError> {
        // Redis first: a denial decided before the reset and cached after the cache was
        // cleared would keep the client blocked here.
        self.store().await?.reset(checks).await?;
        self.blocked.forget(checks);
        if let Some(leases) = &self.leases {
            leases.forget(checks);
        }
        memory.reset_now(&self.local(checks));
        Ok(())
    }

    /// Gives back units charged at `charged_at` by `store`: on Redis, or in the fallback's
    /// memory where it decided (see [`Backend::refund`](super::Backend::refund)).
    pub(crate) async fn refund(
        self: &Arc<Self>,
        memory: &MemoryStore,
        checks: &[Check],
        store: StoreLabel,
        charged_at: UnixNanos,
        now: UnixNanos,
    ) {
        if store == StoreLabel::Fallback {
            return memory.refund_now(&self.local(checks), charged_at, now);
        }
        // Units of a key Redis denied lately are answered from the local cache until the
        // denial's instant: forgotten, so that the units given back can be spent.
        self.blocked.forget(checks);
        let refunded = match self.store().await {
            Ok(store) => store.refund(checks, charged_at, now).await,
            Err(error) => Err(error),
        };
        if let Err(error) = refunded {
            tracing::debug!(
                "rate limiter: units could not be given back ({error}); they stay spent"
            );
        }
    }

    /// Counts a decision refused before it reached Redis: a limit Redis cannot decide exactly.
    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> RedisStats {
        let (failures, timeouts, refused) = (
            self.failures.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        );
        let (resynced_units, unsynced_dropped_units) = self.unsynced.stats();
        RedisStats {
            resynced_units,
            unsynced_dropped_units,
            errors: failures + timeouts + refused,
            timeouts,
            refused,
            degraded_decisions: self.degraded_decisions.load(Ordering::Relaxed),
            blocked_cache_hits: self.blocked.hits(),
            degraded: self.degraded.load(Ordering::Relaxed),
            leases: self.leases.as_ref().map(LeaseTable::stats),
        }
    }
}

impl RedisBackend {
    /// See [`Backend::remember_refused`](super::Backend::remember_refused).
    pub(crate) fn remember_refused(&self, check: &Check, until: UnixNanos, now: UnixNanos) {
        let refused = Decision {
            allowed: false,
            limit: check.reported_limit(),
            remaining: 0,
            reset_at: until,
            retry_at: until,
        };
        let verdict = Verdict {
            decisions: smallvec::smallvec![refused],
            allowed: false,
        };
        self.blocked
            .remember(std::slice::from_ref(check), &verdict, now);
    }

    pub(crate) async fn decide(
        self: &Arc<Self>,
        memory: &MemoryStore,
        checks: &[Check],
        now: UnixNanos,
        leasable: bool,
    ) -> (Outcome, StoreLabel) {
        let leasing = self.leases.as_ref().filter(|_| {
            leasable
                && checks
                    .iter()
                    .all(|c| crate::store::can_lease(c) && c.max_wait == 0 && !c.probe)
                && !repeats_a_key(checks)
        });
        let leases = leasing.filter(|leases| leases.warm(checks, now));
        // Units held here are spent first, even for a key Redis denied lately: they are this
        // process's to spend.
        if let Some(Spent { verdict, refill }) = leases.and_then(|l| l.spend(checks, now)) {
            if !refill.is_empty() {
                self.refill(refill, now);
            }
            return (Outcome::Decided(verdict), StoreLabel::Redis);
        }
        let cached = self.blocked.look(checks, now);
        if let Some(denied) = cached.denied {
            return (Outcome::Decided(denied), StoreLabel::Redis);
        }
        if let Some(leases) = leases {
            if let Some(asks) = leases.plan(checks, now) {
                return self
                    .decide_leasing(memory, leases, &asks, now, cached.second_look)
                    .await;
            }
        }
        if now < self.skip_until.load(Ordering::Relaxed) {
            return self.degrade(memory, checks, now, true);
        }
        match self.ask_redis(checks, now).await {
            Ok(verdict) => {
                self.answered(now);
                if !verdict.allowed {
                    let until = leasing.map_or(UnixNanos::MAX, |l| denied_until(l, now));
                    self.blocked.remember_until(checks, &verdict, now, until);
                } else if cached.second_look {
                    // A second look Redis allowed: the next denial is a first one again.
                    self.blocked.forget(checks);
                }
                (Outcome::Decided(verdict), StoreLabel::Redis)
            }
            Err(error) => {
                self.failed(&error, now);
                // A key Redis refuses (another type) would refuse its resync too.
                let record = !error.is_unsupported();
                self.degrade(memory, checks, now, record)
            }
        }
    }

    /// Decides a request on Redis with a lease call: its checks, and the units worth leasing;
    /// `second_look`: a key's capped denial is over (see [`BlockedKeys::look`]).
    async fn decide_leasing(
        self: &Arc<Self>,
        memory: &MemoryStore,
        leases: &LeaseTable,
        asks: &[LeaseAsk],
        now: UnixNanos,
        second_look: bool,
    ) -> (Outcome, StoreLabel) {
        let checks: SmallVec<[Check; 4]> = asks.iter().map(|a| a.check).collect();
        if now < self.skip_until.load(Ordering::Relaxed) {
            leases.abandon(asks);
            return self.degrade(memory, &checks, now, true);
        }
        match self.lease_call(leases, asks, now).await {
            Some(verdict) => {
                if !verdict.allowed {
                    let until = denied_until(leases, now);
                    self.blocked.remember_until(&checks, &verdict, now, until);
                } else if second_look {
                    self.blocked.forget(&checks);
                }
                (Outcome::Decided(verdict), StoreLabel::Redis)
            }
            None => self.degrade(memory, &checks, now, true),
        }
    }

    /// Asks for the next leases of keys running low, in the background.
    fn refill(self: &Arc<Self>, asks: SmallVec<[LeaseAsk; 4]>, now: UnixNanos) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(leases) = &this.leases {
                this.lease_call(leases, &asks, now).await;
            }
        });
    }

    /// Hands back, once their lifetime is over, what is left of the leases `granted` (each key
    /// with its grant), unless they were spent, refilled or handed back meanwhile. The timer
    /// runs in real time; a lease not over yet on the limiter's clock when it goes off (a
    /// timer early by a hair, a manual clock in tests that has not been moved on) is looked at
    /// again when it should be over, up to [`TIMER_LOOKS`] times, and after that waits for its
    /// key's next call, as it would without the timer.
    fn hand_back_when_over(self: &Arc<Self>, granted: SmallVec<[(Check, u64); 4]>) {
        let Some(leases) = &self.leases else {
            return;
        };
        let first = leases.lifetime() + Duration::from_millis(1);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let Some(leases) = &this.leases else {
                return;
            };
            let (mut granted, mut wait) = (granted, first);
            for _ in 0..TIMER_LOOKS {
                tokio::time::sleep(wait).await;
                let now = this.clock.now();
                let expiry = leases.expired(&granted, now);
                if !expiry.asks.is_empty() {
                    this.lease_call(leases, &expiry.asks, now).await;
                }
                if expiry.later.is_empty() {
                    return;
                }
                granted = expiry.later;
                wait = Duration::from_nanos(expiry.wait) + Duration::from_millis(1);
            }
        });
    }

    /// One lease call: its answer kept in `leases` (the request's verdict), or, when Redis
    /// fails, the asks abandoned and the failure counted (`None`). Dropped before Redis answers
    /// (a client gone, a runtime shutting down), the asks are abandoned all the same, so that
    /// others may ask for the next lease.
    async fn lease_call(
        self: &Arc<Self>,
        leases: &LeaseTable,
        asks: &[LeaseAsk],
        now: UnixNanos,
    ) -> Option<Verdict> {
        let pending = Pending { leases, asks };
        let answer = match self.store().await {
            Ok(store) => store.lease(asks, now).await,
            Err(error) => Err(error),
        };
        // Answered: settled or abandoned below, not by the guard.
        std::mem::forget(pending);
        match answer {
            Ok(answer) => {
                self.answered(now);
                let settled = leases.settle(asks, &answer, now);
                if !settled.granted.is_empty() && answer.handed_back {
                    self.hand_back_when_over(settled.granted);
                }
                Some(settled.verdict)
            }
            Err(error) => {
                leases.abandon(asks);
                self.failed(&error, now);
                None
            }
        }
    }

    /// Takes a slot of a concurrency limit on Redis, or as the failure policy says.
    pub(crate) async fn take_slot(
        self: &Arc<Self>,
        memory: &MemoryStore,
        check: &Check,
        limit: u32,
        now: UnixNanos,
    ) -> (SlotAnswer, StoreLabel) {
        if now >= self.skip_until.load(Ordering::Relaxed) {
            match self.take_on_redis(check, limit).await {
                Ok(answer) => {
                    self.answered(now);
                    return (answer, StoreLabel::Redis);
                }
                Err(error) => self.failed(&error, now),
            }
        }
        self.degraded_decisions.fetch_add(1, Ordering::Relaxed);
        let answer = match self.policy {
            FailurePolicy::Fallback => {
                let local = self.local(std::slice::from_ref(check))[0];
                take_in_memory(memory, local.fingerprint(), limit)
            }
            FailurePolicy::FailOpen => SlotAnswer::Unlimited,
            FailurePolicy::FailClosed => SlotAnswer::Unavailable(self.closed_for(now)),
        };
        (answer, StoreLabel::Fallback)
    }

    async fn take_on_redis(
        self: &Arc<Self>,
        check: &Check,
        limit: u32,
    ) -> Result<SlotAnswer, StoreError> {
        let store = self.store().await?;
        let key = store.slots_key(check.key, check.group);
        let id = slot_id();
        let lease = self.options.lease.max(MIN_LEASE);
        // Dropped while the take is in flight (the client gone), or timed out, the lease may
        // have been taken all the same: the guard gives it back, so that connecting and
        // aborting cannot keep a fleet's slots full for a lease each.
        let pending = PendingSlot {
            store,
            key: &key,
            id: &id,
        };
        let answer = store.take_slot(&key, &id, limit, lease).await;
        match answer {
            Ok(Ok(held)) => {
                std::mem::forget(pending);
                Ok(SlotAnswer::Taken(
                    Held::redis(store.clone(), key, id, lease),
                    held,
                ))
            }
            Ok(Err(held)) => {
                std::mem::forget(pending);
                Ok(SlotAnswer::Full(held))
            }
            Err(error) => Err(error),
        }
    }

    /// Redis answered: back from the fallback, if it was there, and what the fallback admitted
    /// meanwhile charged to Redis.
    fn answered(self: &Arc<Self>, now: UnixNanos) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::warn!("rate limiter: Redis answers again; limits are back on Redis");
        }
        if !self.unsynced.is_empty() {
            self.resync(now);
        }
    }

    /// Charges to Redis, in the background, what the fallback admitted while Redis was away
    /// (see `resync.rs`). One resync at a time; units Redis fails to take wait for the next.
    fn resync(self: &Arc<Self>, now: UnixNanos) {
        if self.resyncing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let owed = this.unsynced.take(now);
            let (keys, mut units, mut failed) = (owed.len(), 0u64, None);
            for owed in owed {
                if failed.is_some() {
                    this.unsynced.put_back(owed);
                    continue;
                }
                match this.charge(owed, now).await {
                    Ok(charged) => {
                        this.unsynced.charged(charged);
                        units += u64::from(charged);
                    }
                    // The key's own fault (it holds another type): asking again will not help.
                    Err(error) if error.is_unsupported() => {
                        this.unsynced.drop_units(owed.check.cost);
                    }
                    Err(error) => {
                        this.unsynced.put_back(owed);
                        failed = Some(error);
                    }
                }
            }
            match failed {
                None => tracing::info!(
                    "rate limiter: charged Redis {units} units of {keys} keys admitted in \
                     process memory while it was away"
                ),
                Some(error) => tracing::warn!(
                    "rate limiter: charging Redis what was admitted in process memory while it \
                     was away failed ({error}); the rest waits until Redis answers again"
                ),
            }
            this.resyncing.store(false, Ordering::Release);
        });
    }

    /// Charges one key's owed units, or as many of them as still fit: a budget is emptied,
    /// never overdrawn. The units charged.
    async fn charge(self: &Arc<Self>, owed: Owed, now: UnixNanos) -> Result<u32, StoreError> {
        let store = self.store().await?;
        let mut check = owed.check;
        // A few tries: others spend the same budget meanwhile.
        for _ in 0..4 {
            if check.cost == 0 {
                break;
            }
            let verdict = store.decide(std::slice::from_ref(&check), now).await?;
            if verdict.allowed {
                return Ok(check.cost);
            }
            let fits = verdict.decisions.first().map_or(0, |d| d.remaining);
            check.cost = fits.min(check.cost - 1);
        }
        Ok(0)
    }

    /// Counts and logs a failed Redis call. A failure of Redis (not of one rule Redis cannot
    /// decide) keeps Redis out of the way for a second and switches to the fallback.
    fn failed(&self, error: &StoreError, now: UnixNanos) {
        if error.is_unsupported() {
            // This decision, not Redis, is at fault (a key holding another type): Redis stays in
            // use for everything else. (Limits Redis cannot decide exactly never get here: the
            // limiter refuses them first, and answers them itself.)
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "rate limiter: {error}; {} for this decision",
                self.policy_in_words()
            );
            return;
        }
        let kind = if error.is_timeout() {
            &self.timeouts
        } else {
            &self.failures
        };
        kind.fetch_add(1, Ordering::Relaxed);
        self.skip_until
            .store(now.saturating_add(RETRY_AFTER_FAILURE), Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!("rate limiter: {error}; {}", self.policy_in_words());
        }
    }

    /// Seconds a fail-closed limiter refuses requests for.
    fn closed_for(&self, now: UnixNanos) -> u64 {
        let until = self.skip_until.load(Ordering::Relaxed);
        until.saturating_sub(now).div_ceil(NANOS_PER_SEC).max(1)
    }

    /// Decides on Redis.
    async fn ask_redis(
        self: &Arc<Self>,
        checks: &[Check],
        now: UnixNanos,
    ) -> Result<Verdict, StoreError> {
        self.store().await?.decide(checks, now).await
    }

    /// The Redis store. The connection is made in the background: a request never waits for it
    /// longer than the decision timeout.
    async fn store(self: &Arc<Self>) -> Result<&RedisStore, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let connected = self.connected.notified();
        self.start_connecting();
        let _ = tokio::time::timeout(self.options.timeout, connected).await;
        self.store.get().ok_or_else(|| {
            let last = self
                .connect_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match last.as_deref() {
                Some(reason) => StoreError::new(format!("not connected to Redis: {reason}")),
                None => StoreError::new("not connected to Redis (yet)"),
            }
        })
    }

    fn start_connecting(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let connection = match &this.target {
                RedisTarget::Single(url) => RedisStore::connect(url, this.options.clone()).await,
                RedisTarget::Cluster(nodes) => {
                    RedisStore::connect_cluster(nodes, this.options.clone()).await
                }
                RedisTarget::Sentinel { master, sentinels } => {
                    RedisStore::connect_sentinel(master, sentinels, this.options.clone()).await
                }
            };
            match connection {
                Ok(store) => {
                    *this
                        .connect_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                    this.compare_fleet_marks(&store).await;
                    drop(this.store.set(store));
                }
                Err(e) => this.connect_failed(&e),
            }
            this.connecting.store(false, Ordering::Release);
            this.connected.notify_waiters();
        });
    }

    /// Remembers why connecting failed, for the decisions that find no connection, and logs it
    /// at error level when the reason is new: a wrong password, a certificate Redis or the
    /// limiter refuses, a plain connection to a TLS port are the operator's to fix.
    fn connect_failed(&self, error: &StoreError) {
        let message = error.to_string();
        let mut last = self
            .connect_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() != Some(message.as_str()) {
            // A plain connection that the server drops at once is most often one to a TLS port.
            let plain = !self.target.urls().any(crate::store::is_tls);
            let hint = if plain && message.contains("reset by peer") {
                " (a TLS port? TLS takes a rediss:// URL)"
            } else {
                ""
            };
            tracing::error!(
                "rate limiter: cannot connect to {}: {message}{hint}; {}",
                self.target,
                self.policy_in_words()
            );
            *last = Some(message);
        }
    }

    /// Leaves this process's secret mark on Redis and says when the last process to connect
    /// before it named keys with another secret: their budgets and ours would count apart.
    async fn compare_fleet_marks(&self, store: &RedisStore) {
        match store.swap_fleet_mark(&self.fleet_mark).await {
            Ok(Some(other)) if other != self.fleet_mark => tracing::error!(
                "rate limiter: another process on this Redis names its keys with a different \
                 RATELIMIT_KEY_SECRET: its limits and this process's count apart (every process \
                 of a fleet must share one secret)"
            ),
            Ok(_) => {}
            Err(e) => tracing::debug!("rate limiter: could not compare key secrets: {e}"),
        }
    }

    /// Decides by the failure policy; under `Fallback`, what it admits is recorded for the
    /// resync when `record`.
    fn degrade(
        &self,
        memory: &MemoryStore,
        checks: &[Check],
        now: UnixNanos,
        record: bool,
    ) -> (Outcome, StoreLabel) {
        self.degraded_decisions.fetch_add(1, Ordering::Relaxed);
        let outcome = match self.policy {
            FailurePolicy::Fallback => {
                let verdict = memory.decide_now(&self.local(checks), now);
                if verdict.allowed && record {
                    self.unsynced.record(checks, now);
                }
                Outcome::Decided(verdict)
            }
            FailurePolicy::FailOpen => Outcome::Unlimited,
            FailurePolicy::FailClosed => Outcome::Unavailable(self.closed_for(now)),
        };
        (outcome, StoreLabel::Fallback)
    }

    /// `checks` as the in-memory fallback keys them: Redis keys come from a public hash, so
    /// they are seeded before they pick memory buckets.
    fn local(&self, checks: &[Check]) -> SmallVec<[Check; 4]> {
        checks
            .iter()
            .map(|c| Check {
                key: u128::from(self.local_seed.hash_one(c.key)),
                ..*c
            })
            .collect()
    }

    fn policy_in_words(&self) -> &'static str {
        match self.policy {
            FailurePolicy::Fallback => "limiting in process memory until Redis answers again",
            FailurePolicy::FailOpen => {
                "letting requests through unlimited until Redis answers again"
            }
            FailurePolicy::FailClosed => "refusing requests with 503 until Redis answers again",
        }
    }
}

/// A lease call under way: abandoned if dropped before its answer (forgotten once answered).
struct Pending<'a> {
    leases: &'a LeaseTable,
    asks: &'a [LeaseAsk],
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.leases.abandon(self.asks);
    }
}

/// Whether two checks share a key (a limit written twice): their units would be counted once
/// against a lease, so such a request is decided on Redis.
fn repeats_a_key(checks: &[Check]) -> bool {
    checks
        .iter()
        .enumerate()
        .any(|(i, c)| checks[..i].iter().any(|d| d.key == c.key))
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("target", &self.target)
            .field("policy", &self.policy)
            .field("options", &self.options)
            .finish()
    }
}

/// A slot take under way on Redis: given back when dropped before it was answered (or when it
/// failed), in one command sent without waiting. On one Redis the give-back follows the take
/// on the same connection, so Redis runs it after the take; on a Cluster the two travel apart
/// and may cross, and a slot taken after its give-back expires with its lease.
struct PendingSlot<'a> {
    store: &'a RedisStore,
    key: &'a str,
    id: &'a str,
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.store.give_slot(self.key, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{AlgorithmKind, Limit};
    use crate::quota::Quota;

    #[test]
    fn passwords_never_show() {
        let cluster = RedisTarget::Cluster(vec!["redis://:pw@a:1".into(), "redis://b:2".into()]);
        let shown = format!("{cluster} {cluster:?}");
        assert!(
            !shown.contains("pw") && shown.contains(":***@a:1"),
            "{shown}"
        );
        let sentinel = RedisTarget::Sentinel {
            master: "redis://app:mpw@mymaster".into(),
            sentinels: vec![
                "redis://:spw@h1:26379".into(),
                "redis://:spw@h2:26379".into(),
            ],
        };
        let shown = format!("{sentinel} {sentinel:?}");
        assert!(
            !shown.contains("pw@")
                && shown.contains("app:***@mymaster")
                && shown.contains(":***@h2"),
            "{shown}"
        );
    }

    #[test]
    fn a_limit_written_twice_repeats_a_key() {
        let check = |key| Check {
            key,
            group: 1,
            algorithm: AlgorithmKind::FixedWindow,
            limit: Limit::new(Quota::from_parts(10, 1).unwrap()),
            cost: 2,
            max_wait: 0,
            probe: false,
        };
        assert!(!repeats_a_key(&[check(1), check(2), check(3)]));
        assert!(repeats_a_key(&[check(1), check(2), check(1)]));
    }
}
