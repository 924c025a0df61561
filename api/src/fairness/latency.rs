//! A moving p99 of the reservation path, kept in process: the admission controller holds
//! back when it rises, before the ledger or the API falls over. Each instance watches its
//! own requests, which is what it can slow down.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Samples kept: enough for a stable p99, small enough to sort every controller tick.
pub const SAMPLES_MAX: usize = 2_048;
/// Samples older than this no longer describe the path's health.
pub const SAMPLE_AGE_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Window {
    samples: Mutex<VecDeque<(Instant, Duration)>>,
}

impl Window {
    pub fn start(&self) -> Timing<'_> {
        Timing { window: self, start: Instant::now() }
    }

    pub fn record(&self, took: Duration) {
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("not poisoned");
        if samples.len() == SAMPLES_MAX {
            samples.pop_front();
        }
        samples.push_back((now, took));
    }

    /// The 99th percentile of recent samples; `None` when there are too few to tell.
    pub fn p99(&self) -> Option<Duration> {
        let now = Instant::now();
        let mut recent: Vec<Duration> = {
            let mut samples = self.samples.lock().expect("not poisoned");
            while samples.front().is_some_and(|(at, _)| now.duration_since(*at) > SAMPLE_AGE_MAX) {
                samples.pop_front();
            }
            samples.iter().map(|(_, d)| *d).collect()
        };
        // Below 20 samples one slow request would decide; that is noise, not saturation.
        if recent.len() < 20 {
            return None;
        }
        let index = (recent.len() * 99).div_ceil(100) - 1;
        Some(*recent.select_nth_unstable(index).1)
    }
}

/// Records how long a reservation took when it goes out of scope, whatever the outcome.
#[derive(Debug)]
pub struct Timing<'a> {
    window: &'a Window,
    start: Instant,
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        self.window.record(self.start.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_needs_samples_and_sees_the_slow_tail() {
        let w = Window::default();
        assert_eq!(w.p99(), None);
        for _ in 0..98 {
            w.record(Duration::from_millis(1));
        }
        w.record(Duration::from_millis(900));
        w.record(Duration::from_millis(1_000));
        assert_eq!(w.p99(), Some(Duration::from_millis(900)));
        drop(w.start());
        assert_eq!(w.samples.lock().unwrap().len(), 101);
    }
}
