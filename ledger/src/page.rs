//! Paging through TigerBeetle's history. A query answers at most [`PAGE_EVENTS_MAX`]
//! records of one ledger, in timestamp order; the reader asks for the next page by moving
//! the lower bound past the last record it got. Timestamps are unique per cluster, so
//! nothing is skipped or read twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tigerbeetle_unofficial as tb;

/// The most records TigerBeetle 0.16 answers per query, and the most events it takes per
/// request: what fits in one 1 MiB message (128-byte records after the header). A cluster
/// started with `--development` has smaller messages and answers fewer.
pub const PAGE_EVENTS_MAX: u32 = 8_189;

/// Nanoseconds since the epoch, as TigerBeetle stamps records; 0 for anything earlier.
pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A query for the next page of `ledger`'s records (with `code`, if given) stamped after
/// `after`.
pub(crate) fn after(ledger: u32, code: Option<u16>, after: SystemTime) -> tb::QueryFilter {
    let filter = since(ledger, nanos(after) + 1);
    match code {
        Some(code) => filter.with_code(code),
        None => filter,
    }
}

/// A query for the next page of `ledger`'s records stamped in `[from, to)`; `None` when
/// that window is empty.
pub(crate) fn window(ledger: u32, from: SystemTime, to: SystemTime) -> Option<tb::QueryFilter> {
    let (min_ns, to_ns) = (nanos(from).max(1), nanos(to));
    if min_ns >= to_ns {
        return None;
    }
    Some(since(ledger, min_ns).with_timestamp_max(at(to_ns - 1)))
}

/// Records of `ledger` stamped at `min_ns` or later.
fn since(ledger: u32, min_ns: u64) -> tb::QueryFilter {
    // TigerBeetle reads a zero bound as "no bound": timestamps start at 1.
    let min_ns = min_ns.max(1);
    tb::QueryFilter::new(PAGE_EVENTS_MAX).with_ledger(ledger).with_timestamp_min(at(min_ns))
}

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_starts_just_after_the_last_record_read() {
        let filter = after(764, Some(20), at(41));
        assert_eq!(nanos(filter.timestamp_min()), 42);
        assert_eq!(nanos(filter.timestamp_max()), 0, "no upper bound");
        assert_eq!((filter.ledger(), filter.code(), filter.limit()), (764, 20, PAGE_EVENTS_MAX));
        // From the beginning: 1, since TigerBeetle would read 0 as "no bound" (the same here).
        assert_eq!(nanos(after(764, None, UNIX_EPOCH).timestamp_min()), 1);
    }

    #[test]
    fn a_window_includes_its_start_excludes_its_end_and_may_be_empty() {
        let filter = window(764, at(10), at(20)).unwrap();
        assert_eq!((nanos(filter.timestamp_min()), nanos(filter.timestamp_max())), (10, 19));
        assert_eq!(nanos(window(764, UNIX_EPOCH, at(20)).unwrap().timestamp_min()), 1);
        assert!(window(764, at(20), at(20)).is_none());
        assert!(window(764, at(21), at(20)).is_none());
        assert!(window(764, UNIX_EPOCH, UNIX_EPOCH).is_none(), "nothing is stamped before 1");
    }
}
