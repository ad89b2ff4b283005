//! A node's display name: what an admin calls it ("Frankfurt edge 1"), shown in place of its
//! hostname, which stays beside it (the hostname is what the agent reports, and what the node
//! is on the network).
//!
//! Set by an admin (`POST /api/nodes/{id}/rename`, logged as a `node_renamed` event), so it is
//! untrusted text: 1 to [`MAX_CHARS`] characters once trimmed, any script, but no control,
//! bidirectional or invisible character ([`crate::text::deceptive`]), which could make one node
//! read as another. An empty (or all-space) name clears it: the node is shown by its hostname.

/// Longest display name, in characters (not bytes: "東京エッジ" is five).
pub const MAX_CHARS: usize = 64;

/// Why a display name was refused. Each message names the field (`display_name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    #[error("display_name is {len} characters; the limit is {MAX_CHARS}")]
    TooLong { len: usize },
    #[error(
        "display_name contains U+{code:04X}: a control character, or a bidirectional or invisible one, that could make it read as another node's name"
    )]
    Deceptive { code: u32 },
}

/// Checks a display name an admin gave: `Ok(None)` when it is empty once trimmed (the name is
/// cleared), `Ok(Some(trimmed))` when it may be shown, an error naming the field otherwise.
pub fn check(given: &str) -> Result<Option<String>, DisplayNameError> {
    // Deceptive characters first: a trailing zero-width space is not "space" to trim away.
    if let Some(c) = crate::text::first_deceptive(given, &[]) {
        return Err(DisplayNameError::Deceptive { code: u32::from(c) });
    }
    let name = given.trim();
    if name.is_empty() {
        return Ok(None);
    }
    let len = name.chars().count();
    if len > MAX_CHARS {
        return Err(DisplayNameError::TooLong { len });
    }
    Ok(Some(name.to_string()))
}

/// A node as people read it: its display name with its hostname in brackets
/// ("Frankfurt edge 1 (vault-node-01)"), or its hostname alone when it has none.
pub fn labelled(hostname: &str, display_name: Option<&str>) -> String {
    match display_name {
        Some(d) if d != hostname => format!("{d} ({hostname})"),
        _ => hostname.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_trimmed_and_an_empty_one_clears() {
        assert_eq!(
            check("  Frankfurt edge 1 "),
            Ok(Some("Frankfurt edge 1".into()))
        );
        assert_eq!(check(""), Ok(None));
        assert_eq!(check("   "), Ok(None));
        assert_eq!(check("東京エッジ"), Ok(Some("東京エッジ".into())));
    }

    #[test]
    fn sixty_four_characters_pass_and_sixty_five_do_not() {
        let at_limit = "é".repeat(MAX_CHARS); // 128 bytes: characters are counted
        assert_eq!(check(&at_limit), Ok(Some(at_limit.clone())));
        let over = "a".repeat(MAX_CHARS + 1);
        let e = check(&over).unwrap_err();
        assert_eq!(e, DisplayNameError::TooLong { len: 65 });
        assert_eq!(
            e.to_string(),
            "display_name is 65 characters; the limit is 64"
        );
    }

    #[test]
    fn control_bidi_and_zero_width_characters_are_refused_by_code_point() {
        for (s, code) in [
            ("edge\u{202e}1", 0x202E),
            ("edge\u{200b}1", 0x200B),
            ("edge 1\u{200b}", 0x200B),
            ("line\nbreak", 0x0A),
            ("\u{2066}edge\u{2069}", 0x2066),
        ] {
            let e = check(s).unwrap_err();
            assert_eq!(e, DisplayNameError::Deceptive { code }, "{s:?}");
            assert!(e.to_string().starts_with("display_name contains U+"), "{e}");
        }
    }

    #[test]
    fn a_node_reads_as_its_name_with_its_hostname_beside_it() {
        assert_eq!(
            labelled("vault-node-01", Some("Frankfurt edge 1")),
            "Frankfurt edge 1 (vault-node-01)"
        );
        assert_eq!(labelled("vault-node-01", None), "vault-node-01");
        assert_eq!(
            labelled("vault-node-01", Some("vault-node-01")),
            "vault-node-01"
        );
    }
}
