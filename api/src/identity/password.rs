//! Passwords: argon2id hashes (PHC strings), verification, and the strength rule.
//!
//! Cost: m = 19 MiB, t = 2, p = 1, the OWASP minimum for argon2id. One hash takes about
//! 30 ms of one core (measured on a current x86 server core, release build), and 19 MiB of
//! memory while it runs. That is slow enough that a
//! stolen hash costs an attacker real work per guess, and fast enough that a login rush
//! (every buyer signs in at the opening minute) does not need a farm. Because a hash blocks a
//! core that long, handlers call [`hash`] and [`verify`], which run on tokio's blocking pool
//! and at most [`hashing_concurrency_max`] at a time: without that bound a burst of logins
//! would take 19 MiB each from hundreds of blocking threads.

use std::sync::LazyLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{ApiError, ErrorCode};

/// Memory per hash, KiB.
const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over the memory.
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Shorter passwords are `weak_password` whatever their score.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Longer ones are `validation_error`: the bound keeps hashing and scoring cheap, and no
/// password manager needs more.
pub const PASSWORD_BYTES_MAX: usize = 128;
/// zxcvbn's 0–4 scale; 3 means "safely unguessable: moderate protection from an offline
/// slow-hash scenario" (about 10^10 guesses), which matches an argon2id store.
const SCORE_MIN: u8 = 3;
/// Email local parts shorter than this are not checked for containment: refusing every
/// password that contains "jo" would refuse good passwords and protect nothing.
const LOCAL_PART_CHARS_MIN: usize = 3;
/// A request waits at most this long for a hashing slot before answering
/// `service_unavailable`, so an overload sheds requests instead of queueing without end.
const HASHING_WAIT_MAX: Duration = Duration::from_secs(10);

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// How many hashes run at once in this process: one per core, since each one keeps a core
/// busy; more would only make every login slower.
pub fn hashing_concurrency_max() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

static HASHING: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(hashing_concurrency_max()));

/// A hash of a random password with the current parameters. Unknown logins are verified
/// against it, so "no such user" costs the same time as "wrong password".
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut random = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
    hash_blocking(&hex::encode(random))
});

/// The argon2id PHC string for `password`, with a fresh random salt. Blocks for the hash's
/// full cost: call [`hash`] from async code.
pub fn hash_blocking(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    argon2().hash_password(password.as_bytes(), &salt).expect("argon2id hashes").to_string()
}

/// Whether `password` matches the PHC string `phc`. The parameters come from `phc`, so
/// hashes made with older parameters keep working. A malformed `phc` never matches.
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => {
            #[cfg(test)]
            tests::VERIFICATIONS.with(|n| n.set(n.get() + 1));
            argon2().verify_password(password.as_bytes(), &parsed).is_ok()
        }
        Err(e) => {
            tracing::error!(error = %e, "stored password hash is malformed");
            false
        }
    }
}

/// [`hash_blocking`] off the async runtime, bounded by [`hashing_concurrency_max`].
pub async fn hash(password: String) -> Result<String, ApiError> {
    bounded(move || hash_blocking(&password)).await
}

/// [`verify_blocking`] off the async runtime. With `phc` = `None` (no such user) it verifies
/// against a dummy hash and answers `false`, taking the same time as a real check.
pub async fn verify(password: String, phc: Option<String>) -> Result<bool, ApiError> {
    bounded(move || check_blocking(&password, phc.as_deref())).await
}

/// One full verification whether the login exists or not: against its hash, or against
/// [`DUMMY_HASH`] (the same cost) answering `false`. No branch skips the hash, so "no such
/// user" cannot answer sooner than "wrong password".
fn check_blocking(password: &str, phc: Option<&str>) -> bool {
    let matches = verify_blocking(password, phc.unwrap_or(&DUMMY_HASH));
    matches && phc.is_some()
}

async fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let permit = tokio::time::timeout(HASHING_WAIT_MAX, HASHING.acquire())
        .await
        .map_err(|_| ApiError::unavailable("password hashing queue is full"))?
        .expect("the semaphore is never closed");
    let result = tokio::task::spawn_blocking(work).await.map_err(ApiError::internal);
    drop(permit);
    result
}

/// The strength rule for a new password: at most [`PASSWORD_BYTES_MAX`] bytes
/// (`validation_error`), and otherwise `weak_password` unless it has at least
/// [`PASSWORD_CHARS_MIN`] characters, a zxcvbn score of at least 3, and contains neither the
/// email's local part nor the national ID. `email` is expected lower-cased.
pub fn check_strength(password: &str, email: &str, national_id: &str) -> Result<(), ApiError> {
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::validation(
            "password",
            format!("at most {PASSWORD_BYTES_MAX} bytes"),
        ));
    }
    let weak = || Err(ApiError::field(ErrorCode::WeakPassword, "password"));
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return weak();
    }
    let lowered = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if local.chars().count() >= LOCAL_PART_CHARS_MIN && lowered.contains(local) {
        return weak();
    }
    // Digits only, so "1-2345-67890-12-1" inside a password is caught too.
    let digits: String = password.chars().filter(char::is_ascii_digit).collect();
    if !national_id.is_empty() && digits.contains(national_id) {
        return weak();
    }
    let score = zxcvbn::zxcvbn(password, &[email, local, national_id]).score();
    if u8::from(score) < SCORE_MIN {
        return weak();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// argon2id verifications run on this thread (a test's own calls, not its neighbours').
        pub(super) static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    fn verifications_by(work: impl FnOnce() -> bool) -> (bool, u64) {
        let before = VERIFICATIONS.with(std::cell::Cell::get);
        let answer = work();
        (answer, VERIFICATIONS.with(std::cell::Cell::get) - before)
    }

    /// The deterministic half of "an unknown login takes as long as a wrong password":
    /// each runs exactly one argon2id verification, and the dummy hash costs what a real
    /// one does (same algorithm, version and parameters). How long each takes over HTTP is
    /// a figure of `./ops/bench` (sign_in_unknown_to_known), not a test.
    #[test]
    fn an_unknown_login_costs_one_full_verification() {
        let phc = hash_blocking("plum-orbit-kettle-92");
        assert_eq!(
            verifications_by(|| check_blocking("plum-orbit-kettle-92", Some(&phc))),
            (true, 1)
        );
        assert_eq!(
            verifications_by(|| check_blocking("wrong-orbit-kettle-93", Some(&phc))),
            (false, 1)
        );
        assert_eq!(verifications_by(|| check_blocking("plum-orbit-kettle-92", None)), (false, 1));
        let cost = |phc: &str| {
            let parsed = PasswordHash::new(phc).unwrap();
            (parsed.algorithm.to_string(), parsed.version, parsed.params.to_string())
        };
        assert_eq!(cost(&DUMMY_HASH), cost(&phc));
        assert_eq!(cost(&phc), ("argon2id".into(), Some(19), "m=19456,t=2,p=1".into()));
    }

    const EMAIL: &str = "somchai.j@example.co.th";
    const NID: &str = "1234567890121";

    fn code(result: Result<(), ApiError>) -> Option<&'static str> {
        result.err().map(|e| {
            assert_eq!(e.field.as_deref(), Some("password"));
            e.code.as_str()
        })
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash_blocking("correct horse battery staple");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking("correct horse battery staple", &phc));
        assert!(!verify_blocking("correct horse battery stable", &phc));
        assert!(!verify_blocking("correct horse battery staple", "not a phc string"));
    }

    #[test]
    fn the_same_password_hashes_differently_each_time() {
        assert_ne!(hash_blocking("same password here"), hash_blocking("same password here"));
    }

    #[tokio::test]
    async fn async_verify_answers_false_for_an_unknown_user() {
        let phc = hash("plum-orbit-kettle-92".into()).await.unwrap();
        assert!(verify("plum-orbit-kettle-92".into(), Some(phc)).await.unwrap());
        assert!(!verify("plum-orbit-kettle-92".into(), None).await.unwrap());
    }

    #[test]
    fn strong_passwords_pass() {
        for password in ["plum-orbit-kettle-92", "Tr0mbone!Lagoon#Quartz", "ส้มตำ-ไก่ย่าง-ข้าวเหนียว-7"]
        {
            assert_eq!(code(check_strength(password, EMAIL, NID)), None, "{password}");
        }
    }

    #[test]
    fn short_or_guessable_passwords_are_weak() {
        for password in
            ["Sh0rt!pass", "password1234", "123456789012", "qwertyuiopasdf", "aaaaaaaaaaaaaaaa"]
        {
            assert_eq!(
                code(check_strength(password, EMAIL, NID)),
                Some("weak_password"),
                "{password}"
            );
        }
    }

    #[test]
    fn passwords_built_on_the_email_or_national_id_are_weak() {
        let cases =
            ["xX-Somchai.J-plum-orbit", "plum-1-2345-67890-12-1-orbit", "kettle1234567890121"];
        for password in cases {
            assert_eq!(
                code(check_strength(password, EMAIL, NID)),
                Some("weak_password"),
                "{password}"
            );
        }
        // A two-letter local part is not a reason to refuse a good password containing it.
        assert_eq!(code(check_strength("plum-orbit-kettle-92", "um@example.com", NID)), None);
    }

    #[test]
    fn overlong_passwords_are_a_validation_error() {
        let long = "plum-orbit-kettle-92/".repeat(7);
        assert!(long.len() > PASSWORD_BYTES_MAX);
        assert_eq!(code(check_strength(&long, EMAIL, NID)), Some("validation_error"));
    }
}
