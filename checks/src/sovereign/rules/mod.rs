//! The built-in scan rules, one module each. Each registers itself with
//! `inventory::submit!(ScanRuleRegistration { .. })`; nothing lists them here but `mod`.

pub mod fsutil;
pub mod listeners;

#[cfg(test)]
pub mod testutil;
