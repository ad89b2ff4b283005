//! The agent's configuration: `/etc/vaultmesh/agent.toml` plus environment overrides.
//!
//! Precedence: environment > file > defaults. A missing file at the default path means
//! defaults; a missing file at a path the operator named is an error. Every error names the
//! file (or `environment`), the key and the reason on one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use vaultmesh_process::duration;

/// Where the agent looks for its config file unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vaultmesh/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vaultmesh/agent";
pub const DEFAULT_ROOT: &str = "/var/lib/vaultmesh";
pub const DEFAULT_CC_URL: &str = "http://127.0.0.1:8088";
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on the heartbeat interval.
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));

/// One configuration problem. `file` is the config path or `environment`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: impl Into<String>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Every problem found while loading, so an operator fixes them all in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The file as written. Everything optional; defaults and environment fill the rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    agent: AgentSection,
    /// `[checks.<name>]` tables, interpreted by the check registry.
    #[serde(default)]
    checks: BTreeMap<String, toml::Table>,
    #[serde(default)]
    commands: CommandsSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandsSection {
    /// Actions this node will run when a correctly signed command asks; everything else is
    /// rejected (with a signed receipt).
    #[serde(default = "default_allow")]
    allow: Vec<String>,
    /// `[commands.service]`: what the service actions may touch, and where systemd is.
    #[serde(default)]
    service: crate::action::ServiceSettings,
}

impl Default for CommandsSection {
    fn default() -> Self {
        CommandsSection {
            allow: default_allow(),
            service: Default::default(),
        }
    }
}

/// `[commands] allow` when the file has none: the two read-only actions.
pub const DEFAULT_ALLOW: [&str; 2] = ["agent.ping", "scan.sovereign"];

fn default_allow() -> Vec<String> {
    DEFAULT_ALLOW.map(String::from).to_vec()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    cc_url: Option<String>,
    os_profile: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    interval: Option<Duration>,
    state_dir: Option<PathBuf>,
    vaultmesh_root: Option<PathBuf>,
    hostname: Option<String>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    request_timeout: Option<Duration>,
    /// The Command Center's command-signing public key (base64), as `keygen` printed it.
    cc_public_key: Option<String>,
    /// Accept a plain `http://` `cc_url` whose host is not loopback (default false).
    #[serde(default)]
    allow_insecure_http: bool,
    /// `labels = { site = "fra1" }`: sent in every heartbeat ([`vaultmesh_proto::labels`]).
    #[serde(default)]
    labels: vaultmesh_proto::labels::Labels,
}

/// The agent's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The file that was read, if any.
    pub source: Option<PathBuf>,
    /// Base URL of the Command Center (`VAULTMESH_CC_URL`).
    pub cc_url: String,
    /// OS profile (`VAULTMESH_OS_PROFILE`); picks the policy file on the Command Center.
    pub os_profile: String,
    /// Heartbeat interval (`VAULTMESH_INTERVAL`).
    pub interval: Duration,
    /// Where the node id (and later the node key) live (`VAULTMESH_STATE_DIR`).
    pub state_dir: PathBuf,
    /// Root of the VaultMesh installation (`VAULTMESH_ROOT`).
    pub vaultmesh_root: PathBuf,
    /// Hostname override; the kernel's hostname otherwise.
    pub hostname: Option<String>,
    /// Timeout of one request to the Command Center.
    pub request_timeout: Duration,
    /// Raw `[checks.<name>]` tables, validated by [`crate::registry::configure`].
    pub checks: BTreeMap<String, toml::Table>,
    /// Enrollment token (`VAULTMESH_ENROLL_TOKEN`, environment only: it is a secret).
    pub enroll_token: Option<Secret>,
    /// The pinned command-signing key (`VAULTMESH_CC_PUBKEY` or `agent.cc_public_key`); without
    /// it every command is rejected.
    pub cc_public_key: Option<String>,
    /// `[commands] allow`: the actions this node runs.
    pub command_allow: Vec<String>,
    /// `[commands.service]`: the service actions' local settings.
    pub command_service: crate::action::ServiceSettings,
    /// A Cloudflare Access service token (`VAULTMESH_CF_ACCESS_CLIENT_ID` and
    /// `VAULTMESH_CF_ACCESS_CLIENT_SECRET`, environment only), sent as `CF-Access-Client-Id` /
    /// `CF-Access-Client-Secret` when agent routes also sit behind Access.
    pub access_service_token: Option<(String, Secret)>,
    /// `[agent] labels`: the node's labels, sent in every heartbeat.
    pub labels: vaultmesh_proto::labels::Labels,
}

/// A secret string: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl AgentConfig {
    /// Loads from the process environment. `explicit_path` is `--config`/`VAULTMESH_CONFIG` if
    /// given; otherwise [`DEFAULT_CONFIG_PATH`] is read if it exists.
    pub fn load(explicit_path: Option<&Path>) -> Result<AgentConfig, ConfigErrors> {
        Self::load_with(explicit_path, |k| std::env::var(k).ok())
    }

    /// Like [`AgentConfig::load`] with an injected environment (tests).
    pub fn load_with(
        explicit_path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigErrors> {
        let (path, required) = match explicit_path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let (file, source) = match std::fs::read_to_string(&path) {
            Ok(text) => (parse_file(&path, &text)?, Some(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                (FileConfig::default(), None)
            }
            Err(e) => {
                return Err(ConfigError::new(
                    path.display().to_string(),
                    "-",
                    format!("cannot read: {e}"),
                )
                .into());
            }
        };
        resolve(file, source, &env)
    }

    /// Parses config text as if read from `path` (used by tests and `config check`).
    pub fn from_toml_with(
        path: &Path,
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigErrors> {
        let file = parse_file(path, text)?;
        resolve(file, Some(path.to_path_buf()), &env)
    }

    /// Name of the file for error messages.
    pub fn file_label(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "defaults".to_string(), |p| p.display().to_string())
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let label = path.display().to_string();
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or_default();
        ConfigError::new(&label, at, e.message().trim().replace('\n', " "))
    })?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { "-".to_string() } else { key };
        ConfigError::new(&label, key, one_line(&e.inner().to_string()))
    })
}

/// Error text from serde/toml on one line, without the trailing `in `table`` noise.
pub(crate) fn one_line(text: &str) -> String {
    let text = text.replace('\n', " ");
    let text = text.trim();
    match text.rfind(" in `") {
        Some(i) if text.ends_with('`') => text[..i].to_string(),
        _ => text.to_string(),
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line} column {col}")
}

fn resolve(
    file: FileConfig,
    source: Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigErrors> {
    let label = source
        .as_ref()
        .map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
    let mut errors = Vec::new();
    let a = file.agent;

    // Each value: (from env?) else file else default, remembering where it came from.
    let pick =
        |var: &str, key: &str, file_val: Option<String>| -> Option<(String, String, String)> {
            if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
                return Some((v, "environment".into(), var.into()));
            }
            file_val.map(|v| (v, label.clone(), format!("agent.{key}")))
        };

    let cc_url = match pick("VAULTMESH_CC_URL", "cc_url", a.cc_url) {
        Some((v, f, k)) => {
            match validate_url(&v, a.allow_insecure_http).and_then(not_a_placeholder_url) {
                Ok(u) => u,
                Err(r) => {
                    errors.push(ConfigError::new(f, k, r));
                    String::new()
                }
            }
        }
        None => DEFAULT_CC_URL.to_string(),
    };

    let os_profile = match pick("VAULTMESH_OS_PROFILE", "os_profile", a.os_profile) {
        Some((v, f, k)) => {
            if let Err(r) = validate_profile(&v) {
                errors.push(ConfigError::new(f, k, r));
            } else if let Some(meant) =
                vaultmesh_process::suggest::other_case(&v, crate::host::PROFILES)
            {
                errors.push(ConfigError::new(
                    f,
                    k,
                    format!(
                        "{v:?} is not a profile: profiles name policy files, whose case matters; did you mean {meant:?}?"
                    ),
                ));
            }
            v
        }
        None => crate::host::detect_profile(),
    };

    let interval = match env("VAULTMESH_INTERVAL").filter(|v| !v.trim().is_empty()) {
        Some(v) => duration::parse(&v)
            .map_err(|r| ConfigError::new("environment", "VAULTMESH_INTERVAL", r))
            .and_then(|d| bounded(d, "environment", "VAULTMESH_INTERVAL")),
        None => bounded(
            a.interval.unwrap_or(DEFAULT_INTERVAL),
            &label,
            "agent.interval",
        ),
    }
    .unwrap_or_else(|e| {
        errors.push(e);
        DEFAULT_INTERVAL
    });

    let request_timeout = a.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    if request_timeout < Duration::from_millis(100) || request_timeout > Duration::from_secs(300) {
        errors.push(ConfigError::new(
            &label,
            "agent.request_timeout",
            format!("{} is outside 100ms..5m", duration::format(request_timeout)),
        ));
    }

    let path_of = |var: &str,
                   key: &str,
                   file_val: Option<PathBuf>,
                   default: &str,
                   errors: &mut Vec<ConfigError>| {
        let (p, f, k) = match env(var).filter(|v| !v.trim().is_empty()) {
            Some(v) => (PathBuf::from(v), "environment".to_string(), var.to_string()),
            None => (
                file_val.unwrap_or_else(|| PathBuf::from(default)),
                label.clone(),
                format!("agent.{key}"),
            ),
        };
        if !p.is_absolute() {
            errors.push(ConfigError::new(
                f,
                k,
                format!("{} must be an absolute path", p.display()),
            ));
        }
        p
    };
    let state_dir = path_of(
        "VAULTMESH_STATE_DIR",
        "state_dir",
        a.state_dir,
        DEFAULT_STATE_DIR,
        &mut errors,
    );
    let vaultmesh_root = path_of(
        "VAULTMESH_ROOT",
        "vaultmesh_root",
        a.vaultmesh_root,
        DEFAULT_ROOT,
        &mut errors,
    );

    let cc_public_key = match pick("VAULTMESH_CC_PUBKEY", "cc_public_key", a.cc_public_key) {
        Some((v, f, k)) => match vaultmesh_proto::auth::parse_public_key(&v) {
            Ok(_) if vaultmesh_proto::auth::is_published(&v) => {
                errors.push(ConfigError::new(
                    f,
                    k,
                    "is the documentation's example key, whose private key is published (docs/PROTOCOL.md): replace it with your Command Center's public key, as `vaultmesh-command-center keygen` printed it",
                ));
                None
            }
            Ok(_) => Some(v.trim().to_string()),
            Err(e) => {
                errors.push(ConfigError::new(f, k, e.to_string()));
                None
            }
        },
        None => None,
    };
    for (i, name) in file.commands.allow.iter().enumerate() {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
        {
            errors.push(ConfigError::new(
                &label,
                format!("commands.allow[{i}]"),
                format!("{name:?} is not an action name like service.restart"),
            ));
        }
    }

    for (key, reason) in file.commands.service.problems(&file.commands.allow) {
        errors.push(ConfigError::new(
            &label,
            format!("commands.service.{key}"),
            reason,
        ));
    }

    let enroll_token = env("VAULTMESH_ENROLL_TOKEN")
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret(t.trim().to_string()));
    if enroll_token
        .as_ref()
        .is_some_and(|t| placeholders::is_token(&t.0))
    {
        errors.push(ConfigError::new(
            "environment",
            "VAULTMESH_ENROLL_TOKEN",
            "is the example's placeholder (change-me-...): replace it with one of the Command Center's enrollment tokens",
        ));
    }

    let hostname = a.hostname.filter(|h| !h.trim().is_empty());
    if let Some(h) = &hostname
        && (h.len() > vaultmesh_proto::heartbeat::limits::HOSTNAME_MAX
            || h.chars().any(char::is_control))
    {
        errors.push(ConfigError::new(
            &label,
            "agent.hostname",
            "must be at most 253 printable bytes",
        ));
    }

    if let Err(e) = vaultmesh_proto::labels::check(&a.labels) {
        errors.push(ConfigError::new(&label, "agent.labels", e.to_string()));
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(AgentConfig {
        labels: a.labels,
        source,
        cc_url,
        os_profile,
        interval,
        state_dir,
        vaultmesh_root,
        hostname,
        request_timeout,
        checks: file.checks,
        cc_public_key,
        command_allow: file.commands.allow,
        command_service: file.commands.service,
        enroll_token,
        access_service_token: match (
            env("VAULTMESH_CF_ACCESS_CLIENT_ID").filter(|v| !v.trim().is_empty()),
            env("VAULTMESH_CF_ACCESS_CLIENT_SECRET").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(id), Some(secret)) => {
                Some((id.trim().to_string(), Secret(secret.trim().to_string())))
            }
            (None, None) => None,
            _ => {
                return Err(ConfigErrors(vec![ConfigError::new(
                    "environment",
                    "VAULTMESH_CF_ACCESS_CLIENT_ID",
                    "set both VAULTMESH_CF_ACCESS_CLIENT_ID and VAULTMESH_CF_ACCESS_CLIENT_SECRET, or neither",
                )]));
            }
        },
    })
}

fn bounded(d: Duration, file: &str, key: &str) -> Result<Duration, ConfigError> {
    if d < INTERVAL_RANGE.0 || d > INTERVAL_RANGE.1 {
        return Err(ConfigError::new(
            file,
            key,
            format!("{} is outside 1s..24h", duration::format(d)),
        ));
    }
    Ok(d)
}

/// Whether a URL's host is this machine: `localhost`, `127.0.0.0/8` or `::1` (IPv4 in any
/// form the system's resolver takes, such as `127.1` or `0x7f.1`; IPv6 bracketed or not).
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || ipv4_any_form(host).is_some_and(|ip| ip.is_loopback())
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An IPv4 address in the forms `inet_aton` (so the resolver the agent connects with) and
/// URL parsers take: one to four parts, each decimal, `0x` hexadecimal or `0` octal, the last
/// filling the bytes left (`127.1` is `127.0.0.1`). Nothing else: `inet_aton` refuses a sign
/// (`127.0.0.+1`) and a trailing dot (`127.0.0.1.`), so the resolver would look those up as
/// names, and a name is not known to be this machine.
fn ipv4_any_form(host: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (h, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (*p, 10)
        };
        if (digits.is_empty() && radix != 16) || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        let n = if digits.is_empty() {
            0
        } else {
            u32::from_str_radix(digits, radix).ok()?
        };
        nums.push(n);
    }
    let (last, first) = nums.split_last()?;
    if first.iter().any(|&n| n > 255) || u64::from(*last) >= 1u64 << (8 * (4 - first.len())) {
        return None;
    }
    let mut ip = *last;
    for (i, &n) in first.iter().enumerate() {
        ip |= n << (24 - 8 * i);
    }
    Some(std::net::Ipv4Addr::from(ip))
}

/// Parses an `http(s)://` URL of the config (`v`, trimmed) into the URI the agent's client
/// requests; the error says why, quoting `v`.
pub fn parse_url(v: &str) -> Result<http::Uri, String> {
    let uri = v
        .trim()
        .parse::<http::Uri>()
        .map_err(|e| format!("{v:?} is not a URL ({e})"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{v:?} names no host"));
    }
    if let Some(a) = uri.authority() {
        if a.as_str().contains('@') {
            return Err(format!(
                "{v:?} holds a user name or password: the agent does not send them"
            ));
        }
        // `http::Uri` keeps a port it cannot read as a number as no port at all.
        let a = a.as_str();
        let after_host = a.rfind(']').map_or(a, |i| &a[i + 1..]);
        let port = after_host.rsplit_once(':').map_or("", |(_, p)| p);
        if !port.is_empty() && !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(format!("{v:?} has a port outside 1-65535"));
        }
    }
    Ok(uri)
}

/// The Command Center's URL: `https://`, or `http://` to a loopback host (`127.0.0.0/8`,
/// `::1`, `localhost`) unless `allow_insecure_http`: heartbeats, scan reports and commands
/// would otherwise cross the network readable and alterable by anyone on the path.
fn validate_url(v: &str, allow_insecure_http: bool) -> Result<String, String> {
    let url = parse_url(v)?;
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{v:?} must start with https:// (or http:// for loopback)"
        ));
    }
    let Some(host) = url.host().filter(|h| !h.is_empty()) else {
        return Err(format!("{v:?} has no host"));
    };
    if url.scheme_str() == Some("http") && !is_loopback_host(host) && !allow_insecure_http {
        return Err(format!(
            "{v:?} is plain http:// to a host that is not loopback: use https://, or set agent.allow_insecure_http = true"
        ));
    }
    Ok(v.trim().trim_end_matches('/').to_string())
}

/// Values the shipped examples (`docs/agent.example.toml`, `systemd/agent.env.example`) and the
/// docs hold in place of an operator's own. An unedited copy must not run: the agent would
/// report nowhere, or trust a key whose private half is public.
/// (The docs' worked-example keys are [`vaultmesh_proto::auth::PUBLISHED_KEYS`].)
mod placeholders {
    /// `change-me-to-the-fleet-enrollment-token` and the like.
    pub fn is_token(token: &str) -> bool {
        let t = token.to_ascii_lowercase();
        t.contains("change-me") || t.contains("changeme")
    }

    /// Names reserved for documentation (RFC 2606): `example.com`, `.net`, `.org` and their
    /// subdomains, and the `.example` and `.invalid` top-level domains.
    pub fn is_example_host(host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        let under = |d: &str| h == d || h.ends_with(&format!(".{d}"));
        [
            "example.com",
            "example.net",
            "example.org",
            "example",
            "invalid",
        ]
        .into_iter()
        .any(under)
    }
}

/// Refuses a Command Center URL on a documentation domain (`https://cc.example.com`).
fn not_a_placeholder_url(url: String) -> Result<String, String> {
    let host = parse_url(&url)
        .ok()
        .and_then(|u| u.host().map(str::to_string));
    if host.as_deref().is_some_and(placeholders::is_example_host) {
        return Err(format!(
            "{url:?} is the example's placeholder: replace it with your Command Center's URL (its Cloudflare Tunnel hostname)"
        ));
    }
    Ok(url)
}

/// Profiles name a policy file, so they are restricted to a safe file-name alphabet.
pub fn validate_profile(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<AgentConfig, ConfigErrors> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AgentConfig::from_toml_with(Path::new("/etc/vaultmesh/agent.toml"), text, |k| {
            env.get(k).cloned()
        })
    }

    fn error_of(text: &str, env: &[(&str, &str)]) -> String {
        load(text, env).unwrap_err().to_string()
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("", &[("VAULTMESH_OS_PROFILE", "ArchVault")]).unwrap();
        assert_eq!(c.cc_url, DEFAULT_CC_URL);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.vaultmesh_root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(c.os_profile, "ArchVault");
        assert!(c.checks.is_empty());
    }

    #[test]
    fn environment_overrides_file() {
        let text = "[agent]\ncc_url = \"https://file.vault.test\"\ninterval = \"10s\"\nos_profile = \"DebianVault\"\n";
        let c = load(text, &[]).unwrap();
        assert_eq!(
            (c.cc_url.as_str(), c.interval.as_secs()),
            ("https://file.vault.test", 10)
        );
        let c = load(
            text,
            &[
                ("VAULTMESH_CC_URL", "https://env.vault.test/"),
                ("VAULTMESH_INTERVAL", "5"),
                ("VAULTMESH_OS_PROFILE", "ArchVault"),
                ("VAULTMESH_STATE_DIR", "/tmp/state"),
                ("VAULTMESH_ROOT", "/srv/vm"),
            ],
        )
        .unwrap();
        assert_eq!(c.cc_url, "https://env.vault.test");
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.os_profile, "ArchVault");
        assert_eq!(c.state_dir, PathBuf::from("/tmp/state"));
        assert_eq!(c.vaultmesh_root, PathBuf::from("/srv/vm"));
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                "[agent]\nintervl = 3\n",
                &[],
                "/etc/vaultmesh/agent.toml: agent.intervl: unknown field `intervl`, expected one of `cc_url`",
            ),
            (
                "[agent]\ninterval = \"soon\"\n",
                &[],
                "/etc/vaultmesh/agent.toml: agent.interval: \"soon\" is not a duration",
            ),
            (
                "[agent]\ninterval = \"0s\"\n",
                &[],
                "agent.interval: 0s is outside 1s..24h",
            ),
            (
                "[agent]\ncc_url = \"ftp://x\"\n",
                &[],
                "agent.cc_url: \"ftp://x\" must start with https://",
            ),
            (
                "",
                &[("VAULTMESH_CC_URL", "http://cc.fleet.test")],
                "environment: VAULTMESH_CC_URL: \"http://cc.fleet.test\" is plain http:// to a host that is not loopback: use https://, or set agent.allow_insecure_http = true",
            ),
            (
                "[agent]\ncc_url = \"http://10.0.0.5:8088\"\n",
                &[],
                "/etc/vaultmesh/agent.toml: agent.cc_url: \"http://10.0.0.5:8088\" is plain http://",
            ),
            (
                "[agent]\nallow_insecure_http = \"yes\"\n",
                &[],
                "agent.allow_insecure_http: invalid type: string \"yes\", expected a boolean",
            ),
            (
                "",
                &[("VAULTMESH_INTERVAL", "forever")],
                "environment: VAULTMESH_INTERVAL: \"forever\" is not a duration",
            ),
            (
                "",
                &[("VAULTMESH_OS_PROFILE", "../etc")],
                "environment: VAULTMESH_OS_PROFILE: \"../etc\" must be",
            ),
            (
                "[agent]\nos_profile = \"archvault\"\n",
                &[],
                "agent.os_profile: \"archvault\" is not a profile: profiles name policy files, whose case matters; did you mean \"ArchVault\"?",
            ),
            (
                "[agent]\ncc_url = \"https://cc.example.com\"\n",
                &[],
                "agent.cc_url: \"https://cc.example.com\" is the example's placeholder: replace it",
            ),
            (
                "",
                &[("VAULTMESH_CC_URL", "https://cc.your-domain.example")],
                "environment: VAULTMESH_CC_URL: \"https://cc.your-domain.example\" is the example's placeholder",
            ),
            (
                "",
                &[(
                    "VAULTMESH_ENROLL_TOKEN",
                    "change-me-to-the-fleet-enrollment-token",
                )],
                "environment: VAULTMESH_ENROLL_TOKEN: is the example's placeholder",
            ),
            (
                "[agent]\ncc_public_key = \"6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=\"\n",
                &[],
                "agent.cc_public_key: is the documentation's example key",
            ),
            (
                "",
                &[(
                    "VAULTMESH_CC_PUBKEY",
                    "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=",
                )],
                "VAULTMESH_CC_PUBKEY: is the documentation's example key",
            ),
            (
                "",
                &[("VAULTMESH_STATE_DIR", "relative/dir")],
                "VAULTMESH_STATE_DIR: relative/dir must be an absolute path",
            ),
            ("[agent\n", &[], "/etc/vaultmesh/agent.toml: line 1 column"),
            (
                "[bogus]\n",
                &[],
                "/etc/vaultmesh/agent.toml: bogus: unknown field `bogus`",
            ),
            (
                "[checks]\ndisk = 3\n",
                &[],
                "/etc/vaultmesh/agent.toml: checks.disk: invalid type",
            ),
        ];
        for (text, env, want) in cases {
            let err = error_of(text, env);
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
            assert!(!err.contains('\n'), "one line per error: {err:?}");
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let err = load(
            "[agent]\ninterval = \"0s\"\ncc_url = \"nope\"\n",
            &[("VAULTMESH_OS_PROFILE", "a b")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_named_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("agent.toml");
        let err = AgentConfig::load_with(Some(&missing), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn labels_are_read_checked_and_a_bad_one_names_its_key() {
        let c = load(
            "[agent]\nlabels = { site = \"fra1\", role = \"db\" }\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.labels["site"], "fra1");
        assert_eq!(c.labels["role"], "db");
        let err = load("[agent]\nlabels = { Site = \"fra 1\" }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.labels"), "{err}");
        assert!(err.contains("\"Site\""), "{err}");
        let err = load("[agent]\nlabels = { site = \"fra\u{202e}1\" }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.labels"), "{err}");
        let err = load("[agent]\nlabel = { site = \"fra1\" }\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels"), "the near name: {err}");
    }

    #[test]
    fn check_tables_are_kept_raw() {
        let c = load(
            "[checks.disk]\nwarn_pct = 80\n[checks.load]\nenabled = false\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.checks.len(), 2);
        assert_eq!(c.checks["disk"]["warn_pct"].as_integer(), Some(80));
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for url in [
            "http://127.0.0.1:8088",
            "http://127.1:8088",
            "http://0x7f.1:8088",
            "http://2130706433",
            "http://127.200.0.1",
            "http://localhost:8088",
            "http://LOCALHOST",
            "http://[::1]:8088",
            "https://cc.fleet.test",
            "https://10.0.0.5",
        ] {
            let c = load("", &[("VAULTMESH_CC_URL", url)]);
            assert!(c.is_ok(), "{url}: {c:?}");
        }
        for url in [
            "http://cc.fleet.test",
            "http://10.0.0.5:8088",
            "http://[::ffff:127.0.0.1]",
            "http://localhost.evil.test",
            "http://0.0.0.0:8088",
            "http://128.1",
            "http://127.0.0.1.evil.test",
            // inet_aton takes neither: the resolver would look them up as names.
            "http://127.0.0.1.",
            "http://127.0.0.+1",
            "http://0x+7f.1",
        ] {
            assert!(load("", &[("VAULTMESH_CC_URL", url)]).is_err(), "{url}");
            let allowed = load(
                "[agent]\nallow_insecure_http = true\n",
                &[("VAULTMESH_CC_URL", url)],
            );
            assert!(allowed.is_ok(), "{url}: {allowed:?}");
        }
    }

    #[test]
    fn a_url_with_credentials_or_a_bad_port_is_refused_naming_the_key() {
        for (url, want) in [
            (
                "https://user:pw@cc.fleet.test",
                "VAULTMESH_CC_URL: \"https://user:pw@cc.fleet.test\" holds a user name or password",
            ),
            (
                "http://:8088",
                "VAULTMESH_CC_URL: \"http://:8088\" names no host",
            ),
            (
                "https://cc.fleet.test:70000",
                "VAULTMESH_CC_URL: \"https://cc.fleet.test:70000\" has a port outside 1-65535",
            ),
            (
                "https://cc fleet",
                "VAULTMESH_CC_URL: \"https://cc fleet\" is not a URL (",
            ),
            ("https://", "VAULTMESH_CC_URL: \"https://\""),
        ] {
            let err = load("", &[("VAULTMESH_CC_URL", url)])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
