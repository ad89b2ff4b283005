//! Exponential backoff with full jitter for retries against the Command Center.

use std::time::Duration;

use rand::Rng;

/// Delays grow `base * 2^attempt` up to `max`; each delay is drawn uniformly from
/// `[delay/2, delay]` so a fleet that lost the Command Center at once does not return at once.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        let ceiling = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let lo = ceiling.as_secs_f64() / 2.0;
        let hi = ceiling.as_secs_f64();
        Duration::from_secs_f64(rand::rng().random_range(lo..=hi))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_jitter_in_range() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0];
        for c in ceilings {
            let d = b.next_delay().as_secs_f64();
            assert!(
                d >= c / 2.0 - 1e-9 && d <= c + 1e-9,
                "{d} not in [{}, {c}]",
                c / 2.0
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
