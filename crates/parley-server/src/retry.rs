//! The one retry policy of Parley's outgoing calls and background work: exponential backoff
//! (each wait twice the one before, up to a cap) from the `backon` crate. A call retried in
//! place (a provider call, a file download, a Telegram send) runs through
//! [`Policy::retry`]'s `backon` builder; a job of the queue that fails waits
//! [`Policy::delay`] in the database (`run_after`) instead of in memory, so the wait
//! survives a restart.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Attempts and waits of one kind of retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    /// Wait before the first retry.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Whether waits are spread at random (up to twice as long), so that many retries of the
    /// same outage do not all fall on the same moment.
    pub jitter: bool,
}

/// LLM provider calls: 3 attempts, waiting 0.5 s then 1 s (a provider's `Retry-After` wins, at
/// most 20 s); see [`crate::assistant::runtime`].
pub const PROVIDER: Policy = Policy {
    attempts: 3,
    first: Duration::from_millis(500),
    max: Duration::from_secs(20),
    jitter: false,
};

/// Channel file downloads in place: 3 attempts, waiting 250 ms then 500 ms. A download that
/// still fails is retried later by a job ([`crate::jobs`]).
pub const DOWNLOAD: Policy = Policy {
    attempts: 3,
    first: Duration::from_millis(250),
    max: Duration::from_secs(2),
    jitter: false,
};

impl Policy {
    /// The `backon` builder for in-place retries of this policy.
    pub fn builder(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        if self.jitter { b.with_jitter() } else { b }
    }

    /// The wait before retry number `retry` (1 for the first retry), or `None` once the
    /// attempts are used up.
    pub fn delay(&self, retry: u32) -> Option<Duration> {
        if retry == 0 {
            return Some(Duration::ZERO);
        }
        self.builder().build().nth(retry as usize - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_stop_after_the_attempts() {
        let p = Policy {
            attempts: 5,
            first: Duration::from_millis(100),
            max: Duration::from_millis(300),
            jitter: false,
        };
        // In whole ms: backon multiplies in floating point.
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        let waits: Vec<_> = (1..=5).map(|r| ms(p.delay(r))).collect();
        assert_eq!(
            waits,
            vec![Some(100), Some(200), Some(300), Some(300), None]
        );
        assert_eq!(ms(PROVIDER.delay(1)), Some(500));
        assert_eq!(ms(PROVIDER.delay(2)), Some(1000));
        assert_eq!(PROVIDER.delay(3), None);
        let jittered = Policy { jitter: true, ..p };
        let d = jittered.delay(2).unwrap();
        assert!(
            d >= Duration::from_millis(200) && d <= Duration::from_millis(400),
            "{d:?}"
        );
    }
}
