//! Threads hammer the memory store; the admitted total is exactly what each algorithm allows.

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::clock::NANOS_PER_SEC;
use ratelimit_runtime::store::{Check, MemoryStore};
use ratelimit_runtime::Quota;

const T0: u64 = 1_800_000_000 * NANOS_PER_SEC;
const THREADS: usize = 8;
const TRIES: usize = 2_000;

fn hammer(store: &MemoryStore, checks: &[Check], now: u64) -> u32 {
    let admitted = AtomicU32::new(0);
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..TRIES {
                    if store.decide_now(checks, now).allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.into_inner()
}

#[test]
fn one_hot_key_admits_exactly_the_capacity() {
    let store = MemoryStore::default();
    for (i, algorithm) in AlgorithmKind::ALL.into_iter().enumerate() {
        let quota = Quota::from_parts(1_000, 3_600).unwrap();
        let check = Check {
            group: 0,
            key: 77 + i as u128,
            algorithm,
            limit: algorithm.default_limit(quota),
            cost: 1,
            max_wait: 0,
            probe: false,
        };
        let expected = check.limit.capacity.get();
        assert_eq!(hammer(&store, &[check], T0), expected, "{algorithm}");
    }
}

#[test]
fn stacked_checks_under_contention_charge_all_or_none() {
    let store = MemoryStore::default();
    let limit = |n| Limit::new(Quota::from_parts(n, 3_600).unwrap());
    // The same two keys, listed in both orders by different threads: no deadlock, and the
    // looser limit is charged exactly as often as the tighter one admits.
    let tight = Check {
        group: 0,
        key: 1 << 40,
        algorithm: AlgorithmKind::SlidingLog,
        limit: limit(300),
        cost: 1,
        max_wait: 0,
        probe: false,
    };
    let loose = Check {
        group: 0,
        key: 2 << 40,
        algorithm: AlgorithmKind::Gcra,
        limit: limit(5_000),
        cost: 2,
        max_wait: 0,
        probe: false,
    };
    let admitted = AtomicU32::new(0);
    thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, admitted) = (&store, &admitted);
            scope.spawn(move || {
                let order = if t % 2 == 0 {
                    [tight, loose]
                } else {
                    [loose, tight]
                };
                for _ in 0..TRIES {
                    if store.decide_now(&order, T0).allowed {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 300);
    let loose_left = store
        .decide_now(&[Check { cost: 1, ..loose }], T0)
        .decisions[0]
        .remaining;
    assert_eq!(loose_left, 5_000 - 600 - 1);
}

#[test]
fn a_million_key_flood_stays_at_a_cap_of_a_hundred_thousand() {
    let store = MemoryStore::with_max_keys(100_000);
    let limit = Limit::new(Quota::from_parts(10, 3_600).unwrap());
    let flood = |thread: u64| {
        for i in 0..250_000u64 {
            let key = (thread << 56 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let check = Check {
                group: 0,
                key: key.into(),
                algorithm: AlgorithmKind::Gcra,
                limit,
                cost: 1,
                max_wait: 0,
                probe: false,
            };
            assert!(store.decide_one(&check, T0).allowed);
        }
    };
    thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || flood(t));
        }
    });
    let stats = store.stats();
    // The cap is 100,000 rounded up to a multiple of the 64 shards.
    assert_eq!(store.max_keys(), 100_032);
    assert!(
        stats.keys <= store.max_keys() && stats.keys > 99_000,
        "{stats:?}"
    );
    assert_eq!(
        stats.evictions,
        1_000_000 - stats.keys as u64,
        "every key beyond the cap is counted"
    );
}
