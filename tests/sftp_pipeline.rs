//! The whole Listen pipeline over SFTP, through the real binary against a
//! real sshd: post-actions, handlers, session reuse, resume after a cut
//! connection and after SIGKILL, dead connections replaced, test-connection.

mod common;

use common::cut::Relay;
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::throttle::Throttle;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

struct Sftp {
    f: Fixture,
    sshd: Sshd,
    remote: PathBuf,
}

/// A fixture whose rules read `remote` (shared with the test user) over SFTP.
fn sftp_fixture(port_override: Option<u16>) -> Sftp {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let remote = f.path("remote");
    sshd::shared_dir(&remote.join("inbox"));
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    let s = Sftp { f, sshd, remote };
    s.write_rules(&[("r", "")], port_override);
    s
}

impl Sftp {
    fn write_rules(&self, rules: &[(&str, &str)], port: Option<u16>) {
        let mut text = format!(
            "[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nmax_sessions = 2\nio_timeout = \"5s\"\n\n",
            port.unwrap_or(self.sshd.port),
            self.f.path("pw").display(),
            self.sshd.host_key_fingerprint
        );
        for (name, extra) in rules {
            text += &format!(
                "[[watch]]\nname = \"{name}\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
                 stable_for = \"0s\"\ninterval = \"200ms\"\nretry = {{ attempts = 5, first = \"0s\", max = \"0s\" }}\n{extra}\n",
                self.remote.join("inbox").display(),
                self.f.outbox.display()
            );
        }
        self.f.write_config(&text);
    }

    fn put(&self, rel: &str, data: &[u8]) {
        let p = self.remote.join("inbox").join(rel);
        sshd::shared_dir(p.parent().unwrap());
        std::fs::write(&p, data).unwrap();
    }

    fn logins(&self) -> usize {
        self.sshd.log().matches("Accepted password").count()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[test]
fn move_to_keeps_subpaths_and_one_poll_reuses_its_sessions() {
    let s = sftp_fixture(None);
    let archive = s.remote.join("archive");
    sshd::shared_dir(&archive);
    s.write_rules(
        &[(
            "r",
            &format!("recursive = true\nmove_to = \"{}\"", archive.display()),
        )],
        None,
    );
    for i in 0..20 {
        s.put(&format!("batch/f {i} ü.csv"), &pattern(10_000 + i, i as u8));
    }
    s.put("top.csv", b"top");
    s.f.once(0);
    for i in 0..20 {
        let name = format!("batch/f {i} ü.csv");
        assert_eq!(
            std::fs::read(s.f.outbox.join(&name)).unwrap(),
            pattern(10_000 + i, i as u8)
        );
        assert!(archive.join(&name).exists(), "{name} not archived");
    }
    assert_eq!(std::fs::read(archive.join("top.csv")).unwrap(), b"top");
    assert!(names(&s.remote.join("inbox/batch")).is_empty());
    assert!(
        s.logins() <= 2,
        "{} logins for one poll with max_sessions = 2",
        s.logins()
    );
}

/// Hundreds of small files (fetched in batches, many at once per session)
/// mixed with a few large ones (streamed one by one), all in one poll.
#[test]
fn hundreds_of_small_files_and_some_large_ones_arrive_whole() {
    let s = sftp_fixture(None);
    s.write_rules(&[("r", "")], None);
    let sizes: Vec<usize> = (0..400)
        .map(|i| {
            if i % 100 == 7 {
                300_000 + i
            } else {
                (i * 53) % 20_000
            }
        })
        .collect();
    for (i, len) in sizes.iter().enumerate() {
        s.put(&format!("f{i:03}.bin"), &pattern(*len, i as u8));
    }
    s.f.once(0);
    for (i, len) in sizes.iter().enumerate() {
        let got = std::fs::read(s.f.outbox.join(format!("f{i:03}.bin"))).unwrap();
        assert!(got == pattern(*len, i as u8), "f{i:03}.bin differs");
    }
    assert_eq!(names(&s.f.outbox).len(), 400, "nothing else in the outbox");
    assert!(
        s.logins() <= 2,
        "{} logins with max_sessions = 2",
        s.logins()
    );
}

#[test]
fn delete_and_a_handler_over_sftp() {
    let s = sftp_fixture(None);
    let out = s.f.path("handler.out");
    let h = script(
        &s.f,
        "h.sh",
        &format!(
            "cat \"$1\" >> '{o}'; echo \" $FERRY_HOST:$FERRY_PORT $FERRY_REMOTE_PATH\" >> '{o}'",
            o = out.display()
        ),
    );
    s.write_rules(
        &[(
            "r",
            &format!(
                "delete = true\nhandler = [\"{}\", \"{{local_path}}\"]",
                h.display()
            ),
        )],
        None,
    );
    s.put("a.csv", b"payload");
    s.f.once(0);
    let got = std::fs::read_to_string(&out).unwrap();
    let want = format!(
        "payload 127.0.0.1:{} {}",
        s.sshd.port,
        s.remote.join("inbox/a.csv").display()
    );
    assert_eq!(got.trim(), want);
    assert!(
        !s.remote.join("inbox/a.csv").exists(),
        "not deleted on the server"
    );
    assert_eq!(s.f.files(Some("done")).len(), 1);
}

#[test]
fn a_cut_connection_resumes_from_the_bytes_already_fetched() {
    let sshd_first = sftp_fixture(None);
    let relay = Relay::start(sshd_first.sshd.port);
    sshd_first.write_rules(&[("r", "")], Some(relay.port));
    let s = sshd_first;
    let data = pattern(24 * 1024 * 1024, 7);
    s.put("big.bin", &data);
    relay.cut_after(9 * 1024 * 1024);
    let log = s.f.once(0);
    assert!(log.contains("will retry"), "{log}");
    let partial: Vec<_> = names(&s.f.outbox)
        .into_iter()
        .filter(|n| n.ends_with(".ferry-part"))
        .collect();
    assert_eq!(partial.len(), 1, "{log}");
    relay.unlimited();
    let before = relay.passed.load(std::sync::atomic::Ordering::SeqCst);
    let log = s.f.once(0);
    let sent = relay.passed.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(log.contains("resuming download"), "{log}");
    assert_eq!(
        std::fs::read(s.f.outbox.join("big.bin")).unwrap(),
        data,
        "not byte-identical"
    );
    assert!(
        sent < data.len() as u64,
        "re-sent {sent} bytes of {}",
        data.len()
    );
}

/// What arrived whole before a cut is kept for the next attempt, also
/// when it is still in the download's write buffer: here the first read
/// answer (255 KiB from OpenSSH) is buffered when the cut comes inside the
/// second.
#[test]
fn a_cut_keeps_what_arrived_for_the_next_attempt() {
    let s = sftp_fixture(None);
    let relay = Relay::start(s.sshd.port);
    s.write_rules(&[("r", "")], Some(relay.port));
    let data = pattern(400_000, 5);
    s.put("part.bin", &data);
    // The handshake and the listing take a few kB; the cut lands in the file.
    relay.cut_after(330_000);
    let log = s.f.once(0);
    assert!(log.contains("will retry"), "{log}");
    let partial = part_of(&s.f.outbox, &s.f.files(None)[0]);
    let kept = std::fs::metadata(&partial).map_or(0, |m| m.len());
    assert!(kept > 0 && kept < data.len() as u64, "kept {kept}: {log}");
    assert!(
        std::fs::read(&partial).unwrap() == data[..kept as usize],
        "the partial file is not a prefix of the file"
    );
    relay.unlimited();
    let log = s.f.once(0);
    assert!(
        log.contains(&format!("offset={kept}")) && log.contains("resuming download"),
        "{log}"
    );
    assert!(
        std::fs::read(s.f.outbox.join("part.bin")).unwrap() == data,
        "not byte-identical"
    );
}

/// One unreadable directory and a symlink loop do not stop a recursive
/// rule; the skipped directory shows in `ferry status`; a `move_to` spelled
/// with `//` and a trailing `/` is still recognised as the rule's own.
#[test]
fn a_bad_directory_is_skipped_and_the_archive_never_walked() {
    use std::os::unix::fs::PermissionsExt;
    let s = sftp_fixture(None);
    let inbox = s.remote.join("inbox");
    let archive = format!("{}//archive/", inbox.display());
    sshd::shared_dir(&inbox.join("archive"));
    s.write_rules(
        &[("r", &format!("recursive = true\nmove_to = \"{archive}\""))],
        None,
    );
    let text = std::fs::read_to_string(&s.f.config).unwrap();
    let text = text.replace(
        "max_sessions = 2\n",
        "max_sessions = 2\nfollow_symlinks = true\n",
    );
    std::fs::write(&s.f.config, text).unwrap();
    s.put("top.txt", b"top");
    s.put("ok/a.txt", b"a");
    s.put("locked/b.txt", b"b");
    std::os::unix::fs::symlink("..", inbox.join("ok/loop")).unwrap();
    std::fs::set_permissions(inbox.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let log = s.f.once(0);
    assert!(log.contains("skipping a directory"), "{log}");
    assert_eq!(names(&s.f.outbox), ["ok", "top.txt"], "{log}");
    assert_eq!(names(&s.f.outbox.join("ok")), ["a.txt"], "{log}");
    assert_eq!(names(&inbox.join("archive")), ["ok", "top.txt"], "{log}");
    let log = s.f.once(0);
    assert_eq!(
        names(&s.f.outbox),
        ["ok", "top.txt"],
        "archive re-ingested: {log}"
    );
    let out = s.f.ferry(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["skipped_dirs"], 1, "{status}");
    let why = status[0]["skipped_error"].as_str().unwrap_or_default();
    assert!(why.starts_with("locked: "), "{status}");
    let text = String::from_utf8_lossy(&s.f.ferry(&["status"]).stdout).into_owned();
    assert!(text.contains("1 dir(s) skipped: locked: "), "{text}");
    std::fs::set_permissions(inbox.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Sessions the pool closes end with an SSH disconnect, not a dropped socket.
#[test]
fn closed_sessions_say_goodbye() {
    let s = sftp_fixture(None);
    s.put("a.txt", b"a");
    s.f.once(0);
    assert_eq!(names(&s.f.outbox), ["a.txt"]);
    wait_for(
        Duration::from_secs(5),
        "sshd to log the session end",
        || s.sshd.log().contains("Disconnected from user"),
    );
    let log = s.sshd.log();
    assert!(
        log.contains("Received disconnect from 127.0.0.1") && log.contains("ferry is done"),
        "{log}"
    );
}

/// `io_timeout` is "nothing heard for this long": a download over a slow
/// link whose bytes keep arriving finishes, however long it takes.
#[test]
fn a_slow_link_that_keeps_moving_never_times_out() {
    let s = sftp_fixture(None);
    let slow = Throttle::start(s.sshd.port, 150_000);
    s.write_rules(&[("r", "")], Some(slow.port));
    let text = std::fs::read_to_string(&s.f.config).unwrap();
    let text = text.replace("io_timeout = \"5s\"", "io_timeout = \"10s\"");
    std::fs::write(&s.f.config, text).unwrap();
    let data = pattern(3 * 1024 * 1024, 3);
    s.put("slow.bin", &data);
    let t0 = std::time::Instant::now();
    let log = s.f.once(0);
    assert!(!log.contains("will retry"), "{log}");
    assert_eq!(
        std::fs::read(s.f.outbox.join("slow.bin")).ok().as_deref(),
        Some(&data[..]),
        "not delivered whole: {log}"
    );
    assert!(t0.elapsed() > Duration::from_secs(12), "not throttled?");
}

#[test]
fn sigkill_mid_download_then_restart_resumes() {
    let s = sftp_fixture(None);
    // One stream: segmented downloads resume by ranges (tests/segments.rs).
    let text = std::fs::read_to_string(&s.f.config).unwrap();
    assert!(text.contains("[servers.s]\n"), "{text}");
    let text = text.replace("[servers.s]\n", "[servers.s]\nsegments = 1\n");
    std::fs::write(&s.f.config, text).unwrap();
    let data = pattern(400 * 1024 * 1024, 3);
    s.put("huge.bin", &data);
    let mut d = s.f.spawn_run();
    wait_for(Duration::from_secs(60), "a partial download", || {
        names(&s.f.outbox).iter().any(|n| {
            n.ends_with(".ferry-part")
                && std::fs::metadata(s.f.outbox.join(n)).map_or(0, |m| m.len()) > 8 << 20
        })
    });
    d.kill9();
    let log = s.f.once(0);
    assert!(log.contains("resuming download"), "{log}");
    assert!(
        std::fs::read(s.f.outbox.join("huge.bin")).unwrap() == data,
        "not byte-identical"
    );
    assert!(
        names(&s.f.outbox)
            .iter()
            .all(|n| !n.ends_with(".ferry-part"))
    );
}

#[tokio::test]
async fn a_dead_pooled_connection_is_replaced() {
    let s = sftp_fixture(None);
    let relay = Relay::start(s.sshd.port);
    s.write_rules(&[("r", "")], Some(relay.port));
    let cfg = ferry::config::load(&s.f.config).unwrap();
    let pool = ferry::remote::Pool::new(cfg.servers["s"].clone());
    let dir = s.remote.join("inbox");
    {
        let mut session = pool.get().await.unwrap();
        session.list(dir.to_str().unwrap()).await.unwrap();
    }
    relay.cut_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut session = pool.get().await.unwrap();
    session
        .list(dir.to_str().unwrap())
        .await
        .expect("a fresh connection replaced the dead one");
    assert_eq!(s.logins(), 2);
}

#[test]
fn test_connection_prints_the_host_key_and_lists() {
    let s = sftp_fixture(None);
    s.put("x.csv", b"x");
    let out = s.f.ferry(&["test-connection", "s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&s.sshd.host_key_fingerprint), "{text}");
    assert!(
        text.contains("1 entries (1 files)") && text.contains("x.csv"),
        "{text}"
    );
    // An unknown key: the refusal shows what to pin.
    let empty = s.f.path("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let text = std::fs::read_to_string(&s.f.config).unwrap().replace(
        &format!("host_key = \"{}\"", s.sshd.host_key_fingerprint),
        &format!("known_hosts = \"{}\"", empty.display()),
    );
    std::fs::write(&s.f.config, text).unwrap();
    let out = s.f.ferry(&["test-connection", "s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains(&format!("host_key = \"{}\"", s.sshd.host_key_fingerprint)),
        "{text}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out_on_connect_and_a_stalled_one_on_io() {
    use ferry::remote::ErrorKind;
    // Connect: a listener that never speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let s = sftp_fixture(None);
    s.write_rules(&[("r", "")], Some(silent.local_addr().unwrap().port()));
    let text = std::fs::read_to_string(&s.f.config).unwrap();
    std::fs::write(
        &s.f.config,
        text.replace(
            "io_timeout = \"5s\"",
            "io_timeout = \"1s\"\nconnect_timeout = \"1s\"",
        ),
    )
    .unwrap();
    let cfg = ferry::config::load(&s.f.config).unwrap();
    let t0 = std::time::Instant::now();
    let e = match ferry::remote::Pool::new(cfg.servers["s"].clone())
        .get()
        .await
    {
        Ok(_) => panic!("connected to a silent port"),
        Err(e) => e,
    };
    assert_eq!((e.kind, e.temporary), (ErrorKind::Timeout, true), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // I/O: a connection that stops answering mid-session.
    let relay = Relay::start(s.sshd.port);
    s.write_rules(&[("r", "")], Some(relay.port));
    let text = std::fs::read_to_string(&s.f.config).unwrap();
    std::fs::write(
        &s.f.config,
        text.replace("io_timeout = \"5s\"", "io_timeout = \"1s\""),
    )
    .unwrap();
    let cfg = ferry::config::load(&s.f.config).unwrap();
    let mut session = ferry::remote::Pool::new(cfg.servers["s"].clone())
        .get()
        .await
        .unwrap();
    session.list("/").await.unwrap();
    relay.freeze(true);
    let t0 = std::time::Instant::now();
    let e = session.list("/").await.unwrap_err();
    relay.freeze(false);
    assert_eq!((e.kind, e.temporary), (ErrorKind::Timeout, true), "{e}");
    assert!(e.breaks_session());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn insecure_accept_any_host_key_warns_at_every_connect() {
    let s = sftp_fixture(None);
    let text = std::fs::read_to_string(&s.f.config).unwrap().replace(
        &format!("host_key = \"{}\"", s.sshd.host_key_fingerprint),
        "insecure_accept_any_host_key = true",
    );
    std::fs::write(&s.f.config, text).unwrap();
    for _ in 0..2 {
        let out = s.f.ferry(&["test-connection", "s"]);
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("WARN") && err.contains("NOT verified"),
            "{err}"
        );
    }
}

/// Campaign (never stuck): every connection goes through a slow link and a
/// relay that cuts it at random byte offsets, over at least 50 transfers.
/// Every file must arrive byte-identical, resumed, and none may fail.
/// `FERRY_FAULTS=long` (faults/run) runs it at 150 KB/s.
#[test]
fn slow_link_and_random_cuts_campaign() {
    let long = long_faults();
    let (files, rate) = if long { (60, 150_000) } else { (50, 3_000_000) };
    let s = sftp_fixture(None);
    let slow = Throttle::start(s.sshd.port, rate);
    let relay = Relay::start(slow.port);
    s.write_rules(&[("r", "")], Some(relay.port));
    let text = std::fs::read_to_string(&s.f.config)
        .unwrap()
        .replace("io_timeout = \"5s\"", "io_timeout = \"10s\"")
        .replace("attempts = 5", "attempts = 10000");
    std::fs::write(&s.f.config, text).unwrap();
    let mut expected = Vec::new();
    for i in 0..files {
        // Above the batch size: streamed, so a cut leaves a partial to resume.
        let data = pattern(70_000 + fastrand::usize(0..(rate as usize / 4)), i as u8);
        let name = format!("c{i:03}.bin");
        s.put(&name, &data);
        expected.push((name, data));
    }
    let started = std::time::Instant::now();
    let mut d = s.f.spawn_run();
    let mut cuts = 0;
    let all_done = || {
        let rows = s.f.files(None);
        rows.len() == files && rows.iter().all(|r| r["state"] == "done")
    };
    // Cuts land in transfers: the first listing is let through whole.
    wait_for(Duration::from_secs(30), "the first listing", || {
        s.f.files(None).len() == files
    });
    while !all_done() {
        assert!(
            started.elapsed() < Duration::from_secs(if long { 900 } else { 240 }),
            "not done after {cuts} cuts: {:?}\n{}",
            s.f.files(None),
            d.log()
        );
        // Cut once a random number of bytes more has passed, then let new
        // connections through again.
        let before = relay.passed.load(std::sync::atomic::Ordering::SeqCst);
        let at = fastrand::u64(60_000..(rate / 2).max(120_000));
        relay.cut_after(at);
        let wait = std::time::Instant::now();
        while relay.passed.load(std::sync::atomic::Ordering::SeqCst) < before + at
            && wait.elapsed() < Duration::from_secs(5)
            && !all_done()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if relay.passed.load(std::sync::atomic::Ordering::SeqCst) >= before + at {
            cuts += 1;
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..400)));
        relay.unlimited();
        std::thread::sleep(Duration::from_millis(fastrand::u64(100..600)));
    }
    relay.unlimited();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
    let log = d.log();
    let resumed = log.matches("resuming download").count();
    let mut wrong = 0;
    for (name, data) in &expected {
        if std::fs::read(s.f.outbox.join(name)).ok().as_deref() != Some(&data[..]) {
            wrong += 1;
        }
    }
    let failed = s.f.files(Some("failed")).len();
    eprintln!(
        "slow link + cuts: {files} files at {rate} B/s, {cuts} cuts, {resumed} resumed, {wrong} not identical, {failed} failed, {:.0}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((wrong, failed), (0, 0));
    assert!(cuts >= 5, "too few cuts to prove anything: {cuts}");
    assert!(resumed > 0, "no cut left a partial download to resume");
}
