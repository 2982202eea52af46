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
    // The command runs as a task on the runtime's workers, not on this
    // thread: a worker that sees a socket become ready then polls the task
    // itself, where a future run by `block_on` here would be woken across
    // threads (a futex wake and a context switch) on every readiness
    // event. For `ferry once`, which polls every rule inside this one
    // future, that was a context switch per FTP reply.
    let code = runtime.block_on(async {
        match tokio::spawn(ferry::cli::execute(cli)).await {
            Ok(code) => code,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                eprintln!("ferry: the command's task ended early: {e}");
                ferry::daemon::EXIT_RUNTIME
            }
        }
    });
    std::process::exit(code);
}
