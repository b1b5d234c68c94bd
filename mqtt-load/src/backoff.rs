//! Reconnect delays: exponential with full jitter, capped, reset on success.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay ceiling.
    pub initial: Duration,
    /// Largest delay ceiling.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

impl Backoff {
    /// Ceiling of the delay before attempt number `attempt` (0-based):
    /// `initial · 2^attempt`, capped at `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// A delay drawn uniformly from `[ceiling/2, ceiling]` ("equal jitter"),
    /// so a crowd of evicted clients spreads out but none retries at once.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let c = self.ceiling(attempt);
        let half = c / 2;
        let span = c.saturating_sub(half).as_millis() as u64;
        half + Duration::from_millis(rng.random_range(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters_within_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(10), Duration::from_secs(2));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
        let mut rng = rand::rng();
        for attempt in 0..8 {
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                assert!(d >= b.ceiling(attempt) / 2 && d <= b.ceiling(attempt));
            }
        }
    }
}
