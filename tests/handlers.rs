//! Handlers through the real binary: a flood of output costs ferry no
//! memory, a background process cannot hold up or fake a result, a timeout
//! kills everything the handler started, and ferry's environment stays
//! ferry's.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A fixture whose rule `r` runs `body` as its handler (on top of
/// delivering into the outbox), with `extra` lines in the rule.
fn with_handler(body: &str, extra: &str) -> Fixture {
    let f = Fixture::new(extra);
    let h = script(&f, "h.sh", body);
    let text = std::fs::read_to_string(&f.config).unwrap()
        + &format!("handler = [\"{}\", \"{{local_path}}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f
}

/// The pids a handler wrote, one a line; all of them killed when the guard
/// drops, so a failing test leaves no `sleep 600` behind.
struct Pids(Vec<i32>);

impl Pids {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Pids(text.lines().map(|l| l.trim().parse().unwrap()).collect())
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        kill_pids(&self.0);
    }
}

/// `ferry once` with its log in a file; returns the exit code, the log and
/// the peak resident memory of ferry and the processes it waited for, in KiB.
fn once_measured(f: &Fixture) -> (i32, String, i64) {
    let log = f.path("once.log");
    // Reaped by wait4 below, which std's `wait` cannot replace: only it
    // returns the resource usage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(BIN)
        .args(["once", "-c"])
        .arg(&f.config)
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4(2) to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4(2) on our own child, with valid out-pointers.
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32);
    assert!(libc::WIFEXITED(status), "ferry died: {status}");
    let log = std::fs::read_to_string(log).unwrap();
    (libc::WEXITSTATUS(status), log, usage.ru_maxrss)
}

#[test]
fn a_handler_flooding_its_output_succeeds_and_ferry_keeps_only_a_tail() {
    let f = with_handler(
        "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo END-OF-OUTPUT; \
         head -c 50000000 /dev/zero | tr '\\0' y >&2",
        "",
    );
    f.put("a.csv", b"a");
    let (code, log, max_rss_kib) = once_measured(&f);
    assert_eq!(code, 0, "{}", &log[..log.len().min(5000)]);
    assert_eq!(f.files(Some("done")).len(), 1);
    let line = log
        .lines()
        .find(|l| l.contains("handler succeeded"))
        .unwrap_or_else(|| panic!("no success line in a log of {} bytes", log.len()));
    assert!(line.contains("END-OF-OUTPUT"), "{line}");
    assert!(line.len() < 5000, "the log line holds {} bytes", line.len());
    // 100 MB went through ferry's pipes; reading them whole would need as much.
    assert!(
        max_rss_kib < 40 * 1024,
        "ferry grew to {max_rss_kib} KiB while reading the handler's output"
    );
}

#[test]
fn a_background_process_holding_the_pipes_does_not_hold_up_the_result() {
    let f = Fixture::new("handler_timeout = \"30s\"");
    let pids = f.path("pids");
    let h = script(
        &f,
        "h.sh",
        &format!(
            "sleep 600 & echo $! >> '{}'; echo handed over; exit 0",
            pids.display()
        ),
    );
    let text =
        std::fs::read_to_string(&f.config).unwrap() + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let started = Instant::now();
    let out = f.ferry(&["once"]);
    let took = started.elapsed();
    let _cleanup = Pids::read(&pids);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(took < Duration::from_secs(10), "ferry took {took:?}: {log}");
    assert_eq!(f.files(Some("done")).len(), 1, "{log}");
}

#[test]
fn a_timed_out_handler_takes_its_whole_process_group_with_it() {
    let f = Fixture::new("handler_timeout = \"1s\"");
    let pids = f.path("pids");
    let h = script(
        &f,
        "h.sh",
        &format!("sleep 600 & echo $! >> '{}'; wait", pids.display()),
    );
    let text =
        std::fs::read_to_string(&f.config).unwrap() + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let out = f.ferry(&["once"]);
    let log = String::from_utf8_lossy(&out.stderr);
    let started = Pids::read(&pids);
    assert!(!started.0.is_empty(), "the handler never ran: {log}");
    assert!(log.contains("timed out after 1s"), "{log}");
    let alive = wait_gone(&started.0, Duration::from_secs(5));
    assert!(
        alive.is_empty(),
        "the handler's background processes {alive:?} outlived its timeout"
    );
}

#[test]
fn the_handler_gets_the_names_in_handler_env_and_none_of_ferrys_secrets() {
    let f = Fixture::new("handler_env = [\"HANDLER_TOKEN\", \"NOT_SET_ANYWHERE\"]");
    let seen = f.path("env.out");
    let h = script(&f, "h.sh", &format!("env > '{}'", seen.display()));
    let text =
        std::fs::read_to_string(&f.config).unwrap() + &format!("handler = [\"{}\"]\n", h.display());
    std::fs::write(&f.config, text).unwrap();
    f.put("a.csv", b"a");
    let out = Command::new(BIN)
        .args(["once", "-c"])
        .arg(&f.config)
        .env("PARTNER_PASSWORD", "hunter2")
        .env("HANDLER_TOKEN", "for-the-handler")
        .env("LANG", "C.UTF-8")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let env = std::fs::read_to_string(&seen).unwrap();
    assert!(!env.contains("PARTNER_PASSWORD"), "{env}");
    assert!(!env.contains("hunter2"), "{env}");
    for want in [
        "HANDLER_TOKEN=for-the-handler",
        "LANG=C.UTF-8",
        "PATH=",
        "FERRY_RULE=r",
    ] {
        assert!(
            env.lines().any(|l| l.starts_with(want)),
            "no {want} in:\n{env}"
        );
    }
    assert!(!env.contains("NOT_SET_ANYWHERE"), "{env}");
}
