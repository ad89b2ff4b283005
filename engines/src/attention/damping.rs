//! Flap damping for observed rules: a reason is raised only after `raise_after` consecutive
//! heartbeats carry it, and cleared only after `clear_after` consecutive heartbeats do not.
//! Between the two, the last raised reason stays (with its latest message while it persists).

use std::collections::BTreeMap;

use vaultmesh_proto::Reason;

#[derive(Debug, Clone, Default)]
struct Track {
    bad: u32,
    good: u32,
    /// The reason as last raised (updated while it persists).
    raised: Option<Reason>,
}

/// Per-node damping state, keyed by rule.
#[derive(Debug, Clone, Default)]
pub struct Damper {
    tracks: BTreeMap<String, Track>,
}

impl Damper {
    /// Starts with `reasons` already raised (restored after a restart).
    pub fn restored(reasons: impl IntoIterator<Item = Reason>, raise_after: u32) -> Damper {
        let mut d = Damper::default();
        for r in reasons {
            d.tracks.insert(
                r.rule.clone(),
                Track {
                    bad: raise_after,
                    good: 0,
                    raised: Some(r),
                },
            );
        }
        d
    }

    /// Feeds one heartbeat's observed reasons.
    pub fn observe(&mut self, reasons: Vec<Reason>, raise_after: u32, clear_after: u32) {
        let mut present: BTreeMap<String, Reason> =
            reasons.into_iter().map(|r| (r.rule.clone(), r)).collect();
        self.tracks.retain(|rule, t| {
            if let Some(r) = present.remove(rule) {
                t.bad = t.bad.saturating_add(1);
                t.good = 0;
                if t.raised.is_some() || t.bad >= raise_after {
                    t.raised = Some(r);
                }
                true
            } else {
                t.good = t.good.saturating_add(1);
                t.bad = 0;
                if t.raised.is_some() && t.good >= clear_after {
                    t.raised = None;
                }
                t.raised.is_some()
            }
        });
        for (rule, r) in present {
            let raised = (raise_after <= 1).then_some(r);
            self.tracks.insert(
                rule,
                Track {
                    bad: 1,
                    good: 0,
                    raised,
                },
            );
        }
    }

    /// The reasons currently raised, in rule order.
    pub fn raised(&self) -> Vec<Reason> {
        self.tracks
            .values()
            .filter_map(|t| t.raised.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaultmesh_proto::AttentionLevel;

    fn r(rule: &str, msg: &str) -> Reason {
        Reason {
            rule: rule.into(),
            level: AttentionLevel::Attn,
            label: String::new(),
            message: msg.into(),
            suppressed_by: None,
        }
    }

    fn rules(d: &Damper) -> Vec<String> {
        d.raised().into_iter().map(|r| r.message).collect()
    }

    #[test]
    fn raises_after_n_bad_and_clears_after_m_good() {
        let mut d = Damper::default();
        d.observe(vec![r("threshold.disk", "86%")], 2, 3);
        assert!(rules(&d).is_empty(), "one bad heartbeat is not enough");
        d.observe(vec![], 2, 3);
        d.observe(vec![r("threshold.disk", "86%")], 2, 3);
        assert!(
            rules(&d).is_empty(),
            "a good one in between resets the count"
        );
        d.observe(vec![r("threshold.disk", "87%")], 2, 3);
        assert_eq!(rules(&d), ["87%"]);
        d.observe(vec![], 2, 3);
        d.observe(vec![], 2, 3);
        assert_eq!(rules(&d), ["87%"], "still raised after two good");
        d.observe(vec![r("threshold.disk", "88%")], 2, 3);
        assert_eq!(rules(&d), ["88%"], "a bad one resets the clearing count");
        for _ in 0..3 {
            d.observe(vec![], 2, 3);
        }
        assert!(rules(&d).is_empty());
    }

    #[test]
    fn no_damping_with_ones_and_restored_reasons_stay_until_cleared() {
        let mut d = Damper::default();
        d.observe(vec![r("services", "down")], 1, 1);
        assert_eq!(rules(&d), ["down"]);
        d.observe(vec![], 1, 1);
        assert!(rules(&d).is_empty());
        let mut d = Damper::restored([r("tunnel", "down")], 2);
        assert_eq!(rules(&d), ["down"]);
        d.observe(vec![], 2, 2);
        assert_eq!(rules(&d), ["down"]);
        d.observe(vec![], 2, 2);
        assert!(rules(&d).is_empty());
    }
}
