//! "Did you mean ...?": the known name nearest to a typo, for every refusal that names one
//! (both binaries: config keys and values, policy and notification files, CLI arguments).
//! One rule everywhere: the same name in another case first, else the most similar by
//! Jaro-Winkler (the `strsim` crate; clap's own suggestions use Jaro) at 0.9 or more — high
//! enough that names sharing only a suffix (`LabVault`, `ArchVault`: 0.81) are not offered.

/// How similar a name must be to be suggested.
const THRESHOLD: f64 = 0.9;

/// The candidate `given` most likely meant, if one is near enough. Never `given` itself.
pub fn nearest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = given.to_lowercase();
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        if c == given {
            continue;
        }
        let score = if c.to_lowercase() == lower {
            // Another case of the same name beats any mere resemblance.
            2.0
        } else {
            strsim::jaro_winkler(&lower, &c.to_lowercase())
        };
        if score >= THRESHOLD && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean "X"?` when a candidate is near `given`, else the empty string — for the end
/// of a one-line refusal.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(given, candidates).map_or_else(String::new, |n| format!("; did you mean {n:?}?"))
}

/// The candidate that is `given` in another case (`archvault` → `ArchVault`), if any.
pub fn other_case<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .find(|c| *c != given && c.eq_ignore_ascii_case(given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_are_not() {
        let profiles = ["ArchVault", "DebianVault", "Generic"];
        let actions = [
            "agent.ping",
            "checks.run",
            "scan.sovereign",
            "service.restart",
            "service.status",
        ];
        let kinds = ["heartbeat", "scan", "note", "incident", "attention"];
        for (given, among, want) in [
            ("archvault", &profiles[..], Some("ArchVault")),
            ("ARCHVAULT", &profiles[..], Some("ArchVault")),
            ("DebainVault", &profiles[..], Some("DebianVault")),
            ("LabVault", &profiles[..], None),
            ("ArchVault", &profiles[..], None),
            ("servce.restart", &actions[..], Some("service.restart")),
            ("service.stat", &actions[..], Some("service.status")),
            ("agent.pong", &actions[..], Some("agent.ping")),
            ("reboot", &actions[..], None),
            ("heartbeats", &kinds[..], Some("heartbeat")),
            ("bogus", &kinds[..], None),
        ] {
            assert_eq!(nearest(given, among.iter().copied()), want, "{given}");
        }
        assert_eq!(
            did_you_mean("archvault", profiles),
            "; did you mean \"ArchVault\"?"
        );
        assert_eq!(did_you_mean("bogus", kinds), "");
        assert_eq!(other_case("archvault", profiles), Some("ArchVault"));
        assert_eq!(other_case("ArchVault2", profiles), None);
    }
}
