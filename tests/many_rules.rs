//! Hundreds of rules on one SFTP server, through the real binary against a
//! real sshd: the rules share the server's few sessions and keep them warm
//! between polls (no handshake per poll), and their polls spread over the
//! interval, at the start and after a reload that changes every rule.

mod common;

use common::sshd::{self, PASSWORD, Sshd, USER};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const RULES: usize = 200;
const INTERVAL_S: f64 = 2.0;
const MAX_SESSIONS: usize = 4;
/// Even, 200 rules at 2 s put 10 polls in a 100 ms window; hash phases
/// bunch a little (up to ~20). All firing together puts 200 in one.
const MOST_IN_100MS: usize = RULES / 5;

fn config(f: &Fixture, sshd: &Sshd, remote: &Path, io_timeout: &str) -> String {
    let mut text = format!(
        "[daemon]\nstate = \"{}\"\n\n[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"{USER}\"\npassword = {{ file = \"{}\" }}\nhost_key = \"{}\"\nmax_sessions = {MAX_SESSIONS}\n\
         io_timeout = \"{io_timeout}\"\n\n",
        f.path("state/ferry.db").display(),
        sshd.port,
        f.path("pw").display(),
        sshd.host_key_fingerprint,
    );
    for r in 0..RULES {
        text += &format!(
            "[[watch]]\nname = \"partner-{r:03}\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
             stable_for = \"0s\"\ninterval = \"{INTERVAL_S}s\"\n\n",
            remote.join(format!("r{r:03}")).display(),
            f.path(&format!("out/r{r:03}")).display(),
        );
    }
    text
}

/// Wall-clock seconds of every "poll starts" event in the daemon's JSON log.
fn poll_starts(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["message"] == "poll starts")
        .map(|e| {
            let t = humantime::parse_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        })
        .collect()
}

/// The most poll starts in one 100 ms window between `from` and `to`.
fn most_in_100ms(starts: &[f64], from: f64, to: f64) -> usize {
    let mut windows = std::collections::HashMap::new();
    for t in starts.iter().filter(|t| (from..to).contains(*t)) {
        *windows.entry((t * 10.0) as i64).or_insert(0usize) += 1;
    }
    windows.values().copied().max().unwrap_or(0)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn logins(sshd: &Sshd) -> usize {
    sshd.log().matches("Accepted password").count()
}

#[test]
fn hundreds_of_rules_share_warm_sessions_and_spread_their_polls() {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    let remote = f.path("remote");
    for r in 0..RULES {
        let dir = remote.join(format!("r{r:03}"));
        sshd::shared_dir(&dir);
        for i in 0..2 {
            std::fs::write(dir.join(format!("f{i}.csv")), format!("{r},{i}")).unwrap();
        }
    }
    std::fs::write(&f.config, config(&f, &sshd, &remote, "30s")).unwrap();
    // Every file delivered first: from here on each directory is unchanged.
    f.once(0);
    assert_eq!(f.files(Some("done")).len(), RULES * 2);

    let before = logins(&sshd);
    let log = f.path("run.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "run", "-c"])
        .arg(&f.config)
        .env("RUST_LOG", "info,ferry::daemon::scheduler=debug");
    let mut run = Proc::spawn(cmd, &log);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();

    // One interval to settle (every rule's first poll), then four more.
    let started = now_s();
    std::thread::sleep(Duration::from_secs_f64(INTERVAL_S * 5.0 + 0.5));
    let steady_from = started + INTERVAL_S + 0.2;
    let steady_to = now_s();
    let starts = poll_starts(&text());
    let steady = starts
        .iter()
        .filter(|t| (steady_from..steady_to).contains(*t))
        .count();
    assert!(
        steady >= RULES * 3,
        "only {steady} polls in four intervals of {RULES} rules:\n{}",
        text()
    );
    let opened = logins(&sshd) - before;
    assert!(
        opened <= MAX_SESSIONS,
        "{opened} SSH logins for {steady} polls: sessions are not shared and kept warm"
    );
    let most = most_in_100ms(&starts, steady_from, steady_to);
    assert!(
        most <= MOST_IN_100MS,
        "{most} of {RULES} rules polled within one 100 ms window"
    );

    // A reload that changes every rule (their server block) must not make
    // them all poll at once.
    std::fs::write(&f.config, config(&f, &sshd, &remote, "31s")).unwrap();
    run.signal(libc::SIGHUP);
    let t0 = Instant::now();
    while !text().contains("configuration reloaded") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no reload:\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reloaded = now_s();
    std::thread::sleep(Duration::from_secs_f64(INTERVAL_S * 2.0 + 0.5));
    let starts = poll_starts(&text());
    let after = starts.iter().filter(|t| **t >= reloaded).count();
    assert!(after >= RULES, "only {after} polls after the reload");
    let most = most_in_100ms(&starts, reloaded - 0.2, now_s());
    assert!(
        most <= MOST_IN_100MS,
        "{most} of {RULES} changed rules polled within one 100 ms window after the reload"
    );
    // The changed server block gets a new pool: at most one more set of sessions.
    let opened = logins(&sshd) - before;
    assert!(opened <= 2 * MAX_SESSIONS, "{opened} SSH logins in all");

    run.signal(libc::SIGTERM);
    let status = run
        .wait(Duration::from_secs(20))
        .expect("ferry did not stop");
    assert!(status.success(), "{}", text());
}
