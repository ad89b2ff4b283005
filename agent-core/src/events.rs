//! Events a node posts about itself: a `note` or an `incident`, sent to
//! `POST /api/agent/events` with the node's own key (signed, or with a session MAC, like every
//! other agent request; `docs/PROTOCOL.md`, "Events from a node"). The Command Center makes the
//! node the event's node and its author (`node:<id>`); the agent names neither.
//!
//! Used by `vaultmesh-node-agent event note|incident`: the event is checked here first, as the
//! Command Center checks it, so bad input is a usage error naming the argument, not a `422`.

use serde::Serialize;
use vaultmesh_proto::EventEnvelope;
use vaultmesh_proto::event::{NewEvent, limits};
use vaultmesh_proto::severity::Severity;

use crate::client::{CcClient, ClientError};
use crate::config::AgentConfig;
use crate::identity;

/// What a node may post about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Note {
        text: String,
    },
    Incident {
        title: String,
        severity: Severity,
        text: Option<String>,
    },
}

/// The body of `POST /api/agent/events`: `POST /api/events`'s without `node_id` and `author`
/// (the Command Center sets both to the requesting node).
#[derive(Debug, Serialize)]
pub struct AgentEventBody {
    pub kind: &'static str,
    pub body: serde_json::Value,
}

/// Why an event could not be posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// Bad input: the argument and why (a usage error).
    #[error("{arg}: {reason}")]
    Invalid { arg: &'static str, reason: String },
    #[error(
        "this node has no identity in {0} yet: start the agent once (with VAULTMESH_ENROLL_TOKEN) so it enrolls, then post events"
    )]
    NotEnrolled(String),
    #[error("node identity: {0}")]
    Identity(#[from] identity::IdentityError),
    /// The Command Center does not know the route: it is older than events from nodes.
    #[error(
        "the Command Center at {0} does not take events from nodes (404 for POST /api/agent/events): it is older than this agent; upgrade it"
    )]
    Unsupported(String),
    #[error("{0}")]
    Client(#[from] ClientError),
}

impl NodeEvent {
    /// Checks every field as the Command Center will, naming the CLI argument that is wrong.
    pub fn check(&self) -> Result<(), PostError> {
        let field = |arg: &'static str, value: &str, max: usize, multi_line: bool| {
            let invalid = |reason: String| PostError::Invalid { arg, reason };
            if value.trim().is_empty() {
                return Err(invalid("must not be empty".into()));
            }
            if value.len() > max {
                return Err(invalid(format!(
                    "is {} bytes; the limit is {max}",
                    value.len()
                )));
            }
            let allowed: &[char] = if multi_line { &['\n', '\t'] } else { &[] };
            if let Some(c) = vaultmesh_proto::text::first_deceptive(value, allowed) {
                return Err(invalid(format!(
                    "contains U+{:04X}: a control character, or a bidirectional or invisible one, that could make it read as something else",
                    u32::from(c)
                )));
            }
            Ok(())
        };
        match self {
            NodeEvent::Note { text } => field("--text", text, limits::TEXT, true)?,
            NodeEvent::Incident { title, text, .. } => {
                field("--title", title, limits::TITLE, false)?;
                if let Some(t) = text {
                    field("--text", t, limits::TEXT, true)?;
                }
            }
        }
        // And the whole, as the Command Center's `POST /api/events` reads it (the body's size).
        let body = self.body();
        let new: NewEvent = serde_json::from_value(serde_json::json!({
            "kind": body.kind, "body": body.body,
        }))
        .map_err(|e| PostError::Invalid {
            arg: "event",
            reason: e.to_string(),
        })?;
        new.validate().map_err(|e| PostError::Invalid {
            arg: "event",
            reason: e.to_string(),
        })?;
        Ok(())
    }

    /// The request body.
    pub fn body(&self) -> AgentEventBody {
        match self {
            NodeEvent::Note { text } => AgentEventBody {
                kind: "note",
                body: serde_json::json!({"text": text}),
            },
            NodeEvent::Incident {
                title,
                severity,
                text,
            } => {
                let mut body = serde_json::json!({"title": title, "severity": severity});
                if let Some(t) = text {
                    body["text"] = t.clone().into();
                }
                AgentEventBody {
                    kind: "incident",
                    body,
                }
            }
        }
    }
}

/// Posts `event` about this node with its key and configuration (the Command Center's URL, its
/// pinned key for session MACs, an Access service token); returns the stored envelope. The
/// node must be enrolled: no identity is created here.
pub async fn post(config: &AgentConfig, event: &NodeEvent) -> Result<EventEnvelope, PostError> {
    event.check()?;
    let state = &config.state_dir;
    if !identity::exists(state) {
        return Err(PostError::NotEnrolled(state.display().to_string()));
    }
    let node_id = identity::load_or_create_node_id(state)?;
    let key = identity::load_or_create_node_key(state)?;
    let client = CcClient::for_agent(config, node_id, key)?;
    match client.post_event(&event.body()).await {
        Err(ClientError::Rejected { status: 404, .. }) => {
            Err(PostError::Unsupported(config.cc_url.clone()))
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_its_argument() {
        let incident = |title: &str, text: Option<&str>| NodeEvent::Incident {
            title: title.into(),
            severity: Severity::High,
            text: text.map(String::from),
        };
        for (event, arg, why) in [
            (incident("", None), "--title", "must not be empty"),
            (incident("a\u{202e}b", None), "--title", "U+202E"),
            (incident("a\nb", None), "--title", "U+000A"),
            (incident(&"x".repeat(300), None), "--title", "300 bytes"),
            (incident("ok", Some("\u{7}")), "--text", "U+0007"),
            (
                NodeEvent::Note { text: " ".into() },
                "--text",
                "must not be empty",
            ),
        ] {
            match event.check() {
                Err(PostError::Invalid { arg: a, reason }) => {
                    assert_eq!(a, arg, "{event:?}");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{event:?}: {other:?}"),
            }
        }
        incident("disk failing", Some("smartctl says\nreallocated sectors"))
            .check()
            .unwrap();
        let body = incident("t", None).body();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"kind": "incident", "body": {"title": "t", "severity": "high"}})
        );
    }
}
