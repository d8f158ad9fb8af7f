//! The in-memory keyed check, ours beside governor 0.10's keyed GCRA, in one run.
//!
//! `cargo bench --bench memory_store`. Each of our checks does what the engine does per rule:
//! read the clock, hash (rule, quota, client address) with the per-process seed, decide in the
//! store. governor's does `check_key(&ip)` on its default keyed store (DashMap) and clock.
//! Quotas are large enough that every check is allowed (the sliding log excepted, see `Ours`):
//! the steady-state cost is measured. Beside the largest table, the floor of a check on this
//! machine: one cache miss (`floor/one_miss`, a dependent random walk over 32 MB, about the
//! size of our table at 1,000,000 keys), and one cache miss under a lock taken and released
//! around it (`floor/one_miss_locked`), as a check takes its shard's lock around its lookup.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, MemoryStore};
use ratelimit_runtime::{Clock, Quota, SystemClock};

type Governor = governor::DefaultKeyedRateLimiter<IpAddr>;

fn governor() -> Governor {
    governor::RateLimiter::keyed(governor::Quota::per_second(NonZeroU32::MAX))
}

/// Our check as the engine makes it, for one algorithm.
struct Ours {
    store: MemoryStore,
    clock: SystemClock,
    hasher: ahash::RandomState,
    algorithm: AlgorithmKind,
    limit: Limit,
}

impl Ours {
    fn new(algorithm: AlgorithmKind, max_keys: usize) -> Ours {
        // Every check passes, except on the sliding log, whose state grows with what it admits:
        // 1,000 per second bounds it (a hot key is then mostly refused, after a prune).
        let limit = if algorithm == AlgorithmKind::SlidingLog {
            1_000
        } else {
            u32::MAX
        };
        let quota = Quota::from_parts(limit, 1).unwrap();
        Ours {
            store: MemoryStore::with_max_keys(max_keys),
            clock: SystemClock::new(),
            hasher: ahash::RandomState::new(),
            algorithm,
            limit: Limit::new(quota),
        }
    }

    #[inline]
    fn check(&self, ip: &IpAddr) -> bool {
        let now = self.clock.now();
        let key = self
            .hasher
            .hash_one(("bench::handler", self.algorithm, self.limit, ip));
        let check = Check {
            group: 0,
            key: key.into(),
            algorithm: self.algorithm,
            limit: self.limit,
            cost: 1,
            max_wait: 0,
            probe: false,
        };
        self.store.decide_one(&check, now).allowed
    }
}

fn addresses(n: u32) -> Vec<IpAddr> {
    (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect()
}

const ALGORITHMS: [AlgorithmKind; 6] = [
    AlgorithmKind::Gcra,
    AlgorithmKind::FixedWindow,
    AlgorithmKind::SlidingWindow,
    AlgorithmKind::SlidingLog,
    AlgorithmKind::TokenBucket,
    AlgorithmKind::LeakyBucket,
];

/// One thread, 1 / 1,000 / 1,000,000 keys visited in turn (all tracked before measuring).
fn keyed(c: &mut Criterion) {
    // Under `cargo test` (no `--bench`) each benchmark runs once: a smaller table keeps that quick.
    let largest = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    for keys in [1u32, 1_000, largest] {
        let mut group = c.benchmark_group(format!("check/{keys}_keys"));
        let ips = addresses(keys);
        let gov = governor();
        ips.iter().for_each(|ip| drop(gov.check_key(ip)));
        let mut i = 0usize;
        group.bench_function("governor", |b| {
            b.iter(|| {
                i = (i + 1) % ips.len();
                black_box(gov.check_key(&ips[i]).is_ok())
            })
        });
        drop(gov);
        for algorithm in ALGORITHMS {
            let ours = Ours::new(algorithm, 2_000_000);
            ips.iter().for_each(|ip| {
                black_box(ours.check(ip));
            });
            group.bench_function(BenchmarkId::new("ours", algorithm), |b| {
                b.iter(|| {
                    i = (i + 1) % ips.len();
                    black_box(ours.check(&ips[i]))
                })
            });
        }
        if keys == largest {
            floors(&mut group);
        }
        group.finish();
    }
}

/// The floors (see the top): a walk along a random cycle of 2^23 slots (32 MB), each step one
/// load that waits for the one before.
fn floors(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let chain = random_cycle(1 << 23);
    let mut at = 0usize;
    group.bench_function("floor/one_miss", |b| {
        b.iter(|| {
            at = chain[at] as usize;
            black_box(at)
        })
    });
    let lock = std::sync::Mutex::new(());
    group.bench_function("floor/one_miss_locked", |b| {
        b.iter(|| {
            let _held = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            at = chain[at] as usize;
            black_box(at)
        })
    });
}

/// A random cyclic permutation of `0..n` (Sattolo's algorithm, a fixed xorshift seed): from
/// any slot, following `chain[at]` visits every slot once.
fn random_cycle(n: usize) -> Vec<u32> {
    let mut chain: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % i as u64) as usize;
        chain.swap(i, j);
    }
    chain
}

/// A key never seen before, each time.
fn new_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_new_key");
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let gov = governor();
            let ips = addresses(iters as u32);
            let start = Instant::now();
            ips.iter().for_each(|ip| drop(black_box(gov.check_key(ip))));
            start.elapsed()
        })
    });
    for algorithm in ALGORITHMS {
        group.bench_function(BenchmarkId::new("ours", algorithm), |b| {
            b.iter_custom(|iters| {
                let ours = Ours::new(algorithm, 20_000_000);
                let ips = addresses(iters as u32);
                let start = Instant::now();
                ips.iter().for_each(|ip| {
                    black_box(ours.check(ip));
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// Two threads at once, on one shared key or on distinct keys; time per check.
fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    for shared in [true, false] {
        let label = if shared { "one_key" } else { "distinct_keys" };
        let key_sets = [addresses(1_000), addresses(2_000).split_off(1_000)];
        let key_of = |thread: usize, i: usize| {
            if shared {
                key_sets[0][0]
            } else {
                key_sets[thread][i % 1_000]
            }
        };
        let gov = governor();
        group.bench_function(BenchmarkId::new("governor", label), |b| {
            b.iter_custom(|iters| parallel(iters, |t, i| gov.check_key(&key_of(t, i)).is_ok()))
        });
        for algorithm in ALGORITHMS {
            let ours = Ours::new(algorithm, 2_000_000);
            group.bench_function(BenchmarkId::new(format!("ours/{algorithm}"), label), |b| {
                b.iter_custom(|iters| parallel(iters, |t, i| ours.check(&key_of(t, i))))
            });
        }
    }
    group.finish();
}

/// Runs `iters` checks split over two threads; returns the wall time per pair of checks.
fn parallel(iters: u64, check: impl Fn(usize, usize) -> bool + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let check = &check;
            scope.spawn(move || {
                for i in 0..iters as usize {
                    black_box(check(thread, i));
                }
            });
        }
    });
    start.elapsed() / 2
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = keyed, new_keys, two_threads
}
criterion_main!(benches);
