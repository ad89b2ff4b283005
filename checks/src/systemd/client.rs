//! A small read-only client for systemd's D-Bus API (`org.freedesktop.systemd1`).
//!
//! Only what the checks need: expand globs with `ListUnitsByPatterns`; read the states of many
//! units in one `ListUnitsByNames` (systemd 230 and later; it loads each unit as `LoadUnit`
//! does, so a unit that does not exist comes back with `LoadState = "not-found"`), then their
//! timestamps and restart counts, all asked at once; or one unit at a time: `LoadUnit`, one
//! `GetAll` and, for a service, `Get(NRestarts)`. Every call has a timeout, so a wedged bus
//! yields an error, never a hang.
//!
//! [`SystemdClient::watch`] subscribes to systemd's signals: from then on systemd says when a
//! unit's properties change (`PropertiesChanged` on the unit's object), and a unit whose row in
//! `ListUnitsByNames` is as it was and that systemd has not signalled keeps the timestamps and
//! restart count read before (see [`Known`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::fdo::PropertiesProxy;
use zbus::message::Type;
use zbus::names::InterfaceName;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant};

const SERVICE: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    /// Resolves (loading if needed) a unit by name.
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// One row per name, in order, loading each unit as `LoadUnit` does (systemd 230 and
    /// later).
    fn list_units_by_names(&self, names: &[&str]) -> zbus::Result<Vec<UnitRow>>;

    /// Asks systemd to send this client its signals (unit and job changes) until the client
    /// leaves the bus.
    fn subscribe(&self) -> zbus::Result<()>;

    /// Queues a restart job; returns the job's path.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    /// Loaded units whose names match any of `patterns`.
    fn list_units_by_patterns(
        &self,
        states: &[&str],
        patterns: &[&str],
    ) -> zbus::Result<Vec<UnitRow>>;
}

/// A row of `ListUnits*`: (name, description, load state, active state, sub state, following,
/// path, job id, job type, job path).
type UnitRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

/// What `ListUnitsByNames` answered.
#[derive(Debug)]
pub enum ByNames {
    /// The units' states, in the order asked.
    Units(Vec<UnitState>),
    /// systemd does not have the method (older than 230): ask unit by unit from now on.
    Unsupported,
    /// systemd refused this call (e.g. a name it cannot load): ask unit by unit this time,
    /// where the same refusal names the unit.
    Refused,
}

/// Why talking to systemd failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemdError {
    #[error("cannot connect to the system bus{}: {reason}", at.as_deref().map(|a| format!(" at {a}")).unwrap_or_default())]
    Connect { at: Option<String>, reason: String },
    #[error("D-Bus call {call} timed out after {}", vaultmesh_process::duration::format(*timeout))]
    Timeout { call: String, timeout: Duration },
    #[error("D-Bus call {call} failed: {reason}")]
    Call { call: String, reason: String },
}

/// The state of one unit, as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitState {
    pub name: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    /// When the unit last entered `active`, in µs since the epoch (0 = never).
    pub active_enter_us: u64,
    /// When the unit last entered `inactive`/`failed`, in µs since the epoch (0 = never).
    pub inactive_enter_us: u64,
    /// Restarts since the unit was last started by hand (services only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
}

/// systemd's word that units changed, from the moment [`SystemdClient::watch`] subscribed: the
/// object paths of the units whose properties changed since the last [`Changes::take`]. The
/// signals are drained by a task of their own (a D-Bus stream left unread would stall the
/// connection), stopped when this is dropped.
#[derive(Debug)]
pub struct Changes {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Seen {
    paths: HashSet<String>,
    /// The watch no longer hears everything: the connection closed, a signal could not be
    /// read, or `org.freedesktop.systemd1` changed hands (a systemd that restarted has
    /// forgotten the subscription).
    lost: bool,
}

impl Changes {
    /// The object paths of the units that changed since the last call; `None` once the watch
    /// is lost, after which nothing read before may be trusted.
    pub fn take(&self) -> Option<HashSet<String>> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.lost {
            None
        } else {
            Some(std::mem::take(&mut seen.paths))
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watched connection read of each unit, kept between runs: by name, the unit's object
/// path and state.
#[derive(Debug, Default)]
pub struct Known(HashMap<String, (String, UnitState)>);

impl Known {
    /// What was read of `name` before, if it may stand: the unit's row (`row`: load, active and
    /// sub state, as `ListUnitsByNames` answers now) and object path are as they were, and
    /// systemd has not signalled a change on that path. A service that restarted between two
    /// runs is `active` at both, with a new timestamp and restart count: the signal is what
    /// tells.
    fn reusable(
        &self,
        name: &str,
        path: &str,
        row: &UnitState,
        changed: &HashSet<String>,
    ) -> Option<UnitState> {
        let (was_path, was) = self.0.get(name)?;
        (was_path == path
            && !changed.contains(path)
            && was.load_state == row.load_state
            && was.active_state == row.active_state
            && was.sub_state == row.sub_state)
            .then(|| was.clone())
    }
}

/// A connection to systemd on the system bus (or an explicit address).
#[derive(Debug, Clone)]
pub struct SystemdClient {
    conn: Connection,
    timeout: Duration,
}

impl SystemdClient {
    /// Connects to `address`, or to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the default
    /// socket) when `None`.
    pub async fn connect(address: Option<&str>, timeout: Duration) -> Result<Self, SystemdError> {
        let builder = match address {
            Some(a) => zbus::connection::Builder::address(a),
            None => zbus::connection::Builder::system(),
        };
        let at = address
            .map(str::to_string)
            .or_else(|| std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok())
            .or_else(|| Some("unix:path=/run/dbus/system_bus_socket".into()));
        let build = builder.method_timeout(timeout).build();
        match tokio::time::timeout(timeout, build).await {
            Ok(Ok(conn)) => Ok(SystemdClient { conn, timeout }),
            Ok(Err(e)) => Err(SystemdError::Connect {
                at,
                reason: e.to_string(),
            }),
            Err(_) => Err(SystemdError::Connect {
                at,
                reason: "timed out".into(),
            }),
        }
    }

    async fn call<T, E: Into<zbus::Error>>(
        &self,
        call: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, SystemdError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| self.error(call, e.into())),
            Err(_) => Err(self.timed_out(call)),
        }
    }

    fn timed_out(&self, call: &str) -> SystemdError {
        SystemdError::Timeout {
            call: call.into(),
            timeout: self.timeout,
        }
    }

    fn error(&self, call: &str, e: zbus::Error) -> SystemdError {
        match e {
            zbus::Error::InputOutput(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.timed_out(call)
            }
            e => SystemdError::Call {
                call: call.into(),
                reason: e.to_string(),
            },
        }
    }

    async fn manager(&self) -> Result<ManagerProxy<'_>, SystemdError> {
        let build = ManagerProxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build();
        self.call("Manager", build).await
    }

    /// Names of loaded units matching any of the glob `patterns`, sorted.
    pub async fn list_by_patterns(&self, patterns: &[&str]) -> Result<Vec<String>, SystemdError> {
        let manager = self.manager().await?;
        let units = self
            .call(
                "ListUnitsByPatterns",
                manager.list_units_by_patterns(&[], patterns),
            )
            .await?;
        let mut names: Vec<String> = units.into_iter().map(|u| u.0).collect();
        vaultmesh_agent_core::sort::sort(&mut names);
        names.dedup();
        Ok(names)
    }

    /// Subscribes to systemd's signals and starts hearing which units change; `None` when
    /// systemd (or the bus's policy) refuses the subscription, and every run then reads every
    /// unit. The match rules are in place before `Subscribe` is sent, so no change after it
    /// is missed.
    pub async fn watch(&self) -> Result<Option<Changes>, SystemdError> {
        let (changed, owner) = rules().map_err(|e| self.error("AddMatch", e))?;
        let changed = self
            .call(
                "AddMatch",
                MessageStream::for_match_rule(changed, &self.conn, None),
            )
            .await?;
        let owner = self
            .call(
                "AddMatch",
                MessageStream::for_match_rule(owner, &self.conn, None),
            )
            .await?;
        let manager = self.manager().await?;
        match tokio::time::timeout(self.timeout, manager.subscribe()).await {
            Err(_) => return Err(self.timed_out("Subscribe")),
            Ok(Err(e)) => {
                return match refusal(&e) {
                    Some(_) => Ok(None),
                    None => Err(self.error("Subscribe", e)),
                };
            }
            Ok(Ok(())) => {}
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(listen(changed, owner, Arc::clone(&seen)));
        Ok(Some(Changes { seen, task }))
    }

    /// Restarts `name` (mode `replace`); returns the job path.
    pub async fn restart_unit(&self, name: &str) -> Result<String, SystemdError> {
        let manager = self.manager().await?;
        let job = self
            .call("RestartUnit", manager.restart_unit(name, "replace"))
            .await?;
        Ok(job.to_string())
    }

    /// The states of `names` (in that order) with one `ListUnitsByNames`, then each found
    /// unit's timestamps (`GetAll`) and, for a loaded service, `NRestarts`, all asked at once.
    /// The same [`UnitState`]s as [`Self::unit_state`] for each name, in 1 + 2n calls on one
    /// round trip each instead of 3n one after the other.
    ///
    /// `watched`, on a connection that [watches](Self::watch): what was read before and the
    /// paths systemd signalled since. A unit [`Known::reusable`] is not asked again, and
    /// what is read is kept for the next run; a call that fails or is refused leaves nothing
    /// known (the signals taken for this run would otherwise be lost to the next).
    pub async fn unit_states(
        &self,
        names: &[&str],
        watched: Option<(&mut Known, &HashSet<String>)>,
    ) -> Result<ByNames, SystemdError> {
        const CALL: &str = "ListUnitsByNames";
        let (known, previous, changed) = match watched {
            Some((known, changed)) => {
                let previous = std::mem::take(known);
                (Some(known), previous, Some(changed))
            }
            None => (None, Known::default(), None),
        };
        let manager = self.manager().await?;
        let asked = tokio::time::timeout(self.timeout, manager.list_units_by_names(names)).await;
        let rows = match asked {
            Err(_) => return Err(self.timed_out(CALL)),
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                return match refusal(&e) {
                    Some(true) => Ok(ByNames::Unsupported),
                    Some(false) => Ok(ByNames::Refused),
                    None => Err(self.error(CALL, e)),
                };
            }
        };
        // One row per name, in order: systemd names the row by the unit's id, which for an
        // alias is not the name asked.
        if rows.len() != names.len() {
            return Ok(ByNames::Refused);
        }
        let rows: Vec<(UnitState, OwnedObjectPath)> = names
            .iter()
            .zip(rows)
            .map(|(name, row)| {
                let (_, _, load_state, active_state, sub_state, _, path, ..) = row;
                let state = UnitState {
                    name: (*name).to_string(),
                    load_state,
                    active_state,
                    sub_state,
                    active_enter_us: 0,
                    inactive_enter_us: 0,
                    restarts: None,
                };
                (state, path)
            })
            .collect();
        let reused: Vec<Option<UnitState>> = rows
            .iter()
            .map(|(row, path)| previous.reusable(&row.name, path.as_str(), row, changed?))
            .collect();
        let reads = rows
            .iter()
            .zip(reused)
            .map(|((row, path), reused)| async move {
                if let Some(state) = reused {
                    return Ok::<_, SystemdError>(state);
                }
                let mut state = row.clone();
                if state.load_state == "not-found" {
                    return Ok(state);
                }
                let props = self.properties(path.clone()).await?;
                let service = state.name.ends_with(".service") && state.load_state == "loaded";
                let (all, restarts) = futures_util::future::join(
                    self.call("GetAll(Unit)", props.get_all(unit_iface())),
                    async {
                        if service {
                            self.restarts(&props).await
                        } else {
                            None
                        }
                    },
                )
                .await;
                let all = all?;
                state.active_enter_us = number(&all, "ActiveEnterTimestamp");
                state.inactive_enter_us = number(&all, "InactiveEnterTimestamp");
                state.restarts = restarts;
                Ok(state)
            });
        let units = futures_util::future::try_join_all(reads).await?;
        if let Some(known) = known {
            known.0 = rows
                .into_iter()
                .zip(&units)
                .map(|((_, path), state)| (state.name.clone(), (path.to_string(), state.clone())))
                .collect();
        }
        Ok(ByNames::Units(units))
    }

    async fn properties(&self, path: OwnedObjectPath) -> Result<PropertiesProxy<'_>, SystemdError> {
        let props = PropertiesProxy::builder(&self.conn)
            .destination(SERVICE)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build();
        self.call("Properties", props).await
    }

    /// A service's `NRestarts`; older systemd has none, and its absence is not an error.
    async fn restarts(&self, props: &PropertiesProxy<'_>) -> Option<u32> {
        let service_iface = InterfaceName::from_static_str_unchecked(SERVICE_IFACE);
        self.call("Get(NRestarts)", props.get(service_iface, "NRestarts"))
            .await
            .ok()
            .and_then(|v| u32::try_from(v).ok())
    }

    /// The state of `name` (a unit that does not exist has `load_state = "not-found"`).
    pub async fn unit_state(&self, name: &str) -> Result<UnitState, SystemdError> {
        let manager = self.manager().await?;
        let path = self.call("LoadUnit", manager.load_unit(name)).await?;
        let props = self.properties(path).await?;
        let all = self
            .call("GetAll(Unit)", props.get_all(unit_iface()))
            .await?;
        let mut state = UnitState {
            name: name.to_string(),
            load_state: string(&all, "LoadState"),
            active_state: string(&all, "ActiveState"),
            sub_state: string(&all, "SubState"),
            active_enter_us: number(&all, "ActiveEnterTimestamp"),
            inactive_enter_us: number(&all, "InactiveEnterTimestamp"),
            restarts: None,
        };
        if name.ends_with(".service") && state.load_state == "loaded" {
            state.restarts = self.restarts(&props).await;
        }
        Ok(state)
    }
}

/// The match rules of [`SystemdClient::watch`]: systemd's `PropertiesChanged` on any unit's
/// object, and the bus's `NameOwnerChanged` for systemd's name.
fn rules() -> zbus::Result<(MatchRule<'static>, MatchRule<'static>)> {
    let changed = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(SERVICE)
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .path_namespace("/org/freedesktop/systemd1/unit")
        .build()?;
    let owner = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .add_arg(SERVICE)
        .build()?;
    Ok((changed, owner))
}

/// Notes the path of every unit systemd signals a change on, until the watch is lost: the
/// connection closes, a signal cannot be read, or systemd's name changes hands.
async fn listen(changed: MessageStream, owner: MessageStream, seen: Arc<Mutex<Seen>>) {
    enum Heard {
        Changed(zbus::Result<zbus::Message>),
        Owner,
    }
    let mut heard =
        futures_util::stream::select(changed.map(Heard::Changed), owner.map(|_| Heard::Owner));
    while let Some(Heard::Changed(Ok(msg))) = heard.next().await {
        if let Some(path) = msg.header().path() {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.paths.insert(path.to_string());
        }
    }
    seen.lock().unwrap_or_else(|p| p.into_inner()).lost = true;
}

/// Whether `e` is an error reply to the call (`Some(true)`: the method does not exist), rather
/// than the bus failing (`None`: no reply, a timeout, a lost connection).
fn refusal(e: &zbus::Error) -> Option<bool> {
    use zbus::fdo::Error as Fdo;
    match e {
        zbus::Error::MethodError(name, ..) => {
            Some(name.as_str() == "org.freedesktop.DBus.Error.UnknownMethod")
        }
        zbus::Error::FDO(e) => match **e {
            Fdo::UnknownMethod(_) => Some(true),
            Fdo::ZBus(_)
            | Fdo::NoReply(_)
            | Fdo::Timeout(_)
            | Fdo::IOError(_)
            | Fdo::Disconnected(_)
            | Fdo::NoMemory(_)
            | Fdo::LimitsExceeded(_) => None,
            _ => Some(false),
        },
        _ => None,
    }
}

fn unit_iface() -> InterfaceName<'static> {
    InterfaceName::from_static_str_unchecked(UNIT_IFACE)
}

fn string(all: &HashMap<String, OwnedVariant>, key: &str) -> String {
    all.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| String::try_from(v).ok())
        .unwrap_or_default()
}

fn number(all: &HashMap<String, OwnedVariant>, key: &str) -> u64 {
    all.get(key)
        .and_then(|v| v.try_clone().ok())
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}
