//! The notifications file (`--notify-config`): notifiers, and the routes that send to them.
//!
//! ```toml
//! console_url = "https://cc.example.com"   # links in messages: <console_url>/console?node=<id>
//!
//! [notifiers.ops-chat]
//! kind = "webhook"
//! url_file = "/etc/vaultmesh/slack-hook"    # or url = "..." (the URL is a secret for Slack)
//! format = "slack"
//!
//! [[routes]]
//! name = "chat"
//! notifier = "ops-chat"
//! min_level = "attn"
//! group_window = "30s"
//! repeat_interval = "4h"
//! ```
//!
//! Every error names the file, the key and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vaultmesh_proto::AttentionLevel;

/// What a route can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A node's attention level changed.
    Attention,
    /// An incident was opened or resolved (a ledger tamper alarm opens one).
    Incident,
    /// A receipt did not continue its node's chain.
    ChainBreak,
    /// An unresolved CRIT, again after `repeat_interval`.
    Repeat,
    /// A node changing level too often; its changes are held until it settles.
    Flapping,
}

/// The whole file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Where admins open the console; links in messages point there.
    #[serde(default = "default_console_url")]
    pub console_url: String,
    /// Each notifier's table: `kind` and that kind's keys.
    #[serde(default)]
    pub notifiers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// A node with more level changes than this within `flap_window` is reported as flapping.
    #[serde(default = "default_flap_changes")]
    pub flap_changes: usize,
    #[serde(default = "default_flap_window", deserialize_with = "duration")]
    pub flap_window: Duration,
    /// The longest pause between two tries of a failing notifier.
    #[serde(default = "default_retry_max", deserialize_with = "duration")]
    pub retry_max: Duration,
    /// A message not sent within this long is dropped (and counted).
    #[serde(default = "default_max_age", deserialize_with = "duration")]
    pub max_age: Duration,
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Notifier tables may hold secrets inline (a hook URL, a token, a password).
        f.debug_struct("NotifyConfig")
            .field("console_url", &self.console_url)
            .field("notifiers", &self.notifiers.keys().collect::<Vec<_>>())
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

/// Which alerts go to which notifier, and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub notifier: String,
    /// Attention changes below this level (both before and after) are not sent.
    #[serde(default = "default_min_level")]
    pub min_level: AttentionLevel,
    /// Only nodes of these profiles (all when empty). Each must be a profile the Command
    /// Center knows: one with a policy file, or a shipped one.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Only attention changes with a reason whose rule is one of these, or starts with one
    /// ending in `.` (all when empty). Each must name attention rules
    /// ([`crate::attention::rules::check_rule_name`]).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Only these kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<AlertKind>,
    /// Only nodes with all these labels (`match_labels = { site = "fra1" }`; all when empty):
    /// each key and value as [`vaultmesh_proto::labels`] allows. A fleet-wide alert has no
    /// labels, so a route with `match_labels` never takes one.
    #[serde(default)]
    pub match_labels: vaultmesh_proto::labels::Labels,
    /// Alerts within this window of the first go out together, as one message.
    #[serde(default = "default_group_window", deserialize_with = "duration")]
    pub group_window: Duration,
    /// An unresolved CRIT is sent again after this long (absent: never).
    #[serde(default, deserialize_with = "opt_duration")]
    pub repeat_interval: Option<Duration>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

/// A daily window in which only alerts at `min_level` or above are sent; the rest are dropped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, local to `utc_offset`.
    pub start: String,
    pub end: String,
    /// `+01:00`, `-05:00`; `+00:00` (UTC) when absent.
    #[serde(default)]
    pub utc_offset: Option<String>,
    #[serde(default = "default_quiet_level")]
    pub min_level: AttentionLevel,
}

fn default_console_url() -> String {
    "http://127.0.0.1:8088".into()
}
fn default_min_level() -> AttentionLevel {
    AttentionLevel::Attn
}
fn default_quiet_level() -> AttentionLevel {
    AttentionLevel::Crit
}
fn default_group_window() -> Duration {
    Duration::from_secs(30)
}
fn default_flap_changes() -> usize {
    4
}
fn default_flap_window() -> Duration {
    Duration::from_secs(900)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(86_400)
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    vaultmesh_process::duration::parse(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Minutes after midnight of `HH:MM`.
pub fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `+HH:MM` / `-HH:MM` as seconds east of UTC.
pub fn offset_seconds(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let m = minutes(rest)?;
    (m <= 14 * 60).then_some(sign * m as i32 * 60)
}

impl QuietHours {
    /// Whether `now` falls in the window (which may span midnight).
    pub fn contains(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::Timelike;
        let offset = self
            .utc_offset
            .as_deref()
            .and_then(offset_seconds)
            .unwrap_or(0);
        let local = now + chrono::TimeDelta::seconds(i64::from(offset));
        let m = local.hour() * 60 + local.minute();
        let (Some(start), Some(end)) = (minutes(&self.start), minutes(&self.end)) else {
            return false;
        };
        if start <= end {
            (start..end).contains(&m)
        } else {
            m >= start || m < end
        }
    }
}

impl NotifyConfig {
    /// Reads and checks `path`: every route names a known notifier, known attention rules and
    /// profiles among `profiles` (see [`vaultmesh_store::policy::Policies::known_profiles`]); times and
    /// offsets parse. The notifier tables are checked when they are built ([`super::load`]).
    pub fn load(path: &Path, profiles: &[&str]) -> Result<NotifyConfig, String> {
        let name = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        let config: NotifyConfig = toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_string();
            format!("{name}: {msg}")
        })?;
        config.check(profiles).map_err(|e| format!("{name}: {e}"))?;
        Ok(config)
    }

    fn check(&self, profiles: &[&str]) -> Result<(), String> {
        if !self.console_url.starts_with("http://") && !self.console_url.starts_with("https://") {
            return Err("console_url: must start with http:// or https://".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}] ({})", r.name);
            if !seen.insert(r.name.as_str()) {
                return Err(format!("{at}: name: used twice"));
            }
            if !self.notifiers.contains_key(&r.notifier) {
                return Err(format!(
                    "{at}: notifier: no [notifiers.{}] in this file",
                    r.notifier
                ));
            }
            for (j, rule) in r.rules.iter().enumerate() {
                crate::attention::rules::check_rule_name(rule)
                    .map_err(|e| format!("{at}: rules[{j}]: {e}"))?;
            }
            for (j, p) in r.profiles.iter().enumerate() {
                if !profiles.contains(&p.as_str()) {
                    return Err(format!(
                        "{at}: profiles[{j}]: no policy file for profile {p:?}{}; profiles: {}",
                        vaultmesh_process::suggest::did_you_mean(p, profiles.iter().copied()),
                        profiles.join(", ")
                    ));
                }
            }
            vaultmesh_proto::labels::check(&r.match_labels)
                .map_err(|e| format!("{at}: match_labels: {e}"))?;
            if let Some(q) = &r.quiet_hours {
                for (key, v) in [("start", &q.start), ("end", &q.end)] {
                    if minutes(v).is_none() {
                        return Err(format!("{at}: quiet_hours.{key}: {v:?} is not HH:MM"));
                    }
                }
                if let Some(o) = &q.utc_offset
                    && offset_seconds(o).is_none()
                {
                    return Err(format!(
                        "{at}: quiet_hours.utc_offset: {o:?} is not +HH:MM or -HH:MM"
                    ));
                }
            }
            if r.repeat_interval
                .is_some_and(|d| d < Duration::from_secs(1))
            {
                return Err(format!("{at}: repeat_interval: must be at least 1s"));
            }
        }
        Ok(())
    }

    /// The route called `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// Reads a secret given inline (`key`) or in a file (`key_file`): exactly one of the two.
pub fn secret(table: &toml::Table, key: &str) -> Result<Option<String>, String> {
    let file_key = format!("{key}_file");
    match (table.get(key), table.get(&file_key)) {
        (Some(_), Some(_)) => Err(format!("give {key} or {file_key}, not both")),
        (Some(v), None) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("{key}: must be a string")),
        (None, Some(p)) => {
            let p = p
                .as_str()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{file_key}: must be a path"))?;
            std::fs::read_to_string(&p)
                .map(|s| Some(s.trim().to_string()))
                .map_err(|e| format!("{file_key}: {}: {e}", p.display()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn quiet_hours_span_midnight_and_honour_the_offset() {
        let q = QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            utc_offset: Some("+01:00".into()),
            min_level: AttentionLevel::Crit,
        };
        assert!(q.contains(at(21, 30))); // 22:30 local
        assert!(q.contains(at(5, 59))); // 06:59 local
        assert!(!q.contains(at(6, 0))); // 07:00 local
        assert!(!q.contains(at(12, 0)));
    }

    #[test]
    fn times_and_offsets_parse_strictly() {
        assert_eq!(minutes("07:30"), Some(450));
        assert_eq!(minutes("24:00"), None);
        assert_eq!(offset_seconds("-05:00"), Some(-18_000));
        assert_eq!(offset_seconds("05:00"), None);
    }

    #[test]
    fn match_labels_are_checked_and_a_misspelt_key_names_the_right_one() {
        let file = |route: &str| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let path = dir.path().join("notify.toml");
            let text = format!(
                "[notifiers.n]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n\
                 [[routes]]\nname = \"fra\"\nnotifier = \"n\"\n{route}\n"
            );
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
            NotifyConfig::load(&path, &["ArchVault"])
        };
        let ok = file("match_labels = { site = \"fra1\" }").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok.routes[0].match_labels["site"], "fra1");
        let e = file("match_labels = { site = \"fra 1\" }").expect_err("a space");
        assert!(
            e.contains("routes[0] (fra): match_labels: label \"site\""),
            "{e}"
        );
        let e = file("match_label = { site = \"fra1\" }").expect_err("a typo");
        assert!(e.contains("match_labels"), "{e}");
    }
}
