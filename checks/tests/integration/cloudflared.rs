//! The `cloudflared` check against a local HTTP server playing cloudflared's `/ready`.

use std::time::{Duration, Instant};

use vaultmesh_agent_core::CheckRun;
use vaultmesh_agent_core::registry::ConfiguredCheck;
use vaultmesh_proto::CheckStatus;
use vaultmesh_testkit::cloudflared::{FakeCloudflared, ReadyReply};
use vaultmesh_testkit::dbus::{DbusDaemon, FakeSystemd, FakeUnit};

use super::util::{configured, heartbeat_after, run};

fn cloudflared_check(table: &str) -> ConfiguredCheck {
    configured("cloudflared", table)
}

fn cloudflare_ok(run: &CheckRun) -> bool {
    heartbeat_after(run).cloudflare_ok
}

#[tokio::test]
async fn ready_connections_decide_the_verdict() {
    let fake = FakeCloudflared::start(ReadyReply::connections(4));
    let check = cloudflared_check(&format!(
        "metrics_url = {:?}\nmin_connections = 2\n",
        fake.url()
    ));

    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (CheckStatus::Ok, "tunnel up: 4 ready connections")
    );
    assert_eq!(r.metrics["ready_connections"], 4.0);
    assert_eq!(
        r.details["connector_id"],
        "7b5a4c5e-6d7f-4a1b-9c2d-3e4f5a6b7c8d"
    );
    assert!(cloudflare_ok(&done));

    fake.set(ReadyReply::connections(1));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (
            CheckStatus::Warn,
            "tunnel degraded: 1 of 2 wanted connections ready"
        )
    );
    assert!(cloudflare_ok(&done));

    fake.set(ReadyReply::connections(0));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert_eq!(
        r.summary,
        "tunnel down: cloudflared reports 0 ready connections (HTTP 503)"
    );
    assert!(!cloudflare_ok(&done));
}

#[tokio::test]
async fn garbage_is_crit_with_what_was_seen() {
    let fake = FakeCloudflared::start(ReadyReply {
        status: 200,
        body: "}{ not json".into(),
        delay: Duration::ZERO,
    });
    let check = cloudflared_check(&format!("metrics_url = {:?}\n", fake.url()));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert!(
        r.summary
            .starts_with("cloudflared /ready answered 200 with an unreadable body"),
        "{}",
        r.summary
    );
    assert!(r.summary.ends_with("\"}{ not json\""), "{}", r.summary);
    assert!(!cloudflare_ok(&done));
}

#[tokio::test]
async fn a_huge_ready_body_is_not_read() {
    // A valid reply padded past the bound: only the bound decides.
    let body = format!(
        "{{\"status\":200,\"readyConnections\":4,\"pad\":\"{}\"}}",
        "x".repeat(8 * 1024 * 1024)
    );
    let fake = FakeCloudflared::start(ReadyReply {
        status: 200,
        body,
        delay: Duration::ZERO,
    });
    let check = cloudflared_check(&format!("metrics_url = {:?}\n", fake.url()));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (
            CheckStatus::Crit,
            "cloudflared /ready answered with more than 65536 bytes (not read); is metrics_url pointing at cloudflared?"
        )
    );
    assert!(!cloudflare_ok(&done));
}

#[tokio::test]
async fn a_slow_cloudflared_times_out() {
    let fake = FakeCloudflared::start(ReadyReply {
        delay: Duration::from_secs(5),
        ..ReadyReply::connections(4)
    });
    let check = cloudflared_check(&format!(
        "metrics_url = {:?}\nhttp_timeout = \"300ms\"\n",
        fake.url()
    ));
    let started = Instant::now();
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert_eq!(
        r.summary,
        format!(
            "cloudflared did not answer {}/ready within 300ms",
            fake.url()
        )
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn connection_refused_is_crit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let check = cloudflared_check(&format!("metrics_url = {url:?}\n"));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert!(
        r.summary
            .starts_with(&format!("cloudflared metrics unreachable at {url}/ready: ")),
        "{}",
        r.summary
    );
    assert!(r.summary.contains("Connection refused"), "{}", r.summary);
    assert!(!cloudflare_ok(&done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unit_is_checked_through_the_systemd_client() {
    let fake = FakeCloudflared::start(ReadyReply::connections(4));
    let bus = DbusDaemon::start();
    let systemd = FakeSystemd::start(
        &bus.address,
        &[FakeUnit::new("cloudflared.service", "active", "running")],
    );
    let check = cloudflared_check(&format!(
        "metrics_url = {:?}\nunit = \"cloudflared.service\"\nbus_address = {:?}\n",
        fake.url(),
        bus.address
    ));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(
        (r.status, r.summary.as_str()),
        (CheckStatus::Ok, "tunnel up: 4 ready connections")
    );

    systemd.set(FakeUnit::new("cloudflared.service", "failed", "failed"));
    let done = run(&check).await;
    let r = &done.result;
    assert_eq!(r.status, CheckStatus::Crit);
    assert_eq!(
        r.summary,
        "cloudflared.service failed (failed); tunnel up: 4 ready connections"
    );
}
