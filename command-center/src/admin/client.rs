//! [`AdminClient`]: the admin API over HTTP, with the admin's credentials on every request, and
//! one place ([`AdminClient::send`]) that turns a reply that is not 2xx into an [`AdminError`].

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use uuid::Uuid;
use vaultmesh_proto::command::SignedCommand;
use vaultmesh_proto::{ErrorBody, NodeSummary};

use vaultmesh_store::commands::{CommandStatus, CommandView};

/// The admin URL when none is given: the Command Center's default listener, on its own host.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8088";
/// How long one request may take (the server answers within its own 30 s limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// A Cloudflare Access service token (Access → Service Auth → Service Tokens).
#[derive(Clone)]
pub struct ServiceToken {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceToken")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the client presents: the admin bearer token, an Access service token, both or neither.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Sent as `Authorization: Bearer …` (the server's `--admin-token`).
    pub token: Option<String>,
    /// Sent as `CF-Access-Client-Id` and `CF-Access-Client-Secret`.
    pub access: Option<ServiceToken>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("access", &self.access)
            .finish()
    }
}

/// Why an admin call failed. [`AdminError::exit_code`] is the CLI's exit code for it.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A credential cannot be sent (not a valid header value); never shows the value.
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the Command Center at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The Command Center (or Cloudflare in front of it) refused: its status and reason.
    #[error("{status}: {error}{hint}")]
    Refused {
        status: u16,
        error: String,
        hint: &'static str,
    },
    #[error("the reply from {url} is not what the Command Center sends: {reason}")]
    BadReply { url: String, reason: String },
    /// `--wait` ran out before the receipt came.
    #[error(
        "no receipt within {}: command {command_id} is {status}; follow it with `vaultmesh-command-center command list --node {node}`",
        humantime::format_duration(*within)
    )]
    NoReceipt {
        command_id: Uuid,
        within: Duration,
        status: String,
        node: Uuid,
    },
    /// Standard output is gone.
    #[error("cannot write to standard output: {0}")]
    Output(String),
    /// `--node` named no known node.
    #[error(
        "--node {given:?}: no node has that id, hostname or display name{}",
        near_names(near)
    )]
    UnknownNode { given: String, near: Vec<String> },
    /// `--node` named several nodes by their hostname (or display name).
    #[error(
        "--node {given:?}: {} nodes have that name; give one of their ids: {}",
        ids.len(),
        ids.join(", ")
    )]
    AmbiguousNode { given: String, ids: Vec<String> },
}

fn near_names(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", near.join(" or "))
    }
}

impl AdminError {
    /// 2 for what the user must change in the command line, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Usage(_)
            | AdminError::UnknownNode { .. }
            | AdminError::AmbiguousNode { .. } => 2,
            _ => 1,
        }
    }
}

/// A node as `--node` resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    pub id: Uuid,
    /// Its hostname, when it was named by it (or found in `GET /api/nodes`).
    pub hostname: Option<String>,
    /// Its display name, if it has one (and was found in `GET /api/nodes`).
    pub display_name: Option<String>,
}

impl NodeRef {
    /// `n`, found in `GET /api/nodes`.
    pub fn of(n: &NodeSummary) -> NodeRef {
        NodeRef {
            id: n.node_id,
            hostname: Some(n.hostname.clone()),
            display_name: n.display_name.clone(),
        }
    }
}

impl std::fmt::Display for NodeRef {
    /// "Frankfurt edge 1 (vault-node-01, <id>)", "vault-node-01 (<id>)" or the id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use vaultmesh_store::logs::render::clean;
        match (&self.display_name, &self.hostname) {
            (Some(d), Some(h)) => write!(f, "{} ({}, {})", clean(d), clean(h), self.id),
            (_, Some(h)) => write!(f, "{} ({})", clean(h), self.id),
            _ => write!(f, "{}", self.id),
        }
    }
}

/// `node` as a node id, or the one node whose hostname (ASCII case-insensitive) or display
/// name (case-insensitive) it is.
pub fn resolve_node(nodes: &[NodeSummary], node: &str) -> Result<NodeRef, AdminError> {
    let given = node.trim();
    if let Ok(id) = Uuid::parse_str(given) {
        return Ok(nodes.iter().find(|n| n.node_id == id).map_or(
            NodeRef {
                id,
                hostname: None,
                display_name: None,
            },
            NodeRef::of,
        ));
    }
    let lower = given.to_lowercase();
    let named: Vec<&NodeSummary> = nodes
        .iter()
        .filter(|n| {
            n.hostname.eq_ignore_ascii_case(given)
                || n.display_name
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase() == lower)
        })
        .collect();
    match named.as_slice() {
        [one] => Ok(NodeRef::of(one)),
        [] => Err(AdminError::UnknownNode {
            given: given.to_string(),
            near: near(nodes, given),
        }),
        many => Err(AdminError::AmbiguousNode {
            given: given.to_string(),
            ids: many
                .iter()
                .map(|n| {
                    format!(
                        "{} (last seen {})",
                        n.node_id,
                        n.last_seen.format("%Y-%m-%d %H:%M UTC")
                    )
                })
                .collect(),
        }),
    }
}

/// Up to three hostnames or display names close to `given`, closest first.
fn near(nodes: &[NodeSummary], given: &str) -> Vec<String> {
    let given = given.to_lowercase();
    let mut scored: Vec<(f64, String)> = nodes
        .iter()
        .flat_map(|n| std::iter::once(&n.hostname).chain(n.display_name.as_ref()))
        .map(|name| {
            let lower = name.to_lowercase();
            let score = if lower.contains(&given) || given.contains(&lower) {
                1.0
            } else {
                strsim::jaro_winkler(&lower, &given)
            };
            (score, vaultmesh_store::logs::render::clean(name))
        })
        .filter(|(score, _)| *score >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, h)| h).collect()
}

/// What to do to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Revoke,
    Decommission,
    Readmit { allow_old_key: bool },
}

/// Reply of `POST /api/nodes/{id}/revoke|decommission|readmit` (its `event` is not needed here).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NodeState {
    pub node_id: Uuid,
    /// `revoked`, `decommissioned` or `readmitted`.
    pub state: String,
}

/// The admin API of one Command Center.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    has_credentials: bool,
}

impl AdminClient {
    /// A client for the Command Center at `base` presenting `credentials` on every request.
    pub fn new(base: &str, credentials: &Credentials) -> Result<AdminClient, AdminError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(AdminError::Usage(format!(
                "--url {base:?}: write the Command Center's URL, e.g. {DEFAULT_URL}"
            )));
        }
        let secret = |what: &str, value: &str| {
            let mut v = HeaderValue::from_str(value.trim()).map_err(|_| {
                AdminError::Usage(format!(
                    "{what}: not a valid HTTP header value (a stray newline or non-ASCII character?)"
                ))
            })?;
            v.set_sensitive(true);
            Ok::<_, AdminError>(v)
        };
        let mut headers = HeaderMap::new();
        if let Some(token) = &credentials.token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                secret("--token", &format!("Bearer {}", token.trim()))?,
            );
        }
        if let Some(st) = &credentials.access {
            headers.insert(
                "cf-access-client-id",
                secret("--access-client-id", &st.client_id)?,
            );
            headers.insert(
                "cf-access-client-secret",
                secret("--access-client-secret", &st.client_secret)?,
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "vaultmesh-command-center/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A redirect must not carry the credentials elsewhere (and Access's sign-in
            // redirect means the request was not let through: say so instead).
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|e| AdminError::Unreachable {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(AdminClient {
            http,
            base,
            has_credentials: credentials.token.is_some() || credentials.access.is_some(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /api/nodes?include=decommissioned`: every node, the decommissioned ones too (they
    /// can still be named, to re-admit one, and their commands still have a hostname).
    pub async fn nodes(&self) -> Result<Vec<NodeSummary>, AdminError> {
        let url = self.url("/api/nodes?include=decommissioned");
        self.send(self.http.get(url)).await
    }

    /// `--node`: a node id is taken as it is (its hostname looked up for messages); a
    /// hostname is looked up in `GET /api/nodes`.
    pub async fn resolve(&self, node: &str) -> Result<NodeRef, AdminError> {
        if let Ok(id) = Uuid::parse_str(node.trim()) {
            // Only to name it: a node id needs no lookup, and a failed one is no reason to stop.
            let nodes = self.nodes().await.unwrap_or_default();
            return resolve_node(&nodes, &id.to_string());
        }
        resolve_node(&self.nodes().await?, node)
    }

    /// `POST /api/commands`.
    pub async fn issue(
        &self,
        req: &crate::commands::IssueRequest,
    ) -> Result<SignedCommand, AdminError> {
        self.send(self.http.post(self.url("/api/commands")).json(req))
            .await
    }

    /// `GET /api/commands?node_id=&status=&limit=`, newest first.
    pub async fn commands(
        &self,
        node: Option<Uuid>,
        status: Option<CommandStatus>,
        limit: usize,
    ) -> Result<Vec<CommandView>, AdminError> {
        // Every value is a number, a UUID or a status name: nothing to escape.
        let mut path = format!("/api/commands?limit={limit}");
        if let Some(n) = node {
            path.push_str(&format!("&node_id={n}"));
        }
        if let Some(s) = status {
            path.push_str(&format!("&status={}", super::status_name(s)));
        }
        self.send(self.http.get(self.url(&path))).await
    }

    /// Follows `command` until its receipt is in or `within` has passed: `Ok(view)` with the
    /// last state seen either way (its status says which).
    pub async fn wait_for_receipt(
        &self,
        command: &SignedCommand,
        within: Duration,
    ) -> Result<Option<CommandView>, AdminError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = None;
        loop {
            // The command is among its node's newest: issued a moment ago.
            let views = self
                .commands(Some(command.command.node_id), None, 100)
                .await?;
            if let Some(v) = views
                .into_iter()
                .find(|v| v.signed.command.command_id == command.command.command_id)
            {
                if super::is_final(v.status) {
                    return Ok(Some(v));
                }
                last = Some(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `POST /api/nodes/{id}/revoke` or `/decommission`, or `/readmit` with `{"allow_old_key": …}`.
    pub async fn lifecycle(
        &self,
        id: Uuid,
        what: Lifecycle,
        reason: Option<String>,
    ) -> Result<NodeState, AdminError> {
        let (verb, allow_old_key) = match what {
            Lifecycle::Revoke => ("revoke", false),
            Lifecycle::Decommission => ("decommission", false),
            Lifecycle::Readmit { allow_old_key } => ("readmit", allow_old_key),
        };
        let body = crate::api::LifecycleBody {
            allow_old_key,
            reason,
        };
        let url = self.url(&format!("/api/nodes/{id}/{verb}"));
        self.send(self.http.post(url).json(&body)).await
    }

    /// `POST /api/nodes/{id}/rename` with `{"display_name": …}` (`None`: cleared).
    pub async fn rename(
        &self,
        id: Uuid,
        display_name: Option<String>,
    ) -> Result<crate::api::RenameReply, AdminError> {
        let body = crate::api::RenameBody { display_name };
        let url = self.url(&format!("/api/nodes/{id}/rename"));
        self.send(self.http.post(url).json(&body)).await
    }

    /// `POST /api/enroll-tokens`: the token, its secret (this once) and its install line.
    pub async fn mint_token(
        &self,
        req: &crate::tokens::MintRequest,
    ) -> Result<crate::tokens::Minted, AdminError> {
        self.send(self.http.post(self.url("/api/enroll-tokens")).json(req))
            .await
    }

    /// `GET /api/enroll-tokens`, newest first.
    pub async fn tokens(&self) -> Result<Vec<crate::tokens::TokenView>, AdminError> {
        self.send(self.http.get(self.url("/api/enroll-tokens")))
            .await
    }

    /// `DELETE /api/enroll-tokens/{id}` (`id` is checked to be hex by the caller).
    pub async fn revoke_token(&self, id: &str) -> Result<crate::tokens::TokenView, AdminError> {
        let url = self.url(&format!("/api/enroll-tokens/{id}"));
        self.send(self.http.delete(url)).await
    }

    /// `POST /api/api-tokens`: the token and its secret (this once).
    pub async fn create_api_token(
        &self,
        req: &crate::api_tokens::CreateRequest,
    ) -> Result<crate::api_tokens::Created, AdminError> {
        self.send(self.http.post(self.url("/api/api-tokens")).json(req))
            .await
    }

    /// `GET /api/api-tokens`, newest first.
    pub async fn api_tokens(&self) -> Result<Vec<crate::api_tokens::ApiTokenView>, AdminError> {
        self.send(self.http.get(self.url("/api/api-tokens"))).await
    }

    /// `DELETE /api/api-tokens/{id}` (`id` is checked to be hex by the caller).
    pub async fn revoke_api_token(
        &self,
        id: &str,
    ) -> Result<crate::api_tokens::ApiTokenView, AdminError> {
        let url = self.url(&format!("/api/api-tokens/{id}"));
        self.send(self.http.delete(url)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `req`; a 2xx reply is parsed as `T`, anything else becomes [`AdminError::Refused`]
    /// with the JSON error's message (or what stands in for it).
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, AdminError> {
        let resp = req.send().await.map_err(|e| AdminError::Unreachable {
            url: self.base.clone(),
            reason: vaultmesh_process::error_chain(&e),
        })?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(vaultmesh_store::logs::render::clean);
        let body = resp.bytes().await.map_err(|e| AdminError::Unreachable {
            url: self.base.clone(),
            reason: vaultmesh_process::error_chain(&e),
        })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| AdminError::BadReply {
                url: self.base.clone(),
                reason: format!("{status}: {e}"),
            });
        }
        let from_cc = serde_json::from_slice::<ErrorBody>(&body);
        // A 403 that is not the Command Center's JSON is Cloudflare's (Access let nothing through).
        let auth_refused = status.as_u16() == 401 || (status.as_u16() == 403 && from_cc.is_err());
        let error = match (from_cc, location) {
            (Ok(b), _) => vaultmesh_store::logs::render::clean(&b.error),
            (Err(_), Some(to)) => format!(
                "redirected to {to}; behind Cloudflare Access, give a service token (--access-client-id, --access-client-secret)"
            ),
            (Err(_), None) => {
                let text = vaultmesh_store::logs::render::clean(&String::from_utf8_lossy(&body));
                let text = vaultmesh_store::logs::render::truncate(text.trim(), 200);
                let reason = status.canonical_reason().unwrap_or("error");
                if text.is_empty() {
                    reason.to_string()
                } else {
                    format!("{reason} ({text})")
                }
            }
        };
        let hint = if auth_refused && !self.has_credentials {
            " (no credentials were given: set VAULTMESH_ADMIN_TOKEN or --token, or an Access service token)"
        } else {
            ""
        };
        Err(AdminError::Refused {
            status: status.as_u16(),
            error,
            hint,
        })
    }
}

/// `--arg KEY=VALUE` pairs as the command's `args` object.
pub fn parse_args(pairs: &[String]) -> Result<serde_json::Value, AdminError> {
    let mut map = serde_json::Map::new();
    for a in pairs {
        let (k, v) = a
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| AdminError::Usage(format!("--arg {a:?}: write KEY=VALUE")))?;
        map.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    Ok(serde_json::Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u128, host: &str) -> NodeSummary {
        serde_json::from_value(serde_json::json!({
            "node_id": Uuid::from_u128(id), "hostname": host, "os_profile": "ArchVault",
            "last_seen": "2026-11-29T10:00:00Z", "cloudflare_ok": true, "services_ok": true,
            "heartbeats": 1
        }))
        .unwrap()
    }

    #[test]
    fn a_node_is_named_by_id_or_by_its_one_hostname() {
        let nodes = [
            node(1, "vault-01"),
            node(2, "twin"),
            node(3, "Twin"),
            node(4, "vault-02"),
        ];
        let id = Uuid::from_u128(1);
        assert_eq!(
            resolve_node(&nodes, "VAULT-01").unwrap(),
            NodeRef {
                id,
                hostname: Some("vault-01".into()),
                display_name: None,
            }
        );
        assert_eq!(resolve_node(&nodes, &id.to_string()).unwrap().id, id);
        let e = resolve_node(&nodes, "twin").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("2 nodes have that name"), "{e}");
        assert!(
            e.to_string().contains(&Uuid::from_u128(3).to_string()),
            "{e}"
        );
        let e = resolve_node(&nodes, "vault-03").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .ends_with("did you mean vault-01 or vault-02?"),
            "{e}"
        );
        let e = resolve_node(&nodes, "zzz").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("no node has that id, hostname or display name"),
            "{e}"
        );
    }

    #[test]
    fn a_node_is_named_by_its_display_name_too() {
        let mut fra = node(1, "vault-node-01");
        fra.display_name = Some("Frankfurt edge 1".into());
        let nodes = [fra, node(2, "vault-node-02")];
        let found = resolve_node(&nodes, "frankfurt EDGE 1").unwrap();
        assert_eq!(found.id, Uuid::from_u128(1));
        assert_eq!(
            found.to_string(),
            format!("Frankfurt edge 1 (vault-node-01, {})", Uuid::from_u128(1))
        );
        assert_eq!(
            resolve_node(&nodes, "vault-node-01").unwrap(),
            found,
            "its hostname still names it"
        );
        let e = resolve_node(&nodes, "Frankfurt edge").unwrap_err();
        assert!(
            e.to_string().ends_with("did you mean Frankfurt edge 1?"),
            "{e}"
        );
        // A display name that is another node's hostname: both are named, so neither is taken.
        let mut twin = node(3, "db-01");
        twin.display_name = Some("vault-node-02".into());
        let e = resolve_node(&[nodes[1].clone(), twin], "vault-node-02").unwrap_err();
        assert!(e.to_string().contains("2 nodes have that name"), "{e}");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c = Credentials {
            token: Some("t0ken-value".into()),
            access: Some(ServiceToken {
                client_id: "id.access".into(),
                client_secret: "s3cret-value".into(),
            }),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("t0ken-value") && !shown.contains("s3cret-value"),
            "{shown}"
        );
    }
}
