//! [`Buckets`]: token buckets by key — the one rate limiter behind the per-node request rate,
//! the per-source enrollment rate and the per-node byte budgets.
//!
//! Each key's bucket holds up to `burst` tokens and refills at `rate` a second; taking more
//! than it holds is refused with the whole seconds until it would hold enough. Memory is
//! bounded: past [`FORGET_PAST`] keys, buckets full again are forgotten.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Keys kept before full buckets are swept.
pub const FORGET_PAST: usize = 100_000;

#[derive(Debug)]
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
    /// When full buckets were last swept: at most once a second, so a flood of new keys does
    /// not make every `take` walk them all.
    swept: Mutex<Option<Instant>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    /// `rate` tokens a second, at most `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Buckets<K> {
        Buckets {
            rate: rate.max(0.001),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
            swept: Mutex::new(None),
        }
    }

    /// Takes `amount` tokens from `key`'s bucket, or says in how many whole seconds (at least
    /// one) it would hold them. An amount above the burst never fits: [`u64::MAX`].
    pub fn take(&self, key: &K, amount: f64) -> Result<(), u64> {
        if amount > self.burst {
            return Err(u64::MAX);
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > FORGET_PAST {
            let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            if swept.is_none_or(|s| now.duration_since(s).as_secs() >= 1) {
                *swept = Some(now);
                let full_after = self.burst / self.rate;
                b.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < full_after);
            }
        }
        let (tokens, last) = b.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= amount {
            *tokens -= amount;
            return Ok(());
        }
        let need = amount - *tokens;
        Err((need / self.rate).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let b = Buckets::new(1000.0, 3.0);
        for _ in 0..3 {
            b.take(&1, 1.0).unwrap();
        }
        assert_eq!(b.take(&1, 1.0), Err(1));
        assert!(b.take(&2, 1.0).is_ok(), "buckets are per key");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(b.take(&1, 1.0).is_ok(), "refilled");
        // Amounts: a byte budget of 100 a second, 1,000 at once.
        let bytes = Buckets::new(100.0, 1000.0);
        assert!(bytes.take(&"n", 900.0).is_ok());
        assert_eq!(bytes.take(&"n", 300.0), Err(2), "200 short at 100/s");
        assert_eq!(bytes.take(&"m", 5000.0), Err(u64::MAX), "never fits");
    }
}
