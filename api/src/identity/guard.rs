//! Defences against guessing at sign-in, each checked before the password hash, so a
//! guesser pays before the server does:
//!
//! - Per client IP (in memory, per process): after [`IdentitySettings::sign_in_pow_after_failures`]
//!   failed sign-ins in [`IP_FAILURE_MEMORY`], every further attempt from that address needs
//!   a solved proof-of-work challenge. The routes put the per-IP rate limit before it.
//! - Per account (in Postgres, so every instance agrees): after
//!   [`ACCOUNT_BACKOFF_AFTER`] failures in a row, each attempt waits
//!   [`ACCOUNT_BACKOFF_SECONDS`], then twice as long as the one before (at most
//!   [`ACCOUNT_BACKOFF_SECONDS_MAX`]); [`MFA_LOCK_AFTER`] wrong codes
//!   in a row lock the account for [`MFA_LOCK_SECONDS`], doubling each time (audited).
//!   Only someone who knows the password reaches the second factor, so the lockout cannot
//!   be triggered by a stranger.
//! - A TOTP code works once: the step it belongs to is stored, and a code of that step or
//!   an earlier one is refused (`allot_store::identity::use_totp_step`).
//!
//! [`IdentitySettings::sign_in_pow_after_failures`]: crate::config::IdentitySettings

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use allot_store::identity::Credentials;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// An address's failures are forgotten this long after its last one.
pub const IP_FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most; beyond it the quiet ones are dropped first, so a spray
/// from many addresses cannot grow the map without end.
const IPS_TRACKED_MAX: usize = 100_000;
/// Failed sign-ins of one account before it backs off.
pub const ACCOUNT_BACKOFF_AFTER: i32 = 5;
/// The first wait: a person who mistyped five times reads the message and tries again; a
/// guesser gets four tries a minute, then fewer.
pub const ACCOUNT_BACKOFF_SECONDS: i64 = 15;
pub const ACCOUNT_BACKOFF_SECONDS_MAX: i64 = 300;
/// Wrong second-factor codes in a row that lock the account, and the first lock's length.
pub const MFA_LOCK_AFTER: i32 = 5;
pub const MFA_LOCK_SECONDS: i64 = 15 * 60;

#[derive(Clone, Copy, Debug)]
struct IpFailures {
    count: u32,
    last: Instant,
}

/// The per-IP half: failures by address.
#[derive(Debug)]
pub struct SignInGuard {
    /// 0 turns the proof-of-work requirement off.
    pow_after_failures: u32,
    failures: Mutex<HashMap<IpAddr, IpFailures>>,
}

impl SignInGuard {
    pub fn new(pow_after_failures: u32) -> SignInGuard {
        SignInGuard { pow_after_failures, failures: Mutex::new(HashMap::new()) }
    }

    /// Whether the next sign-in from `ip` must carry a solved challenge.
    pub fn needs_pow(&self, ip: Option<IpAddr>) -> bool {
        let (Some(ip), true) = (ip, self.pow_after_failures > 0) else {
            return false;
        };
        let failures = self.failures.lock().expect("not poisoned");
        failures.get(&ip).is_some_and(|f| {
            f.last.elapsed() < IP_FAILURE_MEMORY && f.count >= self.pow_after_failures
        })
    }

    pub fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures.len() >= IPS_TRACKED_MAX {
            failures.retain(|_, f| f.last.elapsed() < IP_FAILURE_MEMORY);
            if failures.len() >= IPS_TRACKED_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert(IpFailures { count: 0, last: Instant::now() });
        if entry.last.elapsed() >= IP_FAILURE_MEMORY {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = Instant::now();
    }

    pub fn succeeded(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.failures.lock().expect("not poisoned").remove(&ip);
        }
    }
}

/// Whether the account may try now: `rate_limited` (with `Retry-After`) while it is locked
/// or backing off.
pub fn check_account(user: &Credentials) -> ApiResult<()> {
    let wait = if user.locked_seconds > 0 {
        user.locked_seconds
    } else {
        backoff_seconds(user.failures) - user.seconds_since_failure.unwrap_or(i64::MAX / 2)
    };
    if wait > 0 {
        metrics::counter!("allot_sign_in_backoff_total").increment(1);
        return Err(ApiError::new(ErrorCode::RateLimited).with_arg("retry_after", wait));
    }
    Ok(())
}

/// How long after the last failure an account with `failures` in a row may try again.
fn backoff_seconds(failures: i32) -> i64 {
    if failures < ACCOUNT_BACKOFF_AFTER {
        return 0;
    }
    let doublings = u32::try_from(failures - ACCOUNT_BACKOFF_AFTER).unwrap_or(0).min(16);
    (ACCOUNT_BACKOFF_SECONDS << doublings).min(ACCOUNT_BACKOFF_SECONDS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(failures: i32, since: Option<i64>, locked: i64) -> Credentials {
        Credentials {
            user_id: 1,
            password_hash: Some(String::new()),
            role: "citizen".into(),
            totp_secret: None,
            totp_enabled: false,
            failures,
            seconds_since_failure: since,
            locked_seconds: locked,
            identity_kind: allot_store::status::IdentityKind::ThaiNationalId,
            verification: allot_store::status::Verification::Unverified,
        }
    }

    #[test]
    fn an_account_backs_off_after_a_few_failures_and_waits_while_locked() {
        assert!(check_account(&account(0, None, 0)).is_ok());
        assert!(check_account(&account(4, Some(0), 0)).is_ok());
        let e = check_account(&account(5, Some(5), 0)).unwrap_err();
        assert_eq!((e.code, e.args[0].1.as_str()), (ErrorCode::RateLimited, "10"));
        assert!(check_account(&account(5, Some(15), 0)).is_ok());
        assert_eq!(backoff_seconds(7), 60);
        assert_eq!(backoff_seconds(100), ACCOUNT_BACKOFF_SECONDS_MAX);
        let e = check_account(&account(0, None, 900)).unwrap_err();
        assert_eq!(e.args[0].1, "900");
    }

    #[test]
    fn an_address_needs_a_proof_of_work_after_its_failures() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let guard = SignInGuard::new(3);
        for _ in 0..3 {
            assert!(!guard.needs_pow(Some(ip)));
            guard.failed(Some(ip));
        }
        assert!(guard.needs_pow(Some(ip)));
        assert!(!guard.needs_pow(Some("192.0.2.8".parse().unwrap())));
        guard.succeeded(Some(ip));
        assert!(!guard.needs_pow(Some(ip)));
        let off = SignInGuard::new(0);
        (0..10).for_each(|_| off.failed(Some(ip)));
        assert!(!off.needs_pow(Some(ip)));
    }
}
