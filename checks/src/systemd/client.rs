//! A small client for systemd's D-Bus API (`org.freedesktop.systemd1`): it reads, and restarts
//! a unit only for the `service.restart` action.
//!
//! Only what the checks need: expand globs with `ListUnitsByPatterns`; read the states of many
//! units in one `ListUnitsByNames` (systemd 230 and later; it loads each unit as `LoadUnit`
//! does, so a unit that does not exist comes back with `LoadState = "not-found"`), then their
//! timestamps and restart counts, all asked at once; or one unit at a time: `LoadUnit`, one
//! `GetAll` and, for a service, `Get(NRestarts)`. Every call has a timeout, so a wedged bus
//! yields an error, never a hang.
//!
//! [`SystemdClient::watch`] subscribes to systemd's signals: from then on systemd says when a
//! unit's properties change (`PropertiesChanged` on the unit's object), when it loads or drops
//! a unit (`UnitNew`, `UnitRemoved`) and when it reloads (`Reloading`). A unit whose row in
//! `ListUnitsByNames` is as it was and that systemd has not signalled keeps the timestamps and
//! restart count read before, and a run with nothing signalled, the same units and every unit
//! read in full within `reread_every` makes no call at all (see [`Known`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::fdo::PropertiesProxy;
use zbus::message::Type;
use zbus::names::InterfaceName;
use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath, OwnedVariant};

const SERVICE: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";

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

    /// Asks systemd to broadcast its signals (unit and job changes) while this client is on
    /// the bus; systemd sends them only while someone is subscribed.
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

/// systemd's word that units changed, from the moment [`SystemdClient::watch`] set its match
/// rules. The signals are drained by a task of their own (a D-Bus stream left unread would
/// stall the connection), stopped when this is dropped.
#[derive(Debug)]
pub struct Changes {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Seen {
    changed: Changed,
    /// The watch no longer hears everything: the connection closed, a signal could not be
    /// read, the listener ended, or `org.freedesktop.systemd1` changed hands (systemd
    /// reconnected to the bus, or another systemd took the name: a subscription need not carry
    /// over).
    lost: bool,
}

/// What systemd signalled between two runs.
#[derive(Debug, Default)]
pub struct Changed {
    /// The object paths of units whose properties changed (`PropertiesChanged`), or that were
    /// loaded or unloaded (`UnitNew`, `UnitRemoved`).
    pub paths: HashSet<String>,
    /// systemd reloaded its configuration (`Reloading`): any unit may have changed.
    pub everything: bool,
}

impl Changes {
    /// What changed since the last call; `None` once the watch is lost, after which nothing
    /// read before may be trusted.
    pub fn take(&self) -> Option<Changed> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.lost {
            None
        } else {
            Some(std::mem::take(&mut seen.changed))
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watched connection read of the units, kept between runs: each unit's object path and
/// state, in the order asked, and when every one of them was last read in full.
#[derive(Debug, Default)]
pub struct Known {
    units: Vec<(String, UnitState)>,
    read_in_full: Option<Instant>,
}

/// A watched connection's part in a run: what was read before, what systemd signalled since,
/// and how long what was read may stand without a signal before every unit is read again.
#[derive(Debug)]
pub struct Watched<'a> {
    pub known: &'a mut Known,
    pub changed: &'a Changed,
    pub reread_every: Duration,
}

impl Known {
    /// What was read, if it is recent enough to stand at all (read in full within `every`).
    fn fresh(self, every: Duration) -> Known {
        match self.read_in_full {
            Some(at) if at.elapsed() < every => self,
            _ => Known::default(),
        }
    }

    /// Every unit as read before, when nothing may have changed: the same names in the same
    /// order, and systemd has signalled none of them and not reloaded.
    fn standing(&self, names: &[&str], changed: &Changed) -> Option<Vec<UnitState>> {
        let same = !changed.everything
            && self.read_in_full.is_some()
            && self.units.len() == names.len()
            && self
                .units
                .iter()
                .zip(names)
                .all(|((path, u), name)| u.name == *name && !changed.paths.contains(path));
        same.then(|| self.units.iter().map(|(_, u)| u.clone()).collect())
    }

    /// What was read of `row`'s unit before, if it may stand: its row (load, active and sub
    /// state, as `ListUnitsByNames` answers now) and object path are as they were, and systemd
    /// has not signalled a change on that path. A service that restarted between two runs is
    /// `active` at both, with a new timestamp and restart count: the signal is what tells.
    fn reusable(&self, path: &str, row: &UnitState, changed: &Changed) -> Option<UnitState> {
        let (was_path, was) = self.units.iter().find(|(_, u)| u.name == row.name)?;
        (!changed.everything
            && was_path == path
            && !changed.paths.contains(path)
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
    /// `Subscribe` is answered with an error (a refusal by systemd or the bus's policy, or
    /// any other error reply), and every run then reads every unit. The match rules are in place and their listener running before `Subscribe` is
    /// sent, so no change after it is missed and no burst of signals stalls the connection.
    pub async fn watch(&self) -> Result<Option<Changes>, SystemdError> {
        // Signals queued for the listener before it takes them (zbus's default is 64, and a
        // full queue stops the connection reading).
        const QUEUE: std::num::NonZeroUsize = std::num::NonZeroUsize::new(1024).unwrap();
        let [changed, manager, owner] = rules().map_err(|e| self.error("AddMatch", e))?;
        let mut streams = Vec::with_capacity(3);
        for rule in [changed, manager, owner] {
            streams.push(
                self.call(
                    "AddMatch",
                    MessageStream::for_match_rule(rule, &self.conn, Some(QUEUE)),
                )
                .await?,
            );
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(listen(streams, Arc::clone(&seen)));
        let changes = Changes { seen, task };
        let manager = self.manager().await?;
        match tokio::time::timeout(self.timeout, manager.subscribe()).await {
            Err(_) => Err(self.timed_out("Subscribe")),
            // A `Subscribe` of ours that systemd took after the call timed out: the rules and
            // the listener are in place, so the subscription serves.
            Ok(Err(zbus::Error::MethodError(name, ..)))
                if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" =>
            {
                Ok(Some(changes))
            }
            Ok(Err(e)) => match refusal(&e) {
                Some(_) => Ok(None),
                None => Err(self.error("Subscribe", e)),
            },
            Ok(Ok(())) => Ok(Some(changes)),
        }
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
    /// `watched`, on a connection that [watches](Self::watch): when systemd has signalled none
    /// of `names` (nor reloaded) since they were read, in full within
    /// [`Watched::reread_every`], they are answered as read, with no call at all;
    /// otherwise a unit whose row and path are as they were and that was not signalled is not
    /// asked again. What is read is kept for
    /// the next run; a call that fails or is refused leaves nothing known (the signals taken for
    /// this run would otherwise be lost to the next).
    pub async fn unit_states(
        &self,
        names: &[&str],
        watched: Option<Watched<'_>>,
    ) -> Result<ByNames, SystemdError> {
        const CALL: &str = "ListUnitsByNames";
        // A read in full is as old as its question, not its answer.
        let asked_at = Instant::now();
        let (known, previous, changed) = match watched {
            Some(w) => {
                let previous = std::mem::take(w.known).fresh(w.reread_every);
                if let Some(units) = previous.standing(names, w.changed) {
                    *w.known = previous;
                    return Ok(ByNames::Units(units));
                }
                (Some(w.known), previous, Some(w.changed))
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
            .map(|(row, path)| previous.reusable(path.as_str(), row, changed?))
            .collect();
        let any_reused = reused.iter().any(Option::is_some);
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
                            Ok(None)
                        }
                    },
                )
                .await;
                let all = all?;
                let restarts = restarts?;
                state.active_enter_us = number(&all, "ActiveEnterTimestamp");
                state.inactive_enter_us = number(&all, "InactiveEnterTimestamp");
                state.restarts = restarts;
                Ok(state)
            });
        let units = futures_util::future::try_join_all(reads).await?;
        if let Some(known) = known {
            let read_in_full = if any_reused {
                previous.read_in_full
            } else {
                Some(asked_at)
            };
            *known = Known {
                units: rows
                    .into_iter()
                    .zip(&units)
                    .map(|((_, path), state)| (path.to_string(), state.clone()))
                    .collect(),
                read_in_full,
            };
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

    /// A service's `NRestarts`; older systemd has none, and its absence (an error reply) is not
    /// an error. No reply (a timeout, a lost bus) is: a count that was not read must not be
    /// kept as "none".
    async fn restarts(&self, props: &PropertiesProxy<'_>) -> Result<Option<u32>, SystemdError> {
        const CALL: &str = "Get(NRestarts)";
        let service_iface = InterfaceName::from_static_str_unchecked(SERVICE_IFACE);
        match tokio::time::timeout(self.timeout, props.get(service_iface, "NRestarts")).await {
            Err(_) => Err(self.timed_out(CALL)),
            Ok(Ok(v)) => Ok(u32::try_from(v).ok()),
            Ok(Err(e)) => {
                let e = zbus::Error::from(e);
                match refusal(&e) {
                    Some(_) => Ok(None),
                    None => Err(self.error(CALL, e)),
                }
            }
        }
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
            state.restarts = self.restarts(&props).await?;
        }
        Ok(state)
    }
}

/// The match rules of [`SystemdClient::watch`]: systemd's `PropertiesChanged` on any unit's
/// object; the manager's signals (`UnitNew`, `UnitRemoved` and `Reloading` among them); the
/// bus's `NameOwnerChanged` for systemd's name.
fn rules() -> zbus::Result<[MatchRule<'static>; 3]> {
    let changed = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(SERVICE)
        .interface("org.freedesktop.DBus.Properties")
        .member("PropertiesChanged")
        .path_namespace("/org/freedesktop/systemd1/unit")
        .build()?;
    let manager = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(SERVICE)
        .interface(MANAGER_IFACE)
        .path(MANAGER_PATH)
        .build()?;
    let owner = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender("org.freedesktop.DBus")
        .interface("org.freedesktop.DBus")
        .member("NameOwnerChanged")
        .add_arg(SERVICE)
        .build()?;
    Ok([changed, manager, owner])
}

/// Notes what systemd signals, until the watch is lost: the connection closes, a signal cannot
/// be read, or systemd's name changes hands (the only signal of the third stream).
async fn listen(streams: Vec<MessageStream>, seen: Arc<Mutex<Seen>>) {
    /// Marks the watch lost however the listener ends (its loop, a panic, the runtime
    /// dropping it).
    struct Lost(Arc<Mutex<Seen>>);
    impl Drop for Lost {
        fn drop(&mut self) {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).lost = true;
        }
    }
    let _lost = Lost(Arc::clone(&seen));
    let mut heard = futures_util::stream::select_all(streams);
    while let Some(Ok(msg)) = heard.next().await {
        let header = msg.header();
        let member = header.member().map(|m| m.as_str());
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        match member {
            Some("PropertiesChanged") => {
                if let Some(path) = header.path() {
                    seen.changed.paths.insert(path.to_string());
                }
            }
            Some("UnitNew" | "UnitRemoved") => {
                match msg.body().deserialize::<(String, OwnedObjectPath)>() {
                    Ok((_, path)) => {
                        seen.changed.paths.insert(path.to_string());
                    }
                    Err(_) => seen.changed.everything = true,
                }
            }
            Some("Reloading") => seen.changed.everything = true,
            // Only the bus itself says who owns a name (anyone may send a signal to us).
            Some("NameOwnerChanged")
                if header.sender().is_some_and(|s| s == "org.freedesktop.DBus") =>
            {
                break;
            }
            // Jobs, start-up, unit files: no unit's state in them.
            _ => {}
        }
    }
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
