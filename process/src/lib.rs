//! Process plumbing both VaultMesh binaries share, so neither depends on the other's engine for
//! it: the server does not link the agent to parse `"30s"`.
//!
//! - [`cli`]: usage errors as one short block and exit code 2, `--version` with the git commit,
//!   `completions SHELL` and `man`.
//! - [`service`]: logging, readiness, watchdog and shutdown under systemd.
//! - [`duration`]: `"30s"`, `"5m"`, `"1h 30m"` in flags and config files, and back.
//! - [`size`]: `256MiB`, `1GiB` in flags.
//! - [`suggest`]: "did you mean ...?" — the known name nearest to a typo.
//! - [`error_chain`]: an error and its causes on one line.

pub mod cli;
pub mod duration;
pub mod service;
pub mod size;
pub mod suggest;

/// An error with its causes, `outer: inner: root`. reqwest's and hyper's `Display` hide the
/// cause ("error sending request"); this walks the chain for the reason.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
