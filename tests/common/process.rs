//! The one way tests start a program: a child owned by a [`Proc`] that is
//! killed by its PID when dropped, readiness by a loopback port, and
//! waiting until a process (ours or a grandchild) is gone.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to open its port.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// Fails the test with how to install what is missing.
pub fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run ./test.sh, or apt-get install {package}"
    );
}

/// A loopback port that was free a moment ago (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running child process, killed (SIGKILL to its PID) and reaped on drop
/// so that a failing test leaves nothing behind.
pub struct Proc {
    child: Option<Child>,
    /// Where its stderr goes, shown when it fails to start.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin and stdout closed and stderr into `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Proc {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("already reaped").id() as i32
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `port` accepts a connection that `ready` approves (a
    /// banner read, or `|_| true`). Fails the test with `logs()` if the
    /// child exits first or [`READY_WITHIN`] passes.
    pub fn wait_port(
        &mut self,
        port: u16,
        mut ready: impl FnMut(TcpStream) -> bool,
        logs: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "{:?} exited ({status}) before it was ready:\n{}",
                    self.log,
                    logs()
                );
            }
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                if ready(s) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nothing ready on port {port} within {READY_WITHIN:?}:\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the child has exited (and is now reaped).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap; nothing if it is already reaped.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `pid` has exited: a zombie nobody reaps yet counts as gone.
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, s)| s.starts_with('Z')),
        Err(_) => true,
    }
}

/// Waits up to `timeout` for every pid to be gone; returns those still alive.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|p| !gone(*p)).collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL to each pid (processes a test's own children started).
pub fn kill_pids(pids: &[i32]) {
    for pid in pids {
        // SAFETY: kill(2) on a process the test started, by its pid.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
}

/// Every process below `pid`, from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = vec![pid];
    let mut found = Vec::new();
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let p: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    while let Some(parent) = parents.pop() {
        for (p, pp) in &all {
            if *pp == parent {
                found.push(*p);
                parents.push(*p);
            }
        }
    }
    found
}
