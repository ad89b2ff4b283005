//! What the console's requests carry, typed and checked here: the queries of the page and its
//! fragments, a node id in a path, a history range, and the body of `POST /console/events`.
//! Checks return [`FormError`]; only [`super::handlers`] (and the API's history handler, for
//! the range) turns one into an HTTP status.

use serde::Deserialize;
use uuid::Uuid;
use vaultmesh_proto::NewEvent;
use vaultmesh_proto::event::EventError;
use vaultmesh_proto::history::Range;

/// Why a console request's input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// A node id (or an incident's id in `refs`) that is not a UUID.
    #[error("{shown:?} is not a node id (UUID): {reason}")]
    NotAnId { shown: String, reason: String },
    /// A form `kind` the console does not post.
    #[error("the console posts note, incident, ack or resolve, not {0:?}")]
    UnknownKind(String),
    /// The event the form makes is malformed (an empty note, a bad severity, ...).
    #[error(transparent)]
    Event(#[from] EventError),
    /// A history range that is none of [`Range::ALL`] (quoted, first 32 characters).
    #[error("range={shown:?} is not a range{hint}; ranges are {known}")]
    UnknownRange {
        shown: String,
        hint: String,
        known: String,
    },
}

/// A history range by its name (`1h`, `24h`, `7d`, `30d`, `1y`); a typo is refused with the
/// near name.
pub fn range(text: &str) -> Result<Range, FormError> {
    Range::from_name(text).ok_or_else(|| {
        let names = Range::ALL.map(Range::name);
        FormError::UnknownRange {
            shown: text.chars().take(32).collect(),
            hint: vaultmesh_process::suggest::did_you_mean(text, names),
            known: names.join(", "),
        }
    })
}

/// The range a query names, or the default: the last 24 hours (the console's and the history
/// API's).
pub fn range_or_default(text: Option<&str>) -> Result<Range, FormError> {
    text.map_or(Ok(Range::Day), range)
}

/// A node id from a path or a query, quoted (first 64 characters) in the error.
pub fn node_id(text: &str) -> Result<Uuid, FormError> {
    Uuid::parse_str(text).map_err(|e| FormError::NotAnId {
        shown: text.chars().take(64).collect(),
        reason: e.to_string(),
    })
}

/// The query of `GET /console`: the selected node, its charts' range and debug mode. A
/// parameter the console does not have is refused, not ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleQuery {
    node: Option<String>,
    range: Option<String>,
    debug: Option<String>,
}

impl ConsoleQuery {
    /// `?node=<id>`, if given.
    pub fn node(&self) -> Result<Option<Uuid>, FormError> {
        self.node.as_deref().map(node_id).transpose()
    }

    /// `?range=`, `24h` when not given.
    pub fn range(&self) -> Result<Range, FormError> {
        range_or_default(self.range.as_deref())
    }

    /// `?debug=1` or `?debug=true`: the script logs every event.
    pub fn debug(&self) -> bool {
        self.debug
            .as_deref()
            .is_some_and(|d| d == "1" || d == "true")
    }
}

/// The query of `GET /console/nodes` and `GET /console/nodes/{id}/row`: the selected node.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    selected: Option<String>,
}

impl ListQuery {
    /// `?selected=<id>`, if given.
    pub fn selected(&self) -> Result<Option<Uuid>, FormError> {
        self.selected.as_deref().map(node_id).transpose()
    }
}

/// The query of `GET /console/nodes/{id}`: its charts' range.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeQuery {
    range: Option<String>,
}

impl NodeQuery {
    /// `?range=`, `24h` when not given.
    pub fn range(&self) -> Result<Range, FormError> {
        range_or_default(self.range.as_deref())
    }
}

/// What a console form posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    Note,
    Incident,
    Ack,
    Resolve,
}

impl FormKind {
    /// The `kind` field's value (and the event's kind).
    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Note => "note",
            FormKind::Incident => "incident",
            FormKind::Ack => "ack",
            FormKind::Resolve => "resolve",
        }
    }

    fn parse(kind: &str) -> Result<FormKind, FormError> {
        [
            FormKind::Note,
            FormKind::Incident,
            FormKind::Ack,
            FormKind::Resolve,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| FormError::UnknownKind(kind.chars().take(32).collect()))
    }
}

/// The body of `POST /console/events`: one of note, incident, ack, resolve. A field the
/// console's forms do not have is refused, not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleForm {
    pub kind: String,
    pub node_id: Option<String>,
    pub text: Option<String>,
    pub title: Option<String>,
    pub severity: Option<String>,
    pub refs: Option<String>,
}

impl ConsoleForm {
    /// The event this form posts, checked as `POST /api/events` checks one, and its author.
    /// Empty `node_id` and `refs` mean none (a browser sends empty fields).
    pub fn into_event(self, author: String) -> Result<(NewEvent, String), FormError> {
        let present = |v: Option<String>| v.filter(|s| !s.is_empty());
        let node = present(self.node_id).as_deref().map(node_id).transpose()?;
        let refs: Vec<Uuid> = present(self.refs)
            .as_deref()
            .map(node_id)
            .transpose()?
            .into_iter()
            .collect();
        let kind = FormKind::parse(&self.kind)?;
        let body = match kind {
            FormKind::Note => serde_json::json!({"text": self.text.unwrap_or_default()}),
            FormKind::Incident => serde_json::json!({
                "title": self.title.unwrap_or_default(),
                "severity": self.severity.unwrap_or_else(|| "high".into()),
            }),
            FormKind::Ack | FormKind::Resolve => match present(self.text) {
                Some(t) => serde_json::json!({"text": t}),
                None => serde_json::Value::Null,
            },
        };
        let event = NewEvent {
            kind: kind.as_str().to_string(),
            node_id: node,
            author: Some(author),
            body,
            refs,
        };
        let author = event.validate()?;
        Ok((event, author))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly by design

    use super::*;

    const A: &str = "a1000000-0000-4000-8000-00000000000a";

    /// Decodes a body as `axum::Form` does, then makes its event.
    fn post(body: &str) -> Result<(NewEvent, String), FormError> {
        serde_urlencoded::from_str::<ConsoleForm>(body)
            .unwrap()
            .into_event("ops".into())
    }

    #[test]
    fn a_field_no_console_form_has_is_refused_by_name() {
        for (body, field) in [("kind=tag&label=x", "label"), ("kind=note&txt=x", "txt")] {
            let e = serde_urlencoded::from_str::<ConsoleForm>(body).unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown field `{field}`")),
                "{e}"
            );
        }
        let e = serde_urlencoded::from_str::<ConsoleForm>("text=x").unwrap_err();
        assert!(e.to_string().contains("missing field `kind`"), "{e}");
    }

    #[test]
    fn each_kind_makes_its_event_and_empty_ids_mean_none() {
        let (e, author) = post(&format!("kind=note&node_id={A}&text=rebooted&refs=")).unwrap();
        assert_eq!(author, "ops");
        assert_eq!(
            (e.kind.as_str(), e.node_id.unwrap().to_string()),
            ("note", A.into())
        );
        assert_eq!(e.body, serde_json::json!({"text": "rebooted"}));
        assert!(e.refs.is_empty());

        let (e, _) = post("kind=incident&node_id=&title=disk").unwrap();
        assert_eq!(e.node_id, None);
        assert_eq!(
            e.body,
            serde_json::json!({"title": "disk", "severity": "high"})
        );

        let (e, _) = post(&format!("kind=ack&refs={A}&text=")).unwrap();
        assert_eq!(e.body, serde_json::Value::Null, "an empty text is no text");
        assert_eq!(e.refs[0].to_string(), A);
        let (e, _) = post(&format!("kind=resolve&refs={A}&text=fixed")).unwrap();
        assert_eq!(e.body, serde_json::json!({"text": "fixed"}));
    }

    #[test]
    fn a_bad_id_an_unknown_kind_and_a_bad_event_are_each_their_own_error() {
        let not_an_id = |e: FormError, shown: &str| match e {
            FormError::NotAnId { shown: s, .. } => assert_eq!(s, shown),
            other => panic!("{other:?}"),
        };
        not_an_id(post("kind=note&node_id=nope&text=x").unwrap_err(), "nope");
        not_an_id(post("kind=ack&refs=zz").unwrap_err(), "zz");
        // The ids are read before the kind, as before the split.
        not_an_id(post("kind=shout&node_id=nope").unwrap_err(), "nope");
        assert_eq!(
            post("kind=shout&text=x").unwrap_err().to_string(),
            "the console posts note, incident, ack or resolve, not \"shout\""
        );
        let long = post(&format!("kind={}", "k".repeat(100))).unwrap_err();
        assert_eq!(
            long,
            FormError::UnknownKind("k".repeat(32)),
            "quoted, not echoed whole"
        );
        // The event's own checks, as `POST /api/events` makes them.
        assert!(matches!(
            post("kind=note&text=").unwrap_err(),
            FormError::Event(EventError::Body { .. })
        ));
        assert!(matches!(
            post("kind=incident&title=t&severity=bogus").unwrap_err(),
            FormError::Event(EventError::Body { .. })
        ));
        assert!(matches!(
            post("kind=ack").unwrap_err(),
            FormError::Event(EventError::MissingIncidentRef { .. })
        ));
        let e = node_id(&"x".repeat(100)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{:?} is not a node id (UUID): ", "x".repeat(64)))
        );
    }

    #[test]
    fn a_range_is_one_of_five_names_and_a_typo_gets_the_near_one() {
        for r in Range::ALL {
            assert_eq!(range(r.name()), Ok(r));
        }
        assert_eq!(range_or_default(None), Ok(Range::Day));
        for (text, want) in [
            (
                "30D",
                "range=\"30D\" is not a range; did you mean \"30d\"?; ranges are 1h, 24h, 7d, 30d, 1y",
            ),
            (
                "24hr",
                "range=\"24hr\" is not a range; did you mean \"24h\"?; ranges are 1h, 24h, 7d, 30d, 1y",
            ),
            (
                "forever",
                "range=\"forever\" is not a range; ranges are 1h, 24h, 7d, 30d, 1y",
            ),
        ] {
            assert_eq!(range(text).unwrap_err().to_string(), want);
        }
        let long = range(&"y".repeat(100)).unwrap_err();
        assert!(
            long.to_string()
                .starts_with(&format!("range={:?} ", "y".repeat(32))),
            "quoted, not echoed whole: {long}"
        );
        let q: ConsoleQuery = serde_urlencoded::from_str(&format!("node={A}&range=7d")).unwrap();
        assert_eq!(q.range(), Ok(Range::Week));
        let q: NodeQuery = serde_urlencoded::from_str("range=1y").unwrap();
        assert_eq!(q.range(), Ok(Range::Year));
        let q: NodeQuery = serde_urlencoded::from_str("range=1d").unwrap();
        assert!(matches!(q.range(), Err(FormError::UnknownRange { .. })));
        // A parameter the console does not have is refused by name, not ignored.
        for query in ["rnage=7d", "node=x&ragne=1h"] {
            let e = serde_urlencoded::from_str::<ConsoleQuery>(query).unwrap_err();
            assert!(e.to_string().contains("unknown field"), "{e}");
        }
        let e = serde_urlencoded::from_str::<NodeQuery>("selected=x").unwrap_err();
        assert!(e.to_string().contains("unknown field `selected`"), "{e}");
    }

    #[test]
    fn queries_name_their_node_and_debug_is_one_or_true() {
        let q: ConsoleQuery = serde_urlencoded::from_str(&format!("node={A}&debug=1")).unwrap();
        assert_eq!(q.node().unwrap().unwrap().to_string(), A);
        assert!(q.debug());
        for (query, debug) in [("debug=true", true), ("debug=yes", false), ("", false)] {
            let q: ConsoleQuery = serde_urlencoded::from_str(query).unwrap();
            assert_eq!(q.debug(), debug, "{query}");
            assert_eq!(q.node(), Ok(None));
        }
        let q: ListQuery = serde_urlencoded::from_str("selected=").unwrap();
        assert!(
            matches!(q.selected(), Err(FormError::NotAnId { .. })),
            "an empty id is refused"
        );
        let q: ListQuery = serde_urlencoded::from_str("").unwrap();
        assert_eq!(q.selected(), Ok(None));
    }
}
