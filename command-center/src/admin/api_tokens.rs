//! `api-token create|list|revoke`: named API tokens for scripts, bots and the CLI, through the
//! admin API (`docs/API.md`, "API tokens").

use std::io::Write;

use super::{AdminClient, AdminError, print, print_json};
use crate::api_tokens::{ApiTokenView, CreateRequest};
use vaultmesh_store::logs::render::clean;

/// `api-token create`: checks the request as the server will (exit 2 naming the flag), makes
/// the token, and prints its secret — the only time it is shown.
pub async fn create(
    client: &AdminClient,
    req: CreateRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, AdminError> {
    req.clone()
        .check()
        .map_err(|e| AdminError::Usage(flag(&e)))?;
    let c = client.create_api_token(&req).await?;
    if json {
        print_json(out, &c)?;
        return Ok(0);
    }
    let t = &c.token;
    print(
        out,
        &format!(
            "created API token {} ({}): {}, expires {}\n\
             secret (shown this once): {}\n\n\
             Use it as: Authorization: Bearer <secret>, or VAULTMESH_ADMIN_TOKEN=<secret> for this CLI\n",
            t.id,
            clean(&t.name),
            what(t),
            t.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            c.secret,
        ),
    )?;
    Ok(0)
}

/// `role viewer` or `scopes read, events:write`.
fn what(t: &ApiTokenView) -> String {
    match t.role {
        Some(r) => format!("role {r}"),
        None => format!("scopes {}", t.scopes.join(", ")),
    }
}

/// A request error names the JSON field; the CLI names the flag.
fn flag(message: &str) -> String {
    for (field, flag) in [
        ("role, scopes", "--role, --scope"),
        ("name", "NAME"),
        ("role", "--role"),
        ("scopes", "--scope"),
        ("expires_in", "--expires-in"),
    ] {
        if let Some(rest) = message.strip_prefix(field) {
            return format!("{flag}{rest}");
        }
    }
    message.to_string()
}

/// `api-token list`: a table, newest first, or the API's JSON.
pub async fn list(client: &AdminClient, json: bool, out: &mut dyn Write) -> Result<u8, AdminError> {
    let tokens = client.api_tokens().await?;
    if json {
        print_json(out, &tokens)?;
    } else {
        print(out, &table(&tokens))?;
    }
    Ok(0)
}

/// `api-token revoke ID`: the token is refused from its next request on.
pub async fn revoke(client: &AdminClient, id: &str, out: &mut dyn Write) -> Result<u8, AdminError> {
    let id = id.trim();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::Usage(format!(
            "ID {:?}: an API token id is 16 hex digits, as `api-token list` shows",
            clean(&id.chars().take(32).collect::<String>())
        )));
    }
    let t = client.revoke_api_token(id).await?;
    print(
        out,
        &format!(
            "revoked API token {} ({}): refused from its next request on\n",
            t.id,
            clean(&t.name)
        ),
    )?;
    Ok(0)
}

/// The tokens as a table: id, state, what it may do, expiry, last use, name.
pub fn table(tokens: &[ApiTokenView]) -> String {
    if tokens.is_empty() {
        return "no API tokens (make one: vaultmesh-command-center api-token create NAME --role viewer)\n".into();
    }
    let mut s = format!(
        "{:<16}  {:<8}  {:<34}  {:<20}  {:<20}  NAME\n",
        "ID", "STATE", "MAY", "EXPIRES", "LAST USED"
    );
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    for t in tokens {
        s.push_str(&format!(
            "{:<16}  {:<8}  {:<34}  {:<20}  {:<20}  {}\n",
            t.id,
            t.state.as_str(),
            what(t),
            time(t.expires_at),
            t.last_used_at.map_or_else(|| "never".into(), time),
            clean(&t.name)
        ));
    }
    s
}
