//! Warn/crit percentage thresholds shared by the checks that measure "how full".

use serde::Deserialize;
use vaultmesh_agent_core::registry::CheckConfigError;
use vaultmesh_proto::CheckStatus;

/// A `warn`/`crit` pair on a value where higher is worse.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Thresholds {
    pub warn: f64,
    pub crit: f64,
}

impl Thresholds {
    pub const fn new(warn: f64, crit: f64) -> Self {
        Thresholds { warn, crit }
    }

    /// Rejects NaN, negative values and `warn > crit`, naming the keys.
    pub fn validate(
        &self,
        warn_key: &str,
        crit_key: &str,
        max: f64,
    ) -> Result<(), CheckConfigError> {
        for (key, v) in [(warn_key, self.warn), (crit_key, self.crit)] {
            if !(0.0..=max).contains(&v) {
                return Err(CheckConfigError::new(
                    key,
                    format!("{v} is outside 0..={max}"),
                ));
            }
        }
        if self.warn > self.crit {
            return Err(CheckConfigError::new(
                warn_key,
                format!("{} must not exceed {crit_key} ({})", self.warn, self.crit),
            ));
        }
        Ok(())
    }

    /// An optional pair: none without either key; a `warn` alone is crit at `max`, a `crit`
    /// alone warns at the same value. Validated like [`Thresholds::validate`].
    pub fn optional(
        warn: Option<f64>,
        crit: Option<f64>,
        (warn_key, crit_key): (&str, &str),
        max: f64,
    ) -> Result<Option<Self>, CheckConfigError> {
        let t = match (warn, crit) {
            (None, None) => return Ok(None),
            (Some(w), None) => Thresholds::new(w, max.max(w)),
            (None, Some(c)) => Thresholds::new(c, c),
            (Some(w), Some(c)) => Thresholds::new(w, c),
        };
        t.validate(warn_key, crit_key, max)?;
        Ok(Some(t))
    }

    /// The limit `status` crossed (`crit` for crit, else `warn`).
    pub fn limit(&self, status: CheckStatus) -> f64 {
        if status == CheckStatus::Crit {
            self.crit
        } else {
            self.warn
        }
    }

    pub fn classify(&self, value: f64) -> CheckStatus {
        if value >= self.crit {
            CheckStatus::Crit
        } else if value >= self.warn {
            CheckStatus::Warn
        } else {
            CheckStatus::Ok
        }
    }
}

/// Rounds to one decimal for summaries and metrics.
pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
