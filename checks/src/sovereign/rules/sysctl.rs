//! `sysctl`: kernel hardening settings.
//!
//! Reads each expected key from `{proc}/sys/<key with dots as slashes>` and compares its first
//! number with the expectation: `"N"` (equal; a plain TOML integer means the same), `">=N"`,
//! `"<=N"` or `"!=N"`. A value that does not meet it is a finding of `severity` (default
//! medium): "kernel.kptr_restrict is 0; expected >=1". A key this kernel does not have is the
//! fact `absent` and no finding; a key that cannot be read is the fact `unreadable` and a low
//! finding.
//!
//! The default expectations:
//!
//! | key | expected | why |
//! |---|---|---|
//! | `kernel.kptr_restrict` | `>=1` | kernel addresses hidden from unprivileged users |
//! | `kernel.dmesg_restrict` | `1` | only privileged users read the kernel log |
//! | `kernel.randomize_va_space` | `2` | full address-space layout randomisation |
//! | `kernel.yama.ptrace_scope` | `>=1` | processes may only trace their own descendants |
//! | `kernel.unprivileged_bpf_disabled` | `>=1` | no BPF programs from unprivileged users |
//! | `fs.protected_symlinks` | `1` | no following others' symlinks in sticky directories |
//! | `fs.protected_hardlinks` | `1` | no hard links to files one cannot write |
//! | `fs.protected_fifos` | `>=1` | no writing others' FIFOs in sticky directories |
//! | `fs.protected_regular` | `>=1` | no writing others' files in sticky directories |
//! | `fs.suid_dumpable` | `0` | set-uid processes leave no core dumps |
//! | `net.ipv4.conf.all.accept_redirects` | `0` | ICMP redirects cannot reroute traffic |
//! | `net.ipv4.conf.all.send_redirects` | `0` | the node is not a router |
//! | `net.ipv4.conf.all.accept_source_route` | `0` | no source-routed packets |
//! | `net.ipv4.tcp_syncookies` | `1` | SYN floods do not exhaust connections |
//! | `net.ipv4.conf.all.rp_filter` | `>=1` | packets with spoofed source addresses dropped |
//!
//! Setting `expect` **replaces** this list; `extra_expect` adds to it (and overrides a default
//! for the same key), so `extra_expect = { "kernel.kptr_restrict" = 2 }` tightens one setting
//! and keeps the rest. Keys may be quoted (`"kernel.kptr_restrict" = ">=1"`) or written as TOML
//! dotted keys; both mean the same.
//!
//! Facts (`sysctl`): key = the observed value, trimmed (or `absent`, `unreadable`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};
use crate::sovereign::rules::fsutil;

pub const NAME: &str = "sysctl";

/// The default expectations: key, comparison, value, why.
const DEFAULTS: [(&str, Op, i64, &str); 15] = [
    (
        "kernel.kptr_restrict",
        Op::Ge,
        1,
        "Kernel addresses in /proc help exploits; hide them from unprivileged users.",
    ),
    (
        "kernel.dmesg_restrict",
        Op::Eq,
        1,
        "The kernel log leaks addresses and hardware details; restrict it to privileged users.",
    ),
    (
        "kernel.randomize_va_space",
        Op::Eq,
        2,
        "Full address-space layout randomisation makes memory-corruption exploits harder.",
    ),
    (
        "kernel.yama.ptrace_scope",
        Op::Ge,
        1,
        "Without it any process can read the memory of every other process of the same user.",
    ),
    (
        "kernel.unprivileged_bpf_disabled",
        Op::Ge,
        1,
        "Unprivileged BPF has been a steady source of kernel privilege escalations.",
    ),
    (
        "fs.protected_symlinks",
        Op::Eq,
        1,
        "Stops symlink attacks in world-writable sticky directories such as /tmp.",
    ),
    (
        "fs.protected_hardlinks",
        Op::Eq,
        1,
        "Stops users hard-linking files they cannot write (a classic set-uid attack).",
    ),
    (
        "fs.protected_fifos",
        Op::Ge,
        1,
        "Stops writes to other users' FIFOs in world-writable sticky directories.",
    ),
    (
        "fs.protected_regular",
        Op::Ge,
        1,
        "Stops writes to other users' files in world-writable sticky directories.",
    ),
    (
        "fs.suid_dumpable",
        Op::Eq,
        0,
        "Core dumps of set-uid programs can leak secrets such as password hashes.",
    ),
    (
        "net.ipv4.conf.all.accept_redirects",
        Op::Eq,
        0,
        "ICMP redirects let a host on the network reroute the node's traffic.",
    ),
    (
        "net.ipv4.conf.all.send_redirects",
        Op::Eq,
        0,
        "Only routers send ICMP redirects.",
    ),
    (
        "net.ipv4.conf.all.accept_source_route",
        Op::Eq,
        0,
        "Source-routed packets let a sender choose how replies travel.",
    ),
    (
        "net.ipv4.tcp_syncookies",
        Op::Eq,
        1,
        "SYN cookies keep a SYN flood from exhausting the connection table.",
    ),
    (
        "net.ipv4.conf.all.rp_filter",
        Op::Ge,
        1,
        "Reverse-path filtering drops packets with spoofed source addresses.",
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Key → expectation; replaces the defaults when set.
    expect: Option<toml::Table>,
    /// Key → expectation; added to the defaults (or to `expect`).
    extra_expect: toml::Table,
    /// Severity of a setting that does not meet its expectation.
    severity: Severity,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            expect: None,
            extra_expect: toml::Table::new(),
            severity: Severity::Medium,
        }
    }
}

/// How an observed value is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ge,
    Le,
    Ne,
}

/// An expectation on a sysctl's (first) number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    pub op: Op,
    pub value: i64,
}

impl Expectation {
    /// `"1"`, `"=1"`, `">=1"`, `"<=1"`, `"!=1"`.
    pub fn parse(s: &str) -> Option<Expectation> {
        let s = s.trim();
        let (op, rest) = if let Some(r) = s.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = s.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = s.strip_prefix("!=") {
            (Op::Ne, r)
        } else if let Some(r) = s.strip_prefix("==").or_else(|| s.strip_prefix('=')) {
            (Op::Eq, r)
        } else {
            (Op::Eq, s)
        };
        Some(Expectation {
            op,
            value: rest.trim().parse().ok()?,
        })
    }

    pub fn holds(&self, observed: i64) -> bool {
        match self.op {
            Op::Eq => observed == self.value,
            Op::Ge => observed >= self.value,
            Op::Le => observed <= self.value,
            Op::Ne => observed != self.value,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}

/// One configured expectation and why it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    expectation: Expectation,
    why: Option<&'static str>,
}

#[derive(Debug)]
struct Sysctl {
    expect: BTreeMap<String, Expected>,
    severity: Severity,
}

/// Whether `key` is a plain sysctl name: `[a-z0-9_-]` words joined by single dots.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        })
}

/// Flattens `table` (quoted or dotted keys) into `key → expectation`, naming `field.<key>` on
/// error.
fn parse_expectations(
    field: &str,
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, Expected>,
) -> Result<(), CheckConfigError> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let err = |reason: String| CheckConfigError::new(format!("{field}.{key}"), reason);
        let expectation = match v {
            toml::Value::Table(t) => {
                parse_expectations(field, &key, t, out)?;
                continue;
            }
            toml::Value::Integer(n) => Expectation {
                op: Op::Eq,
                value: *n,
            },
            toml::Value::String(s) => Expectation::parse(s).ok_or_else(|| {
                err(format!(
                    "{s:?} is not an expectation: \"N\", \">=N\", \"<=N\" or \"!=N\" with an integer N"
                ))
            })?,
            other => {
                return Err(err(format!(
                    "must be an integer or a string like \">=1\", not a {}",
                    other.type_str()
                )));
            }
        };
        if !valid_key(&key) {
            return Err(err(
                "is not a sysctl name (lowercase letters, digits, '_', '-', joined by '.')".into(),
            ));
        }
        out.insert(
            key,
            Expected {
                expectation,
                why: None,
            },
        );
    }
    Ok(())
}

impl Sysctl {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        let mut expect = BTreeMap::new();
        match &c.expect {
            Some(t) => parse_expectations("expect", "", t, &mut expect)?,
            None => {
                for (key, op, value, why) in DEFAULTS {
                    expect.insert(
                        key.to_string(),
                        Expected {
                            expectation: Expectation { op, value },
                            why: Some(why),
                        },
                    );
                }
            }
        }
        parse_expectations("extra_expect", "", &c.extra_expect, &mut expect)?;
        Ok(Sysctl {
            expect,
            severity: c.severity,
        })
    }
}

/// What reading one sysctl gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The value, trimmed.
    Value(String),
    Absent,
    Unreadable(String),
}

/// Reads `key` under `{proc}/sys`.
pub fn read(ctx: &ScanContext, key: &str) -> Observed {
    let path = ctx.proc.join("sys").join(key.replace('.', "/"));
    match std::fs::read(&path) {
        Ok(bytes) => Observed::Value(String::from_utf8_lossy(&bytes).trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Observed::Absent,
        Err(e) => Observed::Unreadable(e.to_string()),
    }
}

/// `Some(title)` when `value`'s first number does not meet `expectation` (or is not a number).
pub fn judge(key: &str, value: &str, expectation: &Expectation) -> Option<String> {
    let first = value.split_whitespace().next().unwrap_or("");
    match first.parse::<i64>() {
        Ok(n) if expectation.holds(n) => None,
        _ => Some(format!(
            "{key} is {}; expected {expectation}",
            if first.is_empty() {
                "empty".to_string()
            } else {
                fsutil::safe_name(first)
            }
        )),
    }
}

impl ScanRule for Sysctl {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        for (key, expected) in &self.expect {
            ctx.check_deadline()?;
            let evidence_path = format!("{}/sys/{}", ctx.proc.display(), key.replace('.', "/"));
            match read(ctx, key) {
                Observed::Absent => out.fact(NAME, key.clone(), "absent"),
                Observed::Unreadable(e) => {
                    out.fact(NAME, key.clone(), "unreadable");
                    out.finding(
                        Severity::Low,
                        format!("{key} could not be read"),
                        "The setting was not judged; give the agent read access to it.",
                        format!("{evidence_path}: {e}"),
                    );
                }
                Observed::Value(v) => {
                    if let Some(title) = judge(key, &v, &expected.expectation) {
                        out.finding(
                            self.severity,
                            title,
                            format!(
                                "{} Set it in /etc/sysctl.d/ and apply it with `sysctl --system`.",
                                expected
                                    .why
                                    .unwrap_or("The setting differs from what this node expects.")
                            ),
                            format!("{evidence_path} = {v}"),
                        );
                    }
                    out.fact(NAME, key.clone(), v);
                }
            }
        }
        Ok(())
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "Kernel hardening sysctls (kptr_restrict, ptrace_scope, protected_* links, redirects, ...)",
        enabled_by_default: true,
        example: "severity = \"medium\"\n\
                  # expect = { \"kernel.kptr_restrict\" = \">=1\" }   # replaces the built-in list\n\
                  [extra_expect]   # added to the built-in list\n\
                  # \"kernel.kptr_restrict\" = 2\n\
                  # \"kernel.perf_event_paranoid\" = \">=2\"\n",
        build: |t| Ok(Box::new(Sysctl::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::{Fixture, changed_keys};

    /// A hardened kernel: every default met.
    fn fixture() -> Fixture {
        let f = Fixture::new();
        for (key, op, value, _) in DEFAULTS {
            let v = match op {
                Op::Ge => value + 1,
                _ => value,
            };
            f.proc_file(&format!("sys/{}", key.replace('.', "/")), &format!("{v}\n"));
        }
        f
    }

    fn set(f: &Fixture, key: &str, value: &str) {
        f.proc_file(&format!("sys/{}", key.replace('.', "/")), value);
    }

    fn rule() -> Sysctl {
        Sysctl::new(Config::default()).unwrap()
    }

    fn from_toml(text: &str) -> Result<Sysctl, CheckConfigError> {
        Sysctl::new(parse_table(&text.parse::<toml::Table>().unwrap())?)
    }

    #[test]
    fn expectations_parse_and_print() {
        for (s, op, v, shown) in [
            ("1", Op::Eq, 1, "1"),
            ("=1", Op::Eq, 1, "1"),
            (" == 2 ", Op::Eq, 2, "2"),
            (">=1", Op::Ge, 1, ">=1"),
            ("<= -1", Op::Le, -1, "<=-1"),
            ("!=0", Op::Ne, 0, "!=0"),
        ] {
            let e = Expectation::parse(s).unwrap();
            assert_eq!((e.op, e.value), (op, v), "{s}");
            assert_eq!(e.to_string(), shown);
        }
        for bad in ["", ">1", ">=", "one", "1.5", ">=1 2"] {
            assert_eq!(Expectation::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hardened_kernel_has_no_findings() {
        let f = fixture();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none());
        assert!(out.findings().is_empty(), "{:?}", out.findings());
        let facts = out.category(NAME);
        assert_eq!(facts.len(), DEFAULTS.len());
        assert_eq!(facts["kernel.kptr_restrict"], "2");
        assert_eq!(facts["kernel.randomize_va_space"], "2");
    }

    #[test]
    fn each_unmet_default_is_a_finding() {
        let f = fixture();
        set(&f, "kernel.kptr_restrict", "0\n");
        set(&f, "fs.suid_dumpable", "2\n");
        set(&f, "kernel.yama.ptrace_scope", "garbage\n");
        set(&f, "net.ipv4.tcp_syncookies", "\n");
        let (out, _) = f.run(&rule(), NAME);
        let got: Vec<(Severity, &str)> = out
            .findings()
            .iter()
            .map(|f| (f.severity, f.title.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Severity::Medium, "fs.suid_dumpable is 2; expected 0"),
                (Severity::Medium, "kernel.kptr_restrict is 0; expected >=1"),
                (
                    Severity::Medium,
                    "kernel.yama.ptrace_scope is garbage; expected >=1"
                ),
                (
                    Severity::Medium,
                    "net.ipv4.tcp_syncookies is empty; expected 1"
                ),
            ]
        );
        let kptr = &out.findings()[1];
        assert_eq!(
            kptr.evidence,
            format!("{}/sys/kernel/kptr_restrict = 0", f.proc().display())
        );
        assert!(kptr.detail.starts_with("Kernel addresses"));
        assert_eq!(out.category(NAME)["net.ipv4.tcp_syncookies"], "");
    }

    #[test]
    fn multi_number_values_compare_the_first_and_keep_the_whole_fact() {
        let f = Fixture::new();
        f.proc_file("sys/kernel/printk", "4\t4\t1\t7\n");
        let r = from_toml("[expect]\n\"kernel.printk\" = \"<=3\"\n").unwrap();
        let (out, _) = f.run(&r, NAME);
        assert_eq!(out.findings()[0].title, "kernel.printk is 4; expected <=3");
        assert_eq!(out.category(NAME)["kernel.printk"], "4\t4\t1\t7");
    }

    #[test]
    fn absent_keys_are_facts_only() {
        let f = Fixture::new();
        let (out, err) = f.run(&rule(), NAME);
        assert!(err.is_none());
        assert!(out.findings().is_empty());
        let facts = out.category(NAME);
        assert_eq!(facts.len(), DEFAULTS.len());
        assert!(facts.values().all(|v| v == "absent"));
    }

    #[test]
    fn unreadable_key_is_a_low_finding() {
        // A directory where the value should be fails to read for root too.
        let f = fixture();
        std::fs::remove_file(f.proc().join("sys/fs/suid_dumpable")).unwrap();
        std::fs::create_dir(f.proc().join("sys/fs/suid_dumpable")).unwrap();
        let (out, _) = f.run(&rule(), NAME);
        assert_eq!(out.findings().len(), 1);
        assert_eq!(out.findings()[0].severity, Severity::Low);
        assert_eq!(
            out.findings()[0].title,
            "fs.suid_dumpable could not be read"
        );
        assert_eq!(out.category(NAME)["fs.suid_dumpable"], "unreadable");
    }

    #[test]
    fn expect_replaces_and_extra_expect_adds() {
        let f = fixture();
        set(&f, "kernel.perf_event_paranoid", "1\n");
        set(&f, "kernel.kptr_restrict", "1\n");
        // Dotted TOML keys and quoted keys mean the same.
        let r = from_toml(
            "severity = \"high\"\n[expect]\nkernel.perf_event_paranoid = \">=2\"\n\
             \"kernel.kptr_restrict\" = 1\n",
        )
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert_eq!(
            out.category(NAME).keys().collect::<Vec<_>>(),
            ["kernel.kptr_restrict", "kernel.perf_event_paranoid"],
            "expect replaces the defaults"
        );
        assert_eq!(out.findings().len(), 1);
        assert_eq!(out.findings()[0].severity, Severity::High);
        assert_eq!(
            out.findings()[0].title,
            "kernel.perf_event_paranoid is 1; expected >=2"
        );

        let r = from_toml(
            "[extra_expect]\n\"kernel.perf_event_paranoid\" = 2\n\"kernel.kptr_restrict\" = 2\n",
        )
        .unwrap();
        let (out, _) = f.run(&r, NAME);
        assert_eq!(out.category(NAME).len(), DEFAULTS.len() + 1);
        let titles: Vec<&str> = out.findings().iter().map(|f| f.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "kernel.kptr_restrict is 1; expected 2",
                "kernel.perf_event_paranoid is 1; expected 2"
            ],
            "extra_expect adds and overrides"
        );
    }

    #[test]
    fn facts_are_stable_and_track_changes() {
        let f = fixture();
        let (a, _) = f.run(&rule(), NAME);
        let (b, _) = f.run(&rule(), NAME);
        assert_eq!(a.facts(), b.facts());
        set(&f, "net.ipv4.conf.all.rp_filter", "0\n");
        let (c, _) = f.run(&rule(), NAME);
        let (before, after) = (a.category(NAME), c.category(NAME));
        let changed = changed_keys(&before, &after);
        assert_eq!(changed, ["net.ipv4.conf.all.rp_filter"]);
        assert_eq!(after["net.ipv4.conf.all.rp_filter"], "0");
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = from_toml("[expect]\n\"kernel.kptr_restrict\" = \">1\"\n").unwrap_err();
        assert_eq!(e.key, "expect.kernel.kptr_restrict");
        let e = from_toml("[extra_expect]\n\"Kernel.X\" = 1\n").unwrap_err();
        assert_eq!(e.key, "extra_expect.Kernel.X");
        let e = from_toml("[extra_expect]\n\"../../etc/passwd\" = 1\n").unwrap_err();
        assert_eq!(e.key, "extra_expect.../../etc/passwd");
        let e = from_toml("[expect]\n\"kernel..x\" = 1\n").unwrap_err();
        assert_eq!(e.key, "expect.kernel..x");
        let e = from_toml("[expect]\nkernel.x = true\n").unwrap_err();
        assert_eq!(e.key, "expect.kernel.x");
        assert!(e.reason.contains("boolean"), "{}", e.reason);
        let e = from_toml("severity = \"dire\"\n").unwrap_err();
        assert_eq!(e.key, "severity");
        let e = from_toml("expected = {}\n").unwrap_err();
        assert_eq!(e.key, "expected");
    }

    #[test]
    fn judge_is_pure() {
        let ge1 = Expectation {
            op: Op::Ge,
            value: 1,
        };
        assert_eq!(judge("k", "1", &ge1), None);
        assert_eq!(judge("k", " 3 0", &ge1), None);
        assert_eq!(
            judge("k", "0", &ge1).as_deref(),
            Some("k is 0; expected >=1")
        );
        assert!(valid_key("net.ipv4.conf.eth-0.rp_filter"));
        assert!(!valid_key("net/ipv4"));
        assert!(!valid_key(".x"));
    }
}
