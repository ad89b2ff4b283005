//! Build script of the agent: the git commit for `--version` (`build/version.rs`, shared with
//! the Command Center) and one link option that makes the agent smaller.
//!
//! Identical code folding (`--icf=all`): the linker keeps one copy of functions whose machine
//! code is the same (monomorphized generics over types of the same layout, mostly): about
//! 41 KB off the agent (docs/PERFORMANCE.md). Rust gives no guarantee that two functions
//! have distinct addresses, so folding is sound for Rust code. Only where the linker is known
//! to be LLD (rustc's default for x86_64-unknown-linux-gnu and no linker chosen in RUSTFLAGS
//! or the environment): GNU ld has no `--icf`.

#[path = "../build/version.rs"]
mod version;

fn main() {
    version::main();
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let rustflags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let own_linker = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || rustflags.contains("linker");
    if target == "x86_64-unknown-linux-gnu" && !own_linker {
        println!("cargo:rustc-link-arg-bin=vaultmesh-node-agent=-Wl,--icf=all");
    }
}
