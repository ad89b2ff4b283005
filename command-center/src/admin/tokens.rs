//! `token create|list|revoke`: enrollment tokens minted at runtime, through the admin API
//! (`docs/API.md`, "Enrollment tokens").

use std::io::Write;

use super::{AdminClient, AdminError, print, print_json};
use crate::tokens::{MintRequest, TokenView};

/// `token create`: checks the request as the server will (exit 2 naming the flag), mints the
/// token, and prints its secret and install line — the only time either is shown.
pub async fn create(
    client: &AdminClient,
    req: MintRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, AdminError> {
    req.clone()
        .check()
        .map_err(|e| AdminError::Usage(flag(&e.to_string())))?;
    let m = client.mint_token(&req).await?;
    if json {
        print_json(out, &m)?;
        return Ok(0);
    }
    let t = &m.token;
    print(
        out,
        &format!(
            "minted enrollment token {} ({:?}): {} use{}, expires {}\n\
             secret (shown this once): {}\n\n\
             On the node, run:\n  {}\n",
            t.id,
            vaultmesh_store::logs::render::clean(&t.name),
            t.uses,
            if t.uses == 1 { "" } else { "s" },
            t.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            m.secret,
            m.install
        ),
    )?;
    Ok(0)
}

/// A mint error names the JSON field; the CLI names the flag.
fn flag(message: &str) -> String {
    for (field, flag) in [
        ("name", "--name"),
        ("uses", "--uses"),
        ("expires_in", "--expires-in"),
    ] {
        if let Some(rest) = message.strip_prefix(field) {
            return format!("{flag}{rest}");
        }
    }
    message.to_string()
}

/// `token list`: a table, newest first, or the API's JSON.
pub async fn list(client: &AdminClient, json: bool, out: &mut dyn Write) -> Result<u8, AdminError> {
    let tokens = client.tokens().await?;
    if json {
        print_json(out, &tokens)?;
    } else {
        print(out, &table(&tokens))?;
    }
    Ok(0)
}

/// `token revoke ID`: the token is refused from now on.
pub async fn revoke(client: &AdminClient, id: &str, out: &mut dyn Write) -> Result<u8, AdminError> {
    let id = id.trim();
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::Usage(format!(
            "ID {:?}: a token id is 16 hex digits, as `token list` shows",
            vaultmesh_store::logs::render::clean(&id.chars().take(32).collect::<String>())
        )));
    }
    let t = client.revoke_token(id).await?;
    print(
        out,
        &format!(
            "revoked enrollment token {} ({:?}): it enrolls no node from now on ({} of {} uses were taken)\n",
            t.id,
            vaultmesh_store::logs::render::clean(&t.name),
            t.used,
            t.uses
        ),
    )?;
    Ok(0)
}

/// The tokens as a table: id, state, uses, expiry, creator, name.
pub fn table(tokens: &[TokenView]) -> String {
    if tokens.is_empty() {
        return "no enrollment tokens minted (mint one: vaultmesh-command-center token create --name NAME)\n".into();
    }
    let mut s = format!(
        "{:<16}  {:<8}  {:>9}  {:<20}  {:<24}  NAME\n",
        "ID", "STATE", "USED", "EXPIRES", "BY"
    );
    for t in tokens {
        s.push_str(&format!(
            "{:<16}  {:<8}  {:>9}  {:<20}  {:<24}  {}\n",
            t.id,
            t.state.as_str(),
            format!("{}/{}", t.used, t.uses),
            t.expires_at.format("%Y-%m-%d %H:%M UTC"),
            vaultmesh_store::logs::render::truncate(
                &vaultmesh_store::logs::render::clean(&t.created_by),
                24
            ),
            vaultmesh_store::logs::render::clean(&t.name)
        ));
    }
    s
}
