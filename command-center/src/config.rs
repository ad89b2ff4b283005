//! The Command Center's configuration for `serve` (flags and environment, see `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vaultmesh_store::{StoreLimits, StoreOptions};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8088";

/// Where the docs keep the command-signing key: root-only (0600), outside the log directory
/// (which is backed up), and where `keygen` writes by default.
pub const DEFAULT_KEY_FILE: &str = "/etc/vaultmesh/cc.key";

/// The systemd credential `serve` reads its signing key from when no `--signing-key` is given:
/// the unit's `LoadCredential=cc.key:/etc/vaultmesh/cc.key` puts a copy only the service can
/// read in `$CREDENTIALS_DIRECTORY/cc.key`.
pub const KEY_CREDENTIAL: &str = "cc.key";

/// Where `serve` reads its command-signing key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// `--signing-key FILE` (`VAULTMESH_CC_KEY_FILE`).
    File(PathBuf),
    /// The systemd credential [`KEY_CREDENTIAL`] in `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
}

impl SigningKey {
    /// `--signing-key` if given; otherwise the credential [`KEY_CREDENTIAL`] when systemd passed
    /// one (`credentials_directory` is `$CREDENTIALS_DIRECTORY`); otherwise none.
    pub fn resolve(
        flag: Option<PathBuf>,
        credentials_directory: Option<&Path>,
    ) -> Option<SigningKey> {
        if let Some(path) = flag {
            return Some(SigningKey::File(path));
        }
        let path = credentials_directory?.join(KEY_CREDENTIAL);
        path.exists().then_some(SigningKey::Credential(path))
    }

    pub fn path(&self) -> &Path {
        match self {
            SigningKey::File(p) | SigningKey::Credential(p) => p,
        }
    }

    /// How errors name it: the flag, or the credential and where systemd put it.
    fn label(&self) -> String {
        match self {
            SigningKey::File(p) => format!("--signing-key {}", p.display()),
            SigningKey::Credential(p) => {
                format!("credential {KEY_CREDENTIAL} ({})", p.display())
            }
        }
    }
}

/// Everything `serve` needs, already validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Directory for the append-only logs (`VAULTMESH_LOG_DIR`); created if missing.
    pub log_dir: PathBuf,
    /// Directory of per-profile policy files (`VAULTMESH_POLICY_DIR`); must exist if given.
    pub policy_dir: Option<PathBuf>,
    pub limits: StoreLimits,
    /// Attention engine: ticker and restart grace period.
    pub attention: vaultmesh_engines::attention::EngineOptions,
    /// How often the orchestrator looks for nodes due a scan.
    pub scan_tick: Duration,
    /// How often the ledger signs a checkpoint over new scans.
    pub ledger_interval: Duration,
    /// The ledger's origin line and key name.
    pub ledger_origin: String,
    /// Cloudflare Access in front of the admin routes.
    pub access: Option<crate::access::AccessConfig>,
    /// Admin bearer token (when Access is not used).
    pub admin_token: Option<String>,
    /// Agent requests per second per node, and the burst allowed.
    pub agent_rate: f64,
    /// Bytes per hour each node may send, per kind.
    pub budgets: vaultmesh_engines::budget::Limits,
    /// Bytes per hour per kind the whole fleet may send.
    pub fleet_budgets: vaultmesh_engines::budget::FleetLimits,
    /// Enrollment attempts a second per source address, and the burst allowed.
    pub enroll_rate: f64,
    pub enroll_burst: u32,
    pub agent_burst: u32,
    /// Open `/events` streams per identity, per address and in all.
    pub sse: crate::sse::StreamLimits,
    /// The connection bound and the header and write timeouts ([`crate::listener`]).
    pub connections: crate::listener::ConnLimits,
    /// Rotate the heartbeat log at this size (it also rotates daily).
    pub heartbeat_rotate_bytes: u64,
    /// Delete rotated heartbeat segments older than this.
    pub heartbeat_retention: Duration,
    /// SSE keepalive interval.
    pub sse_keepalive: Duration,
    /// Events an SSE client may fall behind before it is told to resync.
    pub sse_buffer: usize,
    /// Enrollment token specs: `TOKEN[,single-use][,expires=RFC3339]`.
    pub enroll_tokens: Vec<String>,
    /// The Command Center's command-signing key (`keygen` writes it).
    pub signing_key: Option<SigningKey>,
    /// A PostgreSQL URL (`--store`, `VAULTMESH_STORE_URL`): the log is kept in that database,
    /// shared with other instances; the log directory then holds only the ledger's files.
    pub store_url: Option<String>,
    /// The notifications file (`--notify-config`, `VAULTMESH_NOTIFY_CONFIG`).
    pub notify_config: Option<PathBuf>,
    /// Below this much free space on the log volume, the Command Center raises its own
    /// attention reason (`cc.disk_free`).
    pub min_free: vaultmesh_store::health::MinFree,
    /// How often the log volume's free space is measured.
    pub disk_check: Duration,
    /// How long a request may take (`--request-timeout`); see [`crate::timeout`].
    pub request_timeout: Duration,
    /// How long a request body may take to arrive (`--body-timeout`); see [`crate::timeout`].
    pub body_timeout: Duration,
    /// Bytes all request bodies being received may hold at once (`--body-memory`).
    pub body_memory: usize,
    /// Host names admin requests may name besides the loopback ones (`--allowed-host`); see
    /// [`crate::guard`].
    pub allowed_hosts: Vec<crate::guard::HostName>,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, log_dir: PathBuf) -> Self {
        let defaults = StoreOptions::new(log_dir.clone());
        ServeConfig {
            listen,
            log_dir,
            policy_dir: None,
            limits: StoreLimits::default(),
            attention: vaultmesh_engines::attention::EngineOptions::default(),
            scan_tick: Duration::from_secs(30),
            ledger_interval: Duration::from_secs(10),
            ledger_origin: vaultmesh_store::ledger::DEFAULT_ORIGIN.to_string(),
            access: None,
            admin_token: None,
            agent_rate: 5.0,
            budgets: vaultmesh_engines::budget::Limits::default(),
            fleet_budgets: vaultmesh_engines::budget::FLEET_DEFAULT,
            enroll_rate: crate::agent_auth::ENROLL_RATE_PER_S,
            enroll_burst: crate::agent_auth::ENROLL_BURST,
            agent_burst: 30,
            sse: crate::sse::StreamLimits::default(),
            connections: crate::listener::ConnLimits::default(),
            heartbeat_rotate_bytes: defaults.heartbeat_rotate_bytes,
            heartbeat_retention: defaults.heartbeat_retention,
            sse_keepalive: Duration::from_secs(15),
            sse_buffer: 1024,
            enroll_tokens: Vec::new(),
            store_url: None,
            notify_config: None,
            signing_key: None,
            min_free: vaultmesh_store::health::MinFree::Percent(5.0),
            disk_check: Duration::from_secs(10),
            request_timeout: crate::timeout::DEFAULT_REQUEST_TIMEOUT,
            body_timeout: crate::timeout::DEFAULT_BODY_TIMEOUT,
            body_memory: crate::timeout::DEFAULT_BODY_MEMORY,
            allowed_hosts: Vec::new(),
        }
    }

    /// The parsed enrollment tokens.
    pub fn tokens(&self) -> Result<crate::agent_auth::EnrollTokens, String> {
        let parsed: Result<Vec<_>, String> = self
            .enroll_tokens
            .iter()
            .map(|t| crate::agent_auth::EnrollToken::parse(t))
            .collect();
        parsed
            .map(crate::agent_auth::EnrollTokens)
            .map_err(|e| format!("--enroll-token: {e}"))
    }

    /// The signing key, if configured.
    pub fn load_signing_key(&self) -> Result<Option<vaultmesh_proto::auth::NodeKey>, String> {
        let Some(key) = &self.signing_key else {
            return Ok(None);
        };
        crate::commands::read_signing_key(key.path())
            .map(Some)
            .map_err(|e| format!("{}: {e}", key.label()))
    }

    /// The store's options from this config.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            dir: self.log_dir.clone(),
            limits: self.limits,
            heartbeat_rotate_bytes: self.heartbeat_rotate_bytes,
            heartbeat_retention: self.heartbeat_retention,
            observer: None,
            health: std::sync::Arc::default(),
            seen_max: vaultmesh_store::seen::DEFAULT_MAX,
        }
    }

    /// Checks the directories and limits, creating the log directory (0700) if needed. Errors
    /// name the flag and the reason. Tokens, the signing key and policies are read (once) by
    /// [`crate::server::Server::bind`], which reports them as [`crate::server::ServeError::Config`].
    pub fn prepare(&self) -> Result<(), String> {
        if let Some(url) = &self.store_url
            && !vaultmesh_store::postgres::is_postgres_url(url)
        {
            return Err(format!(
                "--store {}: not a PostgreSQL URL; write postgres://USER@HOST/DB, or leave --store out for the log directory",
                vaultmesh_store::postgres::redact(url)
            ));
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            let dir = &self.log_dir;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("--log-dir {}: cannot create: {e}", dir.display()))?;
        }
        if self.attention.tick < Duration::from_millis(10) {
            return Err("--attention-tick must be at least 10ms".into());
        }
        if !self.listen.ip().is_loopback() && self.access.is_none() && self.admin_token.is_none() {
            return Err(format!(
                "--listen {}: the admin routes would be open to the network; listen on loopback (behind cloudflared), or set --access-team-domain and --access-aud (Cloudflare Access), or --admin-token",
                self.listen
            ));
        }
        if self.agent_rate.is_nan() || self.agent_rate <= 0.0 || self.agent_burst == 0 {
            return Err("--agent-rate and --agent-burst must be positive".into());
        }
        if self.enroll_rate.is_nan() || self.enroll_rate <= 0.0 || self.enroll_burst == 0 {
            return Err("--enroll-rate and --enroll-burst must be positive".into());
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("--admin-token must be at least 16 characters".into());
        }
        if self.ledger_interval < Duration::from_millis(10) {
            return Err("--ledger-interval must be at least 10ms".into());
        }
        if self.ledger_origin.trim().is_empty() || self.ledger_origin.contains(['\n', ' ', '+']) {
            return Err("--ledger-origin must be one line without spaces or '+'".into());
        }
        if self.scan_tick < Duration::from_millis(10) {
            return Err("--scan-tick must be at least 10ms".into());
        }
        if self.sse_buffer == 0 {
            return Err("--sse-buffer must be at least 1".into());
        }
        self.check_connection_bounds()?;
        if self.heartbeat_rotate_bytes < 4096 {
            return Err("--heartbeat-rotate-size must be at least 4KiB".into());
        }
        if let Some(dir) = &self.policy_dir {
            require_dir("--policy-dir", dir)?;
        }
        if self.limits.history_len == 0 || self.limits.max_nodes == 0 {
            return Err("--history-len and --max-nodes must be at least 1".into());
        }
        Ok(())
    }
}

impl ServeConfig {
    /// The connection and event-stream bounds: each at least 1, and event streams (which are
    /// never closed to make room) below the connection bound, so other requests always fit; the
    /// connection timeouts at least 100 ms.
    fn check_connection_bounds(&self) -> Result<(), String> {
        let conns = &self.connections;
        for (flag, timeout) in [
            ("--header-timeout", conns.header_timeout),
            ("--idle-timeout", conns.idle_timeout),
            ("--write-timeout", conns.write_timeout),
            ("--body-timeout", self.body_timeout),
        ] {
            if timeout < Duration::from_millis(100) {
                return Err(format!(
                    "{flag} must be at least 100ms (it is {} ms)",
                    timeout.as_millis()
                ));
            }
        }
        let largest = vaultmesh_proto::scan::limits::REPORT_BODY_MAX;
        if self.body_memory < largest {
            return Err(format!(
                "--body-memory {} must be at least {largest} bytes: the largest body accepted (a scan report) must fit",
                self.body_memory
            ));
        }
        let sse = &self.sse;
        let max = conns.max_connections;
        for (flag, n) in [
            ("--max-connections", max),
            ("--sse-per-identity", sse.per_identity),
            ("--sse-per-address", sse.per_address),
            ("--sse-total", sse.total),
        ] {
            if n == 0 {
                return Err(format!("{flag} must be at least 1"));
            }
        }
        if sse.total >= max {
            return Err(format!(
                "--sse-total {} must be below --max-connections {max}: event streams are never closed to make room, so they must leave some for other requests",
                sse.total
            ));
        }
        Ok(())
    }
}

fn require_dir(flag: &str, dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{flag} {}: not a directory", dir.display())),
        Err(e) => Err(format!("{flag} {}: {e}", dir.display())),
    }
}
