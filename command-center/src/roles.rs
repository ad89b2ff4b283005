//! Who may do what: the three roles, the permissions they grant, which permission each route
//! needs, and the roles file that maps signed-in identities (Cloudflare Access, OpenID Connect)
//! to roles.
//!
//! - `viewer` reads everything and posts nothing;
//! - `operator` also posts notes and incidents, acknowledges, resolves and silences, and issues
//!   the commands a node's policy allows;
//! - `admin` also revokes, decommissions, re-admits and renames nodes, and mints and revokes
//!   enrollment and API tokens.
//!
//! A route's need is declared beside it in [`crate::server::routes`]; without a declaration a
//! `GET` needs [`Permission::Read`] and any other method [`Permission::Admin`], so a new write
//! is admin-only until someone decides otherwise. A refusal is a `403` naming the role (and, for
//! scoped API tokens, the scope) the route needs.
//!
//! Without a roles file every authenticated identity is an admin, as before roles existed; the
//! shared `--admin-token` is always an admin, and so is a loopback-only server without
//! authentication.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A role, in increasing power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// What the role may do.
    pub fn grants(self) -> Grants {
        match self {
            Role::Viewer => Grants::of(&[Permission::Read]),
            Role::Operator => Grants::of(&[
                Permission::Read,
                Permission::EventsWrite,
                Permission::CommandsIssue,
            ]),
            Role::Admin => Grants::ALL,
        }
    }

    /// The least role that grants `p`.
    pub fn least_for(p: Permission) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.grants().has(p))
            .unwrap_or(Role::Admin)
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a role{}; roles are viewer, operator, admin",
                    vaultmesh_process::suggest::did_you_mean(
                        s,
                        Role::ALL.iter().map(|r| r.as_str())
                    )
                )
            })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs; also the scopes of an API token (`read`, `events:write`,
/// `commands:issue`; `admin` is the admin role's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Every page, fragment, list, stream and `/metrics`.
    Read,
    /// Notes, incidents, acknowledgements, resolutions and silences.
    EventsWrite,
    /// Commands, as the node's policy allows them.
    CommandsIssue,
    /// Node lifecycle (revoke, decommission, re-admit, rename) and tokens.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::EventsWrite,
        Permission::CommandsIssue,
        Permission::Admin,
    ];

    /// Its scope name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::EventsWrite => "events:write",
            Permission::CommandsIssue => "commands:issue",
            Permission::Admin => "admin",
        }
    }

    /// A scope name as a token request gives it.
    pub fn parse_scope(s: &str) -> Result<Permission, String> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a scope{}; scopes are read, events:write, commands:issue, admin",
                    vaultmesh_process::suggest::did_you_mean(
                        s,
                        Permission::ALL.iter().map(|p| p.as_str())
                    )
                )
            })
    }
}

/// Event kinds `POST /api/events` takes only from an admin, though the route needs
/// `events:write`: a tag sets the node's labels, which route notifications.
pub const ADMIN_KINDS: [&str; 1] = ["tag"];

/// Event kinds an API token with the `events:write` scope (rather than a role) may post: a bot
/// reports, it does not acknowledge, resolve or silence.
pub const SCOPED_KINDS: [&str; 2] = ["note", "incident"];

/// Whether `identity` may post an event of `kind` (the route's `events:write` is checked
/// already): a tag needs an admin, and a token with scopes posts notes and incidents only.
pub fn check_event_kind(identity: Option<&Identity>, kind: &str) -> Result<(), NotAllowed> {
    let route = format!("an event of kind {kind}");
    if ADMIN_KINDS.contains(&kind) {
        return check(identity, Permission::Admin, &route);
    }
    match identity {
        Some(id) if id.role.is_none() && !SCOPED_KINDS.contains(&kind) => Err(NotAllowed {
            route,
            needs: Permission::EventsWrite,
            who: format!(
                "{}; a token with scopes posts only {}",
                id.describe(),
                SCOPED_KINDS.join(" and ")
            ),
        }),
        _ => Ok(()),
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grants(u8);

/// Everything (the views' default: what a loopback-only server without authentication lets do).
impl Default for Grants {
    fn default() -> Grants {
        Grants::ALL
    }
}

/// What the identity of a request may do (nothing without one: every admin request gets one
/// from the admin gate).
pub fn grants_of(identity: Option<&Identity>) -> Grants {
    identity.map_or(Grants::NONE, |i| i.grants)
}

impl Grants {
    pub const ALL: Grants = Grants(0b1111);
    pub const NONE: Grants = Grants(0);

    pub fn of(ps: &[Permission]) -> Grants {
        Grants(ps.iter().fold(0, |acc, p| acc | Grants::bit(*p)))
    }

    fn bit(p: Permission) -> u8 {
        1 << (p as u8)
    }

    pub fn has(self, p: Permission) -> bool {
        self.0 & Grants::bit(p) != 0
    }

    /// Its permissions, as scope names.
    pub fn scopes(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Permission::as_str)
            .collect()
    }
}

/// How an identity was established (for the log and the audit trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A Cloudflare Access token.
    Access,
    /// A session after an OpenID Connect sign-in.
    Session,
    /// The shared `--admin-token`.
    AdminToken,
    /// A named API token.
    ApiToken,
    /// No authentication is configured: a loopback-only server, where whoever reaches it may
    /// do everything (and writes as `anonymous`, or `console` from the console's forms).
    Loopback,
}

/// Who is asking and what they may do: put in the request's extensions by the admin gate
/// ([`crate::access::admin_auth`]). A request without one reached a loopback-only server
/// without authentication, which may do everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The author of what it posts and the issuer of its commands: an email, a service token's
    /// name, an API token's name, or `admin` for the shared token.
    pub name: String,
    /// Its role; `None` for an API token with scopes narrower than a role.
    pub role: Option<Role>,
    /// What it may do.
    pub grants: Grants,
    pub via: Via,
    /// The API token's id, for an API token.
    pub token_id: Option<String>,
}

impl Identity {
    /// An identity with a role.
    pub fn with_role(name: impl Into<String>, role: Role, via: Via) -> Identity {
        Identity {
            name: name.into(),
            role: Some(role),
            grants: role.grants(),
            via,
            token_id: None,
        }
    }

    /// Whoever reaches a loopback-only server without authentication: may do everything, and
    /// names no author (each route writes its own fallback).
    pub fn loopback() -> Identity {
        Identity::with_role("anonymous", Role::Admin, Via::Loopback)
    }

    /// The name to author writes with, if someone signed in (not [`Via::Loopback`]).
    pub fn author(&self) -> Option<&str> {
        (self.via != Via::Loopback).then_some(self.name.as_str())
    }

    /// What it is, for a refusal: `a viewer`, or `a token with scopes read`.
    pub fn describe(&self) -> String {
        match self.role {
            Some(r) => format!("{} is {} {r}", self.name, article(r)),
            None => format!(
                "{} is a token with scope{} {}",
                self.name,
                if self.grants.scopes().len() == 1 {
                    ""
                } else {
                    "s"
                },
                self.grants.scopes().join(", ")
            ),
        }
    }
}

fn article(r: Role) -> &'static str {
    match r {
        Role::Admin | Role::Operator => "an",
        Role::Viewer => "a",
    }
}

/// Why a request was refused for want of a permission: the `403` says what is needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{route} needs the {role} role (scope {scope}); {who}", role = Role::least_for(*needs), scope = needs.as_str())]
pub struct NotAllowed {
    pub route: String,
    pub needs: Permission,
    pub who: String,
}

/// Whether `identity` may use a route that needs `needs`. A request without one was not seen
/// by the admin gate, and may do nothing.
pub fn check(
    identity: Option<&Identity>,
    needs: Permission,
    route: &str,
) -> Result<(), NotAllowed> {
    match identity {
        Some(id) if id.grants.has(needs) => Ok(()),
        Some(id) => Err(NotAllowed {
            route: route.to_string(),
            needs,
            who: id.describe(),
        }),
        None => Err(NotAllowed {
            route: route.to_string(),
            needs,
            who: "the request has no identity".into(),
        }),
    }
}

/// The roles file (`--roles FILE`): which identities get which role.
///
/// ```toml
/// # An identity no rule below names: "none" (refused, 403) or a role.
/// default = "none"
///
/// [admin]
/// emails = ["alice@example.com"]
/// groups = ["sre-leads"]
///
/// [operator]
/// groups = ["sre"]
///
/// [viewer]
/// domains = ["example.com"]
/// ```
///
/// Emails and domains compare without regard to case; groups exactly (as the provider's
/// `groups` claim gives them). An identity named by several roles gets the highest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    /// `none` or a role: what an identity no rule names gets.
    #[serde(default = "default_none")]
    pub default: String,
    #[serde(default)]
    pub admin: Members,
    #[serde(default)]
    pub operator: Members,
    #[serde(default)]
    pub viewer: Members,
}

fn default_none() -> String {
    "none".into()
}

/// Who holds one role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// Exact addresses, any case.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Values of the identity's `groups` claim.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Every address at one of these domains (`example.com`; not its subdomains).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Exact identity names that are not addresses: Cloudflare Access service tokens, by the
    /// common name their tokens carry (`<client id>.access`).
    #[serde(default)]
    pub names: Vec<String>,
}

impl Members {
    fn names(&self, email: &str, groups: &[String]) -> bool {
        let email = email.to_lowercase();
        let domain = email.rsplit_once('@').map(|(_, d)| d);
        self.emails.iter().any(|e| e.to_lowercase() == email)
            || self.names.iter().any(|n| n.to_lowercase() == email)
            || domain.is_some_and(|d| self.domains.iter().any(|x| x.to_lowercase() == d))
            || self.groups.iter().any(|g| groups.contains(g))
    }

    fn check(&self, role: Role) -> Result<(), String> {
        for (i, e) in self.emails.iter().enumerate() {
            let ok = e
                .split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
            if !ok || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "{role}.emails[{i}]: {e:?} is not an email address (user@example.com)"
                ));
            }
        }
        for (i, d) in self.domains.iter().enumerate() {
            if d.is_empty() || d.contains(['@', '/', ' ', '*']) || !d.contains('.') {
                return Err(format!(
                    "{role}.domains[{i}]: {d:?} is not a domain (example.com, without @ or *)"
                ));
            }
        }
        for (i, g) in self.groups.iter().enumerate() {
            if g.trim().is_empty() {
                return Err(format!("{role}.groups[{i}]: empty group name"));
            }
        }
        for (i, n) in self.names.iter().enumerate() {
            if n.trim().is_empty() || n.contains('@') {
                return Err(format!(
                    "{role}.names[{i}]: {n:?}: give a service token's name (an address goes in emails)"
                ));
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.emails.len() + self.groups.len() + self.domains.len() + self.names.len()
    }
}

/// A checked roles file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    default: Option<Role>,
    file: RolesFile,
}

impl RoleMap {
    /// Reads and checks `path`; the error names the file, the key and the reason.
    pub fn load(path: &Path) -> Result<RoleMap, String> {
        let name = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
        RoleMap::parse(&text).map_err(|e| format!("{name}: {e}"))
    }

    /// Parses and checks a roles file's text.
    pub fn parse(text: &str) -> Result<RoleMap, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let file: RolesFile =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                // toml adds "in `key`" on a line of its own; the path says it already.
                let msg = e.inner().to_string();
                let msg = msg.lines().next().unwrap_or_default().to_string();
                if path == "." {
                    msg
                } else {
                    format!("{path}: {msg}")
                }
            })?;
        let default = match file.default.as_str() {
            "none" => None,
            other => Some(Role::parse(other).map_err(|e| format!("default: {e} or none"))?),
        };
        for role in Role::ALL {
            file.members(role).check(role)?;
        }
        Ok(RoleMap { default, file })
    }

    fn members(&self, role: Role) -> &Members {
        self.file.members(role)
    }

    /// The role of an identity with this email (or service-token name) and these groups:
    /// the highest that names it, else the default (`None`: no role, refused).
    pub fn role_for(&self, email: &str, groups: &[String]) -> Option<Role> {
        Role::ALL
            .into_iter()
            .rev()
            .find(|r| self.members(*r).names(email, groups))
            .or(self.default)
    }

    /// What `roles check` warns of: a default above viewer gives every identity Access lets in
    /// more than reading.
    pub fn warning(&self) -> Option<String> {
        match self.default {
            Some(r @ (Role::Operator | Role::Admin)) => Some(format!(
                "default = {:?}: every identity Access lets in is {} {r}; \"viewer\" or \"none\" is safer",
                r.as_str(),
                article(r)
            )),
            _ => None,
        }
    }

    /// One line for `roles check`: how many rules each role has and the default.
    pub fn summary(&self) -> String {
        format!(
            "admin: {} rule(s), operator: {}, viewer: {}; anyone else: {}",
            self.members(Role::Admin).len(),
            self.members(Role::Operator).len(),
            self.members(Role::Viewer).len(),
            self.default.map_or("refused (403)", Role::as_str)
        )
    }
}

impl RolesFile {
    fn members(&self, role: Role) -> &Members {
        match role {
            Role::Admin => &self.admin,
            Role::Operator => &self.operator,
            Role::Viewer => &self.viewer,
        }
    }
}

/// The permissions a set of scope names grants (each checked; at least one).
pub fn grants_of_scopes(scopes: &[String]) -> Result<Grants, String> {
    if scopes.is_empty() {
        return Err("scopes: give at least one of read, events:write, commands:issue".into());
    }
    let mut set = BTreeSet::new();
    for (i, s) in scopes.iter().enumerate() {
        set.insert(Permission::parse_scope(s).map_err(|e| format!("scopes[{i}]: {e}"))?);
    }
    Ok(Grants::of(&set.into_iter().collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_grants_what_the_one_below_does_and_more() {
        assert!(Role::Viewer.grants().has(Permission::Read));
        assert!(!Role::Viewer.grants().has(Permission::EventsWrite));
        assert!(!Role::Viewer.grants().has(Permission::CommandsIssue));
        assert!(Role::Operator.grants().has(Permission::CommandsIssue));
        assert!(!Role::Operator.grants().has(Permission::Admin));
        assert!(Role::Admin.grants().has(Permission::Admin));
        assert_eq!(Role::least_for(Permission::Read), Role::Viewer);
        assert_eq!(Role::least_for(Permission::EventsWrite), Role::Operator);
        assert_eq!(Role::least_for(Permission::Admin), Role::Admin);
    }

    #[test]
    fn a_refusal_names_the_role_and_scope_needed_and_who_asked() {
        let viewer = Identity::with_role("bob@example.com", Role::Viewer, Via::Access);
        let e = check(
            Some(&viewer),
            Permission::CommandsIssue,
            "POST /api/commands",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "POST /api/commands needs the operator role (scope commands:issue); bob@example.com is a viewer"
        );
        assert!(check(Some(&viewer), Permission::Read, "GET /api/nodes").is_ok());
        assert!(
            check(None, Permission::Read, "GET /api/nodes").is_err(),
            "a request the admin gate did not see may do nothing"
        );
        assert!(check(Some(&Identity::loopback()), Permission::Admin, "POST /x").is_ok());
        assert_eq!(Identity::loopback().author(), None);
        assert_eq!(viewer.author(), Some("bob@example.com"));
        let bot = Identity {
            name: "deploy-bot".into(),
            role: None,
            grants: Grants::of(&[Permission::EventsWrite]),
            via: Via::ApiToken,
            token_id: Some("0123456789abcdef".into()),
        };
        assert_eq!(
            check(Some(&bot), Permission::Read, "GET /api/nodes")
                .unwrap_err()
                .to_string(),
            "GET /api/nodes needs the viewer role (scope read); deploy-bot is a token with scope events:write"
        );
    }

    #[test]
    fn the_roles_file_maps_emails_domains_and_groups_to_the_highest_role() {
        let map = RoleMap::parse(
            "default = \"viewer\"\n[admin]\nemails = [\"Alice@Example.com\"]\n[operator]\ngroups = [\"sre\"]\ndomains = [\"ops.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(map.role_for("alice@example.com", &[]), Some(Role::Admin));
        assert_eq!(
            map.role_for("alice@example.com", &["sre".into()]),
            Some(Role::Admin)
        );
        assert_eq!(
            map.role_for("carol@x.org", &["sre".into()]),
            Some(Role::Operator)
        );
        assert_eq!(
            map.role_for("dan@OPS.example.com", &[]),
            Some(Role::Operator)
        );
        assert_eq!(
            map.role_for("dan@sub.ops.example.com", &[]),
            Some(Role::Viewer)
        );
        assert_eq!(
            map.role_for("eve@evil.test", &["SRE".into()]),
            Some(Role::Viewer)
        );
        let strict = RoleMap::parse(
            "[admin]\nemails = [\"a@b.c\"]\n[operator]\nnames = [\"3f2a9c0d.access\"]\n",
        )
        .unwrap();
        assert_eq!(strict.role_for("x@y.z", &[]), None, "the default is none");
        assert_eq!(
            strict.role_for("3F2A9C0D.access", &[]),
            Some(Role::Operator),
            "a service token by name"
        );
        assert_eq!(strict.warning(), None);
        assert!(map.warning().is_none());
        let open = RoleMap::parse("default = \"admin\"\n").unwrap();
        assert!(
            open.warning()
                .unwrap()
                .contains("every identity Access lets in is an admin")
        );
    }

    #[test]
    fn a_bad_roles_file_is_refused_naming_the_key_and_reason() {
        let cases = [
            (
                "defualt = \"viewer\"\n",
                "unknown field `defualt`, expected one of `default`",
            ),
            (
                "default = \"veiwer\"\n",
                "default: \"veiwer\" is not a role; did you mean \"viewer\"?",
            ),
            (
                "[admin]\nemail = [\"a@b.c\"]\n",
                "admin.email: unknown field `email`, expected one of `emails`",
            ),
            (
                "[admin]\nnames = [\"a@b.c\"]\n",
                "admin.names[0]: \"a@b.c\": give a service token's name",
            ),
            ("[admins]\n", "unknown field `admins`"),
            (
                "[operator]\nemails = [\"bob\"]\n",
                "operator.emails[0]: \"bob\" is not an email address",
            ),
            (
                "[viewer]\ndomains = [\"*.example.com\"]\n",
                "viewer.domains[0]: \"*.example.com\" is not a domain",
            ),
            (
                "[viewer]\ngroups = [\" \"]\n",
                "viewer.groups[0]: empty group name",
            ),
            (
                "[viewer]\ngroups = \"sre\"\n",
                "viewer.groups: invalid type",
            ),
        ];
        for (text, want) in cases {
            let e = RoleMap::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn scopes_are_checked_and_suggested() {
        let g = grants_of_scopes(&["read".into(), "events:write".into()]).unwrap();
        assert!(g.has(Permission::Read) && g.has(Permission::EventsWrite));
        assert!(!g.has(Permission::CommandsIssue));
        let e = grants_of_scopes(&["events:wrte".into()]).unwrap_err();
        assert!(e.contains("did you mean \"events:write\""), "{e}");
        assert!(grants_of_scopes(&[]).is_err());
    }
}
