//! Test harness: a temp directory with an inbox, an outbox, a config and a
//! state database, and the real `ferry` binary run as a user would.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use process::{Proc, free_port, gone, kill_pids, require, wait_gone};

pub const BIN: &str = env!("CARGO_BIN_EXE_ferry");

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub config: PathBuf,
}

impl Fixture {
    /// One rule `r` from `inbox` into `outbox`, with `stable_for = "0s"`,
    /// plus the given extra lines inside the `[[watch]]` table.
    pub fn new(rule_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        let outbox = dir.path().join("outbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let f = Fixture {
            config: dir.path().join("ferry.toml"),
            dir,
            inbox,
            outbox,
        };
        f.write_config(&f.rule("r", rule_extra));
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The `[daemon]` table plus `rules`.
    pub fn write_config(&self, rules: &str) {
        let text = format!(
            "[daemon]\nstate = \"{}\"\nmax_transfers = 4\ngrace_period = \"5s\"\n\n{rules}",
            self.path("state/ferry.db").display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// A `[[watch]]` table for `name` over the fixture's inbox and outbox.
    pub fn rule(&self, name: &str, extra: &str) -> String {
        format!(
            "[[watch]]\nname = \"{name}\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\nstable_for = \"0s\"\ninterval = \"200ms\"\nretry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n{extra}\n",
            self.inbox.display(),
            self.outbox.display()
        )
    }

    pub fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.inbox.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    }

    /// `ferry once`, asserting its exit code.
    pub fn once(&self, expect_code: i32) -> String {
        let out = self.ferry(&["once"]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "ferry once log:\n{log}"
        );
        log
    }

    /// Rows from `ferry files --json`, optionally of one state.
    pub fn files(&self, state: Option<&str>) -> Vec<serde_json::Value> {
        let mut args = vec!["files", "--json"];
        if let Some(s) = state {
            args.extend(["--state", s]);
        }
        let out = self.ferry(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn spawn_run(&self) -> Daemon {
        let log = self.path(&format!("run-{}.log", fastrand_name()));
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info");
        Daemon {
            proc: Proc::spawn(cmd, &log),
            log,
        }
    }
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `ferry run`, killed on drop so a failing test leaves nothing behind.
pub struct Daemon {
    proc: Proc,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn signal(&self, sig: i32) {
        self.proc.signal(sig);
    }

    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        match self.proc.wait(timeout) {
            Some(status) => status.code(),
            None => panic!(
                "ferry did not exit within {timeout:?}; log:\n{}",
                self.log()
            ),
        }
    }

    pub fn kill9(&mut self) {
        self.proc.kill();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_for_or(timeout, what, cond, String::new);
}

/// [`wait_for`], with `context()` (a log, say) in the failure message.
pub fn wait_for_or(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The name ferry downloads a file's version under, beside its final name
/// `name`: `.NAME.ID-MTIME-SIZE.ferry-part` (row id and version).
pub fn part_name(name: &str, id: i64, mtime: i64, size: u64) -> String {
    format!(".{name}.{id}-{mtime}-{size}.ferry-part")
}

/// [`part_name`] for a row of `ferry files --json`, in `dir`.
pub fn part_of(dir: &Path, row: &serde_json::Value) -> PathBuf {
    let int = |k: &str| row[k].as_i64().unwrap_or_else(|| panic!("no {k} in {row}"));
    let name = row["path"].as_str().unwrap();
    dir.join(part_name(name, int("id"), int("mtime"), int("size") as u64))
}

/// Whether the fault campaigns run long (`faults/run` sets
/// `FERRY_FAULTS=long`); `./test.sh` runs them short.
pub fn long_faults() -> bool {
    std::env::var("FERRY_FAULTS").is_ok_and(|v| v == "long")
}

/// Names of regular files directly in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A shell-free handler script written into the fixture directory.
pub fn script(f: &Fixture, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = f.path(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

pub mod cut;
pub mod ftp_servers;
pub mod ftp_session;
pub mod postgres;
pub mod process;
pub mod proxies;
pub mod sftp_servers;
pub mod sshd;
pub mod sshfs;
pub mod throttle;
