//! Send rules through the real binary: an outbox on this machine uploaded
//! to a local directory, real sshd (SFTP), vsftpd and pyftpdlib (FTP):
//! every `if_exists` policy, staging and temporary-extension modes, the
//! local after-actions, the watcher (moves go at once, files written in
//! place wait for their close), resume after a cut and after SIGKILL (a
//! campaign of kills on each server), and
//! a two-stage gateway (SFTP in, FTP out).

mod common;

use common::cut::Relay;
use common::ftp_servers::*;
use common::sftp_servers::{self, Extensions, SftpServer};
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::throttle::Throttle;
use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a test's files go: the server block, how the server names its
/// directories, and where they are on this machine.
struct Dest {
    server_block: String,
    /// Server path of the destination root.
    remote_root: String,
    /// The same directory on this machine.
    local_root: PathBuf,
}

impl Dest {
    fn remote(&self, rel: &str) -> String {
        format!("{}/{rel}", self.remote_root)
    }
    fn local(&self, rel: &str) -> PathBuf {
        self.local_root.join(rel)
    }
}

fn local_dest(f: &Fixture) -> Dest {
    let root = f.path("server");
    std::fs::create_dir_all(&root).unwrap();
    Dest {
        server_block: String::new(),
        remote_root: root.display().to_string(),
        local_root: root,
    }
}

fn sftp_dest(f: &Fixture, sshd: &Sshd, port: Option<u16>) -> Dest {
    let root = f.path("server");
    sshd::shared_dir(&root);
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    Dest {
        server_block: format!(
            "[servers.dest]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nmax_sessions = 2\nio_timeout = \"5s\"\n\n",
            port.unwrap_or(sshd.port),
            f.path("pw").display(),
            sshd.host_key_fingerprint
        ),
        remote_root: root.display().to_string(),
        local_root: root,
    }
}

fn ftp_dest(srv: &FtpServer, user: Option<(&str, &Path)>) -> Dest {
    let login = user.map_or(String::new(), |(u, pw)| {
        format!(
            "user = \"{u}\"\npassword = {{ file = \"{}\" }}\n",
            pw.display()
        )
    });
    let root = srv.root.join("pub");
    std::fs::create_dir_all(&root).unwrap();
    Dest {
        server_block: format!(
            "[servers.dest]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nmax_sessions = 2\n\
             connect_timeout = \"10s\"\nio_timeout = \"10s\"\n{login}\n",
            srv.port
        ),
        remote_root: srv.remote("pub"),
        local_root: root,
    }
}

fn server_name(d: &Dest) -> &'static str {
    if d.server_block.is_empty() {
        "local"
    } else {
        "dest"
    }
}

/// A `[[send]]` table from `f.path("out/NAME")` to `dest` `remote_dir`.
/// [`ftp_dest`] over explicit FTPS, the test user logged in, the server's
/// self-signed certificate pinned.
fn ftps_dest(f: &Fixture, srv: &FtpServer, certs: &Certs) -> Dest {
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let mut d = ftp_dest(srv, Some((PY_USER, &f.path("ftp-password"))));
    d.server_block = d
        .server_block
        .replace("protocol = \"ftp\"", "protocol = \"ftps\"")
        + &format!("certificate_sha256 = \"{}\"\n", certs.sha256);
    d
}

fn send_rule(f: &Fixture, d: &Dest, name: &str, remote_dir: &str, extra: &str) -> String {
    let outbox = f.path(&format!("out/{name}"));
    std::fs::create_dir_all(&outbox).unwrap();
    format!(
        "[[send]]\nname = \"{name}\"\nserver = \"{}\"\nlocal_dir = \"{}\"\nremote_dir = \"{}\"\n\
         stable_for = \"0s\"\nrescan = \"300ms\"\ncreate_dirs = true\n\
         retry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n{extra}\n",
        server_name(d),
        outbox.display(),
        d.remote(remote_dir),
    )
}

fn drop_file(f: &Fixture, rule: &str, rel: &str, data: &[u8]) -> PathBuf {
    let p = f.path(&format!("out/{rule}/{rel}"));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p
}

/// Lets the SFTP test user write everything under `dir`: the test made it
/// as another user. Only ever under the temp directory.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    assert!(dir.starts_with(std::env::temp_dir()));
    let mode = if dir.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            open_up(&e.unwrap().path());
        }
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn state_of(f: &Fixture, rule: &str, path: &str) -> String {
    let rows = f.files(None);
    let row = rows
        .iter()
        .rfind(|r| r["rule"] == rule && r["path"] == path)
        .unwrap_or_else(|| panic!("no row for {rule}/{path} in {rows:?}"));
    assert_eq!(row["direction"], "send");
    row["state"].as_str().unwrap().to_string()
}

/// ferry's own temporary name for an upload (`common::part_name`).
fn is_temp(name: &str) -> bool {
    name.ends_with(".ferry-part")
}

/// No temporary name left anywhere under `dir`; `log` (ferry's) goes in
/// the failure message.
fn assert_no_temp(dir: &Path, log: &str) {
    for n in names(dir) {
        assert!(
            !is_temp(&n) && !n.ends_with(".part"),
            "temporary file left in {}: {n}; log:\n{log}",
            dir.display()
        );
    }
}

/// Every policy against a server that already has `taken.csv`, with the
/// three temporary-name modes spread over the rules.
fn policies(f: &Fixture, d: &Dest) {
    policies_where(f, d, true)
}

/// [`policies`]; `appends`: whether the server lets a file be continued
/// (REST + STOR or APPE). Where it does not, `append` fails with a clear
/// error and leaves the server's file alone.
fn policies_where(f: &Fixture, d: &Dest, appends: bool) {
    let modes = [
        "",
        "temp_extension = \".part\"",
        &format!("staging_dir = \"{}\"", d.remote("staging")),
    ];
    let policies = ["unique", "overwrite", "append", "error", "skip"];
    let sent = f.path("sent");
    let mut text = d.server_block.clone();
    for (i, p) in policies.iter().enumerate() {
        std::fs::create_dir_all(d.local(p)).unwrap();
        std::fs::write(d.local(&format!("{p}/taken.csv")), b"old;").unwrap();
        let after = if *p == "error" || *p == "skip" {
            String::new()
        } else {
            format!("after = {{ move_to = \"{}\" }}", sent.join(p).display())
        };
        text += &send_rule(
            f,
            d,
            p,
            p,
            &format!(
                "if_exists = \"{p}\"\n{}\n{after}\npreserve_mtime = true",
                modes[i % 3]
            ),
        );
        drop_file(f, p, "taken.csv", b"new;");
        drop_file(f, p, "sub/fresh.csv", &vec![b'x'; 300_000]);
    }
    text = text.replace(
        "[[send]]\nname = \"unique\"",
        "[[send]]\nname = \"unique\"\nrecursive = true",
    );
    for p in policies.iter().skip(1) {
        text = text.replace(
            &format!("[[send]]\nname = \"{p}\""),
            &format!("[[send]]\nname = \"{p}\"\nrecursive = true"),
        );
    }
    f.write_config(&text);
    open_up(&d.local_root);
    // `error` fails its taken file: the pass exits 1.
    let log = f.once(1);

    for p in policies {
        assert_eq!(
            read(&d.local(&format!("{p}/sub/fresh.csv"))),
            vec![b'x'; 300_000],
            "{p}: a fresh name is sent as is; log:\n{log}"
        );
        assert_no_temp(&d.local(p), &log);
        assert_no_temp(&d.local(&format!("{p}/sub")), &log);
    }
    let unique: Vec<_> = names(&d.local("unique"));
    assert_eq!(read(&d.local("unique/taken.csv")), b"old;");
    let stamped: Vec<_> = unique
        .iter()
        .filter(|n| n.starts_with("taken.2") && n.ends_with("Z.csv"))
        .collect();
    assert_eq!(stamped.len(), 1, "unique: {unique:?}");
    assert_eq!(read(&d.local(&format!("unique/{}", stamped[0]))), b"new;");
    assert_eq!(read(&d.local("overwrite/taken.csv")), b"new;");
    if appends {
        assert_eq!(
            read(&d.local("append/taken.csv")),
            b"old;new;",
            "append; log:\n{log}"
        );
        assert!(!f.path("out/append/taken.csv").exists());
        assert_eq!(read(&sent.join("append/taken.csv")), b"new;");
    } else {
        assert_eq!(read(&d.local("append/taken.csv")), b"old;");
        assert_eq!(state_of(f, "append", "taken.csv"), "failed");
        assert!(log.contains("cannot append to"), "{log}");
        assert!(f.path("out/append/taken.csv").exists());
    }
    assert_eq!(read(&d.local("error/taken.csv")), b"old;");
    assert_eq!(read(&d.local("skip/taken.csv")), b"old;");
    assert_eq!(state_of(f, "error", "taken.csv"), "failed");
    assert_eq!(state_of(f, "skip", "taken.csv"), "skipped");
    assert_eq!(state_of(f, "unique", "taken.csv"), "done");
    // Unsent files stay in the outbox; sent ones were moved out of it,
    // and the log says where that happened.
    assert!(log.contains("moved out of the outbox"), "{log}");
    assert!(!log.contains("moved on the server"), "{log}");
    assert!(f.path("out/error/taken.csv").exists());
    assert!(f.path("out/skip/taken.csv").exists());
    assert_eq!(read(&sent.join("unique/sub/fresh.csv")).len(), 300_000);
    if d.server_block.is_empty() || d.server_block.contains("sftp") {
        // preserve_mtime: the remote file has the local file's mtime (seconds).
        use std::os::unix::fs::MetadataExt;
        let local = std::fs::metadata(sent.join("overwrite/taken.csv")).unwrap();
        let remote = std::fs::metadata(d.local("overwrite/taken.csv")).unwrap();
        assert_eq!(local.mtime(), remote.mtime(), "preserve_mtime");
    }
    assert!(names(&d.local("staging")).is_empty() || !d.local("staging").exists());

    // A second pass sends nothing again.
    let log = f.once(0);
    assert!(!log.contains("uploading"), "{log}");
    assert!(!log.contains("uploaded"), "{log}");
}

#[test]
fn policies_to_a_local_directory() {
    let f = Fixture::new("");
    let d = local_dest(&f);
    policies(&f, &d);
}

#[test]
fn policies_over_sftp() {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let d = sftp_dest(&f, &sshd, None);
    policies(&f, &d);
}

/// Other SFTP servers: asyncssh with and without OpenSSH's extensions
/// (without them there is no posix-rename: overwrite removes, then
/// renames) and ProFTPD's mod_sftp.
fn srv_dir(f: &Fixture) -> PathBuf {
    let dir = f.path("srv");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sftp_server_dest(f: &Fixture, server: &SftpServer) -> Dest {
    let root = f.path("server");
    std::fs::create_dir_all(&root).unwrap();
    Dest {
        server_block: server
            .server_block(&f.path("pw"), "")
            .replace("[servers.s]", "[servers.dest]"),
        remote_root: root.display().to_string(),
        local_root: root,
    }
}

#[test]
fn policies_over_asyncssh() {
    let f = Fixture::new("");
    let server = sftp_servers::asyncssh(&srv_dir(&f), Extensions::OpenSsh);
    policies(&f, &sftp_server_dest(&f, &server));
}

#[test]
fn policies_over_asyncssh_without_extensions() {
    let f = Fixture::new("");
    let server = sftp_servers::asyncssh(&srv_dir(&f), Extensions::None);
    policies(&f, &sftp_server_dest(&f, &server));
}

#[test]
fn policies_over_proftpd_mod_sftp() {
    let f = Fixture::new("");
    let server = sftp_servers::proftpd(&srv_dir(&f));
    policies(&f, &sftp_server_dest(&f, &server));
}

#[test]
fn policies_over_ftp_vsftpd() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    let d = ftp_dest(&srv, None);
    policies(&f, &d);
}

#[test]
fn policies_over_ftp_pyftpdlib() {
    let f = Fixture::new("");
    let srv = pyftpdlib(f.dir.path(), PyTls::None, None);
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let d = ftp_dest(&srv, Some((PY_USER, &f.path("ftp-password"))));
    policies(&f, &d);
}

#[test]
fn policies_over_explicit_ftps_pyftpdlib() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = pyftpdlib(&f.path("srv"), PyTls::Explicit, Some(&certs));
    let d = ftps_dest(&f, &srv, &certs);
    policies(&f, &d);
}

/// ProFTPD at its defaults refuses to overwrite (STOR and RNTO onto an
/// existing file), and to REST before STOR: every policy still holds.
#[test]
fn policies_over_ftps_proftpd_that_refuses_overwrites() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = proftpd_tls_with(&f.path("srv"), &certs, false);
    let d = ftps_dest(&f, &srv, &certs);
    policies_where(&f, &d, false);
}

/// `n` files of `size` bytes sent by one `ferry once` to a ProFTPD over
/// FTPS (TLS 1.2 and 1.3, or 1.3 alone), `sessions` at most, into a
/// remote directory that does not exist yet; every file checked. Returns
/// ferry's log and how many control connections ProFTPD saw.
fn uploads_to_proftpd(n: usize, size: usize, sessions: u32, tls13_only: bool) -> (String, usize) {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = if tls13_only {
        proftpd_tls13_only(&f.path("srv"), &certs)
    } else {
        proftpd_tls(&f.path("srv"), &certs)
    };
    let mut d = ftps_dest(&f, &srv, &certs);
    d.server_block = d
        .server_block
        .replace("max_sessions = 2", &format!("max_sessions = {sessions}"));
    let body = |i: usize| vec![b'a' + (i % 26) as u8; size];
    for i in 0..n {
        drop_file(&f, "many", &format!("f{i}.csv"), &body(i));
    }
    let rule = send_rule(&f, &d, "many", "many", "after = { delete = true }");
    f.write_config(&(d.server_block.clone() + &rule));
    let log = f.once(0);
    assert!(
        !data_connection_refused(&log),
        "a data connection was refused:\n{log}"
    );
    for i in 0..n {
        assert_eq!(read(&d.local(&format!("many/f{i}.csv"))), body(i), "f{i}");
    }
    let tls_log = std::fs::read_to_string(f.path("srv/proftpd.tls.log")).unwrap();
    (log, tls_log.matches("TLS/TLS-C requested").count())
}

/// Many uploads, one after another, over one FTPS session to ProFTPD,
/// which refuses a data connection that does not resume a TLS session
/// ("client did not reuse TLS session", 425). ProFTPD gives two TLS 1.3
/// tickets per control connection and none on a resumed upload's data
/// connection, and each ticket resumes once: the third upload was
/// refused. Once they run out, ferry opens a new control connection, over
/// TLS 1.2 from then on, whose session resumes every data connection.
#[test]
fn many_uploads_over_one_ftps_session_to_proftpd() {
    // 300 KB: above the batch size, so each file is its own upload.
    let (log, controls) = uploads_to_proftpd(8, 300_000, 1, false);
    assert!(log.contains("use TLS 1.2 from now on"), "{log}");
    // The probe of the first poll, the first TLS 1.3 connection, one TLS
    // 1.2 connection for the rest.
    assert!(controls <= 3, "{controls} control connections:\n{log}");
}

/// The same against a ProFTPD that speaks TLS 1.3 alone: the attempt at
/// TLS 1.2 fails, is not made again, and every two uploads get a new
/// control connection instead.
#[test]
fn many_uploads_to_a_tls13_only_proftpd() {
    let (log, controls) = uploads_to_proftpd(8, 300_000, 1, true);
    assert!(log.contains("refuses TLS 1.2"), "{log}");
    assert_eq!(log.matches("refuses TLS 1.2").count(), 1, "{log}");
    assert!(controls >= 4, "{controls} control connections:\n{log}");
}

/// A batch of small files into a remote directory that does not exist
/// yet (`create_dirs`): every STOR of the batch is refused (550), the
/// files go on alone and create it. A refused STOR leaves its control
/// connection in step, so it is kept: 100 files over 4 sessions took 256
/// logins (13.8 s on ProFTPD, whose mod_delay slows each) before, 8 after.
#[test]
fn refused_uploads_keep_their_ftps_sessions() {
    let (log, controls) = uploads_to_proftpd(100, 4096, 4, false);
    assert!(controls <= 16, "{controls} control connections:\n{log}");
}

/// A file that fails for good is moved to `after.failed_move_to`, never
/// deleted; `ferry retry --direction send` brings it back and sends it
/// once the cause is gone. `files`, `status` and `forget` see send rows.
#[test]
fn failed_sends_are_kept_and_retried() {
    let f = Fixture::new("");
    let d = local_dest(&f);
    let failed = f.path("failed");
    let mut text = send_rule(
        &f,
        &d,
        "err",
        "in",
        &format!(
            "if_exists = \"error\"\nafter = {{ delete = true, failed_move_to = \"{}\" }}",
            failed.display()
        ),
    );
    text += &f.rule("listen", "");
    f.write_config(&text);
    std::fs::create_dir_all(d.local("in")).unwrap();
    std::fs::write(d.local("in/dup.csv"), b"theirs").unwrap();
    drop_file(&f, "err", "dup.csv", b"ours");
    drop_file(&f, "err", "ok.csv", b"fine");
    f.put("inbound.csv", b"listen side");
    f.once(1);
    assert_eq!(read(&failed.join("dup.csv")), b"ours");
    assert!(!f.path("out/err/dup.csv").exists());
    assert_eq!(read(&d.local("in/ok.csv")), b"fine");
    assert!(!f.path("out/err/ok.csv").exists(), "delete after sending");
    assert_eq!(state_of(&f, "err", "dup.csv"), "failed");

    let sends = f.ferry(&["files", "--json", "--direction", "send"]);
    let rows = String::from_utf8_lossy(&sends.stdout);
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert!(!rows.contains("inbound.csv"), "{rows}");
    let status = f.ferry(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("err"), "{status}");

    std::fs::remove_file(d.local("in/dup.csv")).unwrap();
    let out = f.ferry(&["retry", "--direction", "send", "--state", "failed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.once(0);
    assert_eq!(read(&d.local("in/dup.csv")), b"ours");
    assert!(!failed.join("dup.csv").exists());
    assert_eq!(state_of(&f, "err", "dup.csv"), "done");

    let out = f.ferry(&["forget", "--direction", "send", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = f.files(None);
    assert!(
        left.iter().all(|r| r["direction"] == "listen") && !left.is_empty(),
        "{left:?}"
    );
}

/// A rename into the outbox is sent at once (the rescan is a minute away);
/// a file written in place is not sent before it is closed and quiet; a
/// file that was there before the start (no event ever) is found by the
/// rescan.
#[test]
fn the_watcher_sends_moved_files_at_once_and_waits_for_writers() {
    let f = Fixture::new("");
    let d = local_dest(&f);
    let rule = send_rule(&f, &d, "w", "in", "")
        .replace("rescan = \"300ms\"", "rescan = \"4s\"")
        .replace("stable_for = \"0s\"", "stable_for = \"1s\"");
    f.write_config(&rule);
    drop_file(&f, "w", "before.csv", b"there before the start");
    let mut run = f.spawn_run();
    wait_for(
        Duration::from_secs(15),
        "the rescan to send before.csv",
        || d.local("in/before.csv").exists(),
    );

    std::fs::write(f.path("elsewhere.csv"), b"complete").unwrap();
    let t0 = Instant::now();
    std::fs::rename(f.path("elsewhere.csv"), f.path("out/w/moved.csv")).unwrap();
    wait_for(Duration::from_secs(3), "moved.csv on the server", || {
        d.local("in/moved.csv").exists()
    });
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "moved.csv took {took:?}"
    );

    use std::io::Write;
    let mut w = std::fs::File::create(f.path("out/w/slow.csv")).unwrap();
    w.write_all(b"first half;").unwrap();
    w.flush().unwrap();
    std::thread::sleep(Duration::from_secs(6)); // past a rescan and stable_for
    assert!(
        !d.local("in/slow.csv").exists(),
        "a file still open for writing was sent"
    );
    w.write_all(b"second half").unwrap();
    drop(w);
    wait_for(Duration::from_secs(10), "slow.csv on the server", || {
        d.local("in/slow.csv").exists()
    });
    assert_eq!(read(&d.local("in/slow.csv")), b"first half;second half");
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
}

/// The outbox is watched from the start: a file moved in before the rule's
/// first poll (a start spreads first polls over 10 s) goes at once too.
#[test]
fn a_file_moved_in_before_the_first_poll_goes_at_once() {
    let f = Fixture::new("");
    let d = local_dest(&f);
    // A rule whose first poll comes late in the spread (9-10 s after the
    // start), so that the bound below, with room for a slow machine, still
    // tells the event from that poll.
    let now = std::time::SystemTime::now();
    let late = |name: &str| {
        ferry::daemon::slots::first_poll(name, Duration::from_secs(60), now)
            >= Duration::from_secs(9)
    };
    let name = (0..).map(|i| format!("late{i}")).find(|n| late(n)).unwrap();
    let rule = send_rule(&f, &d, &name, "in", "").replace("rescan = \"300ms\"", "rescan = \"60s\"");
    f.write_config(&rule);
    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(10), "ferry started", || {
        run.log().contains("ferry started")
    });
    std::fs::write(f.path("elsewhere.csv"), b"complete").unwrap();
    let t0 = Instant::now();
    std::fs::rename(
        f.path("elsewhere.csv"),
        f.path(&format!("out/{name}/early.csv")),
    )
    .unwrap();
    wait_for(Duration::from_secs(12), "early.csv on the server", || {
        d.local("in/early.csv").exists()
    });
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "early.csv took {took:?}"
    );
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Over a slow SFTP link: SIGKILL mid-upload, a restart resumes the
/// temporary file; a connection cut mid-upload is resumed by the next
/// attempt. Nothing is ever under its final name before it is whole.
#[test]
fn uploads_resume_after_sigkill_and_after_a_cut() {
    let sshd = Sshd::start(Default::default(), &[]);
    let throttle = Throttle::start(sshd.port, 1_500_000);
    let relay = Relay::start(throttle.port);
    let f = Fixture::new("");
    let d = sftp_dest(&f, &sshd, Some(relay.port));
    let text = d
        .server_block
        .replace("max_sessions = 2", "max_sessions = 1")
        + &send_rule(&f, &d, "big", "in", "temp_extension = \".part\"");
    f.write_config(&text);
    let big = pattern(4_000_000, 3);
    drop_file(&f, "big", "a.bin", &big);

    // Whole or absent under the final name, checked all along.
    let final_path = d.local("in/a.bin");
    let watch_final = || {
        if let Ok(m) = std::fs::metadata(&final_path) {
            assert_eq!(
                m.len(),
                big.len() as u64,
                "a partial file under its final name"
            );
        }
    };

    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(20), "part of the upload", || {
        watch_final();
        names(&d.local("in")).iter().any(|n| {
            n.ends_with(".part")
                && std::fs::metadata(d.local(&format!("in/{n}"))).is_ok_and(|m| m.len() > 500_000)
        })
    });
    run.kill9();
    watch_final();

    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(20), "more of the upload", || {
        watch_final();
        names(&d.local("in")).iter().any(|n| {
            n.ends_with(".part")
                && std::fs::metadata(d.local(&format!("in/{n}"))).is_ok_and(|m| m.len() > 2_000_000)
        })
    });
    relay.cut_all();
    wait_for(Duration::from_secs(30), "the whole file", || {
        watch_final();
        final_path.exists()
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    let log = run.log();
    assert_eq!(read(&final_path), big);
    assert!(log.contains("resuming the upload"), "{log}");
    assert_no_temp(&d.local("in"), &log);
    assert_eq!(state_of(&f, "big", "a.bin"), "done");
}

/// Small files go in batches (many on one session at once); SIGKILL in the
/// middle of them, again and again: every file arrives exactly once (under
/// `unique` a second upload would show as a second, stamped name), whole,
/// and no temporary name is left.
fn small_files_exactly_once(f: &Fixture, d: &Dest) {
    let text =
        d.server_block.clone() + &send_rule(f, d, "small", "in", "after = { delete = true }");
    f.write_config(&text);
    let files: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| {
            (
                format!("s{i:03}.csv"),
                pattern(100 + (i * 97) % 60_000, i as u8),
            )
        })
        .collect();
    for (n, data) in &files {
        drop_file(f, "small", n, data);
    }
    for _ in 0..4 {
        let mut run = f.spawn_run();
        std::thread::sleep(Duration::from_millis(400 + fastrand_ms(600)));
        run.kill9();
    }
    let mut run = f.spawn_run();
    wait_for_or(
        Duration::from_secs(120),
        "every small file sent",
        || names(&f.path("out/small")).is_empty(),
        || {
            format!(
                "outbox: {:?}\nlog:\n{}",
                names(&f.path("out/small")),
                run.log()
            )
        },
    );
    wait_for(Duration::from_secs(20), "ferry to be up", || {
        run.log().contains("ferry started")
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    let got = names(&d.local("in"));
    assert_eq!(
        got.len(),
        files.len(),
        "duplicates or temporary names: {:?}",
        got.iter()
            .filter(|n| !n.starts_with('s') || n.len() != 8)
            .collect::<Vec<_>>()
    );
    for (n, data) in &files {
        assert_eq!(&read(&d.local(&format!("in/{n}"))), data, "{n}");
    }
}

#[test]
fn small_files_exactly_once_over_sftp() {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let d = sftp_dest(&f, &sshd, None);
    open_up(&d.local_root);
    small_files_exactly_once(&f, &d);
}

#[test]
fn small_files_exactly_once_over_ftp() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    let d = ftp_dest(&srv, None);
    small_files_exactly_once(&f, &d);
}

/// Over FTP (vsftpd at 1 MB/s): the server's session is cut mid-upload;
/// the next attempt continues with REST + STOR; the final name only ever
/// holds the whole file.
#[test]
fn a_cut_ftp_upload_resumes() {
    cut_ftp_upload_resumes("");
}

/// The same without a digest: the resume reads no prefix back to hash.
#[test]
fn a_cut_ftp_upload_without_digest_resumes() {
    cut_ftp_upload_resumes("digest = false\n");
}

/// [`a_cut_ftp_upload_resumes`] with `extra` in the rule.
fn cut_ftp_upload_resumes(extra: &str) {
    let f = Fixture::new("");
    let (srv, d) = slow_vsftpd(&f);
    let rule = format!("temp_extension = \".part\"\n{extra}");
    let text = d.server_block.clone() + &send_rule(&f, &d, "big", "in", &rule);
    f.write_config(&text);
    let big = pattern(3_000_000, 9);
    drop_file(&f, "big", "a.bin", &big);
    let final_path = d.local("in/a.bin");
    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(20), "part of the upload", || {
        names(&d.local("in")).iter().any(|n| {
            n.ends_with(".part")
                && std::fs::metadata(d.local(&format!("in/{n}"))).is_ok_and(|m| m.len() > 800_000)
        })
    });
    srv.cut_sessions();
    wait_for(Duration::from_secs(30), "the whole file", || {
        if let Ok(m) = std::fs::metadata(&final_path) {
            assert_eq!(
                m.len(),
                big.len() as u64,
                "a partial file under its final name"
            );
        }
        final_path.exists()
    });
    wait_for(Duration::from_secs(10), "done", || {
        run.log().contains("state=\"done\"")
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    let log = run.log();
    assert_eq!(read(&final_path), big);
    assert!(log.contains("resuming the upload"), "{log}");
    assert_no_temp(&d.local("in"), &log);
}

/// SIGKILL in the middle of a large plain-FTP upload (by sendfile), then
/// a restart: the upload continues from the temporary file's size, and
/// the final name never shows a partial file.
#[test]
fn a_killed_ftp_upload_resumes_vsftpd() {
    let f = Fixture::new("");
    let (srv, d) = slow_vsftpd(&f);
    killed_ftp_upload_resumes(&f, &srv, &d, 800_000);
}

/// The same against pyftpdlib, paced at 1 MB/s after a 2 MB burst.
#[test]
fn a_killed_ftp_upload_resumes_pyftpdlib() {
    let f = Fixture::new("");
    let (srv, d) = paced_pyftpdlib(&f);
    killed_ftp_upload_resumes(&f, &srv, &d, 2_500_000);
}

/// vsftpd with each transfer limited to 1 MB/s (`anon_max_rate`), so that
/// a kill or a cut lands in the middle of an upload.
fn slow_vsftpd(f: &Fixture) -> (FtpServer, Dest) {
    let opts = Vsftpd {
        max_rate: 1_000_000,
        ..Default::default()
    };
    let srv = vsftpd(f.dir.path(), &opts);
    let d = ftp_dest(&srv, None);
    (srv, d)
}

/// pyftpdlib pacing each data connection at 1 MB/s after a 2 MB burst,
/// with the test user logged in.
fn paced_pyftpdlib(f: &Fixture) -> (FtpServer, Dest) {
    let srv = pyftpdlib_paced(&f.path("srv"));
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let d = ftp_dest(&srv, Some((PY_USER, &f.path("ftp-password"))));
    (srv, d)
}

/// Kills `ferry run` once the temporary file holds `killed_at` bytes.
fn killed_ftp_upload_resumes(f: &Fixture, srv: &FtpServer, d: &Dest, killed_at: u64) {
    let text = d.server_block.clone() + &send_rule(f, d, "big", "in", "temp_extension = \".part\"");
    f.write_config(&text);
    let big = pattern(5_000_000, 11);
    drop_file(f, "big", "a.bin", &big);
    let final_path = d.local("in/a.bin");
    let watch_final = || {
        if let Ok(m) = std::fs::metadata(&final_path) {
            assert_eq!(
                m.len(),
                big.len() as u64,
                "a partial file under its final name"
            );
        }
    };
    let mut run = f.spawn_run();
    let in_dir = d.local("in");
    wait_for_or(
        Duration::from_secs(30),
        "part of the upload",
        || {
            watch_final();
            names(&in_dir).iter().any(|n| {
                n.ends_with(".part")
                    && std::fs::metadata(in_dir.join(n)).is_ok_and(|m| m.len() > killed_at)
            })
        },
        || format!("{:?}\n{}\n{}", names(&in_dir), run.log(), srv.log()),
    );
    run.kill9();
    watch_final();
    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(40), "the whole file", || {
        watch_final();
        final_path.exists()
    });
    wait_for(Duration::from_secs(10), "done", || {
        run.log().contains("state=\"done\"")
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    let log = run.log();
    assert_eq!(read(&final_path), big);
    assert!(log.contains("resuming the upload"), "{log}");
    assert_no_temp(&d.local("in"), &log);
    assert_eq!(state_of(f, "big", "a.bin"), "done");
}

/// SIGKILL again and again while many files go out, and while pieces are
/// appended to one remote file: every file exactly once and whole, and the
/// appended file holds each piece exactly once, in order. Over SFTP
/// through a 2 MB/s link, so kills land mid-transfer.
#[test]
fn sigkill_campaign_sends_everything_exactly_once_sftp() {
    let sshd = Sshd::start(Default::default(), &[]);
    let throttle = Throttle::start(sshd.port, 2_000_000);
    let f = Fixture::new("");
    let d = sftp_dest(&f, &sshd, Some(throttle.port));
    sigkill_campaign(&f, &d, String::new);
}

/// The same against vsftpd, each transfer limited to 1 MB/s: medium files
/// by sendfile, small ones in batches with their renames sent together.
#[test]
fn sigkill_campaign_sends_everything_exactly_once_vsftpd() {
    let f = Fixture::new("");
    let (srv, d) = slow_vsftpd(&f);
    sigkill_campaign(&f, &d, || srv.log());
}

/// The same against pyftpdlib (another server's replies, listing format
/// and rename rules), each data connection paced after a first burst.
#[test]
fn sigkill_campaign_sends_everything_exactly_once_pyftpdlib() {
    let f = Fixture::new("");
    let (srv, d) = paced_pyftpdlib(&f);
    sigkill_campaign(&f, &d, || srv.log());
}

/// The campaign, in rounds of SIGKILL and restart. Every six rounds a
/// new generation of files lands in the outbox: 16 of 150-450 kB (each
/// on its own) and 160 of 1-3 kB (in batches). Each round appends one
/// piece to one remote file and kills ferry twice: once while the
/// generation goes out (in even rounds once about another eighth of it is
/// on the server, in odd ones at a random moment after the start), once
/// after the piece is appended. Meanwhile the final names on the server
/// are watched: a name that shows up holds its whole file, never part of
/// it. ./test.sh runs 6 rounds, `faults/run` (FERRY_FAULTS=long) 30.
/// `server_log` goes into failure messages.
fn sigkill_campaign(f: &Fixture, d: &Dest, server_log: impl Fn() -> String) {
    let text = d.server_block.clone()
        + &send_rule(f, d, "many", "in", "after = { delete = true }")
        + &send_rule(
            f,
            d,
            "log",
            "log",
            "if_exists = \"append\"\nafter = { delete = true }",
        );
    f.write_config(&text);
    let rounds: u8 = if long_faults() { 30 } else { 6 };
    let in_dir = d.local("in");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut generation_size = 0;
    let mut expected_log = Vec::new();
    let (mut kills, mut busy, mut temps) = (0, 0, 0);
    for round in 0..rounds {
        let generation = round / 6;
        let prefix = format!("g{generation}-");
        if round % 6 == 0 {
            let seed = generation.wrapping_mul(37);
            let medium = (0..16).map(|i| {
                let data = pattern(150_000 + i * 20_000, seed.wrapping_add(i as u8));
                (format!("{prefix}f{i:02}.bin"), data)
            });
            let small = (0..160).map(|i| {
                let data = pattern(1000 + i * 13, seed.wrapping_add(i as u8));
                (format!("{prefix}s{i:03}.txt"), data)
            });
            let new: Vec<_> = medium.chain(small).collect();
            for (n, data) in &new {
                drop_file(f, "many", n, data);
            }
            generation_size = new.len();
            files.extend(new);
        }
        let piece = pattern(1_000_000 + round as usize * 1000, 100 + round);
        drop_file(f, "log", "day.log", &piece);
        expected_log.extend_from_slice(&piece);
        let mut run = f.spawn_run();
        let share = (round as usize % 6 + 2) * generation_size / 8 - fastrand_ms(10) as usize;
        let sent = || {
            names(&in_dir)
                .iter()
                .filter(|n| n.starts_with(&prefix) && !is_temp(n))
                .count()
        };
        let wait = if round % 2 == 0 {
            Duration::from_secs(60)
        } else {
            Duration::from_millis(100 + fastrand_ms(700))
        };
        let t0 = Instant::now();
        while t0.elapsed() < wait && sent() < share {
            whole_or_absent(&in_dir, &files);
            std::thread::sleep(Duration::from_millis(10));
        }
        if !names(&f.path("out/many")).is_empty() {
            busy += 1;
        }
        temps += names(&in_dir).iter().filter(|n| is_temp(n)).count();
        run.kill9();
        kills += 1;
        // The next start finishes the piece before another is dropped.
        let mut run = f.spawn_run();
        wait_for_or(
            Duration::from_secs(60),
            "the piece appended",
            || {
                whole_or_absent(&in_dir, &files);
                names(&f.path("out/log")).is_empty()
            },
            || format!("{}\n{}", run.log(), server_log()),
        );
        run.kill9();
        kills += 1;
    }
    // The last start finishes everything: the outbox empties, and every
    // row ends `done` (a kill right after a local delete leaves its row
    // `delivered` for this start to finish).
    let mut run = f.spawn_run();
    let rows = files.len() + rounds as usize;
    wait_for_or(
        Duration::from_secs(120),
        "every file sent and every row done",
        || {
            whole_or_absent(&in_dir, &files);
            names(&f.path("out/many")).is_empty() && f.files(Some("done")).len() == rows
        },
        || {
            let open: Vec<_> = f
                .files(None)
                .into_iter()
                .filter(|r| r["state"] != "done")
                .collect();
            format!(
                "{:?}\n{open:#?}\n{}\n{}",
                names(&f.path("out/many")),
                run.log(),
                server_log()
            )
        },
    );
    wait_for(Duration::from_secs(20), "ferry to be up", || {
        run.log().contains("ferry started")
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    let log = run.log();
    for (n, data) in &files {
        assert!(
            &read(&in_dir.join(n)) == data,
            "{n} differs from the file sent"
        );
    }
    // Nothing twice (a second copy would be `NAME.<time>.EXT`), nothing
    // left under a temporary name.
    assert_eq!(names(&in_dir).len(), files.len(), "{:?}", names(&in_dir));
    assert_no_temp(&in_dir, &log);
    let got = read(&d.local("log/day.log"));
    assert_eq!(got.len(), expected_log.len(), "appended bytes");
    assert!(
        got == expected_log,
        "the appended file differs from the pieces in order"
    );
    eprintln!(
        "send campaign: {kills} kills ({busy} with files still in the outbox, {temps} temporary files \
         on the server at them), {} files and {rounds} appended pieces: lost 0 duplicated 0 partial 0",
        files.len()
    );
    assert!(
        busy >= rounds / 2,
        "too few kills interrupted the work: the campaign proved little"
    );
}

/// A final name on the server holds its whole file, or is not there yet.
fn whole_or_absent(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (n, data) in files {
        if let Ok(m) = std::fs::metadata(dir.join(n)) {
            assert_eq!(
                m.len(),
                data.len() as u64,
                "{n}: part of a file under its final name"
            );
        }
    }
}

fn fastrand_ms(max: u64) -> u64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64)
        % max
}

/// Two stages: a watch rule takes files from an SFTP server into a local
/// directory, which is a send rule's outbox towards an FTP server.
#[test]
fn two_stage_gateway_sftp_in_ftp_out() {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    let src = f.path("partner-a");
    sshd::shared_dir(&src);
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    let relay_dir = f.path("relay");
    std::fs::create_dir_all(&relay_dir).unwrap();
    let text = format!(
        "[servers.a]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
         password = {{ file = \"{}\" }}\nhost_key = \"{}\"\n\n\
         [servers.b]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\n\n\
         [[watch]]\nname = \"from-a\"\nserver = \"a\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\ninterval = \"300ms\"\ndelete = true\n\n\
         [[send]]\nname = \"to-b\"\nserver = \"b\"\nlocal_dir = \"{}\"\nremote_dir = \"{}\"\n\
         stable_for = \"0s\"\nrescan = \"300ms\"\nafter = {{ delete = true }}\n",
        sshd.port,
        f.path("pw").display(),
        sshd.host_key_fingerprint,
        srv.port,
        src.display(),
        relay_dir.display(),
        relay_dir.display(),
        srv.remote("pub"),
    );
    f.write_config(&text);
    let files: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| (format!("order-{i}.xml"), pattern(1000 + i * 5000, i as u8)))
        .collect();
    for (n, data) in &files {
        std::fs::write(src.join(n), data).unwrap();
        sshd::world_readable(&src.join(n));
    }
    let mut run = f.spawn_run();
    wait_for(Duration::from_secs(60), "every file at partner B", || {
        files
            .iter()
            .all(|(n, _)| srv.root.join("pub").join(n).exists())
            && names(&relay_dir).is_empty()
    });
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(Duration::from_secs(20)), Some(0));
    for (n, data) in &files {
        assert_eq!(&read(&srv.root.join("pub").join(n)), data, "{n}");
    }
    assert!(names(&src).is_empty(), "{:?}", names(&src));
    assert_eq!(names(&srv.root.join("pub")).len(), files.len());
}
