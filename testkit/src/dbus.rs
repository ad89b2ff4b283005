//! A real `dbus-daemon` on a private socket, and a fake `org.freedesktop.systemd1` served on
//! it with zbus — so the systemd check talks real D-Bus to a systemd whose units the test sets.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use zbus::object_server::ObjectServer;
use zbus::{OwnedObjectPath, interface};

/// A private bus: `dbus-daemon --config-file=... --nofork --print-address`. Killed on drop.
#[derive(Debug)]
pub struct DbusDaemon {
    child: Child,
    /// The bus address, e.g. `unix:path=/tmp/.../bus,guid=...`.
    pub address: String,
    _dir: TempDir,
}

impl DbusDaemon {
    /// Starts a daemon that lets anyone own any name (a test bus, not a system policy).
    pub fn start() -> DbusDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>"#,
                socket.display()
            ),
        )
        .expect("write bus config");
        let mut child = match Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1", "--nopidfile"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot run dbus-daemon ({e}); install it: apt-get install -y dbus"),
        };
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read bus address");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        DbusDaemon {
            child,
            address,
            _dir: dir,
        }
    }

    /// Kills the daemon now (the bus "disappears").
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A unit as the fake systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUnit {
    pub name: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
    pub active_enter_us: u64,
    pub inactive_enter_us: u64,
    pub restarts: u32,
}

impl FakeUnit {
    /// A loaded unit in `active_state`/`sub_state`.
    pub fn new(name: &str, active_state: &str, sub_state: &str) -> FakeUnit {
        FakeUnit {
            name: name.into(),
            load_state: "loaded".into(),
            active_state: active_state.into(),
            sub_state: sub_state.into(),
            active_enter_us: 1_700_000_000_000_000,
            inactive_enter_us: 0,
            restarts: 0,
        }
    }
}

#[derive(Debug, Default)]
struct FakeState {
    units: BTreeMap<String, FakeUnit>,
    /// Units whose `LoadUnit` (and a `ListUnitsByNames` naming them) never answers (to test
    /// timeouts and a bus that goes away).
    hang: BTreeSet<String>,
    /// How `ListUnitsByNames` is refused, if it is.
    refuse_list_by_names: Option<Refusal>,
    /// How many times each Manager method was called, by D-Bus method name (and
    /// `GetAll(Unit)`: each read of a unit's `ActiveEnterTimestamp`, which `GetAll` makes).
    calls: BTreeMap<&'static str, usize>,
    /// Whether a client called `Subscribe`: like systemd, the fake signals unit changes only
    /// then.
    subscribed: bool,
    /// Answer `Subscribe` with `AccessDenied`.
    refuse_subscribe: bool,
}

/// How the fake refuses `ListUnitsByNames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `org.freedesktop.DBus.Error.UnknownMethod`, as systemd before 230 answers.
    UnknownMethod,
    /// `org.freedesktop.DBus.Error.AccessDenied`, as a bus policy may answer.
    AccessDenied,
}

/// The row `ListUnits*` answers for a unit: (name, description, load state, active state, sub
/// state, following, path, job id, job type, job path).
pub type UnitRow = (
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

fn unit_row(u: &FakeUnit) -> UnitRow {
    let root = OwnedObjectPath::try_from("/").expect("root path");
    let path = OwnedObjectPath::try_from(unit_path(&u.name)).unwrap_or_else(|_| root.clone());
    (
        u.name.clone(),
        String::new(),
        u.load_state.clone(),
        u.active_state.clone(),
        u.sub_state.clone(),
        String::new(),
        path,
        0,
        String::new(),
        root,
    )
}

type Shared = Arc<Mutex<FakeState>>;

/// systemd's object path for a unit: bytes other than `[A-Za-z0-9]` become `_xx`.
pub fn unit_path(name: &str) -> String {
    let mut p = String::from("/org/freedesktop/systemd1/unit/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            p.push(b as char);
        } else {
            p.push_str(&format!("_{b:02x}"));
        }
    }
    p
}

struct Manager {
    state: Shared,
}

impl Manager {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, method: &'static str) {
        *self.lock().calls.entry(method).or_default() += 1;
    }

    fn hangs(&self, names: &[String]) -> bool {
        let state = self.lock();
        names.iter().any(|n| state.hang.contains(n))
    }

    /// Like systemd's loading of a unit: an unknown name becomes a `not-found` unit; the
    /// unit's objects are served at its path.
    async fn load(&self, name: &str, server: &ObjectServer) {
        {
            let mut state = self.lock();
            if !state.units.contains_key(name) {
                state.units.insert(
                    name.to_string(),
                    FakeUnit {
                        load_state: "not-found".into(),
                        active_enter_us: 0,
                        ..FakeUnit::new(name, "inactive", "dead")
                    },
                );
            }
        }
        let path = unit_path(name);
        let unit = UnitObject {
            name: name.to_string(),
            state: Arc::clone(&self.state),
        };
        let _ = server.at(path.as_str(), unit).await;
        if name.ends_with(".service") {
            let service = ServiceObject {
                name: name.to_string(),
                state: Arc::clone(&self.state),
            };
            let _ = server.at(path.as_str(), service).await;
        }
    }
}

#[interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn load_unit(
        &self,
        name: String,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.count("LoadUnit");
        if self.hangs(std::slice::from_ref(&name)) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        self.load(&name, server).await;
        OwnedObjectPath::try_from(unit_path(&name))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    /// Like systemd (230 and later): loads each named unit as `LoadUnit` does and answers one
    /// row per name, in order, a unit that does not exist with load state `not-found`.
    async fn list_units_by_names(
        &self,
        names: Vec<String>,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> zbus::fdo::Result<Vec<UnitRow>> {
        self.count("ListUnitsByNames");
        let refusal = self.lock().refuse_list_by_names;
        match refusal {
            Some(Refusal::UnknownMethod) => {
                return Err(zbus::fdo::Error::UnknownMethod(
                    "Unknown method ListUnitsByNames or interface org.freedesktop.systemd1.Manager."
                        .into(),
                ));
            }
            Some(Refusal::AccessDenied) => {
                return Err(zbus::fdo::Error::AccessDenied(
                    "Rejected send message: ListUnitsByNames".into(),
                ));
            }
            None => {}
        }
        if self.hangs(&names) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let mut rows = Vec::with_capacity(names.len());
        for name in &names {
            self.load(name, server).await;
            let state = self.lock();
            if let Some(u) = state.units.get(name) {
                rows.push(unit_row(u));
            }
        }
        Ok(rows)
    }

    /// Like systemd: from now on, changes are signalled (`PropertiesChanged` on a unit's object;
    /// the manager's `UnitNew` for a unit newly loaded, `Reloading` for a daemon-reload).
    fn subscribe(&self) -> zbus::fdo::Result<()> {
        self.count("Subscribe");
        let mut state = self.lock();
        if state.refuse_subscribe {
            return Err(zbus::fdo::Error::AccessDenied(
                "Rejected send message: Subscribe".into(),
            ));
        }
        state.subscribed = true;
        Ok(())
    }

    /// Like systemd: queues a restart; here the unit is simply active afterwards (and the
    /// change signalled to a subscriber).
    async fn restart_unit(
        &self,
        name: String,
        _mode: String,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let (unit, subscribed) = {
            let mut state = self.lock();
            let subscribed = state.subscribed;
            match state.units.get_mut(&name) {
                Some(u) if u.load_state == "loaded" => {
                    u.active_state = "active".into();
                    u.sub_state = "running".into();
                    u.restarts += 1;
                    (u.clone(), subscribed)
                }
                _ => return Err(zbus::fdo::Error::Failed(format!("Unit {name} not found."))),
            }
        };
        if subscribed {
            let _ = properties_changed(conn, &unit).await;
        }
        OwnedObjectPath::try_from("/org/freedesktop/systemd1/job/1")
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    fn list_units_by_patterns(&self, _states: Vec<String>, patterns: Vec<String>) -> Vec<UnitRow> {
        self.count("ListUnitsByPatterns");
        let state = self.lock();
        state
            .units
            .values()
            .filter(|u| u.load_state != "not-found")
            .filter(|u| patterns.iter().any(|p| glob(p, &u.name)))
            .map(unit_row)
            .collect()
    }
}

struct UnitObject {
    name: String,
    state: Shared,
}

impl UnitObject {
    fn get<T>(&self, f: impl Fn(&FakeUnit) -> T, default: T) -> T {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.units.get(&self.name).map_or(default, f)
    }
}

#[interface(name = "org.freedesktop.systemd1.Unit")]
impl UnitObject {
    #[zbus(property)]
    fn id(&self) -> String {
        self.name.clone()
    }
    #[zbus(property)]
    fn load_state(&self) -> String {
        self.get(|u| u.load_state.clone(), String::new())
    }
    #[zbus(property)]
    fn active_state(&self) -> String {
        self.get(|u| u.active_state.clone(), String::new())
    }
    #[zbus(property)]
    fn sub_state(&self) -> String {
        self.get(|u| u.sub_state.clone(), String::new())
    }
    #[zbus(property)]
    fn active_enter_timestamp(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state.calls.entry("GetAll(Unit)").or_default() += 1;
        state.units.get(&self.name).map_or(0, |u| u.active_enter_us)
    }
    #[zbus(property)]
    fn inactive_enter_timestamp(&self) -> u64 {
        self.get(|u| u.inactive_enter_us, 0)
    }
}

struct ServiceObject {
    name: String,
    state: Shared,
}

#[interface(name = "org.freedesktop.systemd1.Service")]
impl ServiceObject {
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> u32 {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.units.get(&self.name).map_or(0, |u| u.restarts)
    }
}

/// A signal the fake sends as systemd would.
#[derive(Debug)]
enum Signal {
    /// `PropertiesChanged` on the unit's object, for the `Unit` interface, with the state
    /// properties' new values.
    Changed(FakeUnit),
    /// The manager's `UnitNew(id, path)`: systemd loaded a unit.
    UnitNew(String),
    /// The manager's `Reloading(true)`, then `Reloading(false)`.
    Reloading,
}

impl Signal {
    async fn send(&self, conn: &zbus::Connection) -> zbus::Result<()> {
        const MANAGER: &str = "org.freedesktop.systemd1.Manager";
        const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
        match self {
            Signal::Changed(unit) => properties_changed(conn, unit).await,
            Signal::UnitNew(name) => {
                let path = OwnedObjectPath::try_from(unit_path(name))?;
                conn.emit_signal(
                    None::<&str>,
                    MANAGER_PATH,
                    MANAGER,
                    "UnitNew",
                    &(name.as_str(), path),
                )
                .await
            }
            Signal::Reloading => {
                for active in [true, false] {
                    conn.emit_signal(None::<&str>, MANAGER_PATH, MANAGER, "Reloading", &active)
                        .await?;
                }
                Ok(())
            }
        }
    }
}

/// systemd's signal that a unit changed: `PropertiesChanged` on the unit's object, for the
/// `Unit` interface, with the state properties' new values.
async fn properties_changed(conn: &zbus::Connection, unit: &FakeUnit) -> zbus::Result<()> {
    use zbus::Variant as Value;
    let changed: std::collections::HashMap<&str, Value<'_>> = [
        ("ActiveState", Value::from(unit.active_state.as_str())),
        ("SubState", Value::from(unit.sub_state.as_str())),
        ("ActiveEnterTimestamp", Value::from(unit.active_enter_us)),
        (
            "InactiveEnterTimestamp",
            Value::from(unit.inactive_enter_us),
        ),
    ]
    .into_iter()
    .collect();
    let invalidated: Vec<&str> = Vec::new();
    conn.emit_signal(
        None::<&str>,
        unit_path(&unit.name).as_str(),
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        &("org.freedesktop.systemd1.Unit", changed, invalidated),
    )
    .await
}

/// Shell-style glob (`*`, `?`, `[abc]`), as systemd applies to unit names.
fn glob(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches(name))
}

/// `org.freedesktop.systemd1` on a test bus, served from its own thread until dropped.
#[derive(Debug)]
pub struct FakeSystemd {
    state: Shared,
    /// Signals to send, each with a channel that says it was sent.
    signal: tokio::sync::mpsc::UnboundedSender<(Signal, std::sync::mpsc::Sender<()>)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeSystemd {
    /// Connects to `address`, takes the name `org.freedesktop.systemd1` and serves `units`.
    pub fn start(address: &str, units: &[FakeUnit]) -> FakeSystemd {
        let state: Shared = Arc::new(Mutex::new(FakeState::default()));
        {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            for u in units {
                s.units.insert(u.name.clone(), u.clone());
            }
        }
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (signal_tx, mut signal_rx) =
            tokio::sync::mpsc::unbounded_channel::<(Signal, std::sync::mpsc::Sender<()>)>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let address = address.to_string();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let manager = Manager {
                    state: thread_state,
                };
                let conn = zbus::connection::Builder::address(address.as_str())
                    .name("org.freedesktop.systemd1")
                    .serve_at("/org/freedesktop/systemd1", manager)
                    .build()
                    .await;
                match conn {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        loop {
                            tokio::select! {
                                _ = &mut stop_rx => break,
                                Some((signal, sent)) = signal_rx.recv() => {
                                    let _ = signal.send(&conn).await;
                                    let _ = sent.send(());
                                }
                            }
                        }
                        drop(conn);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fake systemd could not start: {e}"),
            Err(_) => panic!("fake systemd did not start within 10 s"),
        }
        FakeSystemd {
            state,
            signal: signal_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Adds or replaces a unit and, once a client has subscribed, signals the change before
    /// returning, as systemd does: `UnitNew` for a unit it had not loaded (absent or
    /// `not-found`), else `PropertiesChanged` on the unit's object.
    pub fn set(&self, unit: FakeUnit) {
        let (new, subscribed) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let new = state
                .units
                .get(&unit.name)
                .is_none_or(|u| u.load_state == "not-found");
            state.units.insert(unit.name.clone(), unit.clone());
            (new, state.subscribed)
        };
        if subscribed {
            self.send(if new {
                Signal::UnitNew(unit.name)
            } else {
                Signal::Changed(unit)
            });
        }
    }

    /// Like `systemctl daemon-reload`: signals `Reloading` (true, then false) to a subscriber;
    /// the units change only by [`Self::set`] and [`Self::set_quietly`].
    pub fn daemon_reload(&self) {
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .subscribed
        {
            self.send(Signal::Reloading);
        }
    }

    /// Sends `signal` from the fake's thread; returns once it is sent.
    fn send(&self, signal: Signal) {
        let (sent, wait) = std::sync::mpsc::channel();
        if self.signal.send((signal, sent)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Adds or replaces a unit without a signal: a change whose signal was lost.
    pub fn set_quietly(&self, unit: FakeUnit) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .units
            .insert(unit.name.clone(), unit);
    }

    /// Refuses `Subscribe` from now on (`AccessDenied`, as a bus policy may).
    pub fn refuse_subscribe(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refuse_subscribe = true;
    }

    /// The current state of a unit.
    pub fn unit(&self, name: &str) -> Option<FakeUnit> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .units
            .get(name)
            .cloned()
    }

    /// Makes `LoadUnit(name)`, and `ListUnitsByNames` naming it, never answer.
    pub fn hang_on(&self, name: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hang
            .insert(name.to_string());
    }

    /// Refuses `ListUnitsByNames` from now on, with `how`.
    pub fn refuse_list_by_names(&self, how: Refusal) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refuse_list_by_names = Some(how);
    }

    /// Answers `ListUnitsByNames` again.
    pub fn allow_list_by_names(&self) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refuse_list_by_names = None;
    }

    /// How many times the Manager method `method` (its D-Bus name, e.g. `LoadUnit`) was called.
    pub fn calls(&self, method: &str) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_path("cloudflared.service"),
            "/org/freedesktop/systemd1/unit/cloudflared_2eservice"
        );
        assert_eq!(
            unit_path("vaultmesh-node-agent.service"),
            "/org/freedesktop/systemd1/unit/vaultmesh_2dnode_2dagent_2eservice"
        );
    }
}
