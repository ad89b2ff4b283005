//! Version ordering of the two package managers, written out because no small, maintained
//! crate does it safely: `deb-version` (0.1, 2019) slices strings by character count and panics
//! on non-ASCII input; `debversion` pulls in regex, chrono and num-bigint; `alpm-types` brings
//! url, email_address, winnow and serde_with to an agent that must stay small (issue 24); the
//! `alpm` crate links libalpm. Both functions are short transcriptions of the C they follow and
//! are tested against those projects' own vectors (dpkg's `t-version.c` and apt's
//! `compareversion_test.cc`; pacman's `vercmptest.sh`).

use std::cmp::Ordering;

/// A Debian version split as dpkg's `parseversion` does: `[epoch:]upstream[-revision]`.
/// `None` when the epoch is not a number (dpkg refuses such a version).
fn deb_parts(v: &str) -> Option<(u64, &str, &str)> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => {
            if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (e.parse().ok()?, rest)
        }
        None => (0, v),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    if upstream.is_empty() {
        return None;
    }
    Some((epoch, upstream, revision))
}

/// dpkg's `order()`: digits sort as 0 (end of a non-digit run), letters by their code, `~`
/// before everything (even the end), other characters after letters.
fn deb_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` over one part (upstream or revision).
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        let mut first_diff: i32 = 0;
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = deb_order(a.get(i).copied());
            let bc = deb_order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        while digit(a, i) && digit(b, j) {
            if first_diff == 0 {
                first_diff = i32::from(a[i]) - i32::from(b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

/// Compares two Debian versions as `dpkg --compare-versions` does. `None` when either is not a
/// version dpkg would parse (a non-numeric epoch, an empty upstream part).
pub fn deb_cmp(a: &str, b: &str) -> Option<Ordering> {
    let (ea, ua, ra) = deb_parts(a)?;
    let (eb, ub, rb) = deb_parts(b)?;
    Some(
        ea.cmp(&eb)
            .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
            .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes())),
    )
}

/// rpm's `rpmvercmp`, as libalpm carries it: alternating runs of digits and letters, compared
/// numerically or alphabetically; separators only count by their number.
fn rpmvercmp(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (0usize, 0usize);
    let (mut ptr1, mut ptr2) = (0usize, 0usize);
    let alnum = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_alphanumeric);
    while one < a.len() && two < b.len() {
        while one < a.len() && !alnum(a, one) {
            one += 1;
        }
        while two < b.len() && !alnum(b, two) {
            two += 1;
        }
        if one >= a.len() || two >= b.len() {
            break;
        }
        // Separator runs of different lengths decide.
        if one - ptr1 != two - ptr2 {
            return (one - ptr1).cmp(&(two - ptr2));
        }
        ptr1 = one;
        ptr2 = two;
        let isnum = a[ptr1].is_ascii_digit();
        let class: fn(&u8) -> bool = if isnum {
            u8::is_ascii_digit
        } else {
            u8::is_ascii_alphabetic
        };
        while a.get(ptr1).is_some_and(class) {
            ptr1 += 1;
        }
        while b.get(ptr2).is_some_and(class) {
            ptr2 += 1;
        }
        let (mut s1, mut s2) = (&a[one..ptr1], &b[two..ptr2]);
        if s2.is_empty() {
            // A number beats letters; letters lose to a number.
            return if isnum {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        if isnum {
            while s1.first() == Some(&b'0') {
                s1 = &s1[1..];
            }
            while s2.first() == Some(&b'0') {
                s2 = &s2[1..];
            }
            match s1.len().cmp(&s2.len()) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match s1.cmp(s2) {
            Ordering::Equal => {}
            o => return o,
        }
        one = ptr1;
        two = ptr2;
    }
    let (rest1, rest2) = (a.get(one).copied(), b.get(two).copied());
    if rest1.is_none() && rest2.is_none() {
        return Ordering::Equal;
    }
    // A remaining alpha part never beats an empty one.
    let alpha = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphabetic());
    if (rest1.is_none() && !alpha(rest2)) || alpha(rest1) {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// libalpm's `parseEVR`: `[epoch:]version[-pkgrel]`.
fn evr(s: &str) -> (&str, &str, Option<&str>) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (epoch, rest) = if s.as_bytes().get(digits) == Some(&b':') {
        let e = &s[..digits];
        (if e.is_empty() { "0" } else { e }, &s[digits + 1..])
    } else {
        ("0", s)
    };
    match rest.rsplit_once('-') {
        Some((v, rel)) => (epoch, v, Some(rel)),
        None => (epoch, rest, None),
    }
}

/// Compares two pacman versions as `vercmp` (libalpm's `alpm_pkg_vercmp`) does: epoch, then
/// version, then pkgrel when both have one.
pub fn alpm_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (e1, v1, r1) = evr(a);
    let (e2, v2, r2) = evr(b);
    rpmvercmp(e1.as_bytes(), e2.as_bytes())
        .then_with(|| rpmvercmp(v1.as_bytes(), v2.as_bytes()))
        .then_with(|| match (r1, r2) {
            (Some(r1), Some(r2)) => rpmvercmp(r1.as_bytes(), r2.as_bytes()),
            _ => Ordering::Equal,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    /// dpkg's lib/dpkg/t/t-version.c and apt's test/libapt/compareversion_test.cc (each pair
    /// also checked against `dpkg --compare-versions` when these tests were written).
    const DEB: &[(&str, &str, Ordering)] = &[
        ("0:0-0", "0:0-0", Equal),
        ("0:0.0-0.0", "0:0.0-0.0", Equal),
        ("0:0-0", "1:0-0", Less),
        ("0:0-0", "0:1-0", Less),
        ("0:a-0", "0:b-0", Less),
        ("0:0-0", "0:0-1", Less),
        ("0:0-a", "0:0-b", Less),
        ("0:0~-0", "0:0-0", Less),
        ("0:0~a-0", "0:0~b-0", Less),
        ("1.0~~", "1.0~~a", Less),
        ("1.0~~a", "1.0~", Less),
        ("1.0~", "1.0", Less),
        ("1.0", "1.0a", Less),
        ("1.0~rc1", "1.0", Less),
        ("7.6p2-4", "7.6-0", Greater),
        ("1.0.3-3", "1.0-1", Greater),
        ("1.3", "1.2.2-2", Greater),
        ("1.3", "1.2.2", Greater),
        ("0-pre", "0-pre", Equal),
        ("0-pre", "0-pree", Less),
        ("1.1.6r2-2", "1.1.6r-1", Greater),
        ("2.6b2-1", "2.6b-2", Greater),
        ("98.1p5-1", "98.1-pre2-b6-2", Less),
        ("0.4a6-2", "0.4-1", Greater),
        ("1:3.0.5-2", "1:3.0.5.1", Less),
        ("10.3", "1:0.4", Less),
        ("1:1.25-4", "1:1.25-8", Less),
        ("0:1.18.36", "1.18.36", Equal),
        ("1.18.36", "1.18.35", Greater),
        ("0:1.18.36", "1.18.35", Greater),
        ("9:1.18.36:5.4-20", "10:0.5.1-22", Less),
        ("9:1.18.36:5.4-20", "9:1.18.36:5.5-1", Less),
        ("1.18.36-0.17.35-18", "1.18.36-19", Greater),
        ("1:1.2.13-3", "1:1.2.13-3.1", Less),
        ("2.0.7pre1-4", "2.0.7r-1", Less),
        ("0:0-0-0", "0-0", Greater),
        ("0-0-0-0", "0-0-0", Greater),
        ("0:0", "00:0", Equal),
        ("1:2ab:5", "1:2ab:5", Equal),
        ("7:1-a:b-5", "7:1-a:b-5", Equal),
        ("57:1.2.3abYZ+~-4-5", "57:1.2.3abYZ+~-4-5", Equal),
        ("1.2.3", "0:1.2.3", Equal),
        ("1.2.3", "1.2.3-0", Equal),
        ("009", "9", Equal),
        ("009ab5", "9ab5", Equal),
        ("1.2.3", "1.2.3-1", Less),
        ("1.2.4", "1.2.3", Greater),
        ("1.2.24", "1.2.3", Greater),
        ("0.10.0", "0.8.7", Greater),
        ("3.2", "2.3", Greater),
        ("1.3.2a", "1.3.2", Greater),
        ("0.5.0~git", "0.5.0~git2", Less),
        ("2a", "21", Less),
        ("1.3.2a", "1.3.2b", Less),
        ("1:1.2.3", "1.2.4", Greater),
        ("1:1.2.3", "1:1.2.4", Less),
        ("1.2a+~bCd3", "1.2a++", Less),
        ("1.2a+~bCd3", "1.2a+~", Greater),
        ("5:2", "304-2", Greater),
        ("5:2", "304:2", Less),
        ("25:2", "3:2", Greater),
        ("1:2:123", "1:12:3", Less),
        ("1.2-5", "1.2-3-5", Less),
        ("5.10.0", "5.005", Greater),
        ("3a9.8", "3.10.2", Less),
        ("3a9.8", "3~10", Greater),
        ("1.4+OOo3.0.0~", "1.4+OOo3.0.0-4", Less),
        ("2.4.7-1", "2.4.7-z", Less),
        ("1.002-1+b2", "1.00", Greater),
        // Security and stable updates as they are numbered.
        ("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", Less),
        ("3.0.11-1~deb12u2", "3.0.11-1", Less),
        ("2.36-9+deb12u4", "2.36-9", Greater),
        ("5.15.0-91.101", "5.15.0-101.111", Less),
        ("1.0-1ubuntu0.1", "1.0-1", Greater),
    ];

    #[test]
    fn debian_versions_order_as_dpkg_orders_them() {
        for (a, b, want) in DEB {
            assert_eq!(deb_cmp(a, b), Some(*want), "{a} vs {b}");
            assert_eq!(deb_cmp(b, a), Some(want.reverse()), "{b} vs {a}");
        }
    }

    #[test]
    fn odd_debian_versions_never_panic() {
        assert_eq!(deb_cmp("a:1", "1"), None, "a non-numeric epoch");
        assert_eq!(deb_cmp(":1", "1"), None);
        assert_eq!(deb_cmp("99999999999999999999999:1", "1"), None);
        assert_eq!(deb_cmp("-1", "1"), None, "empty upstream");
        assert_eq!(
            deb_cmp("1.0é", "1.0e"),
            Some(Greater),
            "non-ASCII sorts after letters"
        );
        assert_eq!(deb_cmp("é", "ü").map(|_| ()), Some(()));
        assert_eq!(deb_cmp("1", "1"), Some(Equal));
    }

    /// pacman's test/util/vercmptest.sh.
    const ALPM: &[(&str, &str, Ordering)] = &[
        ("1.5.0", "1.5.0", Equal),
        ("1.5.1", "1.5.0", Greater),
        ("1.5.1", "1.5", Greater),
        ("1.5.0-1", "1.5.0-1", Equal),
        ("1.5.0-1", "1.5.0-2", Less),
        ("1.5.0-1", "1.5.1-1", Less),
        ("1.5.0-2", "1.5.1-1", Less),
        ("1.5-1", "1.5.1-1", Less),
        ("1.5-2", "1.5.1-1", Less),
        ("1.5-2", "1.5.1-2", Less),
        ("1.5", "1.5-1", Equal),
        ("1.5-1", "1.5", Equal),
        ("1.1-1", "1.1", Equal),
        ("1.0-1", "1.1", Less),
        ("1.1-1", "1.0", Greater),
        ("1.5b-1", "1.5-1", Less),
        ("1.5b", "1.5", Less),
        ("1.5b-1", "1.5", Less),
        ("1.5b", "1.5.1", Less),
        ("1.0a", "1.0alpha", Less),
        ("1.0alpha", "1.0b", Less),
        ("1.0b", "1.0beta", Less),
        ("1.0beta", "1.0rc", Less),
        ("1.0rc", "1.0", Less),
        ("1.5.a", "1.5", Greater),
        ("1.5.b", "1.5.a", Greater),
        ("1.5.1", "1.5.b", Greater),
        ("1.5.b-1", "1.5.b", Equal),
        ("1.5-1", "1.5.b", Less),
        ("2.0", "2_0", Equal),
        ("2.0_a", "2_0.a", Equal),
        ("2.0a", "2.0.a", Less),
        ("2___a", "2_a", Greater),
        ("0:1.0", "0:1.0", Equal),
        ("0:1.0", "0:1.1", Less),
        ("1:1.0", "0:1.0", Greater),
        ("1:1.0", "0:1.1", Greater),
        ("1:1.0", "2:1.1", Less),
        ("1:1.0", "0:1.0-1", Greater),
        ("1:1.0-1", "0:1.1-1", Greater),
        ("0:1.0", "1.0", Equal),
        ("0:1.0", "1.1", Less),
        ("0:1.1", "1.0", Greater),
        ("1:1.0", "1.0", Greater),
        ("1:1.0", "1.1", Greater),
        ("1:1.1", "1.1", Greater),
    ];

    #[test]
    fn arch_versions_order_as_vercmp_orders_them() {
        for (a, b, want) in ALPM {
            assert_eq!(alpm_cmp(a, b), *want, "{a} vs {b}");
            assert_eq!(alpm_cmp(b, a), want.reverse(), "{b} vs {a}");
        }
        // Odd input is compared, never a panic.
        for (a, b) in [("", "1"), ("é", "1"), (":", "::"), ("-", "1-"), ("1:", "1")] {
            let _ = alpm_cmp(a, b);
        }
    }
}
