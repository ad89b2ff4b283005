//! The docs name files and tests by path (`store/src/change.rs`,
//! `command-center/tests/api.rs::a_test_name`): every such path from a crate's folder exists,
//! and every test or function it names is defined there. A doc that names a moved file or a
//! renamed test disagrees with the code.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

use vaultmesh_testkit::{CRATE_DIRS, workspace_root};

/// `(path, names)` for every code span that is a path into a crate, with the `::name`s after
/// it (`a.rs::{b, c}` names two).
fn references(markdown: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (i, span) in markdown.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 {
            continue;
        }
        let (path, rest) = match span.find(".rs") {
            Some(end) => (&span[..end + 3], &span[end + 3..]),
            None => continue,
        };
        // A path from a crate's folder (or the fuzz crate's, outside the workspace).
        let first = path.split('/').next().unwrap_or_default();
        let from_a_crate = CRATE_DIRS.contains(&first) || first == "fuzz";
        if !from_a_crate || path.contains(char::is_whitespace) {
            continue;
        }
        let names = rest
            .strip_prefix("::")
            .map(|r| {
                r.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.push((path.to_string(), names));
    }
    out
}

fn defines(source: &str, name: &str) -> bool {
    ["fn ", "mod ", "struct ", "enum ", "const ", "static "]
        .iter()
        .any(|item| {
            source
                .match_indices(&format!("{item}{name}"))
                .any(|(at, m)| {
                    source[at + m.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                })
        })
}

#[test]
fn every_path_and_test_the_docs_name_exists() {
    let root = workspace_root();
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(root.join("README.md"));
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        let doc_name = doc.strip_prefix(&root).unwrap().display().to_string();
        for (path, names) in references(&text) {
            checked += 1;
            let Ok(source) = std::fs::read_to_string(root.join(Path::new(&path))) else {
                missing.push(format!("{doc_name}: {path} does not exist"));
                continue;
            };
            for name in names {
                if !defines(&source, &name) {
                    missing.push(format!("{doc_name}: {path} defines no {name}"));
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} references found: the parser broke"
    );
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn references_are_read_from_code_spans() {
    let refs = references(
        "see `store/src/a.rs::{one, two}` and `tests/x.rs` and `engines/src/b.rs::three` (`x`)",
    );
    assert_eq!(
        refs,
        [
            (
                "store/src/a.rs".to_string(),
                vec!["one".to_string(), "two".to_string()]
            ),
            ("engines/src/b.rs".to_string(), vec!["three".to_string()]),
        ]
    );
    assert!(defines("fn one() {}", "one") && !defines("fn one_more() {}", "one"));
}
