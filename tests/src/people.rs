//! Made-up people for tests and benchmark drivers.

use rand::Rng;

/// A random valid Thai national ID: 12 random digits (the first 1–8) and the check digit
/// computed here from the published rule, not by the code under test.
pub fn national_id() -> String {
    let mut rng = rand::thread_rng();
    let mut digits: Vec<u32> = (0..12).map(|_| rng.gen_range(0..10)).collect();
    digits[0] = rng.gen_range(1..9);
    let sum: u32 = digits.iter().enumerate().map(|(i, d)| d * (13 - i as u32)).sum();
    digits.push((11 - sum % 11) % 10);
    digits.iter().map(|d| char::from_digit(*d, 10).unwrap()).collect()
}
