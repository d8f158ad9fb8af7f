//! Leases: a fleet-wide limit on Redis, spent at in-memory speed (see [`Leases`]).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nohash_hasher::NoHashHasher;
use smallvec::SmallVec;

use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::store::{Check, LeaseAnswer, LeaseAsk, Verdict};

/// Leases of Redis budgets, for [`RateLimiterBuilder::redis_leases`](crate::RateLimiterBuilder::redis_leases).
///
/// A process takes a batch of units of a key's Redis budget in the call that decides a
/// request, and spends them locally, under a shard lock, without Redis. When a lease runs low
/// (a quarter left) it asks for the next one in the background: a fixed window's process keeps
/// spending what it holds meanwhile and adds the next lease to it; a bucket's or GCRA's hands
/// the units left back in that same call. A lease nobody spent to its end goes back when its
/// lifetime is over (a timer: units are stranded for at most one lifetime, or about two for a
/// fixed window's units kept across a refill). How much it asks for follows what this process
/// spent on the key lately (about one lifetime's worth), and Redis grants at most a share of
/// what the budget has left after the request: 1/4 for a fixed window
/// ([`WINDOW_LEASE_SHARE`](crate::store::WINDOW_LEASE_SHARE)), whose leased units die with
/// their window, 1/32 for a bucket or GCRA ([`LEASE_SHARE`](crate::store::LEASE_SHARE)). So
/// leases shrink to nothing, which is the exact per-request path, as the budget runs out, and
/// the leases of P processes hold at most 1 - (3/4)^(2P) (fixed window: each may hold the end
/// of a lease beside the next) or 1 - (31/32)^P of what was left before they were taken.
///
/// What the fleet-wide limit becomes:
/// - **fixed window**: leased units are counted in their window when they are taken and die
///   with it: never more than `limit` per window across the fleet;
/// - **token bucket, leaky bucket, GCRA**: a unit is charged when leased and may be spent up to
///   one lifetime later, so in any interval the fleet admits at most what the bucket allows
///   plus `rate × lifetime`. Units handed back come out of the bucket less what has drained
///   since they were taken, so a hand-back never leaves the bucket emptier than it would be had
///   they never been taken;
/// - **sliding window counter, sliding log**: no leases (they weigh each unit by the instant it
///   was admitted, which a lease would hide); decided per request as without leases.
///
/// Units a process holds when it dies are lost until their window ends (fixed window) or the
/// bucket drains them: at most one lease per key and process (and a quarter of the one before,
/// for a fixed window), each about what the process spent on the key in one lifetime and at
/// most 1/4 (fixed window) or 1/32 of what was left.
/// A denial of a leasable key is answered from the local cache of denied keys for two
/// lifetimes, then Redis is asked once more (what other processes held then has come back
/// within a lifetime), and a second denial is cached to the end of the window: one Redis call
/// more per key and window than without leases.
/// On a Redis Cluster units are never handed back (a call may be sent twice there): they
/// die with their window or drain. `X-RateLimit-Remaining` counts, on a decision made here,
/// the units this process still holds (never more than the fleet has left; a lease is never
/// spent to its last unit here, so a zero only ever comes from Redis), and on a decision made
/// on Redis, what Redis had left plus those units. Rules with a soft limit and waiting rules (`max_wait`) are not leased.
///
/// ```
/// use std::time::Duration;
/// use ratelimit_runtime::{Leases, RateLimiter};
///
/// let limiter = RateLimiter::builder()
///     .redis("redis://127.0.0.1:6379")
///     .redis_leases(Leases::new().lifetime(Duration::from_millis(50)))
///     .build()
///     .unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leases {
    lifetime: Duration,
}

const DEFAULT_LIFETIME: Duration = Duration::from_millis(100);
const MIN_LIFETIME: Duration = Duration::from_millis(1);

impl Default for Leases {
    fn default() -> Leases {
        Leases {
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

impl Leases {
    /// Leases that live 100 ms.
    pub fn new() -> Leases {
        Leases::default()
    }

    /// How long leased units may be spent after they were taken (default 100 ms, at least
    /// 1 ms). A bucket or GCRA limit may admit `rate × lifetime` more than it would without
    /// leases; a longer lifetime means fewer Redis calls for a key this process sees often.
    pub fn lifetime(mut self, lifetime: Duration) -> Leases {
        self.lifetime = lifetime.max(MIN_LIFETIME);
        self
    }
}

const SHARDS: usize = 16;
/// Keys followed at most (their recent use, and a lease for the busy ones).
const MAX_KEYS: usize = 100_000;
/// Entries looked at to find one to drop when a shard is full.
const EVICTION_SAMPLE: usize = 8;
/// The most units one lease asks for.
const MAX_WANT: u64 = 1 << 20;
/// A key spent fewer times than this in a lifetime is not worth leasing: a lease would mostly
/// go back unspent.
const MIN_WANT: u64 = 4;
/// Slots of the heat filter (8 bytes each), which keeps keys spent less than [`MIN_WANT`] times
/// in a lifetime out of the table.
const HEAT_SLOTS: usize = 1 << 14;

/// The leases this process holds, and the recent use of the keys it may lease.
#[derive(Debug)]
pub(crate) struct LeaseTable {
    lifetime: u64,
    shards: Box<[Mutex<Map>]>,
    max_per_shard: usize,
    /// Mixed into keys: Redis keys come from a public hash.
    seed: ahash::RandomState,
    /// Names each grant, so that the timer ending a lease knows whether it is still the one held.
    grants: AtomicU64,
    /// Per slot (a hash of the key): the lifetime it counts (the present one, as `now /
    /// lifetime`) in the high 32 bits, the units spent on its keys in it in the low 32. Keys
    /// that share a slot add up, which can only make a key look busier than it is.
    heat: Box<[AtomicU64]>,
    stats: Stats,
}

type Map = HashMap<u64, Lease, BuildHasherDefault<NoHashHasher<u64>>>;

/// Counters of a limiter's leases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseStats {
    /// Redis calls that took or handed back leased units.
    pub calls: u64,
    /// Units leased beyond the cost of the requests that asked.
    pub leased: u64,
    /// Unspent units handed back.
    pub returned: u64,
    /// Decisions made from leased units, without Redis.
    pub local_decisions: u64,
    /// Leased units dropped unspent and not handed back: their fixed window ended, their key
    /// was reset or left the table, or the call handing them back failed. What this process
    /// holds is `leased` less the units spent here, `returned` and `dropped`.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Stats {
    calls: AtomicU64,
    leased: AtomicU64,
    returned: AtomicU64,
    local_decisions: AtomicU64,
    dropped: AtomicU64,
}

/// One key: its lease, if any, and how much this process spent on it lately.
#[derive(Debug, Default)]
struct Lease {
    /// Units left to spend here.
    units: u32,
    /// Units of the last grant: the next is asked for when a quarter is left.
    granted: u32,
    /// Until when (limiter time) the units may be spent.
    until: UnixNanos,
    /// When they were leased on the store's clock (µs), and in which fixed window (its end, s).
    at_us: u64,
    window: u64,
    /// What the headers show meanwhile.
    limit: u32,
    reset_at: UnixNanos,
    /// Units spent on the key since `since` (limiter time), this process only.
    seen: u64,
    since: UnixNanos,
    /// A call asking for more is under way: others do not ask for more meanwhile.
    refilling: bool,
    /// The last grant added to the units held.
    grant: u64,
}

/// What a lease call's answer came to: the request's verdict, and the leases granted (each
/// key with its grant), to be handed back when their lifetime ends.
pub(crate) struct Settled {
    pub(crate) verdict: Verdict,
    pub(crate) granted: SmallVec<[(Check, u64); 4]>,
}

/// What the timer of a few leases finds when it goes off: the units to hand back now, and the
/// leases to look at again after `wait` (ns).
pub(crate) struct Expiry {
    pub(crate) asks: SmallVec<[LeaseAsk; 4]>,
    pub(crate) later: SmallVec<[(Check, u64); 4]>,
    pub(crate) wait: u64,
}

/// Units leased here that a request spent, and the next leases to ask for (in the
/// background: the request does not wait for them).
pub(crate) struct Spent {
    pub(crate) verdict: Verdict,
    pub(crate) refill: SmallVec<[LeaseAsk; 4]>,
}

impl LeaseTable {
    pub(crate) fn new(leases: Leases) -> LeaseTable {
        LeaseTable {
            lifetime: u64::try_from(leases.lifetime.as_nanos()).unwrap_or(u64::MAX),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: MAX_KEYS.div_ceil(SHARDS),
            seed: ahash::RandomState::new(),
            grants: AtomicU64::new(0),
            heat: (0..HEAT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            stats: Stats::default(),
        }
    }

    /// How long leased units may be spent.
    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_nanos(self.lifetime)
    }

    /// Counts a request of `checks` and tells whether one of them is busy enough to lease (or
    /// to hold a lease): spent at least [`MIN_WANT`] times in this lifetime, a busy key of the
    /// last lifetime counting as busy from the start of this one. Every other request is
    /// decided as without leases, at the cost of one counter per check: the table, its locks
    /// and its entries are only for busy keys. A key that goes quiet while it holds units is
    /// decided on Redis; its lease goes back when its lifetime ends.
    pub(crate) fn warm(&self, checks: &[Check], now: UnixNanos) -> bool {
        // Every check is counted, busy or not.
        let mut warm = false;
        for check in checks {
            warm |= self.heat(check, now) >= MIN_WANT;
        }
        warm
    }

    /// Adds `check`'s cost to its slot of the heat filter; what the slot counts now.
    fn heat(&self, check: &Check, now: UnixNanos) -> u64 {
        let (slot, epoch, carried) = self.heat_slot(check, now);
        let count = carried
            .saturating_add(u64::from(check.cost))
            .min(u64::from(u32::MAX));
        // Two requests at once may count one: the filter is a hint, the table decides.
        slot.store((u64::from(epoch) << 32) | count, Ordering::Relaxed);
        count
    }

    /// `check`'s slot of the heat filter, the lifetime it counts (the present one, or the next
    /// when another thread's later instant got there first), and what the slot counts in it.
    fn heat_slot(&self, check: &Check, now: UnixNanos) -> (&AtomicU64, u32, u64) {
        let epoch = (now / self.lifetime.max(1)) as u32;
        let at = self.seed.hash_one(check.fingerprint()) as usize % HEAT_SLOTS;
        let slot = &self.heat[at];
        let old = slot.load(Ordering::Relaxed);
        let (old_epoch, old_count) = ((old >> 32) as u32, old & u64::from(u32::MAX));
        if old_epoch == epoch || old_epoch == epoch.wrapping_add(1) {
            (slot, old_epoch, old_count)
        } else if old_epoch.wrapping_add(1) == epoch && old_count >= MIN_WANT {
            (slot, epoch, MIN_WANT)
        } else {
            (slot, epoch, 0)
        }
    }

    /// Spends `checks` from the leases held here, if every one holds more than its cost (the
    /// last unit of a lease is never spent here: it goes back with the next call, so that a
    /// zero remaining only ever comes from Redis).
    pub(crate) fn spend(&self, checks: &[Check], now: UnixNanos) -> Option<Spent> {
        let mut locked = self.lock(checks.iter().map(|c| c.fingerprint()));
        let held = checks.iter().enumerate().all(|(i, c)| {
            locked
                .get(i)
                .is_some_and(|l| l.units > c.cost && now < l.until)
        });
        held.then(|| self.spend_held(&mut locked, checks, now))
    }

    /// The lease call to make for `checks`, which the leases held here could not decide: units
    /// held go back in it, and a busy key asks for its next lease. `None` when nothing is held
    /// or worth leasing: decide on Redis as without leases.
    pub(crate) fn plan(&self, checks: &[Check], now: UnixNanos) -> Option<SmallVec<[LeaseAsk; 4]>> {
        let mut locked = self.lock(checks.iter().map(|c| c.fingerprint()));
        let mut asks = SmallVec::new();
        let mut worth_asking = false;
        for (i, check) in checks.iter().enumerate() {
            // A key new to the table starts with what the heat filter saw of it since the
            // start of its lifetime (this request left out: `observe` counts it).
            let new = || Lease {
                seen: (self.heat_slot(check, now).2).saturating_sub(u64::from(check.cost)),
                since: now - now % self.lifetime.max(1),
                ..Lease::default()
            };
            let ask =
                match locked.get_or_insert(i, now, self.max_per_shard, new, &self.stats.dropped) {
                    Some(lease) => {
                        self.observe(lease, check.cost, now);
                        let want = if lease.refilling {
                            0
                        } else {
                            self.want(lease, now)
                        };
                        lease.refilling |= want > 0;
                        let ask = self.handing_back(lease, *check, want);
                        worth_asking |= ask.want > 0 || ask.back > 0;
                        ask
                    }
                    // Not followed (the table is full of busier keys): the exact path.
                    None => plain(*check),
                };
            asks.push(ask);
        }
        worth_asking.then_some(asks)
    }

    fn spend_held(&self, locked: &mut Locked<'_>, checks: &[Check], now: UnixNanos) -> Spent {
        let mut verdict = Verdict {
            decisions: SmallVec::new(),
            allowed: true,
        };
        let mut refill = SmallVec::new();
        for (i, check) in checks.iter().enumerate() {
            let Some(lease) = locked.get(i) else {
                continue;
            };
            lease.units -= check.cost;
            self.observe(lease, check.cost, now);
            verdict.decisions.push(Decision {
                allowed: true,
                limit: lease.limit,
                remaining: lease.units,
                reset_at: lease.reset_at.max(now),
                retry_at: now,
            });
            if lease.units <= lease.granted / 4 && !lease.refilling {
                let want = self.want(lease, now).max(u64::from(lease.granted));
                lease.refilling = true;
                let check = Check { cost: 0, ..*check };
                refill.push(if is_window(&check) {
                    // A fixed window's units are all alike: those held are spent while the
                    // next lease is on its way, and the two add up (`settle`).
                    keeping(check, want)
                } else {
                    self.handing_back(lease, check, want)
                });
            }
        }
        self.stats.local_decisions.fetch_add(1, Ordering::Relaxed);
        Spent { verdict, refill }
    }

    /// An ask for `check` that hands back what `lease` holds (it holds nothing after).
    fn handing_back(&self, lease: &mut Lease, check: Check, want: u64) -> LeaseAsk {
        let back = std::mem::take(&mut lease.units);
        LeaseAsk {
            check,
            want: u32::try_from(want).unwrap_or(u32::MAX),
            back,
            leased_at_us: lease.at_us,
            leased_in: lease.window,
        }
    }

    /// Counts `cost` units spent on a key; the count covers one to two lifetimes.
    fn observe(&self, lease: &mut Lease, cost: u32, now: UnixNanos) {
        let elapsed = now.saturating_sub(lease.since);
        if elapsed > 2 * self.lifetime {
            // Keep the rate of the old span, over one lifetime.
            lease.seen =
                (u128::from(lease.seen) * u128::from(self.lifetime) / u128::from(elapsed)) as u64;
            lease.since = now.saturating_sub(self.lifetime);
        }
        lease.seen = lease.seen.saturating_add(u64::from(cost));
    }

    /// The units worth leasing: what this process spends on the key in one lifetime at the
    /// rate it spent lately, measured over at least an eighth of a lifetime (so that a key
    /// that just became busy is leased at its rate after a few requests, and a short burst
    /// counts as a short burst); none for a key that is not busy.
    fn want(&self, lease: &Lease, now: UnixNanos) -> u64 {
        let span = now
            .saturating_sub(lease.since)
            .max(self.lifetime / 8)
            .max(1);
        let want = u128::from(lease.seen) * u128::from(self.lifetime) / u128::from(span);
        let want = u64::try_from(want).unwrap_or(MAX_WANT).min(MAX_WANT);
        if want < MIN_WANT {
            0
        } else {
            want
        }
    }

    /// Keeps what Redis leased for `asks`, and returns the request's verdict with, for each
    /// leased key, the units held here added to what Redis has left.
    pub(crate) fn settle(
        &self,
        asks: &[LeaseAsk],
        answer: &LeaseAnswer,
        now: UnixNanos,
    ) -> Settled {
        let mut granted = SmallVec::new();
        let mut locked = self.lock(asks.iter().map(|a| a.check.fingerprint()));
        let mut verdict = answer.verdict.clone();
        let (mut leased, mut returned) = (0, 0);
        let settled = asks.iter().zip(&answer.grants).zip(&mut verdict.decisions);
        for (i, ((ask, grant), decision)) in settled.enumerate() {
            if answer.handed_back {
                returned += u64::from(ask.back);
            }
            let Some(lease) = locked.get(i) else {
                continue;
            };
            if ask.want > 0 {
                lease.refilling = false;
            }
            if grant.units == 0 {
                continue;
            }
            leased += u64::from(grant.units);
            let until = now.saturating_add(self.lifetime);
            let window = is_window(&ask.check);
            // A fixed window's units die with the window: those of an earlier one are gone.
            let until = if window {
                if lease.window != grant.window {
                    self.drop_units(lease);
                }
                until.min(decision.reset_at)
            } else {
                until
            };
            if lease.units == 0 {
                (lease.at_us, lease.until) = (grant.at_us, until);
            } else if window {
                // What was kept of the last lease of the window joins the next one: units of
                // one window can never over-admit, the lifetime only bounds how long they
                // stay away from the fleet.
                (lease.at_us, lease.until) = (lease.at_us.min(grant.at_us), lease.until.max(until));
            } else {
                // Two grants together: the older instant decides (the safer hand-back).
                (lease.at_us, lease.until) = (lease.at_us.min(grant.at_us), lease.until.min(until));
            }
            lease.units = lease.units.saturating_add(grant.units);
            lease.granted = grant.units;
            lease.grant = self.grants.fetch_add(1, Ordering::Relaxed) + 1;
            granted.push((ask.check, lease.grant));
            lease.window = grant.window;
            lease.limit = decision.limit;
            lease.reset_at = decision.reset_at;
            decision.remaining = decision.remaining.saturating_add(lease.units);
        }
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.stats.leased.fetch_add(leased, Ordering::Relaxed);
        self.stats.returned.fetch_add(returned, Ordering::Relaxed);
        Settled { verdict, granted }
    }

    /// The hand-back of the leases `granted` whose lifetime is over at `now` and that nobody
    /// spent to their end, refilled or handed back since: their units go back to Redis now
    /// rather than with the key's next request, which may never come. Leases not over yet on
    /// the limiter's clock (a timer a little early, a manual clock behind) or being refilled
    /// (a fixed window's refill keeps its units, and may be granted nothing) are to be looked
    /// at again.
    pub(crate) fn expired(&self, granted: &[(Check, u64)], now: UnixNanos) -> Expiry {
        let mut locked = self.lock(granted.iter().map(|(c, _)| c.fingerprint()));
        let mut expiry = Expiry {
            asks: SmallVec::new(),
            later: SmallVec::new(),
            wait: self.lifetime,
        };
        for (i, (check, grant)) in granted.iter().enumerate() {
            let Some(lease) = locked.get(i) else {
                continue;
            };
            if lease.grant != *grant || lease.units == 0 {
                continue;
            }
            if lease.refilling || now < lease.until {
                let wait = if lease.refilling {
                    self.lifetime / 8
                } else {
                    lease.until - now
                };
                expiry.wait = expiry.wait.min(wait);
                expiry.later.push((*check, *grant));
                continue;
            }
            let window_over = is_window(check) && now >= lease.reset_at;
            if window_over {
                // Units of a window that ended died with it: nothing to hand back.
                self.drop_units(lease);
            } else {
                let ask = self.handing_back(lease, Check { cost: 0, ..*check }, 0);
                expiry.asks.push(ask);
            }
        }
        expiry
    }

    /// A lease call failed: units handed back in it are lost (Redis may or may not have taken
    /// them back; counting them again could admit too much), and others may ask again.
    pub(crate) fn abandon(&self, asks: &[LeaseAsk]) {
        self.count_dropped(asks.iter().map(|a| u64::from(a.back)).sum());
        let mut locked = self.lock(asks.iter().map(|a| a.check.fingerprint()));
        for (i, _) in asks.iter().enumerate().filter(|(_, a)| a.want > 0) {
            if let Some(lease) = locked.get(i) {
                lease.refilling = false;
            }
        }
    }

    /// Drops the leases of `checks` (a reset: their budgets start again).
    pub(crate) fn forget(&self, checks: &[Check]) {
        let mut locked = self.lock(checks.iter().map(|c| c.fingerprint()));
        for i in 0..checks.len() {
            if let Some(lease) = locked.remove(i) {
                self.count_dropped(u64::from(lease.units));
            }
        }
    }

    /// Drops what `lease` holds, counted.
    fn drop_units(&self, lease: &mut Lease) {
        self.count_dropped(u64::from(std::mem::take(&mut lease.units)));
    }

    fn count_dropped(&self, units: u64) {
        self.stats.dropped.fetch_add(units, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> LeaseStats {
        LeaseStats {
            calls: self.stats.calls.load(Ordering::Relaxed),
            leased: self.stats.leased.load(Ordering::Relaxed),
            returned: self.stats.returned.load(Ordering::Relaxed),
            local_decisions: self.stats.local_decisions.load(Ordering::Relaxed),
            dropped: self.stats.dropped.load(Ordering::Relaxed),
        }
    }

    /// The shard and the seeded key of `key`.
    fn slot(&self, key: u64) -> (usize, u64) {
        let seeded = self.seed.hash_one(key);
        ((seeded >> 59) as usize % SHARDS, seeded)
    }

    /// Locks the shards of `keys`, in order (no two callers wait for each other); each key's
    /// place is worked out once, here.
    fn lock(&self, keys: impl Iterator<Item = u64>) -> Locked<'_> {
        let slots: SmallVec<[(usize, u64); 4]> = keys.map(|key| self.slot(key)).collect();
        let mut shards: SmallVec<[usize; 4]> = slots.iter().map(|&(shard, _)| shard).collect();
        shards.sort_unstable();
        shards.dedup();
        Locked {
            slots,
            guards: shards
                .into_iter()
                .map(|i| {
                    let guard = self.shards[i]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    (i, guard)
                })
                .collect(),
        }
    }
}

/// Whether `check` is a fixed window's, whose leased units die with their window.
fn is_window(check: &Check) -> bool {
    check.algorithm == crate::algorithm::AlgorithmKind::FixedWindow
}

/// An ask for `want` more units of `check` that hands nothing back (a fixed window's refill:
/// the units held stay and are spent meanwhile).
fn keeping(check: Check, want: u64) -> LeaseAsk {
    LeaseAsk {
        want: u32::try_from(want).unwrap_or(u32::MAX),
        ..plain(check)
    }
}

/// An ask that leases nothing and hands nothing back.
fn plain(check: Check) -> LeaseAsk {
    LeaseAsk {
        check,
        want: 0,
        back: 0,
        leased_at_us: 0,
        leased_in: 0,
    }
}

/// The locked shards of one request's keys; a key is named by its place among them.
struct Locked<'a> {
    /// Each key's shard and seeded key, in the order given.
    slots: SmallVec<[(usize, u64); 4]>,
    guards: SmallVec<[(usize, MutexGuard<'a, Map>); 4]>,
}

impl Locked<'_> {
    /// The map holding the `i`th key, and that key as the map knows it.
    fn map(&mut self, i: usize) -> (&mut Map, u64) {
        let (shard, key) = self.slots[i];
        let at = self.guards.iter().position(|(s, _)| *s == shard);
        match at {
            Some(at) => (&mut self.guards[at].1, key),
            None => unreachable!("the shards of every key were locked"),
        }
    }

    fn get(&mut self, i: usize) -> Option<&mut Lease> {
        let (map, key) = self.map(i);
        map.get_mut(&key)
    }

    fn remove(&mut self, i: usize) -> Option<Lease> {
        let (map, key) = self.map(i);
        map.remove(&key)
    }

    /// The entry of the `i`th key, made by `new` if there is room: a full shard drops a sampled
    /// entry that holds nothing or whose lease is over (its units counted in `dropped`); when
    /// every sampled one holds units, the key is not followed.
    fn get_or_insert(
        &mut self,
        i: usize,
        now: UnixNanos,
        max: usize,
        new: impl FnOnce() -> Lease,
        dropped: &AtomicU64,
    ) -> Option<&mut Lease> {
        let (map, key) = self.map(i);
        if !map.contains_key(&key) && map.len() >= max {
            let idle = map
                .iter()
                .take(EVICTION_SAMPLE)
                .find(|(_, l)| (l.units == 0 || l.until <= now) && !l.refilling)
                .map(|(k, _)| *k)?;
            if let Some(lease) = map.remove(&idle) {
                dropped.fetch_add(u64::from(lease.units), Ordering::Relaxed);
            }
        }
        Some(map.entry(key).or_insert_with(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{AlgorithmKind, Limit};
    use crate::Quota;

    fn check(key: u128) -> Check {
        Check {
            key,
            group: 1,
            algorithm: AlgorithmKind::FixedWindow,
            limit: Limit::new(Quota::from_parts(1_000, 60).unwrap()),
            cost: 1,
            max_wait: 0,
            probe: false,
        }
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn only_keys_spent_often_in_a_lifetime_are_warm() {
        let table = LeaseTable::new(Leases::new().lifetime(Duration::from_millis(100)));
        let (busy, quiet) = ([check(7)], [check(8)]);
        let start = 1_000 * 100 * MS;
        let warm: Vec<bool> = (0..5).map(|i| table.warm(&busy, start + i * MS)).collect();
        assert_eq!(warm, [false, false, false, true, true]);
        // Busy in the last lifetime: warm from the first request of this one.
        assert!(table.warm(&busy, start + 100 * MS));
        // Once a lifetime: never warm, and never in the table.
        for lifetime in 0..10 {
            assert!(!table.warm(&quiet, start + lifetime * 100 * MS));
        }
        // A lifetime skipped: cold again.
        assert!(!table.warm(&busy, start + 300 * MS));
    }

    #[test]
    fn a_warm_key_enters_the_table_with_what_the_filter_saw() {
        let table = LeaseTable::new(Leases::new().lifetime(Duration::from_millis(100)));
        let busy = [check(7)];
        let start = 1_000 * 100 * MS;
        for i in 0..3 {
            assert!(!table.warm(&busy, start + i * MS));
        }
        // The fourth request is warm, and worth a lease of its own at once: 4 units in 3 ms
        // (counted over an eighth of the 100 ms lifetime) are 32 in a lifetime.
        assert!(table.warm(&busy, start + 3 * MS));
        let asks = table.plan(&busy, start + 3 * MS).expect("a lease call");
        assert_eq!(asks[0].want, 32);
    }

    /// A lease of `units` in the fixed window ending at `window` (s), answering `asks`.
    fn grant(asks: &[LeaseAsk], units: u32, window: u64) -> LeaseAnswer {
        let decision = Decision {
            allowed: true,
            limit: 1_000,
            remaining: 500,
            reset_at: window * 1_000 * MS,
            retry_at: 0,
        };
        LeaseAnswer {
            verdict: Verdict {
                decisions: asks.iter().map(|_| decision).collect(),
                allowed: true,
            },
            grants: asks
                .iter()
                .map(|_| crate::store::Grant {
                    units,
                    at_us: 0,
                    window,
                })
                .collect(),
            handed_back: true,
        }
    }

    /// A table holding a lease of 32 units of `key` (leased at `start`), and `start`.
    fn leased(key: [Check; 1]) -> (LeaseTable, UnixNanos) {
        let table = LeaseTable::new(Leases::new().lifetime(Duration::from_millis(100)));
        let start = 1_000 * 100 * MS;
        for i in 0..4 {
            table.warm(&key, start + i * MS);
        }
        let asks = table.plan(&key, start + 3 * MS).unwrap();
        table.settle(
            &asks,
            &grant(&asks, 32, start / (1_000 * MS) + 60),
            start + 3 * MS,
        );
        (table, start + 3 * MS)
    }

    #[test]
    fn a_fixed_window_lease_runs_low_and_keeps_its_units_while_the_next_one_comes() {
        let key = [check(7)];
        let (table, now) = leased(key);
        for _ in 0..23 {
            assert!(table.spend(&key, now).unwrap().refill.is_empty());
        }
        // 8 units left, a quarter of the grant: the next lease is asked for, nothing handed back.
        let refill = table.spend(&key, now).unwrap().refill;
        assert_eq!((refill[0].back, refill[0].want >= 32), (0, true));
        // Those 8 are spent meanwhile (all but the last, which only Redis spends).
        for left in (1..8).rev() {
            let spent = table.spend(&key, now).expect("units held while refilling");
            assert_eq!(spent.verdict.decisions[0].remaining, left);
        }
        // The grant adds to what is held: 1 + 20.
        let window = now / (1_000 * MS) + 60;
        table.settle(&refill, &grant(&refill, 20, window), now);
        assert_eq!(
            table.spend(&key, now).unwrap().verdict.decisions[0].remaining,
            20
        );
        // A grant in a later window: the units of the earlier one died with it.
        let refill = [keeping(key[0], 32)];
        table.settle(&refill, &grant(&refill, 10, window + 60), now);
        assert_eq!(
            table.spend(&key, now).unwrap().verdict.decisions[0].remaining,
            9
        );
        assert_eq!(table.stats().dropped, 20, "counted as dropped");
    }

    #[test]
    fn a_bucket_lease_running_low_hands_its_units_back_with_the_ask() {
        let key = [Check {
            algorithm: AlgorithmKind::Gcra,
            ..check(7)
        }];
        let (table, now) = leased(key);
        for _ in 0..23 {
            table.spend(&key, now).unwrap();
        }
        let refill = table.spend(&key, now).unwrap().refill;
        assert_eq!(refill[0].back, 8);
        assert!(table.spend(&key, now).is_none(), "nothing held meanwhile");
    }
}
