//! The quantity-ceiling rule counted again, as published, by code that shares nothing with
//! [`super::allocation::allocate`] but the input checks: its own tickets (SHA-256 over
//! seed, context and pseudonym, straight from the published definition rather than
//! [`super::draw`]) and its own rounds. [`super::allocation::verify`] is this, so a change
//! to either the allocation or the draw shows up as a disagreement instead of agreeing
//! with itself.
//!
//! The rule, in the words of the published reference: the minimum first (by draw when
//! there are more applicants than minimums), then one lot per round to everyone still below
//! their request until the supply runs out; the round that cannot serve everyone goes by
//! draw. Rounds in which everyone short takes a lot are counted in bulk: all applicants
//! still short hold the same number of lots, so the next change happens when the smallest
//! request among them is met or when a round no longer fits.

use sha2::{Digest, Sha256};

/// The allocation draw's context label, as published (`allot/allocation/v1`).
const CONTEXT: &[u8] = b"allot/allocation/v1";

/// Allotments in units, in the order of `requests` (pseudonym, units requested), for a
/// book of `supply` units sold in `lot`s with a minimum of `min_quantity`. The caller has
/// checked the terms and requests (positive lot, multiples of it, unique pseudonyms).
pub fn allotments(
    requests: &[(&str, u64)],
    seed: &[u8; 32],
    supply: u64,
    lot: u64,
    min_quantity: u64,
) -> Vec<u64> {
    let wanted: Vec<u64> = requests.iter().map(|(_, units)| units / lot).collect();
    let supply_lots = supply / lot;
    if wanted.iter().sum::<u64>() <= supply_lots {
        return requests.iter().map(|(_, units)| *units).collect();
    }
    let by_draw = draw_order(requests, seed);
    let minimum = min_quantity / lot;
    // The minimum round: everyone, or the first in the draw while whole minimums remain.
    let mut book: Vec<usize> = (0..requests.len()).collect();
    if requests.len() as u64 * minimum > supply_lots {
        book = by_draw.iter().copied().take((supply_lots / minimum) as usize).collect();
    }
    let mut lots = vec![0u64; requests.len()];
    for &i in &book {
        lots[i] = minimum;
    }
    let mut left = supply_lots - book.len() as u64 * minimum;
    // Full rounds, in bulk: `level` is what everyone still short holds.
    book.sort_by_key(|&i| wanted[i]);
    let (mut level, mut next) = (minimum, 0);
    while next < book.len() && left > 0 {
        let short = (book.len() - next) as u64;
        let rounds = (wanted[book[next]] - level).min(left / short);
        level += rounds;
        left -= rounds * short;
        if level < wanted[book[next]] {
            break; // a round that does not fit everyone: the draw decides it
        }
        while next < book.len() && wanted[book[next]] == level {
            next += 1;
        }
    }
    for &i in &book {
        lots[i] = wanted[i].min(level);
    }
    // The partial round: one lot each to the first `left` still short, in draw order.
    let mut short = vec![false; requests.len()];
    for &i in &book[next..] {
        short[i] = true;
    }
    for &i in by_draw.iter().filter(|&&i| short[i]).take(left as usize) {
        lots[i] += 1;
    }
    lots.iter().map(|l| l * lot).collect()
}

/// Indices of `requests` ranked by ticket `SHA-256(seed || context || pseudonym)`,
/// ascending as unsigned bytes, ties by pseudonym.
fn draw_order(requests: &[(&str, u64)], seed: &[u8; 32]) -> Vec<usize> {
    let ticket = |p: &str| -> Vec<u8> {
        Sha256::new().chain_update(seed).chain_update(CONTEXT).chain_update(p).finalize().to_vec()
    };
    let mut ranked: Vec<(Vec<u8>, &str, usize)> =
        requests.iter().enumerate().map(|(i, (p, _))| (ticket(p), *p, i)).collect();
    ranked.sort();
    ranked.into_iter().map(|(_, _, i)| i).collect()
}
