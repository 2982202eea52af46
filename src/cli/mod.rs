//! The command line: `run`, `once`, `check`, `status`, `files`, `explain`,
//! `retry`, `forget`, and `completions` and `man` for packaging. Exit codes: 0 ok, 1 some file or rule failed (`once`) or
//! nothing matched, 2 invalid configuration or usage, 3 runtime error
//! (state database, lock).

mod check;
mod completions;
mod connection;
mod explain;
mod files;
mod man;
mod nodes;
pub mod progress_line;
mod status;

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Moves files between servers and local systems, safely."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "FERRY_CONFIG",
        default_value = "/etc/ferry/ferry.toml"
    )]
    pub config: PathBuf,
    /// Log format: text or json on standard error, or journal (journald's
    /// native protocol). Default: journal when systemd connected standard
    /// error to the journal (JOURNAL_STREAM), else text.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll every rule until SIGTERM or SIGINT; SIGHUP reloads.
    Run,
    /// Poll every rule once, process what is due, then exit.
    Once,
    /// Validate the configuration and print a summary.
    Check,
    /// Each rule's last poll, its duration and error, and its files by state.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// List files from the state database.
    Files {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many rows.
        #[arg(long)]
        limit: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Requeue failed files (delivered ones repeat only their post-action).
    Retry {
        #[command(flatten)]
        filter: FilterArgs,
        /// Requeue every failed file.
        #[arg(long)]
        all: bool,
    },
    /// Connect to a server, authenticate, list a directory, and print how the
    /// server identified itself (SSH host key fingerprint; FTPS certificate
    /// subject, issuer, validity and SHA-256, with a warning near its end).
    TestConnection {
        /// A `[servers.NAME]` from the configuration.
        server: String,
        /// Directory to list (default: the first rule's remote_dir on that server, else `/`).
        #[arg(long)]
        dir: Option<String>,
    },
    /// Why a file was or was not taken: the rules that watch it, their
    /// filters, what it waits for, where it went, and its full history.
    Explain {
        /// A path (on the server, in an outbox, or where a file was
        /// delivered), a path relative to --rule's directory, or a row id.
        path_or_id: String,
        /// Only this rule.
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Drop files from the state database; one still on the server is then new.
    Forget {
        #[command(flatten)]
        filter: FilterArgs,
        /// Forget every file that matches (required when no filter is given).
        #[arg(long)]
        all: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `ferry man | man -l -`.
    Man,
}

#[derive(Debug, Args, Clone)]
pub struct FilterArgs {
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this state (seen, stable, downloading, downloaded, delivered, done,
    /// failed, skipped), or as logged: retrying (waiting after a failed
    /// attempt), held. Send rows use the same states: downloading =
    /// uploading, downloaded = uploaded under the temporary name.
    #[arg(long)]
    pub state: Option<StateArg>,
    /// Only paths matching this glob (relative to the rule's remote_dir).
    #[arg(long)]
    pub path: Option<String>,
    /// Only the row with this id.
    #[arg(long)]
    pub id: Option<i64>,
    /// Only files of this direction: listen (watch rules) or send.
    #[arg(long)]
    pub direction: Option<crate::state::Direction>,
}

/// A `--state`: a state of the `state` column, or one the logs print.
#[derive(Debug, Clone, Copy)]
pub enum StateArg {
    Row(crate::state::FileState),
    Logged(crate::state::Condition),
}

impl std::str::FromStr for StateArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use crate::state::{Condition, FileState};
        match s {
            "retrying" => Ok(StateArg::Logged(Condition::Retrying)),
            "held" => Ok(StateArg::Logged(Condition::Held)),
            _ => s.parse().map(StateArg::Row).map_err(|_| {
                let all: Vec<_> = FileState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown state \"{s}\" (one of: {}, retrying, held)",
                    all.join(", ")
                )
            }),
        }
    }
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.rule.is_none()
            && self.state.is_none()
            && self.path.is_none()
            && self.id.is_none()
            && self.direction.is_none()
    }

    fn to_filter(&self, limit: Option<i64>) -> crate::state::FileFilter {
        crate::state::FileFilter {
            rule: self.rule.clone(),
            state: match self.state {
                Some(StateArg::Row(s)) => Some(s),
                _ => None,
            },
            condition: match self.state {
                Some(StateArg::Logged(c)) => Some(c),
                _ => None,
            },
            path: self.path.clone(),
            id: self.id,
            direction: self.direction,
            limit,
        }
    }
}

impl Command {
    /// Commands whose output is read by people and pipes (`| head`): they
    /// end quietly, as other tools do, when the reader goes away. `run` and
    /// `once` keep SIGPIPE ignored: a write to a closed socket is an error
    /// to handle there, not a reason to die.
    pub fn dies_on_closed_pipe(&self) -> bool {
        !matches!(self, Command::Run | Command::Once)
    }
}

/// Runs the parsed command and returns the process exit code.
pub async fn execute(cli: Cli) -> i32 {
    use crate::daemon;
    match cli.command {
        Command::Run => daemon::run(&cli.config).await,
        Command::Once => {
            let _line = progress_line::start();
            daemon::once(&cli.config).await
        }
        Command::Check => check::check(&cli.config).await,
        Command::TestConnection { server, dir } => {
            connection::test(&cli.config, &server, dir.as_deref()).await
        }
        Command::Status { json } => status::status(&cli.config, json).await,
        Command::Files {
            filter,
            limit,
            json,
        } => files::list(&cli.config, &filter.to_filter(limit), json).await,
        Command::Explain {
            path_or_id,
            rule,
            json,
        } => explain::explain(&cli.config, &path_or_id, rule.as_deref(), json).await,
        Command::Retry { filter, all } => {
            if filter.is_empty() && !all {
                eprintln!("ferry retry: name what to requeue (--rule, --path, --id) or pass --all");
                return daemon::EXIT_CONFIG;
            }
            files::retry(&cli.config, &filter.to_filter(None)).await
        }
        Command::Forget { filter, all } => {
            if filter.is_empty() && !all {
                eprintln!(
                    "ferry forget: name what to forget (--rule, --state, --path, --id) or pass --all"
                );
                return daemon::EXIT_CONFIG;
            }
            files::forget(&cli.config, &filter.to_filter(None)).await
        }
        Command::Completions { shell } => completions::print(shell),
        Command::Man => man::print(),
    }
}

/// Writes generated text to standard output; a failed write is a runtime
/// error (exit 3), not a panic.
fn write_stdout(bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => crate::daemon::EXIT_OK,
        Err(e) => {
            eprintln!("ferry: cannot write to standard output: {e}");
            crate::daemon::EXIT_RUNTIME
        }
    }
}

/// Opens the state database named by the configuration, for the commands
/// that only read or change it: they never read the servers' secrets.
async fn open_state(
    config: &std::path::Path,
) -> Result<(crate::config::Config, crate::state::State), i32> {
    use crate::config::{Secrets, load_with};
    let cfg = load_with(config, Secrets::Skip).map_err(|e| {
        eprintln!("{e}");
        crate::daemon::EXIT_CONFIG
    })?;
    match crate::state::State::connect(&cfg.daemon.state).await {
        Ok(state) => {
            // The lease as configured: `ferry status` judges heartbeats by it.
            let me = crate::state::Me::new(&cfg.daemon.node, cfg.daemon.lease);
            Ok((cfg, state.with_me(me)))
        }
        Err(e) => {
            eprintln!("cannot open the state database {}: {e}", cfg.daemon.state);
            Err(crate::daemon::EXIT_RUNTIME)
        }
    }
}

/// `2026-11-24T00:15:00Z` for a time in Unix milliseconds.
fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        None => "-".into(),
    }
}
