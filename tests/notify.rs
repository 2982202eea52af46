//! `ferry run` under `Type=notify`: it says READY=1 with a STATUS= line
//! (rules, transfers in flight, last error), and updates the line when a
//! rule's polls start failing and when they recover. The test plays
//! systemd: it binds the datagram socket that NOTIFY_SOCKET names.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

/// The notification socket, and every datagram received on it so far.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
    /// When each datagram with a STATUS= line arrived.
    status_times: Vec<Instant>,
}

impl Manager {
    fn bind(path: &std::path::Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Manager {
            socket,
            seen: Vec::new(),
            status_times: Vec::new(),
        }
    }

    /// Receives until a datagram holds a line that `want` accepts, and
    /// returns that line; fails after `timeout` with everything received.
    fn wait_line(&mut self, timeout: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let found = self
                .seen
                .iter()
                .flat_map(|d| d.lines())
                .find(|l| want(l))
                .map(str::to_string);
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; received: {:?}",
                self.seen
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
                if datagram.lines().any(|l| l.starts_with("STATUS=")) {
                    self.status_times.push(Instant::now());
                }
                self.seen.push(datagram);
            }
        }
    }

    /// Forgets what was received, so that the next wait sees only news.
    fn clear(&mut self) {
        self.seen.clear();
    }
}

#[test]
fn ready_comes_with_a_status_line_that_follows_poll_errors() {
    let f = Fixture::new("");
    let mut manager = Manager::bind(&f.path("notify.sock"));
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-c"])
        .arg(&f.config)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", f.path("notify.sock"))
        .env_remove("WATCHDOG_USEC");
    let mut daemon = Proc::spawn(cmd, &f.path("run.log"));

    let ready = manager.wait_line(Duration::from_secs(15), "READY=1", |l| l == "READY=1");
    assert_eq!(ready, "READY=1");
    // The first status travels with READY=1, in the same datagram.
    let first = manager
        .seen
        .iter()
        .find(|d| d.lines().any(|l| l == "READY=1"))
        .unwrap()
        .clone();
    assert!(
        first
            .lines()
            .any(|l| l == "STATUS=1 rule, 0 of 4 transfers in flight; no errors"),
        "{first:?}"
    );

    // The inbox vanishes: the rule's polls fail, and the line says so.
    manager.clear();
    std::fs::remove_dir_all(&f.inbox).unwrap();
    let failing = manager.wait_line(Duration::from_secs(15), "a STATUS with the error", |l| {
        l.starts_with("STATUS=") && l.contains("last error")
    });
    let shape = failing
        .strip_prefix("STATUS=1 rule, 0 of 4 transfers in flight; last error ")
        .unwrap_or_else(|| panic!("unexpected shape: {failing}"));
    let (time, rest) = shape.split_once(' ').unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "not an RFC 3339 time: {failing}"
    );
    assert!(rest.starts_with("r: "), "names the rule: {failing}");
    assert!(!rest.contains('\n'));

    // The inbox is back: the next successful poll clears the error.
    manager.clear();
    std::fs::create_dir_all(&f.inbox).unwrap();
    manager.wait_line(Duration::from_secs(20), "the error cleared", |l| {
        l == "STATUS=1 rule, 0 of 4 transfers in flight; no errors"
    });

    // Polls failed every few hundred milliseconds and the line changed
    // with them; still it went out at most once a second, READY=1's
    // included.
    let gaps: Vec<Duration> = manager
        .status_times
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(900)),
        "STATUS= more often than once a second: {gaps:?}"
    );

    daemon.signal(libc::SIGTERM);
    assert!(
        daemon
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "log:\n{}",
        daemon.stderr()
    );
    manager.wait_line(Duration::from_secs(5), "STOPPING=1", |l| l == "STOPPING=1");
}
