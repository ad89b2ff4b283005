//! `kind = "ntfy"`: a POST to an ntfy topic URL (`https://ntfy.sh/<topic>` or your own
//! server), with the priority from the level, a tag, and a click link to the console.

use std::sync::Arc;

use async_trait::async_trait;
use vaultmesh_proto::AttentionLevel;

use super::{http_client, http_error, http_status};
use vaultmesh_engines::notify::config::secret;
use vaultmesh_engines::notify::registry::{NotifierRegistration, only_keys};
use vaultmesh_engines::notify::{Message, Notifier, SendError};

struct Ntfy {
    url: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Ntfy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // On ntfy.sh the topic URL is as good as a password.
        f.debug_struct("Ntfy")
            .field("url", &"(secret)")
            .field("token", &self.token.as_ref().map(|_| "(secret)"))
            .finish()
    }
}

fn build(_name: &str, t: &toml::Table) -> Result<Arc<dyn Notifier>, String> {
    only_keys(t, &["url", "url_file", "token", "token_file"])?;
    let url = secret(t, "url")?.ok_or("url (or url_file): missing (the topic URL)")?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err("url: must start with http:// or https://".into());
    }
    Ok(Arc::new(Ntfy {
        url,
        token: secret(t, "token")?,
        http: http_client(),
    }))
}

inventory::submit! { NotifierRegistration { kind: "ntfy", build } }

/// ntfy's priority (1–5) and tag for a level.
pub fn priority(level: AttentionLevel) -> (&'static str, &'static str) {
    match level {
        AttentionLevel::Crit => ("5", "rotating_light"),
        AttentionLevel::Attn => ("4", "warning"),
        AttentionLevel::Ok => ("3", "white_check_mark"),
    }
}

#[async_trait]
impl Notifier for Ntfy {
    fn kind(&self) -> &'static str {
        "ntfy"
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let (priority, tag) = priority(message.level());
        let mut req = self
            .http
            .post(&self.url)
            .header("Title", ascii(&message.subject()))
            .header("Priority", priority)
            .header("Tags", tag)
            .body(message.text(chrono::Utc::now()));
        if let [one] = message.alerts.as_slice() {
            req = req.header("Click", ascii(&one.link));
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(http_error)?;
        http_status(&r)
    }
}

/// Header values must be visible ASCII; anything else becomes `?`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}
