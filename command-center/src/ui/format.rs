//! Small text formatting helpers for pages: pure functions from values to words (no markup,
//! no HTTP); spans of time come from `vaultmesh_process::duration::span`, as notifications'.

use chrono::{DateTime, Utc};
use vaultmesh_proto::AttentionLevel;
use vaultmesh_proto::history::DiskForecast;

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

/// A filesystem's fill forecast in words: "full in ~12 days at +1.5 %/day (7-day trend)", "not
/// growing (7-day trend)", or why there is none. A trend resting on less than 7 days says how
/// many hours it rests on.
pub fn forecast(f: Option<&DiskForecast>) -> String {
    let Some(f) = f else {
        return "no forecast yet: too little history".into();
    };
    let trend = if f.hours >= 7 * 24 {
        "7-day trend".to_string()
    } else {
        format!("trend of the last {} h", f.hours)
    };
    match f.days_until_full {
        None => format!("not growing ({trend})"),
        Some(days) => {
            let rate = if f.pct_per_day < 0.1 {
                format!("{:.2}", f.pct_per_day)
            } else {
                format!("{:.1}", f.pct_per_day)
            };
            let when = match days.round() {
                _ if days < 1.0 => "full in less than a day".to_string(),
                1.0 => "full in ~1 day".to_string(),
                d => format!("full in ~{d:.0} days"),
            };
            format!("{when} at +{rate} %/day ({trend})")
        }
    }
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
    fn forecasts_say_when_and_how_fast_or_that_the_disk_is_not_growing() {
        let f = |days: Option<f64>, rate: f64, hours: u32| DiskForecast {
            mount: "/var".into(),
            used_pct: 80.0,
            pct_per_day: rate,
            days_until_full: days,
            hours,
        };
        for (fc, want) in [
            (
                f(Some(13.6), 1.47, 168),
                "full in ~14 days at +1.5 %/day (7-day trend)",
            ),
            (
                f(Some(0.4), 50.0, 168),
                "full in less than a day at +50.0 %/day (7-day trend)",
            ),
            (
                f(Some(1.2), 16.0, 30),
                "full in ~1 day at +16.0 %/day (trend of the last 30 h)",
            ),
            (
                f(Some(400.0), 0.05, 168),
                "full in ~400 days at +0.05 %/day (7-day trend)",
            ),
            (f(None, -0.2, 168), "not growing (7-day trend)"),
        ] {
            assert_eq!(forecast(Some(&fc)), want);
        }
        assert_eq!(forecast(None), "no forecast yet: too little history");
    }

    #[test]
    fn percentages() {
        assert_eq!(pct(Some(4.25)), "4.2%");
        assert_eq!(pct(Some(42.4)), "42%");
        assert_eq!(pct(None), "–");
        assert_eq!(num2(Some(1.0)), "1.00");
    }
}
