//! The quantity-ceiling (uniform) rule for oversubscribed book-building, pure: no I/O.
//!
//! Rounds of one lot go to every applicant still below their request until supply runs
//! out; the round that cannot serve everyone is decided by the seeded draw of
//! [`super::draw`]. When the offering's minimum is several lots, the first round hands out
//! the minimum instead of one lot (a holding below the minimum cannot exist), and when there
//! are more applicants than minimums, the minimums go by draw.
//!
//! Round by round would cost one pass per lot; instead the ceiling level is found from the
//! requests sorted once (O(n log n)), and only the last, partial round is drawn.
//!
//! Worked example (supply 10,000, lot 500): A 2,000, B 4,000, C 5,500, D 6,500. Four full
//! rounds give 8,000 and fill A; the fifth gives B, C and D 500 each (9,500); the last 500
//! goes by draw to one of B, C, D. So A 2,000, two of them 2,500, one 3,000.

use std::collections::HashSet;

use super::draw::{self, Seed};

/// The terms of the book: all in units (baht of face value, seats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Book {
    pub supply: u64,
    pub lot: u64,
    pub min_quantity: u64,
}

/// One application, as exported: who (a pseudonym) and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    pub pseudonym: String,
    pub requested: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Units allotted, in the order of the applications given.
    pub allotted: Vec<u64>,
    /// Everyone whose request is above this got at least this (units).
    pub cutoff: u64,
    /// Applicants who entered the last, partial round's draw, and how many won its lot.
    pub lottery_entrants: u64,
    pub lottery_winners: u64,
    /// Applicants left without even the minimum because minimums went by draw.
    pub unserved: u64,
    pub requested_total: u64,
    pub allotted_total: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("lot and minimum must be positive and the minimum a multiple of the lot")]
    BadTerms,
    #[error("application {0}: request below the minimum or not a multiple of the lot")]
    BadRequest(usize),
    #[error("application {0}: pseudonym appears twice")]
    DuplicatePseudonym(usize),
}

/// Allocates `supply` among `applications` by the quantity-ceiling rule, drawing the last
/// round with `seed`. Deterministic: the same input and seed give the same result.
pub fn allocate(
    book: &Book,
    applications: &[Application],
    seed: &Seed,
) -> Result<Allocation, BookError> {
    check(book, applications)?;
    let lot = book.lot;
    let lots_min = book.min_quantity / lot;
    let wanted: Vec<u64> = applications.iter().map(|a| a.requested / lot).collect();
    let requested_total: u64 = applications.iter().map(|a| a.requested).sum();
    let supply_lots = book.supply / lot;
    let mut given = vec![0u64; applications.len()];
    let mut outcome = Allocation {
        allotted: Vec::new(),
        cutoff: 0,
        lottery_entrants: 0,
        lottery_winners: 0,
        unserved: 0,
        requested_total,
        allotted_total: 0,
    };
    if wanted.iter().sum::<u64>() <= supply_lots {
        outcome.cutoff = applications.iter().map(|a| a.requested).max().unwrap_or(0);
        outcome.allotted = applications.iter().map(|a| a.requested).collect();
        outcome.allotted_total = requested_total;
        return Ok(outcome);
    }
    // The draw order is needed from here on: one ranking serves both draws.
    let pseudonyms: Vec<&str> = applications.iter().map(|a| a.pseudonym.as_str()).collect();
    let order = draw::order(seed, draw::CONTEXT_ALLOCATION, &pseudonyms);

    // First round: the minimum to everyone, or to those drawn first when minimums run out.
    let count = applications.len() as u64;
    let served = if count.saturating_mul(lots_min) > supply_lots {
        let winners = supply_lots / lots_min;
        outcome.lottery_entrants = count;
        outcome.lottery_winners = winners;
        outcome.unserved = count - winners;
        order[..winners as usize].to_vec()
    } else {
        (0..applications.len()).collect()
    };
    for &i in &served {
        given[i] = lots_min;
    }
    let left = supply_lots - served.len() as u64 * lots_min;

    // Later rounds: one lot each up to a common ceiling, found from the sorted residuals.
    let mut residual: Vec<u64> = served.iter().map(|&i| wanted[i] - lots_min).collect();
    residual.sort_unstable();
    let (ceiling, spare) = ceiling(&residual, left);
    for &i in &served {
        given[i] += (wanted[i] - lots_min).min(ceiling);
    }
    if spare > 0 {
        // The partial round: `spare` lots among those still short, in draw order.
        let short = |i: &usize| wanted[*i] - lots_min > ceiling;
        let entrants = served.iter().filter(|i| short(i)).count() as u64;
        assert!(spare < entrants, "a full round would have raised the ceiling");
        let set: HashSet<usize> = served.iter().copied().collect();
        let winners = order.iter().filter(|i| set.contains(i) && short(i)).take(spare as usize);
        for &i in winners {
            given[i] += 1;
        }
        outcome.lottery_entrants = entrants;
        outcome.lottery_winners = spare;
    }
    outcome.cutoff = (lots_min + ceiling) * lot;
    outcome.allotted = given.iter().map(|g| g * lot).collect();
    outcome.allotted_total = outcome.allotted.iter().sum();
    assert!(outcome.allotted_total <= book.supply, "never more than the supply");
    Ok(outcome)
}

/// The highest level `c` with `sum(min(r, c)) <= left` over the sorted residuals `r`, and
/// the lots left over at that level for a partial round. When everything fits, `c` is the
/// largest residual and nothing is left for a draw.
fn ceiling(sorted: &[u64], left: u64) -> (u64, u64) {
    let mut filled = 0u64;
    for (k, &r) in sorted.iter().enumerate() {
        let rest = (sorted.len() - k) as u64;
        // The first k are filled; the rest share what is left evenly, capped at r.
        let level = (left - filled) / rest;
        if level < r {
            return (level, left - filled - level * rest);
        }
        filled += r;
    }
    // Everyone is filled: what is left over is no partial round, just unsold supply.
    (sorted.last().copied().unwrap_or(0), 0)
}

fn check(book: &Book, applications: &[Application]) -> Result<(), BookError> {
    if book.lot == 0 || book.min_quantity == 0 || !book.min_quantity.is_multiple_of(book.lot) {
        return Err(BookError::BadTerms);
    }
    let mut seen = HashSet::with_capacity(applications.len());
    for (i, a) in applications.iter().enumerate() {
        if a.requested < book.min_quantity || !a.requested.is_multiple_of(book.lot) {
            return Err(BookError::BadRequest(i));
        }
        if !seen.insert(a.pseudonym.as_str()) {
            return Err(BookError::DuplicatePseudonym(i));
        }
    }
    Ok(())
}

/// What anyone can run on an export: the allotments, in the applications' order, that the
/// published seed gives. An independent count of the published rule ([`super::recount`]),
/// not [`allocate`]: the two must agree, and a change to one alone shows.
pub fn verify(
    applications: &[Application],
    seed: &Seed,
    supply: u64,
    lot: u64,
    min_quantity: u64,
) -> Result<Vec<u64>, BookError> {
    check(&Book { supply, lot, min_quantity }, applications)?;
    let requests: Vec<(&str, u64)> =
        applications.iter().map(|a| (a.pseudonym.as_str(), a.requested)).collect();
    Ok(super::recount::allotments(&requests, seed, supply, lot, min_quantity))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn apps(requests: &[u64]) -> Vec<Application> {
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| Application { pseudonym: format!("p{i}"), requested: *r })
            .collect()
    }

    fn seed(n: u64) -> Seed {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_le_bytes());
        s
    }

    #[test]
    fn the_worked_example_holds_for_every_seed() {
        let book = Book { supply: 10_000, lot: 500, min_quantity: 500 };
        let applications = apps(&[2_000, 4_000, 5_500, 6_500]);
        let mut winners = [0u32; 4];
        for n in 0..500 {
            let a = allocate(&book, &applications, &seed(n)).unwrap();
            assert_eq!(a.allotted[0], 2_000);
            let mut rest = a.allotted[1..].to_vec();
            rest.sort_unstable();
            assert_eq!(rest, [2_500, 2_500, 3_000], "seed {n}");
            assert_eq!((a.cutoff, a.lottery_entrants, a.lottery_winners), (2_500, 3, 1));
            assert_eq!(a.allotted_total, 10_000);
            winners[a.allotted.iter().position(|&x| x == 3_000).unwrap()] += 1;
        }
        // The draw really is a draw: each of B, C, D wins sometimes, A never.
        assert_eq!(winners[0], 0);
        assert!(winners[1..].iter().all(|&w| w > 100), "{winners:?}");
    }

    #[test]
    fn undersubscribed_books_fill_every_request() {
        let book = Book { supply: 10_000, lot: 500, min_quantity: 500 };
        let a = allocate(&book, &apps(&[2_000, 500]), &seed(1)).unwrap();
        assert_eq!(a.allotted, [2_000, 500]);
        assert_eq!((a.lottery_entrants, a.allotted_total), (0, 2_500));
        let none = allocate(&book, &[], &seed(1)).unwrap();
        assert_eq!(none.allotted_total, 0);
    }

    #[test]
    fn more_applicants_than_lots_go_by_draw() {
        let book = Book { supply: 3_000, lot: 1_000, min_quantity: 1_000 };
        let a = allocate(&book, &apps(&[5_000; 10]), &seed(7)).unwrap();
        assert_eq!(a.allotted.iter().filter(|&&x| x == 1_000).count(), 3);
        assert_eq!((a.lottery_entrants, a.lottery_winners, a.unserved), (10, 3, 7));
        // A minimum of several lots: only whole minimums, then rounds among the winners.
        let book = Book { supply: 12_000, lot: 1_000, min_quantity: 5_000 };
        let a = allocate(&book, &apps(&[5_000, 8_000, 9_000]), &seed(3)).unwrap();
        let mut got = a.allotted.clone();
        got.sort_unstable();
        // Two minimums go by draw; the 2,000 left then go in rounds among the two winners.
        assert!(got == [0, 5_000, 7_000] || got == [0, 6_000, 6_000], "{got:?}");
        assert!(a.allotted_total <= 12_000);
    }

    #[test]
    fn bad_input_is_refused() {
        let book = Book { supply: 10, lot: 2, min_quantity: 2 };
        assert_eq!(allocate(&book, &apps(&[3]), &seed(0)), Err(BookError::BadRequest(0)));
        let twice = vec![
            Application { pseudonym: "x".into(), requested: 2 },
            Application { pseudonym: "x".into(), requested: 2 },
        ];
        assert_eq!(allocate(&book, &twice, &seed(0)), Err(BookError::DuplicatePseudonym(1)));
        let bad = Book { supply: 10, lot: 2, min_quantity: 3 };
        assert_eq!(allocate(&bad, &apps(&[4]), &seed(0)), Err(BookError::BadTerms));
    }

    /// A hundred thousand applications, the size of a real bond sale: the allocation and
    /// its independent recount agree. (How fast is a benchmark's question: `./ops/bench`.)
    #[test]
    fn a_hundred_thousand_applications_recount_the_same() {
        let requests: Vec<u64> =
            (0..100_000u64).map(|i| 5_000 + (i * 7_919 % 500) * 1_000).collect();
        let book = Book { supply: 10_000_000_000 / 50, lot: 1_000, min_quantity: 5_000 };
        let applications = apps(&requests);
        let a = allocate(&book, &applications, &seed(9)).unwrap();
        assert!(a.allotted_total <= book.supply && a.lottery_entrants > 0);
        let recounted =
            verify(&applications, &seed(9), book.supply, book.lot, book.min_quantity).unwrap();
        assert!(recounted == a.allotted, "the recount disagrees");
    }

    /// The seed of the pinned vectors below: bytes 0x00..=0x1f.
    const PINNED_SEED: Seed = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f,
    ];

    fn named(requests: &[(&str, u64)]) -> Vec<Application> {
        requests
            .iter()
            .map(|(p, r)| Application { pseudonym: (*p).into(), requested: *r })
            .collect()
    }

    /// Books and the allotments the published rule gives them with [`PINNED_SEED`], worked
    /// out by hand and by a separate script (not by this crate), one lot per round: a
    /// change to the rule, the draw or the tickets turns these red.
    #[test]
    fn pinned_books_allot_exactly_as_published() {
        // The published worked example: D wins the last lot under this seed.
        let worked = named(&[("A", 2_000), ("B", 4_000), ("C", 5_500), ("D", 6_500)]);
        // More applicants than lots: the draw picks p5, p6 and p9.
        let ten: Vec<(String, u64)> = (0..10).map(|i| (format!("p{i}"), 5_000)).collect();
        let ten: Vec<(&str, u64)> = ten.iter().map(|(p, r)| (p.as_str(), *r)).collect();
        // A minimum of five lots: two minimums by draw (p0, p1), then rounds between them.
        let five_lots = named(&[("p0", 5_000), ("p1", 8_000), ("p2", 9_000)]);
        // Twelve requests, a minimum of three lots and a partial round among four.
        let twelve = named(&[
            ("a1", 300),
            ("b2", 1_200),
            ("c3", 700),
            ("d4", 5_000),
            ("e5", 400),
            ("f6", 2_500),
            ("g7", 300),
            ("h8", 900),
            ("i9", 3_000),
            ("j10", 600),
            ("k11", 1_500),
            ("l12", 800),
        ]);
        let cases: [(Book, Vec<Application>, Vec<u64>); 5] = [
            (
                Book { supply: 10_000, lot: 500, min_quantity: 500 },
                worked,
                vec![2_000, 2_500, 2_500, 3_000],
            ),
            (
                Book { supply: 3_000, lot: 1_000, min_quantity: 1_000 },
                named(&ten),
                vec![0, 0, 0, 0, 0, 1_000, 1_000, 0, 0, 1_000],
            ),
            (
                Book { supply: 12_000, lot: 1_000, min_quantity: 5_000 },
                five_lots,
                vec![5_000, 7_000, 0],
            ),
            (
                Book { supply: 9_950, lot: 100, min_quantity: 300 },
                twelve.clone(),
                vec![300, 1_200, 700, 1_200, 400, 1_100, 300, 900, 1_200, 600, 1_200, 800],
            ),
            (
                Book { supply: 20_000, lot: 100, min_quantity: 300 },
                twelve,
                vec![300, 1_200, 700, 5_000, 400, 2_500, 300, 900, 3_000, 600, 1_500, 800],
            ),
        ];
        for (book, applications, expected) in cases {
            let a = allocate(&book, &applications, &PINNED_SEED).unwrap();
            assert_eq!(a.allotted, expected, "allocate {book:?}");
            let v = verify(&applications, &PINNED_SEED, book.supply, book.lot, book.min_quantity);
            assert_eq!(v.unwrap(), expected, "verify {book:?}");
        }
    }

    /// The rule exactly as published, one lot per round, for small books: the oracle both
    /// implementations answer to in the property below.
    fn one_lot_per_round(book: &Book, applications: &[Application], seed: &Seed) -> Vec<u64> {
        let wanted: Vec<u64> = applications.iter().map(|a| a.requested / book.lot).collect();
        let (min_lots, mut left) = (book.min_quantity / book.lot, book.supply / book.lot);
        let names: Vec<&str> = applications.iter().map(|a| a.pseudonym.as_str()).collect();
        let order = draw::order(seed, draw::CONTEXT_ALLOCATION, &names);
        let mut given = vec![0u64; wanted.len()];
        if wanted.iter().sum::<u64>() <= left {
            return applications.iter().map(|a| a.requested).collect();
        }
        for &i in order.iter().take((left / min_lots) as usize) {
            given[i] = min_lots;
            left -= min_lots;
        }
        loop {
            let short: Vec<usize> =
                order.iter().copied().filter(|&i| given[i] > 0 && given[i] < wanted[i]).collect();
            if short.is_empty() || left == 0 {
                break;
            }
            for &i in short.iter().take(left as usize) {
                given[i] += 1;
            }
            left = left.saturating_sub(short.len() as u64);
        }
        given.iter().map(|g| g * book.lot).collect()
    }

    fn book_and_requests() -> impl Strategy<Value = (Book, Vec<u64>)> {
        (1u64..5, 1u64..4, 0u64..400).prop_flat_map(|(lot, min_lots, supply_lots)| {
            let requests = prop::collection::vec(min_lots..min_lots + 20, 0..60)
                .prop_map(move |v| v.into_iter().map(|n| n * lot).collect::<Vec<_>>());
            let book = Book { supply: supply_lots * lot, lot, min_quantity: min_lots * lot };
            (Just(book), requests)
        })
    }

    proptest! {
        #[test]
        fn totals_caps_evenness_and_determinism(
            (book, requests) in book_and_requests(),
            n in any::<u64>(),
        ) {
            let applications = apps(&requests);
            let a = allocate(&book, &applications, &seed(n)).unwrap();
            prop_assert!(a.allotted_total <= book.supply);
            prop_assert_eq!(a.allotted_total, a.allotted.iter().sum::<u64>());
            let oversubscribed = requests.iter().sum::<u64>() > book.supply;
            for (got, want) in a.allotted.iter().zip(&requests) {
                prop_assert!(got <= want);
                prop_assert!(got.is_multiple_of(book.lot));
                prop_assert!(*got == 0 || *got >= book.min_quantity);
                if !oversubscribed {
                    prop_assert_eq!(got, want);
                }
            }
            // Nothing useful is left over: no one short could take another lot.
            let short = a.allotted.iter().zip(&requests).any(|(g, w)| g < w);
            let spare = book.supply - a.allotted_total;
            if short && a.unserved == 0 {
                prop_assert!(spare < book.lot);
            }
            // Within one lot of each other, unless capped by their own request (or, with a
            // minimum of several lots, left out of the minimum's draw).
            if a.unserved == 0 {
                let top = *a.allotted.iter().max().unwrap_or(&0);
                for (got, want) in a.allotted.iter().zip(&requests) {
                    prop_assert!(got == want || got + book.lot >= top);
                }
            }
            prop_assert_eq!(&a, &allocate(&book, &applications, &seed(n)).unwrap());
            let verified = verify(&applications, &seed(n), book.supply, book.lot, book.min_quantity);
            prop_assert_eq!(verified.unwrap(), a.allotted.clone());
            prop_assert_eq!(one_lot_per_round(&book, &applications, &seed(n)), a.allotted);
        }
    }
}
