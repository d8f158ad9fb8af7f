//! The memory store's table: fingerprints beside their states, found in one cache miss.
//!
//! A slot holds a key's 64-bit fingerprint and its state side by side (16 bytes for an 8-byte
//! state), and slots come in groups aligned to 64-byte cache lines (four 16-byte slots make one
//! line). A key's home is the first slot of the group its fingerprint's low bits pick; it lives
//! there or in the first free slot after (linear probing). A lookup scans from the start of the
//! home group, so a key present costs the one miss of its group's line: a SwissTable
//! (`hashbrown`) keeps its control bytes apart from its entries, a second dependent miss once
//! the table outgrows the caches.
//!
//! Fingerprint 0 marks a free slot, so a key of 0 is stored as 1 (the two share a state, as
//! any two colliding fingerprints do). A removal shifts the entries after it back into the gap
//! (no tombstones), so probes stay as short as the load alone makes them. The table doubles
//! when an insert would take it past 5/8 full: below that a key is rarely outside its home
//! group, above it the runs of linear probing lengthen quickly. It never shrinks, so once a
//! store has grown to its working set a check allocates nothing.
//!
//! Keys must be spread uniformly over their low bits (the store's are seeded hashes): the table
//! uses them as they are.

use std::mem;

/// Marks a free slot.
const FREE: u64 = 0;

/// One key: its fingerprint (never [`FREE`] when occupied) beside its state.
#[derive(Default)]
pub(super) struct Slot<S> {
    fingerprint: u64,
    state: S,
}

/// `N` slots from the start of a cache line: the unit a probe starts from.
#[repr(align(64))]
pub(super) struct Group<S, const N: usize>([Slot<S>; N]);

impl<S: Default, const N: usize> Default for Group<S, N> {
    fn default() -> Self {
        Group(std::array::from_fn(|_| Slot::default()))
    }
}

/// What a [`Table`] needs of its groups; lets the store name a table by one type per state,
/// with the group's width chosen once, beside the state.
pub(super) trait Slots: Default {
    /// What each slot keeps beside its fingerprint.
    type State: Default;
    /// Slots per group, a power of two.
    const WIDTH: usize;
    /// The `i`-th slot of the group, `i < WIDTH`.
    fn slot(&self, i: usize) -> &Slot<Self::State>;
    /// The `i`-th slot of the group, to change.
    fn slot_mut(&mut self, i: usize) -> &mut Slot<Self::State>;
    /// The slots, moved out.
    fn into_slots(self) -> impl Iterator<Item = Slot<Self::State>>;
}

impl<S: Default, const N: usize> Slots for Group<S, N> {
    type State = S;
    const WIDTH: usize = N;

    fn slot(&self, i: usize) -> &Slot<S> {
        &self.0[i]
    }

    fn slot_mut(&mut self, i: usize) -> &mut Slot<S> {
        &mut self.0[i]
    }

    fn into_slots(self) -> impl Iterator<Item = Slot<S>> {
        self.0.into_iter()
    }
}

/// A map from 64-bit fingerprints to states, in groups `G` of slots.
pub(super) struct Table<G> {
    /// A power of two of them, or none before the first insert.
    groups: Vec<G>,
    len: usize,
}

impl<G> Default for Table<G> {
    fn default() -> Self {
        Table {
            groups: Vec::new(),
            len: 0,
        }
    }
}

impl<G> std::fmt::Debug for Table<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.len)
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl<G: Slots> Table<G> {
    /// Keys held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The state of `key`, if held.
    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut G::State> {
        let at = self.find(stored(key)).ok()?;
        Some(&mut self.slot_mut(at).state)
    }

    /// Holds `state` for `key`; returns the state it replaces.
    pub(super) fn insert(&mut self, key: u64, state: G::State) -> Option<G::State> {
        let fingerprint = stored(key);
        let free = match self.find(fingerprint) {
            Ok(at) => return Some(mem::replace(&mut self.slot_mut(at).state, state)),
            Err(_) if self.must_grow() => {
                self.grow();
                self.slot_for(fingerprint)
            }
            Err(free) => free,
        };
        *self.slot_mut(free) = Slot { fingerprint, state };
        self.len += 1;
        None
    }

    /// Drops `key`; returns its state, if it was held.
    pub(super) fn remove(&mut self, key: u64) -> Option<G::State> {
        let at = self.find(stored(key)).ok()?;
        let Slot { state, .. } = mem::take(self.slot_mut(at));
        self.len -= 1;
        self.close_gap(at);
        Some(state)
    }

    /// Keeps only the states for which `keep` is true; looks at each state once.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&G::State) -> bool) {
        if self.len == 0 {
            return;
        }
        // Start past a free slot: it stays free (gaps close towards it, never past it), so no
        // run of entries wraps around the start and each entry is seen once.
        let mask = self.capacity() - 1;
        let start = (0..=mask)
            .find(|&i| self.slot(i).fingerprint == FREE)
            .unwrap_or_default();
        let mut at = (start + 1) & mask;
        while at != start {
            let slot = self.slot_mut(at);
            if slot.fingerprint != FREE && !keep(&slot.state) {
                *slot = Slot::default();
                self.len -= 1;
                // An entry from further on may now sit at `at`: look at it too.
                self.close_gap(at);
            } else {
                at = (at + 1) & mask;
            }
        }
    }

    /// Up to `n` held keys and their states, from the home of `from` on: a sample as uniform
    /// as `from` is.
    pub(super) fn sample(&self, from: u64, n: usize) -> impl Iterator<Item = (u64, &G::State)> {
        let capacity = self.capacity();
        let start = if capacity == 0 { 0 } else { self.home(from) };
        (0..capacity)
            .map(move |i| self.slot((start + i) & (capacity - 1)))
            .filter(|slot| slot.fingerprint != FREE)
            .map(|slot| (slot.fingerprint, &slot.state))
            .take(n)
    }

    fn capacity(&self) -> usize {
        self.groups.len() * G::WIDTH
    }

    /// The first slot of the group of `fingerprint`.
    fn home(&self, fingerprint: u64) -> usize {
        (fingerprint as usize & (self.groups.len() - 1)) * G::WIDTH
    }

    fn slot(&self, at: usize) -> &Slot<G::State> {
        self.groups[at / G::WIDTH].slot(at % G::WIDTH)
    }

    fn slot_mut(&mut self, at: usize) -> &mut Slot<G::State> {
        self.groups[at / G::WIDTH].slot_mut(at % G::WIDTH)
    }

    /// `Ok` with the slot of `fingerprint`, or `Err` with the free slot that ends its probe
    /// (`Err(0)` in a table with no slots).
    fn find(&self, fingerprint: u64) -> Result<usize, usize> {
        if self.groups.is_empty() {
            return Err(0);
        }
        // Group by group: the same order as slot by slot from the home, one index check a group.
        let mask = self.groups.len() - 1;
        let mut index = fingerprint as usize & mask;
        loop {
            let group = &self.groups[index];
            for i in 0..G::WIDTH {
                match group.slot(i).fingerprint {
                    f if f == fingerprint => return Ok(index * G::WIDTH + i),
                    FREE => return Err(index * G::WIDTH + i),
                    _ => {}
                }
            }
            index = (index + 1) & mask;
        }
    }

    /// The slot `fingerprint` is in, or would go to.
    fn slot_for(&self, fingerprint: u64) -> usize {
        match self.find(fingerprint) {
            Ok(at) | Err(at) => at,
        }
    }

    /// Whether one more key would take the table past its load factor (5/8).
    fn must_grow(&self) -> bool {
        (self.len + 1) * 8 > self.capacity() * 5
    }

    /// Doubles the groups (one to start with) and puts every entry back from its home.
    fn grow(&mut self) {
        const { assert!(G::WIDTH.is_power_of_two(), "slots are found by masking") };
        let groups = (self.groups.len() * 2).max(1);
        let old = mem::replace(&mut self.groups, Vec::with_capacity(groups));
        self.groups.resize_with(groups, G::default);
        for group in old {
            for slot in group.into_slots() {
                if slot.fingerprint != FREE {
                    let at = self.slot_for(slot.fingerprint);
                    *self.slot_mut(at) = slot;
                }
            }
        }
    }

    /// Fills the free slot `gap` with the entries after it that may move back (those whose
    /// probe from their home passes `gap`), until a free slot ends the run.
    fn close_gap(&mut self, mut gap: usize) {
        let mask = self.capacity() - 1;
        let mut at = (gap + 1) & mask;
        loop {
            let fingerprint = self.slot(at).fingerprint;
            if fingerprint == FREE {
                return;
            }
            let home = self.home(fingerprint);
            if at.wrapping_sub(home) & mask >= at.wrapping_sub(gap) & mask {
                let moved = mem::take(self.slot_mut(at));
                *self.slot_mut(gap) = moved;
                gap = at;
            }
            at = (at + 1) & mask;
        }
    }
}

/// The fingerprint `key` is stored under: any but [`FREE`].
pub(super) fn stored(key: u64) -> u64 {
    key.max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    type Small = Table<Group<u64, 4>>;

    /// Keys whose home is group `group` of a table of `groups` groups.
    fn homed(group: u64, groups: u64, nth: u64) -> u64 {
        group + groups * (nth + 1)
    }

    /// An empty table of four groups (sixteen slots, room for ten keys).
    fn four_groups() -> Small {
        Table {
            groups: (0..4).map(|_| Group::default()).collect(),
            len: 0,
        }
    }

    fn filled(keys: impl IntoIterator<Item = u64>) -> Small {
        let mut table = Small::default();
        for key in keys {
            assert_eq!(table.insert(key, key * 10), None);
        }
        table
    }

    #[test]
    fn groups_fill_a_cache_line() {
        assert_eq!(mem::size_of::<Group<u64, 4>>(), 64);
        assert_eq!(mem::align_of::<Group<u64, 4>>(), 64);
    }

    #[test]
    fn inserts_finds_and_removes() {
        let mut table = filled(1..=100);
        assert_eq!(table.len(), 100);
        assert_eq!(table.get_mut(42).copied(), Some(420));
        assert_eq!(table.insert(42, 7), Some(420));
        assert_eq!(table.get_mut(42).copied(), Some(7));
        assert_eq!(table.remove(42), Some(7));
        assert_eq!(table.remove(42), None);
        assert_eq!(table.get_mut(42), None);
        assert_eq!(table.len(), 99);
        assert_eq!(Small::default().get_mut(1), None);
    }

    #[test]
    fn key_zero_is_held_like_any_other() {
        let mut table = Small::default();
        table.insert(0, 5);
        assert_eq!(table.get_mut(0).copied(), Some(5));
        assert_eq!(table.remove(0), Some(5));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn grows_by_doubling_past_five_eighths() {
        let mut table = Small::default();
        table.insert(1, 0);
        assert_eq!(table.capacity(), 4);
        table.insert(2, 0);
        assert_eq!(table.capacity(), 4, "2 of 4 is under 5/8");
        table.insert(3, 0);
        assert_eq!(table.capacity(), 8);
        let table = filled(1..=1_000);
        assert_eq!(table.capacity(), 2_048);
        assert!((1..=1_000).all(|k| table.find(k).is_ok()));
    }

    #[test]
    fn a_removal_shifts_its_run_back() {
        // Four groups; keys homed on group 1 overflow into group 2, then one homed on 2 follows.
        let run: Vec<u64> = (0..5).map(|n| homed(1, 4, n)).collect();
        let mut table = four_groups();
        for &key in &run {
            table.insert(key, key);
        }
        let after = homed(2, 4, 0);
        table.insert(after, after);
        assert_eq!(table.find(run[4]), Ok(8), "the fifth spills into group 2");
        assert_eq!(table.find(after), Ok(9));
        table.remove(run[0]);
        assert_eq!(table.find(run[4]), Ok(7), "back into its home group");
        assert_eq!(table.find(after), Ok(8), "back to its own home");
        table.remove(after);
        assert_eq!(table.slot(8).fingerprint, FREE);
        assert!(run[1..]
            .iter()
            .all(|&k| table.get_mut(k).copied() == Some(k)));
    }

    #[test]
    fn a_run_wraps_around_the_end() {
        let mut table = four_groups();
        let run: Vec<u64> = (0..6).map(|n| homed(3, 4, n)).collect();
        for &key in &run {
            table.insert(key, key);
        }
        assert_eq!(
            table.find(run[5]),
            Ok(1),
            "past the last slot, back at the first"
        );
        table.remove(run[1]);
        assert_eq!(table.find(run[5]), Ok(0));
        assert!(run
            .iter()
            .all(|&k| (k == run[1]) != table.get_mut(k).is_some()));
    }

    #[test]
    fn retain_sees_each_entry_once() {
        let mut table = filled(1..=500);
        let mut seen = 0;
        table.retain(|&v| {
            seen += 1;
            v % 20 == 0
        });
        assert_eq!(seen, 500);
        assert_eq!(table.len(), 250);
        assert!((1..=500).all(|k| table.get_mut(k).is_some() == (k % 2 == 0)));
    }

    #[test]
    fn samples_only_held_keys() {
        let table = filled((1..=50).map(|k| k * 7));
        let sample: Vec<_> = table.sample(12_345, 8).collect();
        assert_eq!(sample.len(), 8);
        assert!(sample.iter().all(|&(k, &v)| k % 7 == 0 && v == k * 10));
        assert_eq!(Small::default().sample(1, 8).count(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
        Retain(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, clustered in the low bits, so runs form and collide.
        let key = prop_oneof![0..64u64, (0..64u64).prop_map(|k| k << 20)];
        prop_oneof![
            4 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key.prop_map(Op::Remove),
            1 => (2..5u64).prop_map(Op::Retain),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..300)) {
            let mut table = Small::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(table.insert(k, v), model.insert(stored(k), v))
                    }
                    Op::Remove(k) => prop_assert_eq!(table.remove(k), model.remove(&stored(k))),
                    Op::Retain(m) => {
                        table.retain(|v| v % m != 0);
                        model.retain(|_, v| *v % m != 0);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                for (&k, v) in &model {
                    prop_assert_eq!(table.get_mut(k).map(|v| *v), Some(*v));
                }
                prop_assert_eq!(table.sample(0, usize::MAX).count(), model.len());
            }
        }
    }
}
