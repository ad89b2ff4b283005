//! Command-line conventions shared by both binaries: a usage error is one readable line on
//! stderr and exit code 2; `--help` and `--version` print as usual and exit 0; `--version`
//! names the git commit; `completions SHELL` and `man` print what packages install.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// `0.1.0 (1a2b3c4d5e6f)`: the crate's version and the git commit it was built from (set by
/// `build/version.rs`). Expands in the calling crate.
#[macro_export]
macro_rules! version {
    () => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            " (",
            env!("VAULTMESH_GIT_COMMIT"),
            ")"
        )
    };
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes `T`'s completion script for `shell` to `out`. A reader that went away (`| head`)
/// is not an error.
pub fn completions<T: CommandFactory>(
    shell: Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut cmd = T::command();
    let name = cmd.get_name().to_string();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    ignore_broken_pipe(out.write_all(&buf))
}

/// Writes `T`'s man page (roff, section 1) to `out`.
pub fn man<T: CommandFactory>(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(T::command()).render(&mut buf)?;
    ignore_broken_pipe(out.write_all(&buf))
}

fn ignore_broken_pipe(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Parses the process arguments, or exits: 0 after `--help`/`--version`, 2 with one line
/// (`error: ... (see --help)`) on a usage error.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let rendered = e.render().to_string();
                let first = rendered
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("error: invalid arguments");
                eprintln!("{} (see --help)", first.trim_end());
                std::process::exit(2);
            }
        },
    }
}
