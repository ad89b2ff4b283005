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
    b.eval("1");
    assert!(
        b.errors.is_empty(),
        "no script errors or CSP violations: {:?}",
        b.errors
    );

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
