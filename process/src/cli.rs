//! Command-line conventions shared by both binaries: a usage error is clap's message as one
//! short block on stderr (the error, the arguments it names, its tip) and exit code 2; `--help` and `--version` print as usual and exit 0; `--version`
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

/// The values a set of arguments takes when none is given: their declared defaults, without
/// reading the environment. A config struct that derives `clap::Args` implements `Default`
/// with this, so each default is written once, in its `#[arg(default_value...)]`.
///
/// # Panics
/// If an argument of `T` has no default and is required: a bug in `T`, caught by its tests.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults").no_binary_name(true))
        .mut_args(|a| a.env(None));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("every argument of a config struct has a default");
    T::from_arg_matches(&matches).expect("a config struct's defaults parse")
}

/// Parses the process arguments, or exits: 0 after `--help`/`--version`, 2 on a usage error
/// with clap's whole message as one short block on stderr (see [`usage_block`]).
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                eprintln!("{}", usage_block(&e.render().to_string()));
                std::process::exit(2);
            }
        },
    }
}

/// A clap usage error as one block: every line clap wrote — the error, the arguments it names,
/// its `tip:` lines, the usage line and the pointer to `--help` — without the blank lines
/// between them.
pub fn usage_block(rendered: &str) -> String {
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        "error: invalid arguments (see --help)".to_string()
    } else {
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Args, PartialEq)]
    struct Limits {
        /// Most nodes.
        #[arg(long, env = "VAULTMESH_TEST_UNSET_MAX_NODES", default_value_t = 10)]
        max_nodes: usize,
        /// How often.
        #[arg(long, default_value = "5s", value_parser = crate::duration::parse_nonzero)]
        tick: std::time::Duration,
        #[arg(long)]
        name: Option<String>,
    }

    #[test]
    fn defaults_are_the_declared_ones() {
        assert_eq!(
            defaults::<Limits>(),
            Limits {
                max_nodes: 10,
                tick: std::time::Duration::from_secs(5),
                name: None
            }
        );
    }

    #[derive(Debug, Parser)]
    #[command(name = "prog")]
    struct Args {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        limit: Option<u32>,
    }

    fn block(args: &[&str]) -> String {
        let e = Args::try_parse_from(args).expect_err("a usage error");
        usage_block(&e.render().to_string())
    }

    #[test]
    fn usage_errors_keep_the_argument_names_and_the_tip_without_blank_lines() {
        let missing = block(&["prog"]);
        assert!(
            missing.starts_with(
                "error: the following required arguments were not provided:\n  --listen <LISTEN>\n"
            ),
            "{missing}"
        );
        let typo = block(&["prog", "--lisen", "x"]);
        assert!(
            typo.starts_with("error: unexpected argument '--lisen' found\n  tip: a similar argument exists: '--listen'\n"),
            "{typo}"
        );
        let invalid = block(&["prog", "--listen", "x", "--limit", "many"]);
        assert!(
            invalid.starts_with("error: invalid value 'many' for '--limit <LIMIT>'"),
            "{invalid}"
        );
        for b in [missing, typo, invalid] {
            assert!(!b.lines().any(|l| l.trim().is_empty()), "{b}");
            assert!(b.ends_with("For more information, try '--help'."), "{b}");
        }
    }
}
