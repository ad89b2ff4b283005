//! Per-profile policy files: `policies/<Profile>.toml`, selected by the `os_profile` a node
//! reports. A policy says which commands may be issued to the profile's nodes, and (in
//! [`settings`]) which services they must run, when they need attention, how often they are
//! scanned and which ports may listen. Commands look like this:
//!
//! ```toml
//! [commands]
//! allow = [
//!   { action = "agent.ping" },
//!   { action = "service.restart", args = { unit = "^(cloudflared|vaultmesh-[a-z-]+)\\.service$" } },
//! ]
//! ```
//!
//! A command is allowed when a rule names its action and every argument it carries has a
//! pattern in that rule that the (string) value matches in full. Anything else is refused, with
//! the reason. No policy file for a profile means no command for its nodes, and the default
//! [`Settings`] for everything else.
//!
//! Typos are refused at load, with the near name: an action that is not one of the agents'
//! built-in actions ([`vaultmesh_proto::command::ACTIONS`]),
//! and a file named after a shipped profile in another case (`archvault.toml`).

pub mod settings;

pub use settings::Settings;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use vaultmesh_process::suggest::{did_you_mean, other_case};
use vaultmesh_proto::command::ACTIONS;
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    commands: CommandsSection,
    #[serde(default)]
    services: settings::Services,
    #[serde(default)]
    attention: settings::Thresholds,
    #[serde(default)]
    scan: settings::ScanSchedule,
    #[serde(default)]
    network: settings::Network,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandsSection {
    #[serde(default)]
    allow: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    action: String,
    #[serde(default)]
    args: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Rule {
    action: String,
    args: BTreeMap<String, Regex>,
}

/// One `commands.allow` rule as a form offers it: the action and, per argument, the pattern
/// its value must match in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub action: String,
    pub args: BTreeMap<String, String>,
}

/// How many distinct unknown profiles are warned about per process.
pub const WARNED_PROFILES_MAX: usize = 256;

/// One profile's policy.
#[derive(Debug)]
pub struct Policy {
    pub file: PathBuf,
    rules: Vec<Rule>,
    pub settings: Settings,
}

/// The policies in force, replaced as a whole on reload (SIGHUP): readers take a snapshot.
#[derive(Debug)]
pub struct LivePolicies {
    dir: Option<PathBuf>,
    current: std::sync::RwLock<std::sync::Arc<Policies>>,
    /// Profiles reported by nodes that have no policy file, warned about once each.
    warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl LivePolicies {
    pub fn new(dir: Option<&Path>, initial: Policies) -> LivePolicies {
        LivePolicies {
            dir: dir.map(Path::to_path_buf),
            current: std::sync::RwLock::new(std::sync::Arc::new(initial)),
            warned: std::sync::Mutex::default(),
        }
    }

    /// Warns, once per profile per process (for the first [`WARNED_PROFILES_MAX`] profiles), that `node_id` reports a profile with no policy
    /// file in the policy directory (a typo such as `archvault`, or a file not installed): its
    /// nodes get the default settings and no command. Silent without `--policy-dir`.
    pub fn note_reported_profile(&self, node_id: uuid::Uuid, profile: &str) {
        let Some(dir) = &self.dir else { return };
        let current = self.get();
        if current.by_profile.contains_key(profile) {
            return;
        }
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            // Nodes choose what they report: past this many distinct profiles, stop
            // remembering (and warning) rather than grow without bound.
            if warned.len() >= WARNED_PROFILES_MAX || !warned.insert(profile.to_string()) {
                return;
            }
        }
        let hint = did_you_mean(profile, current.profiles());
        tracing::warn!(
            %node_id,
            profile,
            dir = %dir.display(),
            "Node reports profile {profile:?}, which has no policy file{hint}; its nodes get the default settings and no command."
        );
    }

    /// The policies in force now.
    pub fn get(&self) -> std::sync::Arc<Policies> {
        std::sync::Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Loads the directory again. An invalid set is refused and the old one stays in force.
    pub fn reload(&self) -> Result<usize, String> {
        let fresh = Policies::load(self.dir.as_deref())?;
        let n = fresh.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = std::sync::Arc::new(fresh);
        Ok(n)
    }
}

/// Every profile's policy, loaded at start.
#[derive(Debug, Default)]
pub struct Policies {
    dir: Option<PathBuf>,
    by_profile: HashMap<String, Policy>,
}

impl Policies {
    /// Loads every `*.toml` in `dir`; errors name the file, the key and the reason. A
    /// `[commands] allow` rule may name only an action in [`ACTIONS`].
    pub fn load(dir: Option<&Path>) -> Result<Policies, String> {
        let Some(dir) = dir else {
            return Ok(Policies::default());
        };
        let mut by_profile = HashMap::new();
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .collect();
        // Sorted, so the first problem reported is the same on every run.
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let Some(profile) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if let Some(meant) = other_case(&profile, vaultmesh_proto::heartbeat::PROFILES) {
                return Err(format!(
                    "{}: {profile:?} is not a profile: the file name is the profile nodes report, and its case matters; did you mean {meant:?}? (rename it {meant}.toml)",
                    path.display()
                ));
            }
            if let Some(other) = other_case(&profile, by_profile.keys().map(String::as_str)) {
                return Err(format!(
                    "{}: {profile:?} and {other:?} differ only in case; keep one",
                    path.display()
                ));
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let spec: PolicyFile = toml::from_str(&text)
                .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
            let settings = Settings {
                services: spec.services,
                attention: spec.attention,
                scan: spec.scan,
                network: spec.network,
            };
            settings
                .validate()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut rules = Vec::new();
            for (i, r) in spec.commands.allow.into_iter().enumerate() {
                if !ACTIONS.contains(&r.action.as_str()) {
                    return Err(format!(
                        "{}: commands.allow[{i}].action: no action {:?}{}; actions: {}",
                        path.display(),
                        r.action,
                        did_you_mean(&r.action, ACTIONS.iter().copied()),
                        ACTIONS.join(", ")
                    ));
                }
                let mut args = BTreeMap::new();
                for (name, pattern) in r.args {
                    let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                        // regex errors span several lines (a caret diagram); keep the reason.
                        let text = e.to_string();
                        let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid");
                        let reason = reason.trim().trim_start_matches("error: ");
                        format!("{}: commands.allow[{i}].args.{name}: invalid pattern {pattern:?}: {reason}", path.display())
                    })?;
                    args.insert(name, re);
                }
                rules.push(Rule {
                    action: r.action,
                    args,
                });
            }
            by_profile.insert(
                profile,
                Policy {
                    file: path,
                    rules,
                    settings,
                },
            );
        }
        Ok(Policies {
            dir: Some(dir.to_path_buf()),
            by_profile,
        })
    }

    /// How many profile files are loaded.
    pub fn len(&self) -> usize {
        self.by_profile.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_profile.is_empty()
    }

    /// The loaded profiles, sorted.
    pub fn profiles(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_profile.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The profiles a node may report that the Command Center knows: those with a policy file,
    /// and the shipped ones (`ArchVault`, `DebianVault`, `Generic`), sorted.
    pub fn known_profiles(&self) -> Vec<&str> {
        let mut v = self.profiles();
        v.extend(vaultmesh_proto::heartbeat::PROFILES);
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The settings for nodes of `profile`: its file's, or the defaults when it has none.
    pub fn settings(&self, profile: &str) -> &Settings {
        static DEFAULT: std::sync::LazyLock<Settings> = std::sync::LazyLock::new(Settings::default);
        self.by_profile
            .get(profile)
            .map_or(&*DEFAULT, |p| &p.settings)
    }

    /// What may be issued to a node of `profile`, rule by rule in the file's order: each
    /// rule's action and its arguments' patterns (empty when the profile has no policy file).
    pub fn allowed(&self, profile: &str) -> Vec<Allowed> {
        self.by_profile.get(profile).map_or_else(Vec::new, |p| {
            p.rules
                .iter()
                .map(|r| Allowed {
                    action: r.action.clone(),
                    args: r
                        .args
                        .iter()
                        .map(|(name, re)| {
                            // As the file wrote it, without the anchors added at load.
                            let written = re.as_str();
                            let written = written
                                .strip_prefix("^(?:")
                                .and_then(|w| w.strip_suffix(")$"))
                                .unwrap_or(written);
                            (name.clone(), written.to_string())
                        })
                        .collect(),
                })
                .collect()
        })
    }

    /// Whether `action` with `args` may be issued to a node of `profile`; the reason if not.
    pub fn check_command(
        &self,
        profile: &str,
        action: &str,
        args: &serde_json::Value,
    ) -> Result<(), String> {
        let Some(policy) = self.by_profile.get(profile) else {
            let where_ = self.dir.as_ref().map_or_else(
                || "no --policy-dir is set".to_string(),
                |d| format!("no {}/{profile}.toml", d.display()),
            );
            return Err(format!(
                "{where_}: no command may be issued to {profile} nodes"
            ));
        };
        let file = policy.file.display();
        let empty = serde_json::Map::new();
        let given = match args {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => &empty,
            _ => return Err("args must be a JSON object".into()),
        };
        let candidates: Vec<(usize, &Rule)> = policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.action == action)
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "{file}: no commands.allow rule for action {action:?}"
            ));
        }
        let mut last = String::new();
        'rules: for (i, rule) in candidates {
            for (name, value) in given {
                let Some(re) = rule.args.get(name) else {
                    last = format!(
                        "{file}: commands.allow[{i}] does not allow argument {name:?} for {action}"
                    );
                    continue 'rules;
                };
                let Some(text) = value.as_str() else {
                    last =
                        format!("{file}: commands.allow[{i}]: argument {name:?} must be a string");
                    continue 'rules;
                };
                if !re.is_match(text) {
                    last =
                        format!("{file}: commands.allow[{i}].args.{name} does not match {text:?}");
                    continue 'rules;
                }
            }
            return Ok(());
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_profiles_are_remembered_up_to_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let live = LivePolicies::new(Some(dir.path()), Policies::default());
        for i in 0..WARNED_PROFILES_MAX + 50 {
            live.note_reported_profile(uuid::Uuid::nil(), &format!("Profile{i}"));
        }
        assert_eq!(live.warned.lock().unwrap().len(), WARNED_PROFILES_MAX);
    }

    fn policies(text: &str) -> Result<Policies, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ArchVault.toml"), text).unwrap();
        Policies::load(Some(dir.path()))
    }

    #[test]
    fn rules_allow_actions_with_matching_arguments_only() {
        let p = policies(
            r#"[commands]
allow = [
  { action = "agent.ping" },
  { action = "service.restart", args = { unit = "(cloudflared|vaultmesh-[a-z-]+)\\.service" } },
]"#,
        )
        .unwrap();
        let ok = |a: &str, args: serde_json::Value| p.check_command("ArchVault", a, &args);
        // What a form offers: each rule in order, its patterns as written.
        assert_eq!(
            p.allowed("ArchVault"),
            [
                Allowed {
                    action: "agent.ping".into(),
                    args: BTreeMap::new()
                },
                Allowed {
                    action: "service.restart".into(),
                    args: [(
                        "unit".to_string(),
                        "(cloudflared|vaultmesh-[a-z-]+)\\.service".to_string()
                    )]
                    .into()
                },
            ]
        );
        assert!(
            p.allowed("DebianVault").is_empty(),
            "no file, nothing allowed"
        );
        assert!(ok("agent.ping", json!({})).is_ok());
        assert!(ok("agent.ping", serde_json::Value::Null).is_ok());
        assert!(ok("service.restart", json!({"unit": "cloudflared.service"})).is_ok());
        assert!(
            ok("service.restart", json!({"unit": "sshd.service"}))
                .unwrap_err()
                .contains("args.unit does not match \"sshd.service\"")
        );
        assert!(
            ok(
                "service.restart",
                json!({"unit": "cloudflared.service; reboot"})
            )
            .is_err(),
            "patterns match in full"
        );
        assert!(
            ok(
                "service.restart",
                json!({"unit": "cloudflared.service", "force": "yes"})
            )
            .unwrap_err()
            .contains("does not allow argument \"force\"")
        );
        assert!(ok("agent.ping", json!({"x": "y"})).is_err());
        assert!(
            ok("service.stop", json!({}))
                .unwrap_err()
                .contains("no commands.allow rule for action \"service.stop\"")
        );
        assert!(
            p.check_command("DebianVault", "agent.ping", &json!({}))
                .unwrap_err()
                .contains("DebianVault.toml")
        );
    }

    #[test]
    fn bad_policy_files_name_file_and_key() {
        let e = policies(
            "[commands]\nallow = [{ action = \"service.status\", args = { unit = \"(\" } }]",
        )
        .unwrap_err();
        assert!(
            e.contains("ArchVault.toml: commands.allow[0].args.unit"),
            "{e}"
        );
        let e = policies("[commands]\nalow = []").unwrap_err();
        assert!(e.contains("unknown field `alow`"), "{e}");
        let e = policies("[commands]\nallow = [{ action = \"servce.restart\" }]").unwrap_err();
        assert!(
            e.contains("ArchVault.toml: commands.allow[0].action: no action \"servce.restart\"; did you mean \"service.restart\"?; actions: agent.ping, checks.run, scan.sovereign, service.restart, service.status"),
            "{e}"
        );
    }

    #[test]
    fn a_shipped_profile_in_another_case_is_not_a_policy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("archvault.toml"), "").unwrap();
        let e = Policies::load(Some(dir.path())).unwrap_err();
        assert!(
            e.ends_with("archvault.toml: \"archvault\" is not a profile: the file name is the profile nodes report, and its case matters; did you mean \"ArchVault\"? (rename it ArchVault.toml)"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("LabVault.toml"), "").unwrap();
        std::fs::write(dir.path().join("labvault.toml"), "").unwrap();
        let e = Policies::load(Some(dir.path())).unwrap_err();
        assert!(e.contains("differ only in case"), "{e}");
        std::fs::remove_file(dir.path().join("labvault.toml")).unwrap();
        let p = Policies::load(Some(dir.path())).unwrap();
        assert_eq!(
            p.known_profiles(),
            ["ArchVault", "DebianVault", "Generic", "LabVault"]
        );
    }
}
