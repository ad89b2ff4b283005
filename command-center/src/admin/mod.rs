//! The admin side of the CLI: `command issue|list` and `node revoke|decommission|readmit|rename` against a running
//! Command Center's admin API (`docs/COMMANDS.md`, `docs/API.md`).
//!
//! - [`client`]: [`AdminClient`] — base URL (`VAULTMESH_ADMIN_URL`), credentials (the admin
//!   bearer token and/or a Cloudflare Access service token, on every request, never printed),
//!   typed replies and errors, and `--node` given as an id, a hostname or a display name.
//! - [`render`]: what the verbs print for a person.
//! - [`tokens`]: `token create|list|revoke`, enrollment tokens minted at runtime.
//!
//! The verbs here write to `out` and return the process's exit code, so `main.rs` only maps
//! flags to them.

pub mod api_tokens;
pub mod client;
pub mod render;
pub mod tokens;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

pub use client::{
    AdminClient, AdminError, Credentials, Lifecycle, NodeRef, ServiceToken, resolve_node,
};

use vaultmesh_store::commands::{CommandStatus, CommandView};

/// A status as the API spells it (`ok`, `delivered`...).
pub fn status_name(s: CommandStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Whether the command has its receipt (nothing more will happen to it).
pub fn is_final(s: CommandStatus) -> bool {
    !matches!(s, CommandStatus::Issued | CommandStatus::Delivered)
}

/// `command issue`.
#[derive(Debug, Clone)]
pub struct Issue {
    /// A node id or hostname.
    pub node: String,
    pub action: String,
    /// `KEY=VALUE` pairs.
    pub args: Vec<String>,
    /// Seconds the command stays valid.
    pub ttl_s: u64,
    /// Wait for the receipt this long (`--wait` alone: until the command expires).
    pub wait: Option<Option<Duration>>,
    /// JSON instead of text: the signed command, or with `wait` the command and its receipt.
    pub json: bool,
}

/// Issues the command; with `wait`, follows it to its receipt and prints the outcome. Exit code
/// 0, or 1 when the receipt is not `ok`.
pub async fn issue(client: &AdminClient, o: Issue, out: &mut dyn Write) -> Result<u8, AdminError> {
    let args = client::parse_args(&o.args)?;
    let node = client.resolve(&o.node).await?;
    let req = crate::commands::IssueRequest {
        node_id: node.id,
        action: o.action,
        args,
        ttl_s: Some(o.ttl_s),
        issued_by: Some("cli".into()),
    };
    let signed = client.issue(&req).await?;
    let Some(wait) = o.wait else {
        if o.json {
            print_json(out, &signed)?;
        } else {
            print(out, &format!("{}\n", render::issued(&signed, &node)))?;
        }
        return Ok(0);
    };
    if !o.json {
        print(out, &format!("{}\n", render::issued(&signed, &node)))?;
    }
    let within = wait.unwrap_or(Duration::from_secs(o.ttl_s));
    match client.wait_for_receipt(&signed, within).await? {
        Some(v) if is_final(v.status) => {
            if o.json {
                print_json(out, &v)?;
            } else {
                print(out, &render::outcome(&v))?;
            }
            Ok(u8::from(v.status != CommandStatus::Ok))
        }
        last => Err(AdminError::NoReceipt {
            command_id: signed.command.command_id,
            within,
            status: status_name(last.map_or(CommandStatus::Issued, |v| v.status)),
            node: node.id,
        }),
    }
}

/// `command list`.
#[derive(Debug, Clone)]
pub struct List {
    pub node: Option<String>,
    pub status: Option<CommandStatus>,
    pub limit: usize,
    pub json: bool,
}

/// Prints recent commands, newest first: a table, or their JSON.
pub async fn list(client: &AdminClient, o: List, out: &mut dyn Write) -> Result<u8, AdminError> {
    let nodes = client.nodes().await?;
    let node = o
        .node
        .as_deref()
        .map(|n| resolve_node(&nodes, n))
        .transpose()?;
    let views: Vec<CommandView> = client
        .commands(node.map(|n| n.id), o.status, o.limit)
        .await?;
    if o.json {
        print_json(out, &views)?;
    } else {
        let hostnames: HashMap<_, _> = nodes.iter().map(|n| (n.node_id, n.labelled())).collect();
        print(out, &render::table(&views, &hostnames))?;
    }
    Ok(0)
}

/// Revokes, decommissions or re-admits `node` (an id or hostname) and says so.
pub async fn lifecycle(
    client: &AdminClient,
    node: &str,
    what: Lifecycle,
    reason: Option<String>,
    out: &mut dyn Write,
) -> Result<u8, AdminError> {
    let node = client.resolve(node).await?;
    client.lifecycle(node.id, what, reason).await?;
    let line = match what {
        Lifecycle::Revoke => {
            format!(
                "revoked {node}: its key is refused from now on, and it cannot enroll again until re-admitted\n"
            )
        }
        Lifecycle::Decommission => {
            format!(
                "decommissioned {node}: its key is refused, and it has left the node list, attention and notifications; its history stays in the logs (node readmit brings it back)\n"
            )
        }
        Lifecycle::Readmit { allow_old_key } => {
            if allow_old_key {
                format!("re-admitted {node}: it may come back with its old key\n")
            } else {
                format!(
                    "re-admitted {node}: it may enroll with a new key (on the node: vaultmesh-node-agent rekey)\n"
                )
            }
        }
    };
    print(out, &line)?;
    Ok(0)
}

/// Sets `node`'s display name to `name` (an id, hostname or display name; `None`: clears it)
/// and says so. The name is checked here first (exit 2 naming it), as the server checks it.
pub async fn rename(
    client: &AdminClient,
    node: &str,
    name: Option<&str>,
    out: &mut dyn Write,
) -> Result<u8, AdminError> {
    let display_name = match name {
        Some(given) => {
            let checked = vaultmesh_proto::display_name::check(given)
                .map_err(|e| AdminError::Usage(format!("NAME: {e}")))?;
            Some(checked.ok_or_else(|| {
                AdminError::Usage(
                    "NAME is empty; to show the node by its hostname again, use --clear".into(),
                )
            })?)
        }
        None => None,
    };
    let node = client.resolve(node).await?;
    let reply = client.rename(node.id, display_name).await?;
    let line = match &reply.display_name {
        Some(d) => format!(
            "renamed {node}: it is shown as {:?}, its hostname beside it\n",
            vaultmesh_store::logs::render::clean(d)
        ),
        None => format!("cleared the display name of {node}: it is shown by its hostname\n"),
    };
    print(out, &line)?;
    Ok(0)
}

pub(crate) fn print(out: &mut dyn Write, text: &str) -> Result<(), AdminError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| AdminError::Output(e.to_string()))
}

pub(crate) fn print_json<T: serde::Serialize>(
    out: &mut dyn Write,
    v: &T,
) -> Result<(), AdminError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| AdminError::Output(e.to_string()))?;
    print(out, &format!("{text}\n"))
}
