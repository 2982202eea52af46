//! Issue 9, "never stuck": the systemd watchdog stops when a rule's work
//! hangs in a system call, and a failing rule backs off. Both through the
//! real binary and real faults: a FUSE mount whose server is stopped (as an
//! NFS mount whose server is gone), and a loopback port nobody listens on.

mod common;

use common::sshfs::Mount;
use common::*;
use std::os::unix::net::UnixDatagram;

use std::process::Command;
use std::time::{Duration, Instant};

/// `ferry run` with a notify socket and a watchdog, killed on drop after
/// the mount's server is continued: a process with a thread inside a hung
/// FUSE call cannot finish exiting.
struct Notified {
    proc: Proc,
    server_pid: i32,
}

impl Notified {
    fn log(&self) -> String {
        self.proc.stderr()
    }
}

impl Drop for Notified {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the sftp-server this test started.
        unsafe { libc::kill(self.server_pid, libc::SIGCONT) };
        // `proc` is killed when it drops, after this.
    }
}

/// Messages from `sock` until `until`, each with when it arrived.
fn receive(sock: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    out
}

fn pings(msgs: &[(Instant, String)]) -> usize {
    msgs.iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .count()
}

#[test]
fn watchdog_pings_stop_while_a_rule_hangs_in_a_system_call() {
    let f = Fixture::new("");
    let src = f.path("nfs-export");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("mounted"), b"").unwrap();
    let mount = Mount::start(f.dir.path(), &src, &f.path("nfs"));
    // Short timeouts give a short stall limit: 1 s + 4 x 1 s + 10 s.
    f.write_config(&format!(
        "[servers.nfs]\nprotocol = \"local\"\nconnect_timeout = \"1s\"\nio_timeout = \"1s\"\n\n\
         [[watch]]\nname = \"nfs\"\nserver = \"nfs\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\ninterval = \"200ms\"\ninclude = [\"*.csv\"]\n",
        mount.mnt.display(),
        f.outbox.display()
    ));
    let sock_path = f.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let log = f.path("run.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-c"])
        .arg(&f.config)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000");
    let ferry = Notified {
        proc: Proc::spawn(cmd, &log),
        server_pid: mount.server_pid,
    };

    // Healthy: ready, files arrive through the mount, pings every 200 ms.
    std::fs::write(src.join("a.csv"), b"1,2\n").unwrap();
    let healthy = receive(&sock, Instant::now() + Duration::from_secs(3));
    assert!(
        healthy.iter().any(|(_, m)| m.contains("READY=1")),
        "{healthy:?}"
    );
    assert!(
        pings(&healthy) >= 8,
        "pings while healthy: {healthy:?}\n{}",
        ferry.log()
    );
    wait_for(Duration::from_secs(10), "a.csv delivered", || {
        f.outbox.join("a.csv").exists()
    });

    // The mount's server stops: the next listing blocks in the kernel.
    mount.signal_server(libc::SIGSTOP);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last_ping = Instant::now();
    while Instant::now() - last_ping < Duration::from_secs(5) {
        assert!(
            Instant::now() < deadline,
            "pings went on while the rule hung:\n{}",
            ferry.log()
        );
        let msgs = receive(&sock, Instant::now() + Duration::from_millis(500));
        if let Some((at, _)) = msgs.iter().rev().find(|(_, m)| m.contains("WATCHDOG=1")) {
            last_ping = *at;
        }
    }
    assert!(ferry.log().contains("rule stuck"), "{}", ferry.log());
}

#[test]
fn a_rule_whose_server_refuses_connections_backs_off() {
    let f = Fixture::new("");
    let closed = free_port();
    f.write_config(&format!(
        "[servers.gone]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {closed}\n\n\
         [[watch]]\nname = \"gone\"\nserver = \"gone\"\nremote_dir = \"/\"\nlocal_dir = \"{}\"\n\
         interval = \"100ms\"\n",
        f.outbox.display()
    ));
    let ferry = f.spawn_run();
    std::thread::sleep(Duration::from_secs(6));
    let log = ferry.log();
    let failed = log.lines().filter(|l| l.contains("poll failed;")).count();
    // Every 100 ms would be about 60 polls; doubling from 100 ms reaches
    // 3.2 s by the sixth failure.
    assert!(
        (3..=9).contains(&failed),
        "{failed} failed polls in 6 s:\n{log}"
    );
    let waits: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("backing off"))
        .filter_map(|l| {
            l.split("retry_in_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        waits.last() > waits.first(),
        "waits did not grow: {waits:?}"
    );
}
