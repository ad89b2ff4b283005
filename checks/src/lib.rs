//! The built-in checks. Each module holds one check: its typed config (`deny_unknown_fields`,
//! with defaults), a pure function that turns measurements into a verdict (unit-tested with
//! tables of cases), the code that measures, and its `inventory::submit!` registration.
//!
//! Nothing calls into this crate by name: the agent binary links it with
//! `use vaultmesh_checks as _;` and finds the checks through `vaultmesh_agent_core::registry`.
//!
//! | check    | looks at                                           |
//! |----------|----------------------------------------------------|
//! | `cloudflared` | the Cloudflare Tunnel's ready connections       |
//! | `cpu`    | busy, iowait and steal time since the last run      |
//! | `disk`   | space and inodes per mounted filesystem            |
//! | `diskio` | read/write bytes, IOPS and busy time per block device |
//! | `load`   | 1/5/15-minute load average, per CPU                |
//! | `memory` | RAM and swap in use                                |
//! | `net`    | traffic, errors and drops per physical interface   |
//! | `sovereign_scan` | security rules (plugins): listeners, sshd, modes, hashes, sysctls, set-uid |
//! | `systemd`| units over D-Bus in their expected state           |
//! | `temperature` | hwmon temperature sensors, against their own limits |
//! | `updates` | pending (security) package updates and a due reboot, from apt's or pacman's local state |

//!
//! Each check is a cargo feature (all on by default), so a node owner can build an agent with
//! only the checks they use: `cloudflared`, `cpu`, `disk`, `diskio`, `load`, `memory`, `net`,
//! `sovereign`, `systemd`, `temperature`, `updates`.

mod actions;
#[cfg(feature = "cloudflared")]
mod cloudflared;
#[cfg(any(feature = "cpu", feature = "net", feature = "diskio"))]
pub mod counters;
#[cfg(feature = "cpu")]
pub mod cpu;
#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "diskio")]
pub mod diskio;
#[cfg(feature = "load")]
mod load;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "net")]
pub mod net;
pub mod procfs;
#[cfg(feature = "sovereign")]
pub mod sovereign;
#[cfg(feature = "systemd")]
pub mod systemd;
#[cfg(feature = "temperature")]
mod temperature;
pub mod thresholds;
#[cfg(any(feature = "temperature", feature = "updates"))]
mod untrusted;
#[cfg(feature = "updates")]
pub mod updates;

/// Names of the command actions this build registers, sorted.
pub fn built_in_actions() -> Vec<&'static str> {
    let mut v = vec!["agent.ping", "checks.run"];
    if cfg!(feature = "sovereign") {
        v.push("scan.sovereign");
    }
    if cfg!(feature = "systemd") {
        v.extend(["service.restart", "service.status"]);
    }
    v
}

/// Names of the checks this build registers, sorted, for the agent's guard test.
pub fn built_in() -> Vec<&'static str> {
    [
        ("cloudflared", cfg!(feature = "cloudflared")),
        ("cpu", cfg!(feature = "cpu")),
        ("disk", cfg!(feature = "disk")),
        ("diskio", cfg!(feature = "diskio")),
        ("load", cfg!(feature = "load")),
        ("memory", cfg!(feature = "memory")),
        ("net", cfg!(feature = "net")),
        ("sovereign_scan", cfg!(feature = "sovereign")),
        ("systemd", cfg!(feature = "systemd")),
        ("temperature", cfg!(feature = "temperature")),
        ("updates", cfg!(feature = "updates")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}
