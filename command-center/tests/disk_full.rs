//! A full disk, for real (issue 20 item 3): the Command Center's log directory on a 2 MiB tmpfs,
//! filled while a node reports. Before it is full, the Command Center raises its own attention
//! reason (`cc.disk_free`); when writes fail it stays up — reads, SSE and the console keep
//! serving from memory, writes get 503 with `Retry-After` and a JSON error naming the cause,
//! `/healthz` says `degraded`, the console shows a banner, `/metrics` a gauge, and a
//! notification goes out. When space returns, writes resume by themselves with no torn or
//! duplicated line and every acknowledged heartbeat in the log.
//!
//! Mounting a tmpfs needs root (CI and `scripts/test` run as root). As another user this test
//! says so and returns; the journal's fault-injecting tests (`store::journal::tests`) cover the
//! writer on every run.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::receiver::Receiver;
use vaultmesh_testkit::sse::SseClient;
use vaultmesh_testkit::{CommandCenter, heartbeat_json, metric, wait_for};

/// A tmpfs of `size` mounted at `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes `path` until the filesystem refuses, or `limit` bytes.
fn fill(path: &Path, limit: usize) -> usize {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = [b'x'; 4096];
    let mut n = 0;
    while n < limit {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(w) => n += w,
        }
    }
    // The last partial page too.
    while n < limit && f.write(b"x").is_ok_and(|w| w == 1) {
        n += 1;
    }
    n
}

/// Posts the next heartbeat; records it in `acked` when acknowledged. Status, `Retry-After`
/// and body.
fn post(
    cc: &CommandCenter,
    node: &TestNode,
    seq: &mut u64,
    acked: &mut BTreeSet<u64>,
) -> (u16, Option<String>, Value) {
    *seq += 1;
    let r = node
        .post_heartbeat(
            &cc.url,
            &heartbeat_json(&node.id.to_string(), "disk-node", *seq),
        )
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = r.json().unwrap_or(Value::Null);
    if status == 200 {
        acked.insert(*seq);
    }
    (status, retry, body)
}

fn health(cc: &CommandCenter) -> Value {
    cc.get_json("/healthz")
}

#[test]
fn a_full_disk_degrades_the_command_center_and_writes_resume_when_space_returns() {
    if !is_root() {
        // Never silently: a non-root run must say it gives this test up.
        assert!(
            std::env::var_os("VAULTMESH_NOT_ROOT_OK").is_some(),
            "this test mounts a real tmpfs and needs root (CI runs as root); to run the rest \
             without it, set VAULTMESH_NOT_ROOT_OK=1 — the full disk is then covered only by \
             store::journal::tests::a_full_disk_refuses_cuts_back_and_resumes_by_itself"
        );
        eprintln!(
            "not root and VAULTMESH_NOT_ROOT_OK set: the full disk is covered by the fault-injecting journal tests only"
        );
        return;
    }
    eprintln!("root: the log directory is a real 2 MiB tmpfs");
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(&dir.path().join("logs"), "2m").expect("mount a tmpfs as root");
    let fs = dir.path().join("logs");
    let hook = Receiver::start();
    let conf = tempfile::tempdir().unwrap();
    let notify = conf.path().join("notify.toml");
    std::fs::write(
        &notify,
        format!(
            "[notifiers.hook]\nkind = \"webhook\"\nurl = \"{}\"\n[[routes]]\nname = \"oncall\"\nnotifier = \"hook\"\ngroup_window = \"100ms\"\n",
            hook.url("/hook")
        ),
    )
    .unwrap();
    let notify = notify.display().to_string();
    let cc = CommandCenter::start_in(
        dir,
        &[
            "--min-free",
            "40%",
            "--disk-check",
            "100ms",
            "--attention-tick",
            "200ms",
            "--notify-config",
            &notify,
        ],
        &[],
    );
    let node = TestNode::new(uuid::Uuid::from_u128(
        0xd15c_0000_0000_4000_8000_0000_0000_0001,
    ));
    let id = node.id.to_string();
    let mut seq = 0u64;
    let mut acked = BTreeSet::new();
    let mut post = |seq: &mut u64| post(&cc, &node, seq, &mut acked);
    for _ in 0..3 {
        assert_eq!(post(&mut seq).0, 200);
    }
    assert_eq!(health(&cc)["status"], "ok");
    let events = SseClient::connect(&format!("{}/events", cc.url), None);

    // Below --min-free: the Command Center's own ATTN reason, before anything fails.
    let filler = fs.join("filler");
    fill(&filler, 1_400_000);
    let low = wait_for(Duration::from_secs(10), || {
        let h = health(&cc);
        (h["attention"]["level"] == "attn").then_some(h)
    })
    .expect("cc.disk_free raised");
    assert_eq!(low["status"], "ok", "still writing: {low:#}");
    assert_eq!(low["attention"]["reasons"][0]["rule"], "cc.disk_free");
    assert!(
        low["attention"]["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .contains("below --min-free 40%"),
        "{low:#}"
    );
    assert_eq!(post(&mut seq).0, 200, "low, not yet full");

    // Full: heartbeats until the log's last page is used up get 503.
    fill(&fs.join("filler2"), usize::MAX);
    let refused = (0..200).find_map(|_| {
        let (status, retry, body) = post(&mut seq);
        (status != 200).then_some((status, retry, body))
    });
    let (status, retry, body) = refused.expect("a heartbeat refused on a full disk");
    assert_eq!(status, 503, "{body}");
    assert_eq!(retry.as_deref(), Some("10"), "Retry-After");
    let error = body["error"].as_str().unwrap();
    // The first write a heartbeat needs is the replay guard's, then the log's: either may be
    // the one the disk refuses.
    assert!(
        error.contains("heartbeats.jsonl: No space left on device")
            || error.contains("seen-requests.bin: No space left on device"),
        "names the file and the cause: {error}"
    );

    // Degraded, and still serving from memory.
    let h = wait_for(Duration::from_secs(10), || {
        let h = health(&cc);
        (h["status"] == "degraded" && h["attention"]["level"] == "crit").then_some(h)
    })
    .expect("healthz degraded");
    assert!(
        h["degraded"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{h:#}"
    );
    let nodes = cc.get_json("/api/nodes");
    assert_eq!(nodes[0]["node_id"], id.as_str());
    let count = nodes[0]["heartbeats"].as_u64().unwrap();
    let console = cc.get("/console");
    assert_eq!(console.status, 200);
    assert!(
        console.body.contains(r#"data-cc-rule="cc.storage""#)
            && console.body.contains("the logs refuse writes"),
        "the console's banner"
    );
    let metrics = cc.get("/metrics").body;
    assert_eq!(metric(&metrics, "vaultmesh_storage_degraded"), Some(1.0));
    let errors: f64 = ["heartbeats.jsonl", "seen-requests.bin"]
        .iter()
        .filter_map(|f| {
            metric(
                &metrics,
                &format!(r#"vaultmesh_log_write_errors_total{{file="{f}"}}"#),
            )
        })
        .sum();
    assert!(errors >= 1.0, "{metrics}");
    // Live consoles hear of it although the event log cannot take it.
    let live = (0..50).find_map(|_| {
        let (name, _, data) = events.next_event(Duration::from_secs(10))?;
        let v: Value = serde_json::from_str(&data).ok()?;
        (name == "attention" && v["node_id"].is_null() && v["body"]["level"] == "crit").then_some(v)
    });
    assert!(live.is_some(), "the CRIT reached /events");
    // And so does the admin's phone.
    let told = hook.wait_until(Duration::from_secs(15), |got| {
        got.iter().any(|r| r.body.contains("cc.storage"))
    });
    assert!(
        told.iter().any(|r| r.body.contains("cc.storage")),
        "a notification: {:?}",
        told.iter().map(|r| &r.body).collect::<Vec<_>>()
    );

    // Space returns: writes resume by themselves.
    std::fs::remove_file(fs.join("filler2")).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_for(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(200));
        (post(&mut seq).0 == 200).then_some(())
    });
    assert!(resumed.is_some(), "writes resumed");
    for _ in 0..3 {
        assert_eq!(post(&mut seq).0, 200);
    }
    let h = wait_for(Duration::from_secs(10), || {
        let h = health(&cc);
        (h["status"] == "ok" && h["attention"]["level"] == "ok").then_some(h)
    });
    assert!(h.is_some(), "healthy again: {:#}", health(&cc));
    assert_eq!(
        metric(&cc.get("/metrics").body, "vaultmesh_storage_degraded"),
        Some(0.0)
    );

    // The log: every line whole, no heartbeat twice, and exactly the acknowledged ones.
    let text = std::fs::read_to_string(fs.join("heartbeats.jsonl")).unwrap();
    assert!(text.ends_with('\n'), "no torn last line");
    let mut logged = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        logged.push(v["record"]["seq"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let unique: BTreeSet<u64> = logged.iter().copied().collect();
    assert_eq!(unique.len(), logged.len(), "a duplicated line: {logged:?}");
    assert_eq!(unique, acked, "the log holds exactly what was acknowledged");
    assert_eq!(
        count as usize,
        acked.len() - 4,
        "memory held what was acknowledged then"
    );

    // The replay guard's file took the same full disk without losing its footing: a request
    // accepted now is still a replay after a restart.
    let body = serde_json::to_vec(&heartbeat_json(&id, "disk-node", seq + 1)).unwrap();
    let captured = node.signed(
        &cc.url,
        "POST",
        "/api/agent/heartbeat",
        Some("application/json"),
        body,
    );
    let replay = captured.try_clone().unwrap();
    assert_eq!(captured.send().unwrap().status().as_u16(), 200);
    let mut cc = cc;
    cc.restart();
    let mut replay = replay.build().unwrap();
    *replay.url_mut() = format!("{}/api/agent/heartbeat", cc.url).parse().unwrap();
    assert_eq!(
        vaultmesh_testkit::http()
            .execute(replay)
            .unwrap()
            .status()
            .as_u16(),
        401,
        "a replay after the restart"
    );
}
