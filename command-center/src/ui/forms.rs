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
    #[error("the console posts note, incident, ack, resolve or silence, not {0:?}")]
    UnknownKind(String),
    /// A field the command form does not have (quoted, first 64 characters).
    #[error("unknown field {0:?}: the command form posts node_id, action and arg.<name>")]
    UnknownField(String),
    /// A required field of the command form that is missing or empty.
    #[error("{0} is required")]
    Missing(String),
    /// The decommission form without its "I understand" box ticked (`confirm=yes`).
    #[error(
        "tick \"I understand\" (confirm=yes) to decommission: the node's key is refused and it leaves the fleet's views"
    )]
    NotConfirmed,
    /// An action no agent has (quoted, first 64 characters, with the near name).
    #[error("no action {shown:?}{hint}; actions: {known}")]
    UnknownAction {
        shown: String,
        hint: String,
        known: String,
    },
    /// An argument the action does not take.
    #[error("{action} takes {takes}, not {arg:?}")]
    NotAnArgument {
        action: String,
        arg: String,
        takes: String,
    },
    /// A silence's `duration` that is neither a duration up to [`SILENCE_MAX_DAYS`] days nor
    /// `resolved` (quoted, first 32 characters).
    #[error(
        "duration={shown:?}: {reason}; give a duration such as 1h or 7d (at most {SILENCE_MAX_DAYS}d), or \"resolved\""
    )]
    BadDuration { shown: String, reason: String },
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
    /// A `group` that is none of the node list's groupings (quoted, first 48 characters), or a
    /// label key no node has.
    #[error("group={shown:?} {reason}{hint}; groups are {known}")]
    UnknownGroup {
        shown: String,
        reason: &'static str,
        hint: String,
        known: String,
    },
}

/// The longest silence the console sets, in days: longer ones are planned maintenance for the
/// API, with a written `until`.
pub const SILENCE_MAX_DAYS: u64 = 90;

/// The durations the console's silence forms offer, then "until resolved".
pub const SILENCE_CHOICES: [(&str, &str); 5] = [
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("resolved", "until resolved"),
];

/// How long a console silence lasts: a duration, or until its reasons clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceFor {
    Duration(std::time::Duration),
    UntilResolved,
}

/// A silence's `duration` field: `resolved`, or a duration of at most [`SILENCE_MAX_DAYS`].
pub fn silence_for(text: &str) -> Result<SilenceFor, FormError> {
    if text == "resolved" {
        return Ok(SilenceFor::UntilResolved);
    }
    let bad = |reason: String| FormError::BadDuration {
        shown: text.chars().take(32).collect(),
        reason,
    };
    let d = vaultmesh_process::duration::parse_nonzero(text).map_err(bad)?;
    if d > std::time::Duration::from_secs(SILENCE_MAX_DAYS * 86_400) {
        return Err(bad("longer than the console sets".into()));
    }
    Ok(SilenceFor::Duration(d))
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

/// How the console's node list is grouped (`?group=`): not at all (`none`, the default), by
/// profile (`profile`), or by the value of one label (`label:<key>`), nodes without it last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Grouping {
    #[default]
    None,
    Profile,
    Label(String),
}

impl Grouping {
    /// The `group` value that names it: `none`, `profile`, `label:<key>`.
    pub fn name(&self) -> String {
        match self {
            Grouping::None => "none".into(),
            Grouping::Profile => "profile".into(),
            Grouping::Label(k) => format!("label:{k}"),
        }
    }

    /// The group `n` is in: its profile, or its value of the label (none: the last group).
    pub fn value_of<'a>(&self, n: &'a vaultmesh_proto::NodeSummary) -> Option<&'a str> {
        match self {
            Grouping::None => None,
            Grouping::Profile => Some(&n.os_profile),
            Grouping::Label(k) => n.labels.get(k).map(String::as_str),
        }
    }

    /// What the console calls the group of the nodes without the label: `(no site)`.
    pub fn none_name(&self) -> String {
        match self {
            Grouping::Label(k) => format!("(no {k})"),
            _ => "(none)".into(),
        }
    }
}

/// The `group` values the console offers for a fleet whose labels have `keys`.
pub fn groupings(keys: &[String]) -> Vec<Grouping> {
    let mut all = vec![Grouping::None, Grouping::Profile];
    all.extend(keys.iter().cloned().map(Grouping::Label));
    all
}

/// A grouping the fleet offers: one of [`groupings`] of the fleet's label `keys`; otherwise
/// why not, with the near name (a label key no node has included, so that the page can say a
/// typo is a typo: [`group_notice`]).
pub fn grouping_in(text: &str, keys: &[String]) -> Result<Grouping, FormError> {
    let known = groupings(keys);
    if let Some(g) = known.iter().find(|g| g.name() == text) {
        return Ok(g.clone());
    }
    let names: Vec<String> = known.iter().map(Grouping::name).collect();
    let well_formed = text
        .strip_prefix("label:")
        .is_some_and(|k| vaultmesh_proto::labels::check_key(k).is_ok());
    // A bare label key (`site`) means its label; a label's key is compared with the keys only
    // (their common `label:` would make every key look near).
    let label = |k: &str| format!("; did you mean \"label:{k}\"?");
    let hint = if keys.iter().any(|k| k == text) {
        label(text)
    } else if let Some(k) = text.strip_prefix("label:") {
        vaultmesh_process::suggest::nearest(k, keys.iter().map(String::as_str))
            .map_or_else(String::new, label)
    } else {
        vaultmesh_process::suggest::did_you_mean(text, names.iter().map(String::as_str))
    };
    Err(FormError::UnknownGroup {
        shown: text.chars().take(48).collect(),
        reason: if well_formed {
            "names a label no node has"
        } else {
            "is not a grouping"
        },
        hint,
        known: names.join(", "),
    })
}

/// What the console page says about a grouping by a label no node of the fleet (`keys`) has:
/// that every node is in "(no <key>)", with the near key when there is one (a typo).
pub fn group_notice(group: &Grouping, keys: &[String]) -> Option<String> {
    match group {
        Grouping::Label(k) if !keys.contains(k) => grouping_in(&group.name(), keys)
            .err()
            .map(|e| format!("{e}: every node is in \"{}\".", group.none_name())),
        _ => None,
    }
}

/// `?group=` of the console page and of the node list's fragments: the script asks for the grouping its page was
/// rendered with, which stays valid when the fleet's last node with the label goes (then every
/// node is in the "(no key)" group), so any well-formed label key is taken.
pub fn grouping(text: &str) -> Result<Grouping, FormError> {
    match text.strip_prefix("label:") {
        Some(k) if vaultmesh_proto::labels::check_key(k).is_ok() => Ok(Grouping::Label(k.into())),
        _ => grouping_in(text, &[]).map_err(|e| match e {
            FormError::UnknownGroup {
                shown,
                reason,
                hint,
                ..
            } => FormError::UnknownGroup {
                shown,
                reason,
                hint,
                known: "none, profile, label:<key>".into(),
            },
            other => other,
        }),
    }
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
    group: Option<String>,
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

    /// `?group=` ([`grouping`]): any well-formed label key is taken, as a bookmark or a reload
    /// may name a label the fleet's last node with it has since lost; the page then says so
    /// ([`group_notice`]). Not grouped when not given.
    /// Anything else is refused with the near one among the fleet's `keys` ([`grouping_in`]).
    pub fn group(&self, keys: &[String]) -> Result<Grouping, FormError> {
        let Some(text) = self.group.as_deref() else {
            return Ok(Grouping::None);
        };
        grouping_in(text, keys).or_else(|refused| match grouping(text) {
            Ok(label @ Grouping::Label(_)) => Ok(label),
            _ => Err(refused),
        })
    }

    /// `?debug=1` or `?debug=true`: the script logs every event.
    pub fn debug(&self) -> bool {
        self.debug
            .as_deref()
            .is_some_and(|d| d == "1" || d == "true")
    }
}

/// The query of `GET /console/nodes` and `GET /console/nodes/{id}/row`: the selected node
/// and the list's grouping.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    selected: Option<String>,
    group: Option<String>,
}

impl ListQuery {
    /// `?selected=<id>`, if given.
    pub fn selected(&self) -> Result<Option<Uuid>, FormError> {
        self.selected.as_deref().map(node_id).transpose()
    }

    /// `?group=` ([`grouping`]); not grouped when not given.
    pub fn group(&self) -> Result<Grouping, FormError> {
        self.group.as_deref().map_or(Ok(Grouping::None), grouping)
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
    Silence,
}

impl FormKind {
    /// The `kind` field's value (and the event's kind).
    pub fn as_str(self) -> &'static str {
        match self {
            FormKind::Note => "note",
            FormKind::Incident => "incident",
            FormKind::Ack => "ack",
            FormKind::Resolve => "resolve",
            FormKind::Silence => "silence",
        }
    }

    fn parse(kind: &str) -> Result<FormKind, FormError> {
        [
            FormKind::Note,
            FormKind::Incident,
            FormKind::Ack,
            FormKind::Resolve,
            FormKind::Silence,
        ]
        .into_iter()
        .find(|k| k.as_str() == kind)
        .ok_or_else(|| FormError::UnknownKind(kind.chars().take(32).collect()))
    }
}

/// The body of `POST /console/events`: one of note, incident, ack, resolve, silence. A field
/// the console's forms do not have is refused, not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleForm {
    pub kind: String,
    pub node_id: Option<String>,
    pub text: Option<String>,
    pub title: Option<String>,
    pub severity: Option<String>,
    pub refs: Option<String>,
    /// A silence's rule (empty: every rule of the node).
    pub rule: Option<String>,
    /// A silence's length: a duration, or `resolved` ([`silence_for`]).
    pub duration: Option<String>,
}

impl ConsoleForm {
    /// The event this form posts, checked as `POST /api/events` checks one, and its author;
    /// a silence for a duration ends at `now` plus it. Empty `node_id`, `refs` and `rule` mean
    /// none (a browser sends empty fields).
    pub fn into_event(
        self,
        author: String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(NewEvent, String), FormError> {
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
            FormKind::Silence => {
                let mut body = serde_json::Map::new();
                if let Some(rule) = present(self.rule) {
                    body.insert("rule".into(), rule.into());
                }
                match silence_for(self.duration.as_deref().unwrap_or(""))? {
                    SilenceFor::UntilResolved => {
                        body.insert("until_resolved".into(), true.into());
                    }
                    SilenceFor::Duration(d) => {
                        let until = now + chrono::Duration::from_std(d).unwrap_or_default();
                        let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                        body.insert("until".into(), until.into());
                    }
                }
                if let Some(t) = present(self.text) {
                    body.insert("text".into(), t.into());
                }
                serde_json::Value::Object(body)
            }
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

/// The node panel's decommission form (`POST /console/nodes/{id}/decommission`): a reason
/// (optional) and the "I understand" box, which must say `yes`. A field the form does not
/// have is refused, not ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecommissionForm {
    pub reason: Option<String>,
    pub confirm: Option<String>,
}

impl DecommissionForm {
    /// The reason (none when empty), once the box is ticked.
    pub fn confirmed_reason(self) -> Result<Option<String>, FormError> {
        if self.confirm.as_deref() != Some("yes") {
            return Err(FormError::NotConfirmed);
        }
        Ok(self.reason.filter(|r| !r.trim().is_empty()))
    }
}

/// The node panel's rename form (`POST /console/nodes/{id}/rename`): the display name (empty
/// clears it). A field the form does not have is refused, not ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameForm {
    #[serde(default)]
    pub display_name: String,
}

/// The console's command form (`POST /console/commands`): the node, the action and one
/// `arg.<name>` field per argument the action takes ([`vaultmesh_proto::command::ACTION_ARGS`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CommandForm {
    pub node_id: Uuid,
    pub action: String,
    /// The arguments, as a JSON object of strings.
    pub args: serde_json::Value,
}

impl CommandForm {
    /// Reads the posted fields: a field the form does not have, an action no agent has, an
    /// argument the action does not take or an empty required one is refused by name. Whether
    /// the node's policy allows it is the issuing's business, not the form's.
    pub fn parse(fields: Vec<(String, String)>) -> Result<CommandForm, FormError> {
        let (mut node, mut action) = (None, None);
        let mut args = serde_json::Map::new();
        for (name, value) in fields {
            match name.as_str() {
                "node_id" => node = Some(node_id(&value)?),
                "action" => action = Some(value),
                _ => match name.strip_prefix("arg.") {
                    Some(arg) if !arg.is_empty() => {
                        args.insert(arg.to_string(), value.into());
                    }
                    _ => return Err(FormError::UnknownField(name.chars().take(64).collect())),
                },
            }
        }
        let node_id = node.ok_or_else(|| FormError::Missing("node_id".into()))?;
        let action = action
            .filter(|a| !a.is_empty())
            .ok_or_else(|| FormError::Missing("action".into()))?;
        let takes = vaultmesh_proto::command::action_args(&action).ok_or_else(|| {
            let known = vaultmesh_proto::command::ACTIONS;
            FormError::UnknownAction {
                shown: action.chars().take(64).collect(),
                hint: vaultmesh_process::suggest::did_you_mean(&action, known),
                known: known.join(", "),
            }
        })?;
        for name in args.keys() {
            if !takes.contains(&name.as_str()) {
                return Err(FormError::NotAnArgument {
                    action: action.clone(),
                    arg: name.chars().take(64).collect(),
                    takes: if takes.is_empty() {
                        "no arguments".into()
                    } else {
                        takes.join(", ")
                    },
                });
            }
        }
        for name in takes {
            if args
                .get(*name)
                .and_then(|v| v.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(FormError::Missing(format!("arg.{name}")));
            }
        }
        Ok(CommandForm {
            node_id,
            action,
            args: serde_json::Value::Object(args),
        })
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
            .into_event("ops".into(), at())
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
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
    fn a_silence_is_for_a_duration_from_now_or_until_resolved_and_names_its_rule() {
        let (e, _) = post(&format!(
            "kind=silence&node_id={A}&rule=tunnel&duration=4h&text="
        ))
        .unwrap();
        assert_eq!(e.kind, "silence");
        assert_eq!(
            e.body,
            serde_json::json!({"rule": "tunnel", "until": "2027-01-15T12:00:00Z"})
        );
        let (e, _) = post(&format!(
            "kind=silence&node_id={A}&rule=&duration=resolved&text=swap"
        ))
        .unwrap();
        assert_eq!(
            e.body,
            serde_json::json!({"until_resolved": true, "text": "swap"}),
            "an empty rule is every rule of the node"
        );
        for (duration, says) in [
            ("", "duration=\"\":"),
            (
                "forever",
                "duration=\"forever\": \"forever\" is not a duration",
            ),
            ("0s", "must be greater than zero"),
            ("91d", "longer than the console sets"),
        ] {
            let e = post(&format!("kind=silence&node_id={A}&duration={duration}")).unwrap_err();
            assert!(matches!(e, FormError::BadDuration { .. }), "{e:?}");
            assert!(e.to_string().contains(says), "{duration}: {e}");
        }
        // The event's own checks: a rule with a character no rule has.
        assert!(matches!(
            post(&format!("kind=silence&node_id={A}&rule=a%20b&duration=1h")).unwrap_err(),
            FormError::Event(EventError::Body { .. })
        ));
    }

    fn command(body: &str) -> Result<CommandForm, FormError> {
        CommandForm::parse(serde_urlencoded::from_str(body).unwrap())
    }

    #[test]
    fn a_command_form_names_its_node_action_and_the_actions_arguments_only() {
        let c = command(&format!(
            "node_id={A}&action=service.status&arg.unit=nginx.service"
        ))
        .unwrap();
        assert_eq!(c.node_id.to_string(), A);
        assert_eq!(c.action, "service.status");
        assert_eq!(c.args, serde_json::json!({"unit": "nginx.service"}));
        let c = command(&format!("node_id={A}&action=agent.ping")).unwrap();
        assert_eq!(c.args, serde_json::json!({}));
        for (body, says) in [
            (
                format!("node_id={A}&action=agent.ping&ttl=5"),
                "unknown field \"ttl\"",
            ),
            (
                format!("node_id={A}&action=agent.ping&arg.=x"),
                "unknown field \"arg.\"",
            ),
            ("action=agent.ping".to_string(), "node_id is required"),
            (format!("node_id={A}&action="), "action is required"),
            (
                format!("node_id={A}&action=service.stauts"),
                "no action \"service.stauts\"; did you mean \"service.status\"?; actions: agent.ping,",
            ),
            (
                format!("node_id={A}&action=agent.ping&arg.unit=x"),
                "agent.ping takes no arguments, not \"unit\"",
            ),
            (
                format!("node_id={A}&action=service.restart&arg.name=x"),
                "service.restart takes unit, not \"name\"",
            ),
            (
                format!("node_id={A}&action=checks.run&arg.name="),
                "arg.name is required",
            ),
            (
                "node_id=nope&action=agent.ping".to_string(),
                "\"nope\" is not a node id",
            ),
        ] {
            let e = command(&body).unwrap_err();
            assert!(e.to_string().contains(says), "{body}: {e}");
        }
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
            "the console posts note, incident, ack, resolve or silence, not \"shout\""
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

    #[test]
    fn the_rename_form_reads_its_one_field_and_refuses_others() {
        let f: RenameForm = serde_urlencoded::from_str("display_name=Frankfurt+edge+1").unwrap();
        assert_eq!(f.display_name, "Frankfurt edge 1");
        let f: RenameForm = serde_urlencoded::from_str("display_name=").unwrap();
        assert_eq!(f.display_name, "", "an empty name: cleared");
        let f: RenameForm = serde_urlencoded::from_str("").unwrap();
        assert_eq!(f.display_name, "", "no field: cleared too");
        let e = serde_urlencoded::from_str::<RenameForm>("display_name=x&name=y").unwrap_err();
        assert!(e.to_string().contains("display_name"), "{e}");
    }

    #[test]
    fn a_decommission_needs_its_box_ticked_and_an_empty_reason_is_none() {
        let form = |reason: &str, confirm: Option<&str>| DecommissionForm {
            reason: Some(reason.into()),
            confirm: confirm.map(str::to_string),
        };
        assert_eq!(
            form("old", None).confirmed_reason(),
            Err(FormError::NotConfirmed)
        );
        assert_eq!(
            form("old", Some("on")).confirmed_reason(),
            Err(FormError::NotConfirmed)
        );
        assert_eq!(
            form("old rack", Some("yes")).confirmed_reason(),
            Ok(Some("old rack".into()))
        );
        assert_eq!(form("  ", Some("yes")).confirmed_reason(), Ok(None));
    }

    #[test]
    fn a_group_is_none_profile_or_a_label_the_fleet_has_and_a_typo_gets_the_near_one() {
        let keys = ["role".to_string(), "site".to_string()];
        for (text, want) in [
            ("none", Grouping::None),
            ("profile", Grouping::Profile),
            ("label:site", Grouping::Label("site".into())),
        ] {
            assert_eq!(grouping_in(text, &keys), Ok(want.clone()));
            assert_eq!(grouping_in(&want.name(), &keys), Ok(want));
        }
        let known = "none, profile, label:role, label:site";
        for (text, want) in [
            (
                "lable:site",
                format!(
                    "group=\"lable:site\" is not a grouping; did you mean \"label:site\"?; groups are {known}"
                ),
            ),
            (
                "site",
                format!(
                    "group=\"site\" is not a grouping; did you mean \"label:site\"?; groups are {known}"
                ),
            ),
            (
                "Profile",
                format!(
                    "group=\"Profile\" is not a grouping; did you mean \"profile\"?; groups are {known}"
                ),
            ),
            (
                "zone",
                format!("group=\"zone\" is not a grouping; groups are {known}"),
            ),
            (
                "label:zone",
                format!("group=\"label:zone\" names a label no node has; groups are {known}"),
            ),
            (
                "label:stie",
                format!(
                    "group=\"label:stie\" names a label no node has; did you mean \"label:site\"?; groups are {known}"
                ),
            ),
            (
                "",
                format!("group=\"\" is not a grouping; groups are {known}"),
            ),
        ] {
            assert_eq!(grouping_in(text, &keys).unwrap_err().to_string(), want);
        }
        let long = grouping_in(&"g".repeat(100), &keys).unwrap_err();
        assert!(
            long.to_string()
                .starts_with(&format!("group={:?} ", "g".repeat(48))),
            "quoted, not echoed whole: {long}"
        );
        // The page and the fragments take any well-formed key (a bookmark, or the script's
        // page, may name one the fleet has since lost); the page says so, with the near key.
        let q: ConsoleQuery = serde_urlencoded::from_str("group=label%3Asite").unwrap();
        assert_eq!(q.group(&keys), Ok(Grouping::Label("site".into())));
        assert_eq!(q.group(&[]), Ok(Grouping::Label("site".into())));
        assert_eq!(group_notice(&Grouping::Label("site".into()), &keys), None);
        assert_eq!(
            group_notice(&Grouping::Label("stie".into()), &keys).as_deref(),
            Some(
                "group=\"label:stie\" names a label no node has; did you mean \"label:site\"?; groups are none, profile, label:role, label:site: every node is in \"(no stie)\"."
            )
        );
        assert_eq!(group_notice(&Grouping::Profile, &[]), None);
        let q: ConsoleQuery = serde_urlencoded::from_str("group=lable%3Asite").unwrap();
        assert_eq!(
            q.group(&keys).unwrap_err().to_string(),
            "group=\"lable:site\" is not a grouping; did you mean \"label:site\"?; groups are none, profile, label:role, label:site"
        );
        let q: ConsoleQuery = serde_urlencoded::from_str("node=x").unwrap();
        assert_eq!(q.group(&keys), Ok(Grouping::None));
        let q: ListQuery = serde_urlencoded::from_str("group=label:zone").unwrap();
        assert_eq!(q.group(), Ok(Grouping::Label("zone".into())));
        let q: ListQuery = serde_urlencoded::from_str("selected=x").unwrap();
        assert_eq!(q.group(), Ok(Grouping::None));
        for (text, says) in [
            (
                "label:Site",
                "group=\"label:Site\" is not a grouping; groups are none, profile, label:<key>",
            ),
            (
                "lable:site",
                "group=\"lable:site\" is not a grouping; groups are none, profile, label:<key>",
            ),
            (
                "Profile",
                "group=\"Profile\" is not a grouping; did you mean \"profile\"?; groups are none, profile, label:<key>",
            ),
        ] {
            assert_eq!(grouping(text).unwrap_err().to_string(), says);
        }
        assert_eq!(grouping("profile"), Ok(Grouping::Profile));
        assert_eq!(Grouping::Label("site".into()).none_name(), "(no site)");
    }
}
