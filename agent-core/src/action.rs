//! Command actions: typed operations a signed command may ask for (`agent.ping`,
//! `service.restart`, ...). Like checks, each registers itself with `inventory::submit!` from
//! the crate that implements it; the agent runs only actions that are registered *and* in its
//! own `[commands] allow` list. There is no shell.
//!
//! An action's arguments come from the Command Center, which a node does not trust: each action
//! reads them into its own typed struct that refuses unknown members
//! (`#[serde(deny_unknown_fields)]`, through [`parse_args`]) and checks them against this
//! node's configuration in [`ActionRegistration::prepare`], before anything runs. A refusal
//! there is a signed `rejected` receipt. Nothing that decides where the agent connects, which
//! file it reads or which program runs comes from an argument: such settings live in the
//! agent's own configuration (`[commands.service]`, [`ServiceSettings`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use vaultmesh_proto::command::ReceiptStatus;

use crate::check::CheckContext;
use crate::registry::ConfiguredCheck;

/// What an action may use.
#[derive(Debug, Clone)]
pub struct ActionContext {
    pub check_ctx: CheckContext,
    /// The agent's configured checks (for `checks.run`).
    pub checks: Arc<Vec<ConfiguredCheck>>,
    /// `[commands.service]`: this node's own settings for the service actions.
    pub service: Arc<ServiceSettings>,
}

/// `[commands.service]`: local settings of `service.status` and `service.restart`. They are
/// the node's, never a command's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Units `service.restart` may restart: unit names, or patterns with `*` and `?`
    /// (`vaultmesh-*.service`). Empty (the default): none.
    #[serde(default)]
    pub restart_units: Vec<String>,
    /// systemd's D-Bus address for both service actions; unset, `DBUS_SYSTEM_BUS_ADDRESS` or
    /// the system bus.
    #[serde(default)]
    pub bus_address: Option<String>,
}

/// A name from a command, quoted and cut to 64 characters, for a receipt's reason.
pub fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// The longest unit name (or pattern) an action or `[commands.service]` takes.
pub const UNIT_NAME_MAX: usize = 256;

/// Whether `unit` is a systemd unit name: 1–256 bytes of `A-Z a-z 0-9 - _ . @ : \`.
pub fn is_unit_name(unit: &str) -> bool {
    unit_chars_ok(unit, b"")
}

fn unit_chars_ok(unit: &str, extra: &[u8]) -> bool {
    !unit.is_empty()
        && unit.len() <= UNIT_NAME_MAX
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:\\".contains(&b) || extra.contains(&b))
}

impl ServiceSettings {
    /// Problems as (key under `commands.service`, reason). `allowed` is `[commands] allow`.
    pub fn problems(&self, allowed: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, u) in self.restart_units.iter().enumerate() {
            if !unit_chars_ok(u, b"*?") {
                out.push((
                    format!("restart_units[{i}]"),
                    format!(
                        "{u:?} is not a unit name or pattern (1-{UNIT_NAME_MAX} bytes of A-Z a-z 0-9 - _ . @ : \\ * ?)"
                    ),
                ));
            }
        }
        if self.restart_units.is_empty() && allowed.iter().any(|a| a == "service.restart") {
            out.push((
                "restart_units".into(),
                "is empty, so service.restart (in commands.allow) could restart nothing: list the units it may restart".into(),
            ));
        }
        if let Some(a) = &self.bus_address
            && (a.trim().is_empty() || a.chars().any(char::is_control))
        {
            out.push(("bus_address".into(), "must be a D-Bus address".into()));
        }
        out
    }
}

/// An action's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOutcome {
    /// `Ok` or `Failed` (the runner produces `Rejected` and `Timeout` itself).
    pub status: ReceiptStatus,
    pub exit_code: Option<i32>,
    pub output: String,
    pub reason: Option<String>,
}

impl ActionOutcome {
    pub fn ok(output: impl Into<String>) -> Self {
        ActionOutcome {
            status: ReceiptStatus::Ok,
            exit_code: Some(0),
            output: output.into(),
            reason: None,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        ActionOutcome {
            status: ReceiptStatus::Failed,
            exit_code: Some(1),
            output: String::new(),
            reason: Some(reason),
        }
    }
}

/// The future an action returns.
pub type ActionFuture = Pin<Box<dyn Future<Output = ActionOutcome> + Send>>;

/// Why an action refused a command's arguments: the command is rejected and nothing runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgsError(pub String);

/// Reads a command's arguments into `T`, which must be a struct with
/// `#[serde(deny_unknown_fields)]` (every registered action is tested with an unknown member).
/// Arguments are a JSON object; anything else is refused.
pub fn parse_args<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, ArgsError> {
    if !args.is_object() {
        return Err(ArgsError(format!(
            "bad arguments: must be a JSON object, not {}",
            json_kind(&args)
        )));
    }
    // serde names an unknown member in its message: keep a hostile one short.
    serde_json::from_value(args).map_err(|e| {
        let text = e.to_string();
        let text = &text[..text.floor_char_boundary(ARGS_ERROR_MAX)];
        ArgsError(format!("bad arguments: {text}"))
    })
}

/// Longest message [`parse_args`] returns, in bytes.
const ARGS_ERROR_MAX: usize = 256;

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// An action's entry in the registry.
#[derive(Debug)]
pub struct ActionRegistration {
    pub name: &'static str,
    pub description: &'static str,
    /// The arguments, as `vaultmesh-node-agent actions` and COMMANDS.md show them
    /// (`{unit: string}`, or `{}` for none).
    pub args: &'static str,
    /// Longest the action may run before the receipt says `timeout`
    /// ([`crate::commands::ACTION_TIMEOUT`] suits most).
    pub timeout: std::time::Duration,
    /// Reads the arguments ([`parse_args`]) and checks them against this node's configuration;
    /// returns the future that runs the action, or why the command is refused. It must not act:
    /// the runner records the command (fsync) between `prepare` and running the future.
    pub prepare: fn(&ActionContext, serde_json::Value) -> Result<ActionFuture, ArgsError>,
}

inventory::collect!(ActionRegistration);

/// Every registered action, sorted by name.
pub fn all() -> Vec<&'static ActionRegistration> {
    let mut v: Vec<_> = inventory::iter::<ActionRegistration>.into_iter().collect();
    crate::sort::sort_by_key(&mut v, |a| a.name);
    v
}

pub fn find(name: &str) -> Option<&'static ActionRegistration> {
    inventory::iter::<ActionRegistration>
        .into_iter()
        .find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Unit {
        #[allow(dead_code)]
        unit: String,
    }

    #[test]
    fn arguments_are_an_object_of_known_members() {
        let cases: &[(serde_json::Value, Option<&str>)] = &[
            (serde_json::json!({"unit": "a.service"}), None),
            (
                serde_json::json!({"unit": "a.service", "bus_address": "tcp:host=x"}),
                Some("unknown field `bus_address`, expected `unit`"),
            ),
            (
                serde_json::json!(["a.service"]),
                Some("bad arguments: must be a JSON object, not an array"),
            ),
            (
                serde_json::Value::Null,
                Some("bad arguments: must be a JSON object, not null"),
            ),
            (serde_json::json!({}), Some("missing field `unit`")),
            (
                serde_json::json!({"unit": 3}),
                Some("invalid type: integer"),
            ),
        ];
        for (args, want) in cases {
            let got = parse_args::<Unit>(args.clone()).err().map(|e| e.0);
            match want {
                None => assert_eq!(got, None, "{args}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{args}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_hostile_member_name_is_not_echoed_whole() {
        let mut args = serde_json::Map::new();
        args.insert("unit".into(), "a.service".into());
        args.insert("é".repeat(10_000), 1.into());
        let err = parse_args::<Unit>(serde_json::Value::Object(args)).unwrap_err();
        assert!(
            err.0.starts_with("bad arguments: unknown field `éé"),
            "{err}"
        );
        assert!(
            err.0.len() <= "bad arguments: ".len() + ARGS_ERROR_MAX,
            "{} bytes",
            err.0.len()
        );
    }

    #[test]
    fn service_settings_name_every_problem() {
        let s = ServiceSettings {
            restart_units: vec![
                "cloudflared.service".into(),
                "vaultmesh-*.service".into(),
                "../x".into(),
                String::new(),
            ],
            bus_address: Some(" ".into()),
        };
        let keys: Vec<String> = s.problems(&[]).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["restart_units[2]", "restart_units[3]", "bus_address"]
        );
        let empty = ServiceSettings::default();
        assert!(empty.problems(&["service.status".into()]).is_empty());
        assert_eq!(
            empty.problems(&["service.restart".into()])[0].0,
            "restart_units"
        );
    }

    #[test]
    fn unit_names() {
        assert!(is_unit_name("getty@tty1.service"));
        assert!(is_unit_name("dev-disk-by\\x2duuid.device"));
        for bad in [
            "",
            "a/b.service",
            "a b.service",
            "a*.service",
            &"a".repeat(257),
        ] {
            assert!(!is_unit_name(bad), "{bad:?}");
        }
    }
}
