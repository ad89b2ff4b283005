//! The check registry. Check crates add a [`CheckRegistration`] with `inventory::submit!`; the
//! agent discovers them at start without any list being written down here.
//!
//! ```ignore
//! vaultmesh_agent_core::inventory::submit! {
//!     CheckRegistration {
//!         name: "disk",
//!         description: "Space and inodes used per mounted filesystem",
//!         enabled_by_default: true,
//!         default_interval: Duration::from_secs(60),
//!         default_timeout: Duration::from_secs(10),
//!         example: "warn_pct = 85\ncrit_pct = 95\n",
//!         build: |table| Ok(Box::new(Disk::new(parse_table(table)?)?)),
//!     }
//! }
//! ```
//!
//! Every `[checks.<name>]` table accepts three common keys — `enabled`, `interval`, `timeout` —
//! and passes the rest to the check's constructor, which parses it into its own
//! `deny_unknown_fields` struct with [`parse_table`].

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::check::Check;
use crate::config::{AgentConfig, ConfigError, ConfigErrors, DEFAULT_ALLOW};
use vaultmesh_process::duration;
use vaultmesh_process::suggest::did_you_mean;

/// A check's entry in the registry.
#[derive(Debug)]
pub struct CheckRegistration {
    /// Name used in `[checks.<name>]`, in results and in `checks run NAME`.
    pub name: &'static str,
    /// One line for `checks list`.
    pub description: &'static str,
    pub enabled_by_default: bool,
    pub default_interval: Duration,
    pub default_timeout: Duration,
    /// The check-specific keys with their defaults, as TOML (documentation and tests).
    pub example: &'static str,
    /// Builds the check from its table (common keys already removed). Must not do I/O.
    pub build: fn(&toml::Table) -> Result<Box<dyn Check>, CheckConfigError>,
}

inventory::collect!(CheckRegistration);

/// A problem in one check's table: the key (relative to the table) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct CheckConfigError {
    pub key: String,
    pub reason: String,
}

impl CheckConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        CheckConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a check's table into its typed config, naming the offending key on error.
pub fn parse_table<T: DeserializeOwned>(table: &toml::Table) -> Result<T, CheckConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let key = e.path().to_string();
        let reason = crate::config::one_line(&e.inner().to_string());
        if key == "." {
            // serde reports unknown fields at the struct itself; lift the field name out.
            let key = reason
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("-")
                .to_string();
            CheckConfigError::new(key, reason)
        } else {
            CheckConfigError::new(key, reason)
        }
    })
}

/// Every registered check, sorted by name (inventory's order is unspecified).
pub fn all() -> Vec<&'static CheckRegistration> {
    let mut v: Vec<_> = inventory::iter::<CheckRegistration>.into_iter().collect();
    crate::sort::sort_by_key(&mut v, |r| r.name);
    v
}

/// The registered check called `name`.
pub fn find(name: &str) -> Option<&'static CheckRegistration> {
    inventory::iter::<CheckRegistration>
        .into_iter()
        .find(|r| r.name == name)
}

/// The scheduling settings common to every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSettings {
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
}

/// A check built from config, ready to schedule.
#[derive(Debug, Clone)]
pub struct ConfiguredCheck {
    pub registration: &'static CheckRegistration,
    pub settings: CheckSettings,
    pub check: Arc<dyn Check>,
}

impl ConfiguredCheck {
    pub fn name(&self) -> &'static str {
        self.registration.name
    }
}

/// Builds every registered check from the config's `[checks.*]` tables (disabled ones too, so
/// `config check` validates them), and checks `[commands] allow` against the action registry,
/// collecting every error.
pub fn configure(config: &AgentConfig) -> Result<Vec<ConfiguredCheck>, ConfigErrors> {
    let file = config.file_label();
    let mut errors = Vec::new();
    let registered = all();

    for name in config.checks.keys() {
        if find(name).is_none() {
            let known: Vec<_> = registered.iter().map(|r| r.name).collect();
            errors.push(ConfigError::new(
                &file,
                format!("checks.{name}"),
                format!(
                    "no such check{}; registered checks are: {}",
                    did_you_mean(name, known.iter().copied()),
                    known.join(", ")
                ),
            ));
        }
    }

    // `[commands] allow` names actions of the action registry. The defaults may name one this
    // build leaves out (an agent without the sovereign scan); the runner rejects it like any
    // action not registered.
    let actions: Vec<&str> = crate::action::all().iter().map(|a| a.name).collect();
    for (i, name) in config.command_allow.iter().enumerate() {
        if !actions.contains(&name.as_str()) && !DEFAULT_ALLOW.contains(&name.as_str()) {
            errors.push(ConfigError::new(
                &file,
                format!("commands.allow[{i}]"),
                format!(
                    "no action {name:?} in this agent{}; its actions are: {}",
                    did_you_mean(name, actions.iter().copied()),
                    actions.join(", ")
                ),
            ));
        }
    }

    let mut out = Vec::new();
    for reg in registered {
        let mut table = config.checks.get(reg.name).cloned().unwrap_or_default();
        let key = |k: &str| format!("checks.{}.{k}", reg.name);
        let mut settings = CheckSettings {
            enabled: reg.enabled_by_default,
            interval: reg.default_interval,
            timeout: reg.default_timeout,
        };
        if let Some(v) = table.remove("enabled") {
            match v.as_bool() {
                Some(b) => settings.enabled = b,
                None => errors.push(ConfigError::new(
                    &file,
                    key("enabled"),
                    "must be true or false",
                )),
            }
        }
        for (field, slot) in [
            ("interval", &mut settings.interval),
            ("timeout", &mut settings.timeout),
        ] {
            if let Some(v) = table.remove(field) {
                match toml_duration(&v) {
                    Ok(d)
                        if d >= Duration::from_millis(100) && d <= Duration::from_secs(86_400) =>
                    {
                        *slot = d
                    }
                    Ok(d) => errors.push(ConfigError::new(
                        &file,
                        key(field),
                        format!("{} is outside 100ms..24h", duration::format(d)),
                    )),
                    Err(r) => errors.push(ConfigError::new(&file, key(field), r)),
                }
            }
        }
        match (reg.build)(&table) {
            Ok(check) => out.push(ConfiguredCheck {
                registration: reg,
                settings,
                check: Arc::from(check),
            }),
            Err(e) => errors.push(ConfigError::new(&file, key(&e.key), e.reason)),
        }
    }

    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn toml_duration(v: &toml::Value) -> Result<Duration, String> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(Duration::from_secs(*i as u64)),
        toml::Value::String(s) => duration::parse(s),
        other => Err(format!(
            "{other} is not a duration; write e.g. \"30s\" or 30"
        )),
    }
}
