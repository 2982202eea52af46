//! Bandwidth limits through the real binary: a server's limit on a
//! download over SFTP (real sshd), a rule's limit on an upload over FTP
//! (vsftpd), two transfers sharing one server's limit, rule schedules
//! that say `off` or a rate now, and a reload that lifts a limit from a
//! transfer in flight. Times are read from each transfer's own log line
//! (`transfer_ms`), so start-up, connecting and fsync do not blur them.

mod common;

use common::ftp_servers::*;
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// The timed tests run one at a time: side by side they would measure
/// each other's CPU use (debug-built SSH crypto) as much as the limit.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// An SFTP server block `s` (with `extra` lines) and its inbox.
struct Sftp {
    f: Fixture,
    sshd: Sshd,
}

impl Sftp {
    fn start() -> Self {
        let sshd = Sshd::start(Default::default(), &[]);
        let f = Fixture::new("");
        std::fs::write(f.path("pw"), PASSWORD).unwrap();
        Sftp { f, sshd }
    }

    fn server(&self, extra: &str) -> String {
        format!(
            "[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nmax_sessions = 4\nio_timeout = \"20s\"\n{extra}\n\n",
            self.sshd.port,
            self.f.path("pw").display(),
            self.sshd.host_key_fingerprint
        )
    }

    /// A watch rule `name` over the server's `remote/NAME` directory.
    fn rule(&self, name: &str, extra: &str) -> String {
        let dir = self.remote(name);
        sshd::shared_dir(&dir);
        format!(
            "[[watch]]\nname = \"{name}\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
             stable_for = \"0s\"\ninterval = \"200ms\"\n{extra}\n",
            dir.display(),
            self.f.outbox.display()
        )
    }

    fn remote(&self, name: &str) -> PathBuf {
        self.f.path("remote").join(name)
    }

    fn put(&self, rule: &str, file: &str, data: &[u8]) {
        std::fs::write(self.remote(rule).join(file), data).unwrap();
    }
}

/// The `transfer_ms` (the bytes streaming, which is what a limit paces)
/// of the log line with `event` (`"downloaded"`, `"uploaded"`) that also
/// holds `name`. Its `duration_ms` adds connecting, checks, the fsync and
/// the state commit: on a host busy writing back a build, one fsync alone
/// has taken over a second, which says nothing about the limit.
fn took(log: &str, event: &str, name: &str) -> Duration {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("state=\"{event}\"")) && l.contains(name))
        .unwrap_or_else(|| panic!("no {event} line for {name} in:\n{log}"));
    let field = |key: &str| -> u64 {
        line.split(&format!("{key}="))
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    let (transfer, whole) = (field("transfer_ms"), field("duration_ms"));
    assert!(
        transfer <= whole,
        "the transfer ({transfer} ms) is part of the whole ({whole} ms): {line}"
    );
    eprintln!("{name}: transfer {transfer} ms of {whole} ms");
    Duration::from_millis(transfer)
}

#[track_caller]
fn within(d: Duration, lo_ms: u64, hi_ms: u64, what: &str) {
    assert!(
        d >= Duration::from_millis(lo_ms) && d <= Duration::from_millis(hi_ms),
        "{what} took {d:?}, expected {lo_ms}..{hi_ms} ms"
    );
}

/// 20 MiB at 5,000,000 B/s is 4.19 s.
#[test]
fn a_download_over_sftp_under_its_servers_5_mb_s_takes_about_4_s() {
    let _alone = alone();
    let s = Sftp::start();
    s.f.write_config(&(s.server("bandwidth = \"5MB/s\"") + &s.rule("r", "")));
    let data = pattern(20 * MIB, 1);
    s.put("r", "big.bin", &data);
    let t0 = Instant::now();
    let log = s.f.once(0);
    let d = took(&log, "downloaded", "big.bin");
    eprintln!(
        "20 MiB download at 5MB/s: {d:?} (ferry once: {:?})",
        t0.elapsed()
    );
    within(d, 3500, 4500, "the download");
    assert_eq!(std::fs::read(s.f.outbox.join("big.bin")).unwrap(), data);
}

/// Two transfers at once on a server limited to 5 MB/s share it: each
/// 10 MiB file takes about as long as 20 MiB alone, not half of it.
#[test]
fn two_transfers_share_their_servers_limit_fairly() {
    let _alone = alone();
    let s = Sftp::start();
    let config = s.server("bandwidth = \"5MB/s\"") + &s.rule("a", "") + &s.rule("b", "");
    s.f.write_config(&config);
    let (a, b) = (pattern(10 * MIB, 2), pattern(10 * MIB, 3));
    s.put("a", "a.bin", &a);
    s.put("b", "b.bin", &b);
    let log = s.f.once(0);
    let (ta, tb) = (
        took(&log, "downloaded", "a.bin"),
        took(&log, "downloaded", "b.bin"),
    );
    eprintln!("two 10 MiB downloads sharing 5MB/s: {ta:?} and {tb:?}");
    within(ta, 3400, 4800, "a.bin");
    within(tb, 3400, 4800, "b.bin");
    assert_eq!(std::fs::read(s.f.outbox.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(s.f.outbox.join("b.bin")).unwrap(), b);
}

/// `HH:MM` of now plus `minutes`, in local time as ferry reads it.
fn clock_in(minutes: i64) -> String {
    use chrono::Timelike;
    let t = chrono::Local::now() + chrono::Duration::minutes(minutes);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Rule schedules: one says `off` now (unlimited), one says 5MB/s now;
/// both run at once on an unlimited server.
#[test]
fn a_rules_schedule_says_off_or_a_rate_now() {
    let _alone = alone();
    let s = Sftp::start();
    let (before, after) = (clock_in(-1), clock_in(30));
    let free = format!("bandwidth_schedule = [\"{before} off\", \"{after} 1MB/s\"]");
    let held = format!("bandwidth_schedule = [\"{after} off\", \"{before} 5MB/s\"]");
    s.f.write_config(&(s.server("") + &s.rule("free", &free) + &s.rule("held", &held)));
    s.put("free", "free.bin", &pattern(20 * MIB, 4));
    s.put("held", "held.bin", &pattern(20 * MIB, 5));
    let log = s.f.once(0);
    let (tf, th) = (
        took(&log, "downloaded", "free.bin"),
        took(&log, "downloaded", "held.bin"),
    );
    eprintln!("20 MiB with the schedule off: {tf:?}; at 5MB/s: {th:?}");
    // At 1 MB/s it would take 21 s.
    within(tf, 0, 2500, "the download while the schedule says off");
    within(th, 3500, 4500, "the download while the schedule says 5MB/s");
}

/// An upload over FTP under its send rule's 5 MB/s (the server's looser
/// 20MB/s applies too): the other direction and another protocol.
#[test]
fn an_upload_over_ftp_under_its_rules_5_mb_s_takes_about_4_s() {
    let _alone = alone();
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    let root = srv.root.join("pub");
    std::fs::create_dir_all(&root).unwrap();
    let outbox = f.path("out");
    std::fs::create_dir_all(&outbox).unwrap();
    f.write_config(&format!(
        "[servers.dest]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         io_timeout = \"20s\"\nbandwidth = \"20MB/s\"\n\n\
         [[send]]\nname = \"up\"\nserver = \"dest\"\nlocal_dir = \"{}\"\nremote_dir = \"{}\"\n\
         stable_for = \"0s\"\nbandwidth = \"5MB/s\"\n",
        srv.port,
        outbox.display(),
        srv.remote("pub"),
    ));
    let data = pattern(20 * MIB, 6);
    std::fs::write(outbox.join("big.bin"), &data).unwrap();
    let log = f.once(0);
    let d = took(&log, "uploaded", "big.bin");
    eprintln!("20 MiB upload over FTP at 5MB/s: {d:?}");
    within(d, 3500, 4500, "the upload");
    assert_eq!(std::fs::read(root.join("big.bin")).unwrap(), data);
}

/// A reload (SIGHUP) that lifts the server's limit speeds up a download
/// already in flight: at 1 MB/s it would need 21 s.
#[test]
fn a_reload_lifts_a_limit_from_a_transfer_in_flight() {
    let _alone = alone();
    let s = Sftp::start();
    let rule = s.rule("r", "");
    s.f.write_config(&(s.server("bandwidth = \"1MB/s\"") + &rule));
    let data = pattern(20 * MIB, 7);
    s.put("r", "big.bin", &data);
    let daemon = s.f.spawn_run();
    let outbox = s.f.outbox.clone();
    let partial = || names(&outbox).iter().any(|n| n.ends_with(".ferry-part"));
    wait_for(Duration::from_secs(20), "the download to start", partial);
    std::thread::sleep(Duration::from_millis(500));
    s.f.write_config(&(s.server("") + &rule));
    let t0 = Instant::now();
    daemon.signal(libc::SIGHUP);
    wait_for(Duration::from_secs(8), "the download to finish", || {
        outbox.join("big.bin").exists()
    });
    eprintln!("finished {:?} after the reload", t0.elapsed());
    assert_eq!(std::fs::read(outbox.join("big.bin")).unwrap(), data);
    let log = daemon.log();
    assert!(
        log.contains("bandwidth limit in force") && log.contains("rate=off"),
        "{log}"
    );
}
