//! The demo's own profile, `Demo`: what the demo asks of this host (and of the simulated nodes
//! that report it), written into the demo's policy directory at every start.
//!
//! It asks only for what this host can have, so an ordinary laptop or CI machine is OK or shows
//! genuine findings (a busy CPU, an unhardened sysctl), never the demo contradicting itself:
//! - no required services: the demo's agent is not told to check any unit;
//! - a Cloudflare Tunnel only when one is running here (cloudflared's metrics server answers),
//!   in which case the agent checks it and a down tunnel is CRIT;
//! - listeners are not judged (a workstation listens on what its owner runs);
//! - staleness at 6 and 18 heartbeat intervals, so a node that stops is seen within the demo.

use std::time::Duration;

use vaultmesh_process::duration;

/// The profile the demo's agent and some simulated nodes report.
pub const PROFILE: &str = "Demo";

/// Where cloudflared's metrics server listens by default (the agent's `cloudflared` check
/// asks the same address).
pub const CLOUDFLARED_METRICS: &str = "http://127.0.0.1:20241";

/// Heartbeat intervals without a heartbeat before a `Demo` node is ATTN, and CRIT.
pub const STALE_INTERVALS: u32 = 6;
pub const CRITICAL_INTERVALS: u32 = 18;

/// What the demo found on this host that its profile depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// cloudflared's metrics server answered: a tunnel runs here, so the demo checks it.
    pub tunnel: bool,
}

impl Host {
    /// Looks: asks cloudflared's `/ready` at `metrics_url`. Any HTTP answer (ready or not)
    /// means cloudflared runs here; no answer means there is no tunnel to check.
    pub async fn probe(metrics_url: &str) -> Host {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build();
        let tunnel = match client {
            Ok(c) => c
                .get(format!("{}/ready", metrics_url.trim_end_matches('/')))
                .send()
                .await
                .is_ok(),
            Err(_) => false,
        };
        Host { tunnel }
    }
}

/// The `Demo` policy file for a fleet heartbeating every `interval` on `host`.
pub fn policy(host: Host, interval: Duration) -> String {
    let stale = duration::format(interval.saturating_mul(STALE_INTERVALS));
    let critical = duration::format(interval.saturating_mul(CRITICAL_INTERVALS));
    let (tunnel, why) = if host.tunnel {
        (
            "crit",
            "cloudflared runs on this host, so the demo's agent checks it",
        )
    } else {
        (
            "ok",
            "no cloudflared on this host: a tunnel is not asked for",
        )
    };
    format!(
        r#"# The demo's profile, written by `vaultmesh-command-center demo` at every start: it asks
# only for what this host can have (docs: README.md, "Try it"). Edits are overwritten.

[commands]
allow = [
  {{ action = "agent.ping" }},
  {{ action = "checks.run", args = {{ name = "cloudflared|disk|load|memory|sovereign_scan|systemd" }} }},
  {{ action = "service.status", args = {{ unit = "[A-Za-z0-9@_.-]+\\.(service|socket|timer)" }} }},
  {{ action = "scan.sovereign" }},
]

[services]
# The demo's agent is not told to check any unit, so none is required.
required = []

[attention]
stale_after = "{stale}"        # {STALE_INTERVALS} heartbeat intervals
critical_after = "{critical}"     # {CRITICAL_INTERVALS} heartbeat intervals
tunnel = "{tunnel}"              # {why}
listeners = "ok"             # a workstation listens on what its owner runs

[scan]
interval = "6h"
"#
    )
}

/// The agent configuration the demo runs this host's agent with (checks only).
pub fn agent_checks(host: Host) -> String {
    if host.tunnel {
        format!("[checks.cloudflared]\nmetrics_url = \"{CLOUDFLARED_METRICS}\"\n")
    } else {
        "[checks.cloudflared]\nenabled = false\n".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vaultmesh_proto::AttentionLevel;

    fn load(text: &str) -> vaultmesh_store::policy::Policies {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("{PROFILE}.toml")), text).unwrap();
        vaultmesh_store::policy::Policies::load(Some(dir.path())).unwrap()
    }

    #[test]
    fn the_demo_profile_asks_for_a_tunnel_only_when_one_runs() {
        for (tunnel, level) in [(false, AttentionLevel::Ok), (true, AttentionLevel::Crit)] {
            let text = policy(Host { tunnel }, Duration::from_secs(5));
            let policies = load(&text);
            let s = policies.settings(PROFILE);
            assert_eq!(s.attention.tunnel, level, "{text}");
            assert!(s.services.required.is_empty());
            assert_eq!(s.attention.listeners, AttentionLevel::Ok);
            assert_eq!(s.attention.stale_after, Duration::from_secs(30));
            assert_eq!(s.attention.critical_after, Duration::from_secs(90));
        }
    }

    #[test]
    fn staleness_follows_the_interval() {
        let policies = load(&policy(Host { tunnel: false }, Duration::from_secs(60)));
        let s = policies.settings(PROFILE);
        assert_eq!(s.attention.stale_after, Duration::from_secs(360));
        assert_eq!(s.attention.critical_after, Duration::from_secs(1080));
    }

    #[test]
    fn the_agent_checks_the_tunnel_only_when_one_runs() {
        let off: toml::Table = toml::from_str(&agent_checks(Host { tunnel: false })).unwrap();
        assert_eq!(
            off["checks"]["cloudflared"]["enabled"].as_bool(),
            Some(false)
        );
        let on: toml::Table = toml::from_str(&agent_checks(Host { tunnel: true })).unwrap();
        assert!(on["checks"]["cloudflared"].get("enabled").is_none());
    }

    #[tokio::test]
    async fn no_answer_is_no_tunnel_and_any_answer_is_one() {
        // A port nothing listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        assert!(!Host::probe(&url).await.tunnel);
        // cloudflared without an edge connection answers 503: it runs, so it is checked.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        assert!(Host::probe(&url).await.tunnel);
    }
}
