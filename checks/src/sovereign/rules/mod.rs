//! The built-in scan rules, one module each. Each registers itself with
//! `inventory::submit!(ScanRuleRegistration { .. })`; nothing lists them here but `mod`.

pub mod file_hashes;
pub mod fsutil;
pub mod listeners;
pub mod setuid;
pub mod sshd;
pub mod sysctl;
pub mod world_writable;

#[cfg(test)]
pub mod testutil;
