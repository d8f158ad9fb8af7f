//! Tier and key functions that look things up: `limit = plan_of` or `key = account_of` where
//! the function is `async fn(String) -> ..`, and the cache of their answers.
//!
//! A lookup is asked the client's key (as [`peek`](crate::RateLimiter::peek) names it), not the
//! request: its answer is then the answer for every request of that key, and can be kept. The
//! limiter keeps answers for a time to live ([`Lookups::ttl`]), at most [`Lookups::capacity`] of
//! each kind; requests of one key that miss together share one lookup, and every rule and
//! handler naming the same function shares its answers.
//!
//! What a slow or failing lookup gets: a lookup that takes longer than [`Lookups::timeout`], or
//! fails (`Err`, or `None` for a tier), is answered by the last answer the cache holds for that
//! key, however old (logged at warn level); without one, the request is refused with **503**
//! and `Retry-After: 1`, its handler not run and nothing charged. A failed lookup is asked
//! again at most once per [`Lookups::retry_after`] per key, so a database that is down is not
//! asked by every request. Deciding a request under a limit nobody knows would lose the limit
//! (fail open) or invent one (a default tier): 503 says what happened.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::clock::{Clock, UnixNanos};

/// What an async lookup returns: the answer, or why there is none.
pub type LookupFuture<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// What a tier or key function of the attribute gives for a request: the answer of a function
/// of the request, or the lookup to await for the client's key.
pub enum Choice<T> {
    /// A function of the request answered.
    Now(T),
    /// The lookup of the client's key, to await.
    Later(LookupFuture<T>),
}

impl<T> fmt::Debug for Choice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Now(_) => f.write_str("Choice::Now"),
            Choice::Later(_) => f.write_str("Choice::Later"),
        }
    }
}

/// A tier or key function as the attribute wraps it: `choose(req, None)` answers for a
/// function of the request (`looks_up` false); `choose(req, Some(key))` starts the lookup of
/// `key` for an async function (`looks_up` true). The attribute writes these; a rule written by
/// hand uses [`QuotaSource::PerRequest`](crate::QuotaSource::PerRequest) or
/// [`Scope::Custom`](crate::key::Scope::Custom).
pub struct Chooser<T: 'static> {
    /// The function.
    pub choose: fn(&actix_web::HttpRequest, Option<String>) -> Choice<T>,
    /// Whether it looks the client's key up (async) rather than reading the request.
    pub looks_up: bool,
    /// The identity of the user's function (its type), which names its answers in the cache:
    /// every rule and handler naming one function shares them.
    pub function: fn() -> TypeId,
}

impl<T> Clone for Chooser<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Chooser<T> {}

impl<T> fmt::Debug for Chooser<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chooser")
            .field("looks_up", &self.looks_up)
            .finish_non_exhaustive()
    }
}

/// How a limiter keeps the answers of tier and key lookups
/// ([`RateLimiterBuilder::lookups`](crate::RateLimiterBuilder::lookups)).
///
/// ```
/// use std::time::Duration;
/// use ratelimit_runtime::{Lookups, RateLimiter};
///
/// let limiter = RateLimiter::builder()
///     .lookups(Lookups::new().ttl(Duration::from_secs(30)).timeout(Duration::from_millis(50)))
///     .build()
///     .unwrap();
/// # let _ = limiter;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookups {
    ttl: Duration,
    timeout: Duration,
    retry_after: Duration,
    capacity: usize,
}

impl Default for Lookups {
    fn default() -> Lookups {
        Lookups {
            ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(250),
            retry_after: Duration::from_secs(1),
            capacity: 10_000,
        }
    }
}

impl Lookups {
    /// Answers kept 60 s, lookups given 250 ms, failures asked again after 1 s, at most
    /// 10,000 answers.
    pub fn new() -> Lookups {
        Lookups::default()
    }

    /// How long an answer is used before the key is looked up again (default 60 s): how long a
    /// client's new tier takes to apply.
    pub fn ttl(mut self, ttl: Duration) -> Lookups {
        self.ttl = ttl;
        self
    }

    /// How long one lookup may take (default 250 ms), a slower one counting as failed. A
    /// request waits for each lookup of its rules in turn: a rule with a key and a tier lookup,
    /// both missing, waits up to twice this.
    pub fn timeout(mut self, timeout: Duration) -> Lookups {
        self.timeout = timeout;
        self
    }

    /// How long a failed lookup is remembered before its key is asked again (default 1 s).
    pub fn retry_after(mut self, retry_after: Duration) -> Lookups {
        self.retry_after = retry_after;
        self
    }

    /// The most answers kept of each kind, tiers and keys, every rule together (default
    /// 10,000, at least 1); past it, expired answers go first, then those used longest ago.
    pub fn capacity(mut self, capacity: usize) -> Lookups {
        self.capacity = capacity.max(1);
        self
    }
}

/// A lookup that gave no answer, and no older answer to stand in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LookupFailed {
    pub(crate) reason: String,
    /// When the key is looked up again.
    pub(crate) retry_after: Duration,
}

impl LookupFailed {
    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The lookup of a [`Choice`]: the future it starts (or an answer it gave at once).
pub(crate) fn later<T: Send + 'static>(choice: Choice<T>) -> LookupFuture<T> {
    match choice {
        Choice::Later(lookup) => lookup,
        Choice::Now(value) => Box::pin(std::future::ready(Ok(value))),
    }
}

/// One answer, and when it came.
struct Answer<T> {
    value: Result<T, String>,
    at: UnixNanos,
}

impl<T> Answer<T> {
    /// Whether it no longer stands at `now`: a good answer after its time to live, a failure
    /// once it may be asked again.
    fn expired(&self, now: UnixNanos, options: &Lookups) -> bool {
        let lasts = match self.value {
            Ok(_) => options.ttl,
            Err(_) => options.retry_after,
        };
        now >= self.at.saturating_add(nanos(lasts))
    }
}

/// One key's lookup: the latest (or pending) answer, the last good one, and when it was last
/// used.
struct Entry<T> {
    cell: Arc<OnceCell<Answer<T>>>,
    stale: Option<T>,
    used: u64,
}

impl<T> Entry<T> {
    fn new(stale: Option<T>, used: u64) -> Entry<T> {
        Entry {
            cell: Arc::new(OnceCell::new()),
            stale,
            used,
        }
    }

    /// A lookup nobody runs or waits for any more (its requests were dropped): the map holds
    /// the only handle.
    fn abandoned(&self) -> bool {
        !self.cell.initialized() && Arc::strong_count(&self.cell) == 1
    }
}

/// Answers of one kind (tiers, or keys), per function and looked-up key.
pub(crate) struct LookupCache<T> {
    options: Lookups,
    entries: Mutex<Entries<T>>,
    /// How requests were answered, by [`LookupOutcome`].
    outcomes: [AtomicU64; 4],
}

/// How a request's lookup was answered (the `outcome` label of `ratelimit_lookups_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LookupOutcome {
    /// By an answer kept, or by the lookup another request had under way.
    Cached = 0,
    /// By a lookup of its own.
    LookedUp = 1,
    /// The lookup failed; the last answer kept stood in.
    Stale = 2,
    /// The lookup failed and nothing stood in: 503.
    Failed = 3,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl LookupOutcome {
    pub(crate) const ALL: [LookupOutcome; 4] = [
        LookupOutcome::Cached,
        LookupOutcome::LookedUp,
        LookupOutcome::Stale,
        LookupOutcome::Failed,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            LookupOutcome::Cached => "cached",
            LookupOutcome::LookedUp => "looked_up",
            LookupOutcome::Stale => "stale",
            LookupOutcome::Failed => "failed",
        }
    }
}

struct Entries<T> {
    /// Per function (its type).
    by_rule: HashMap<TypeId, HashMap<String, Entry<T>>>,
    /// Stamps of use, for evicting what was used longest ago.
    tick: u64,
    len: usize,
}

impl<T: Clone + Send + Sync + 'static> LookupCache<T> {
    pub(crate) fn new(options: Lookups) -> LookupCache<T> {
        LookupCache {
            options,
            entries: Mutex::new(Entries {
                by_rule: HashMap::new(),
                len: 0,
                tick: 0,
            }),
            outcomes: Default::default(),
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    /// How many requests each [`LookupOutcome`] answered.
    pub(crate) fn outcomes(&self) -> [(LookupOutcome, u64); 4] {
        LookupOutcome::ALL.map(|o| (o, self.outcomes[o as usize].load(Ordering::Relaxed)))
    }

    fn counted(&self, outcome: LookupOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The answer for `key` of the function `function` (of the rule `rule`, named in logs):
    /// the one kept while it is fresh, or the one `look_up` gives (one lookup for every request
    /// that misses at once), or the last good one when it fails.
    pub(crate) async fn get(
        &self,
        function: TypeId,
        rule: &str,
        key: &str,
        clock: &dyn Clock,
        look_up: impl FnOnce() -> LookupFuture<T>,
    ) -> Result<T, LookupFailed> {
        let cell = match self.fresh_or_cell(function, key, clock.now()) {
            Ok(Ok(value)) => {
                self.counted(LookupOutcome::Cached);
                return Ok(value);
            }
            Ok(Err(reason)) => return self.stale_or(function, rule, key, reason),
            Err(cell) => cell,
        };
        let timeout = self.options.timeout;
        let ran = AtomicBool::new(false);
        let mine = &ran;
        let answer = cell
            .get_or_init(|| async move {
                mine.store(true, Ordering::Relaxed);
                let value = match tokio::time::timeout(timeout, look_up()).await {
                    Ok(value) => value,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                Answer {
                    value,
                    at: clock.now(),
                }
            })
            .await;
        match &answer.value {
            Ok(value) => {
                self.counted(match ran.into_inner() {
                    true => LookupOutcome::LookedUp,
                    false => LookupOutcome::Cached,
                });
                Ok(value.clone())
            }
            Err(reason) => self.stale_or(function, rule, key, reason.clone()),
        }
    }

    /// A fresh answer (or failure) for `key`, or the cell to look it up in.
    #[allow(clippy::type_complexity)]
    fn fresh_or_cell(
        &self,
        function: TypeId,
        key: &str,
        now: UnixNanos,
    ) -> Result<Result<T, String>, Arc<OnceCell<Answer<T>>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.tick += 1;
        let tick = entries.tick;
        if let Some(entry) = entries
            .by_rule
            .get_mut(&function)
            .and_then(|keys| keys.get_mut(key))
        {
            entry.used = tick;
            let Some(answer) = entry.cell.get() else {
                // Being looked up: wait for that lookup.
                return Err(entry.cell.clone());
            };
            if !answer.expired(now, &self.options) {
                return Ok(answer.value.clone());
            }
            // Expired: look it up again, keeping the last good answer.
            let stale = answer.value.clone().ok().or(entry.stale.take());
            *entry = Entry::new(stale, tick);
            return Err(entry.cell.clone());
        }
        if entries.len >= self.options.capacity {
            entries.make_room(now, &self.options);
            if entries.len >= self.options.capacity {
                // Every answer kept is a lookup under way: this one is looked up, not kept.
                return Err(Arc::new(OnceCell::new()));
            }
        }
        let entry = Entry::new(None, tick);
        let cell = entry.cell.clone();
        entries
            .by_rule
            .entry(function)
            .or_default()
            .insert(key.to_owned(), entry);
        entries.len += 1;
        Err(cell)
    }

    /// The last good answer for `key` in place of a failed lookup, or the failure.
    fn stale_or(
        &self,
        function: TypeId,
        rule: &str,
        key: &str,
        reason: String,
    ) -> Result<T, LookupFailed> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let stale = entries
            .by_rule
            .get(&function)
            .and_then(|keys| keys.get(key))
            .and_then(|entry| entry.stale.clone());
        drop(entries);
        match stale {
            Some(value) => {
                tracing::warn!(rule, %reason, "a lookup failed; its last answer stands in");
                self.counted(LookupOutcome::Stale);
                Ok(value)
            }
            None => {
                self.counted(LookupOutcome::Failed);
                tracing::warn!(rule, %reason, "a lookup failed, and no earlier answer stands in: 503");
                Err(LookupFailed {
                    reason,
                    retry_after: self.options.retry_after,
                })
            }
        }
    }

    /// How many answers (and lookups under way) are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len
    }
}

impl<T> Entries<T> {
    /// Drops expired answers and abandoned lookups; when that is not enough, the eighth of the
    /// rest used longest ago (lookups under way stay), so that a full cache costs a sweep every
    /// eighth of its capacity, not one per insert, and a client inventing keys pushes out
    /// answers nobody uses rather than those in use.
    fn make_room(&mut self, now: UnixNanos, options: &Lookups) {
        let expired = |entry: &Entry<T>| {
            entry.abandoned()
                || entry
                    .cell
                    .get()
                    .is_some_and(|answer| answer.expired(now, options))
        };
        for keys in self.by_rule.values_mut() {
            keys.retain(|_, entry| !expired(entry));
        }
        let mut len: usize = self.by_rule.values().map(HashMap::len).sum();
        if len >= options.capacity {
            let mut uses: Vec<u64> = self
                .by_rule
                .values()
                .flat_map(HashMap::values)
                .filter(|entry| entry.cell.initialized())
                .map(|entry| entry.used)
                .collect();
            if !uses.is_empty() {
                let evict = (options.capacity / 8).clamp(1, uses.len());
                let (_, &mut newest_evicted, _) = uses.select_nth_unstable(evict - 1);
                for keys in self.by_rule.values_mut() {
                    keys.retain(|_, entry| {
                        !(entry.cell.initialized() && entry.used <= newest_evicted)
                    });
                }
                len = self.by_rule.values().map(HashMap::len).sum();
            }
        }
        self.by_rule.retain(|_, keys| !keys.is_empty());
        self.len = len;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicU32;

    fn counted(calls: &Arc<AtomicU32>, answer: Result<u32, String>) -> LookupFuture<u32> {
        let calls = calls.clone();
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            answer
        })
    }

    #[tokio::test]
    async fn answers_are_kept_for_their_time_to_live() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::new(Lookups::new().ttl(Duration::from_secs(60)));
        let calls = Arc::new(AtomicU32::new(0));
        for _ in 0..3 {
            let got = cache
                .get(TypeId::of::<u8>(), "r", "k", &clock, || {
                    counted(&calls, Ok(7))
                })
                .await;
            assert_eq!(got, Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(59));
        cache
            .get(TypeId::of::<u8>(), "r", "k", &clock, || {
                counted(&calls, Ok(8))
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        let got = cache
            .get(TypeId::of::<u8>(), "r", "k", &clock, || {
                counted(&calls, Ok(8))
            })
            .await;
        assert_eq!((got, calls.load(Ordering::SeqCst)), (Ok(8), 2));
        // Other keys and other rules are looked up on their own.
        cache
            .get(TypeId::of::<u8>(), "r", "other", &clock, || {
                counted(&calls, Ok(1))
            })
            .await
            .unwrap();
        cache
            .get(TypeId::of::<u16>(), "s", "k", &clock, || {
                counted(&calls, Ok(1))
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_failure_falls_back_to_the_last_answer_and_is_asked_again_after_a_while() {
        let clock = ManualClock::new(0);
        let options = Lookups::new()
            .ttl(Duration::from_secs(10))
            .retry_after(Duration::from_secs(1));
        let cache = LookupCache::new(options);
        let calls = Arc::new(AtomicU32::new(0));
        // No answer yet: the failure is the answer, and it is remembered for a second.
        let failed = cache.get(TypeId::of::<u8>(), "r", "k", &clock, || {
            counted(&calls, Err("down".into()))
        });
        let failed = failed.await.unwrap_err();
        assert_eq!(
            (failed.reason.as_str(), failed.retry_after_secs()),
            ("down", 1)
        );
        let again = cache
            .get(TypeId::of::<u8>(), "r", "k", &clock, || {
                counted(&calls, Ok(5))
            })
            .await;
        assert!(again.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            cache
                .get(TypeId::of::<u8>(), "r", "k", &clock, || counted(
                    &calls,
                    Ok(5)
                ))
                .await,
            Ok(5)
        );
        // Expired, and the lookup fails: the last answer stands in, however old.
        clock.advance(Duration::from_secs(3_600));
        let stale = cache.get(TypeId::of::<u8>(), "r", "k", &clock, || {
            counted(&calls, Err("down".into()))
        });
        assert_eq!(stale.await, Ok(5));
        assert_eq!(
            cache
                .get(TypeId::of::<u8>(), "r", "k", &clock, || counted(
                    &calls,
                    Ok(6)
                ))
                .await,
            Ok(5)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_slow_lookup_times_out() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::<u32>::new(Lookups::new().timeout(Duration::from_millis(5)));
        let never = || -> LookupFuture<u32> { Box::pin(std::future::pending()) };
        let got = cache.get(TypeId::of::<u8>(), "r", "k", &clock, never).await;
        assert!(got.unwrap_err().reason.contains("no answer within 5ms"));
    }

    #[tokio::test]
    async fn requests_that_miss_together_share_one_lookup() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::new(Lookups::new());
        let calls = Arc::new(AtomicU32::new(0));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let slow = || -> LookupFuture<u32> {
            let (calls, mut rx) = (calls.clone(), rx.clone());
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = rx.wait_for(|open| *open).await;
                Ok(9)
            })
        };
        let waiting = futures_util::future::join_all(
            (0..20).map(|_| cache.get(TypeId::of::<u8>(), "r", "k", &clock, slow)),
        );
        let opened = async {
            tokio::task::yield_now().await;
            tx.send(true).unwrap();
        };
        let (answers, ()) = tokio::join!(waiting, opened);
        assert!(answers.iter().all(|a| *a == Ok(9)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_full_cache_evicts_what_was_used_longest_ago() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::new(Lookups::new().capacity(16));
        let calls = Arc::new(AtomicU32::new(0));
        let id = TypeId::of::<u8>();
        cache
            .get(id, "r", "regular", &clock, || counted(&calls, Ok(1)))
            .await
            .unwrap();
        for i in 0..100 {
            let key = format!("invented-{i}");
            cache
                .get(id, "r", &key, &clock, || counted(&calls, Ok(0)))
                .await
                .unwrap();
            // The regular client keeps asking: its answer stays.
            cache
                .get(id, "r", "regular", &clock, || counted(&calls, Ok(1)))
                .await
                .unwrap();
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            101,
            "the regular key was looked up once"
        );
    }

    #[tokio::test]
    async fn lookups_nobody_waits_for_do_not_hold_the_cache() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::<u32>::new(Lookups::new().capacity(4));
        let id = TypeId::of::<u8>();
        // Requests dropped while their lookups were under way.
        for i in 0..4 {
            let key = format!("dropped-{i}");
            let get = cache.get(id, "r", &key, &clock, || Box::pin(std::future::pending()));
            let _ = futures_util::FutureExt::now_or_never(get);
        }
        assert_eq!(cache.len(), 4);
        let calls = Arc::new(AtomicU32::new(0));
        cache
            .get(id, "r", "next", &clock, || counted(&calls, Ok(1)))
            .await
            .unwrap();
        assert_eq!(cache.len(), 1, "the abandoned lookups made room");
        // Lookups under way are never dropped; past the bound, a lookup is made but not kept.
        let keys: Vec<String> = (0..8).map(|i| format!("pending-{i}")).collect();
        let mut waiting = Vec::new();
        for key in &keys {
            let mut get =
                Box::pin(cache.get(id, "r", key, &clock, || Box::pin(std::future::pending())));
            assert!(futures_util::FutureExt::now_or_never(get.as_mut()).is_none());
            waiting.push(get);
        }
        assert!(cache.len() <= 4, "{} kept", cache.len());
        drop(waiting);
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let clock = ManualClock::new(0);
        let cache = LookupCache::new(Lookups::new().capacity(100));
        let calls = Arc::new(AtomicU32::new(0));
        for i in 0..1_000 {
            let key = format!("k{i}");
            cache
                .get(TypeId::of::<u8>(), "r", &key, &clock, || {
                    counted(&calls, Ok(i))
                })
                .await
                .unwrap();
            assert!(cache.len() <= 100, "{} answers kept", cache.len());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1_000);
        // Expired answers go first.
        clock.advance(Duration::from_secs(60));
        cache
            .get(TypeId::of::<u8>(), "r", "new", &clock, || {
                counted(&calls, Ok(0))
            })
            .await
            .unwrap();
        assert_eq!(cache.len(), 1);
    }
}
