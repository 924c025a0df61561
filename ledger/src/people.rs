//! Which people already have their per-offering accounts, so the hot path skips creating
//! them. Losing this cache is harmless (creation is idempotent); it only costs round trips.

use std::collections::HashSet;
use std::sync::RwLock;

/// Bounded so that a flood of distinct people cannot grow memory without limit; when full
/// the set starts over, which only makes some holds pay the creation round trips again.
pub const PEOPLE_CACHED_MAX: usize = 4_000_000;

#[derive(Debug, Default)]
pub(crate) struct PeopleCache {
    known: RwLock<HashSet<(u32, u64)>>,
}

impl PeopleCache {
    pub(crate) fn contains(&self, offering: u32, person: u64) -> bool {
        self.known.read().expect("people cache poisoned").contains(&(offering, person))
    }

    pub(crate) fn insert(&self, offering: u32, person: u64) {
        let mut known = self.known.write().expect("people cache poisoned");
        if known.len() >= PEOPLE_CACHED_MAX {
            known.clear();
        }
        known.insert((offering, person));
    }
}
