//! Seeded, published draws: the one source of randomness behind every fairness decision.
//!
//! A draw is an order over entries, each named by a pseudonym. Entry `p`'s lottery ticket is
//! `SHA-256(seed || context || p)` (seed: 32 bytes; context: an ASCII label naming the draw;
//! `p`: the pseudonym's UTF-8 bytes), and entries are ranked by ticket, ascending, bytes
//! compared as unsigned, ties (never seen) broken by pseudonym. Anyone who has the seed and
//! the pseudonyms can recompute the order in any language, with no PRNG library whose
//! algorithm might change between versions.
//!
//! The seed is committed before anyone can enter: its `SHA-256(seed)` is published when the
//! subscription window or pre-queue opens, and the seed itself only after the draw, so
//! neither the entrants nor anyone reading the commitment can predict a ticket.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const SEED_BYTES: usize = 32;

/// Labels of the draws we make: one seed never serves two kinds of draw alike.
pub const CONTEXT_ALLOCATION: &[u8] = b"allot/allocation/v1";
pub const CONTEXT_QUEUE: &[u8] = b"allot/queue/v1";
/// The label deriving the second allocation round's seed from the first's.
pub const CONTEXT_ROUND_TWO: &[u8] = b"allocation/round-2";

/// A seed derived from a published one for another draw: `SHA-256(seed || context)`, so
/// the second round is as recomputable, and as unpredictable beforehand, as the first.
pub fn derive(seed: &Seed, context: &[u8]) -> Seed {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(context);
    hash.finalize().into()
}

pub type Seed = [u8; SEED_BYTES];

/// A fresh secret seed from the operating system's generator.
pub fn new_seed() -> Seed {
    let mut seed = [0u8; SEED_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

/// What is published before the draw: `SHA-256(seed)`.
pub fn commitment(seed: &Seed) -> [u8; 32] {
    Sha256::digest(seed).into()
}

/// Whether `seed` is the one `commitment` promised.
pub fn matches(seed: &Seed, commitment_bytes: &[u8]) -> bool {
    commitment(seed).as_slice() == commitment_bytes
}

pub fn parse_seed(text: &str) -> Option<Seed> {
    hex::decode(text).ok()?.try_into().ok()
}

/// One entry's lottery ticket: lower draws first.
pub fn ticket(seed: &Seed, context: &[u8], pseudonym: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(context);
    hash.update(pseudonym.as_bytes());
    hash.finalize().into()
}

/// Indices of `pseudonyms` in draw order.
pub fn order<S: AsRef<str>>(seed: &Seed, context: &[u8], pseudonyms: &[S]) -> Vec<usize> {
    let mut keyed: Vec<([u8; 32], usize)> = pseudonyms
        .iter()
        .enumerate()
        .map(|(i, p)| (ticket(seed, context, p.as_ref()), i))
        .collect();
    keyed.sort_unstable_by(|(a, i), (b, j)| {
        a.cmp(b).then_with(|| pseudonyms[*i].as_ref().cmp(pseudonyms[*j].as_ref()))
    });
    keyed.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_a_permutation_fixed_by_the_seed() {
        let names: Vec<String> = (0..1_000).map(|i| format!("p{i}")).collect();
        let a = order(&[1; 32], CONTEXT_QUEUE, &names);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1_000).collect::<Vec<_>>());
        assert_eq!(a, order(&[1; 32], CONTEXT_QUEUE, &names));
        assert_ne!(a, order(&[2; 32], CONTEXT_QUEUE, &names));
        assert_ne!(a, order(&[1; 32], CONTEXT_ALLOCATION, &names));
    }

    /// Fixed vectors, written out, so another implementation can check itself against
    /// ours and a change to the ticket or the ordering turns this red. Computed outside
    /// this crate from the definition: `sha256(seed || context || pseudonym)`, ascending.
    #[test]
    fn pinned_tickets_and_orders() {
        let zero = [0u8; 32];
        assert_eq!(
            hex::encode(ticket(&zero, CONTEXT_QUEUE, "abc")),
            "6c159387d5d43a3bfadfbd5f59392735caec96c2cac97461f094abe264a202b1"
        );
        let seed: Seed = std::array::from_fn(|i| i as u8); // 00 01 .. 1f
        assert_eq!(
            hex::encode(ticket(&seed, CONTEXT_ALLOCATION, "alice")),
            "d2d1df8fb9804129484f507a3a73d8a9cac0d91eb6df76eb5f4e9bd18acae631"
        );
        let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let in_order = |context| -> Vec<&str> {
            order(&seed, context, &names).into_iter().map(|i| names[i]).collect()
        };
        assert_eq!(in_order(CONTEXT_QUEUE), ["dave", "alice", "erin", "bob", "frank", "carol"]);
        assert_eq!(
            in_order(CONTEXT_ALLOCATION),
            ["bob", "dave", "frank", "erin", "carol", "alice"]
        );
    }

    #[test]
    fn commitments_and_seeds_round_trip() {
        let seed = new_seed();
        assert!(matches(&seed, &commitment(&seed)));
        assert!(!matches(&seed, &commitment(&[0; 32])));
        assert_eq!(
            hex::encode(commitment(&[0; 32])),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(parse_seed(&hex::encode(seed)), Some(seed));
        assert_eq!(parse_seed("00"), None);
    }
}
