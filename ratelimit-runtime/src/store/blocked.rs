//! A local cache of keys a remote store denied until some instant, so that a client hammering
//! a spent budget costs the store nothing until then (as Envoy's over-limit cache).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use nohash_hasher::NoHashHasher;
use smallvec::SmallVec;

use super::{Check, Verdict};
use crate::clock::UnixNanos;
use crate::decision::Decision;

const SHARDS: usize = 16;

/// Key -> (the cost that was denied, the instant the entry ends, the denial).
type Entries = HashMap<u64, (u32, UnixNanos, Decision), BuildHasherDefault<NoHashHasher<u64>>>;

/// What [`BlockedKeys::look`] found for a request.
#[derive(Debug)]
pub struct Cached {
    /// The cached denial, if a key is blocked.
    pub denied: Option<Verdict>,
    /// Whether a key is due its second look.
    pub second_look: bool,
}

/// What the cache holds for one key.
enum Entry {
    Denied(Decision),
    SecondLook,
    None,
}

/// Denied keys and the decision that denied them, until its `retry_at` (or earlier, see
/// [`BlockedKeys::remember_until`]).
#[derive(Debug)]
pub struct BlockedKeys {
    shards: Box<[Mutex<Entries>]>,
    max_per_shard: usize,
    hits: AtomicU64,
    /// Mixed into keys, as in the memory store: keys may come from a public hash.
    seed: ahash::RandomState,
}

impl BlockedKeys {
    /// A cache of at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> BlockedKeys {
        BlockedKeys {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            hits: AtomicU64::new(0),
            seed: ahash::RandomState::new(),
        }
    }

    /// A denial for `checks` at `now` from the cache, if one of their keys is still blocked for
    /// at least their cost: each check's cached denial where it has one (the one blocked
    /// longest decides, as Redis would).
    pub fn lookup(&self, checks: &[Check], now: UnixNanos) -> Option<Verdict> {
        self.look(checks, now).denied
    }

    /// [`lookup`](Self::lookup), and whether a key of `checks` is due its second look (its
    /// capped denial is over, see [`remember_until`](Self::remember_until)): when the store
    /// then allows the request, [`forget`](Self::forget) those keys, so that their next
    /// denial is a first one again.
    pub fn look(&self, checks: &[Check], now: UnixNanos) -> Cached {
        // The checks without a cached denial are not decided: with one denied, none is
        // charged. They read as allowed, with no limit known.
        let placeholder = Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_at: now,
            retry_at: now,
        };
        let mut second_look = false;
        let decisions: SmallVec<[Decision; 4]> = checks
            .iter()
            .map(|c| match self.get(c, now) {
                Entry::Denied(decision) => decision,
                Entry::SecondLook => {
                    second_look = true;
                    placeholder
                }
                Entry::None => placeholder,
            })
            .collect();
        if decisions.iter().all(|d| d.allowed) {
            return Cached {
                denied: None,
                second_look,
            };
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Cached {
            denied: Some(Verdict {
                decisions,
                allowed: false,
            }),
            second_look,
        }
    }

    /// Remembers the denied checks of `verdict` until their `retry_at`.
    pub fn remember(&self, checks: &[Check], verdict: &Verdict, now: UnixNanos) {
        self.remember_until(checks, verdict, now, UnixNanos::MAX);
    }

    /// Remembers the denied checks of `verdict` until `until` or their `retry_at`, whichever
    /// comes first, and a key denied again after its `until` (a second look) until its
    /// `retry_at`: a denial of a leased key holds only until the leases others held when it
    /// was made have come back, and the store is asked again once.
    pub fn remember_until(
        &self,
        checks: &[Check],
        verdict: &Verdict,
        now: UnixNanos,
        until: UnixNanos,
    ) {
        for (check, decision) in checks.iter().zip(&verdict.decisions) {
            if decision.allowed || decision.retry_at <= now {
                continue;
            }
            let key = self.seed.hash_one(check.key);
            let mut shard = self.shard(key);
            // The mark of a capped denial whose cap is over: this is the second look.
            let looked_again = shard
                .get(&key)
                .is_some_and(|&(_, ends, d)| ends <= now && now < d.retry_at);
            let ends = if looked_again {
                decision.retry_at
            } else {
                decision.retry_at.min(until)
            };
            if shard.len() >= self.max_per_shard {
                shard.retain(|_, (_, _, d)| d.retry_at > now);
            }
            if shard.len() < self.max_per_shard {
                shard.insert(key, (check.cost, ends, *decision));
            }
        }
    }

    /// Drops any cached denial of `checks`' keys (their state was reset).
    pub fn forget(&self, checks: &[Check]) {
        for check in checks {
            let key = self.seed.hash_one(check.key);
            self.shard(key).remove(&key);
        }
    }

    /// Requests answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The cached denial of `check`'s key, if still in force and for a cost no larger than
    /// `check`'s (a smaller cost may fit where a larger one did not).
    fn get(&self, check: &Check, now: UnixNanos) -> Entry {
        let key = self.seed.hash_one(check.key);
        let mut shard = self.shard(key);
        let Some(&(cost, ends, decision)) = shard.get(&key) else {
            return Entry::None;
        };
        if decision.retry_at <= now {
            shard.remove(&key);
            return Entry::None;
        }
        if ends <= now {
            // A capped denial whose cap is over stays, as the mark of the second look.
            return Entry::SecondLook;
        }
        // Within its `max_wait` of its turn, the request may reserve it: the store decides.
        let within_wait = decision.retry_at - now <= check.max_wait;
        if check.cost >= cost && !within_wait {
            Entry::Denied(decision)
        } else {
            Entry::None
        }
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, Entries> {
        let index = (key >> 40) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{AlgorithmKind, Limit};
    use crate::quota::Quota;

    fn check(key: u64) -> Check {
        let limit = Limit::new(Quota::from_parts(1, 1).unwrap());
        Check {
            key: key.into(),
            group: 0,
            algorithm: AlgorithmKind::Gcra,
            limit,
            cost: 1,
            max_wait: 0,
            probe: false,
        }
    }

    fn denial(retry_at: u64) -> Decision {
        Decision {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_at: 50,
            retry_at,
        }
    }

    #[test]
    fn a_denied_key_is_answered_locally_until_retry_at() {
        let cache = BlockedKeys::new(100);
        let denied = denial(40);
        let allowed = Decision {
            allowed: true,
            limit: 5,
            remaining: 3,
            reset_at: 50,
            retry_at: 10,
        };
        let verdict = Verdict {
            decisions: [allowed, denied].into_iter().collect(),
            allowed: false,
        };
        cache.remember(&[check(1), check(2)], &verdict, 10);
        assert!(
            cache.lookup(&[check(1)], 11).is_none(),
            "allowed keys are not cached"
        );
        let hit = cache.lookup(&[check(1), check(2)], 39).unwrap();
        assert!(!hit.allowed);
        assert_eq!(hit.decisions[1], denied);
        assert!(
            cache.lookup(&[check(2)], 40).is_none(),
            "free again at retry_at"
        );
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn the_longest_denial_decides_and_smaller_costs_are_asked_again() {
        let cache = BlockedKeys::new(100);
        let (short, long) = (denial(20), denial(80));
        let verdict = Verdict {
            decisions: [short, long].into_iter().collect(),
            allowed: false,
        };
        let expensive = Check {
            cost: 5,
            ..check(3)
        };
        cache.remember(&[check(1), expensive], &verdict, 10);
        let hit = cache.lookup(&[check(1), expensive], 11).unwrap();
        assert_eq!(
            hit.decisions[1], long,
            "Retry-After must cover the longest denial"
        );
        assert!(
            cache.lookup(&[check(3)], 11).is_none(),
            "cost 1 may fit where 5 did not"
        );
        assert!(cache.lookup(&[expensive], 11).is_some());
    }

    #[test]
    fn a_capped_denial_ends_at_its_cap_with_its_retry_at_unchanged() {
        let cache = BlockedKeys::new(100);
        let denied = denial(40);
        let verdict = Verdict {
            decisions: [denied].into_iter().collect(),
            allowed: false,
        };
        cache.remember_until(&[check(1)], &verdict, 10, 25);
        let hit = cache.lookup(&[check(1)], 24).unwrap();
        assert_eq!(hit.decisions[0], denied, "Retry-After still from Redis");
        assert!(
            cache.lookup(&[check(1)], 25).is_none(),
            "asked again at the cap"
        );
        assert!(cache.look(&[check(1)], 25).second_look);
        assert!(!cache.look(&[check(2)], 25).second_look);
        // Denied again on the second look: cached to `retry_at`, whatever the cap.
        cache.remember_until(&[check(1)], &verdict, 26, 41);
        assert!(cache.lookup(&[check(1)], 39).is_some());
        assert!(cache.lookup(&[check(1)], 40).is_none());
        // A new denial after `retry_at` starts over with its cap.
        let later = denial(80);
        let verdict = Verdict {
            decisions: [later].into_iter().collect(),
            allowed: false,
        };
        cache.remember_until(&[check(1)], &verdict, 50, 60);
        assert!(cache.lookup(&[check(1)], 59).is_some());
        assert!(cache.lookup(&[check(1)], 60).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = BlockedKeys::new(16);
        let denied = denial(40);
        for key in 0..10_000u64 {
            let verdict = Verdict {
                decisions: [denied].into_iter().collect(),
                allowed: false,
            };
            cache.remember(&[check(key)], &verdict, 10);
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 16, "{held}");
    }
}
