//! Command-line conventions shared by both binaries: a usage error is one readable line on
//! stderr and exit code 2; `--help` and `--version` print as usual and exit 0.

use clap::Parser;
use clap::error::ErrorKind;

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
