//! Build script of the agent: the git commit for `--version` (`build/version.rs`, shared with
//! the Command Center) and one link option that makes the agent smaller.
//!
//! Identical code folding (`--icf=all`): the linker keeps one copy of functions whose machine
//! code is the same (monomorphized generics over types of the same layout, mostly): about
//! 41 KB off the agent (docs/PERFORMANCE.md). Rust gives no guarantee that two functions
//! have distinct addresses, so folding is sound for Rust code. Only where the linker is known
//! to be LLD (rustup's toolchains link x86_64-unknown-linux-gnu with their own LLD; see
//! [`links_with_rusts_own_lld`]): GNU ld has no `--icf` and would refuse the option. LLD folds
//! identical read-only data too; the agent compares no addresses of statics.

#[path = "../build/version.rs"]
mod version;

fn main() {
    version::main();
    for var in [
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "RUSTC_LINKER",
        "VAULTMESH_AGENT_ICF",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && links_with_rusts_own_lld(&target) {
        println!("cargo:rustc-link-arg-bin=vaultmesh-node-agent=-Wl,--icf=all");
    }
}

/// Whether the agent is linked by the LLD that rustup's toolchains ship and use by default for
/// this target: no linker chosen (in the environment, RUSTFLAGS or `.cargo/config.toml`, which
/// Cargo passes as `RUSTC_LINKER`), no `-fuse-ld`, and that LLD present in rustc's sysroot (a
/// distribution's rustc that links with the system's `cc` and GNU ld has none).
/// `VAULTMESH_AGENT_ICF=0` turns folding off.
fn links_with_rusts_own_lld(target: &str) -> bool {
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let chosen = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || std::env::var_os("RUSTC_LINKER").is_some()
        || rustflags.contains("linker")
        || rustflags.contains("fuse-ld");
    if chosen || std::env::var("VAULTMESH_AGENT_ICF").is_ok_and(|v| v == "0") {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim())
                .join("lib/rustlib")
                .join(target)
                .join("bin/gcc-ld/ld.lld")
                .exists()
        })
        .unwrap_or(false)
}
