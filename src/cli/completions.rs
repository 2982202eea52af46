//! `ferry completions SHELL`: the shell completion script, printed so that
//! the package (and anyone installing by hand) gets it from the binary it
//! describes instead of a copy that drifts from the real options.

use clap::CommandFactory;
use clap_complete::Shell;

/// Writes the completion script for `shell` to standard output.
pub fn print(shell: Shell) -> i32 {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ferry", &mut out);
    super::write_stdout(&out)
}
