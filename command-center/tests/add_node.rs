//! The console's "Add node" page in a real headless Chromium against the real Command Center:
//! from the empty console's link, an admin mints a token with the form, sees the install line
//! with this Command Center's URL, its command key and the token (which enrolls a node), and
//! revokes it with the row's button — no script error, no CSP violation. Screenshots land in
//! `target/test-artifacts/`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;
use vaultmesh_testkit::auth::TestNode;
use vaultmesh_testkit::browser::{Browser, artifacts_dir};
use vaultmesh_testkit::commanding_center;

const T: Duration = Duration::from_secs(10);

/// Polls `expr` until it is truthy, across a navigation the page started (a form post, a link):
/// an evaluation the navigation cuts off ("Inspected target navigated or closed") is tried again.
fn wait(b: &mut Browser, expr: &str, what: &str) -> Value {
    let deadline = Instant::now() + T;
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = loop {
        let v = std::panic::catch_unwind(AssertUnwindSafe(|| b.eval(expr)));
        match v {
            Ok(v) if !matches!(&v, Value::Null | Value::Bool(false)) && v != "" => break Some(v),
            _ if Instant::now() >= deadline => break None,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    std::panic::set_hook(quiet);
    found.unwrap_or_else(|| {
        let html = b.eval("document.body.innerHTML");
        panic!(
            "{what}: `{expr}` never held\n{}",
            html.as_str().unwrap_or("")
        )
    })
}

fn string(b: &mut Browser, expr: &str) -> String {
    b.eval(expr).as_str().unwrap_or_default().to_string()
}

#[test]
fn an_admin_mints_a_token_in_the_console_copies_the_install_line_and_revokes_it() {
    let (cc, _keys, public) = commanding_center(&[]);
    let mut b = Browser::launch(1280, 900);
    b.navigate(&format!("{}/console", cc.url));
    // The empty node list says how to add one; the mission bar has the same link.
    wait(
        &mut b,
        "document.querySelector('#node-list li.empty a[data-add-node]')",
        "the empty list links to the page",
    );
    let href = string(
        &mut b,
        "document.querySelector('.mission-bar a[data-add-node]').href",
    );
    assert_eq!(href, format!("{}/console/add-node", cc.url));
    b.navigate(&href);
    wait(
        &mut b,
        "location.pathname === '/console/add-node' && document.readyState === 'complete' && document.querySelector('form[data-mint-form]')",
        "the page opens",
    );
    assert!(
        b.eval("document.querySelector('[data-no-tokens]') !== null")
            .as_bool()
            .unwrap()
    );

    // A name the form refuses: the page again, with the reason and what was typed.
    b.eval(
        "(() => { const f = document.querySelector('form[data-mint-form]');
           f.name.value = 'web-03 <b>fra1</b>'; f.uses.value = '2'; f.expires_in.value = '7d';
           f.uses.removeAttribute('max'); f.uses.value = '5000'; f.requestSubmit(); })()",
    );
    let error = wait(
        &mut b,
        "document.querySelector('[data-form-error]')?.textContent",
        "the refusal is shown",
    );
    assert_eq!(error, "uses: 5000; a token allows 1 to 1000 enrollments");
    assert_eq!(
        string(
            &mut b,
            "document.querySelector('form[data-mint-form]').name.value"
        ),
        "web-03 <b>fra1</b>"
    );
    // The refusal's 422 is the one message so far (the browser reports the status).
    b.eval("1");
    assert!(
        b.errors.len() == 1 && b.errors[0].contains("status of 422"),
        "{:?}",
        b.errors
    );
    b.errors.clear();

    b.eval(
        "(() => { const f = document.querySelector('form[data-mint-form]');
           f.uses.value = '2'; f.expires_in.value = '7d'; f.requestSubmit(); })()",
    );
    wait(
        &mut b,
        "document.querySelector('[data-install]')",
        "the minted token is shown",
    );
    let install = string(
        &mut b,
        "document.querySelector('[data-install]').textContent",
    );
    let secret = string(
        &mut b,
        "document.querySelector('[data-secret]').textContent",
    );
    assert!(secret.starts_with("vmt_"), "{secret}");
    assert_eq!(
        install,
        format!(
            "VAULTMESH_CC_URL={} VAULTMESH_ENROLL_TOKEN={secret} VAULTMESH_CC_PUBKEY={public} vaultmesh-node-agent run",
            cc.url
        )
    );
    assert_eq!(
        string(
            &mut b,
            "document.querySelector('[data-cc-pubkey]').textContent"
        ),
        public
    );
    // The script showed the copy button (it is hidden without script).
    assert_eq!(
        b.eval("document.querySelector('button[data-copy]').hidden"),
        Value::Bool(false)
    );
    // The name is text, not markup; the row lists the token with its uses.
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-token-id] b').length"),
        serde_json::json!(0)
    );
    let id = string(
        &mut b,
        "document.querySelector('[data-minted]').dataset.minted",
    );
    let row = format!("document.querySelector('tr[data-token-id=\"{id}\"]')");
    assert!(
        string(&mut b, &format!("{row}.textContent")).contains("web-03 <b>fra1</b>")
            && string(&mut b, &format!("{row}.textContent")).contains("2 of 2"),
        "{}",
        string(&mut b, &format!("{row}.textContent"))
    );
    b.screenshot(&artifacts_dir().join("add-node-minted.png"), true);
    // On a phone, the page (its token list included) does not scroll sideways.
    let mut phone = Browser::launch(390, 844);
    phone.navigate(&format!("{}/console/add-node", cc.url));
    wait(&mut phone, &row, "the phone lists the token");
    assert_eq!(
        phone.eval("document.documentElement.scrollWidth <= window.innerWidth"),
        Value::Bool(true),
        "scroll width {} at 390 px",
        phone.eval("document.documentElement.scrollWidth")
    );
    phone.screenshot(&artifacts_dir().join("add-node-390.png"), true);
    phone.eval("1");
    assert!(phone.errors.is_empty(), "{:?}", phone.errors);

    // The token shown is the real one.
    let node = TestNode::new(Uuid::from_u128(0xadd0_0000_0000_4000_8000_0000_0000_0001));
    assert_eq!(node.enroll_with(&cc.url, &secret), 200);
    let listed = cc.get_json("/api/enroll-tokens");
    assert_eq!(listed[0]["created_by"], "console", "{listed}");
    assert_eq!(listed[0]["used"], 1, "{listed}");

    // Revoke from the page: back to the page, the row gone, the token refused.
    b.eval(&format!(
        "document.querySelector('button[data-revoke=\"{id}\"]').click()"
    ));
    wait(
        &mut b,
        "document.readyState === 'complete' && !document.querySelector('[data-install]') && document.querySelector('[data-no-tokens]')",
        "the page shows no active token",
    );
    assert_eq!(cc.get_json("/api/enroll-tokens")[0]["state"], "revoked");
    let other = TestNode::new(Uuid::from_u128(0xadd0_0000_0000_4000_8000_0000_0000_0002));
    assert_eq!(other.enroll_with(&cc.url, &secret), 401);

    b.eval("1"); // drain the messages sent before
    assert!(
        b.errors.is_empty(),
        "no script errors or CSP violations: {:?}",
        b.errors
    );
}
