//! Notifier plugins: each kind registers a constructor with `inventory::submit!`, as checks
//! do; [`build`] makes one from its `[notifiers.<name>]` table.

use std::sync::Arc;

use super::Notifier;

/// Builds a notifier called `name` from its table (which still holds `kind`).
pub type Build = fn(name: &str, table: &toml::Table) -> Result<Arc<dyn Notifier>, String>;

/// A notifier kind and how to build one.
#[derive(Debug)]
pub struct NotifierRegistration {
    pub kind: &'static str,
    pub build: Build,
}

inventory::collect!(NotifierRegistration);

/// Every registered kind, sorted.
pub fn kinds() -> Vec<&'static str> {
    let mut k: Vec<&'static str> = inventory::iter::<NotifierRegistration>
        .into_iter()
        .map(|r| r.kind)
        .collect();
    k.sort_unstable();
    k
}

/// Builds the notifier `name` from its table.
pub fn build(name: &str, table: &toml::Table) -> Result<Arc<dyn Notifier>, String> {
    let kind = table
        .get("kind")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("kind: missing; one of {}", kinds().join(", ")))?;
    let reg = inventory::iter::<NotifierRegistration>
        .into_iter()
        .find(|r| r.kind == kind)
        .ok_or_else(|| format!("kind: {kind:?} is not one of {}", kinds().join(", ")))?;
    (reg.build)(name, table)
}

/// Refuses keys a kind does not know (`kind` is always allowed).
pub fn only_keys(table: &toml::Table, known: &[&str]) -> Result<(), String> {
    for key in table.keys() {
        if key != "kind" && !known.contains(&key.as_str()) {
            return Err(format!("{key}: unknown key; known: {}", known.join(", ")));
        }
    }
    Ok(())
}

/// A string key.
pub fn string(table: &toml::Table, key: &str) -> Result<Option<String>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| format!("{key}: must be a string")),
    }
}
