//! Per-key exponential backoff with jitter (backon), reset on success: a failing action or
//! a failing observation waits longer each time, without slowing down anything else.

use std::collections::HashMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// Backoff state of every key that failed recently.
#[derive(Debug)]
pub struct Backoffs {
    builder: ExponentialBuilder,
    keys: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    delays: ExponentialBackoff,
    retry_at: Instant,
}

impl Backoffs {
    /// Delays from `min`, doubling, jittered, capped at `max`, never giving up.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            builder: Self::builder(min, max),
            keys: HashMap::new(),
        }
    }

    /// The builder these backoffs use, for loops that keep their own (the event stream).
    pub fn builder(min: Duration, max: Duration) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }

    /// Records a failure of `key` at `now`; returns how long to wait before the next try.
    pub fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let builder = self.builder;
        let entry = self.keys.entry(key.to_owned()).or_insert_with(|| Entry {
            delays: builder.build(),
            retry_at: now,
        });
        let delay = entry.delays.next().unwrap_or(Duration::from_secs(300));
        entry.retry_at = now + delay;
        delay
    }

    /// Records a success: the next failure starts from the shortest delay again.
    pub fn succeeded(&mut self, key: &str) {
        self.keys.remove(key);
    }

    /// How long `key` must still wait at `now`, if at all.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        self.keys
            .get(key)
            .map(|e| e.retry_at.saturating_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_per_key_and_reset_on_success() {
        let mut b = Backoffs::new(Duration::from_secs(1), Duration::from_secs(8));
        let now = Instant::now();
        let first = b.failed("a", now);
        assert!(
            first >= Duration::from_secs(1) && first < Duration::from_secs(2),
            "{first:?}"
        );
        let second = b.failed("a", now);
        assert!(
            second >= Duration::from_secs(2) && second < Duration::from_secs(4),
            "{second:?}"
        );
        for _ in 0..10 {
            assert!(
                b.failed("a", now) < Duration::from_secs(16),
                "capped at max plus jitter"
            );
        }
        assert_eq!(b.remaining("b", now), None, "other keys are unaffected");
        assert!(b.remaining("a", now).is_some());
        b.succeeded("a");
        assert_eq!(b.remaining("a", now), None);
        let again = b.failed("a", now);
        assert!(again < Duration::from_secs(2), "reset: {again:?}");
    }

    #[test]
    fn a_key_is_free_again_once_its_delay_has_passed() {
        let mut b = Backoffs::new(Duration::from_secs(1), Duration::from_secs(8));
        let now = Instant::now();
        let delay = b.failed("a", now);
        assert_eq!(b.remaining("a", now + delay), None);
    }
}
