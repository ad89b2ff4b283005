//! `command issue|list`, `node revoke|decommission|readmit|rename` and `token create|list|revoke`: the admin API's verbs, over HTTP to a
//! running Command Center.

use std::time::Duration;

use clap::{Args, Subcommand};
use vaultmesh_command_center::admin;
use vaultmesh_store::commands::CommandStatus;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum CommandsCommand {
    /// Ask the Command Center to sign and queue a command (policy-checked); with --wait, follow
    /// it to its receipt and print the outcome (exit 0 if ok, 1 otherwise).
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center command issue --node vault-node-01 --action agent.ping --wait\n  vaultmesh-command-center command issue --node 550e8400-e29b-41d4-a716-446655440000 --action service.restart --arg unit=cloudflared.service --wait 2m"
    )]
    Issue {
        /// The node: its id, its hostname or its display name, as `GET /api/nodes` shows them.
        #[arg(long, value_name = "NODE")]
        node: String,
        /// The action, e.g. agent.ping (`vaultmesh-node-agent actions` lists them).
        #[arg(long)]
        action: String,
        /// An argument as KEY=VALUE; repeat for several.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// Seconds the command stays valid.
        #[arg(long, default_value_t = 300)]
        ttl: u64,
        /// Wait for the receipt and print it: at most DURATION (e.g. 30s, 2m), or until the
        /// command expires (--ttl) when no duration is given.
        #[arg(long, value_name = "DURATION", value_parser = vaultmesh_process::duration::parse_nonzero)]
        wait: Option<Option<Duration>>,
        /// Print JSON: the signed command, or with --wait the command with its receipt.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List recent commands, newest first, with their status and receipt.
    List {
        /// Only this node's: its id or hostname.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Only commands with this status.
        #[arg(long, value_parser = parse_status)]
        status: Option<CommandStatus>,
        /// How many at most (1-1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Revoke the node's key: its requests are refused at once, and neither the node nor its
    /// key may enroll again until it is re-admitted.
    #[command(
        after_help = "Example:\n  vaultmesh-command-center node revoke vault-node-01 --reason \"disk sent for repair\""
    )]
    Revoke {
        /// The node: its id, its hostname or its display name.
        node: String,
        /// Why, for the event log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Retire the node: revoke its key (as `node revoke` does) and take it out of the node
    /// list, attention, the KPIs and notifications. Its history stays in the logs; `node
    /// readmit` lets it enroll again, which brings it back.
    #[command(
        after_help = "Example:\n  vaultmesh-command-center node decommission vault-node-01 --reason \"replaced by vault-node-07\""
    )]
    Decommission {
        /// The node: its id, its hostname or its display name.
        node: String,
        /// Why, for the event log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Give the node a display name, shown in place of its hostname (which stays beside it)
    /// in the console, the overview and notifications; or clear it with --clear.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center node rename vault-node-01 \"Frankfurt edge 1\"\n  vaultmesh-command-center node rename \"Frankfurt edge 1\" --clear"
    )]
    Rename {
        /// The node: its id, its hostname or its display name.
        node: String,
        /// The display name: 1 to 64 characters, no control, bidirectional or invisible ones.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        name: Option<String>,
        /// Clear the display name: the node is shown by its hostname again.
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Let a revoked node enroll again: with a new key (`vaultmesh-node-agent rekey` on the
    /// node), or with its old one if --allow-old-key.
    #[command(after_help = "Example:\n  vaultmesh-command-center node readmit vault-node-01")]
    Readmit {
        /// The node: its id, its hostname or its display name.
        node: String,
        /// The revocation was a mistake: the node may come back with the key it had.
        #[arg(long)]
        allow_old_key: bool,
        /// Why, for the event log.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint an enrollment token and print its secret (shown this once) and the line that runs
    /// an agent with it.
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center token create --name web-03\n  vaultmesh-command-center token create --name \"fra1 rack 2\" --uses 10 --expires-in 7d"
    )]
    Create {
        /// What the token is for (where the node goes, who asked): shown in the list.
        #[arg(long)]
        name: String,
        /// Enrollments it allows (1: single-use).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(vaultmesh_store::tokens::USES_MAX)))]
        uses: u32,
        /// How long it is accepted: 1m to 30d.
        #[arg(long, default_value = "24h", value_parser = parse_expires_in)]
        expires_in: String,
        /// Print the API's JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List minted enrollment tokens, newest first: state, uses, expiry (never a secret).
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke an enrollment token: it enrolls no node from now on.
    #[command(after_help = "Example:\n  vaultmesh-command-center token revoke 3f2a9c0d1b2e4f56")]
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Make a named API token with a role or scopes, and print its secret (shown this once).
    #[command(
        after_help = "Examples:\n  vaultmesh-command-center api-token create grafana --role viewer --expires-in 365d\n  vaultmesh-command-center api-token create deploy-bot --scope events:write"
    )]
    Create {
        /// Its name, the author of what it posts: letters, digits, '.', '_' and '-'.
        name: String,
        /// Its role: viewer, operator or admin.
        #[arg(long, required_unless_present = "scopes", conflicts_with = "scopes")]
        role: Option<String>,
        /// A scope (read, events:write, commands:issue) instead of a role; repeat for several.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// How long it is accepted: 1m to 366d.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// Print the API's JSON (with the secret) instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List API tokens, newest first: state, role or scopes, expiry, last use (never a secret).
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke an API token: refused from its next request on.
    #[command(
        after_help = "Example:\n  vaultmesh-command-center api-token revoke 3f2a9c0d1b2e4f56"
    )]
    Revoke {
        /// The token's id, as `api-token list` shows it.
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `--expires-in`: a duration within the server's bounds.
fn parse_expires_in(s: &str) -> Result<String, String> {
    vaultmesh_command_center::tokens::MintRequest {
        name: "x".into(),
        uses: None,
        expires_in: Some(s.to_string()),
    }
    .check()
    .map(|_| s.trim().to_string())
    .map_err(|e| e.to_string().trim_start_matches("expires_in: ").to_string())
}

/// Where the admin API is and the credentials it takes (never printed; `--help` hides their
/// environment values).
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The Command Center's admin URL: http://127.0.0.1:8088 on its host, or its public URL
    /// (https://cc.example.com) through Cloudflare Access.
    #[arg(
        long,
        env = "VAULTMESH_ADMIN_URL",
        value_name = "URL",
        default_value = admin::client::DEFAULT_URL
    )]
    pub url: String,
    /// The admin bearer token (the Command Center's --admin-token), or a named API token
    /// (`vmk_...`, `api-token create`). Prefer the environment: arguments show in `ps`.
    #[arg(
        long,
        env = "VAULTMESH_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// A Cloudflare Access service token's Client ID (sent as CF-Access-Client-Id).
    #[arg(
        long,
        env = "VAULTMESH_ACCESS_CLIENT_ID",
        value_name = "ID",
        requires = "access_client_secret",
        hide_env_values = true
    )]
    pub access_client_id: Option<String>,
    /// The service token's Client Secret (sent as CF-Access-Client-Secret).
    #[arg(
        long,
        env = "VAULTMESH_ACCESS_CLIENT_SECRET",
        value_name = "SECRET",
        requires = "access_client_id",
        hide_env_values = true
    )]
    pub access_client_secret: Option<String>,
}

impl AdminArgs {
    fn client(&self) -> Result<admin::AdminClient, admin::AdminError> {
        let access = match (&self.access_client_id, &self.access_client_secret) {
            (Some(client_id), Some(client_secret)) => Some(admin::ServiceToken {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
            }),
            _ => None,
        };
        let credentials = admin::Credentials {
            token: self.token.clone(),
            access,
        };
        admin::AdminClient::new(&self.url, &credentials)
    }
}

/// `command issue|list` and `node revoke|decommission|readmit|rename`: the admin API's verbs.
pub async fn admin_verb(verb: AdminVerb) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let failed = |e: admin::AdminError| (e.exit_code(), e.to_string());
    let code = match verb {
        AdminVerb::Commands(CommandsCommand::Issue {
            node,
            action,
            args,
            ttl,
            wait,
            json,
            admin: a,
        }) => {
            let o = admin::Issue {
                node,
                action,
                args,
                ttl_s: ttl,
                wait,
                json,
            };
            admin::issue(&a.client().map_err(failed)?, o, &mut out).await
        }
        AdminVerb::Commands(CommandsCommand::List {
            node,
            status,
            limit,
            json,
            admin: a,
        }) => {
            let o = admin::List {
                node,
                status,
                limit: usize::from(limit),
                json,
            };
            admin::list(&a.client().map_err(failed)?, o, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Revoke {
            node,
            reason,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            admin::lifecycle(&client, &node, admin::Lifecycle::Revoke, reason, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Decommission {
            node,
            reason,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            let what = admin::Lifecycle::Decommission;
            admin::lifecycle(&client, &node, what, reason, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Readmit {
            node,
            allow_old_key,
            reason,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            let what = admin::Lifecycle::Readmit { allow_old_key };
            admin::lifecycle(&client, &node, what, reason, &mut out).await
        }
        AdminVerb::Node(NodeCommand::Rename {
            node,
            name,
            clear: _,
            admin: a,
        }) => {
            let client = a.client().map_err(failed)?;
            admin::rename(&client, &node, name.as_deref(), &mut out).await
        }
        AdminVerb::Token(TokenCommand::Create {
            name,
            uses,
            expires_in,
            json,
            admin: a,
        }) => {
            let req = vaultmesh_command_center::tokens::MintRequest {
                name,
                uses: Some(uses),
                expires_in: Some(expires_in),
            };
            admin::tokens::create(&a.client().map_err(failed)?, req, json, &mut out).await
        }
        AdminVerb::Token(TokenCommand::List { json, admin: a }) => {
            admin::tokens::list(&a.client().map_err(failed)?, json, &mut out).await
        }
        AdminVerb::Token(TokenCommand::Revoke { id, admin: a }) => {
            admin::tokens::revoke(&a.client().map_err(failed)?, &id, &mut out).await
        }
        AdminVerb::ApiToken(ApiTokenCommand::Create {
            name,
            role,
            scopes,
            expires_in,
            json,
            admin: a,
        }) => {
            let req = vaultmesh_command_center::api_tokens::CreateRequest {
                name,
                role,
                scopes: (!scopes.is_empty()).then_some(scopes),
                expires_in: Some(expires_in),
            };
            admin::api_tokens::create(&a.client().map_err(failed)?, req, json, &mut out).await
        }
        AdminVerb::ApiToken(ApiTokenCommand::List { json, admin: a }) => {
            admin::api_tokens::list(&a.client().map_err(failed)?, json, &mut out).await
        }
        AdminVerb::ApiToken(ApiTokenCommand::Revoke { id, admin: a }) => {
            admin::api_tokens::revoke(&a.client().map_err(failed)?, &id, &mut out).await
        }
    }
    .map_err(failed)?;
    match code {
        0 => Ok(()),
        // The outcome is printed already: exit 1 with nothing more to say.
        code => Err((code, String::new())),
    }
}

/// The verbs that call the admin API.
#[derive(Debug)]
pub enum AdminVerb {
    Commands(CommandsCommand),
    Node(NodeCommand),
    Token(TokenCommand),
    ApiToken(ApiTokenCommand),
}

/// `--status`: one of the statuses `GET /api/commands` knows.
pub fn parse_status(s: &str) -> Result<CommandStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| "one of issued, delivered, ok, failed, rejected, timeout".to_string())
}
