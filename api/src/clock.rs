//! The time by which offerings open and close and subscription windows end.
//!
//! Production reads the system clock. A test that must see an opening or a close happen
//! builds the application with [`Clock::settable`] and moves it forward, instead of
//! setting a time a few seconds ahead and hoping its requests finish first. Nothing in
//! the configuration (file or environment) can make a settable clock: only code that
//! calls `Application::build_with_clock` gets one.
//!
//! What it does not move: TigerBeetle's own clock (hold expiry), token lifetimes, rate
//! limits and every interval timer.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A handle on "now"; cheap to clone, every clone sees the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds added to the system's time; `None` for the system clock itself.
    ahead_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system's clock, which nothing can move.
    pub fn system() -> Clock {
        Clock { ahead_ms: None }
    }

    /// A clock that reads the system's time until [`Clock::advance`] moves it forward.
    pub fn settable() -> Clock {
        Clock { ahead_ms: Some(Arc::new(AtomicI64::new(0))) }
    }

    pub fn now(&self) -> OffsetDateTime {
        let ahead = self.ahead_ms.as_ref().map_or(0, |a| a.load(Ordering::Acquire));
        OffsetDateTime::now_utc() + time::Duration::milliseconds(ahead)
    }

    /// Moves a settable clock forward by `by`, for every clone of it.
    ///
    /// # Panics
    /// On the system clock: production time never moves by request.
    pub fn advance(&self, by: Duration) {
        let ahead = self.ahead_ms.as_ref().expect("only a Clock::settable() can be moved");
        let ms = i64::try_from(by.as_millis()).expect("a sane step");
        ahead.fetch_add(ms, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settable_clock_moves_for_every_clone_and_the_system_clock_never() {
        let clock = Clock::settable();
        let twin = clock.clone();
        let before = twin.now();
        clock.advance(Duration::from_secs(3_600));
        let moved = twin.now() - before;
        assert!(moved >= time::Duration::hours(1) && moved < time::Duration::minutes(61));
        let system = Clock::system();
        assert!((system.now() - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(1));
        let refused = std::panic::catch_unwind(|| system.advance(Duration::from_secs(1)));
        assert!(refused.is_err());
    }
}
