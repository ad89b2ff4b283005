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
//! | `disk`   | space and inodes per mounted filesystem            |
//! | `load`   | 1/5/15-minute load average, per CPU                |
//! | `memory` | RAM and swap in use                                |
//! | `sovereign_scan` | security rules (plugins): listeners, sshd, modes, hashes, sysctls, set-uid |
//! | `systemd`| units over D-Bus in their expected state           |

mod actions;
mod cloudflared;
mod disk;
mod load;
mod memory;
pub mod sovereign;
pub mod systemd;
mod thresholds;

/// Names of the command actions this crate registers.
pub const BUILT_IN_ACTIONS: &[&str] = &[
    "agent.ping",
    "checks.run",
    "scan.sovereign",
    "service.restart",
    "service.status",
];

/// Names of the checks this crate registers, for the agent's guard test.
pub const BUILT_IN: &[&str] = &[
    "cloudflared",
    "disk",
    "load",
    "memory",
    "sovereign_scan",
    "systemd",
];
