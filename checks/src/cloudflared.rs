//! `cloudflared`: is this node's Cloudflare Tunnel connected?
//!
//! Asks cloudflared's metrics server (`--metrics 127.0.0.1:20241`) for `GET /ready`, which
//! answers `{"status":200,"readyConnections":N,"connectorId":...}` — 200 when at least one
//! connection to the edge is up, 503 otherwise. Ok when `N ≥ min_connections`; warn when some but
//! fewer are up; crit on 503, zero connections, an unreadable reply, a timeout or no answer.
//! Optionally also checks the cloudflared systemd unit over D-Bus. The heartbeat's
//! `cloudflare_ok` is this check's verdict (ok or warn).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use vaultmesh_agent_core::client::{ACK_REPLY_MAX, BodyError, http_client_builder, read_body};
use vaultmesh_agent_core::registry::{CheckConfigError, CheckRegistration, parse_table};
use vaultmesh_agent_core::{Check, CheckContext, CheckOutcome, Contribution};
use vaultmesh_process::duration;
use vaultmesh_process::error_chain;
use vaultmesh_proto::CheckStatus;

#[cfg(feature = "systemd")]
use crate::systemd::{Expect, SystemdClient};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CloudflaredConfig {
    /// Base URL of cloudflared's metrics server. Keep it on loopback: its /debug and /config
    /// endpoints have no access control.
    metrics_url: String,
    /// Edge connections needed for ok (cloudflared normally keeps 4).
    min_connections: u32,
    /// Timeout of the `/ready` request.
    #[serde(deserialize_with = "vaultmesh_process::duration::deserialize")]
    http_timeout: Duration,
    /// If set, this systemd unit must be active too (e.g. `cloudflared.service`).
    unit: Option<String>,
    /// D-Bus address for the unit check instead of the system bus.
    bus_address: Option<String>,
}

impl Default for CloudflaredConfig {
    fn default() -> Self {
        CloudflaredConfig {
            metrics_url: "http://127.0.0.1:20241".into(),
            min_connections: 1,
            http_timeout: Duration::from_secs(3),
            unit: None,
            bus_address: None,
        }
    }
}

#[derive(Debug)]
struct Cloudflared {
    ready_url: String,
    min_connections: u32,
    http_timeout: Duration,
    http: vaultmesh_agent_core::http1::Client,
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))]
    unit: Option<String>,
    #[cfg_attr(not(feature = "systemd"), allow(dead_code))]
    bus_address: Option<String>,
}

/// cloudflared's `/ready` body.
#[derive(Debug, Deserialize)]
struct Ready {
    #[serde(rename = "readyConnections")]
    ready_connections: u32,
    #[serde(rename = "connectorId", default)]
    connector_id: Option<String>,
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Reply {
        status: u16,
        body: Vec<u8>,
    },
    TimedOut,
    Unreachable(String),
    /// The body was longer than [`READY_MAX`]: not read.
    TooLarge,
}

/// Largest `/ready` body read (cloudflared's is about 100 bytes).
const READY_MAX: usize = ACK_REPLY_MAX;

impl Cloudflared {
    fn new(c: CloudflaredConfig) -> Result<Self, CheckConfigError> {
        let url = vaultmesh_agent_core::config::parse_url(&c.metrics_url)
            .map_err(|e| CheckConfigError::new("metrics_url", e))?;
        if url.scheme_str() != Some("http") && url.scheme_str() != Some("https") {
            return Err(CheckConfigError::new(
                "metrics_url",
                "must be an http:// URL",
            ));
        }
        if c.min_connections == 0 {
            return Err(CheckConfigError::new(
                "min_connections",
                "must be at least 1",
            ));
        }
        if c.http_timeout < Duration::from_millis(10) || c.http_timeout > Duration::from_secs(60) {
            return Err(CheckConfigError::new(
                "http_timeout",
                "must be between 10ms and 60s",
            ));
        }
        if cfg!(not(feature = "systemd")) && c.unit.is_some() {
            return Err(CheckConfigError::new(
                "unit",
                "this agent was built without the systemd feature, so it cannot check a unit",
            ));
        }
        // The node's own cloudflared, probed directly: never through a proxy from the
        // environment.
        let http = http_client_builder(c.http_timeout)
            .no_proxy()
            .build()
            .map_err(|e| {
                CheckConfigError::new("metrics_url", format!("cannot build an HTTP client: {e}"))
            })?;
        Ok(Cloudflared {
            ready_url: format!("{}/ready", c.metrics_url.trim().trim_end_matches('/')),
            min_connections: c.min_connections,
            http_timeout: c.http_timeout,
            http,
            unit: c.unit,
            bus_address: c.bus_address,
        })
    }

    async fn probe(&self) -> Probe {
        let resp = match self.http.get(&self.ready_url).await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Probe::TimedOut,
            Err(e) => return Probe::Unreachable(error_chain(&e)),
        };
        let status = resp.status().as_u16();
        match read_body(resp, READY_MAX).await {
            Ok(body) => Probe::Reply { status, body },
            Err(BodyError::TooLarge { .. }) => Probe::TooLarge,
            Err(e) if e.is_timeout() => Probe::TimedOut,
            Err(BodyError::Read(e)) => Probe::Unreachable(error_chain(&e)),
        }
    }

    fn evaluate(&self, probe: &Probe) -> CheckOutcome {
        let body_of = |status: u16, body: &[u8]| -> Result<Ready, String> {
            serde_json::from_slice::<Ready>(body).map_err(|e| {
                let shown: String = String::from_utf8_lossy(&body[..body.len().min(80)])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                format!(
                    "cloudflared /ready answered {status} with an unreadable body ({e}): {shown:?}"
                )
            })
        };
        match probe {
            Probe::TimedOut => CheckOutcome::new(
                CheckStatus::Crit,
                format!(
                    "cloudflared did not answer {} within {}",
                    self.ready_url,
                    duration::format(self.http_timeout)
                ),
            ),
            Probe::TooLarge => CheckOutcome::new(
                CheckStatus::Crit,
                format!(
                    "cloudflared /ready answered with more than {READY_MAX} bytes (not read); is metrics_url pointing at cloudflared?"
                ),
            ),
            Probe::Unreachable(why) => CheckOutcome::new(
                CheckStatus::Crit,
                format!(
                    "cloudflared metrics unreachable at {}: {why}",
                    self.ready_url
                ),
            ),
            Probe::Reply { status, body } if *status != 200 && *status != 503 => CheckOutcome::new(
                CheckStatus::Crit,
                format!(
                    "cloudflared /ready answered HTTP {status}; is metrics_url pointing at cloudflared?"
                ),
            ),
            Probe::Reply { status, body } => match body_of(*status, body) {
                Err(why) => CheckOutcome::new(CheckStatus::Crit, why),
                Ok(ready) => {
                    let n = ready.ready_connections;
                    let (st, summary) = if n == 0 || *status == 503 {
                        (
                            CheckStatus::Crit,
                            format!(
                                "tunnel down: cloudflared reports {n} ready connections (HTTP {status})"
                            ),
                        )
                    } else if n < self.min_connections {
                        (
                            CheckStatus::Warn,
                            format!(
                                "tunnel degraded: {n} of {} wanted connections ready",
                                self.min_connections
                            ),
                        )
                    } else {
                        (
                            CheckStatus::Ok,
                            format!(
                                "tunnel up: {n} ready connection{}",
                                if n == 1 { "" } else { "s" }
                            ),
                        )
                    };
                    CheckOutcome::new(st, summary)
                        .with_metric("ready_connections", f64::from(n))
                        .with_details(serde_json::json!({ "connector_id": ready.connector_id }))
                }
            },
        }
    }

    /// Folds the unit's state into the verdict (crit if it is not active).
    #[cfg(not(feature = "systemd"))]
    async fn with_unit(&self, out: CheckOutcome) -> CheckOutcome {
        out
    }

    /// Folds the unit's state into the verdict (crit if it is not active).
    #[cfg(feature = "systemd")]
    async fn with_unit(&self, mut out: CheckOutcome) -> CheckOutcome {
        let Some(unit) = &self.unit else { return out };
        let state =
            match SystemdClient::connect(self.bus_address.as_deref(), self.http_timeout).await {
                Ok(client) => client.unit_state(unit).await,
                Err(e) => Err(e),
            };
        match state {
            Ok(s) => {
                let (status, why) = crate::systemd::unit_verdict(&s, Expect::Active);
                if let Some(why) = why {
                    out.status = out.status.worst(status);
                    out.summary = format!("{why}; {}", out.summary);
                }
            }
            Err(e) => {
                out.status = out.status.worst(CheckStatus::Warn);
                out.summary = format!("{}; unit {unit} state unknown: {e}", out.summary);
            }
        }
        out
    }
}

#[async_trait]
impl Check for Cloudflared {
    async fn run(&self, _ctx: &CheckContext) -> CheckOutcome {
        let probe = self.probe().await;
        let out = self.with_unit(self.evaluate(&probe)).await;
        // Every verdict this check reaches is ok, warn or crit: the tunnel is up or it is not.
        let up = matches!(out.status, CheckStatus::Ok | CheckStatus::Warn);
        out.contributing(Contribution::cloudflare_ok(up))
    }
}

inventory::submit! {
    CheckRegistration {
        name: "cloudflared",
        description: "Cloudflare Tunnel connected, from cloudflared's /ready (sets cloudflare_ok)",
        enabled_by_default: true,
        default_interval: Duration::from_secs(30),
        default_timeout: Duration::from_secs(10),
        example: r#"metrics_url = "http://127.0.0.1:20241"   # cloudflared --metrics; keep it on loopback
min_connections = 1
http_timeout = "3s"
# unit = "cloudflared.service"               # also require this systemd unit to be active
"#,
        build: |t| Ok(Box::new(Cloudflared::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probe: Probe, min: u32, want: CheckStatus, summary: &str) {
        let c = Cloudflared::new(CloudflaredConfig {
            min_connections: min,
            ..CloudflaredConfig::default()
        })
        .unwrap();
        let out = c.evaluate(&probe);
        assert_eq!((out.status, out.summary.as_str()), (want, summary));
    }

    fn reply(status: u16, body: &str) -> Probe {
        Probe::Reply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn verdicts() {
        use CheckStatus::*;
        check(
            reply(
                200,
                r#"{"status":200,"readyConnections":4,"connectorId":"x"}"#,
            ),
            1,
            Ok,
            "tunnel up: 4 ready connections",
        );
        check(
            reply(200, r#"{"status":200,"readyConnections":1}"#),
            1,
            Ok,
            "tunnel up: 1 ready connection",
        );
        check(
            reply(200, r#"{"status":200,"readyConnections":1}"#),
            2,
            Warn,
            "tunnel degraded: 1 of 2 wanted connections ready",
        );
        check(
            reply(503, r#"{"status":503,"readyConnections":0}"#),
            1,
            Crit,
            "tunnel down: cloudflared reports 0 ready connections (HTTP 503)",
        );
        check(
            reply(200, "<html>"),
            1,
            Crit,
            "cloudflared /ready answered 200 with an unreadable body (expected value at line 1 column 1): \"<html>\"",
        );
        check(
            reply(404, "404 page not found"),
            1,
            Crit,
            "cloudflared /ready answered HTTP 404; is metrics_url pointing at cloudflared?",
        );
        check(
            Probe::TimedOut,
            1,
            Crit,
            "cloudflared did not answer http://127.0.0.1:20241/ready within 3s",
        );
    }

    #[test]
    fn config_is_validated() {
        let t: toml::Table = toml::from_str("metrics_url = \"not a url\"").unwrap();
        assert_eq!(
            Cloudflared::new(parse_table(&t).unwrap()).unwrap_err().key,
            "metrics_url"
        );
        // Spaces around the URL are the config's, not the URL's: the probe goes to the URL.
        let t: toml::Table = toml::from_str("metrics_url = \" http://127.0.0.1:20241/ \"").unwrap();
        assert_eq!(
            Cloudflared::new(parse_table(&t).unwrap())
                .unwrap()
                .ready_url,
            "http://127.0.0.1:20241/ready"
        );
        let t: toml::Table = toml::from_str("metrics_url = \"http://:20241\"").unwrap();
        assert_eq!(
            Cloudflared::new(parse_table(&t).unwrap()).unwrap_err().key,
            "metrics_url"
        );
        let t: toml::Table = toml::from_str("min_connections = 0").unwrap();
        assert_eq!(
            Cloudflared::new(parse_table(&t).unwrap()).unwrap_err().key,
            "min_connections"
        );
    }
}
