//! The subcommands of `vaultmesh-command-center`, one file each: its arguments (clap) and a
//! body that calls the library. `main.rs` only dispatches.

pub mod admin;
pub mod demo;
pub mod keygen;
pub mod ledger;
pub mod logs;
pub mod notify;
pub mod policy;
pub mod roles;
pub mod serve;
pub mod store;

/// An exit code and the one line that says why (empty: already said on stdout).
pub type Failure = (u8, String);
