//! `kind = "webhook"`: an HTTP POST of JSON — VaultMesh's own schema (`format = "json"`, the
//! default) or `{"text": ...}` as Slack and Mattermost incoming webhooks take it
//! (`format = "slack"` or `"mattermost"`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{http_client, http_error, http_status};
use vaultmesh_engines::notify::config::secret;
use vaultmesh_engines::notify::registry::{NotifierRegistration, only_keys, string};
use vaultmesh_engines::notify::{Message, Notifier, SendError};

/// Version of the JSON body (`format = "json"`); see docs/NOTIFICATIONS.md.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
}

struct Webhook {
    url: String,
    format: Format,
    http: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL is the secret of a Slack or Mattermost hook.
        f.debug_struct("Webhook").field("url", &"(secret)").finish()
    }
}

fn build(_name: &str, t: &toml::Table) -> Result<Arc<dyn Notifier>, String> {
    only_keys(t, &["url", "url_file", "format"])?;
    let url = secret(t, "url")?.ok_or("url (or url_file): missing")?;
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err("url: must start with http:// or https://".into());
    }
    let format = match string(t, "format")?.as_deref() {
        None | Some("json") => Format::Json,
        Some("slack" | "mattermost") => Format::Text,
        Some(other) => {
            return Err(format!(
                "format: {other:?} is not one of json, slack, mattermost"
            ));
        }
    };
    Ok(Arc::new(Webhook {
        url,
        format,
        http: http_client(),
    }))
}

inventory::submit! { NotifierRegistration { kind: "webhook", build } }

/// The JSON body of `format = "json"`.
pub fn body(message: &Message, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    serde_json::json!({
        "version": SCHEMA_VERSION,
        "id": message.id,
        "route": message.route,
        "test": message.test,
        "level": message.level(),
        "subject": message.subject(),
        "text": message.text(now),
        "alerts": message.alerts,
        "sent_at": now,
    })
}

#[async_trait]
impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, message: &Message) -> Result<(), SendError> {
        let now = chrono::Utc::now();
        let body = match self.format {
            Format::Json => body(message, now),
            Format::Text => serde_json::json!({
                "text": format!(
                    "*{}*\n{}",
                    chat_escape(&message.subject()),
                    chat_escape(&message.text(now))
                ),
            }),
        };
        let r = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(http_error)?;
        http_status(&r)
    }
}

/// Text for Slack or Mattermost: `&`, `<` and `>` escaped (no links or `<!channel>` from a
/// hostname), and `@` made harmless (no `@channel` / `@all` mentions). Hostnames and reasons
/// come from agents.
pub fn chat_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@\u{200b}"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chat_text_cannot_mention_or_link() {
        let s = super::chat_escape("<!channel> <https://evil|Open console> @here & co");
        assert!(!s.contains('<') && !s.contains('>'));
        assert!(!s.contains("@here"));
        assert!(s.contains("&lt;!channel&gt;") && s.contains("&amp; co"));
    }
}
