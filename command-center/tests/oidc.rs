//! Sign-in through OpenID Connect (issue 26): a real Command Center, the local provider of
//! `testkit::oidc` over loopback HTTP, and a real Chromium for the browser's path.

use std::time::Duration;

use serde_json::Value;
use vaultmesh_testkit::browser::Browser;
use vaultmesh_testkit::oidc::{CLIENT_SECRET, Provider, SignIn};
use vaultmesh_testkit::{CommandCenter, Reply, http};

/// `GET path` with the session cookie `cookie` and `accept`.
fn get_with(cc: &CommandCenter, path: &str, cookie: Option<&str>, accept: &str) -> Reply {
    let mut req = http()
        .get(format!("{}{path}", cc.url))
        .header("accept", accept);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("vaultmesh_session={c}"));
    }
    Reply::from(req.send().expect("GET"))
}

fn api(cc: &CommandCenter, path: &str, cookie: Option<&str>) -> Reply {
    get_with(cc, path, cookie, "application/json")
}

fn error_of(r: &Reply) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_browser_signs_in_through_the_provider_sees_the_console_and_signs_out() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    let mut b = Browser::launch(1280, 800);
    // Not signed in: the console sends the browser to the provider and back.
    b.navigate(&format!("{}/console?range=1h", cc.url));
    let signed_in = b.wait_for(
        "location.pathname === '/console' && document.querySelector('.sign-out .who')?.textContent",
        Duration::from_secs(30),
    );
    assert_eq!(
        signed_in,
        Some(Value::from("alice@example.com")),
        "not on the console: {} {:?}",
        b.eval("location.href"),
        b.errors
    );
    assert_eq!(
        b.eval("location.search"),
        "?range=1h",
        "next kept the query"
    );
    assert!(
        b.eval("document.querySelector('h1').textContent")
            .as_str()
            .unwrap()
            .contains("Mission Console")
    );
    // The cookie is HttpOnly and SameSite=Strict: scripts cannot read it.
    assert_eq!(
        b.eval("document.cookie.includes('vaultmesh_session')"),
        false
    );
    let cookies = b.call("Network.getAllCookies", serde_json::json!({}));
    let session = cookies["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "vaultmesh_session")
        .cloned()
        .expect("a session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/");
    assert_eq!(session["secure"], false, "plain http on loopback");
    let value = session["value"].as_str().unwrap().to_string();
    assert_eq!(api(&cc, "/api/nodes", Some(&value)).status, 200);
    assert!(
        b.errors.is_empty(),
        "{:?} (command center {}, provider {})",
        b.errors,
        cc.url,
        provider.url
    );
    // Sign out with the console's button: the old cookie no longer works anywhere. (The
    // console's live requests get 401 from then on, until the page is replaced.)
    b.eval("document.querySelector('.sign-out button').click()");
    assert!(
        b.wait_for(
            "document.body && document.body.textContent.includes('Signed out')",
            Duration::from_secs(20)
        )
        .is_some(),
        "{:?}",
        b.eval("document.body.innerHTML")
    );
    let r = api(&cc, "/api/nodes", Some(&value));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("sign in again"), "{}", r.body);
}

#[test]
fn browsers_are_sent_to_sign_in_and_api_clients_get_a_json_401() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    let r = http()
        .get(format!("{}/console?node=x&range=1h", cc.url))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/auth/login?next=%2Fconsole%3Fnode%3Dx%26range%3D1h"
    );
    for (path, accept) in [
        ("/api/nodes", "application/json"),
        ("/events", "text/event-stream"),
        ("/console/kpis", "*/*"),
    ] {
        let r = get_with(&cc, path, None, accept);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(
            error_of(&r).contains("sign in at /auth/login"),
            "{}",
            r.body
        );
    }
    // A write without a session is a 401 too, never a redirect.
    let r = cc.post_json("/api/events", &serde_json::json!({}));
    assert_eq!(r.status, 401, "{}", r.body);
    // Without a session, loopback alone does not let anyone in.
    assert_eq!(api(&cc, "/api/nodes", None).status, 401);
}

#[test]
fn wrong_audience_expired_and_wrong_nonce_id_tokens_are_refused() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    type Knob = fn(&mut vaultmesh_testkit::oidc::Knobs);
    let cases: [(&str, Knob); 3] = [
        ("another client (aud)", |k| k.wrong_aud = true),
        ("expired", |k| k.expired = true),
        ("nonce", |k| k.wrong_nonce = true),
    ];
    for (want, knob) in cases {
        provider.set(|k| *k = Default::default());
        provider.set(knob);
        let issued = provider.issued();
        let s = provider.sign_in(&cc.url, "/console");
        assert_eq!(provider.issued(), issued + 1, "the provider issued a token");
        assert_eq!(s.status, 401, "{want}: {}", s.body);
        assert!(s.session.is_none(), "{want}: {:?}", s.set_cookies);
        let e: Value = serde_json::from_str(&s.body).unwrap();
        assert!(e["error"].as_str().unwrap().contains(want), "{want}: {e}");
    }
    // The same provider with every knob back: the sign-in works (the refusals were the token's).
    provider.set(|k| *k = Default::default());
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(api(&cc, "/api/nodes", Some(&s.cookie())).status, 200);
}

#[test]
fn a_replayed_state_and_a_callback_from_another_browser_are_refused() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 200, "{}", s.body);
    // The very same callback again (same code, same state, same login cookie).
    let again = SignIn::finish(&s.callback, &s.login_cookie);
    assert_eq!(again.status, 401, "{}", again.body);
    assert!(again.body.contains("already used state"), "{}", again.body);
    assert!(again.session.is_none());
    // A callback whose state this browser did not start (the login-CSRF pattern): refused,
    // and the state is spent.
    let http = http();
    let login = http
        .get(format!("{}/auth/login?next=/", cc.url))
        .send()
        .unwrap();
    let authorize = login.headers()["location"].to_str().unwrap().to_string();
    let at = http.get(&authorize).send().unwrap();
    let callback = at.headers()["location"].to_str().unwrap().to_string();
    let other = SignIn::finish(&callback, "some-other-browsers-state");
    assert_eq!(other.status, 401, "{}", other.body);
    assert!(
        other.body.contains("did not start this sign-in"),
        "{}",
        other.body
    );
    // An unknown state.
    let unknown = SignIn::finish(
        &format!("{}/auth/callback?code=x&state=never-issued", cc.url),
        "never-issued",
    );
    assert_eq!(unknown.status, 401, "{}", unknown.body);
}

#[test]
fn tampered_and_unknown_session_cookies_are_refused() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    let cookie = provider.sign_in(&cc.url, "/console").cookie();
    assert_eq!(cookie.len(), 43, "256 bits, base64url: {cookie}");
    assert_eq!(api(&cc, "/api/nodes", Some(&cookie)).status, 200);
    let mut tampered = cookie.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "", "x", &"A".repeat(43)] {
        let r = api(&cc, "/api/nodes", Some(bad));
        assert_eq!(r.status, 401, "{bad:?}: {}", r.body);
        assert!(error_of(&r).contains("unknown"), "{}", r.body);
    }
    // A browser with a bad cookie is sent to sign in, and told to forget it.
    let r = http()
        .get(format!("{}/console", cc.url))
        .header("accept", "text/html")
        .header("cookie", format!("vaultmesh_session={tampered}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("vaultmesh_session=; ")
    );
    // The genuine cookie still works.
    assert_eq!(api(&cc, "/api/nodes", Some(&cookie)).status, 200);
}

#[test]
fn logout_revokes_the_session_server_side() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    let cookie = provider.sign_in(&cc.url, "/console").cookie();
    let other = provider.sign_in(&cc.url, "/console").cookie();
    let r = http()
        .post(format!("{}/auth/logout", cc.url))
        .header("cookie", format!("vaultmesh_session={cookie}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(r.json::<Value>().unwrap()["signed_out"], true);
    // Kept by a client that ignores the cleared cookie: refused all the same.
    let r = api(&cc, "/api/nodes", Some(&cookie));
    assert_eq!(r.status, 401, "{}", r.body);
    // Another session of the same user is untouched.
    assert_eq!(api(&cc, "/api/nodes", Some(&other)).status, 200);
    // Logout from another site is refused by the cross-site guard.
    let r = http()
        .post(format!("{}/auth/logout", cc.url))
        .header("cookie", format!("vaultmesh_session={other}"))
        .header("origin", "https://evil.example")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(api(&cc, "/api/nodes", Some(&other)).status, 200);
}

#[test]
fn an_idle_session_expires() {
    let provider = Provider::start();
    let cc = provider.command_center(&["--oidc-session-idle", "2s"]);
    let cookie = provider.sign_in(&cc.url, "/console").cookie();
    // Used within the idle time, it lives on.
    for _ in 0..3 {
        assert_eq!(api(&cc, "/api/nodes", Some(&cookie)).status, 200);
        std::thread::sleep(Duration::from_millis(1000));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let r = api(&cc, "/api/nodes", Some(&cookie));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("idle"), "{}", r.body);
}

#[test]
fn a_viewer_reads_but_cannot_issue_commands_and_an_unmapped_user_gets_no_session() {
    let provider = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        "[viewer]\ndomains = [\"example.com\"]\n[operator]\ngroups = [\"sre\"]\n",
    )
    .unwrap();
    let cc = provider.command_center(&["--roles", roles.to_str().unwrap()]);
    provider.set(|k| k.groups = vec![]);
    let cookie = provider.sign_in(&cc.url, "/console").cookie();
    assert_eq!(api(&cc, "/api/nodes", Some(&cookie)).status, 200);
    let r = Reply::from(
        http()
            .post(format!("{}/api/commands", cc.url))
            .header("cookie", format!("vaultmesh_session={cookie}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        error_of(&r).contains("needs the operator role")
            && error_of(&r).contains("alice@example.com is a viewer"),
        "{}",
        r.body
    );
    // The groups claim maps too: in group sre, alice is an operator.
    provider.set(|k| k.groups = vec!["sre".into()]);
    let op = provider.sign_in(&cc.url, "/console").cookie();
    let r = Reply::from(
        http()
            .post(format!("{}/api/commands", cc.url))
            .header("cookie", format!("vaultmesh_session={op}"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .unwrap(),
    );
    // Let in, and refused for the empty body alone.
    assert_eq!(r.status, 422, "{}", r.body);
    // Someone the roles file does not name gets no session at all.
    provider.set(|k| {
        k.email = "mallory@elsewhere.test".into();
        k.groups = vec![];
    });
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 403, "{}", s.body);
    assert!(s.session.is_none());
}

#[test]
fn next_must_be_a_local_path() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    for next in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "evil.example",
        "javascript:alert(1)",
    ] {
        let mut url = reqwest::Url::parse(&format!("{}/auth/login", cc.url)).unwrap();
        url.query_pairs_mut().append_pair("next", next);
        let r = Reply::from(http().get(url).send().unwrap());
        assert_eq!(r.status, 400, "{next}: {}", r.body);
        assert!(error_of(&r).starts_with("next: "), "{}", r.body);
    }
    // A local path comes back as the page after sign-in, which goes nowhere else.
    let s = provider.sign_in(&cc.url, "/console?node=a");
    assert_eq!(s.status, 200);
    assert!(
        s.body.contains("url=/console?node=a\""),
        "the continue page: {}",
        s.body
    );
}

#[test]
fn the_client_secret_and_session_cookies_never_appear_in_the_log() {
    let provider = Provider::start();
    let port = vaultmesh_testkit::free_port();
    let flags = provider.flags(port);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cc = CommandCenter::start_with_env(&flags, &[("RUST_LOG", "debug")]);
    vaultmesh_testkit::oidc::wait_discovered(&cc.url);
    let s = provider.sign_in(&cc.url, "/console");
    let cookie = s.cookie();
    assert_eq!(api(&cc, "/api/nodes", Some(&cookie)).status, 200);
    let bad = format!("{}x", &cookie[..42]);
    assert_eq!(api(&cc, "/api/nodes", Some(&bad)).status, 401);
    http()
        .post(format!("{}/auth/logout", cc.url))
        .header("cookie", format!("vaultmesh_session={cookie}"))
        .send()
        .unwrap();
    let log = cc.wait_for_log(&["Signed in.", "Signed out.", "sign_in"]);
    // (The callback's `code` and `state` do show in debug-level request spans: both are single
    // use and spent by then, and the code is worthless without the secret and PKCE verifier.)
    for secret in [CLIENT_SECRET, &cookie, &bad] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    // Nor in `--help` (the environment's value is hidden).
    let out = std::process::Command::new(vaultmesh_testkit::binary((
        "vaultmesh-command-center",
        "vaultmesh-command-center",
    )))
    .args(["serve", "--help"])
    .env("VAULTMESH_OIDC_CLIENT_SECRET", CLIENT_SECRET)
    .output()
    .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--oidc-client-secret"));
    assert!(!help.contains(CLIENT_SECRET));
}

#[test]
fn bad_settings_exit_2_naming_the_flag_and_an_unreachable_provider_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let run = |extra: &[&str]| {
        let mut args = vec!["serve", "--log-dir", logs.to_str().unwrap()];
        args.extend_from_slice(extra);
        vaultmesh_testkit::cc_command(&args)
    };
    std::fs::write(dir.path().join("roles.toml"), "default = \"viewer\"\n").unwrap();
    let roles = dir.path().join("roles.toml");
    let base = [
        "--oidc-issuer",
        "https://id.example.com",
        "--oidc-client-id",
        "cc",
        "--oidc-client-secret",
        CLIENT_SECRET,
        "--roles",
        roles.to_str().unwrap(),
    ];
    let cases: [(&[&str], &str); 4] = [
        (&[], "--public-url: required with --oidc-issuer"),
        (
            &["--public-url", "http://cc.example.com"],
            "--public-url http://cc.example.com: must be https",
        ),
        (
            &[
                "--public-url",
                "https://cc.example.com",
                "--oidc-scopes",
                "email",
            ],
            "--oidc-scopes: must include openid",
        ),
        (
            &[
                "--public-url",
                "https://cc.example.com",
                "--oidc-session-idle",
                "8d",
            ],
            "--oidc-session-idle (8days) is longer than --oidc-session-lifetime (7days)",
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert!(!err.contains(CLIENT_SECRET));
    }
    let out = run(&["--oidc-issuer", "https://id.example.com"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oidc-client-id"));
    // Without a roles file everyone the provider signs in would be an admin: refused.
    let out = run(&[&base[..6], &["--public-url", "https://cc.example.com"][..]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--oidc-issuer needs --roles"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A provider that does not answer: the Command Center serves (agents keep reporting),
    // sign-in answers 503 and the failure is logged.
    let port = vaultmesh_testkit::free_port();
    let cc = CommandCenter::start_with(&[
        "--oidc-issuer",
        &format!("http://127.0.0.1:{}", vaultmesh_testkit::free_port()),
        "--oidc-client-id",
        "cc",
        "--oidc-client-secret",
        CLIENT_SECRET,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        &format!("http://127.0.0.1:{port}"),
        "--roles",
        roles.to_str().unwrap(),
    ]);
    let r = cc.get("/auth/login");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(error_of(&r).contains("has not answered yet"), "{}", r.body);
    assert_eq!(cc.get("/healthz").status, 200);
    cc.wait_for_log(&["Cannot reach the OpenID Connect provider"]);
}

#[test]
fn a_wrong_client_secret_gets_no_session() {
    let provider = Provider::start();
    let port = vaultmesh_testkit::free_port();
    let mut flags = provider.flags(port);
    let at = flags
        .iter()
        .position(|f| f == "--oidc-client-secret")
        .unwrap();
    flags[at + 1] = "not-the-registered-secret".into();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cc = CommandCenter::start_with(&flags);
    vaultmesh_testkit::oidc::wait_discovered(&cc.url);
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 401, "{}", s.body);
    assert!(
        s.body.contains("the provider refused the code"),
        "{}",
        s.body
    );
    assert!(s.session.is_none());
    assert_eq!(provider.refusals(), vec!["wrong client credentials"]);
    assert_eq!(provider.issued(), 0);
}

#[test]
fn an_email_the_provider_has_not_verified_signs_no_one_in_unless_it_is_trusted() {
    let provider = Provider::start();
    let cc = provider.command_center(&[]);
    // Said unverified, or not said at all (the roles file matches addresses and domains, and
    // at some providers users set their own).
    provider.set(|k| k.email_verified = Some(false));
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 401, "{}", s.body);
    assert!(
        s.body.contains("has not verified alice@example.com"),
        "{}",
        s.body
    );
    assert!(s.session.is_none());
    provider.set(|k| k.email_verified = None);
    let s = provider.sign_in(&cc.url, "/console");
    assert_eq!(s.status, 401, "{}", s.body);
    assert!(s.body.contains("--oidc-trust-email"), "{}", s.body);
    assert!(s.session.is_none());
    // An admin who knows the provider gives only verified addresses says so.
    let trusting = provider.command_center(&["--oidc-trust-email"]);
    let s = provider.sign_in(&trusting.url, "/console");
    assert_eq!(s.status, 200, "{}", s.body);
    assert!(s.session.is_some());
}
