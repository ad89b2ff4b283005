//! A cheap run of every benchmark, so none of them rots between the runs that produce the
//! figures in docs/PERFORMANCE.md. Each runs the real binaries (the debug builds the test build
//! made, through `VAULTMESH_BENCH_PROFILE=dev`) at a tiny size and must finish cleanly and
//! print its figures. The numbers themselves are not judged here: debug builds on a shared CI
//! machine say nothing about performance.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use vaultmesh_testkit::{TEST_TOKEN, commanding_center, metric, text};

/// Runs a bench binary with `args`; returns its stdout, failing the test on a non-zero exit.
fn bench(exe: &str, args: &[&str]) -> String {
    bench_env(exe, args, &[])
}

fn bench_env(exe: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        .env("VAULTMESH_BENCH_PROFILE", "dev")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exe} {args:?} failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn fleet_sim_drives_a_real_command_center_with_every_kind_of_request() {
    let (cc, _keys, _) = commanding_center(&[]);
    let json = bench(
        env!("CARGO_BIN_EXE_vaultmesh-fleet-sim"),
        &[
            "--cc",
            &cc.url,
            "--token",
            TEST_TOKEN,
            "--nodes",
            "20",
            "--requests",
            "200",
            "--rate",
            "400",
            "--scan-every",
            "50",
            "--command-every",
            "40",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["kinds"]["scan"]["count"], 4, "{report}");
    assert_eq!(
        report["kinds"]["command round trip"]["count"], 5,
        "{report}"
    );
    // What the simulator sent is what the Command Center counted.
    let m = cc.get("/metrics").body;
    let count = |name: &str| metric(&m, name).unwrap();
    // 20 warm-up heartbeats, then 200 - 4 scans - 5 command round trips; the agents that poll
    // for commands are the simulator itself.
    assert_eq!(count("vaultmesh_heartbeats_ingested_total"), 211.0, "{m}");
    assert_eq!(count("vaultmesh_scans_ingested_total"), 4.0);
    assert_eq!(
        count("vaultmesh_command_receipts_total{status=\"ok\"}"),
        5.0
    );

    // Bad arguments: exit 2 with one line.
    let out = Command::new(env!("CARGO_BIN_EXE_vaultmesh-fleet-sim"))
        .args(["--nodes", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn ingest_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_ingest-bench"), &["300", "300", "40"]);
    assert!(out.contains("Command Center / floor at 40 nodes"), "{out}");
    assert!(out.contains("us CPU per heartbeat"), "{out}");
}

#[test]
fn pg_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_pg-bench"), &["300", "20", "5"]);
    for figure in [
        "PostgreSQL, two instances",
        "Cross-instance delivery",
        "PostgreSQL load",
        "bytes per node-day",
        "history, one node",
    ] {
        assert!(out.contains(figure), "{out}");
    }
    assert!(!out.contains("NaN"), "{out}");
}

#[test]
fn sse_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_sse-bench"), &["5", "320"]);
    assert!(
        out.contains("delivery POST -> every client: 250 of 250"),
        "{out}"
    );
}

#[test]
fn store_bench_smoke() {
    let work = tempfile::tempdir().unwrap();
    let out = bench(
        env!("CARGO_BIN_EXE_store-bench"),
        &["2000", work.path().join("w").to_str().unwrap()],
    );
    assert!(
        out.contains("first start over 2000 heartbeat lines from 1000 nodes (full replay)"),
        "{out}"
    );
    assert!(
        out.contains("restart over the same log with a state snapshot"),
        "{out}"
    );
    assert!(
        out.contains("bytes per node-day of raw heartbeats"),
        "{out}"
    );
    assert!(
        out.contains("first start (full replay) over it plain"),
        "{out}"
    );
    assert!(out.contains("speed-up"), "{out}");
    assert!(out.contains("append with group commit"), "{out}");
}

#[test]
fn history_bench_smoke() {
    let work = tempfile::tempdir().unwrap();
    let out = bench(
        env!("CARGO_BIN_EXE_history-bench"),
        &["25", "2", work.path().join("w").to_str().unwrap()],
    );
    for range in ["1h", "24h", "7d", "30d", "1y"] {
        assert!(out.contains(&format!("history range={range:<3}")), "{out}");
    }
    assert!(out.contains("tiers per node-day"), "{out}");
    assert!(out.contains("start-up to listening"), "{out}");
}

#[test]
fn attention_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_attention-bench"), &["30"]);
    assert!(!out.is_empty());
}

#[test]
fn ledger_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_ledger-bench"), &["5000"]);
    for part in [
        "RFC 9162 root",
        "before, PROOFCHAIN.json rewritten whole",
        "after, a line appended to PROOFCHAIN.jsonl",
        "after, read once",
    ] {
        assert!(out.contains(part), "{out}");
    }
}

#[test]
fn console_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_console-bench"), &["20"]);
    assert!(!out.is_empty());
}

#[test]
fn agent_bench_smoke() {
    let out = bench_env(
        env!("CARGO_BIN_EXE_agent-bench"),
        &["3"],
        &[("AGENT_BENCH_SKIP", "sovereign_scan")],
    );
    assert!(out.contains("vaultmesh-node-agent (all checks)"), "{out}");
    assert!(
        out.contains("prometheus-node-exporter (1 scrape)"),
        "node exporter measured side by side: {out}"
    );
    // Each figure beside issue 24's goal and the figure before it.
    for part in [
        "goal (issue 24)",
        "<= 4.2 MiB",
        "<= 4.0 MiB",
        "<= 1.00 ms",
        "before (docs/PERFORMANCE.md)",
        "RSS ",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    // Then every check's own cost, each alone, with the result it gave (the scan skipped).
    let table = out
        .split_once("CPU per run, each check alone")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no per-check table: {out}"));
    for name in vaultmesh_checks::built_in() {
        let row = table
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")));
        if name == "sovereign_scan" {
            assert!(row.is_none(), "skipped: {table}");
            continue;
        }
        let row = row.unwrap_or_else(|| panic!("no row for {name}: {table}"));
        assert!(row.contains(" ms "), "{row}");
        // The check measured something (a rate check's first run included).
        assert!(
            [" ok ", " warn ", " crit "].iter().any(|s| row.contains(s)),
            "{row}"
        );
    }
}

#[test]
fn metrics_bench_smoke() {
    let out = bench(env!("CARGO_BIN_EXE_metrics-bench"), &["20", "3"]);
    assert!(out.contains("Command Center, 20 nodes"), "{out}");
    assert!(out.contains("goal: a scrape under 50 ms"), "{out}");
}
