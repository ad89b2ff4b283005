//! Which characters a displayed string may not carry: those that can make it say something
//! other than what an admin sees.
//!
//! Control characters, bidirectional overrides and isolates (which reorder what follows:
//! `evil\u{202e}txt.exe`), and invisible characters (zero-width spaces and joiners, the BOM,
//! soft hyphens, invisible separators and Unicode tags, which hide or smuggle text — two
//! hostnames that look the same but differ). They are refused at the wire in every string an
//! agent or admin sends that the Command Center shows; newline and tab only where the field is
//! multi-line.

/// Whether `c` can deceive a reader: a control character (other than `allowed`), a
/// bidirectional formatting character, or an invisible one.
pub fn deceptive(c: char, allowed: &[char]) -> bool {
    if allowed.contains(&c) {
        return false;
    }
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                       // soft hyphen
            | '\u{034F}'                     // combining grapheme joiner
            | '\u{061C}'                     // Arabic letter mark
            | '\u{115F}' | '\u{1160}'        // Hangul fillers
            | '\u{17B4}' | '\u{17B5}'        // Khmer inherent vowels
            | '\u{180B}'..='\u{180F}'        // Mongolian variation selectors, vowel separator
            | '\u{200B}'..='\u{200F}'        // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'        // line and paragraph separators: a line break
                                             // that `\n` checks do not see
            | '\u{202A}'..='\u{202E}'        // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}'        // word joiner, invisible operators, isolates
            | '\u{3164}'                     // Hangul filler
            | '\u{FE00}'..='\u{FE0F}'        // variation selectors
            | '\u{FEFF}'                     // BOM / zero-width no-break space
            | '\u{FFA0}'                     // halfwidth Hangul filler
            | '\u{FFF9}'..='\u{FFFB}'        // interlinear annotation
            | '\u{1D173}'..='\u{1D17A}'      // musical formatting
            | '\u{E0000}'..='\u{E007F}'      // tags
            | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
        )
}

/// The first deceptive character of `s` (see [`deceptive`]).
pub fn first_deceptive(s: &str, allowed: &[char]) -> Option<char> {
    // Nearly all text is printable ASCII, which deceives nobody: one pass over the bytes
    // settles it without decoding a character.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    s.chars().find(|&c| deceptive(c, allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_deceives_and_what_does_not() {
        for s in [
            "vault\u{202e}10-edon",
            "vault\u{200b}node",
            "vault\u{2066}x\u{2069}",
            "\u{feff}vault",
            "a\u{e0041}",
            "bell\u{7}",
            "one\u{2028}line",
            "one\u{2029}paragraph",
        ] {
            assert!(first_deceptive(s, &[]).is_some(), "{s:?}");
        }
        for s in ["vault-node-01", "Überprüfung", "東京-01", "ok 100%", "café"] {
            assert_eq!(first_deceptive(s, &[]), None, "{s:?}");
        }
        assert_eq!(first_deceptive("line\nline\tx", &['\n', '\t']), None);
        assert!(first_deceptive("line\nline", &[]).is_some());
        assert_eq!(first_deceptive("del\u{7f}", &[]), Some('\u{7f}'));
        assert_eq!(first_deceptive(" ~", &[]), None);
    }
}
