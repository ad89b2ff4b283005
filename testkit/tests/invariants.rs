//! Architecture invariants from `docs/ARCHITECTURE.md`, checked against the real dependency
//! graph (`cargo metadata`) and the sources.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use vaultmesh_testkit::workspace_root;

/// Normal (non-dev, non-build) dependency closure of `package`, by crate name.
fn closure(package: &str) -> BTreeSet<String> {
    closure_in(package, "Cargo.toml")
}

/// [`closure`] in the workspace of `manifest` (relative to the repository root).
fn closure_in(package: &str, manifest: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let deps_of = |id: &str| -> Vec<String> {
        let node = nodes.iter().find(|n| n["id"] == id).unwrap();
        node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_string())
            .collect()
    };
    let root = names
        .iter()
        .find(|(_, n)| **n == package)
        .map(|(id, _)| id.to_string())
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if seen.insert(id.clone()) {
            todo.extend(deps_of(&id));
        }
    }
    seen.iter()
        .map(|id| names[id.as_str()].to_string())
        .collect()
}

fn assert_excludes(package: &str, forbidden: &[&str]) {
    let deps = closure(package);
    let bad: Vec<_> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(bad.is_empty(), "{package} must not depend on {bad:?}");
}

#[test]
fn proto_depends_on_no_runtime() {
    assert_excludes(
        "vaultmesh-proto",
        &[
            "tokio",
            "axum",
            "hyper",
            "reqwest",
            "mio",
            "async-std",
            "smol",
        ],
    );
}

#[test]
fn nothing_on_the_agent_side_links_the_server() {
    for package in [
        "vaultmesh-proto",
        "vaultmesh-process",
        "vaultmesh-agent-core",
        "vaultmesh-checks",
        "vaultmesh-node-agent",
    ] {
        assert_excludes(
            package,
            &[
                "vaultmesh-command-center",
                "vaultmesh-store",
                "axum",
                "maud",
            ],
        );
    }
}

/// The web, UI, mail and metrics crates the store must not know (`http` is the types crate
/// every Rust web stack shares; maud, askama and tera are template engines).
const HTTP_UI_MAIL: &[&str] = &[
    "axum",
    "hyper",
    "http",
    "tower-http",
    "maud",
    "askama",
    "tera",
    "reqwest",
    "lettre",
    "prometheus",
    "vaultmesh-command-center",
];

#[test]
fn the_store_knows_no_http_ui_or_mail() {
    assert_excludes("vaultmesh-store", HTTP_UI_MAIL);
    // Nor the agent: the policies name actions from the contract (`proto::command::ACTIONS`).
    assert_excludes(
        "vaultmesh-store",
        &["vaultmesh-agent-core", "vaultmesh-checks"],
    );
}

#[test]
fn the_engines_know_no_http_or_ui() {
    assert_excludes("vaultmesh-engines", HTTP_UI_MAIL);
    assert_excludes(
        "vaultmesh-engines",
        &["vaultmesh-agent-core", "vaultmesh-checks"],
    );
}

/// `fuzz/` and the store and attention benchmarks reach the parsers, the store and the engines
/// without the HTTP layer: the fuzz crate's dependency graph holds no web, UI or mail crate,
/// and the benchmarks' sources (and the bench library's) do not name one (a binary links only
/// the crates it names; the bench crate also holds `ingest-floor`, a bare axum server).
#[test]
fn fuzz_targets_and_store_benchmarks_do_not_link_the_server() {
    let fuzz = closure_in("vaultmesh-fuzz", "fuzz/Cargo.toml");
    let bad: Vec<_> = ["axum", "maud", "lettre", "vaultmesh-command-center"]
        .iter()
        .filter(|f| fuzz.contains(**f))
        .collect();
    assert!(bad.is_empty(), "the fuzz targets link {bad:?}");
    let root = workspace_root();
    let mut files = rust_files(&root.join("fuzz/fuzz_targets"));
    for bench in [
        "store-bench",
        "attention-bench",
        "ledger-bench",
        "pg-bench",
        "history-bench",
    ] {
        files.push(root.join(format!("bench/src/bin/{bench}.rs")));
    }
    for lib in std::fs::read_dir(root.join("bench/src")).unwrap().flatten() {
        if lib.path().extension().is_some_and(|e| e == "rs") {
            files.push(lib.path());
        }
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for forbidden in ["vaultmesh_command_center", "axum::", "maud::", "lettre::"] {
            assert!(
                !text.contains(forbidden),
                "{} names {forbidden}",
                file.display()
            );
        }
    }
}

/// The Command Center's HTTP layer: the modules (paths under `command-center/src/`) that may name
/// `ApiError`, axum or maud — the router and server (`server.rs`, `listener.rs`), the
/// middleware (`guard.rs`, `access.rs`, `timeout.rs`, `metrics.rs`), the extractors and
/// handlers (`agent_auth.rs`, `api.rs`, `api_tokens.rs`, `commands.rs`, `enroll_tokens.rs`, `oidc/mod.rs`, `sse/`, `ui/`) and the error type that
/// maps every domain error to a status (`error.rs`). The rest of the crate — the CLI and its
/// configuration, the admin client, the notifier plugins, the refusal log, the demo — is not
/// HTTP-serving code and names none of them.
const HTTP_LAYER: &[&str] = &[
    "access.rs",
    "agent_auth.rs",
    "api.rs",
    "api_tokens.rs",
    "commands.rs",
    "enroll_tokens.rs",
    "error.rs",
    "guard.rs",
    "listener.rs",
    "metrics.rs",
    "oidc/mod.rs",
    "server.rs",
    "sse/",
    "timeout.rs",
    "ui/",
];

/// Domain code returns its own errors; only the HTTP layer maps them to status codes. So no
/// crate but the server — not the store, the engines, the plumbing, the contract, nor anything
/// on the agent side — and in the server only [`HTTP_LAYER`] names `ApiError`, axum or maud
/// (in code: a comment may say what a crate does not use).
#[test]
fn only_the_http_layer_names_api_error_axum_or_maud() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in [
        "proto",
        "process",
        "store",
        "engines",
        "agent-core",
        "checks",
        "node-agent",
    ] {
        files.extend(rust_files(&root.join(dir)));
    }
    let server = root.join("command-center/src");
    for file in rust_files(&server) {
        let module = file
            .strip_prefix(&server)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if !HTTP_LAYER.iter().any(|m| module.starts_with(m)) {
            files.push(file);
        }
    }
    assert!(files.len() > 100, "found the sources ({})", files.len());
    let mut named = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for word in ["ApiError", "axum", "maud"] {
                if names(code, word) {
                    named.push(format!(
                        "{}:{}: {word}",
                        file.strip_prefix(&root).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(named.is_empty(), "outside the HTTP layer: {named:#?}");
}

/// The error type knows no handler, middleware or server: every module of the HTTP layer
/// uses it, so it may use none of them back but the guard's refusal it wraps — what the metrics
/// middleware reads from an answer is an extension `error.rs` defines (`Rejected`), and the
/// body limit a `413` names is declared there.
#[test]
fn the_error_type_names_no_other_module_of_the_server_but_the_guard() {
    let text =
        std::fs::read_to_string(workspace_root().join("command-center/src/error.rs")).unwrap();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            assert!(
                code[i..].starts_with("crate::guard::"),
                "command-center/src/error.rs:{}: {}",
                n + 1,
                line.trim()
            );
        }
    }
}

/// Whether `code` has `word` as a whole identifier.
fn names(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(i, _)| {
        !code[..i].chars().next_back().is_some_and(ident)
            && !code[i + word.len()..].chars().next().is_some_and(ident)
    })
}

#[test]
fn the_http_layer_check_sees_a_name_in_code_only() {
    assert!(names("use axum::Router;", "axum"));
    assert!(names("-> Result<(), ApiError> {", "ApiError"));
    assert!(!names("let maude = 1;", "maud"));
    assert!(!names("vaultmesh_axum_free", "axum"));
    for (n, module) in HTTP_LAYER.iter().enumerate() {
        let path = workspace_root().join("command-center/src").join(module);
        assert!(
            path.exists(),
            "HTTP_LAYER[{n}]: {} does not exist",
            path.display()
        );
    }
}

#[test]
fn the_process_plumbing_is_small() {
    // Both binaries share it; it must not pull either program's engine or a web stack.
    assert_excludes(
        "vaultmesh-process",
        &[
            "vaultmesh-proto",
            "vaultmesh-agent-core",
            "vaultmesh-store",
            "vaultmesh-command-center",
            "axum",
            "hyper",
            "reqwest",
        ],
    );
}

#[test]
fn agent_core_never_names_a_built_in_check() {
    assert_excludes("vaultmesh-agent-core", &["vaultmesh-checks"]);
    let names = [
        "disk",
        "load",
        "memory",
        "systemd",
        "cloudflared",
        "sovereign_scan",
        "cpu",
        "net",
        "diskio",
    ];
    for file in rust_files(&workspace_root().join("agent-core/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        // Unit tests may borrow a check's name as sample data; production code may not.
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in production.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue; // docs may use a check as an example
            }
            assert!(
                !code.contains("vaultmesh_checks"),
                "{}:{}: names the checks crate",
                file.display(),
                n + 1
            );
            for name in names {
                assert!(
                    !code.contains(&format!("\"{name}\"")),
                    "{}:{}: names the built-in check {name:?}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = workspace_root();
    let mut missing = Vec::new();
    for dir in vaultmesh_testkit::CRATE_DIRS {
        for file in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            if !text.trim_start().starts_with("//!") {
                missing.push(file.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:?}"
    );
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    todo.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The Command Center's demo simulates its fleet through `agent-core`'s client: the server
/// links neither the benchmarks' simulator nor the test harness.
#[test]
fn the_server_links_no_bench_or_test_crate() {
    assert_excludes(
        "vaultmesh-command-center",
        &["vaultmesh-bench", "vaultmesh-testkit"],
    );
}
