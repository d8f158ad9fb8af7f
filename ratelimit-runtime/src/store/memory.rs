//! The embedded store: sharded tables behind short mutexes, bounded in keys.
//!
//! Keys are 64-bit fingerprints, so an IP-keyed check allocates nothing and a tracked key costs
//! its fingerprint beside its state, in an open-addressing table (`table.rs`) where a known key
//! is found in one cache miss. They pick the shard and the slot as they are: they must come
//! from a hash clients cannot predict (the limiter seeds its hash per process), or a client could
//! aim many keys at one slot. A collision of two fingerprints (about one in 10^7 at a
//! million keys) makes two clients share one budget: stricter, never looser.
//!
//! Idle keys are dropped inline, without a background task: a shard sweeps out expired state
//! when a new key arrives and its last sweep is older than the sweep interval, or when it is
//! full. If a shard is still full after that (a flood of distinct live keys), the new key takes
//! the place of the entry, among a few sampled, that holds least (what forgetting it gives
//! back: its spent units, or for the buckets and GCRA its time until whole), and the eviction
//! is counted. A flood of fresh keys, each holding a request or two, so pushes out its own
//! kind, not a busy client whose spent budget would be handed back.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use nohash_hasher::NoHashHasher;
use smallvec::SmallVec;

use super::table::{stored, Group, Slots, Table};
use super::{Check, Store, StoreError, Verdict};
use crate::algorithm::{
    Algorithm, AlgorithmKind, FixedWindow, Gcra, LeakyBucket, SlidingLog, SlidingWindow,
    TokenBucket,
};
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;

/// Requests in flight per key. Fingerprints are already uniform: hash them as themselves.
type InFlight = HashMap<u64, u32, BuildHasherDefault<NoHashHasher<u64>>>;

/// The table of the states of algorithm `A`.
type TableFor<A> = Table<<A as TableOf>::Group>;

const SHARDS: usize = 64;
const DEFAULT_MAX_KEYS: usize = 1_000_000;
/// What sliding logs may hold on the heap by default: 256 MiB, 32 entries a key at a million.
const DEFAULT_MAX_LOG_BYTES: usize = 256 << 20;
/// How often a shard sweeps out expired keys while new keys arrive.
const SWEEP_INTERVAL: u64 = 10 * NANOS_PER_SEC;
/// How often a full shard may sweep: a flood of live keys must not make every insert a sweep.
const FULL_SWEEP_SPACING: u64 = NANOS_PER_SEC;
/// Entries looked at to choose one to evict.
const EVICTION_SAMPLE: usize = 8;

/// In-process keyed state for every algorithm, with a hard cap on tracked keys.
///
/// ```
/// use ratelimit_runtime::store::MemoryStore;
///
/// let store = MemoryStore::with_max_keys(100_000);
/// assert_eq!(store.stats().keys, 0);
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    max_keys_per_shard: usize,
    max_log_bytes_per_shard: usize,
    evictions: AtomicU64,
}

/// Counters of a [`MemoryStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStoreStats {
    /// Keys tracked now.
    pub keys: usize,
    /// Live keys dropped to make room under the caps (keys, and bytes of logs) since the store
    /// was made.
    pub evictions: u64,
    /// Bytes the sliding logs hold on the heap now (their entries; the tables are counted by
    /// keys).
    pub log_bytes: usize,
}

#[derive(Debug, Default)]
struct Shard {
    fixed_window: TableFor<FixedWindow>,
    sliding_window: TableFor<SlidingWindow>,
    sliding_log: TableFor<SlidingLog>,
    token_bucket: TableFor<TokenBucket>,
    leaky_bucket: TableFor<LeakyBucket>,
    gcra: TableFor<Gcra>,
    /// Requests in flight per key of a concurrency limit; a key leaves at zero, so the map
    /// never holds more keys than there are requests in flight.
    in_flight: InFlight,
    last_sweep: UnixNanos,
    /// Bytes the states of this shard hold on the heap (the logs' entries).
    heap_bytes: usize,
}

/// Gives generic code the table of one algorithm in a shard.
trait TableOf: Algorithm {
    /// The slots of its table, states beside fingerprints, so many to a group.
    type Group: Slots<State = Self::State>;

    fn table(shard: &mut Shard) -> &mut TableFor<Self>;
}

macro_rules! table_of {
    ($($algorithm:ident => $field:ident, $width:literal),* $(,)?) => {$(
        impl TableOf for $algorithm {
            type Group = Group<<$algorithm as Algorithm>::State, $width>;

            fn table(shard: &mut Shard) -> &mut TableFor<Self> {
                &mut shard.$field
            }
        }
    )*};
}

// Slots per group, so that a group is whole cache lines with no padding (on 64-bit targets):
// 8-byte states make 16-byte slots, four to a line; 16-byte states 24-byte slots and the log's
// 32-byte head 40-byte slots, eight to three or five lines.
table_of! {
    FixedWindow => fixed_window, 4,
    SlidingWindow => sliding_window, 8,
    SlidingLog => sliding_log, 8,
    TokenBucket => token_bucket, 8,
    LeakyBucket => leaky_bucket, 8,
    Gcra => gcra, 4,
}

/// Runs `$body` with `$A` the algorithm type of the kind `$kind`.
macro_rules! with_algorithm {
    ($kind:expr, $A:ident => $body:expr) => {
        match $kind {
            AlgorithmKind::FixedWindow => {
                type $A = FixedWindow;
                $body
            }
            AlgorithmKind::SlidingWindow => {
                type $A = SlidingWindow;
                $body
            }
            AlgorithmKind::SlidingLog => {
                type $A = SlidingLog;
                $body
            }
            AlgorithmKind::TokenBucket => {
                type $A = TokenBucket;
                $body
            }
            AlgorithmKind::LeakyBucket => {
                type $A = LeakyBucket;
                $body
            }
            AlgorithmKind::Gcra => {
                type $A = Gcra;
                $body
            }
        }
    };
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::with_max_keys(DEFAULT_MAX_KEYS)
    }
}

impl MemoryStore {
    /// A store tracking at most about `max_keys` keys (rounded up to a multiple of its 64
    /// shards).
    pub fn with_max_keys(max_keys: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            max_log_bytes_per_shard: DEFAULT_MAX_LOG_BYTES / SHARDS,
            evictions: AtomicU64::new(0),
        }
    }

    /// Caps what sliding logs hold on the heap at about `bytes` (default 256 MiB; rounded up
    /// to a multiple of the 64 shards, and at least one full log a shard: 10,000 entries in a
    /// deque grown by doubling, 128 KiB). Past
    /// it, the logs that hold least are evicted, as keys are past the key cap. Logs are the
    /// only states that grow with their limit (8 bytes a unit counted); others are counted by
    /// keys.
    pub fn with_max_log_bytes(mut self, bytes: usize) -> MemoryStore {
        let one_log =
            (SlidingLog::MAX_LIMIT as usize).next_power_of_two() * std::mem::size_of::<UnixNanos>();
        self.max_log_bytes_per_shard = bytes.div_ceil(SHARDS).max(one_log);
        self
    }

    /// The cap on bytes held by sliding logs.
    pub fn max_log_bytes(&self) -> usize {
        self.max_log_bytes_per_shard * SHARDS
    }

    /// The hard cap on tracked keys.
    pub fn max_keys(&self) -> usize {
        self.max_keys_per_shard * SHARDS
    }

    /// Keys tracked and evictions so far.
    pub fn stats(&self) -> MemoryStoreStats {
        let (mut keys, mut log_bytes) = (0, 0);
        for i in 0..SHARDS {
            let shard = self.lock(i);
            keys += shard.len();
            log_bytes += shard.heap_bytes;
        }
        MemoryStoreStats {
            keys,
            evictions: self.evictions.load(Ordering::Relaxed),
            log_bytes,
        }
    }

    /// Decides `checks` at `now` synchronously: all charged if all allow, none otherwise.
    pub fn decide_now(&self, checks: &[Check], now: UnixNanos) -> Verdict {
        match checks {
            [one] => {
                let decision = self.decide_one(one, now);
                Verdict {
                    allowed: decision.allowed,
                    decisions: SmallVec::from_elem(decision, 1),
                }
            }
            many => self.decide_many(many, now),
        }
    }

    /// Decides one check at `now` synchronously, charging it if allowed: the fast path.
    pub fn decide_one(&self, check: &Check, now: UnixNanos) -> Decision {
        let mut shard = self.lock(shard_of(check.fingerprint()));
        if check.probe {
            return shard.evaluate(check, now);
        }
        with_algorithm!(check.algorithm, A => self.decide_in::<A>(&mut shard, check, now))
    }

    /// One check, one table lookup for a known key.
    fn decide_in<A: TableOf>(&self, shard: &mut Shard, check: &Check, now: UnixNanos) -> Decision {
        let key = check.fingerprint();
        if let Some(state) = A::table(shard).get_mut(key) {
            let before = A::heap_bytes(state);
            let decision = step_or_reserve::<A>(state, check, now);
            let after = A::heap_bytes(state);
            self.account(shard, before, after, now, key);
            return decision;
        }
        let mut state = A::State::default();
        let decision = step_or_reserve::<A>(&mut state, check, now);
        if decision.allowed {
            self.make_room(shard, now, key);
            let after = A::heap_bytes(&state);
            A::table(shard).insert(key, state);
            self.account(shard, 0, after, now, key);
        }
        decision
    }

    /// Counts a state's heap going from `before` to `after` bytes; past the shard's cap,
    /// evicts other logs (never `key`'s) until under it again.
    fn account(&self, shard: &mut Shard, before: usize, after: usize, now: UnixNanos, key: u64) {
        if before == after {
            return;
        }
        shard.heap_bytes = (shard.heap_bytes + after).saturating_sub(before);
        if after > before && shard.heap_bytes > self.max_log_bytes_per_shard {
            self.trim_logs(shard, now, key);
        }
    }

    /// Drops expired states, then the logs that hold least, until the shard's logs fit.
    fn trim_logs(&self, shard: &mut Shard, now: UnixNanos, keep: u64) {
        if now.saturating_sub(shard.last_sweep) >= FULL_SWEEP_SPACING {
            shard.sweep(now);
        }
        while shard.heap_bytes > self.max_log_bytes_per_shard {
            match evict_least::<SlidingLog>(shard, now, keep) {
                Some(expiry) if expiry > now => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    /// Several checks: lock every shard involved, in index order (no deadlock), decide all,
    /// then charge all or none. Refused, they may reserve a later turn (`max_wait`): decided
    /// again at that instant, under the same locks.
    fn decide_many(&self, checks: &[Check], now: UnixNanos) -> Verdict {
        let mut indices: SmallVec<[usize; 4]> =
            checks.iter().map(|c| shard_of(c.fingerprint())).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards: SmallVec<[MutexGuard<'_, Shard>; 4]> =
            indices.iter().map(|&i| self.lock(i)).collect();
        // Every key's shard is in `indices`, so the search always finds it.
        let guard_of = |key: u64| indices.binary_search(&shard_of(key)).unwrap_or_default();
        let mut evaluate = |at: UnixNanos| -> SmallVec<[Decision; 4]> {
            checks
                .iter()
                .map(|c| guards[guard_of(c.fingerprint())].evaluate(c, at))
                .collect()
        };
        let mut decided_at = now;
        let mut decisions = evaluate(now);
        if let Some(turn) = Check::reservation(checks, &decisions, now) {
            let later = evaluate(turn);
            if later.iter().all(|d| d.allowed) {
                (decided_at, decisions) = (turn, later);
            }
        }
        let allowed = decisions.iter().all(|d| d.allowed);
        if allowed {
            for check in checks.iter().filter(|c| !c.probe) {
                let at = guard_of(check.fingerprint());
                self.charge(&mut guards[at], check, decided_at);
            }
        }
        Verdict { decisions, allowed }
    }

    /// Decides `checks` at `now` as [`decide_now`](Self::decide_now) would, charging nothing.
    pub fn peek_now(&self, checks: &[Check], now: UnixNanos) -> Verdict {
        let decisions: SmallVec<[Decision; 4]> = checks
            .iter()
            .map(|c| self.lock(shard_of(c.fingerprint())).evaluate(c, now))
            .collect();
        Verdict {
            allowed: decisions.iter().all(|d| d.allowed),
            decisions,
        }
    }

    /// Takes one of `limit` slots of `key` (a concurrency limit): `Ok` with the requests in
    /// flight now, this one included, or `Err` with those in flight when all slots are taken.
    pub fn take_slot(&self, key: u64, limit: u32) -> Result<u32, u32> {
        let mut shard = self.lock(shard_of(key));
        let held = shard.in_flight.entry(key).or_insert(0);
        if *held >= limit {
            let full = *held;
            return Err(full);
        }
        *held += 1;
        Ok(*held)
    }

    /// Gives back a slot of `key` taken with [`take_slot`](Self::take_slot).
    pub fn give_slot(&self, key: u64) {
        let mut shard = self.lock(shard_of(key));
        if let Some(held) = shard.in_flight.get_mut(&key) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                shard.in_flight.remove(&key);
            }
        }
    }

    /// Requests in flight for `key`.
    pub fn slots_taken(&self, key: u64) -> u32 {
        let shard = self.lock(shard_of(key));
        shard.in_flight.get(&key).copied().unwrap_or(0)
    }

    /// Forgets the state of `checks`' keys.
    pub fn reset_now(&self, checks: &[Check]) {
        for check in checks {
            let mut shard = self.lock(shard_of(check.fingerprint()));
            with_algorithm!(check.algorithm, A => {
                if let Some(state) = A::table(&mut shard).remove(check.fingerprint()) {
                    shard.heap_bytes = shard.heap_bytes.saturating_sub(A::heap_bytes(&state));
                }
            });
        }
    }

    /// Gives back each check's `cost` charged at `charged_at`, where it still counts (see
    /// [`Store::refund`]). A key no longer held has nothing to give back.
    pub fn refund_now(&self, checks: &[Check], charged_at: UnixNanos, now: UnixNanos) {
        for check in checks {
            let key = check.fingerprint();
            let mut shard = self.lock(shard_of(key));
            with_algorithm!(check.algorithm, A => {
                if let Some(state) = A::table(&mut shard).get_mut(key) {
                    let before = A::heap_bytes(state);
                    A::refund(state, charged_at, now, &check.limit, check.cost);
                    let after = A::heap_bytes(state);
                    self.account(&mut shard, before, after, now, key);
                }
            });
        }
    }

    fn charge(&self, shard: &mut Shard, check: &Check, now: UnixNanos) {
        with_algorithm!(check.algorithm, A => self.charge_in::<A>(shard, check, now))
    }

    fn charge_in<A: TableOf>(&self, shard: &mut Shard, check: &Check, now: UnixNanos) {
        let key = check.fingerprint();
        if let Some(state) = A::table(shard).get_mut(key) {
            let before = A::heap_bytes(state);
            A::charge(state, now, &check.limit, check.cost);
            let after = A::heap_bytes(state);
            return self.account(shard, before, after, now, key);
        }
        self.make_room(shard, now, key);
        let mut state = A::State::default();
        A::charge(&mut state, now, &check.limit, check.cost);
        let after = A::heap_bytes(&state);
        A::table(shard).insert(key, state);
        self.account(shard, 0, after, now, key);
    }

    /// Before the new key `key` enters: sweep if due or full, then evict if still full.
    fn make_room(&self, shard: &mut Shard, now: UnixNanos, key: u64) {
        let since_sweep = now.saturating_sub(shard.last_sweep);
        let full = shard.len() >= self.max_keys_per_shard;
        if since_sweep >= SWEEP_INTERVAL || (full && since_sweep >= FULL_SWEEP_SPACING) {
            shard.sweep(now);
        }
        if shard.len() >= self.max_keys_per_shard && shard.evict_one(now, key) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A panic elsewhere while a shard was locked leaves consistent data (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    async fn decide(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        Ok(self.decide_now(checks, now))
    }

    async fn peek(&self, checks: &[Check], now: UnixNanos) -> Result<Verdict, StoreError> {
        Ok(self.peek_now(checks, now))
    }

    async fn reset(&self, checks: &[Check]) -> Result<(), StoreError> {
        self.reset_now(checks);
        Ok(())
    }

    async fn refund(
        &self,
        checks: &[Check],
        charged_at: UnixNanos,
        now: UnixNanos,
    ) -> Result<(), StoreError> {
        self.refund_now(checks, charged_at, now);
        Ok(())
    }
}

/// The shard of a key: bits the shard's own tables do not use for their groups (the low bits).
fn shard_of(key: u64) -> usize {
    (key >> 32) as usize % SHARDS
}

impl Shard {
    fn len(&self) -> usize {
        self.fixed_window.len()
            + self.sliding_window.len()
            + self.sliding_log.len()
            + self.token_bucket.len()
            + self.leaky_bucket.len()
            + self.gcra.len()
            + self.in_flight.len()
    }

    fn evaluate(&mut self, check: &Check, now: UnixNanos) -> Decision {
        with_algorithm!(check.algorithm, A => self.evaluate_in::<A>(check, now))
    }

    fn evaluate_in<A: TableOf>(&mut self, check: &Check, now: UnixNanos) -> Decision {
        match A::table(self).get_mut(check.fingerprint()) {
            Some(state) => {
                // Evaluating tidies (a log drops what expired): it can only free room.
                let before = A::heap_bytes(state);
                let decision = A::evaluate(state, now, &check.limit, check.cost);
                let freed = before.saturating_sub(A::heap_bytes(state));
                self.heap_bytes = self.heap_bytes.saturating_sub(freed);
                decision
            }
            None => A::evaluate(&mut A::State::default(), now, &check.limit, check.cost),
        }
    }

    /// Drops every expired key.
    fn sweep(&mut self, now: UnixNanos) {
        let mut freed = 0;
        for kind in AlgorithmKind::ALL {
            with_algorithm!(kind, A => A::table(self).retain(|s| {
                let live = A::expires_at(s) > now;
                if !live {
                    freed += A::heap_bytes(s);
                }
                live
            }));
        }
        self.heap_bytes = self.heap_bytes.saturating_sub(freed);
        self.last_sweep = now;
    }

    /// Removes, among a few entries of the largest table (from where the new key `key` would
    /// go), the one that holds least (see [`Algorithm::held`]), the earliest to expire among
    /// equals. Returns whether a live key was lost.
    fn evict_one(&mut self, now: UnixNanos, key: u64) -> bool {
        let largest = AlgorithmKind::ALL
            .into_iter()
            .max_by_key(|&kind| with_algorithm!(kind, A => A::table(self).len()));
        let expiry =
            largest.and_then(|kind| with_algorithm!(kind, A => evict_least::<A>(self, now, key)));
        expiry.is_some_and(|t| t > now)
    }
}

/// One check against `state` at `now`, charged if allowed; refused, but within its `max_wait`
/// of its turn, decided (and charged) at that turn instead.
fn step_or_reserve<A: Algorithm>(state: &mut A::State, check: &Check, now: UnixNanos) -> Decision {
    let decision = A::step(state, now, &check.limit, check.cost);
    if decision.allowed || check.max_wait == 0 {
        return decision;
    }
    match Check::reservation(std::slice::from_ref(check), &[decision], now) {
        Some(turn) => A::step(state, turn, &check.limit, check.cost),
        None => decision,
    }
}

/// Evicts the entry of `A`'s table that holds least at `now` among a few, from where `from`
/// would go (a fingerprint, so a uniform place), but never `from` itself; returns its expiry.
fn evict_least<A: TableOf>(shard: &mut Shard, now: UnixNanos, from: u64) -> Option<UnixNanos> {
    let (key, _, expiry) = A::table(shard)
        .sample(from, EVICTION_SAMPLE)
        .filter(|&(k, _)| k != stored(from))
        .map(|(k, s)| (k, A::held(s, now), A::expires_at(s)))
        .min_by_key(|&(_, held, expiry)| (held, expiry))?;
    let state = A::table(shard).remove(key)?;
    shard.heap_bytes = shard.heap_bytes.saturating_sub(A::heap_bytes(&state));
    Some(expiry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Limit;
    use crate::quota::Quota;
    use crate::store::table::Slot;

    const T0: UnixNanos = 1_700_000_000 * NANOS_PER_SEC;

    fn check(key: u64, algorithm: AlgorithmKind, n: u32, per: u32) -> Check {
        Check {
            group: 0,
            key: key.into(),
            algorithm,
            limit: Limit::new(Quota::from_parts(n, per).unwrap()),
            cost: 1,
            max_wait: 0,
            probe: false,
        }
    }

    fn spread(i: u64) -> u64 {
        // Distinct fingerprints that land in every shard.
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn groups_are_whole_cache_lines() {
        fn assert_whole<A: TableOf>() {
            let group = std::mem::size_of::<A::Group>();
            let slots = <A::Group as Slots>::WIDTH * std::mem::size_of::<Slot<A::State>>();
            assert_eq!((group % 64, group), (0, slots), "{}", A::KIND);
        }
        for kind in AlgorithmKind::ALL {
            with_algorithm!(kind, A => assert_whole::<A>());
        }
    }

    #[test]
    fn stacked_checks_charge_all_or_none() {
        let store = MemoryStore::default();
        let tight = check(spread(1), AlgorithmKind::FixedWindow, 1, 60);
        let loose = check(spread(2), AlgorithmKind::SlidingLog, 5, 60);
        assert!(store.decide_now(&[tight, loose], T0).allowed);
        let denied = store.decide_now(&[tight, loose], T0);
        assert!(!denied.allowed);
        assert!(!denied.decisions[0].allowed && denied.decisions[1].allowed);
        // Charged once (by the first call), not by the denied one: 5 - 1 - this one.
        assert_eq!(store.decide_now(&[loose], T0).decisions[0].remaining, 3);
    }

    #[test]
    fn same_shard_checks_lock_once() {
        let store = MemoryStore::default();
        let a = check(5, AlgorithmKind::FixedWindow, 2, 60);
        let shard = |c: &Check| shard_of(c.fingerprint());
        let b = (6..)
            .map(|k| check(k, AlgorithmKind::FixedWindow, 2, 60))
            .find(|b| shard(b) == shard(&a))
            .unwrap();
        assert!(store.decide_now(&[a, b], T0).allowed);
        assert!(store.decide_now(&[b, a], T0).allowed);
        assert!(!store.decide_now(&[a, b], T0).allowed);
    }

    #[test]
    fn idle_keys_are_swept_inline() {
        let store = MemoryStore::default();
        for i in 0..1_000 {
            store.decide_now(&[check(spread(i), AlgorithmKind::FixedWindow, 5, 1)], T0);
        }
        assert_eq!(store.stats().keys, 1_000);
        // Past the windows and the sweep interval, new keys trigger the sweeps.
        let later = T0 + SWEEP_INTERVAL + NANOS_PER_SEC;
        for i in 1_000..1_000 + 64 * 20 {
            store.decide_now(&[check(spread(i), AlgorithmKind::FixedWindow, 5, 1)], later);
        }
        assert_eq!(
            store.stats(),
            MemoryStoreStats {
                keys: 64 * 20,
                evictions: 0,
                log_bytes: 0,
            }
        );
    }

    #[test]
    fn the_cap_holds_under_a_flood_of_distinct_keys() {
        let store = MemoryStore::with_max_keys(6_400);
        for i in 0..100_000 {
            let d = store.decide_now(
                &[check(spread(i), AlgorithmKind::SlidingLog, 10, 3_600)],
                T0,
            );
            assert!(d.allowed);
        }
        let stats = store.stats();
        assert!(stats.keys <= store.max_keys(), "{stats:?}");
        assert!(stats.keys >= store.max_keys() * 9 / 10, "{stats:?}");
        assert_eq!(stats.evictions, 100_000 - stats.keys as u64);
    }

    #[test]
    fn a_full_shard_prefers_expired_keys_over_live_ones() {
        let store = MemoryStore::with_max_keys(640);
        for k in 0..5_000 {
            store.decide_now(&[check(spread(k), AlgorithmKind::FixedWindow, 1, 1)], T0);
        }
        let full = store.stats();
        assert!(full.evictions > 0 && full.keys <= 640, "{full:?}");
        // Within the sweep interval, but the old windows have ended: nothing live is lost.
        let now = T0 + 2 * NANOS_PER_SEC;
        // About 1.5 new keys per shard of 10: room comes from the expired ones alone.
        for k in 5_000..5_100 {
            store.decide_now(&[check(spread(k), AlgorithmKind::FixedWindow, 1, 1)], now);
        }
        assert_eq!(
            store.stats().evictions,
            full.evictions,
            "only expired keys made room"
        );
    }

    #[test]
    fn a_flood_of_fresh_keys_does_not_push_out_a_spent_budget() {
        let store = MemoryStore::with_max_keys(640);
        // A busy client has spent its 300 of a 30 s window; it ends long before the flood's.
        let hot = check(u64::MAX / 3, AlgorithmKind::FixedWindow, 300, 30);
        for _ in 0..300 {
            assert!(store.decide_now(&[hot], T0).allowed);
        }
        for i in 0..100_000 {
            let fresh = check(spread(i), AlgorithmKind::FixedWindow, 100, 3_600);
            assert!(store.decide_now(&[fresh], T0 + NANOS_PER_SEC).allowed);
        }
        assert!(store.stats().evictions > 90_000);
        let later = store.decide_now(&[hot], T0 + 2 * NANOS_PER_SEC);
        assert!(
            !later.allowed,
            "the spent budget was evicted and given back"
        );
        assert_eq!(later.decisions[0].remaining, 0);
    }

    #[test]
    fn logs_are_bounded_in_bytes_and_give_their_room_back() {
        // The smallest cap: one full log (10,000 entries in 16,384 places, 128 KiB) a shard.
        let store = MemoryStore::with_max_keys(1_000_000).with_max_log_bytes(0);
        assert_eq!(store.max_log_bytes(), 64 * 131_072);
        let busy = check(u64::MAX / 3, AlgorithmKind::SlidingLog, 10_000, 60);
        assert!(store.decide_now(&[busy], T0).allowed);
        let busy = Check {
            cost: 6_000,
            ..busy
        };
        assert!(store.decide_now(&[busy], T0).allowed);
        // 2,000 logs of 1,000 entries each would hold 16 MB: a flood the cap turns away.
        for i in 0..2_000 {
            let log = Check {
                cost: 1_000,
                ..check(spread(i), AlgorithmKind::SlidingLog, 10_000, 60)
            };
            assert!(store.decide_now(&[log], T0).allowed);
            assert!(store.stats().log_bytes <= store.max_log_bytes());
        }
        let stats = store.stats();
        // About half of the 16 MB did not fit in the 8 MiB.
        assert!(stats.evictions > 900, "{stats:?}");
        // The log holding most was never the one evicted.
        let more = Check {
            cost: 3_999,
            ..busy
        };
        assert!(store.decide_now(&[more], T0).allowed);
        assert!(!store.decide_now(&[busy], T0).allowed);
        // Once everything has expired, the accounting comes back to nothing.
        let later = T0 + 61 * NANOS_PER_SEC;
        for i in 0..64 * 20 {
            store.decide_now(&[check(spread(i), AlgorithmKind::FixedWindow, 5, 1)], later);
        }
        store.decide_now(
            &[check(spread(0), AlgorithmKind::FixedWindow, 5, 1)],
            later + SWEEP_INTERVAL,
        );
        store.reset_now(&[busy]);
        assert_eq!(store.stats().log_bytes, 0, "{:?}", store.stats());
    }
}
