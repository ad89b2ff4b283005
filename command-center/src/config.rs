//! The Command Center's configuration for `serve`: its flags and environment, each default
//! declared once on the struct that uses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vaultmesh_process::{duration, size};
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

/// Everything `serve` needs: its flags (and environment), each default declared once, here.
/// [`ServeConfig::prepare`] validates them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on; keep it on loopback behind cloudflared.
    #[arg(long, env = "VAULTMESH_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Directory for the append-only logs (created if missing; replayed at start).
    #[arg(
        long,
        env = "VAULTMESH_LOG_DIR",
        value_name = "DIR",
        default_value = "vaultmesh-logs"
    )]
    pub log_dir: PathBuf,
    /// Directory of per-profile policy files.
    #[arg(long, env = "VAULTMESH_POLICY_DIR", value_name = "DIR")]
    pub policy_dir: Option<PathBuf>,
    /// Keep the log in PostgreSQL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB), shared by every
    /// instance given the same URL; --log-dir then holds only this instance's ledger files.
    /// Without it, the log is the JSONL files in --log-dir.
    #[arg(
        long = "store",
        env = "VAULTMESH_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store_url: Option<String>,
    /// Notifications: notifiers and routes (TOML; see docs/NOTIFICATIONS.md). The queue is kept
    /// in --log-dir.
    #[arg(long, env = "VAULTMESH_NOTIFY_CONFIG", value_name = "FILE")]
    pub notify_config: Option<PathBuf>,
    #[command(flatten)]
    pub limits: StoreLimits,
    #[command(flatten)]
    pub attention: vaultmesh_engines::attention::EngineOptions,
    /// How often the orchestrator looks for nodes due a scheduled scan.
    #[arg(long, default_value = "30s", value_parser = duration::parse_nonzero)]
    pub scan_tick: Duration,
    /// How often the ledger signs a checkpoint over new scan reports (when there are any).
    #[arg(long, default_value = "10s", value_parser = duration::parse_nonzero)]
    pub ledger_interval: Duration,
    /// Origin line (and key name) of the ledger's checkpoints.
    #[arg(long, default_value = vaultmesh_store::ledger::DEFAULT_ORIGIN)]
    pub ledger_origin: String,
    #[command(flatten)]
    pub access: crate::access::AccessArgs,
    #[command(flatten)]
    pub oidc: crate::oidc::OidcArgs,
    /// Which role each signed-in identity gets (viewer, operator, admin), by email, domain or
    /// group: a TOML file (`roles check FILE` validates it). Without one, every identity
    /// Access or sign-in lets in is an admin.
    #[arg(long, env = "VAULTMESH_ROLES", value_name = "FILE")]
    pub roles: Option<std::path::PathBuf>,
    /// Admin bearer token (Authorization: Bearer ...) when Access is not used.
    #[arg(long, env = "VAULTMESH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Requests a second each named API token may make (beyond: 429 with Retry-After).
    #[arg(long, default_value_t = 10.0)]
    pub api_token_rate: f64,
    /// Requests an API token may make at once before the rate applies.
    #[arg(long, default_value_t = 60)]
    pub api_token_burst: u32,
    /// Agent requests a second each node may make (beyond: 429 with Retry-After).
    #[arg(long, default_value_t = 5.0)]
    pub agent_rate: f64,
    /// Agent requests a node may make at once before the rate applies.
    #[arg(long, default_value_t = 30)]
    pub agent_burst: u32,
    /// Notes and incidents each node may post about itself a minute (POST /api/agent/events;
    /// beyond: 429 with Retry-After), on top of --agent-rate.
    #[arg(long, env = "VAULTMESH_AGENT_EVENT_RATE", value_name = "PER_MINUTE", default_value_t = crate::api::AGENT_EVENTS_PER_MINUTE)]
    pub agent_event_rate: u32,
    /// Events a node may post at once before --agent-event-rate applies.
    #[arg(long, env = "VAULTMESH_AGENT_EVENT_BURST", default_value_t = crate::api::AGENT_EVENT_BURST)]
    pub agent_event_burst: u32,
    #[command(flatten)]
    pub budgets: vaultmesh_engines::budget::Limits,
    #[command(flatten)]
    pub fleet_budgets: vaultmesh_engines::budget::FleetLimits,
    /// Enrollment attempts a second from one source address (Cf-Connecting-Ip behind the
    /// tunnel); beyond: 429 with Retry-After.
    #[arg(long, default_value_t = crate::agent_auth::ENROLL_RATE_PER_S)]
    pub enroll_rate: f64,
    /// Enrollment attempts one source may make at once before the rate applies.
    #[arg(long, default_value_t = crate::agent_auth::ENROLL_BURST)]
    pub enroll_burst: u32,
    #[command(flatten)]
    pub sse: crate::sse::StreamLimits,
    #[command(flatten)]
    pub connections: crate::listener::ConnLimits,
    #[command(flatten)]
    pub heartbeats: vaultmesh_store::jsonl::HeartbeatLog,
    #[command(flatten)]
    pub history: vaultmesh_store::history::HistoryOptions,
    /// Interval of SSE keepalive comments on /events.
    #[arg(long, default_value = "15s", value_parser = duration::parse_nonzero)]
    pub sse_keepalive: Duration,
    /// Events an SSE client may fall behind before it gets `resync`.
    #[arg(long, default_value_t = 1024)]
    pub sse_buffer: usize,
    /// Enrollment token agents present once to bind their key: TOKEN[,single-use][,expires=RFC3339].
    /// Repeat for several; in the environment, separate them with spaces.
    #[arg(
        long = "enroll-token",
        value_name = "ENROLL_TOKEN",
        env = "VAULTMESH_ENROLL_TOKEN",
        value_delimiter = ' ',
        hide_env_values = true
    )]
    pub enroll_tokens: Vec<String>,
    /// Command-signing key written by `keygen`; without it no command can be issued. Unset, the
    /// systemd credential `cc.key` ($CREDENTIALS_DIRECTORY/cc.key, LoadCredential=) is used if
    /// present ([`ServeConfig::signing_key`]).
    #[arg(
        id = "signing_key",
        long = "signing-key",
        env = "VAULTMESH_CC_KEY_FILE",
        value_name = "FILE"
    )]
    pub signing_key_file: Option<PathBuf>,
    /// Free space on the log volume below which the Command Center raises its own attention
    /// reason (cc.disk_free), before writes start failing: a share (5%) or a size (2GiB).
    #[arg(long, default_value = "5%")]
    pub min_free: vaultmesh_store::health::MinFree,
    /// How often the log volume's free space is measured.
    #[arg(long, default_value = "10s", value_parser = duration::parse_nonzero)]
    pub disk_check: Duration,
    /// Answer a request not done within this with a JSON error (503; 408 if its body is still
    /// arriving). The agent's long-poll gets its wait (at most 60s) on top.
    #[arg(long, default_value = "30s", value_parser = duration::parse_nonzero)]
    pub request_timeout: Duration,
    /// Answer a request whose body has not arrived whole within this of its head with 408, and
    /// close the connection (a slow sender holds it no longer).
    #[arg(long, default_value = "10s", value_parser = duration::parse_nonzero)]
    pub body_timeout: Duration,
    /// Bytes all request bodies being received may hold at once; a body beyond gets 503 with
    /// Retry-After. At least the largest body accepted (a scan report, 4.25 MiB). The default
    /// holds 16 scan reports of the largest size at once, or thousands of heartbeats.
    #[arg(long, default_value = "64MiB", value_parser = size::parse)]
    pub body_memory: u64,
    /// A host name admin requests may name besides localhost, 127.0.0.1 and [::1] with the
    /// listen port (others get 421, against DNS rebinding): the public hostname behind
    /// cloudflared (cc.example.com, any port), or NAME:PORT. Repeat, or separate with commas.
    #[arg(
        long = "allowed-host",
        env = "VAULTMESH_ALLOWED_HOST",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub allowed_hosts: Vec<crate::guard::HostName>,
}

impl ServeConfig {
    /// The defaults (without reading the environment) with `listen` and `log_dir`.
    pub fn new(listen: SocketAddr, log_dir: PathBuf) -> Self {
        ServeConfig {
            listen,
            log_dir,
            ..vaultmesh_process::cli::defaults()
        }
    }

    /// Where the signing key is read from: `--signing-key`, else the systemd credential
    /// [`KEY_CREDENTIAL`] when systemd passed one.
    pub fn signing_key(&self) -> Option<SigningKey> {
        SigningKey::resolve(
            self.signing_key_file.clone(),
            std::env::var_os("CREDENTIALS_DIRECTORY")
                .as_deref()
                .map(Path::new),
        )
    }

    /// Bytes all request bodies may hold at once, as a memory size.
    pub fn body_memory(&self) -> usize {
        usize::try_from(self.body_memory).unwrap_or(usize::MAX)
    }

    /// The parsed enrollment tokens.
    pub fn tokens(&self) -> Result<vaultmesh_engines::auth::EnrollTokens, String> {
        let parsed: Result<Vec<_>, _> = self
            .enroll_tokens
            .iter()
            .map(|t| vaultmesh_engines::auth::EnrollToken::parse(t))
            .collect();
        parsed
            .map(vaultmesh_engines::auth::EnrollTokens)
            .map_err(|e| format!("--enroll-token: {e}"))
    }

    /// The signing key, if configured.
    pub fn load_signing_key(&self) -> Result<Option<vaultmesh_proto::auth::NodeKey>, String> {
        let Some(key) = &self.signing_key() else {
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
            heartbeats: self.heartbeats,
            observer: None,
            health: std::sync::Arc::default(),
            seen_max: vaultmesh_store::seen::DEFAULT_MAX,
            history: self.history,
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
        if self.oidc.oidc_issuer.is_some() && self.roles.is_none() {
            return Err("--oidc-issuer needs --roles: without a roles file everyone the provider signs in would be an admin; write one (vaultmesh-command-center roles check FILE) that names your admins".into());
        }
        if !self.listen.ip().is_loopback()
            && self.access.access_team_domain.is_none()
            && self.admin_token.is_none()
            && self.oidc.oidc_issuer.is_none()
        {
            return Err(format!(
                "--listen {}: the admin routes would be open to the network; listen on loopback (behind cloudflared), or set --access-team-domain and --access-aud (Cloudflare Access), or --oidc-issuer (sign-in), or --admin-token",
                self.listen
            ));
        }
        if self.agent_rate.is_nan() || self.agent_rate <= 0.0 || self.agent_burst == 0 {
            return Err("--agent-rate and --agent-burst must be positive".into());
        }
        if self.api_token_rate.is_nan() || self.api_token_rate <= 0.0 || self.api_token_burst == 0 {
            return Err("--api-token-rate and --api-token-burst must be positive".into());
        }
        if self.agent_event_rate == 0 || self.agent_event_burst == 0 {
            return Err("--agent-event-rate and --agent-event-burst must be positive".into());
        }
        if self.enroll_rate.is_nan() || self.enroll_rate <= 0.0 || self.enroll_burst == 0 {
            return Err("--enroll-rate and --enroll-burst must be positive".into());
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("--admin-token must be at least 16 characters".into());
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.starts_with(crate::api_tokens::SECRET_PREFIX))
        {
            return Err(format!(
                "--admin-token (VAULTMESH_ADMIN_TOKEN) starts with {:?}: that is a named API token, which the CLI takes; the server's admin token is a secret of your own",
                crate::api_tokens::SECRET_PREFIX
            ));
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
        if self.heartbeats.rotate_bytes < 4096 {
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
        if self.body_memory() < largest {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default is declared once, in the flags; the library's `Default`s and
    /// `ServeConfig::new` are those, they pass validation, and they are the documented values
    /// (docs/DEPLOY.md, docs/SECURITY.md).
    #[test]
    fn the_flags_defaults_are_the_librarys_and_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let c = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().join("logs"));
        c.prepare().unwrap();
        assert_eq!(c.limits, StoreLimits::default());
        assert_eq!((c.limits.history_len, c.limits.max_nodes), (240, 10_000));
        assert_eq!(c.connections, crate::listener::ConnLimits::default());
        assert_eq!(c.connections.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.sse, crate::sse::StreamLimits::default());
        assert_eq!(
            c.attention,
            vaultmesh_engines::attention::EngineOptions::default()
        );
        assert_eq!(c.attention.restart_grace, Duration::from_secs(120));
        assert_eq!(c.budgets, vaultmesh_engines::budget::Limits::default());
        assert_eq!(c.budgets.heartbeats, 16 << 20);
        assert_eq!(c.fleet_budgets.scans, 8 << 30);
        assert_eq!(c.body_memory(), 64 << 20);
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.heartbeats.retention, Duration::from_secs(48 * 3600));
        assert_eq!(c.heartbeats.rotate_every, Duration::from_secs(3600));
        assert_eq!(
            c.heartbeats.zstd_level,
            vaultmesh_store::compress::DEFAULT_LEVEL
        );
        assert_eq!(c.min_free, vaultmesh_store::health::MinFree::Percent(5.0));
        assert!(c.signing_key_file.is_none() && c.enroll_tokens.is_empty());
    }
}
