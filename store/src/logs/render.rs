//! Output of `logs view|tail`: a readable table by default, stored lines with `--json`.
//! Everything shown in the table comes from agents or operators, so control characters are
//! removed before printing (no terminal escape injection).

use std::io::Write;

use vaultmesh_proto::NodeHeartbeat;

use super::severity;
use crate::record::{Head, Line};

/// How matched lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

pub fn header(out: &mut impl Write, format: Format) -> std::io::Result<()> {
    if format == Format::Table {
        writeln!(
            out,
            "{:<20} {:<10} {:<20} {:<8} SUMMARY",
            "TIME (UTC)", "KIND", "NODE", "SEVERITY"
        )?;
    }
    Ok(())
}

/// Prints one stored line.
pub fn line(
    out: &mut impl Write,
    format: Format,
    head: &Head<'_>,
    raw: &[u8],
) -> std::io::Result<()> {
    if format == Format::Json {
        out.write_all(raw)?;
        return out.write_all(b"\n");
    }
    let time = head.time().map_or_else(
        || clean(&head.ts),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    );
    let sev = severity::of_line(&head.kind, raw);
    let (node, summary) = summarize(&head.kind, raw);
    let node = node.unwrap_or_else(|| {
        head.node_id
            .map_or_else(|| "-".to_string(), |id| id.to_string()[..8].to_string())
    });
    writeln!(
        out,
        "{time:<20} {:<10} {:<20} {:<8} {}",
        clean(&head.kind),
        truncate(&node, 20),
        sev,
        truncate(&summary, 110)
    )
}

/// (node label, one-line summary) for a stored line.
fn summarize(kind: &str, raw: &[u8]) -> (Option<String>, String) {
    if kind == "heartbeat"
        && let Ok(l) = serde_json::from_slice::<Line<NodeHeartbeat>>(raw)
    {
        let hb = l.record;
        let mut parts = Vec::new();
        if let Some(m) = &hb.metrics {
            if let Some(load) = m.load {
                parts.push(format!("load {:.2}", load[0]));
            }
            if let Some(p) = m.mem_used_pct() {
                parts.push(format!("mem {p:.0}%"));
            }
            if let Some((mount, p)) = m.fullest_disk() {
                parts.push(format!("disk {} {p:.0}%", clean(mount)));
            }
        }
        parts.push(if hb.cloudflare_ok {
            "tunnel up".into()
        } else {
            "tunnel down".into()
        });
        parts.push(format!("services {}", hb.services()));
        let bad: Vec<String> = hb
            .checks
            .iter()
            .filter(|c| c.status != vaultmesh_proto::CheckStatus::Ok)
            .map(|c| format!("{} {}", clean(&c.name), c.status))
            .collect();
        if !bad.is_empty() {
            parts.push(bad.join(", "));
        }
        return (Some(clean(&hb.hostname)), parts.join(" · "));
    }
    let record = serde_json::from_slice::<Line<serde_json::Value>>(raw)
        .map(|l| l.record.to_string())
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
    (None, clean(&record))
}

/// Removes control characters (terminal escapes, newlines) from untrusted text.
pub fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// `s`, cut to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_loses_control_characters() {
        assert_eq!(clean("a\u{1b}[31mred\nb"), "a[31mredb");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
