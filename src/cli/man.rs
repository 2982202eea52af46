//! `ferry man`: the manual page (roff), generated from the same clap
//! definitions as `--help`, so the packaged `ferry.1` lists every command
//! and option the binary really has.

use clap::CommandFactory;

/// Writes `ferry.1` to standard output.
pub fn print() -> i32 {
    let man = clap_mangen::Man::new(super::Cli::command());
    let mut out = Vec::new();
    if let Err(e) = man.render(&mut out) {
        eprintln!("ferry man: {e}");
        return crate::daemon::EXIT_RUNTIME;
    }
    super::write_stdout(&out)
}
