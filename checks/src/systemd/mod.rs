//! `systemd`: are the units this node must run in the state they should be?
//!
//! Talks to systemd over D-Bus (never a `systemctl` subprocess). Unit names may be globs
//! (`vaultmesh-*.service`), expanded against the loaded units with `ListUnitsByPatterns`. The
//! states of all the units come from one `ListUnitsByNames`; a systemd without it (before 230)
//! is asked unit by unit (`LoadUnit`), as is one that refuses the call. The connection is kept
//! between runs and subscribed to systemd's signals: when systemd has signalled none of the
//! units since they were last read, and they were read in full within `reread_every`, a run
//! reports them as read without a call; otherwise a unit not signalled whose state is as it
//! was is not asked for its timestamps and restart count again.
//! Each unit is expected `active` unless `[checks.systemd.expect]` says `inactive`.
//!
//! Verdict per unit: not found, failed, or not in its expected state → crit (the unit is named
//! in the summary); activating, reloading or deactivating → warn. A glob that matches nothing is
//! crit. No bus at all (a container) → unknown with the reason. The heartbeat's `services_ok` is
//! `false` when the verdict is crit, `true` when it is ok or warn, and left at its default
//! (`true`) when it is unknown: not reaching systemd is not "services down", and the Command
//! Center reads the check's `unknown` as an ATTN "cannot reach systemd" instead.

pub mod client;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_proto::CheckStatus;

pub use client::{ByNames, SystemdClient, SystemdError, UnitState};
use client::{Changed, Changes, Known, Watched};

/// The state a unit should be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Active,
    Inactive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SystemdConfig {
    /// Units to watch; `*`, `?` and `[...]` globs expand against loaded units.
    units: Vec<String>,
    /// Per-unit expectation (`active` unless listed here).
    expect: BTreeMap<String, Expect>,
    /// D-Bus address to use instead of the system bus (`DBUS_SYSTEM_BUS_ADDRESS` also works).
    bus_address: Option<String>,
    /// Timeout of each D-Bus call.
    #[serde(deserialize_with = "vaultmesh_process::duration::deserialize")]
    call_timeout: Duration,
    /// Between two reads of every unit in full, a unit systemd has not signalled is reported
    /// as it was read; the first run after this long reads every unit again (see the module's
    /// doc).
    #[serde(deserialize_with = "vaultmesh_process::duration::deserialize")]
    reread_every: Duration,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        SystemdConfig {
            units: Vec::new(),
            expect: BTreeMap::new(),
            bus_address: None,
            call_timeout: Duration::from_secs(2),
            reread_every: Duration::from_secs(300),
        }
    }
}

#[derive(Debug)]
struct Systemd {
    units: Vec<String>,
    expect: BTreeMap<String, Expect>,
    bus_address: Option<String>,
    call_timeout: Duration,
    reread_every: Duration,
    /// The bus connection, kept between runs (a new one costs a socket, SASL and `Hello` each
    /// time) with its subscription; dropped after any error, or once the subscription is lost,
    /// so the next run reconnects.
    conn: tokio::sync::Mutex<Option<Session>>,
    /// Cleared when systemd answers `ListUnitsByNames` with `UnknownMethod` (before 230): from
    /// then on units are asked one at a time.
    by_names: AtomicBool,
}

/// A connection to systemd kept between runs.
#[derive(Debug)]
struct Session {
    client: SystemdClient,
    /// The units systemd signalled since the last run; `None` without a subscription (every
    /// run then reads every unit).
    changes: Option<Changes>,
    /// When the subscription was last tried.
    watched_at: Instant,
    /// What the last run read, for units systemd has not signalled since.
    known: Known,
}

/// Whether a unit name is a glob for `ListUnitsByPatterns`.
pub fn is_glob(name: &str) -> bool {
    name.contains(['*', '?', '['])
}

impl Systemd {
    fn new(c: SystemdConfig) -> Result<Self, CheckConfigError> {
        for (i, u) in c.units.iter().enumerate() {
            if u.trim().is_empty()
                || u.len() > 256
                || u.chars().any(|ch| ch.is_control() || ch == '/')
            {
                return Err(CheckConfigError::new(
                    format!("units[{i}]"),
                    format!("{u:?} is not a unit name"),
                ));
            }
        }
        for name in c.expect.keys() {
            if !c.units.iter().any(|u| u == name)
                && !c.units.iter().any(|u| is_glob(u) && glob_match(u, name))
            {
                return Err(CheckConfigError::new(
                    format!("expect.{name}"),
                    "names a unit that is not in `units`",
                ));
            }
        }
        if c.call_timeout < Duration::from_millis(10) || c.call_timeout > Duration::from_secs(60) {
            return Err(CheckConfigError::new(
                "call_timeout",
                "must be between 10ms and 60s",
            ));
        }
        if c.reread_every < Duration::from_secs(1) || c.reread_every > Duration::from_secs(86_400) {
            return Err(CheckConfigError::new(
                "reread_every",
                "must be between 1s and 24h",
            ));
        }
        Ok(Systemd {
            units: c.units,
            expect: c.expect,
            bus_address: c.bus_address,
            call_timeout: c.call_timeout,
            reread_every: c.reread_every,
            conn: tokio::sync::Mutex::new(None),
            by_names: AtomicBool::new(true),
        })
    }

    async fn inspect(&self) -> Result<Inspection, SystemdError> {
        let mut cached = self.conn.lock().await;
        if let Some(mut session) = cached.take() {
            // A lost watch (systemd's name changed hands, so the subscription may not have
            // carried over; the connection closed; a signal could not be read) goes with its
            // connection: a new one subscribes again.
            let changed = session.changes.as_ref().map(Changes::take);
            if !matches!(changed, Some(None)) {
                let mut changed = changed.flatten();
                if session.changes.is_none() && session.watched_at.elapsed() >= self.reread_every {
                    session.watched_at = Instant::now();
                    session.changes = self.watch(&session.client).await?;
                }
                if session.changes.is_none() {
                    changed = None;
                }
                match self.inspect_with(&mut session, changed.as_ref()).await {
                    Ok(i) => {
                        self.keep(&mut cached, session);
                        return Ok(i);
                    }
                    // A hung bus would hang a new connection too.
                    Err(e @ SystemdError::Timeout { .. }) => return Err(e),
                    // The bus may have restarted: try once more on a new connection.
                    Err(_) => {}
                }
            }
        }
        let client = SystemdClient::connect(self.bus_address.as_deref(), self.call_timeout).await?;
        let changes = self.watch(&client).await?;
        let mut session = Session {
            client,
            changes,
            watched_at: Instant::now(),
            known: Known::default(),
        };
        let inspection = self.inspect_with(&mut session, None).await;
        if inspection.is_ok() {
            self.keep(&mut cached, session);
        }
        inspection
    }

    /// Keeps `session` for the next run; without its subscription once units are asked one at
    /// a time (nothing read is reused then, and systemd would broadcast for nobody).
    fn keep(&self, cached: &mut Option<Session>, mut session: Session) {
        if !self.by_names.load(Ordering::Relaxed) {
            session.changes = None;
        }
        *cached = Some(session);
    }

    /// Subscribes `client` to systemd's signals, when they can serve: not when units are asked
    /// one at a time (nothing read is reused then). A subscription systemd refuses or that
    /// fails otherwise costs this run nothing: the units are read in full, and the
    /// subscription is tried again after `reread_every`. A timeout is the run's error: a
    /// systemd that does not answer `Subscribe` will not answer the reads either.
    async fn watch(&self, client: &SystemdClient) -> Result<Option<Changes>, SystemdError> {
        if !self.by_names.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match client.watch().await {
            Ok(Some(changes)) => Ok(Some(changes)),
            Ok(None) => {
                tracing::debug!("systemd refused Subscribe; every run reads every unit.");
                Ok(None)
            }
            Err(e @ SystemdError::Timeout { .. }) => Err(e),
            Err(e) => {
                tracing::debug!(
                    "no subscription to systemd's signals ({e}); every run reads every unit."
                );
                Ok(None)
            }
        }
    }

    /// One run's reads on `session`. `changed`: the units systemd signalled since the last
    /// run, when it is watched and the watch holds; `None` reads every unit.
    async fn inspect_with(
        &self,
        session: &mut Session,
        changed: Option<&Changed>,
    ) -> Result<Inspection, SystemdError> {
        if changed.is_none() {
            session.known = Known::default();
        }
        let client = &session.client;
        let mut names: Vec<String> = Vec::new();
        let mut empty_globs = Vec::new();
        for u in &self.units {
            if is_glob(u) {
                let matched = client.list_by_patterns(&[u.as_str()]).await?;
                if matched.is_empty() {
                    empty_globs.push(u.clone());
                }
                names.extend(matched);
            } else {
                names.push(u.clone());
            }
        }
        vaultmesh_agent_core::sort::sort(&mut names);
        names.dedup();
        let none = Changed::default();
        let watched = session.changes.is_some().then(|| Watched {
            known: &mut session.known,
            changed: changed.unwrap_or(&none),
            reread_every: self.reread_every,
        });
        let units = self.states(client, &names, watched).await?;
        Ok(Inspection { units, empty_globs })
    }

    /// The states of `names`: one `ListUnitsByNames` when systemd has it, else unit by unit.
    /// `watched`: what the last run read and the units systemd signalled since, on a watched
    /// connection (see [`SystemdClient::unit_states`]).
    async fn states(
        &self,
        client: &SystemdClient,
        names: &[String],
        watched: Option<Watched<'_>>,
    ) -> Result<Vec<UnitState>, SystemdError> {
        if names.is_empty() {
            // The signals taken for this run are not kept: nothing read before may stand.
            if let Some(w) = watched {
                *w.known = Known::default();
            }
            return Ok(Vec::new());
        }
        let mut watched = watched;
        if self.by_names.load(Ordering::Relaxed) {
            let asked: Vec<&str> = names.iter().map(String::as_str).collect();
            // A refusal leaves nothing known (see `unit_states`).
            match client.unit_states(&asked, watched.take()).await? {
                ByNames::Units(units) => return Ok(units),
                ByNames::Unsupported => {
                    tracing::info!(
                        "systemd has no ListUnitsByNames (older than 230); asking unit by unit."
                    );
                    self.by_names.store(false, Ordering::Relaxed);
                }
                ByNames::Refused => {}
            }
        }
        // Unit by unit, nothing read is kept for reuse.
        if let Some(w) = watched {
            *w.known = Known::default();
        }
        let mut units = Vec::with_capacity(names.len());
        for n in names {
            units.push(client.unit_state(n).await?);
        }
        Ok(units)
    }

    fn expectation(&self, unit: &str) -> Expect {
        self.expect.get(unit).copied().unwrap_or(Expect::Active)
    }

    fn evaluate(&self, inspection: &Inspection) -> CheckOutcome {
        let mut problems: Vec<(CheckStatus, String)> = Vec::new();
        for g in &inspection.empty_globs {
            problems.push((CheckStatus::Crit, format!("no unit matches {g}")));
        }
        let mut report = Vec::new();
        for u in &inspection.units {
            let expect = self.expectation(&u.name);
            let (status, why) = unit_verdict(u, expect);
            if let Some(why) = why {
                problems.push((status, why));
            }
            report.push(UnitReport {
                state: u.clone(),
                expect,
                status,
            });
        }
        let worst = problems
            .iter()
            .map(|p| p.0)
            .fold(CheckStatus::Ok, CheckStatus::worst);
        vaultmesh_agent_core::sort::sort_by_key(&mut problems, |p| {
            std::cmp::Reverse(p.0.severity())
        });
        let summary = if problems.is_empty() {
            let n = inspection.units.len();
            format!("{n} unit{} as expected", if n == 1 { "" } else { "s" })
        } else {
            problems
                .iter()
                .map(|p| p.1.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let count = |s: &str| {
            inspection
                .units
                .iter()
                .filter(|u| u.active_state == s)
                .count() as f64
        };
        let restarts: u32 = inspection.units.iter().filter_map(|u| u.restarts).sum();
        CheckOutcome::new(worst, summary)
            .with_metric("units", inspection.units.len() as f64)
            .with_metric("active", count("active"))
            .with_metric("failed", count("failed"))
            .with_metric("restarts", f64::from(restarts))
            .with_details(serde_json::to_value(Details { units: report }).unwrap_or_default())
            .contributing(services_ok(worst))
    }
}

/// `services_ok` for a verdict the check reached: false only when a unit is down (crit). A run
/// that could not reach systemd is `unknown` and contributes nothing: not reaching systemd is
/// not "services down", and the result's `unknown` tells the Command Center
/// (`Services::judge`).
fn services_ok(verdict: CheckStatus) -> Contribution {
    Contribution::services_ok(verdict != CheckStatus::Crit)
}

/// A unit's verdict against its expectation, with the reason when it is not ok.
pub(crate) fn unit_verdict(u: &UnitState, expect: Expect) -> (CheckStatus, Option<String>) {
    let name = &u.name;
    match u.load_state.as_str() {
        "not-found" => return (CheckStatus::Crit, Some(format!("{name} not found"))),
        "masked" if expect == Expect::Active => {
            return (CheckStatus::Crit, Some(format!("{name} is masked")));
        }
        "error" | "bad-setting" => {
            return (
                CheckStatus::Crit,
                Some(format!("{name} failed to load ({})", u.load_state)),
            );
        }
        _ => {}
    }
    let state = u.active_state.as_str();
    let sub = if u.sub_state.is_empty() {
        String::new()
    } else {
        format!(" ({})", u.sub_state)
    };
    match (state, expect) {
        ("active", Expect::Active) | ("inactive", Expect::Inactive) => (CheckStatus::Ok, None),
        ("failed", _) => (CheckStatus::Crit, Some(format!("{name} failed{sub}"))),
        ("activating" | "reloading" | "deactivating", _) => {
            (CheckStatus::Warn, Some(format!("{name} is {state}{sub}")))
        }
        (other, e) => {
            let want = if e == Expect::Active {
                "active"
            } else {
                "inactive"
            };
            (
                CheckStatus::Crit,
                Some(format!("{name} is {other}{sub}, expected {want}")),
            )
        }
    }
}

/// Shell-style glob match (`*`, `?`, `[abc]`), as systemd applies to unit names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

#[derive(Debug)]
struct Inspection {
    units: Vec<UnitState>,
    empty_globs: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UnitReport {
    #[serde(flatten)]
    state: UnitState,
    expect: Expect,
    status: CheckStatus,
}

#[derive(Debug, Serialize, Deserialize)]
struct Details {
    units: Vec<UnitReport>,
}

#[async_trait]
impl Check for Systemd {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        if self.units.is_empty() {
            return CheckOutcome::new(
                CheckStatus::Ok,
                "no units configured (set [checks.systemd] units)",
            )
            .with_metric("units", 0.0)
            .contributing(services_ok(CheckStatus::Ok));
        }
        match self.inspect().await {
            Ok(inspection) => self.evaluate(&inspection),
            Err(e) => CheckOutcome::unknown(e.to_string()),
        }
    }
}

inventory::submit! {
    CheckRegistration {
        name: "systemd",
        description: "systemd units over D-Bus: loaded and in their expected state (sets services_ok)",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(10),
        example: r#"units = []            # e.g. ["cloudflared.service", "vaultmesh-*.service"]
expect = {}           # e.g. { "backup.service" = "inactive" }; default "active"
call_timeout = "2s"   # per D-Bus call
reread_every = "5m"   # every unit read in full at least this often, signalled or not
# bus_address = "unix:path=/run/dbus/system_bus_socket"
"#,
        build: |t| Ok(Box::new(Systemd::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, load: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            name: name.into(),
            load_state: load.into(),
            active_state: active.into(),
            sub_state: sub.into(),
            active_enter_us: 0,
            inactive_enter_us: 0,
            restarts: None,
        }
    }

    #[test]
    fn unit_verdicts() {
        use CheckStatus::*;
        use Expect::*;
        let cases = [
            (
                unit("a.service", "loaded", "active", "running"),
                Active,
                Ok,
                None,
            ),
            (
                unit("a.service", "loaded", "inactive", "dead"),
                Inactive,
                Ok,
                None,
            ),
            (
                unit("a.service", "not-found", "inactive", "dead"),
                Active,
                Crit,
                Some("a.service not found"),
            ),
            (
                unit("a.service", "loaded", "failed", "failed"),
                Active,
                Crit,
                Some("a.service failed (failed)"),
            ),
            (
                unit("a.service", "loaded", "failed", "failed"),
                Inactive,
                Crit,
                Some("a.service failed (failed)"),
            ),
            (
                unit("a.service", "loaded", "activating", "start-pre"),
                Active,
                Warn,
                Some("a.service is activating (start-pre)"),
            ),
            (
                unit("a.service", "loaded", "reloading", "reload"),
                Active,
                Warn,
                Some("a.service is reloading (reload)"),
            ),
            (
                unit("a.service", "loaded", "inactive", "dead"),
                Active,
                Crit,
                Some("a.service is inactive (dead), expected active"),
            ),
            (
                unit("a.service", "loaded", "active", "running"),
                Inactive,
                Crit,
                Some("a.service is active (running), expected inactive"),
            ),
            (
                unit("a.service", "masked", "inactive", "dead"),
                Active,
                Crit,
                Some("a.service is masked"),
            ),
            (
                unit("a.service", "masked", "inactive", "dead"),
                Inactive,
                Ok,
                None,
            ),
            (
                unit("a.service", "bad-setting", "inactive", "dead"),
                Active,
                Crit,
                Some("a.service failed to load (bad-setting)"),
            ),
        ];
        for (u, expect, status, why) in cases {
            let (s, w) = unit_verdict(&u, expect);
            assert_eq!((s, w.as_deref()), (status, why), "{u:?} {expect:?}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "vaultmesh-*.service",
            "vaultmesh-node-agent.service"
        ));
        assert!(!glob_match(
            "vaultmesh-*.service",
            "vaultmesh-node-agent.timer"
        ));
        assert!(glob_match("a?c.service", "abc.service"));
        assert!(glob_match("[ab]x", "bx") && !glob_match("[ab]x", "cx"));
        assert!(is_glob("x*") && !is_glob("x.service"));
    }

    #[test]
    fn config_validation_names_the_key() {
        let t: toml::Table =
            toml::from_str("units = [\"a.service\"]\nexpect = { \"b.service\" = \"inactive\" }")
                .unwrap();
        assert_eq!(
            Systemd::new(parse_table(&t).unwrap()).unwrap_err().key,
            "expect.b.service"
        );
        let t: toml::Table = toml::from_str(
            "units = [\"vm-*.service\"]\nexpect = { \"vm-x.service\" = \"inactive\" }",
        )
        .unwrap();
        assert!(Systemd::new(parse_table(&t).unwrap()).is_ok());
        let t: toml::Table = toml::from_str("reread_every = \"500ms\"").unwrap();
        assert_eq!(
            Systemd::new(parse_table(&t).unwrap()).unwrap_err().key,
            "reread_every"
        );
        let t: toml::Table = toml::from_str("units = [\"\"]").unwrap();
        assert_eq!(
            Systemd::new(parse_table(&t).unwrap()).unwrap_err().key,
            "units[0]"
        );
        let t: toml::Table = toml::from_str("expect = { \"a\" = \"running\" }").unwrap();
        assert!(
            parse_table::<SystemdConfig>(&t)
                .unwrap_err()
                .key
                .starts_with("expect")
        );
    }

    #[test]
    fn summary_and_worst() {
        let s = Systemd::new(SystemdConfig {
            units: vec!["x".into()],
            ..SystemdConfig::default()
        })
        .unwrap();
        let out = s.evaluate(&Inspection {
            units: vec![
                unit("a.service", "loaded", "active", "running"),
                unit("b.service", "loaded", "activating", "start"),
                unit("c.service", "loaded", "failed", "failed"),
            ],
            empty_globs: vec!["vm-*.service".into()],
        });
        assert_eq!(out.status, CheckStatus::Crit);
        assert_eq!(
            out.summary,
            "no unit matches vm-*.service; c.service failed (failed); b.service is activating (start)"
        );
        assert_eq!(out.metrics["failed"], 1.0);
        let ok = s.evaluate(&Inspection {
            units: vec![unit("a.service", "loaded", "active", "running")],
            empty_globs: vec![],
        });
        assert_eq!(
            (ok.status, ok.summary.as_str()),
            (CheckStatus::Ok, "1 unit as expected")
        );
    }
}
