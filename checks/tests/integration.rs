//! Integration tests of the built-in checks against real peers on this machine: a real
//! `dbus-daemon` with a fake systemd, and a local HTTP server playing cloudflared.
//! One test binary, with the shared helpers in `integration/util.rs`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

// The checks register themselves; link them.
use vaultmesh_checks as _;

mod integration {
    pub mod actions;
    pub mod cloudflared;
    pub mod heartbeat;
    pub mod systemd;
    pub mod util;
}
