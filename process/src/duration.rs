//! Durations in config: `"30s"`, `"5m"`, `"1h 30m"` (humantime) or a bare number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses `"30s"`, `"1m30s"` or `"30"` (seconds). Zero is allowed here; callers bound it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. \"30s\", \"5m\" or 30"))
}

/// [`parse`], refusing zero: the value parser of interval and timeout flags.
pub fn parse_nonzero(text: &str) -> Result<Duration, String> {
    let d = parse(text)?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

/// Formats a duration the way config files write it (`"30s"`, `"5m"`).
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Serde `deserialize_with` for a `Duration` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

/// Serde `deserialize_with` for an `Option<Duration>` field.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserialize(deserializer).map(Some)
}

/// A span of `s` seconds in its largest unit: "42s", "5m", "3h", "2d".
pub fn span(s: i64) -> String {
    match s {
        i64::MIN..=59 => format!("{}s", s.max(0)),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        for (text, secs) in [
            ("30", 30),
            ("30s", 30),
            ("5m", 300),
            ("1h 30m", 5400),
            (" 2s ", 2),
        ] {
            assert_eq!(parse(text).unwrap(), Duration::from_secs(secs), "{text}");
        }
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let err = parse("soon").unwrap_err();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        assert!(err.contains("\"30s\""), "{err}");
        assert!(parse("-5s").is_err());
    }
}
