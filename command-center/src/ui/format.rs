//! Small text formatting helpers for pages: pure functions from values to words (no markup,
//! no HTTP); spans of time come from `vaultmesh_process::duration::span`, as notifications'.

use chrono::{DateTime, Utc};
use vaultmesh_proto::AttentionLevel;

/// A level's CSS class and word.
pub fn level_name(l: AttentionLevel) -> (&'static str, &'static str) {
    match l {
        AttentionLevel::Ok => ("ok", "OK"),
        AttentionLevel::Attn => ("attn", "ATTN"),
        AttentionLevel::Crit => ("crit", "CRIT"),
    }
}

/// "just now", "42s ago", "5m ago", "3h ago", "2d ago".
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds();
    if s <= 1 {
        return "just now".into();
    }
    format!("{} ago", vaultmesh_process::duration::span(s))
}

/// `42%` (no decimals above 10, one below) or an en dash when unknown.
pub fn pct(v: Option<f64>) -> String {
    match v {
        Some(p) if p < 10.0 => format!("{p:.1}%"),
        Some(p) => format!("{p:.0}%"),
        None => "–".into(),
    }
}

/// A number with two decimals or an en dash.
pub fn num2(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn ages() {
        let now = Utc::now();
        for (secs, want) in [
            (0, "just now"),
            (5, "5s ago"),
            (61, "1m ago"),
            (7200, "2h ago"),
            (200_000, "2d ago"),
            (-30, "just now"),
        ] {
            assert_eq!(age(now - Duration::seconds(secs), now), want);
        }
    }

    #[test]
    fn percentages() {
        assert_eq!(pct(Some(4.25)), "4.2%");
        assert_eq!(pct(Some(42.4)), "42%");
        assert_eq!(pct(None), "–");
        assert_eq!(num2(Some(1.0)), "1.00");
    }
}
