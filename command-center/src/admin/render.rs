//! What the admin verbs print for a person. Everything shown comes from the Command Center or
//! a node, so control characters are removed first (receipt output keeps its line breaks).

use std::collections::HashMap;
use std::fmt::Write;

use uuid::Uuid;
use vaultmesh_proto::command::SignedCommand;

use super::NodeRef;
use vaultmesh_store::commands::CommandView;
use vaultmesh_store::logs::render::{clean, truncate};

/// One line: what was issued, to whom, and until when it is valid.
pub fn issued(signed: &SignedCommand, node: &NodeRef) -> String {
    let c = &signed.command;
    format!(
        "issued {} to {node}: command {}, seq {}, valid until {}",
        clean(&c.action),
        c.command_id,
        clean(&c.seq),
        c.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// The receipt: `ok: exit code 0, 12 ms`, the reason of a rejection or failure, then the
/// output.
pub fn outcome(v: &CommandView) -> String {
    let mut out = String::new();
    let Some(r) = &v.receipt else {
        let _ = writeln!(out, "{}: no receipt yet", super::status_name(v.status));
        return out;
    };
    let r = &r.receipt;
    let _ = write!(out, "{}", super::status_name(v.status));
    if let Some(reason) = &r.reason {
        let _ = write!(out, ": {}", clean(reason));
    }
    if let Some(code) = r.exit_code {
        let _ = write!(out, ", exit code {code}");
    }
    let took = (r.finished_at - r.started_at).num_milliseconds().max(0);
    let _ = writeln!(out, ", {took} ms");
    let text: String = r
        .output
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    if !text.trim().is_empty() {
        let _ = writeln!(out, "{}", text.trim_end());
    }
    if r.truncated {
        let _ = writeln!(
            out,
            "(output truncated; the whole output's SHA-256 is {})",
            clean(&r.output_sha256)
        );
    }
    if v.chain_ok == Some(false) {
        let _ = writeln!(
            out,
            "warning: this receipt does not continue the node's receipt chain"
        );
    }
    out
}

/// `command list`: one row per command, newest first, with the node's hostname when known.
pub fn table(views: &[CommandView], hostnames: &HashMap<Uuid, String>) -> String {
    let mut out = format!(
        "{:<19}  {:<20}  {:>4}  {:<16}  {:<9}  {:>4}  {:<16}  {}\n",
        "ISSUED (UTC)", "NODE", "SEQ", "ACTION", "STATUS", "EXIT", "ISSUED BY", "COMMAND ID"
    );
    for v in views {
        let c = &v.signed.command;
        let node = hostnames
            .get(&c.node_id)
            .map_or_else(|| c.node_id.to_string()[..8].to_string(), |h| clean(h));
        let exit = v
            .receipt
            .as_ref()
            .and_then(|r| r.receipt.exit_code)
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        let mut status = super::status_name(v.status);
        if v.chain_ok == Some(false) {
            status.push('!');
        }
        let _ = writeln!(
            out,
            "{:<19}  {:<20}  {:>4}  {:<16}  {:<9}  {:>4}  {:<16}  {}",
            c.issued_at.format("%Y-%m-%d %H:%M:%S"),
            truncate(&node, 20),
            truncate(&clean(&c.seq), 4),
            truncate(&clean(&c.action), 16),
            status,
            exit,
            truncate(&clean(&c.issued_by), 16),
            c.command_id
        );
    }
    if views.iter().any(|v| v.chain_ok == Some(false)) {
        out.push_str("! the receipt does not continue the node's receipt chain\n");
    }
    out
}
