//! The Mission Console and the live dashboard in a real headless Chromium against the real
//! Command Center: the DOM follows heartbeats, attention and events without a reload, hostile
//! strings render as text, the forms post, and a dropped stream shows and recovers.
//! Screenshots land in `target/test-artifacts/`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use serde_json::{Value, json};
use vaultmesh_testkit::browser::{Browser, artifacts_dir};
use vaultmesh_testkit::{CommandCenter, free_port, heartbeat_json};

const A: &str = "a1000000-0000-4000-8000-00000000000a";
const B: &str = "b2000000-0000-4000-8000-00000000000b";
const HOSTILE: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";
const T: Duration = Duration::from_secs(10);

fn heartbeat(cc: &CommandCenter, node: &str, host: &str, tunnel: bool) {
    let mut hb = heartbeat_json(node, host, 1);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["cloudflare_ok"] = json!(tunnel);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn kpi(b: &mut Browser, k: &str) -> String {
    b.eval(&format!(
        "document.querySelector('[data-kpi=\"{k}\"]').textContent"
    ))
    .as_str()
    .unwrap()
    .to_string()
}

fn wait(b: &mut Browser, expr: &str, what: &str) -> Value {
    b.wait_for(expr, T).unwrap_or_else(|| {
        let html = b.eval("document.body.innerHTML");
        panic!(
            "{what}: `{expr}` never held\n{}",
            html.as_str().unwrap_or("")
        )
    })
}

/// Fails on any script error or CSP violation the page reported so far.
fn no_errors(b: &mut Browser) {
    b.eval("1"); // drain the messages sent before
    assert!(
        b.errors.is_empty(),
        "no script errors or CSP violations: {:?}",
        b.errors
    );
}

#[test]
fn the_console_follows_the_fleet_live_and_renders_hostile_strings_as_text() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    heartbeat(&cc, A, "alpha", true);
    let mut b = Browser::launch(1280, 800);
    b.navigate(&format!("{}/console?node={A}", cc.url));
    b.eval("window.__marker = 42");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    assert_eq!(kpi(&mut b, "total"), "1");
    assert_eq!(kpi(&mut b, "ok"), "1");

    // A second node arrives, with a hostile hostname and its tunnel down (ATTN).
    heartbeat(&cc, B, HOSTILE, false);
    wait(
        &mut b,
        "document.querySelector('[data-kpi=\"attn\"]').textContent === '1'",
        "KPIs count the new node",
    );
    assert_eq!(kpi(&mut b, "total"), "2");
    let row = format!("document.querySelector('#node-list li[data-node-id=\"{B}\"]')");
    wait(
        &mut b,
        &format!("{row} && {row}.dataset.level === 'attn'"),
        "the new row is listed",
    );
    assert_eq!(
        b.eval(&format!("{row}.querySelector('.name').textContent")),
        json!(HOSTILE)
    );
    assert_eq!(
        b.eval(&format!("{row}.querySelector('[data-pill]').textContent")),
        json!("ATTN")
    );
    assert_eq!(
        b.eval(&format!(
            "getComputedStyle({row}.querySelector('[data-pill]')).color"
        )),
        json!("rgb(210, 153, 34)"),
        "ATTN is amber (and says ATTN: colour is never the only signal)"
    );
    assert_eq!(
        b.eval("typeof window.__pwned"),
        json!("undefined"),
        "no injected script ran"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('img[src=x]').length"),
        json!(0)
    );
    // Worst first: B (ATTN) above A (OK).
    assert_eq!(
        b.eval("document.querySelector('#node-list li[data-node-id]').dataset.nodeId"),
        json!(B)
    );

    // A heartbeat glows A's row.
    heartbeat(&cc, A, "alpha", true);
    wait(
        &mut b,
        &format!(
            "document.querySelector('#node-list li[data-node-id=\"{A}\"]').classList.contains('beat')"
        ),
        "the row glows",
    );

    // An incident through the API: A goes CRIT, its timeline shows it, the feed too.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "incident", "node_id": A, "author": "ops", "body": {"title": "disk <b>noise</b>", "severity": "critical"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait(
        &mut b,
        &format!(
            "document.querySelector('#node-list li[data-node-id=\"{A}\"] [data-pill]').textContent === 'CRIT'"
        ),
        "A turns CRIT",
    );
    wait(
        &mut b,
        "document.querySelector('[data-kpi=\"crit\"]').textContent === '1'",
        "KPIs follow",
    );
    wait(
        &mut b,
        "[...document.querySelectorAll('#node .timeline .ev-incident .what')].some(e => e.textContent.includes('disk <b>noise</b>'))",
        "the timeline shows the incident, as text",
    );
    wait(
        &mut b,
        "[...document.querySelectorAll('#attention li')].some(e => e.textContent.includes('open incident (critical)'))",
        "the attention panel says why",
    );
    wait(
        &mut b,
        "document.querySelectorAll('#feed .ev-incident').length > 0",
        "the feed shows it",
    );

    // The console's own forms: a note, then acknowledging the incident.
    b.eval("(() => { const f = document.querySelector('#node form[data-console-form]'); f.querySelector('input[name=text]').value = 'checked from the console'; f.requestSubmit(); })()");
    wait(
        &mut b,
        "[...document.querySelectorAll('#node .timeline .ev-note')].some(e => e.textContent.includes('checked from the console'))",
        "the note lands in the timeline",
    );
    b.eval("document.querySelector('#node form input[name=kind][value=ack]').form.requestSubmit()");
    wait(
        &mut b,
        &format!(
            "document.querySelector('#node-list li[data-node-id=\"{A}\"] [data-pill]').textContent === 'OK'"
        ),
        "an acknowledged incident no longer escalates",
    );
    wait(
        &mut b,
        "[...document.querySelectorAll('#attention li.suppressed')].some(e => e.textContent.includes('acknowledged by console'))",
        "... but stays visible",
    );

    assert_eq!(b.eval("window.__marker"), json!(42), "no reload happened");
    let dir = artifacts_dir();
    b.screenshot(&dir.join("console-1280x800.png"), false);

    // Selecting a node puts it in the URL; the filter narrows the list.
    b.eval(&format!(
        "document.querySelector('#node-list li[data-node-id=\"{B}\"] a').click()"
    ));
    wait(
        &mut b,
        &format!(
            "location.search === '?node={B}' && document.querySelector('#node').dataset.nodeId === '{B}'"
        ),
        "the selection is in the URL",
    );
    assert_eq!(
        b.eval("document.querySelector('#node h2').textContent.includes('<script>')"),
        json!(true)
    );
    b.eval("(() => { const f = document.getElementById('filter'); f.value = 'alpha'; f.dispatchEvent(new Event('input')); })()");
    assert_eq!(b.eval("[...document.querySelectorAll('#node-list li[data-node-id]')].filter(r => !r.hidden).length"), json!(1));
    assert_eq!(
        b.eval("document.querySelectorAll('#node-list li a[href]').length"),
        json!(2),
        "rows are links: keyboard reachable"
    );

    // The filter and the selection survive every panel being refetched.
    b.eval("window.vaultmesh.refreshAll()");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(b.eval("[...document.querySelectorAll('#node-list li[data-node-id]')].filter(r => !r.hidden).length"), json!(1), "the filter holds");
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('#node-list li.selected').dataset.nodeId === '{B}'"
        )),
        json!(true),
        "the selection holds"
    );
    no_errors(&mut b);

    let mut wide = Browser::launch(1920, 1080);
    wide.navigate(&format!("{}/console?node={A}", cc.url));
    wait(
        &mut wide,
        "document.getElementById('stream-state').textContent === 'live'",
        "wide console connects",
    );
    wide.screenshot(&dir.join("console-1920x1080.png"), false);
    assert!(wide.errors.is_empty(), "{:?}", wide.errors);
}

#[test]
fn console_forms_work_without_script_and_refuse_other_sites() {
    let cc = CommandCenter::start();
    heartbeat(&cc, A, "alpha", true);
    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |origin: Option<&str>, site: Option<&str>, body: &str| {
        let mut r = http
            .post(format!("{}/console/events", cc.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(s) = site {
            r = r.header("sec-fetch-site", s);
        }
        r.send().unwrap()
    };
    let form = format!("kind=note&node_id={A}&text=from+a+plain+form");
    // A same-origin form post, as a browser without the script sends it: 303 back to the node.
    let r = post(Some(&cc.url), Some("same-origin"), &form);
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        format!("/console?node={A}").as_str()
    );
    // Another site riding an admin's browser: refused, nothing stored.
    for (origin, site) in [
        (Some("https://evil.example"), Some("cross-site")),
        (Some("https://evil.example"), None),
        (None, Some("same-site")),
        (Some("null"), None),
    ] {
        let r = post(origin, site, &form.replace("plain", "forged"));
        assert_eq!(r.status().as_u16(), 403, "{origin:?} {site:?}");
        let body: Value = r.json().unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("cross-site request refused")
        );
    }
    let notes = cc.get_json("/api/events?kind=note");
    assert_eq!(notes.as_array().unwrap().len(), 1, "{notes}");
    // Bad input: 4xx with a JSON error.
    assert_eq!(post(None, None, "kind=tag&label=x").status().as_u16(), 400);
    assert_eq!(post(None, None, "kind=shout&text=x").status().as_u16(), 422);
    assert_eq!(
        post(None, None, "kind=note&node_id=nope&text=x")
            .status()
            .as_u16(),
        400
    );
    assert_eq!(cc.get("/console/nodes/not-a-uuid").status, 400);
    assert_eq!(cc.get(&format!("/console/nodes/{B}")).status, 404);
    assert_eq!(cc.get("/console/findings").status, 200);
}

#[test]
fn a_form_over_the_body_limit_is_413_with_a_json_error() {
    let cc = CommandCenter::start();
    let text = "x".repeat(300 * 1024);
    for accept in ["application/json", "text/html"] {
        let r = vaultmesh_testkit::http()
            .post(format!("{}/console/events", cc.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", accept)
            .header("origin", &cc.url)
            .header("sec-fetch-site", "same-origin")
            .body(format!("kind=note&node_id={A}&text={text}"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 413, "{accept}");
        let body: Value = r.json().unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("larger than the 262144-byte limit"),
            "{body}"
        );
    }
    assert_eq!(cc.get_json("/api/events?kind=note"), json!([]));
}

#[test]
fn debug_mode_logs_events_and_a_dropped_stream_shows_then_recovers() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut cc = CommandCenter::start_with(&["--listen", &listen, "--attention-tick", "200ms"]);
    heartbeat(&cc, A, "alpha", true);
    let mut b = Browser::launch(1280, 800);
    b.navigate(&format!("{}/console?debug=1", cc.url));
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "connects",
    );
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "note", "node_id": A, "body": {"text": "hello"}}),
    );
    assert_eq!(r.status, 201);
    wait(
        &mut b,
        "document.querySelectorAll('#feed .ev-note').length === 1",
        "the note reaches the feed",
    );
    b.eval("1"); // drain console messages
    assert!(
        b.console.iter().any(|l| l.starts_with("sse note")),
        "{:?}",
        b.console
    );

    cc.kill9();
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent.startsWith('disconnected')",
        "the drop is visible",
    );
    assert_eq!(
        b.eval("document.body.classList.contains('disconnected')"),
        json!(true)
    );
    b.screenshot(&artifacts_dir().join("console-disconnected.png"), false);
    cc.restart();
    heartbeat(&cc, B, "bravo", true);
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "it reconnects",
    );
    wait(
        &mut b,
        "document.querySelector('[data-kpi=\"total\"]').textContent === '2'",
        "and refetches state",
    );
}

/// The page's stream resumes after the newest event the page shows (`data-since`): what is
/// published before the stream connects is replayed, and the 1,000-row list is not fetched a
/// second time after the page (the console refetched every panel on each connect before).
#[test]
fn the_stream_resumes_after_what_the_page_shows_without_refetching_it() {
    let cc = CommandCenter::start();
    heartbeat(&cc, A, "alpha", true);
    let mut b = Browser::launch(1280, 800);
    b.call("Network.enable", json!({}));
    b.call("Network.setBlockedURLs", json!({"urls": ["*/events*"]}));
    b.navigate(&format!("{}/console?node={A}", cc.url));
    assert!(
        b.eval("document.body.dataset.since").as_str().is_some(),
        "the page names the event it reflects"
    );
    // Published while the page has no stream.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "note", "node_id": A, "body": {"text": "while away"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    b.call("Network.setBlockedURLs", json!({"urls": []}));
    let live = "document.getElementById('stream-state').textContent === 'live'";
    b.wait_for(live, Duration::from_secs(20))
        .expect("the stream connects once unblocked");
    wait(
        &mut b,
        "[...document.querySelectorAll('#feed li')].some(li => li.textContent.includes('while away'))",
        "the note published before the stream connected is replayed into the feed",
    );
    std::thread::sleep(Duration::from_millis(800)); // past any coalesced refetch
    let lists = b.eval(
        "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname).filter(p => p === '/console/nodes' || p === '/console/kpis')",
    );
    assert_eq!(lists, json!([]), "no panel refetched but the feed");
    no_errors(&mut b);
}

#[test]
fn the_overview_dashboard_is_live_too() {
    let cc = CommandCenter::start();
    heartbeat(&cc, A, "alpha", true);
    let mut b = Browser::launch(1280, 800);
    b.navigate(&format!("{}/", cc.url));
    b.eval("window.__marker = 7");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "connects",
    );
    heartbeat(&cc, B, HOSTILE, true);
    wait(
        &mut b,
        "document.querySelectorAll('#overview tr[data-node-id]').length === 2",
        "the new node appears",
    );
    assert_eq!(b.eval("typeof window.__pwned"), json!("undefined"));
    assert_eq!(b.eval("window.__marker"), json!(7), "without a reload");
    b.screenshot(&artifacts_dir().join("dashboard-1280x800.png"), false);
}

/// The node of the 30-day history: hostname `history-node`, 2 CPUs.
const H: &str = "c3000000-0000-4000-8000-00000000000c";
/// Heartbeats every 20 minutes.
const EVERY: i64 = 20 * 60;
const DAY: i64 = 86_400;

/// The history node's heartbeat at `ts`, `days` after the start of its 30 days: load around
/// 0.4 with one spike to 8 (ten days ago), memory 25–60 %, swap a little, `/` filling by 1 % a
/// day from 50 %, `/srv` steady at 10 %, and its one check crit for two hours five days ago.
fn history_heartbeat(ts: chrono::DateTime<chrono::Utc>, days: f64) -> Value {
    let load = if (days - 20.0).abs() < 0.01 {
        8.0
    } else {
        0.4 + 0.3 * (days * std::f64::consts::TAU).sin()
    };
    let mem = 25.0 + 35.0 * (days * 3.0).sin().abs();
    let crit = (25.0..25.0 + 2.0 / 24.0).contains(&days);
    let gb = 1_000_000_000u64;
    json!({
        "node_id": H, "hostname": "history-node", "os_profile": "ArchVault",
        "cloudflare_ok": true, "services_ok": true, "vaultmesh_root": "/var/lib/vaultmesh",
        "timestamp": ts.to_rfc3339(), "agent_version": "0.1.0",
        "metrics": {
            "load": [load, 0.3, 0.2], "cpu_count": 2,
            "mem_total_bytes": 1000, "mem_used_bytes": (mem * 10.0) as u64,
            "swap_total_bytes": 1000, "swap_used_bytes": 50,
            "disks": [
                {"mount": "/", "fs": "ext4", "total_bytes": 100 * gb, "used_bytes": ((50.0 + days) * gb as f64) as u64},
                {"mount": "/srv", "fs": "xfs", "total_bytes": 100 * gb, "used_bytes": 10 * gb}
            ]
        },
        "checks": [{"name": "disk", "status": if crit { "crit" } else { "ok" }, "summary": "fine",
                    "observed_at": ts.to_rfc3339(), "duration_ms": 1}]
    })
}

/// A Command Center whose log holds 30 days of the history node's heartbeats (written before it
/// starts, as a log from the previous release would be; it rolls them up at start), with the
/// node down for a day 15 days ago.
fn command_center_with_30_days() -> CommandCenter {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let now = chrono::Utc::now().timestamp();
    let start = now - 30 * DAY + EVERY;
    let node: uuid::Uuid = H.parse().unwrap();
    let mut log = Vec::new();
    let mut t = start;
    while t < now - 60 {
        let days = (t - (now - 30 * DAY)) as f64 / DAY as f64;
        if !(15.0..16.0).contains(&days) {
            let ts = chrono::DateTime::from_timestamp(t, 0).unwrap();
            let hb: vaultmesh_proto::NodeHeartbeat =
                serde_json::from_value(history_heartbeat(ts, days)).unwrap();
            log.extend(vaultmesh_store::record::encode("heartbeat", ts, Some(node), &hb).unwrap());
        }
        t += EVERY;
    }
    std::fs::write(logs.join("heartbeats.jsonl"), log).unwrap();
    CommandCenter::start_in(dir, &["--attention-tick", "200ms"], &[])
}

/// The text of each of the node panel's time labels of chart `n`, and their instants.
fn time_labels(b: &mut Browser, n: usize) -> Vec<(String, String)> {
    let v = b.eval(&format!(
        "[...document.querySelectorAll('#node figure.chart')[{n}].querySelectorAll('.axis.x text[data-t]')].map(t => [t.textContent, t.dataset.t])"
    ));
    serde_json::from_value(v).unwrap()
}

fn click_range(b: &mut Browser, range: &str) {
    b.eval(&format!(
        "document.querySelector('#node .ranges a[data-range=\"{range}\"]').click()"
    ));
    wait(
        b,
        &format!("document.querySelector('#node .history').dataset.range === '{range}'"),
        &format!("the {range} charts replace the panel"),
    );
}

#[test]
fn the_node_panel_charts_thirty_days_and_the_range_selector_switches_without_a_reload() {
    let cc = command_center_with_30_days();
    let r = cc.post_json(
        "/api/agent/heartbeat",
        &history_heartbeat(chrono::Utc::now(), 30.0),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut b = Browser::launch(1280, 1400);
    b.navigate(&format!("{}/console?node={H}", cc.url));
    b.eval("window.__marker = 30");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    // The default range, 24 h: times of day.
    assert_eq!(
        b.eval("document.querySelector('#node .ranges a[aria-current=true]').textContent"),
        json!("24 h")
    );
    let labels = time_labels(&mut b, 0);
    assert!(
        labels.len() >= 8
            && labels
                .iter()
                .all(|(l, _)| l.len() == 5 && l.as_bytes()[2] == b':'),
        "{labels:?}"
    );

    // 7 days: dates, a point an hour, the spike of ten days ago out of range.
    click_range(&mut b, "7d");
    assert_eq!(
        b.eval("location.search"),
        json!(format!("?node={H}&range=7d")),
        "the range is in the URL"
    );
    assert_eq!(b.eval("window.__marker"), json!(30), "no reload");
    let labels = time_labels(&mut b, 0);
    // Seven midnights, or eight in the last hour of a UTC day: the frame ends at the end of
    // the current hour, which is then the next midnight.
    assert!((7..=8).contains(&labels.len()), "a label a day: {labels:?}");
    let is_date = |l: &str| {
        let (month, day) = l.split_once(' ').unwrap_or(("", ""));
        month.len() == 3 && day.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
    };
    assert!(labels.iter().all(|(l, _)| is_date(l)), "{labels:?}");
    let points = b.eval("+document.querySelector('#node path.line.load').dataset.points");
    assert!(
        (165..=170).contains(&points.as_u64().unwrap()),
        "hourly points over 7 days: {points}"
    );
    assert_eq!(
        b.eval("document.querySelector('#node figure.chart svg').dataset.top"),
        json!("2"),
        "the scale is the 2 CPUs' line"
    );

    // 30 days: ~240 points of 3 hours with their bands, the day down a gap, dates across 30 days.
    click_range(&mut b, "30d");
    assert_eq!(
        b.eval("location.search"),
        json!(format!("?node={H}&range=30d"))
    );
    let load = "document.querySelector('#node path.line.load')";
    let points = b.eval(&format!("+{load}.dataset.points")).as_u64().unwrap();
    assert!(
        (225..=241).contains(&points),
        "30 days of 3-hour points less the day down: {points}"
    );
    assert_eq!(
        b.eval(&format!("{load}.getAttribute('d').split('M').length - 1")),
        json!(2),
        "the day the node was down is a gap: two runs"
    );
    assert_eq!(
        b.eval(
            "document.querySelector('#node path.band.load').getAttribute('d').split('Z').length - 1"
        ),
        json!(2),
        "a band behind each run"
    );
    let vertices = b
        .eval("document.querySelector('#node path.band.load').getAttribute('d').split(/[MLZ]/).filter(Boolean).length")
        .as_u64()
        .unwrap();
    assert_eq!(vertices, 2 * points, "each point's max and min");
    let labels = time_labels(&mut b, 0);
    assert!(labels.iter().all(|(l, _)| is_date(l)), "{labels:?}");
    let first = chrono::DateTime::parse_from_rfc3339(&labels[0].1).unwrap();
    let last = chrono::DateTime::parse_from_rfc3339(&labels[labels.len() - 1].1).unwrap();
    assert!(
        (last - first).num_days() >= 25 && labels.len() >= 6,
        "dates across the 30 days: {labels:?}"
    );
    assert_eq!(
        b.eval("document.querySelector('#node figure.chart svg title').textContent"),
        json!("Load average (1 min), the last 30 days")
    );
    // No clipping: the spike to 8 on 2 CPUs is on an axis that reads 8, inside the drawing.
    assert_eq!(
        b.eval("document.querySelector('#node figure.chart svg').dataset.top"),
        json!("8")
    );
    assert_eq!(
        b.eval("[...document.querySelectorAll('#node figure.chart')[0].querySelectorAll('.axis.y text:not(.unit)')].map(t => t.textContent)"),
        json!(["0", "2", "4", "6", "8"])
    );
    assert_eq!(
        b.eval("(() => { const svg = document.querySelector('#node figure.chart svg'); const box = svg.getBBox(); const band = svg.querySelector('path.band').getBBox(); return band.y >= 0 && band.y + band.height <= 170 && box.height <= 170; })()"),
        json!(true)
    );
    assert_eq!(
        b.eval("document.querySelector('#node .ref-label').textContent"),
        json!("2 CPUs")
    );
    // Each filesystem its chart and forecast: `/` fills 1 % a day from 80 %, `/srv` does not.
    let forecasts: Vec<(String, String)> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#node .disk-chart')].map(d => [d.dataset.mount, d.querySelector('.forecast').textContent])",
    ))
    .unwrap();
    assert_eq!(forecasts.len(), 2, "{forecasts:?}");
    assert_eq!(forecasts[0].0, "/");
    let root = &forecasts[0].1;
    assert!(
        ["~19 days", "~20 days", "~21 days"]
            .iter()
            .any(|d| root == &format!("full in {d} at +1.0 %/day (7-day trend)")),
        "{root}"
    );
    assert_eq!(
        forecasts[1],
        ("/srv".to_string(), "not growing (7-day trend)".to_string())
    );
    // The two hours the check was crit, drawn.
    assert_eq!(
        b.eval("[...document.querySelectorAll('#node figure.chart')].pop().querySelector('svg title').textContent"),
        json!("Checks not OK, the last 30 days")
    );
    // The picture in docs/CONSOLE.md.
    b.screenshot_of(
        "#node .history",
        &artifacts_dir().join("console-history-30d.png"),
    );

    // A heartbeat refreshes the panel, in its range.
    b.eval("document.querySelector('#node').dataset.old = '1'");
    let r = cc.post_json(
        "/api/agent/heartbeat",
        &history_heartbeat(chrono::Utc::now(), 30.0),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait(
        &mut b,
        "!document.querySelector('#node').dataset.old",
        "the panel is refetched",
    );
    assert_eq!(
        b.eval("document.querySelector('#node .history').dataset.range"),
        json!("30d"),
        "in the range picked"
    );
    // Back goes to the previous range; a year reads months.
    b.eval("history.back()");
    wait(
        &mut b,
        "document.querySelector('#node .history').dataset.range === '7d'",
        "back to 7 days",
    );
    click_range(&mut b, "1y");
    let labels = time_labels(&mut b, 0);
    assert!(
        !labels.is_empty()
            && labels.iter().all(|(l, _)| {
                let (month, year) = l.split_once(' ').unwrap_or(("", ""));
                month.len() == 3 && year.len() == 4 && year.parse::<i32>().is_ok()
            }),
        "{labels:?}"
    );
    no_errors(&mut b);

    // Without the script: the range is a plain link, and the page answers it.
    let page = cc.get(&format!("/console?node={H}&range=30d"));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!(
            "href=\"/console?node={H}&amp;range=30d\" data-range=\"30d\" aria-current=\"true\""
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("Load average (1 min), the last 30 days"));
    // A range that is none is refused with the near one; an unknown parameter by name.
    for (path, says) in [
        (
            format!("/console?node={H}&range=24hr"),
            "did you mean \"24h\"",
        ),
        (
            format!("/console?node={H}&range=2w"),
            "ranges are 1h, 24h, 7d, 30d, 1y",
        ),
        (
            format!("/console/nodes/{H}?range=1Y"),
            "did you mean \"1y\"",
        ),
        (
            format!("/console?node={H}&rnage=7d"),
            "unknown field `rnage`",
        ),
        (
            format!("/console/nodes/{H}?rnage=7d"),
            "unknown field `rnage`",
        ),
    ] {
        let r = cc.get(&path);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.contains(says), "{path}: {err}");
    }
}

/// Clicks the submit button of the form `form` (a CSS selector) after opening the details it
/// sits in, and picks `choices` (`name` → option value) in its selects first.
fn submit(b: &mut Browser, form: &str, choices: &[(&str, &str)]) {
    let picks: Vec<String> = choices
        .iter()
        .map(|(name, value)| {
            format!("f.querySelector('select[name=\"{name}\"]').value = '{value}';")
        })
        .collect();
    let done = b.eval(&format!(
        "(() => {{ const f = document.querySelector({}); if (!f) return false; \
         const d = f.closest('details'); if (d) d.open = true; {} \
         f.querySelector('button').click(); return true; }})()",
        json!(form),
        picks.join(" ")
    ));
    assert_eq!(done, json!(true), "no form {form}");
}

#[test]
fn an_admin_silences_acks_resolves_and_commands_from_the_console_and_sees_the_receipt_live() {
    let (cc, _keys, public) = vaultmesh_testkit::commanding_center(&["--attention-tick", "200ms"]);
    // A real agent (ArchVault: agent.ping allowed by the policy and by the agent) ...
    let agent = vaultmesh_testkit::NodeAgent::new(&cc.url)
        .env("VAULTMESH_CC_PUBKEY", &public)
        .env("VAULTMESH_OS_PROFILE", "ArchVault")
        .env("VAULTMESH_INTERVAL", "1s")
        .config("[commands]\nallow = [\"agent.ping\"]\n");
    let _child = agent.spawn(&["run"]);
    let node = vaultmesh_testkit::wait_for(Duration::from_secs(20), || {
        cc.get_json("/api/nodes").as_array()?.first()?["node_id"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the agent reported");
    // ... and a node whose tunnel is down (the ArchVault policy raises it on the second
    // heartbeat in a row).
    for _ in 0..2 {
        heartbeat(&cc, B, "beta", false);
    }

    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("{}/console?node={B}", cc.url));
    b.eval("window.__marker = 42");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    let tunnel = format!("#attention section[data-node-id=\"{B}\"] li[data-rule=\"tunnel\"]");
    wait(
        &mut b,
        &format!("!!document.querySelector('{tunnel}')"),
        "the tunnel reason is listed",
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{tunnel} .reason').textContent"
        )),
        json!("Tunnel down")
    );

    // Silence it for an hour from the attention panel.
    submit(&mut b, &format!("{tunnel} form"), &[("duration", "1h")]);
    wait(
        &mut b,
        &format!("document.querySelector('{tunnel}').classList.contains('suppressed')"),
        "the reason is held back, live",
    );
    let silences = cc.get_json("/api/events?kind=silence");
    let s = &silences.as_array().unwrap()[0];
    assert_eq!(s["node_id"], B);
    assert_eq!(s["body"]["rule"], "tunnel");
    assert_eq!(s["author"], "console");
    let until = chrono::DateTime::parse_from_rfc3339(s["body"]["until"].as_str().unwrap()).unwrap();
    let left = until
        .signed_duration_since(chrono::Utc::now())
        .num_minutes();
    assert!(
        (55..=60).contains(&left),
        "an hour from now: {left} minutes"
    );
    // The node panel lists it; ending it brings the reason back.
    wait(
        &mut b,
        "!!document.querySelector('#node [data-silence-id] form')",
        "the node panel lists the silence",
    );
    submit(&mut b, "#node [data-silence-id] form", &[]);
    wait(
        &mut b,
        &format!("!document.querySelector('{tunnel}').classList.contains('suppressed')"),
        "the silence ended, the reason is back",
    );
    // The node panel's picker: the node's current reasons by their labels; the tunnel, until
    // it clears.
    let picker = "#node form:has(select[name=rule])";
    wait(
        &mut b,
        &format!(
            "[...document.querySelectorAll('{picker} select[name=rule] option')].some((o) => o.value === 'tunnel' && o.textContent === 'Tunnel down')"
        ),
        "the picker offers the tunnel reason by its label",
    );
    assert_eq!(
        b.eval(&format!(
            "[...document.querySelectorAll('{picker} select[name=duration] option')].pop().textContent"
        )),
        json!("until resolved")
    );
    submit(
        &mut b,
        picker,
        &[("rule", "tunnel"), ("duration", "resolved")],
    );
    wait(
        &mut b,
        &format!(
            "document.querySelector('{tunnel}').classList.contains('suppressed') && document.querySelector('{tunnel}').textContent.includes('until resolved')"
        ),
        "held back until resolved, live",
    );
    let silences = cc.get_json("/api/events?kind=silence");
    let s = &silences.as_array().unwrap()[0];
    assert_eq!(s["body"]["rule"], "tunnel", "{s}");
    assert_eq!(s["body"]["until_resolved"], true, "{s}");
    assert_eq!(s["author"], "console");
    wait(
        &mut b,
        "[...document.querySelectorAll('#node [data-silence-id]')].some((d) => d.textContent.includes('until resolved'))",
        "the node panel lists it until resolved",
    );
    // The tunnel comes back: the silence ends by itself.
    for _ in 0..2 {
        heartbeat(&cc, B, "beta", true);
    }
    wait(
        &mut b,
        &format!(
            "!document.querySelector('{tunnel}') && !document.querySelector('#node [data-silence-id]')"
        ),
        "the reason cleared and its silence ended",
    );

    // An incident on the agent's node: acknowledge it, then resolve it, from the panel.
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "incident", "node_id": node, "body": {"title": "disk noise", "severity": "high"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let incident = r.json()["id"].as_str().unwrap().to_string();
    let inc = format!("#attention li[data-rule=\"incident.{incident}\"]");
    wait(
        &mut b,
        &format!("!!document.querySelector('{inc}')"),
        "the incident is listed",
    );
    submit(&mut b, &format!("{inc} form:has(input[value=ack])"), &[]);
    wait(
        &mut b,
        &format!("document.querySelector('{inc}').classList.contains('suppressed')"),
        "acknowledged, live",
    );
    submit(
        &mut b,
        &format!("{inc} form:has(input[value=resolve])"),
        &[],
    );
    wait(
        &mut b,
        &format!("!document.querySelector('{inc}')"),
        "resolved, gone",
    );

    // A command from the node panel: only the policy's actions are offered; the receipt
    // arrives in the timeline without a reload.
    b.eval(&format!(
        "document.querySelector('#node-list li[data-node-id=\"{node}\"] a').click()"
    ));
    // (The panel shown until then, beta's, offers commands too: wait for the agent's.)
    wait(
        &mut b,
        &format!(
            "document.getElementById('node').dataset.nodeId === '{node}' && !!document.querySelector('#node form[data-action=\"agent.ping\"]')"
        ),
        "the node panel offers its commands",
    );
    let offered = b.eval(
        "[...document.querySelectorAll('#node form[data-action]')].map(f => f.dataset.action).join(' ')",
    );
    assert_eq!(
        offered,
        json!("agent.ping checks.run service.status service.restart scan.sovereign"),
        "the ArchVault policy's rules, in order"
    );
    submit(&mut b, "#node form[data-action=\"agent.ping\"]", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let refused =
        b.eval("[...document.querySelectorAll('.form-error')].map(p => p.textContent).join('; ')");
    assert_eq!(refused, json!(""), "the command was taken");
    // The agent may still be backing off from a long-poll it opened before it had enrolled:
    // give its next poll the time it may take on a loaded machine.
    if b.wait_for(
        "!!document.querySelector('#node .ev-command .cmd-status[data-status=\"ok\"]')",
        Duration::from_secs(60),
    )
    .is_none()
    {
        panic!(
            "the receipt arrives, live; the commands: {:#}\nthe timeline: {}",
            cc.get_json(&format!("/api/commands?node_id={node}")),
            b.eval("document.querySelector('#node .timeline').outerHTML")
        );
    }
    let outcome = b.eval("document.querySelector('#node .ev-command .outcome').textContent");
    assert!(outcome.as_str().unwrap().starts_with("pong"), "{outcome}");
    // A command with an argument: the field's value is signed into the command, and the
    // receipt (the agent's own allow list refuses it, signed) arrives live.
    b.eval(
        "document.querySelector('#node form[data-action=\"service.status\"] input[name=\"arg.unit\"]').value = 'sshd.service'",
    );
    submit(&mut b, "#node form[data-action=\"service.status\"]", &[]);
    b.wait_for(
        "[...document.querySelectorAll('#node .ev-command')].some((li) => li.textContent.includes('service.status') && li.querySelector('.cmd-status[data-status=rejected]'))",
        Duration::from_secs(60),
    )
    .expect("the service.status receipt arrives, live");
    let outcome = b.eval(
        "[...document.querySelectorAll('#node .ev-command')].find((li) => li.textContent.includes('service.status')).querySelector('.outcome').textContent",
    );
    assert!(
        outcome.as_str().unwrap().contains("allow list"),
        "{outcome}"
    );
    let issued = cc.get_json(&format!("/api/commands?node_id={node}&limit=100"));
    let status = issued
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"]["action"] == "service.status")
        .unwrap_or_else(|| panic!("{issued:#}"));
    assert_eq!(
        status["command"]["args"],
        json!({"unit": "sshd.service"}),
        "{status:#}"
    );
    assert_eq!(status["command"]["issued_by"], "console", "{status:#}");
    assert_eq!(status["status"], "rejected", "{status:#}");
    assert_eq!(b.eval("window.__marker"), json!(42), "no reload");
    no_errors(&mut b);

    // The form's refusals: the policy's (403), a field the form lacks (400), a typo (422).
    let http = reqwest::blocking::Client::new();
    let post = |body: String| {
        let r = http
            .post(format!("{}/console/commands", cc.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.json::<Value>().unwrap()["error"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let (status, e) = post(format!(
        "node_id={node}&action=service.restart&arg.unit=sshd.service"
    ));
    assert_eq!(status, 403, "{e}");
    assert!(e.contains("does not match \"sshd.service\""), "{e}");
    assert_eq!(
        post(format!("node_id={node}&action=agent.ping&ttl=9")).0,
        400
    );
    let (status, e) = post(format!("node_id={node}&action=agent.pong"));
    assert_eq!(status, 422);
    assert!(e.contains("did you mean \"agent.ping\""), "{e}");
    b.screenshot(&artifacts_dir().join("console-actions.png"), false);
}

/// A phone: 390 × 844 CSS pixels, the viewport meta honoured.
fn phone() -> Browser {
    let mut b = Browser::launch(390, 844);
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    b
}

/// How far the page scrolls sideways (0: it fits), and what sticks out first.
fn overflow(b: &mut Browser) -> (i64, Value) {
    let by = b.eval("document.documentElement.scrollWidth - window.innerWidth");
    let culprit = b.eval(
        "(() => { for (const e of document.querySelectorAll('body *')) { \
           const r = e.getBoundingClientRect(); \
           if (r.right > window.innerWidth + 1 && r.width > 0) return e.tagName + '.' + e.className + ' ' + Math.round(r.right); } \
           return null; })()",
    );
    (by.as_i64().unwrap(), culprit)
}

#[test]
fn an_empty_fleet_says_how_to_add_a_node_and_both_pages_fit_a_390_px_phone() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    let mut b = phone();
    // No node yet: the console's center says how to add one, as the overview does.
    for page in ["/console", "/"] {
        b.navigate(&format!("{}{page}", cc.url));
        assert_eq!(
            b.eval("window.innerWidth"),
            json!(390),
            "the viewport meta is honoured"
        );
        let hint = b.eval(
            "(document.querySelector('#node .empty, #overview .empty') || {}).textContent || ''",
        );
        assert!(
            hint.as_str()
                .unwrap()
                .contains("No nodes have reported yet")
                && hint.as_str().unwrap().contains("vaultmesh-node-agent run"),
            "{page}: {hint}"
        );
        assert_eq!(overflow(&mut b), (0, Value::Null), "{page} fits");
    }
    // A fleet with long names and long reasons still fits, on both pages.
    let long = "a-very-long-hostname-that-a-node-might-well-report.example.internal";
    heartbeat(&cc, A, long, false);
    heartbeat(&cc, B, "beta", true);
    for page in [format!("/console?node={A}"), "/".to_string()] {
        b.navigate(&format!("{}{page}", cc.url));
        wait(
            &mut b,
            &format!("!!document.querySelector('[data-node-id=\"{A}\"] .reason')"),
            "the node and its reason are shown",
        );
        let (by, culprit) = overflow(&mut b);
        assert_eq!(by, 0, "{page} scrolls sideways by {by} px: {culprit}");
        // Nor does any part of it scroll sideways inside the page (a table in a scroller).
        assert_eq!(culprit, Value::Null, "{page}: sticks out");
        b.screenshot(
            &artifacts_dir().join(format!(
                "phone-{}.png",
                if page == "/" { "overview" } else { "console" }
            )),
            true,
        );
    }
    // The overview's rows are cards: the host links to the node, each value is labelled.
    let host = b.eval(&format!(
        "document.querySelector('tr[data-node-id=\"{A}\"] .host a').getAttribute('href')"
    ));
    assert_eq!(host, json!(format!("/console?node={A}")));
    let label = b.eval(&format!(
        "getComputedStyle(document.querySelector('tr[data-node-id=\"{A}\"] td[data-label=Memory]'), '::before').content"
    ));
    assert_eq!(label, json!("\"Memory\""));
    no_errors(&mut b);

    // In the console, a row whose level changes moves to its place in the list (worst first)
    // without the list being fetched again.
    b.navigate(&format!("{}/console?node={A}", cc.url));
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    let order = "[...document.querySelectorAll('#node-list li[data-node-id]')].map(r => r.dataset.nodeId).join(' ')";
    assert_eq!(b.eval(order), json!(format!("{A} {B}")));
    b.eval("document.querySelector('#node-list').dataset.same = '1'");
    let mut hb = vaultmesh_testkit::heartbeat_json(B, "beta", 2);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["services_ok"] = json!(false);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
    wait(
        &mut b,
        &format!("{order} === '{B} {A}'"),
        "the CRIT row moved above the ATTN one",
    );
    assert_eq!(
        b.eval("document.querySelector('#node-list').dataset.same"),
        json!("1"),
        "moved in place, not refetched"
    );
    no_errors(&mut b);

    // Grouped, with a long label value and a long profile name, the list still fits.
    let mut hb =
        vaultmesh_testkit::heartbeat_json("c3000000-0000-4000-8000-00000000000c", "gamma", 1);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["os_profile"] = json!("AVeryLongProfileNameThatSomeAdminChoseForTheirOwnFleetOfVaults");
    hb["labels"] =
        json!({"site": "a-very-long-site-name-of-sixty-four-characters-in-one-word-xyz12"});
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
    for group in ["label:site", "profile"] {
        b.navigate(&format!("{}/console?node={A}&group={group}", cc.url));
        wait(
            &mut b,
            "document.querySelectorAll('#node-list > li.group').length === 2",
            "the list is grouped",
        );
        let (by, culprit) = overflow(&mut b);
        assert_eq!(
            by, 0,
            "grouped by {group}, scrolls sideways by {by} px: {culprit}"
        );
        assert_eq!(culprit, Value::Null, "grouped by {group}: sticks out");
    }
    b.screenshot(&artifacts_dir().join("phone-console-grouped.png"), true);
    no_errors(&mut b);
}

/// Issue 25: a retired node could not be removed from the console. Now the node panel's
/// decommission form (its "I understand" box required by the browser) takes it out of the list
/// and the KPIs live, without a reload, and its panel says what happened.
#[test]
fn an_admin_decommissions_a_node_from_the_console_and_it_leaves_the_list_live() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    heartbeat(&cc, A, "alpha", true);
    heartbeat(&cc, B, "beta", false);
    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("{}/console?node={B}", cc.url));
    b.eval("window.__marker = 42");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    let row = format!("#node-list li[data-node-id=\"{B}\"]");
    assert_eq!(kpi(&mut b, "total"), "2");
    // Not ticked: the browser does not post it.
    submit(&mut b, "#node form[data-decommission]", &[]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        b.eval(&format!("!!document.querySelector('{row}')")),
        json!(true)
    );
    assert!(
        cc.get_json("/api/events?kind=node_decommissioned")
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Ticked, with a reason.
    b.eval(
        "(() => { const f = document.querySelector('#node form[data-decommission]'); \
         f.querySelector('input[name=reason]').value = 'replaced'; \
         f.querySelector('input[name=confirm]').checked = true; })()",
    );
    submit(&mut b, "#node form[data-decommission]", &[]);
    wait(
        &mut b,
        &format!("!document.querySelector('{row}')"),
        "the node leaves the list, live",
    );
    wait(
        &mut b,
        "document.querySelector('[data-kpi=\"total\"]').textContent === '1'",
        "the KPIs count it no more",
    );
    wait(
        &mut b,
        "!!document.querySelector('#node [data-decommissioned]')",
        "its panel says it is decommissioned",
    );
    assert_eq!(b.eval("window.__marker"), json!(42), "no reload");
    let events = cc.get_json("/api/events?kind=node_decommissioned");
    assert_eq!(events[0]["node_id"], B);
    assert_eq!(events[0]["body"]["reason"], "replaced");
    b.screenshot(&artifacts_dir().join("console-decommissioned.png"), false);
    no_errors(&mut b);
}

/// Issue 25: a node could only be read by its hostname. Now the node panel's rename form
/// (Lifecycle) gives it a display name: its row, its panel and the list's order show it live,
/// without a reload, the hostname beside it, and the filter box finds it by it.
#[test]
fn an_admin_renames_a_node_from_the_console_and_its_row_shows_the_name_live() {
    let cc = CommandCenter::start();
    heartbeat(&cc, A, "alpha", true);
    heartbeat(&cc, B, "beta", true);
    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("{}/console?node={B}", cc.url));
    b.eval("window.__marker = 42");
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    let row = format!("#node-list li[data-node-id=\"{B}\"]");
    let first = "document.querySelector('#node-list li[data-node-id]').dataset.nodeId";
    assert_eq!(b.eval(first), json!(A), "alpha before beta");
    b.eval(
        "(() => { const f = document.querySelector('#node form[data-rename]'); \
         f.querySelector('input[name=display_name]').value = 'Frankfurt edge 1'; })()",
    );
    submit(&mut b, "#node form[data-rename]", &[]);
    wait(
        &mut b,
        &format!(
            "(document.querySelector('{row} .display-name') || {{}}).textContent === 'Frankfurt edge 1'"
        ),
        "the row shows the new name, live",
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{row} .host-sub').textContent"
        )),
        json!("beta"),
        "the hostname beside it"
    );
    wait(
        &mut b,
        "(document.querySelector('#node h2 .display-name') || {}).textContent === 'Frankfurt edge 1'",
        "the panel shows it",
    );
    wait(
        &mut b,
        &format!("{first} === '{B}'"),
        "the list is sorted by the name shown ('F' before 'a')",
    );
    assert_eq!(
        b.eval(
            "(() => { const f = document.getElementById('filter'); f.value = 'frankfurt'; \
             f.dispatchEvent(new Event('input')); \
             return [...document.querySelectorAll('#node-list li[data-node-id]')] \
               .filter((r) => !r.hidden).map((r) => r.dataset.nodeId); })()"
        ),
        json!([B]),
        "the filter box matches the display name"
    );
    assert_eq!(b.eval("window.__marker"), json!(42), "no reload");
    assert_eq!(
        b.eval(
            "performance.getEntriesByType('resource').filter((e) => new URL(e.name).pathname === '/console/nodes').length"
        ),
        json!(0),
        "the row alone is refetched, not the whole list"
    );
    let events = cc.get_json("/api/events?kind=node_renamed");
    assert_eq!(events[0]["node_id"], B);
    assert_eq!(events[0]["author"], "console");
    assert_eq!(events[0]["body"]["display_name"], "Frankfurt edge 1");
    // Two nodes showing the same name are ordered by id, live as after a reload (the moved
    // row used to go after every equal name).
    let r = cc.post_json(
        &format!("/api/nodes/{A}/rename"),
        &json!({"display_name": "Frankfurt edge 1"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let order = "[...document.querySelectorAll('#node-list li[data-node-id]')].map((r) => r.dataset.nodeId).join(' ')";
    wait(
        &mut b,
        &format!(
            "document.querySelector('#node-list li[data-node-id=\"{A}\"] .display-name') && {order} === '{A} {B}'"
        ),
        "equal names go by id, live",
    );
    b.screenshot(&artifacts_dir().join("console-renamed.png"), false);
    no_errors(&mut b);
}

/// Issue 25: the filter box knew hostnames and profiles only. Now `site:fra1` picks the nodes
/// with that label and `profile:ArchVault` those of that profile, every word narrowing further.
#[test]
fn the_filter_box_narrows_the_list_by_label_and_profile() {
    let cc = CommandCenter::start();
    for (node, host, site, profile) in [
        (A, "alpha", "fra1", "ArchVault"),
        (B, "beta", "ams3", "ArchVault"),
        (
            "c3000000-0000-4000-8000-00000000000c",
            "gamma",
            "fra1",
            "DebianVault",
        ),
    ] {
        let mut hb = heartbeat_json(node, host, 1);
        hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
        hb["os_profile"] = json!(profile);
        hb["labels"] = json!({"site": site});
        let r = cc.post_json("/api/agent/heartbeat", &hb);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut b = Browser::launch(1280, 800);
    b.navigate(&format!("{}/console", cc.url));
    wait(
        &mut b,
        "document.querySelectorAll('#node-list li[data-node-id]').length === 3",
        "three nodes listed",
    );
    let shown = |b: &mut Browser, q: &str| -> Vec<String> {
        b.eval(&format!(
            "(() => {{ const f = document.getElementById('filter'); f.value = {}; \
             f.dispatchEvent(new Event('input')); \
             return [...document.querySelectorAll('#node-list li[data-node-id]')] \
               .filter((r) => !r.hidden).map((r) => r.dataset.name); }})()",
            json!(q)
        ))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
    };
    assert_eq!(shown(&mut b, "site:fra1"), ["alpha", "gamma"]);
    assert_eq!(shown(&mut b, "SITE:FRA1 profile:archvault"), ["alpha"]);
    assert_eq!(shown(&mut b, "profile:DebianVault"), ["gamma"]);
    assert!(shown(&mut b, "site:lon1").is_empty());
    assert_eq!(shown(&mut b, ""), ["alpha", "beta", "gamma"]);
    assert_eq!(
        b.eval("document.querySelector('#node-list li[data-name=\"beta\"] [data-label=\"site\"]').textContent"),
        json!("site:ams3")
    );
    no_errors(&mut b);
}

/// Posts a heartbeat of `node` with its profile, labels and services.
fn labelled_heartbeat(
    cc: &CommandCenter,
    (node, host, seq): (&str, &str, u64),
    profile: &str,
    labels: Value,
    up: bool,
) {
    let mut hb = heartbeat_json(node, host, seq);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["os_profile"] = json!(profile);
    hb["labels"] = labels;
    hb["services_ok"] = json!(up);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The grouped list as the page shows it: each group's name, count, counts by level
/// (CRIT/ATTN/OK) and its visible rows' hostnames, in order.
const GROUPS: &str = "[...document.querySelectorAll('#node-list > li.group')].filter((g) => !g.hidden).map((g) => \
    g.querySelector('.group-name').textContent + ' ' + \
    ['total', 'crit', 'attn', 'ok'].map((k) => g.querySelector('[data-count=' + k + ']').textContent).join('/') + ': ' + \
    [...g.querySelectorAll('li[data-node-id]')].filter((r) => !r.hidden).map((r) => r.dataset.name).join(' ')).join(' | ')";

/// Issue 25 (the seed's "node tree"): the node list groups by profile or by a label key, a
/// header per group with its counts by level, the nodes without the label last. Without script
/// the "Group by" select is a GET form; with it, the choice applies at once and stays in the URL,
/// and rows that change level or label move to their group live (a group emptied goes, a new
/// one appears), the counts following, without the list being fetched again.
#[test]
fn the_node_list_groups_by_profile_and_label_without_script_and_live_with_it() {
    let cc = CommandCenter::start_with(&["--attention-tick", "200ms"]);
    const C: &str = "c3000000-0000-4000-8000-00000000000c";
    const D: &str = "d4000000-0000-4000-8000-00000000000d";
    labelled_heartbeat(
        &cc,
        (A, "alpha", 1),
        "ArchVault",
        json!({"site": "fra1"}),
        true,
    );
    labelled_heartbeat(
        &cc,
        (B, "beta", 1),
        "ArchVault",
        json!({"site": "ams3"}),
        true,
    );
    labelled_heartbeat(
        &cc,
        (C, "gamma", 1),
        "DebianVault",
        json!({"site": "fra1"}),
        false,
    );
    labelled_heartbeat(&cc, (D, "delta", 1), "DebianVault", json!({}), true);

    // Without script: the server renders the grouping the URL names, and the form asks for
    // another.
    let mut b = Browser::launch(1280, 900);
    b.call(
        "Emulation.setScriptExecutionDisabled",
        json!({"value": true}),
    );
    b.navigate(&format!("{}/console?group=profile", cc.url));
    assert_eq!(
        b.eval("document.getElementById('stream-state').textContent"),
        json!("connecting…"),
        "no script ran"
    );
    assert_eq!(
        b.eval(GROUPS),
        json!("ArchVault 2/0/0/2: alpha beta | DebianVault 2/1/0/1: gamma delta")
    );
    assert_eq!(
        b.eval("getComputedStyle(document.querySelector('form[data-group-form] button')).display !== 'none'"),
        json!(true),
        "the form's button shows without script"
    );
    b.eval(
        "(() => { const f = document.querySelector('form[data-group-form]'); \
         f.querySelector('select').value = 'label:site'; f.submit(); })()",
    );
    wait(
        &mut b,
        "location.search.includes('group=label%3Asite') && document.readyState === 'complete'",
        "the form's GET",
    );
    assert_eq!(
        b.eval(GROUPS),
        json!("ams3 1/0/0/1: beta | fra1 2/1/0/1: gamma alpha | (no site) 1/0/0/1: delta")
    );
    assert_eq!(
        b.eval("new URL(location.href).searchParams.get('node')"),
        json!(C),
        "the form keeps the selected node (the worst)"
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('li[data-node-id=\"{A}\"] a').getAttribute('href')"
        )),
        json!(format!("/console?node={A}&group=label:site")),
        "a row's link keeps the grouping"
    );
    // A misspelt grouping is refused with the near one.
    for (q, says) in [
        ("lable:site", "did you mean \"label:site\""),
        ("site", "did you mean \"label:site\""),
        ("zone", "groups are none, profile, label:site"),
    ] {
        let r = cc.get(&format!("/console?group={q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            e.starts_with(&format!("group={q:?} ")) && e.contains(says),
            "{q}: {e}"
        );
    }
    // A label no node has (a bookmark that outlived the fleet's last node with it, or a typo)
    // is a page, not an error: every node in "(no zone)", and the page says so with the near key.
    let r = cc.get("/console?group=label:stie");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("names a label no node has; did you mean &quot;label:site&quot;?")
            && r.body.contains("data-group-notice")
            && r.body.contains(r#"<option value="label:stie" selected>"#),
        "{}",
        r.body
    );
    assert_eq!(
        cc.get("/console/nodes?group=label:zone").status,
        200,
        "the script's fragments take a key the fleet lost"
    );
    assert_eq!(cc.get("/console/nodes?group=zone").status, 400);
    drop(b);

    // With script: the select applies at once, the URL keeps it, a reload too.
    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("{}/console", cc.url));
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    b.eval("window.__marker = 42");
    assert_eq!(
        b.eval("document.querySelector('form[data-group-form] button').hidden"),
        json!(true),
        "the script applies a choice at once"
    );
    b.eval(
        "(() => { const s = document.querySelector('form[data-group-form] select'); \
         s.value = 'label:site'; s.dispatchEvent(new Event('change')); })()",
    );
    wait(
        &mut b,
        &format!(
            "{GROUPS} === 'ams3 1/0/0/1: beta | fra1 2/1/0/1: gamma alpha | (no site) 1/0/0/1: delta'"
        ),
        "grouped by site without a reload",
    );
    assert_eq!(b.eval("window.__marker"), json!(42), "no reload");
    assert_eq!(
        b.eval("new URL(location.href).searchParams.get('group')"),
        json!("label:site")
    );
    b.eval("location.reload()");
    wait(
        &mut b,
        "(document.getElementById('stream-state') || {}).textContent === 'live' && !window.__marker",
        "reloaded",
    );
    assert_eq!(
        b.eval("document.querySelector('form[data-group-form] select').value"),
        json!("label:site")
    );
    assert_eq!(
        b.eval(GROUPS),
        json!("ams3 1/0/0/1: beta | fra1 2/1/0/1: gamma alpha | (no site) 1/0/0/1: delta")
    );

    // Live: a level change moves the row within its group and the counts follow; a label
    // changed by the agent moves it to a new group; an admin's tag moves another and empties
    // its group. The list is not fetched again.
    // (The stream resumes after the page: the list is not refetched on connecting.)
    b.eval("document.querySelector('#node-list').dataset.same = '1'");
    labelled_heartbeat(
        &cc,
        (A, "alpha", 2),
        "ArchVault",
        json!({"site": "fra1"}),
        false,
    );
    wait(
        &mut b,
        &format!(
            "{GROUPS} === 'ams3 1/0/0/1: beta | fra1 2/2/0/0: alpha gamma | (no site) 1/0/0/1: delta'"
        ),
        "alpha turned CRIT, first in fra1 by name",
    );
    labelled_heartbeat(
        &cc,
        (C, "gamma", 2),
        "DebianVault",
        json!({"site": "lon1"}),
        false,
    );
    wait(
        &mut b,
        &format!(
            "{GROUPS} === 'ams3 1/0/0/1: beta | fra1 1/1/0/0: alpha | lon1 1/1/0/0: gamma | (no site) 1/0/0/1: delta'"
        ),
        "gamma moved to a new lon1 group",
    );
    let r = cc.post_json(
        "/api/events",
        &json!({"kind": "tag", "node_id": B, "author": "alice",
                "body": {"label": "site", "value": "fra1"}}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    wait(
        &mut b,
        &format!(
            "{GROUPS} === 'fra1 2/1/0/1: alpha beta | lon1 1/1/0/0: gamma | (no site) 1/0/0/1: delta'"
        ),
        "beta tagged fra1: the ams3 group is gone",
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#node-list > li.group').length"),
        json!(3),
        "the emptied group left the list"
    );
    assert_eq!(
        b.eval("document.querySelector('#node-list').dataset.same"),
        json!("1"),
        "moved in place, not refetched"
    );
    assert_eq!(kpi(&mut b, "crit"), "2");
    // The filter narrows the groups too: a group it empties is hidden.
    b.eval(
        "(() => { const f = document.getElementById('filter'); f.value = 'profile:archvault'; \
         f.dispatchEvent(new Event('input')); })()",
    );
    assert_eq!(b.eval(GROUPS), json!("fra1 2/1/0/1: alpha beta"));
    b.screenshot(&artifacts_dir().join("console-grouped.png"), false);
    no_errors(&mut b);
}

/// Issue 27: the node panel charts CPU, network, disk I/O and the hottest sensor from the
/// heartbeats' new measurements, each on an axis in its unit.
#[test]
fn the_node_panel_charts_cpu_network_disk_io_and_temperature() {
    let cc = CommandCenter::start();
    for (i, busy) in [20.0, 35.0, 50.0].into_iter().enumerate() {
        let mut hb = heartbeat_json(A, "vault-rates", i as u64 + 1);
        hb["timestamp"] = json!(chrono::Utc::now());
        let m = &mut hb["metrics"];
        m["cpu"] = json!({"busy_pct": busy, "user_pct": busy - 10.0, "system_pct": 8.0,
                          "iowait_pct": 3.0, "steal_pct": 2.0});
        m["net"] = json!([
            {"interface": "eth0", "rx_bytes_per_s": 1_500_000.0, "tx_bytes_per_s": 250_000.0,
             "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.0, "rx_drops_per_s": 0.0, "tx_drops_per_s": 0.0},
            {"interface": "eth1", "rx_bytes_per_s": 500_000.0, "tx_bytes_per_s": 0.0,
             "rx_errors_per_s": 0.0, "tx_errors_per_s": 0.0, "rx_drops_per_s": 0.0, "tx_drops_per_s": 0.0}]);
        m["diskio"] = json!([{"device": "vda", "read_bytes_per_s": 4096.0, "write_bytes_per_s": 2_000_000.0,
                              "read_iops": 1.0, "write_iops": 40.0, "busy_pct": 12.0}]);
        m["temperatures"] = json!([
            {"sensor": "coretemp", "label": "Core 0", "celsius": 61.0, "crit_celsius": 100.0},
            {"sensor": "nvme", "label": "Composite", "celsius": 44.0}]);
        let r = cc.post_json("/api/agent/heartbeat", &hb);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut b = Browser::launch(1280, 1600);
    b.navigate(&format!("{}/console?node={A}&range=1h", cc.url));
    wait(
        &mut b,
        "!!document.querySelector('#node [data-chart=temperature] svg')",
        "the node panel with its charts",
    );
    let charts: Vec<(String, String, String)> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#node [data-chart]')].map(c => [c.dataset.chart, c.querySelector('svg title').textContent, [...c.querySelectorAll('.axis.y text:not(.unit)')].map(t => t.textContent).pop()])",
    ))
    .unwrap();
    let names: Vec<&str> = charts.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        ["cpu", "network", "diskio", "temperature"],
        "{charts:?}"
    );
    assert_eq!(charts[0].1, "CPU time, the last hour");
    assert_eq!(charts[0].2, "100%", "CPU on a percent axis");
    // Both interfaces summed: 2 MB/s received at the top of a bytes-per-second axis.
    assert!(charts[1].2.ends_with("MB/s"), "{charts:?}");
    assert!(charts[2].2.ends_with("MB/s"), "{charts:?}");
    assert_eq!(charts[3].2, "100°C", "{charts:?}");
    let lines: Vec<String> = serde_json::from_value(b.eval(
        "[...document.querySelectorAll('#node [data-chart] path.line')].map(p => p.getAttribute('class'))",
    ))
    .unwrap();
    for class in [
        "line cpu",
        "line iowait",
        "line steal",
        "line rx",
        "line tx",
        "line read",
        "line write",
        "line temp",
    ] {
        assert!(lines.iter().any(|l| l == class), "{class} in {lines:?}");
    }
    no_errors(&mut b);
}

/// A heartbeat of `node` under the `Test` profile with its services down, and the systemd
/// check's raw summary as the reason's detail.
fn failing_heartbeat(cc: &CommandCenter, node: &str, host: &str, seq: u64) {
    let mut hb = heartbeat_json(node, host, seq);
    hb["timestamp"] = json!(chrono::Utc::now().to_rfc3339());
    hb["os_profile"] = json!("Test");
    hb["services_ok"] = json!(false);
    hb["checks"] = json!([{"name": "systemd", "status": "crit", "summary": UNIT_FAILED,
        "observed_at": chrono::Utc::now().to_rfc3339(), "duration_ms": 1}]);
    let r = cc.post_json("/api/agent/heartbeat", &hb);
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The raw error a reason's detail holds, never its label.
const UNIT_FAILED: &str = "nginx.service failed (failed): Main process exited, code=exited, status=1/FAILURE; 5 restarts in 60s";

/// What `css`'s element looks like: its opacity and filter, computed.
fn look(b: &mut Browser, css: &str) -> Value {
    b.eval(&format!(
        "(() => {{ const e = document.querySelector({}); if (!e) return null; \
         const s = getComputedStyle(e); return s.opacity + ' ' + s.filter; }})()",
        json!(css)
    ))
}

/// Issue 25: a node dead for minutes led with its last heartbeat's "services are down…", and
/// its tiles showed load and memory as if live. Now a node that goes silent leads with its
/// staleness (before a worse reason its last heartbeat raised) in the list, the attention panel
/// and the overview, its tiles are greyed "as of" then, live, and the overview greys its last
/// values. A reason's raw detail is shown on demand (the chip's title, the attention panel's
/// `<details>`), and a detail an admin opened stays open when the panel is refetched live.
#[test]
fn a_silent_node_leads_with_stale_greys_its_last_values_and_an_opened_detail_stays_open() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("Test.toml"),
        "[attention]\nstale_after = \"10s\"\ncritical_after = \"1h\"\n",
    )
    .unwrap();
    let cc = CommandCenter::start_with(&[
        "--policy-dir",
        policies.path().to_str().unwrap(),
        "--attention-tick",
        "200ms",
    ]);
    let mut b = Browser::launch(1280, 900);
    failing_heartbeat(&cc, A, "alpha", 1);
    b.navigate(&format!("{}/console?node={A}", cc.url));
    wait(
        &mut b,
        "document.getElementById('stream-state').textContent === 'live'",
        "the stream connects",
    );
    b.eval("window.__marker = 42");
    // Heard from again now that the page is live: the 10 s until it is stale start here, not
    // before a page load that a busy machine can stretch.
    failing_heartbeat(&cc, A, "alpha", 2);
    let row = format!("#node-list li[data-node-id=\"{A}\"]");
    let section = format!("#attention section[data-node-id=\"{A}\"]");
    // Fresh: the services reason alone, the tiles are live.
    wait(
        &mut b,
        &format!(
            "[...document.querySelectorAll('{section} li[data-rule]')].map((li) => li.dataset.rule).join(' ') === 'services'"
        ),
        "fresh: only what the heartbeat said",
    );
    assert_eq!(
        b.eval("!!document.querySelector('#node .tiles.stale, #node [data-as-of]')"),
        json!(false),
        "a fresh node's tiles are not greyed"
    );
    assert_eq!(look(&mut b, "#node .tiles .tile"), json!("1 none"));

    // Silent: `stale` comes first everywhere though `services` is worse (CRIT), live.
    // Up to the 10 s of `stale_after` and then the usual wait.
    assert!(
        b.wait_for(
            "!!document.querySelector('#node .tiles.stale') && !!document.querySelector('#node [data-as-of]')",
            Duration::from_secs(10) + T,
        )
        .is_some(),
        "the tiles are greyed once the node is stale, without a reload"
    );
    assert_eq!(b.eval("window.__marker"), json!(42), "no reload");
    assert!(
        b.eval("document.querySelector('#node [data-as-of]').textContent")
            .as_str()
            .unwrap()
            .starts_with("No heartbeat since "),
    );
    assert_eq!(
        look(&mut b, "#node .tiles.stale .tile"),
        json!("0.45 grayscale(1)"),
        "greyed, as of then"
    );
    wait(
        &mut b,
        &format!(
            "[...document.querySelectorAll('{section} li[data-rule]')].map((li) => li.dataset.rule).join(' ') === 'stale services'"
        ),
        "the attention panel leads with stale",
    );
    wait(
        &mut b,
        &format!(
            "(document.querySelector('{row} [data-why] .reason') || {{}}).dataset?.rule === 'stale'"
        ),
        "the row's reason is stale",
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{row} [data-why]').textContent.trim().replace(/\\s+/g, ' ')"
        ))
        .as_str()
        .unwrap()
        .split(' ')
        .next_back(),
        Some("+1"),
        "and one more"
    );
    assert_eq!(
        b.eval(&format!("document.querySelector('{row}').dataset.level")),
        json!("crit"),
        "the level is still the worst reason's"
    );
    let stale_label = b.eval(&format!(
        "document.querySelector('{section} li[data-rule=stale] .reason').textContent"
    ));
    assert!(
        stale_label.as_str().unwrap().starts_with("Stale "),
        "{stale_label}"
    );

    // The services reason: its label at a glance, its raw detail in the chip's title and in
    // the `<details>`, shown only when opened.
    let services = format!("{section} li[data-rule=services]");
    let message = cc.get_json(&format!("/api/nodes/{A}"))["summary"]["attention"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "services")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(message, format!("services are down: {UNIT_FAILED}"));
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{services} summary .reason').textContent"
        )),
        json!("Services down"),
        "the label, not the raw error"
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{services} summary .reason').title"
        )),
        json!(message),
        "the chip's title holds the detail"
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{row} [data-why] .reason').title.startsWith('no heartbeat for ')"
        )),
        json!(true),
        "so does the row's chip"
    );
    let shown = format!("document.querySelector('{services} p.detail').checkVisibility()");
    assert_eq!(b.eval(&shown), json!(false), "closed: the detail is hidden");
    b.eval(&format!(
        "document.querySelector('{services} summary').click()"
    ));
    assert_eq!(b.eval(&shown), json!(true), "opened: the detail shows");
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{services} p.detail').textContent"
        )),
        json!(message)
    );
    // Another node's change refetches the panel live: the opened detail stays open.
    b.eval("document.getElementById('attention').dataset.old = '1'");
    failing_heartbeat(&cc, B, "beta", 1);
    wait(
        &mut b,
        &format!(
            "!document.getElementById('attention').dataset.old && !!document.querySelector('#attention section[data-node-id=\"{B}\"]')"
        ),
        "the attention panel is refetched with the new node",
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{services} details').open"
        )),
        json!(true),
        "the opened detail stays open"
    );
    assert_eq!(b.eval(&shown), json!(true));
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{section} li[data-rule=stale] details').open"
        )),
        json!(false),
        "and only that one"
    );
    b.screenshot(&artifacts_dir().join("console-stale.png"), false);
    no_errors(&mut b);

    // The overview: stale first, the last values greyed, the fresh node's not.
    failing_heartbeat(&cc, B, "beta", 2);
    b.navigate(&format!("{}/", cc.url));
    let tr = |n: &str| format!("#overview tr[data-node-id=\"{n}\"]");
    assert_eq!(
        b.eval(&format!(
            "[...document.querySelectorAll('{} .why .reason')].map((r) => r.dataset.rule).join(' ')",
            tr(A)
        )),
        json!("stale services")
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{}').classList.contains('stale')",
            tr(A)
        )),
        json!(true)
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelectorAll('{} td.was').length",
            tr(A)
        )),
        json!(5),
        "tunnel, services, load, memory, disk"
    );
    for css in [
        format!("{} td.was[data-label=Memory]", tr(A)),
        format!("{} td.was[data-label=\"Load 1m\"]", tr(A)),
    ] {
        assert_eq!(look(&mut b, &css), json!("0.45 grayscale(1)"), "{css}");
    }
    assert_eq!(
        look(&mut b, &format!("{} td[data-label=Host]", tr(A))),
        json!("1 none"),
        "the node itself is not greyed, only what it last said"
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{} td[data-label=\"Last seen\"] .sub').textContent",
            tr(A)
        )),
        json!("values as of then")
    );
    assert_eq!(
        b.eval(&format!(
            "document.querySelector('{}').classList.contains('stale')",
            tr(B)
        )),
        json!(false),
        "the node that just reported is not stale"
    );
    assert_eq!(
        look(&mut b, &format!("{} td.was[data-label=Memory]", tr(B))),
        json!("1 none")
    );
    b.screenshot(&artifacts_dir().join("dashboard-stale.png"), false);
    no_errors(&mut b);
}
