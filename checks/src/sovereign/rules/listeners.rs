//! `listeners`: sockets accepting traffic from outside the node.
//!
//! Reads `{proc}/net/{tcp,tcp6,udp,udp6}`: TCP sockets in LISTEN, UDP sockets bound and
//! unconnected. Loopback listeners are not inbound and are skipped unless `include_loopback`.
//! Every listener is a fact (`listeners` → `tcp/0.0.0.0:22` = `uid=0`), so the Command Center
//! sees a new one as drift and judges it against the profile's `allowed_listeners`. When the
//! agent's own `allowed` list is set, each listener whose `proto/port` is not in it is also a
//! finding here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;
use vaultmesh_agent_core::registry::{CheckConfigError, parse_table};
use vaultmesh_proto::Severity;
use vaultmesh_proto::scan::AllowedListener;

use crate::sovereign::rule::{RuleError, RuleOutput, ScanContext, ScanRule, ScanRuleRegistration};

pub const NAME: &str = "listeners";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// `proto/port` entries allowed to listen (`tcp/22`, `udp/53`). Unset: facts only.
    allowed: Option<Vec<String>>,
    /// Also report sockets bound to loopback.
    include_loopback: bool,
    /// Severity of an unexpected listener.
    severity: Option<Severity>,
}

#[derive(Debug)]
struct Listeners {
    allowed: Option<Vec<AllowedListener>>,
    include_loopback: bool,
    severity: Severity,
}

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `tcp`, `tcp6`, `udp` or `udp6`.
    pub table: &'static str,
    pub addr: IpAddr,
    pub port: u16,
    pub uid: u32,
}

impl Listener {
    /// `tcp` or `udp`, whatever the address family.
    pub fn proto(&self) -> &'static str {
        if self.table.starts_with("tcp") {
            "tcp"
        } else {
            "udp"
        }
    }

    /// `tcp/0.0.0.0:22`, `tcp6/[::]:22`.
    pub fn key(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("{}/{a}:{}", self.table, self.port),
            IpAddr::V6(a) => format!("{}/[{a}]:{}", self.table, self.port),
        }
    }

    fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }
}

impl Listeners {
    fn new(c: Config) -> Result<Self, CheckConfigError> {
        let allowed = match c.allowed {
            None => None,
            Some(list) => {
                let mut v = Vec::new();
                for (i, entry) in list.iter().enumerate() {
                    v.push(AllowedListener::parse(entry).ok_or_else(|| {
                        CheckConfigError::new(
                            format!("allowed[{i}]"),
                            format!("{entry:?} is not proto/port (e.g. \"tcp/22\")"),
                        )
                    })?);
                }
                Some(v)
            }
        };
        Ok(Listeners {
            allowed,
            include_loopback: c.include_loopback,
            severity: c.severity.unwrap_or(Severity::High),
        })
    }
}

/// Parses one `/proc/net/*` table; `v6` selects the address format.
pub fn parse_table_text(table: &'static str, text: &str) -> Vec<Listener> {
    let tcp = table.starts_with("tcp");
    let v6 = table.ends_with('6');
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let (Some((laddr, lport)), Some((_, rport))) =
            (cols[1].split_once(':'), cols[2].split_once(':'))
        else {
            continue;
        };
        let state = cols[3];
        let listening = if tcp {
            state == "0A"
        } else {
            state == "07" && rport == "0000"
        };
        if !listening {
            continue;
        }
        let (Ok(port), Ok(uid)) = (u16::from_str_radix(lport, 16), cols[7].parse::<u32>()) else {
            continue;
        };
        let Some(addr) = (if v6 { parse_v6(laddr) } else { parse_v4(laddr) }) else {
            continue;
        };
        out.push(Listener {
            table,
            addr,
            port,
            uid,
        });
    }
    out
}

/// The kernel prints each 32-bit word of the address in host byte order.
fn parse_v4(hex: &str) -> Option<IpAddr> {
    let w = u32::from_str_radix(hex, 16).ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())))
}

fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

impl ScanRule for Listeners {
    fn scan(&self, ctx: &ScanContext, out: &mut RuleOutput) -> Result<(), RuleError> {
        let mut read_any = false;
        let mut listeners = Vec::new();
        for table in ["tcp", "tcp6", "udp", "udp6"] {
            let path = ctx.proc.join("net").join(table);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    read_any = true;
                    listeners.extend(parse_table_text(table, &text));
                }
                // No IPv6 on this kernel, or a fixture without it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuleError::new(format!("{}: {e}", path.display()))),
            }
        }
        if !read_any {
            return Err(RuleError::new(format!(
                "no socket tables under {}/net",
                ctx.proc.display()
            )));
        }
        vaultmesh_agent_core::sort::sort_by_key(&mut listeners, Listener::key);
        listeners.dedup();
        for l in listeners {
            if l.is_loopback() && !self.include_loopback {
                continue;
            }
            let key = l.key();
            out.fact(NAME, key.clone(), format!("uid={}", l.uid));
            if let Some(allowed) = &self.allowed
                && !allowed.iter().any(|a| a.allows(&key))
            {
                out.finding(
                    self.severity,
                    format!("Unexpected listener {}/{}", l.proto(), l.port),
                    "A VaultMesh node should accept no inbound connections it does not need; \
                     stop the service or add the port to the sovereign_scan listeners allow list.",
                    format!("{key} (uid {})", l.uid),
                );
            }
        }
        Ok(())
    }
}

inventory::submit! {
    ScanRuleRegistration {
        name: NAME,
        description: "Sockets listening on non-loopback addresses, against an allow list",
        enabled_by_default: true,
        example: "# allowed = [\"tcp/22\"]   # unset: report facts, let the Command Center judge\ninclude_loopback = false\n",
        build: |t| Ok(Box::new(Listeners::new(parse_table(t)?)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sovereign::rules::testutil::Fixture;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0102000A:D431 01 00000000:00000000 02:000A7B1C 00000000     0        0 1003 4 0000000000000000 20 4 1 10 -1
   3: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1004 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
  101: 0F02000A:9C40 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
";

    fn fixture() -> Fixture {
        let f = Fixture::new();
        f.proc_file("net/tcp", TCP);
        f.proc_file("net/tcp6", TCP6);
        f.proc_file("net/udp", UDP);
        f
    }

    #[test]
    fn parses_kernel_tables() {
        let l = parse_table_text("tcp", TCP);
        let keys: Vec<String> = l.iter().map(Listener::key).collect();
        assert_eq!(
            keys,
            ["tcp/0.0.0.0:22", "tcp/127.0.0.1:3306", "tcp/0.0.0.0:8080"]
        );
        assert_eq!(l[2].uid, 1000);
        let l6 = parse_table_text("tcp6", TCP6);
        assert_eq!(l6[0].key(), "tcp6/[::]:22");
        assert_eq!(l6[1].key(), "tcp6/[::1]:631");
        let u = parse_table_text("udp", UDP);
        assert_eq!(
            u.iter().map(Listener::key).collect::<Vec<_>>(),
            ["udp/0.0.0.0:68"],
            "connected UDP is not a listener"
        );
    }

    #[test]
    fn facts_only_without_an_allow_list() {
        let f = fixture();
        let rule = Listeners::new(Config::default()).unwrap();
        let (out, err) = f.run(&rule, NAME);
        assert!(err.is_none());
        assert!(out.findings().is_empty());
        let facts = out.category(NAME);
        assert_eq!(
            facts.keys().collect::<Vec<_>>(),
            [
                "tcp/0.0.0.0:22",
                "tcp/0.0.0.0:8080",
                "tcp6/[::]:22",
                "udp/0.0.0.0:68"
            ],
            "loopback skipped"
        );
        assert_eq!(facts["tcp/0.0.0.0:8080"], "uid=1000");
    }

    #[test]
    fn unexpected_listeners_are_findings() {
        let f = fixture();
        let rule = Listeners::new(Config {
            allowed: Some(vec!["tcp/22".into(), "udp/68".into()]),
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&rule, NAME);
        let titles: Vec<&str> = out.findings().iter().map(|f| f.title.as_str()).collect();
        assert_eq!(titles, ["Unexpected listener tcp/8080"]);
        assert_eq!(out.findings()[0].severity, Severity::High);
        assert!(out.findings()[0].evidence.contains("uid 1000"));
    }

    #[test]
    fn loopback_is_included_on_request_and_bad_config_is_named() {
        let f = fixture();
        let rule = Listeners::new(Config {
            include_loopback: true,
            ..Config::default()
        })
        .unwrap();
        let (out, _) = f.run(&rule, NAME);
        assert!(out.category(NAME).contains_key("tcp/127.0.0.1:3306"));
        let e = Listeners::new(Config {
            allowed: Some(vec!["ssh".into()]),
            ..Config::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "allowed[0]");
    }

    #[test]
    fn missing_proc_is_an_error_not_a_clean_bill() {
        let f = Fixture::new();
        let (_, err) = f.run(&Listeners::new(Config::default()).unwrap(), NAME);
        assert!(err.unwrap().0.contains("no socket tables"));
    }
}
