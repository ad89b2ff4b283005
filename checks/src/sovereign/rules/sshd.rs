//! `sshd`: how the OpenSSH server lets people log in.
//!
//! Reads `{root}/etc/ssh/sshd_config` (key `config`) the way sshd does: keywords are
//! case-insensitive and may be followed by whitespace or one `=`, the first value obtained for
//! an option wins, `Include` globs (relative ones are relative to `/etc/ssh`) are expanded under
//! the scan root, sorted, and read in place, and global options end at the first `Match` line.
//! As in sshd, a `Match` inside an included file lasts to the end of that file only, and an
//! `Include` inside a `Match` block is not read. `Match` blocks themselves are not evaluated:
//! the rule judges the global settings.
//!
//! It judges:
//! - `PermitRootLogin` (sshd's default `prohibit-password`): `yes` is high; `prohibit-password`,
//!   `without-password` and `forced-commands-only` are low; only `no` is clean.
//! - `PasswordAuthentication` (default `yes`): `yes` or unset is medium.
//! - `PermitEmptyPasswords` (default `no`): `yes` is critical.
//! - `KbdInteractiveAuthentication` and its older alias `ChallengeResponseAuthentication` (one
//!   option; the first of either wins): `yes` is medium. sshd's default is `yes`, but unset is
//!   not a finding: keyboard-interactive only asks for a password through PAM, and
//!   distributions that enable PAM set this option explicitly.
//! - A value sshd would refuse (`PermitRootLogin maybe`) is low: sshd will not start with it.
//!
//! Facts (`sshd`): `permitrootlogin`, `passwordauthentication`, `permitemptypasswords` and
//! `kbdinteractiveauthentication` = the effective value in lowercase, or `default:<value>` when
//! unset; `sshd_config` = the files read, comma-separated. A missing config file means sshd is
//! not installed: no findings, and `sshd_config` = `absent`. An unreadable file is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};

pub const NAME: &str = "sshd";

/// Where sshd resolves relative `Include` paths.
const SSHDIR: &str = "/etc/ssh";
/// sshd's own limit on nested `Include`s (`SERVCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// The sshd configuration file, as a node path.
    config: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config: "/etc/ssh/sshd_config".into(),
        }
    }
}

#[derive(Debug)]
struct Sshd {
    config: String,
}

impl Sshd {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        if !c.config.starts_with('/') {
            return Err(CheckConfigError::new(
                "config",
                "must be an absolute path (a path on the node)",
            ));
        }
        Ok(Sshd { config: c.config })
    }
}

/// The options this rule judges: canonical (lowercase) name, the names sshd accepts for it,
/// the spelling used in messages, and sshd's default.
const OPTIONS: [(&str, &[&str], &str, &str); 4] = [
    (
        "permitrootlogin",
        &["permitrootlogin"],
        "PermitRootLogin",
        "prohibit-password",
    ),
    (
        "passwordauthentication",
        &["passwordauthentication"],
        "PasswordAuthentication",
        "yes",
    ),
    (
        "permitemptypasswords",
        &["permitemptypasswords"],
        "PermitEmptyPasswords",
        "no",
    ),
    (
        "kbdinteractiveauthentication",
        &[
            "kbdinteractiveauthentication",
            "challengeresponseauthentication",
        ],
        "KbdInteractiveAuthentication",
        "yes",
    ),
];

/// Where an option got its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The first argument, lowercased (sshd compares these case-insensitively).
    pub value: String,
    /// Node path of the file and 1-based line number.
    pub file: String,
    pub line: usize,
    /// The line as written, trimmed.
    pub text: String,
}

/// The global settings of an sshd configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Canonical option name → the first value obtained.
    pub settings: BTreeMap<&'static str, Setting>,
    /// Node paths of the files read, in order.
    pub files: Vec<String>,
}

/// Splits a config line into its lowercased keyword and arguments, the way sshd does: the
/// keyword ends at whitespace or one `=`, arguments may be double-quoted, and an unquoted
/// argument starting with `#` ends the line. `None` for blank lines, comments and keywords
/// without arguments (which sshd rejects).
pub fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut arg = String::new();
        if first == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                arg.push(c);
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
    if keyword.is_empty() || args.is_empty() {
        return None;
    }
    Some((keyword, args))
}

/// Reads a configuration and its includes under the scan root.
struct Parser<'a> {
    ctx: &'a ScanContext,
    parsed: Parsed,
}

impl Parser<'_> {
    /// Reads the file at `host` (active: global options apply). Returns `Ok(false)` when the
    /// top-level file does not exist.
    fn file(&mut self, host: &Path, depth: usize) -> Result<bool, RuleError> {
        let node = self.ctx.node_path(host);
        let bytes = match std::fs::read(host) {
            Ok(b) => b,
            Err(e) if depth == 0 && e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(RuleError::new(format!("{node}: {e}"))),
        };
        self.parsed.files.push(node.clone());
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            let Some((keyword, args)) = split_line(line) else {
                continue;
            };
            match keyword.as_str() {
                // Global options end here; the rest of this file belongs to Match blocks.
                "match" => break,
                "include" => {
                    if depth + 1 >= MAX_DEPTH {
                        return Err(RuleError::new(format!(
                            "{node}:{}: Include nested more than {MAX_DEPTH} deep",
                            i + 1
                        )));
                    }
                    for pattern in &args {
                        for included in self.expand(pattern, &node, i + 1)? {
                            // A Match in the included file ends with that file (sshd restores
                            // the includer's state), so carrying on here is right.
                            self.file(&included, depth + 1)?;
                        }
                    }
                }
                _ => {
                    let Some((canonical, ..)) = OPTIONS
                        .iter()
                        .find(|(_, names, ..)| names.contains(&&*keyword))
                    else {
                        continue;
                    };
                    self.parsed
                        .settings
                        .entry(canonical)
                        .or_insert_with(|| Setting {
                            value: args[0].to_ascii_lowercase(),
                            file: node.clone(),
                            line: i + 1,
                            text: line.trim().to_string(),
                        });
                }
            }
        }
        Ok(true)
    }

    /// The host paths an `Include` pattern names, sorted; none is fine (sshd ignores it).
    fn expand(&self, pattern: &str, file: &str, line: usize) -> Result<Vec<PathBuf>, RuleError> {
        let node_pattern = if pattern.starts_with('/') {
            pattern.to_string()
        } else {
            format!("{SSHDIR}/{pattern}")
        };
        let root = self.ctx.root.to_string_lossy();
        let host_pattern = format!(
            "{}/{}",
            glob::Pattern::escape(root.trim_end_matches('/')),
            node_pattern.trim_start_matches('/')
        );
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let paths = glob::glob_with(&host_pattern, options).map_err(|e| {
            RuleError::new(format!(
                "{file}:{line}: bad Include pattern {pattern:?}: {e}"
            ))
        })?;
        let mut out = Vec::new();
        for p in paths {
            out.push(p.map_err(|e| {
                RuleError::new(format!(
                    "{file}:{line}: Include {pattern:?}: {}: {}",
                    self.ctx.node_path(e.path()),
                    e.error()
                ))
            })?);
        }
        vaultmesh_agent_core::sort::sort(&mut out);
        Ok(out)
    }
}

/// Reads `node_path` and its includes; `None` when the file does not exist.
pub fn parse(ctx: &ScanContext, node_path: &str) -> Result<Option<Parsed>, RuleError> {
    let mut parser = Parser {
        ctx,
        parsed: Parsed::default(),
    };
    if parser.file(&ctx.path(node_path), 0)? {
        Ok(Some(parser.parsed))
    } else {
        Ok(None)
    }
}

/// One judgement on an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// Canonical option name (the fact key).
    pub option: &'static str,
    /// The fact value: the effective value, or `default:<value>`.
    pub fact: String,
    pub finding: Option<(Severity, String, String, String)>,
}

/// Judges the four options of `parsed`, in [`OPTIONS`] order.
pub fn judge(parsed: &Parsed) -> Vec<Judgement> {
    let mut out = Vec::new();
    for (option, _, display, default) in OPTIONS {
        let setting = parsed.settings.get(option);
        let value = setting.map_or(default, |s| s.value.as_str());
        let fact = match setting {
            Some(s) => s.value.clone(),
            None => format!("default:{default}"),
        };
        let evidence = match setting {
            Some(s) => format!("{}:{}: {}", s.file, s.line, s.text),
            None => format!("not set; sshd's default is {default}"),
        };
        let verdict: Option<(Severity, String, &str)> = match (option, value) {
            (_, v) if !valid(option, v) => Some((
                Severity::Low,
                format!("sshd_config has an invalid {display} value {v:?}"),
                "sshd refuses to start or reload with a value it does not know; fix the line.",
            )),
            ("permitrootlogin", "yes") => Some((
                Severity::High,
                "sshd permits root login with a password".into(),
                "Set PermitRootLogin no: log in as a named user and escalate with sudo, so \
                 every root session is attributable.",
            )),
            ("permitrootlogin", "prohibit-password" | "without-password") => Some((
                Severity::Low,
                "sshd permits root login with keys".into(),
                "Set PermitRootLogin no: log in as a named user and escalate with sudo, so \
                 every root session is attributable.",
            )),
            ("permitrootlogin", "forced-commands-only") => Some((
                Severity::Low,
                "sshd permits root login for forced commands".into(),
                "Root keys with a command= restriction can log in; set PermitRootLogin no \
                 unless an automated job needs it.",
            )),
            ("passwordauthentication", "yes") => Some((
                Severity::Medium,
                "sshd accepts password logins".into(),
                "Passwords can be guessed; set PasswordAuthentication no and use keys.",
            )),
            ("permitemptypasswords", "yes") => Some((
                Severity::Critical,
                "sshd accepts empty passwords".into(),
                "Any account without a password can log in; set PermitEmptyPasswords no.",
            )),
            ("kbdinteractiveauthentication", "yes") if setting.is_some() => Some((
                Severity::Medium,
                "sshd accepts keyboard-interactive logins".into(),
                "With PAM this is password login by another name; set \
                 KbdInteractiveAuthentication no.",
            )),
            _ => None,
        };
        out.push(Judgement {
            option,
            fact,
            finding: verdict.map(|(sev, title, detail)| (sev, title, detail.to_string(), evidence)),
        });
    }
    out
}

/// Whether sshd accepts `value` for `option`.
fn valid(option: &str, value: &str) -> bool {
    match option {
        "permitrootlogin" => matches!(
            value,
            "yes" | "no" | "prohibit-password" | "without-password" | "forced-commands-only"
        ),
        _ => matches!(value, "yes" | "no"),
    }
}

impl ScanRule for Sshd {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        let Some(parsed) = parse(ctx, &self.config)? else {
            out.fact(NAME, "sshd_config", "absent");
            return Ok(());
        };
        out.fact(NAME, "sshd_config", parsed.files.join(", "));
        for j in judge(&parsed) {
            out.fact(NAME, j.option, j.fact);
            if let Some((severity, title, detail, evidence)) = j.finding {
                out.finding(severity, title, detail, evidence);
            }
        }
        Ok(())
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "sshd settings: root login, password, empty-password and keyboard-interactive logins",
        enabled_by_default: true,
        example: "config = \"/etc/ssh/sshd_config\"\n",
        build: |t| Ok(Box::new(Sshd::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::{Fixture, changed_keys};

    const CLEAN: &str = "# hardened
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
";

    fn rule() -> Sshd {
        Sshd::new(Config::default()).unwrap()
    }

    fn with_config(text: &str) -> Fixture {
        let f = Fixture::new();
        f.file("/etc/ssh/sshd_config", text);
        f
    }

    /// (severity, title, evidence) of every finding.
    fn findings(out: &RuleOutput) -> Vec<(Severity, String, String)> {
        out.findings()
            .iter()
            .map(|f| (f.severity, f.title.clone(), f.evidence.clone()))
            .collect()
    }

    #[test]
    fn splits_lines_like_sshd() {
        assert_eq!(
            split_line("  PermitRootLogin   no  # why"),
            Some(("permitrootlogin".into(), vec!["no".into()]))
        );
        assert_eq!(
            split_line("PasswordAuthentication=yes"),
            Some(("passwordauthentication".into(), vec!["yes".into()]))
        );
        assert_eq!(
            split_line("PasswordAuthentication = NO"),
            Some(("passwordauthentication".into(), vec!["NO".into()]))
        );
        assert_eq!(
            split_line("Include \"/etc/ssh/my dir/*.conf\" b.conf"),
            Some((
                "include".into(),
                vec!["/etc/ssh/my dir/*.conf".into(), "b.conf".into()]
            ))
        );
        assert_eq!(split_line("   # comment"), None);
        assert_eq!(split_line(""), None);
        assert_eq!(split_line("PermitRootLogin"), None, "no argument");
    }

    #[test]
    fn clean_config_has_no_findings_and_reports_effective_values() {
        let f = with_config(CLEAN);
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        let facts = out.category(NAME);
        assert_eq!(facts["permitrootlogin"], "no");
        assert_eq!(facts["passwordauthentication"], "no");
        assert_eq!(facts["permitemptypasswords"], "default:no");
        assert_eq!(facts["kbdinteractiveauthentication"], "no");
        assert_eq!(facts["sshd_config"], "/etc/ssh/sshd_config");
        assert_eq!(facts.len(), 5);
    }

    #[test]
    fn empty_config_judges_sshd_defaults() {
        let f = with_config("# nothing set\n");
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none());
        assert_eq!(
            findings(&out),
            [
                (
                    Severity::Low,
                    "sshd permits root login with keys".to_string(),
                    "not set; sshd's default is prohibit-password".to_string()
                ),
                (
                    Severity::Medium,
                    "sshd accepts password logins".to_string(),
                    "not set; sshd's default is yes".to_string()
                ),
            ],
            "unset KbdInteractiveAuthentication is deliberately not a finding"
        );
        let facts = out.category(NAME);
        assert_eq!(facts["permitrootlogin"], "default:prohibit-password");
        assert_eq!(facts["passwordauthentication"], "default:yes");
        assert_eq!(facts["kbdinteractiveauthentication"], "default:yes");
    }

    #[test]
    fn each_bad_setting_is_a_finding_with_file_and_line() {
        let f = with_config(
            "Port 22\npermitrootlogin YES\nPasswordAuthentication yes\n\
             PermitEmptyPasswords yes\nChallengeResponseAuthentication yes\n",
        );
        let (out, _) = f.run(&rule(), NAME);
        assert_eq!(
            findings(&out),
            [
                (
                    Severity::High,
                    "sshd permits root login with a password".to_string(),
                    "/etc/ssh/sshd_config:2: permitrootlogin YES".to_string()
                ),
                (
                    Severity::Medium,
                    "sshd accepts password logins".to_string(),
                    "/etc/ssh/sshd_config:3: PasswordAuthentication yes".to_string()
                ),
                (
                    Severity::Critical,
                    "sshd accepts empty passwords".to_string(),
                    "/etc/ssh/sshd_config:4: PermitEmptyPasswords yes".to_string()
                ),
                (
                    Severity::Medium,
                    "sshd accepts keyboard-interactive logins".to_string(),
                    "/etc/ssh/sshd_config:5: ChallengeResponseAuthentication yes".to_string()
                ),
            ]
        );
        assert_eq!(out.category(NAME)["permitrootlogin"], "yes");
    }

    #[test]
    fn root_login_variants_and_invalid_values() {
        for (value, severity, title) in [
            (
                "without-password",
                Severity::Low,
                "sshd permits root login with keys",
            ),
            (
                "forced-commands-only",
                Severity::Low,
                "sshd permits root login for forced commands",
            ),
            (
                "maybe",
                Severity::Low,
                "sshd_config has an invalid PermitRootLogin value \"maybe\"",
            ),
        ] {
            let f = with_config(&format!(
                "PermitRootLogin {value}\nPasswordAuthentication no\n"
            ));
            let (out, _) = f.run(&rule(), NAME);
            assert_eq!(
                findings(&out),
                [(
                    severity,
                    title.to_string(),
                    format!("/etc/ssh/sshd_config:1: PermitRootLogin {value}")
                )],
                "{value}"
            );
        }
    }

    #[test]
    fn first_value_wins_and_match_ends_global_options() {
        let f = with_config(
            "PermitRootLogin no\nPermitRootLogin yes\nPasswordAuthentication no\n\
             Match User backup\n  PermitEmptyPasswords yes\n  PermitRootLogin yes\n",
        );
        let (out, _) = f.run(&rule(), NAME);
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        assert_eq!(out.category(NAME)["permitemptypasswords"], "default:no");
    }

    #[test]
    fn includes_are_read_in_place_sorted_and_relative_to_etc_ssh() {
        let f = with_config(
            "Include sshd_config.d/*.conf\nPasswordAuthentication no\nPermitRootLogin no\n",
        );
        // Read in name order: 10-... sets PasswordAuthentication before the main file does.
        f.file(
            "/etc/ssh/sshd_config.d/20-late.conf",
            "PasswordAuthentication no\nPermitEmptyPasswords yes\n",
        );
        f.file(
            "/etc/ssh/sshd_config.d/10-cloud.conf",
            "PasswordAuthentication yes\nMatch Address 10.0.0.0/8\nPermitRootLogin yes\n",
        );
        f.file(
            "/etc/ssh/sshd_config.d/.hidden.conf",
            "PermitRootLogin yes\n",
        );
        f.file("/etc/ssh/sshd_config.d/notes.txt", "PermitRootLogin yes\n");
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            findings(&out),
            [
                (
                    Severity::Medium,
                    "sshd accepts password logins".to_string(),
                    "/etc/ssh/sshd_config.d/10-cloud.conf:1: PasswordAuthentication yes"
                        .to_string()
                ),
                (
                    Severity::Critical,
                    "sshd accepts empty passwords".to_string(),
                    "/etc/ssh/sshd_config.d/20-late.conf:2: PermitEmptyPasswords yes".to_string()
                ),
            ],
            "the Match in 10-cloud.conf ends with that file; the main file's PermitRootLogin \
             no still applies"
        );
        assert_eq!(
            out.category(NAME)["sshd_config"],
            "/etc/ssh/sshd_config, /etc/ssh/sshd_config.d/10-cloud.conf, \
             /etc/ssh/sshd_config.d/20-late.conf"
        );
    }

    #[test]
    fn includes_inside_match_are_not_read_and_absolute_includes_stay_under_root() {
        let f = with_config(
            "Include /etc/ssh/extra/*.conf /etc/ssh/none/*.conf\nPermitRootLogin no\n\
             Match User x\nInclude /etc/ssh/match.conf\n",
        );
        f.file("/etc/ssh/extra/a.conf", "PasswordAuthentication no\n");
        f.file("/etc/ssh/match.conf", "PermitEmptyPasswords yes\n");
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none(), "{err:?}");
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        assert_eq!(
            out.category(NAME)["sshd_config"],
            "/etc/ssh/sshd_config, /etc/ssh/extra/a.conf"
        );
    }

    #[test]
    fn recursive_include_is_an_error() {
        let f = with_config("Include sshd_config\n");
        let (_, err) = f.run(&rule(), NAME);
        assert!(err.unwrap().0.contains("nested more than 16"));
    }

    #[test]
    fn missing_config_means_sshd_is_absent_not_an_error() {
        let f = Fixture::new();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none());
        assert!(out.findings().is_empty());
        assert_eq!(
            out.category(NAME),
            BTreeMap::from([("sshd_config".to_string(), "absent".to_string())])
        );
    }

    #[test]
    fn unreadable_config_is_an_error() {
        // A directory where the file should be fails to read for root too, unlike mode 000.
        let f = Fixture::new();
        f.dir("/etc/ssh/sshd_config");
        let (_, err) = f.run(&rule(), NAME);
        assert!(err.unwrap().0.starts_with("/etc/ssh/sshd_config: "));
        // So does an unreadable included file: sshd would refuse the configuration.
        let f = with_config("Include conf.d/*\n");
        f.dir("/etc/ssh/conf.d/sub");
        let (_, err) = f.run(&rule(), NAME);
        assert!(err.unwrap().0.starts_with("/etc/ssh/conf.d/sub: "));
    }

    #[test]
    fn facts_are_stable_and_track_changes() {
        let f = with_config(CLEAN);
        let (a, _) = f.run(&rule(), NAME);
        let (b, _) = f.run(&rule(), NAME);
        assert_eq!(a.facts(), b.facts());
        f.file(
            "/etc/ssh/sshd_config",
            &CLEAN.replace("PermitRootLogin no", "PermitRootLogin prohibit-password"),
        );
        let (c, _) = f.run(&rule(), NAME);
        let (before, after) = (a.category(NAME), c.category(NAME));
        let changed = changed_keys(&before, &after);
        assert_eq!(changed, ["permitrootlogin"]);
        assert_eq!(after["permitrootlogin"], "prohibit-password");
        assert_eq!(before.len(), after.len());
    }

    #[test]
    fn other_config_paths_and_validation() {
        let f = Fixture::new();
        f.file("/srv/sshd.conf", CLEAN);
        let r = Sshd::new(Config {
            config: "/srv/sshd.conf".into(),
        })
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert!(out.findings().is_empty());
        assert_eq!(out.category(NAME)["sshd_config"], "/srv/sshd.conf");
        let e = Sshd::new(Config {
            config: "sshd_config".into(),
        })
        .unwrap_err();
        assert_eq!(e.key, "config");
        let e = parse_table::<Config>(&"nope = 1".parse().unwrap()).unwrap_err();
        assert_eq!(e.key, "nope");
    }

    #[test]
    fn judge_is_pure() {
        let mut parsed = Parsed::default();
        parsed.settings.insert(
            "passwordauthentication",
            Setting {
                value: "no".into(),
                file: "/x".into(),
                line: 1,
                text: "PasswordAuthentication no".into(),
            },
        );
        let j = judge(&parsed);
        assert_eq!(
            j.iter().map(|j| j.option).collect::<Vec<_>>(),
            [
                "permitrootlogin",
                "passwordauthentication",
                "permitemptypasswords",
                "kbdinteractiveauthentication"
            ]
        );
        assert!(j[1].finding.is_none());
        assert_eq!(j[0].finding.as_ref().unwrap().0, Severity::Low);
    }
}
