//! Request rate limits per client IP and per user (GCRA, the `governor` crate), answering
//! `rate_limited` (429) with `Retry-After`. They guard what bots hammer: queue join,
//! challenges, subscriptions. Status reads are limited per user only: whole mobile
//! networks share one address, and one IP limit there would stall honest people.
//!
//! State is per process; behind a balancer of N instances a client gets up to N times the
//! rate, which is still a bound, and the proof-of-work is what prices joining.
//!
//! Which address is the client's (the peer, or a trusted proxy's `X-Forwarded-For`) is the
//! routes' business (`crate::client_ip`: the rightmost address our proxies did not write).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::FairnessSettings;
use crate::error::{ApiError, ApiResult, ErrorCode};

pub struct Limits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<i64>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_ip", &self.per_ip.is_some())
            .field("per_user", &self.per_user.is_some())
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_second: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).expect("at least the rate");
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

impl Limits {
    pub fn new(settings: &FairnessSettings) -> Limits {
        Limits {
            per_ip: limiter(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst),
            per_user: limiter(settings.rate_limit_user_per_second, settings.rate_limit_user_burst),
        }
    }

    /// One request from the client at `ip`: refused when its IP is over the limit.
    pub fn check_ip(&self, ip: IpAddr) -> ApiResult<()> {
        match &self.per_ip {
            Some(limiter) => check(limiter, &ip),
            None => Ok(()),
        }
    }

    /// One request by `user_id`: refused when the user is over the limit.
    pub fn check_user(&self, user_id: i64) -> ApiResult<()> {
        match &self.per_user {
            Some(limiter) => check(limiter, &user_id),
            None => Ok(()),
        }
    }

    /// Drops the state of clients that have been quiet: memory stays bounded by the
    /// clients of the last few seconds, not of the whole sale.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_user {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> ApiResult<()> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        metrics::counter!("allot_rate_limited_total").increment(1);
        // Retry-After is whole seconds; rounding down to 0 would invite an instant retry.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::new(ErrorCode::RateLimited).with_arg("retry_after", seconds.max(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_user_waits_and_others_do_not() {
        let settings = FairnessSettings {
            rate_limit_user_per_second: 1,
            rate_limit_user_burst: 3,
            ..FairnessSettings::default()
        };
        let limits = Limits::new(&settings);
        for _ in 0..3 {
            limits.check_user(1).unwrap();
        }
        let err = limits.check_user(1).unwrap_err();
        assert_eq!(err.code, ErrorCode::RateLimited);
        assert_eq!(err.args, vec![("retry_after", "1".to_string())]);
        limits.check_user(2).unwrap();
        let off = Limits::new(&FairnessSettings {
            rate_limit_user_per_second: 0,
            ..FairnessSettings::default()
        });
        for _ in 0..100 {
            off.check_user(1).unwrap();
        }
    }
}
