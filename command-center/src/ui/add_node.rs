//! The console's "Add node" page and its two forms: `GET /console/add-node`,
//! `POST /console/enroll-tokens` (mint) and `POST /console/enroll-tokens/{id}/revoke`. They work
//! without script; cross-site posts never get here ([`crate::guard`] refuses them for every
//! route), and the token is minted by the signed-in identity.
//!
//! Minting answers the page itself (`201`), with the token shown this once — a redirect would
//! have to carry the secret in its URL — or, to a script (`Accept: application/json`), the API's
//! JSON. A refused form answers the page again (`422`) with the reason and what was typed.
//! Revoking redirects back to the page (`303`), or answers the token's JSON.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::Markup;
use serde::Deserialize;

use super::view::tokens::{AddNodePage, page};
use crate::error::ApiError;
use crate::server::AppState;
use crate::tokens::{MintError, MintRequest};

const ADD_NODE_JS: &str = include_str!("add_node.js");

/// The body of `POST /console/enroll-tokens`: what the form sends (a browser sends every field,
/// empty when not filled). A field the form does not have is refused, not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintForm {
    pub name: String,
    #[serde(default)]
    pub uses: Option<String>,
    #[serde(default)]
    pub expires_in: Option<String>,
}

impl MintForm {
    /// The API's request: `uses` must be a whole number when given.
    pub fn request(&self) -> Result<MintRequest, MintError> {
        let uses = match self.uses.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) => Some(
                u.parse::<u32>()
                    .map_err(|_| MintError::UsesText(u.chars().take(32).collect()))?,
            ),
        };
        Ok(MintRequest {
            name: self.name.clone(),
            uses,
            expires_in: self.expires_in.clone().filter(|e| !e.trim().is_empty()),
        })
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// The page's data, with the tokens as they are now.
fn data(state: &AppState) -> AddNodePage {
    AddNodePage {
        tokens: crate::enroll_tokens::list(state),
        configured: state.tokens.0.len(),
        cc_public_key: state.cc_key.as_ref().map(|k| k.public_base64()),
        ..AddNodePage::default()
    }
}

/// `GET /console/add-node`.
pub async fn add_node_page(State(state): State<AppState>) -> Markup {
    page(&data(&state), Utc::now())
}

/// `POST /console/enroll-tokens`: mints a token as the signed-in identity.
pub async fn post_mint(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    form: Result<Form<MintForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(f) = form?;
    let json = wants_json(&headers);
    let checked = f.request().and_then(MintRequest::check);
    let m = match checked {
        Ok(m) => m,
        Err(e) if json => return Err(e.into()),
        Err(e) => {
            let p = AddNodePage {
                error: Some(e.to_string()),
                name: f.name,
                uses: f.uses.unwrap_or_default(),
                expires_in: f.expires_in.unwrap_or_default(),
                ..data(&state)
            };
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page(&p, Utc::now())).into_response());
        }
    };
    let by = crate::api::author(identity, "console");
    let minted =
        crate::enroll_tokens::mint(&state, m, by, crate::enroll_tokens::cc_url(&headers)).await?;
    if json {
        return Ok((StatusCode::CREATED, axum::Json(minted)).into_response());
    }
    let p = AddNodePage {
        minted: Some(minted),
        ..data(&state)
    };
    Ok((StatusCode::CREATED, page(&p, Utc::now())).into_response())
}

/// `POST /console/enroll-tokens/{id}/revoke`: revokes the token as the signed-in identity.
pub async fn post_revoke(
    State(state): State<AppState>,
    identity: Option<axum::Extension<crate::access::Identity>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t =
        crate::enroll_tokens::revoke(&state, &id, crate::api::author(identity, "console")).await?;
    if wants_json(&headers) {
        return Ok(axum::Json(t).into_response());
    }
    Ok(Redirect::to("/console/add-node").into_response())
}

/// `GET /assets/add-node.js`: the copy buttons.
pub async fn script() -> impl IntoResponse {
    super::handlers::script(ADD_NODE_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<MintRequest, String> {
        serde_urlencoded::from_str::<MintForm>(body)
            .map_err(|e| e.to_string())?
            .request()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_form_sends_empty_fields_as_none_and_a_bad_number_is_named() {
        let r = form("name=web-03&uses=&expires_in=").unwrap();
        assert_eq!((r.uses, r.expires_in), (None, None));
        let r = form("name=web-03&uses=3&expires_in=7d").unwrap();
        assert_eq!((r.uses, r.expires_in.as_deref()), (Some(3), Some("7d")));
        assert_eq!(
            form("name=x&uses=many").unwrap_err(),
            "uses: \"many\" is not a whole number"
        );
        assert!(
            form("name=x&secret=y")
                .unwrap_err()
                .contains("unknown field `secret`")
        );
    }
}
