//! Issue 23's "done when": a fleet's month written by `vaultmesh-fleet-sim --backfill-days`, a
//! real Command Center started over it. Its closed segments are compressed in the background;
//! once they all are, a start that has lost its history tiers and its snapshot rolls the month
//! up again from the compressed segments, and the console's node panel charts the 30 days in
//! headless Chromium.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_testkit::CommandCenter;
use vaultmesh_testkit::browser::Browser;
use vaultmesh_testkit::segments::wait_compressed;

const T: Duration = Duration::from_secs(30);

/// The first and last instants of `load1`'s points in a node's 30-day history.
fn span_days(cc: &CommandCenter, node: &str) -> (f64, usize) {
    let h = cc.get_json(&format!(
        "/api/nodes/{node}/history?range=30d&metrics=load1"
    ));
    assert_eq!(h["tier"], "1h", "{h}");
    let points = h["series"][0]["points"].as_array().unwrap().clone();
    let t = |p: &Value| {
        chrono::DateTime::parse_from_rfc3339(p["t"].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let days = (t(points.last().unwrap()) - t(&points[0])) as f64 / 86_400.0;
    (days, points.len())
}

#[test]
fn the_console_charts_a_month_the_simulator_backfilled_from_compressed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let out = Command::new(env!("CARGO_BIN_EXE_vaultmesh-fleet-sim"))
        .args([
            "--nodes",
            "3",
            "--backfill-days",
            "30",
            "--interval",
            "5m",
            "--log-dir",
        ])
        .arg(&logs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node = vaultmesh_bench::node_id(1).to_string();

    let mut cc = CommandCenter::start_in(dir, &[], &[]);
    let (days, _) = span_days(&cc, &node);
    assert!(
        days >= 29.0,
        "the first start rolled the month up: {days} days"
    );
    // Every closed daily segment compressed in the background.
    let compressed = wait_compressed(&cc.log_dir(), 29, Duration::from_secs(120));
    assert!(compressed.len() >= 29, "{compressed:?}");

    // The tiers and the snapshot lost: the month is rolled up again, from compressed segments.
    cc.kill9();
    std::fs::remove_dir_all(cc.log_dir().join("history")).unwrap();
    let _ = std::fs::remove_file(cc.log_dir().join("state.snapshot"));
    cc.restart();
    let (days, points) = span_days(&cc, &node);
    assert!(
        days >= 29.0 && points >= 29 * 8,
        "{days} days, {points} points"
    );

    let mut b = Browser::launch(1280, 1400);
    b.navigate(&format!("{}/console?node={node}&range=30d", cc.url));
    b.wait_for(
        "document.querySelector('#node .history')?.dataset.range === '30d'",
        T,
    )
    .expect("the node panel shows the 30-day charts");
    let labels = b.eval(
        "[...document.querySelectorAll('#node figure.chart')[0].querySelectorAll('.axis.x text[data-t]')].map(t => t.dataset.t)",
    );
    let labels: Vec<String> = serde_json::from_value(labels).unwrap();
    let at = |s: &String| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    assert!(labels.len() >= 4, "{labels:?}");
    let shown = (at(labels.last().unwrap()) - at(&labels[0])) as f64 / 86_400.0;
    assert!(shown >= 21.0, "the time axis spans weeks: {labels:?}");
    assert_eq!(
        b.eval("document.querySelectorAll('#node figure.chart').length > 0"),
        json!(true)
    );
}
