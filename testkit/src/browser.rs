//! A real headless Chromium, driven over the DevTools protocol: just enough to load a page,
//! evaluate JavaScript in it (to read the DOM), wait for a condition and take a screenshot (of
//! the page or of one element).
//!
//! Chromium is `/usr/bin/chromium` (Debian package `chromium`), or `$CHROMIUM`. Tests that
//! need it fail with the install line when it is missing — `scripts/test` installs it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The browser executable.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// One headless Chromium with one page. Killed on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Messages the page logged (`console.log`), as text.
    pub console: Vec<String>,
    /// Uncaught exceptions and browser-reported errors (CSP violations, failed loads).
    pub errors: Vec<String>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window and attaches to its page.
    pub fn launch(width: u32, height: u32) -> Browser {
        Browser::launch_with(width, height, &[])
    }

    /// [`Browser::launch`] with more command-line switches, e.g.
    /// `--host-resolver-rules=MAP evil.example 127.0.0.1` (a name rebound to loopback).
    pub fn launch_with(width: u32, height: u32, switches: &[&str]) -> Browser {
        let exe = chromium_path();
        assert!(
            exe.exists(),
            "{} not found: install it with `sudo apt-get install -y chromium` (scripts/test does)",
            exe.display()
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new(&exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                &format!("--window-size={width},{height}"),
            ])
            .args(switches)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let targets: Vec<Value> = crate::http()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .and_then(|r| r.json())
            .expect("DevTools target list");
        let ws_url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tungstenite::connect(ws_url).expect("DevTools websocket");
        // A hung browser must fail the test, not hang the suite.
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60)))
                .expect("read timeout");
        }
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 1,
            console: Vec::new(),
            errors: Vec::new(),
        };
        b.call("Runtime.enable", json!({}));
        b.call("Log.enable", json!({}));
        b.call("Page.enable", json!({}));
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Sends a DevTools command and returns its `result` (panics on a protocol error).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Like [`Browser::call`], with DevTools' error (`{"code":…,"message":…}`) as `Err`.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).expect("send to chromium");
        loop {
            let msg = self.ws.read().expect("read from chromium");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["method"] == "Runtime.consoleAPICalled" {
                let args: Vec<String> = v["params"]["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"]
                                    .as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x["value"].to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.console.push(args.join(" "));
            }
            if v["method"] == "Runtime.exceptionThrown" {
                let d = &v["params"]["exceptionDetails"];
                self.errors.push(format!(
                    "exception: {}",
                    d["exception"]["description"]
                        .as_str()
                        .unwrap_or(d["text"].as_str().unwrap_or("?"))
                ));
            }
            if v["method"] == "Log.entryAdded" && v["params"]["entry"]["level"] == "error" {
                let entry = &v["params"]["entry"];
                let mut error = format!(
                    "{}: {}",
                    entry["source"].as_str().unwrap_or("log"),
                    entry["text"].as_str().unwrap_or("?")
                );
                // Name the resource: "404 (Not Found)" alone does not say which.
                if let Some(url) = entry["url"].as_str().filter(|u| !u.is_empty()) {
                    error.push_str(&format!(" ({url})"));
                }
                self.errors.push(error);
            }
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    return Err(e.clone());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// Loads `url` and waits until the document has loaded.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("{url} did not load"));
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value as JSON.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("{expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy (while the page navigates, it is not); its value, or `None` after `timeout`.
    pub fn wait_for(&mut self, expr: &str, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.try_call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            );
            let v = match r {
                // The page is being replaced (a redirect, a refresh, a click that navigates):
                // not there yet.
                Ok(r) => match r.get("exceptionDetails") {
                    Some(ex) if navigating(&ex.to_string()) => Value::Null,
                    Some(ex) => panic!("{expr}: {ex}"),
                    None => r["result"]["value"].clone(),
                },
                Err(e) if navigating(&e.to_string()) => Value::Null,
                Err(e) => panic!("Runtime.evaluate: {e}"),
            };
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG of the viewport (or the full page) to `path`.
    pub fn screenshot(&mut self, path: &Path, full_page: bool) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": full_page}),
        );
        save_png(&r, path);
    }

    /// Saves a PNG of the first element matching `css` (its whole box, scrolled or not) to
    /// `path`.
    pub fn screenshot_of(&mut self, css: &str, path: &Path) {
        let quoted = serde_json::to_string(css).expect("a selector is a string");
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({quoted}); if (!e) return null; \
             const r = e.getBoundingClientRect(); \
             return {{x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}}; }})()"
        ));
        assert!(rect.is_object(), "no element {css} to screenshot");
        let clip = json!({"x": rect["x"], "y": rect["y"], "width": rect["width"],
                          "height": rect["height"], "scale": 1});
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
        );
        save_png(&r, path);
    }
}

/// Writes the PNG of a `Page.captureScreenshot` result to `path`.
fn save_png(result: &Value, path: &Path) {
    let png = base64::engine::general_purpose::STANDARD
        .decode(result["data"].as_str().expect("screenshot data"))
        .expect("base64");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("artifact dir");
    }
    std::fs::write(path, png).expect("write screenshot");
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where tests save artifacts (screenshots): `$VAULTMESH_ARTIFACTS` or `target/test-artifacts`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("VAULTMESH_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/test-artifacts"))
}

/// Whether a DevTools error says the page went away under the call (it is navigating).
fn navigating(error: &str) -> bool {
    [
        "navigated or closed",
        "context was destroyed",
        "Cannot find context",
    ]
    .iter()
    .any(|m| error.contains(m))
}
