//! `EventEnvelope`: the canonical form of everything operators, agents and bots post (notes,
//! incidents, acks, tags, resolutions), with a hash anyone can recompute.
//!
//! `hash` = lowercase hex SHA-256 of the RFC 8785 (JCS) bytes of the envelope **without** its
//! `hash` member. See `docs/EVENT_ENVELOPE.md` for the exact rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::{Attention, AttentionLevel, Reason};
use crate::canonical;
use crate::severity::Severity;

/// Operator event kinds, in the order they are documented.
pub const OPERATOR_KINDS: [&str; 6] = ["note", "incident", "ack", "tag", "resolve", "silence"];

/// Kinds the Command Center itself writes to the event log (never accepted from a client).
pub const SYSTEM_KINDS: [&str; 7] = [
    kinds::ATTENTION,
    kinds::NODE_REVOKED,
    kinds::NODE_READMITTED,
    kinds::NODE_DECOMMISSIONED,
    kinds::NODE_RENAMED,
    kinds::ENROLL_REFUSED,
    kinds::RECEIPT_CONFLICT,
];

/// The `author` of events the Command Center writes on its own account.
pub const SYSTEM_AUTHOR: &str = "command-center";

/// The kinds an agent may post about its own node (`POST /api/agent/events`).
pub const AGENT_KINDS: [&str; 2] = ["note", "incident"];

/// What the `author` of an event an agent posted starts with: `node:` and the node id. Only
/// the agent route writes it; an operator's author (given in the body, or the signed-in
/// identity's name) starting with it is refused ([`is_node_author`]), so no one but the node
/// itself can appear as a node.
pub const NODE_AUTHOR_PREFIX: &str = "node:";

/// The author of an event posted by node `node_id`: `node:<lower-case hyphenated id>`.
pub fn node_author(node_id: &Uuid) -> String {
    format!("{NODE_AUTHOR_PREFIX}{}", node_id.hyphenated())
}

/// Whether `author` is in the agents' namespace ([`NODE_AUTHOR_PREFIX`], any case, leading
/// white space ignored): such an author is written only by the agent route.
pub fn is_node_author(author: &str) -> bool {
    author
        .trim_start()
        .get(..NODE_AUTHOR_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(NODE_AUTHOR_PREFIX))
}

/// Names of the system event kinds.
pub mod kinds {
    /// A node's attention level or reasons changed.
    pub const ATTENTION: &str = "attention";
    /// An admin revoked a node ([`super::NodeLifecycleBody`]).
    pub const NODE_REVOKED: &str = "node_revoked";
    /// An admin re-admitted a revoked node ([`super::NodeLifecycleBody`]).
    pub const NODE_READMITTED: &str = "node_readmitted";
    /// An admin decommissioned a node: revoked it and took it out of the fleet's views,
    /// attention and notifications ([`super::NodeLifecycleBody`]).
    pub const NODE_DECOMMISSIONED: &str = "node_decommissioned";
    /// An admin set or cleared a node's display name ([`super::NodeRenamedBody`]).
    pub const NODE_RENAMED: &str = "node_renamed";
    /// A revocation refused an enrollment ([`super::EnrollRefusedBody`]).
    pub const ENROLL_REFUSED: &str = "enroll_refused";
    /// A node sent a second, different receipt for a command that has one
    /// ([`super::ReceiptConflictBody`]).
    pub const RECEIPT_CONFLICT: &str = "receipt_conflict";
}

/// Body of `node_revoked`, `node_readmitted` and `node_decommissioned` events (the author is
/// the admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLifecycleBody {
    /// [`crate::command::key_id`] of the key the node was bound to.
    pub key_id: String,
    /// The admin's reason, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `node_readmitted`: whether the node may come back with its old key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_old_key: Option<bool>,
    /// For `logs view --min-severity`: `medium`.
    pub severity: Severity,
}

/// Body of `node_renamed` events (the author is the admin): the node's display name before
/// and after ([`crate::display_name`]; `null`: none, the node is shown by its hostname).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRenamedBody {
    /// The node's hostname when it was renamed (what the agent reports).
    pub hostname: String,
    /// Its display name before (`null`: it had none).
    pub previous: Option<String>,
    /// Its display name now (`null`: cleared).
    pub display_name: Option<String>,
    /// For `logs view --min-severity`: `info`.
    pub severity: Severity,
}

/// Body of `enroll_refused` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRefusedBody {
    /// `node_revoked` or `key_revoked`.
    pub code: String,
    /// The sentence the enrolling agent was sent.
    pub reason: String,
    /// [`crate::command::key_id`] of the key that tried to enroll.
    pub key_id: String,
    /// For `logs view --min-severity`: `high`.
    pub severity: Severity,
}

/// Body of `receipt_conflict` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptConflictBody {
    pub command_id: Uuid,
    /// SHA-256 (hex) of the receipt kept (the first one).
    pub kept_sha256: String,
    /// SHA-256 (hex) of the receipt refused.
    pub refused_sha256: String,
    /// For `logs view --min-severity`: `high`.
    pub severity: Severity,
}

/// Body of `attention` events: a node's attention changed (or, without `node_id`, the Command
/// Center's own). Written by the Command Center only; `docs/EVENT_ENVELOPE.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionBody {
    pub level: AttentionLevel,
    #[serde(default)]
    pub previous: AttentionLevel,
    /// When the level last changed (`null` for a node that has been OK from the start).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
}

impl AttentionBody {
    /// The change to `attention` from `previous`.
    pub fn new(attention: &Attention, previous: AttentionLevel) -> AttentionBody {
        AttentionBody {
            level: attention.level,
            previous,
            since: attention.since,
            reasons: attention.reasons.clone(),
        }
    }

    /// The attention it records.
    pub fn attention(&self) -> Attention {
        Attention {
            level: self.level,
            reasons: self.reasons.clone(),
            since: self.since,
        }
    }
}

/// The attention an incident of `severity` calls for: `high` and `critical` ones make their
/// node CRIT, the others ATTN. The one place this rule is written (attention rules and
/// notifications both ask it).
pub fn incident_level(severity: Severity) -> AttentionLevel {
    if severity >= Severity::High {
        AttentionLevel::Crit
    } else {
        AttentionLevel::Attn
    }
}

/// A stored envelope's body, read once by its kind, for the Command Center's own use (its
/// state, attention and notifications). The envelope keeps the JSON: that is what is hashed,
/// logged and sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Attention(AttentionBody),
    Incident(IncidentBody),
    Silence(SilenceBody),
    Renamed(NodeRenamedBody),
    /// A `resolve` (of an incident, or of a silence), with its text.
    Resolve {
        text: Option<String>,
    },
    /// The other kinds, or a body that does not read as its kind's.
    Other,
}

impl Body {
    /// Reads `body` as a `kind` event's.
    pub fn read(kind: &str, body: &serde_json::Value) -> Body {
        let read = match kind {
            kinds::ATTENTION => AttentionBody::deserialize(body).map(Body::Attention),
            "incident" => IncidentBody::deserialize(body).map(Body::Incident),
            "silence" => SilenceBody::deserialize(body).map(Body::Silence),
            kinds::NODE_RENAMED => NodeRenamedBody::deserialize(body).map(Body::Renamed),
            "resolve" if body.is_null() => Ok(Body::Resolve { text: None }),
            "resolve" => ReplyBody::deserialize(body).map(|b| Body::Resolve { text: b.text }),
            _ => Ok(Body::Other),
        };
        read.unwrap_or(Body::Other)
    }
}

/// Limits on what a posted event may carry.
pub mod limits {
    /// Largest body, as compact JSON.
    pub const BODY_BYTES: usize = 16 * 1024;
    /// Longest free text (`note.text`, incident/ack/resolve `text`).
    pub const TEXT: usize = 8 * 1024;
    /// Longest incident title.
    pub const TITLE: usize = 256;
    /// Longest tag label.
    pub const LABEL: usize = 64;
    /// Most refs.
    pub const REFS: usize = 16;
    /// Longest author.
    pub const AUTHOR: usize = 128;
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// UUID v7: time-ordered.
    pub id: Uuid,
    pub kind: String,
    /// When the Command Center accepted it.
    pub ts: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<Uuid>,
    pub author: String,
    pub body: serde_json::Value,
    /// Ids of related envelopes (an ack's incident, ...).
    #[serde(default)]
    pub refs: Vec<Uuid>,
    pub hash: String,
}

/// The envelope minus `hash`: what is canonicalized and hashed.
#[derive(Serialize)]
struct Unsealed<'a> {
    id: &'a Uuid,
    kind: &'a str,
    ts: &'a DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: &'a Option<Uuid>,
    author: &'a str,
    body: &'a serde_json::Value,
    refs: &'a [Uuid],
}

impl EventEnvelope {
    /// SHA-256 (hex) of the JCS form of this envelope without `hash`.
    pub fn compute_hash(&self) -> String {
        let unsealed = Unsealed {
            id: &self.id,
            kind: &self.kind,
            ts: &self.ts,
            node_id: &self.node_id,
            author: &self.author,
            body: &self.body,
            refs: &self.refs,
        };
        // Serializing plain data to JSON cannot fail; an empty input would give a wrong hash
        // that `verify` then rejects, never a panic.
        canonical::sha256_hex(&canonical::to_jcs(&unsealed).unwrap_or_default())
    }

    /// Sets `hash`.
    pub fn sealed(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }

    /// Whether `hash` matches the content.
    pub fn verify(&self) -> bool {
        self.hash == self.compute_hash()
    }
}

/// The body of `POST /api/events`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    pub kind: String,
    #[serde(default)]
    pub node_id: Option<Uuid>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub body: serde_json::Value,
    #[serde(default)]
    pub refs: Vec<Uuid>,
}

/// Why a posted event is malformed (its lifecycle is checked by the Command Center).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("kind {0:?} is not one of note, incident, ack, tag, resolve, silence")]
    UnknownKind(String),
    #[error("invalid {kind} body: {reason}")]
    Body { kind: String, reason: String },
    #[error("body is {0} bytes; the limit is {max}", max = limits::BODY_BYTES)]
    BodyTooLarge(usize),
    #[error("{0} refs; the limit is {max}", max = limits::REFS)]
    TooManyRefs(usize),
    #[error("{kind} needs refs naming the incident (or, for resolve, the silence) it answers")]
    MissingIncidentRef { kind: String },
    #[error("author must be 1-{max} printable characters", max = limits::AUTHOR)]
    BadAuthor,
    /// An operator's author in the agents' namespace ([`NODE_AUTHOR_PREFIX`]).
    #[error(
        "author {0:?} is reserved: authors starting with \"node:\" are written only for events a node posts itself (POST /api/agent/events)"
    )]
    ReservedAuthor(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    text: String,
}

/// An incident's body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentBody {
    pub title: String,
    #[serde(default = "default_incident_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub text: Option<String>,
}

/// A silence's body: keeps matching attention reasons from escalating until `until`, or until
/// they clear (`until_resolved`), whichever comes first. At least one of the two is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// Attention rule to silence (`drift`, `check.disk`, ...; a prefix ending in `.` silences
    /// a family, e.g. `check.`). Absent: every rule of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub until_resolved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

fn default_incident_severity() -> Severity {
    Severity::High
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyBody {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    label: String,
    #[serde(default)]
    value: Option<String>,
}

/// Why a node may not post an event ([`NewEvent::from_node`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeEventError {
    #[error(
        "kind {0:?} cannot be posted by a node; a node posts note or incident about itself (operators post the other kinds, POST /api/events)"
    )]
    Kind(String),
    #[error(
        "event is about node {about} but signed by node {signer}; a node posts events about itself only"
    )]
    OtherNode { about: Uuid, signer: Uuid },
    #[error(
        "author {claimed:?} is not this node's; an event a node posts is authored by {author} (omit author)"
    )]
    OtherAuthor { claimed: String, author: String },
    #[error(
        "refs: {0} event id(s); an event a node posts refers to no other event (refs point operators' acks and resolutions at incidents)"
    )]
    Refs(usize),
    /// What the operator route refuses too.
    #[error(transparent)]
    Invalid(#[from] EventError),
}

impl NewEvent {
    /// The event as node `node` may post it about itself: a `note` or an `incident`, about
    /// `node` (absent `node_id`: `node`), authored [`node_author`] (absent `author`: that), and
    /// valid as [`NewEvent::validate`] says. Returns it with its `node_id` set, and its author.
    pub fn from_node(mut self, node: Uuid) -> Result<(NewEvent, String), NodeEventError> {
        if !AGENT_KINDS.contains(&self.kind.as_str()) {
            return Err(NodeEventError::Kind(self.kind.chars().take(32).collect()));
        }
        match self.node_id {
            Some(about) if about != node => {
                return Err(NodeEventError::OtherNode {
                    about,
                    signer: node,
                });
            }
            _ => self.node_id = Some(node),
        }
        if !self.refs.is_empty() {
            return Err(NodeEventError::Refs(self.refs.len()));
        }
        let author = node_author(&node);
        if let Some(claimed) = self.author.take()
            && claimed != author
        {
            return Err(NodeEventError::OtherAuthor {
                claimed: claimed.chars().take(limits::AUTHOR).collect(),
                author,
            });
        }
        // The operator route's checks, with no author: the node's is never read from the body.
        self.validate()?;
        Ok((self, author))
    }

    /// Checks the kind, the body's shape and bounds, refs and author. Returns the author to use.
    pub fn validate(&self) -> Result<String, EventError> {
        if !OPERATOR_KINDS.contains(&self.kind.as_str()) {
            return Err(EventError::UnknownKind(
                self.kind.chars().take(32).collect(),
            ));
        }
        let size = serde_json::to_vec(&self.body)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > limits::BODY_BYTES {
            return Err(EventError::BodyTooLarge(size));
        }
        if self.refs.len() > limits::REFS {
            return Err(EventError::TooManyRefs(self.refs.len()));
        }
        let body_err = |reason: String| EventError::Body {
            kind: self.kind.clone(),
            reason,
        };
        let parse = |v: &serde_json::Value| v.clone();
        let text_ok = |field: &str,
                       t: &str,
                       max: usize,
                       required: bool|
         -> Result<(), EventError> {
            if required && t.trim().is_empty() {
                return Err(body_err(format!("{field} must not be empty")));
            }
            if t.len() > max {
                return Err(body_err(format!(
                    "{field} is {} bytes; the limit is {max}",
                    t.len()
                )));
            }
            // Free text may span lines; everything else is one line.
            let multi_line: &[char] = if field == "text" { &['\n', '\t'] } else { &[] };
            if let Some(c) = crate::text::first_deceptive(t, multi_line) {
                return Err(body_err(format!(
                    "{field} contains U+{:04X}: a control character, or a bidirectional or invisible one, that could make it read as something else",
                    u32::from(c)
                )));
            }
            Ok(())
        };
        match self.kind.as_str() {
            "note" => {
                let b: NoteBody = serde_json::from_value(parse(&self.body))
                    .map_err(|e| body_err(e.to_string()))?;
                text_ok("text", &b.text, limits::TEXT, true)?;
            }
            "incident" => {
                let b: IncidentBody = serde_json::from_value(parse(&self.body))
                    .map_err(|e| body_err(e.to_string()))?;
                text_ok("title", &b.title, limits::TITLE, true)?;
                text_ok("text", b.text.as_deref().unwrap_or(""), limits::TEXT, false)?;
            }
            "ack" | "resolve" => {
                let body = if self.body.is_null() {
                    serde_json::json!({})
                } else {
                    parse(&self.body)
                };
                let b: ReplyBody =
                    serde_json::from_value(body).map_err(|e| body_err(e.to_string()))?;
                text_ok("text", b.text.as_deref().unwrap_or(""), limits::TEXT, false)?;
                if self.refs.is_empty() {
                    return Err(EventError::MissingIncidentRef {
                        kind: self.kind.clone(),
                    });
                }
            }
            "tag" => {
                let b: TagBody = serde_json::from_value(parse(&self.body))
                    .map_err(|e| body_err(e.to_string()))?;
                text_ok("label", &b.label, limits::LABEL, true)?;
                if !b
                    .label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_:.".contains(&c))
                {
                    return Err(body_err("label may hold only A-Z a-z 0-9 - _ : .".into()));
                }
                text_ok(
                    "value",
                    b.value.as_deref().unwrap_or(""),
                    limits::TITLE,
                    false,
                )?;
            }
            "silence" => {
                let b: SilenceBody = serde_json::from_value(parse(&self.body))
                    .map_err(|e| body_err(e.to_string()))?;
                if b.until.is_none() && !b.until_resolved {
                    return Err(body_err(
                        "give `until` (a time) or `until_resolved: true`; silences do not last forever"
                            .into(),
                    ));
                }
                if let Some(r) = &b.rule {
                    text_ok("rule", r, limits::LABEL * 2, true)?;
                    if !r
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_:./@".contains(&c))
                    {
                        return Err(body_err(
                            "rule may hold only A-Z a-z 0-9 - _ : . / @".into(),
                        ));
                    }
                }
                text_ok("text", b.text.as_deref().unwrap_or(""), limits::TEXT, false)?;
            }
            _ => unreachable!("kind checked above"),
        }
        let author = self.author.clone().unwrap_or_else(|| "anonymous".into());
        if author.trim().is_empty()
            || author.len() > limits::AUTHOR
            || crate::text::first_deceptive(&author, &[]).is_some()
        {
            return Err(EventError::BadAuthor);
        }
        if is_node_author(&author) {
            return Err(EventError::ReservedAuthor(author));
        }
        Ok(author)
    }

    /// The incident body, for an `incident` event that passed [`NewEvent::validate`].
    pub fn incident(&self) -> Option<IncidentBody> {
        (self.kind == "incident")
            .then(|| serde_json::from_value(self.body.clone()).ok())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: the typed `attention` body is the JSON the engine used to build by hand, and
    /// reads back as itself; bodies are read by their kind, once.
    #[test]
    fn bodies_read_by_kind_and_attention_is_what_it_was() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let reasons = vec![Reason {
            rule: "stale".into(),
            level: AttentionLevel::Crit,
            label: "Stale 5m".into(),
            message: "no heartbeat for 5m".into(),
            suppressed_by: None,
        }];
        for since in [None, Some(at)] {
            let a = Attention {
                level: AttentionLevel::Crit,
                reasons: reasons.clone(),
                since,
            };
            let body = AttentionBody::new(&a, AttentionLevel::Ok);
            let value = serde_json::to_value(&body).unwrap();
            let by_hand = serde_json::json!({"level": a.level, "previous": AttentionLevel::Ok,
                "since": a.since, "reasons": a.reasons});
            assert_eq!(value.to_string(), by_hand.to_string());
            assert_eq!(
                Body::read("attention", &value),
                Body::Attention(body.clone())
            );
            assert_eq!(body.attention(), a);
        }
        let incident = Body::read("incident", &serde_json::json!({"title": "disk full"}));
        let Body::Incident(b) = incident else {
            panic!("an incident body: {incident:?}")
        };
        assert_eq!(b.severity, Severity::High, "the documented default");
        assert_eq!(
            Body::read("resolve", &serde_json::Value::Null),
            Body::Resolve { text: None }
        );
        assert_eq!(
            Body::read("resolve", &serde_json::json!({"text": "done"})),
            Body::Resolve {
                text: Some("done".into())
            }
        );
        assert_eq!(Body::read("attention", &serde_json::json!([])), Body::Other);
        assert_eq!(
            Body::read("tag", &serde_json::json!({"label": "x"})),
            Body::Other
        );
    }

    #[test]
    fn high_and_critical_incidents_are_crit_the_others_attn() {
        use Severity::*;
        for (severity, level) in [
            (Info, AttentionLevel::Attn),
            (Low, AttentionLevel::Attn),
            (Medium, AttentionLevel::Attn),
            (High, AttentionLevel::Crit),
            (Critical, AttentionLevel::Crit),
        ] {
            assert_eq!(incident_level(severity), level, "{severity}");
        }
    }

    fn envelope() -> EventEnvelope {
        EventEnvelope {
            id: Uuid::parse_str("0193a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b").unwrap(),
            kind: "note".into(),
            ts: DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            node_id: Some(Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap()),
            author: "ops@example.com".into(),
            body: serde_json::json!({"text": "rebooted after kernel update"}),
            refs: vec![],
            hash: String::new(),
        }
    }

    #[test]
    fn the_hash_covers_the_jcs_form_without_hash() {
        let e = envelope().sealed();
        let mut v = serde_json::to_value(&e).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        let jcs = String::from_utf8(canonical::to_jcs(&v).unwrap()).unwrap();
        assert_eq!(
            jcs,
            r#"{"author":"ops@example.com","body":{"text":"rebooted after kernel update"},"id":"0193a5b2-7c3e-7d4f-8a1b-2c3d4e5f6a7b","kind":"note","node_id":"550e8400-e29b-41d4-a716-446655440000","refs":[],"ts":"2026-11-29T10:00:00Z"}"#
        );
        assert_eq!(e.hash, canonical::sha256_hex(jcs.as_bytes()));
        assert!(e.verify());
        let mut tampered = e.clone();
        tampered.body = serde_json::json!({"text": "nothing happened"});
        assert!(!tampered.verify());
        // A round trip through JSON keeps the hash valid.
        let back: EventEnvelope =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert!(back.verify());
    }

    fn new(kind: &str, body: serde_json::Value, refs: usize) -> NewEvent {
        NewEvent {
            kind: kind.into(),
            node_id: None,
            author: None,
            body,
            refs: (0..refs).map(|i| Uuid::from_u128(i as u128)).collect(),
        }
    }

    #[test]
    fn bodies_are_validated_per_kind() {
        use serde_json::json;
        let ok = [
            new("note", json!({"text": "hi"}), 0),
            new(
                "incident",
                json!({"title": "disk full", "severity": "critical"}),
                0,
            ),
            new("incident", json!({"title": "disk full"}), 0),
            new("ack", json!({"text": "on it"}), 1),
            new("ack", serde_json::Value::Null, 1),
            new("resolve", json!({}), 1),
            new(
                "tag",
                json!({"label": "maintenance", "value": "until 12:00"}),
                0,
            ),
        ];
        for e in ok {
            assert_eq!(e.validate(), Ok("anonymous".into()), "{e:?}");
        }
        let bad = [
            (new("notes", json!({}), 0), "kind \"notes\" is not one of"),
            (
                new("note", json!({}), 0),
                "invalid note body: missing field `text`",
            ),
            (
                new("note", json!({"text": "  "}), 0),
                "text must not be empty",
            ),
            (
                new("note", json!({"text": "x", "extra": 1}), 0),
                "unknown field `extra`",
            ),
            (
                new("note", json!({"text": "x".repeat(9000)}), 0),
                "text is 9000 bytes",
            ),
            (
                new("incident", json!({"title": "x", "severity": "dire"}), 0),
                "unknown variant `dire`",
            ),
            (
                new("ack", json!({}), 0),
                "ack needs refs naming the incident",
            ),
            (
                new("tag", json!({"label": ""}), 0),
                "label must not be empty",
            ),
            (
                new("tag", json!({"label": "a b"}), 0),
                "label may hold only",
            ),
            (
                new("note", json!({"text": "x".repeat(17_000)}), 0),
                "body is 17011 bytes",
            ),
            (new("note", json!({"text": "x"}), 17), "17 refs"),
        ];
        for (e, want) in bad {
            let err = e.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let mut e = new("note", json!({"text": "x"}), 0);
        e.author = Some("a\nb".into());
        assert_eq!(e.validate(), Err(EventError::BadAuthor));
    }

    /// Issue 26: `node:<id>` is the agents' namespace; no operator body may claim it.
    #[test]
    fn an_operator_cannot_write_a_node_author() {
        let node = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
        assert_eq!(
            node_author(&node),
            "node:550e8400-e29b-41d4-a716-446655440000"
        );
        for claimed in [
            node_author(&node),
            "NODE:550e8400-e29b-41d4-a716-446655440000".into(),
            " node:x".into(),
            "node:".into(),
        ] {
            let mut e = new("note", serde_json::json!({"text": "x"}), 0);
            e.author = Some(claimed.clone());
            assert_eq!(
                e.validate(),
                Err(EventError::ReservedAuthor(claimed.clone())),
                "{claimed:?}"
            );
        }
        for fine in ["nodes:x", "ops@example.com", "node", "my node:x"] {
            assert!(!is_node_author(fine), "{fine}");
        }
    }

    #[test]
    fn a_nodes_event_refers_to_no_other_event() {
        let node = Uuid::parse_str("550e8400-e29b-41d4-a716-446655440000").unwrap();
        let e = new("note", serde_json::json!({"text": "x"}), 1);
        assert_eq!(e.from_node(node).unwrap_err(), NodeEventError::Refs(1));
        let e = new("note", serde_json::json!({"text": "x"}), 0);
        assert!(e.from_node(node).is_ok());
    }
}
