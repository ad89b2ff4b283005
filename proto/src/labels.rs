//! Node labels: short `key = value` pairs that group nodes (`site = "fra1"`, `role = "db"`).
//!
//! A node's labels come from its agent's config (carried in every heartbeat as `labels`) and
//! from admins' `tag` events; an admin's tag overrides the agent's label of the same key. Both
//! are bounded and ASCII-only here, so no label can hide a bidirectional or invisible
//! character: a key is 1 to [`KEY_MAX`] of `a-z 0-9 _ - .`, starting with a letter; a value is
//! 1 to [`VALUE_MAX`] of `A-Z a-z 0-9 _ - . :`; at most [`MAX`] labels.

use std::collections::BTreeMap;

/// A node's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// Most labels a heartbeat (or a node) carries.
pub const MAX: usize = 16;
/// Longest key.
pub const KEY_MAX: usize = 32;
/// Longest value.
pub const VALUE_MAX: usize = 64;

/// Why a label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("labels holds {len} entries; the limit is {MAX}")]
    TooMany { len: usize },
    #[error(
        "label key {shown:?} {reason}: a key is 1 to {KEY_MAX} of a-z 0-9 _ - . starting with a letter"
    )]
    BadKey { shown: String, reason: &'static str },
    #[error(
        "label {key:?} has value {shown:?}, which {reason}: a value is 1 to {VALUE_MAX} of A-Z a-z 0-9 _ - . :"
    )]
    BadValue {
        key: String,
        shown: String,
        reason: &'static str,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Checks one key.
pub fn check_key(key: &str) -> Result<(), LabelError> {
    let bad = |reason| LabelError::BadKey {
        shown: shown(key),
        reason,
    };
    if key.is_empty() {
        return Err(bad("is empty"));
    }
    if key.len() > KEY_MAX {
        return Err(bad("is too long"));
    }
    if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("does not start with a-z"));
    }
    if !key
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.".contains(&c))
    {
        return Err(bad("holds a character other than a-z 0-9 _ - ."));
    }
    Ok(())
}

/// Checks one value (of `key`).
pub fn check_value(key: &str, value: &str) -> Result<(), LabelError> {
    let bad = |reason| LabelError::BadValue {
        key: shown(key),
        shown: shown(value),
        reason,
    };
    if value.is_empty() {
        return Err(bad("is empty"));
    }
    if value.len() > VALUE_MAX {
        return Err(bad("is too long"));
    }
    if !value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_-.:".contains(&c))
    {
        return Err(bad("holds a character other than A-Z a-z 0-9 _ - . :"));
    }
    Ok(())
}

/// Checks a whole set: its size, then each key and value.
pub fn check(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX {
        return Err(LabelError::TooMany { len: labels.len() });
    }
    for (k, v) in labels {
        check_key(k)?;
        check_value(k, v)?;
    }
    Ok(())
}

/// The labels a node shows: the agent's, with admins' tags over them (a tag wins for its key).
pub fn merged(agent: &Labels, tags: &Labels) -> Labels {
    let mut out = agent.clone();
    out.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_short_ascii_and_nothing_deceptive_passes() {
        for ok in ["site", "rack-2", "env.tier", "a_b9"] {
            assert_eq!(check_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Site",
            "9site",
            "site!",
            "sí",
            &"k".repeat(33),
            "si\u{202e}te",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for ok in ["fra1", "eu-west:1", "DB_primary.2"] {
            assert_eq!(check_value("site", ok), Ok(()), "{ok}");
        }
        for bad in ["", "fra 1", "fra1\u{200b}", "<b>", &"v".repeat(65)] {
            let e = check_value("site", bad).expect_err(bad);
            assert!(e.to_string().contains("label \"site\""), "{e}");
        }
        let many: Labels = (0..17)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(check(&many), Err(LabelError::TooMany { len: 17 }));
    }

    #[test]
    fn an_admins_tag_overrides_the_agents_label_of_the_same_key() {
        let agent: Labels = [("site", "fra1"), ("role", "db")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let tags: Labels = [("site", "ams3")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let m = merged(&agent, &tags);
        assert_eq!(m["site"], "ams3");
        assert_eq!(m["role"], "db");
    }
}
