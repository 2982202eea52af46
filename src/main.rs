//! The `ferry` binary: parse the command line, set up logs, run.

use clap::Parser;

fn main() {
    let cli = ferry::cli::Cli::parse();
    if cli.command.dies_on_closed_pipe() {
        // Rust ignores SIGPIPE, so `println!` to a closed pipe panics. The
        // default action ends the process quietly instead.
        // SAFETY: no other thread exists yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    ferry::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            std::process::exit(ferry::daemon::EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(ferry::cli::execute(cli));
    std::process::exit(code);
}
