//! Heap bytes per tracked key at 1,000,000 `IpAddr` keys: ours beside governor 0.10.
//!
//! `cargo bench --bench bytes_per_key`. A counting allocator measures what each store holds
//! after one check per key, minus what it held empty. Run under `cargo test` it checks 10,000
//! keys only, as a smoke test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};

use ratelimit_runtime::algorithm::{AlgorithmKind, Limit};
use ratelimit_runtime::store::{Check, MemoryStore};
use ratelimit_runtime::Quota;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Bytes per key held by whatever `fill` builds and returns, for `keys` addresses.
fn bytes_per_key<T>(keys: u32, fill: impl FnOnce(&[IpAddr]) -> T) -> f64 {
    let ips: Vec<IpAddr> = (0..keys)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let before = live();
    let store = fill(&ips);
    let held = live() - before;
    drop(store);
    held as f64 / f64::from(keys)
}

fn ours(algorithm: AlgorithmKind, ips: &[IpAddr]) -> MemoryStore {
    let store = MemoryStore::with_max_keys(ips.len() * 2);
    let hasher = ahash::RandomState::new();
    let limit = Limit::new(Quota::from_parts(1_000, 1).unwrap());
    for ip in ips {
        let key = hasher.hash_one(("bench::handler", algorithm, limit, ip));
        store.decide_now(
            &[Check {
                group: 0,
                key: key.into(),
                algorithm,
                limit,
                cost: 1,
                max_wait: 0,
                probe: false,
            }],
            1_800_000_000_000_000_000,
        );
    }
    assert_eq!(store.stats().keys, ips.len());
    store
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let keys = if benchmarking { 1_000_000 } else { 10_000 };
    println!("heap bytes per tracked IpAddr key, {keys} keys");
    println!("| store | bytes/key |");
    println!("|---|---|");
    let governor = bytes_per_key(keys, |ips| {
        let limiter: governor::DefaultKeyedRateLimiter<IpAddr> = governor::RateLimiter::keyed(
            governor::Quota::per_second(NonZeroU32::new(1_000).unwrap()),
        );
        ips.iter().for_each(|ip| drop(limiter.check_key(ip)));
        limiter
    });
    println!("| governor 0.10 keyed (DashMap) | {governor:.1} |");
    for algorithm in AlgorithmKind::ALL {
        let ours = bytes_per_key(keys, |ips| ours(algorithm, ips));
        println!("| ours, {algorithm} | {ours:.1} |");
        if algorithm == AlgorithmKind::Gcra && benchmarking {
            println!("|   ratio to governor | {:.2} |", ours / governor);
        }
    }
}
