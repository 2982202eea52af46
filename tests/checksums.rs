//! Content verification through the real binary against real servers:
//! sidecar checksum files (a ready marker too, checked before the rename,
//! moved with the file), mismatches retried then failed with both digests,
//! `verify = "server"` over SFTP (`sha256sum` on sshd) and FTP (ProFTPD's
//! mod_digest), uploads that write `NAME.sha256` (sshd, vsftpd, ProFTPD),
//! and the digest in the state database and in the handler's environment.
//! Expected digests come from coreutils' `sha256sum`/`md5sum`, not ferry.

mod common;

use common::ftp_servers::*;
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `sha256sum FILE`'s digest (or `md5sum`'s with `tool = "md5sum"`).
fn digest_of(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().unwrap();
    assert!(out.status.success(), "{tool} {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn sha256sum(path: &Path) -> String {
    digest_of("sha256sum", path)
}

struct Sftp {
    f: Fixture,
    sshd: Sshd,
    remote: PathBuf,
}

fn sftp() -> Sftp {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let remote = f.path("remote");
    sshd::shared_dir(&remote.join("inbox"));
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    Sftp { f, sshd, remote }
}

impl Sftp {
    fn server_block(&self, extra: &str) -> String {
        format!(
            "[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nmax_sessions = 2\nio_timeout = \"5s\"\n{extra}\n",
            self.sshd.port,
            self.f.path("pw").display(),
            self.sshd.host_key_fingerprint
        )
    }

    fn watch(&self, name: &str, dir: &str, extra: &str) -> String {
        format!(
            "[[watch]]\nname = \"{name}\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
             stable_for = \"0s\"\ninterval = \"200ms\"\nretry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n{extra}\n",
            self.remote.join(dir).display(),
            self.f.outbox.display()
        )
    }

    fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.remote.join(rel);
        sshd::shared_dir(p.parent().unwrap());
        std::fs::write(&p, data).unwrap();
        p
    }
}

fn row<'a>(rows: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    rows.iter()
        .rfind(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no row for {path} in {rows:?}"))
}

#[test]
fn a_sidecar_gates_checks_and_follows_the_file_and_the_handler_sees_the_digest() {
    let s = sftp();
    let archive = s.remote.join("archive");
    sshd::shared_dir(&archive);
    let seen = s.f.path("handler.out");
    let handler = script(
        &s.f,
        "h.sh",
        &format!(
            "printf '%s %s\\n' \"$FERRY_FILE_NAME\" \"$FERRY_SHA256\" >> {}",
            seen.display()
        ),
    );
    let text = format!(
        "{}{}{}",
        s.server_block(""),
        s.watch(
            "r",
            "inbox",
            &format!(
                "checksum_file = \"{{name}}.sha256\"\nmove_to = \"{}\"\nhandler = [\"{}\"]",
                archive.display(),
                handler.display()
            )
        ),
        s.watch("m", "md5in", "checksum_file = \"{name}.md5\"")
    );
    s.f.write_config(&text);
    // Big enough for the streamed path, not the small-file batch.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let a = s.put("inbox/a.csv", &data);
    // sha256sum's own output is the sidecar: `HEX  path`.
    let sum = Command::new("sha256sum")
        .arg("a.csv")
        .current_dir(a.parent().unwrap())
        .output()
        .unwrap();
    s.put("inbox/a.csv.sha256", &sum.stdout);
    s.put("inbox/waiting.csv", b"no sidecar yet");
    // MD5, a bare upper-case digest.
    let b = s.put("md5in/b.csv", b"checked with md5");
    s.put(
        "md5in/b.csv.md5",
        digest_of("md5sum", &b).to_uppercase().as_bytes(),
    );
    s.f.once(0);

    assert_eq!(std::fs::read(s.f.outbox.join("a.csv")).unwrap(), data);
    assert_eq!(
        std::fs::read(s.f.outbox.join("b.csv")).unwrap(),
        b"checked with md5"
    );
    let delivered = names(&s.f.outbox);
    assert_eq!(
        delivered,
        ["a.csv", "b.csv"],
        "sidecars are never delivered, waiting.csv waits"
    );
    let want = sha256sum(&s.f.outbox.join("a.csv"));
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        format!("a.csv {want}\n")
    );
    // The sidecar moved into the archive with its file.
    assert_eq!(names(&archive), ["a.csv", "a.csv.sha256"]);
    assert_eq!(names(&s.remote.join("inbox")), ["waiting.csv"]);

    let rows = s.f.files(None);
    assert_eq!(row(&rows, "a.csv")["sha256"], want.as_str());
    assert_eq!(row(&rows, "b.csv")["sha256"], sha256sum(&b).as_str());
    assert_eq!(
        row(&rows, "waiting.csv")["state"],
        "seen",
        "waits for its sidecar"
    );
    assert!(
        rows.iter()
            .all(|r| !r["path"].as_str().unwrap().ends_with(".sha256"))
    );

    // The sidecar arrives: the file goes at the next pass.
    let w = sha256sum(&s.remote.join("inbox/waiting.csv"));
    s.put("inbox/waiting.csv.sha256", w.as_bytes());
    s.f.once(0);
    assert_eq!(
        std::fs::read(s.f.outbox.join("waiting.csv")).unwrap(),
        b"no sidecar yet"
    );
    assert_eq!(
        names(&archive),
        ["a.csv", "a.csv.sha256", "waiting.csv", "waiting.csv.sha256"]
    );
    let explain = s.f.ferry(&["explain", "waiting.csv", "--rule", "r"]);
    let explain = String::from_utf8_lossy(&explain.stdout);
    assert!(explain.contains(&w), "{explain}");
}

#[test]
fn a_mismatch_is_retried_then_failed_with_both_digests_and_nothing_delivered() {
    let s = sftp();
    let text = format!(
        "{}{}",
        s.server_block(""),
        s.watch("r", "inbox", "checksum_file = \"{name}.sha256\"")
    );
    s.f.write_config(&text);
    let data = vec![b'x'; 200_000];
    let a = s.put("inbox/a.csv", &data);
    let wrong = "0".repeat(64);
    s.put("inbox/a.csv.sha256", format!("{wrong}  a.csv\n").as_bytes());
    let actual = sha256sum(&a);

    let log = s.f.once(0);
    assert!(
        log.contains("retrying") || log.contains("will retry"),
        "{log}"
    );
    let rows = s.f.files(None);
    assert_eq!(row(&rows, "a.csv")["failures"], 1);
    assert!(
        names(&s.f.outbox).is_empty(),
        "nothing delivered, no temp file left: {:?}",
        names(&s.f.outbox)
    );

    s.f.once(1);
    let failed = s.f.files(Some("failed"));
    let r = row(&failed, "a.csv");
    let error = r["last_error"].as_str().unwrap();
    assert!(error.contains(&wrong) && error.contains(&actual), "{error}");
    assert!(
        error.contains("a.csv.sha256"),
        "names where the digest came from: {error}"
    );
    assert_eq!(r["failures"], 2);
    assert!(names(&s.f.outbox).is_empty(), "{:?}", names(&s.f.outbox));
    // The partner's files are untouched.
    assert_eq!(names(&s.remote.join("inbox")), ["a.csv", "a.csv.sha256"]);
}

#[test]
fn verify_server_over_sftp_runs_sha256sum_on_the_server() {
    let s = sftp();
    let text = format!(
        "{}{}",
        s.server_block("exec_checksum = true"),
        s.watch("r", "inbox", "verify = \"server\"\ndelete = true")
    );
    s.f.write_config(&text);
    let data = vec![b'q'; 150_000];
    let a = s.put("inbox/it's a file.csv", &data);
    let want = sha256sum(&a);
    let log = s.f.once(0);
    assert_eq!(
        std::fs::read(s.f.outbox.join("it's a file.csv")).unwrap(),
        data
    );
    assert!(log.contains(&want), "the server's digest is logged: {log}");
    assert!(
        s.sshd.log().contains("Starting session: command"),
        "an exec channel ran: {}",
        s.sshd.log()
    );
    assert_eq!(
        row(&s.f.files(None), "it's a file.csv")["sha256"],
        want.as_str()
    );
}

#[test]
fn verify_server_over_sftp_needs_exec_checksum() {
    let s = sftp();
    let text = format!(
        "{}{}",
        s.server_block(""),
        s.watch("r", "inbox", "verify = \"server\"")
    );
    s.f.write_config(&text);
    let out = s.f.ferry(&["check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ferry.toml:") && err.contains("verify") && err.contains("exec_checksum"),
        "{err}"
    );
}

#[test]
fn verify_server_over_ftp_asks_proftpd_mod_digest() {
    let f = Fixture::new("");
    let srv = proftpd_digest(f.dir.path());
    std::fs::write(f.path("ftp-pw"), PY_PASSWORD).unwrap();
    let text = format!(
        "[servers.p]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{PY_USER}\"\n\
         password = {{ file = \"{}\" }}\nio_timeout = \"10s\"\n\n\
         [[watch]]\nname = \"r\"\nserver = \"p\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\nverify = \"server\"\nretry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n",
        srv.port,
        f.path("ftp-pw").display(),
        srv.remote("pub"),
        f.outbox.display()
    );
    f.write_config(&text);
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    let p = srv.root.join("pub/big.bin");
    std::fs::write(&p, &data).unwrap();
    let want = sha256sum(&p);
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("big.bin")).unwrap(), data);
    let commands = srv.log();
    assert!(
        commands.contains("HASH") && commands.contains("big.bin"),
        "ProFTPD was asked for the digest: {commands}"
    );
    assert_eq!(row(&f.files(None), "big.bin")["sha256"], want.as_str());
}

/// The server's digest disagrees with the bytes that arrived (pyftpdlib
/// corrupting every file on the way, its `XSHA256` hashing the stored
/// file): the file is retried, then failed with both digests, and never
/// delivered; the server keeps it (no post-action ran).
#[test]
fn a_server_digest_that_disagrees_fails_the_file_with_both_digests() {
    let f = Fixture::new("");
    let srv = pyftpdlib_corrupting(f.dir.path());
    std::fs::write(f.path("ftp-pw"), PY_PASSWORD).unwrap();
    f.write_config(&format!(
        "[servers.p]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{PY_USER}\"\n\
         password = {{ file = \"{}\" }}\nio_timeout = \"10s\"\n\n\
         [[watch]]\nname = \"r\"\nserver = \"p\"\nremote_dir = \"/in\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\nverify = \"server\"\ndelete = true\n\
         retry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n",
        srv.port,
        f.path("ftp-pw").display(),
        f.outbox.display()
    ));
    std::fs::create_dir_all(srv.root.join("in")).unwrap();
    let p = srv.root.join("in/report.csv");
    std::fs::write(&p, b"id;amount\n1;100\n").unwrap();
    let stored = sha256sum(&p);
    let mut sent = b"id;amount\n1;100\n".to_vec();
    sent[0] ^= 0x20;
    std::fs::write(f.path("as-sent"), &sent).unwrap();
    let received = sha256sum(&f.path("as-sent"));

    let first = f.once(0);
    assert!(first.contains("will retry"), "{first}");
    assert!(names(&f.outbox).is_empty(), "{:?}", names(&f.outbox));
    let log = f.once(1);
    assert!(
        names(&f.outbox).is_empty(),
        "nothing is delivered: {:?}\n{log}",
        names(&f.outbox)
    );
    assert!(p.exists(), "the server keeps the file (no delete ran)");
    let rows = f.files(None);
    let error = row(&rows, "report.csv")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&stored) && error.contains(&received),
        "both digests in the error: {error}\n{log}"
    );
    // The stored file's digest can only have come from the server.
    assert!(error.contains("the server"), "{error}");
}

/// `exec_checksum = true` on a server that only speaks SFTP (asyncssh,
/// as chrooted appliances): the exec request is refused, and the file
/// fails at once with a message that says so, instead of hanging or being
/// delivered unverified; the server keeps it.
#[test]
fn verify_server_over_sftp_on_a_server_that_refuses_exec_fails_clearly() {
    let f = Fixture::new("");
    let srv =
        common::sftp_servers::asyncssh(f.dir.path(), common::sftp_servers::Extensions::OpenSsh);
    let inbox = f.path("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let server = srv.server_block(&f.path("pw"), "exec_checksum = true");
    let error = exec_fails(&f, &server, &inbox);
    assert!(
        error.contains("sha256sum") && error.contains("exec"),
        "the error names the command and the refusal: {error}"
    );
}

/// `exec_checksum = true` on an OpenSSH account forced to `internal-sftp`
/// (`ForceCommand`): the exec runs the SFTP server instead, which ends
/// with no output, and the file fails at once with a message that names
/// the likely cause, without waiting for a timeout.
#[test]
fn verify_server_over_sftp_on_an_sftp_only_account_fails_clearly() {
    let sshd = Sshd::start(
        sshd::Options {
            sftp_only: true,
            ..Default::default()
        },
        &[],
    );
    let f = Fixture::new("");
    let inbox = f.path("remote/inbox");
    sshd::shared_dir(&inbox);
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    let server = format!(
        "[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
         password = {{ file = \"{}\" }}\nhost_key = \"{}\"\nio_timeout = \"10s\"\nexec_checksum = true\n",
        sshd.port,
        f.path("pw").display(),
        sshd.host_key_fingerprint,
    );
    let error = exec_fails(&f, &server, &inbox);
    assert!(
        error.contains("sha256sum") && error.contains("SFTP only"),
        "the error names the command and the likely cause: {error}"
    );
}

/// Runs `verify = "server"` over server block `server` (named `s`) on a
/// file in `inbox` whose exec checksum cannot work: the file must fail
/// within 30 s (a command waiting for input would hold each attempt for
/// ten `io_timeout`s), undelivered, and stay on the server. Returns its
/// error.
fn exec_fails(f: &Fixture, server: &str, inbox: &Path) -> String {
    std::fs::write(inbox.join("a.csv"), b"a;b\n").unwrap();
    f.write_config(&format!(
        "{server}\n[[watch]]\nname = \"r\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\nverify = \"server\"\ndelete = true\n\
         retry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n",
        inbox.display(),
        f.outbox.display()
    ));
    let t0 = std::time::Instant::now();
    let log = f.once(1);
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}:\n{log}",
        t0.elapsed()
    );
    let failed = f.files(Some("failed"));
    let error = row(&failed, "a.csv")["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!error.is_empty(), "no error recorded:\n{log}");
    assert!(names(&f.outbox).is_empty(), "{:?}", names(&f.outbox));
    assert!(inbox.join("a.csv").exists(), "the server keeps the file");
    error
}

/// A `[[send]]` table from `f.path("out")` to `remote_dir` on server `s`.
fn send_rule(f: &Fixture, remote_dir: &str, extra: &str) -> String {
    let outbox = f.path("out");
    std::fs::create_dir_all(&outbox).unwrap();
    format!(
        "[[send]]\nname = \"up\"\nserver = \"s\"\nlocal_dir = \"{}\"\nremote_dir = \"{remote_dir}\"\n\
         stable_for = \"0s\"\nrescan = \"300ms\"\nwrite_checksum_file = true\n\
         retry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n{extra}\n",
        outbox.display(),
    )
}

/// Drops a large and a small file into the outbox, runs one pass, and
/// checks each arrived in `dest` with a sidecar that `sha256sum -c` accepts.
fn sends_with_sidecars(f: &Fixture, dest: &Path) {
    let big: Vec<u8> = (0..500_000u32).map(|i| (i * 13 % 241) as u8).collect();
    std::fs::write(f.path("out/big.dat"), &big).unwrap();
    std::fs::write(f.path("out/small.txt"), b"small").unwrap();
    f.once(0);
    let rows = f.files(None);
    for name in ["big.dat", "small.txt"] {
        let file = dest.join(name);
        let want = sha256sum(&file);
        let sidecar = std::fs::read_to_string(dest.join(format!("{name}.sha256"))).unwrap();
        assert_eq!(sidecar, format!("{want}  {name}\n"));
        let check = Command::new("sha256sum")
            .args(["-c", &format!("{name}.sha256")])
            .current_dir(dest)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        assert_eq!(row(&rows, name)["sha256"], want.as_str());
        assert_eq!(row(&rows, name)["state"], "done");
    }
    let left: Vec<String> = names(dest)
        .into_iter()
        .filter(|n| n.contains("ferry-part"))
        .collect();
    assert!(left.is_empty(), "temporary names left: {left:?}");
}

#[test]
fn uploads_over_sftp_verify_with_the_server_and_write_a_sidecar() {
    let s = sftp();
    let dest = s.f.path("server");
    sshd::shared_dir(&dest);
    let text = format!(
        "{}{}",
        s.server_block("exec_checksum = true"),
        send_rule(&s.f, &dest.display().to_string(), "verify = \"server\"")
    );
    s.f.write_config(&text);
    sends_with_sidecars(&s.f, &dest);
    assert!(
        s.sshd.log().contains("Starting session: command"),
        "{}",
        s.sshd.log()
    );
}

#[test]
fn uploads_over_ftp_write_a_sidecar_vsftpd() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    let text = format!(
        "[servers.s]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nio_timeout = \"10s\"\n\n{}",
        srv.port,
        send_rule(&f, &srv.remote("pub"), "")
    );
    f.write_config(&text);
    sends_with_sidecars(&f, &srv.root.join("pub"));
}

/// The default records the SHA-256 of the bytes sent; `digest = false`
/// sends the same way and records none, not even an earlier version's.
/// A file past the batch size (read ahead and hashed on a thread) and a
/// small one (a batch, hashed in memory), to `srv`'s `pub` with `login`.
fn uploads_record_their_digest_unless_told_not_to(f: &Fixture, srv: &FtpServer, login: &str) {
    let outbox = f.path("out");
    std::fs::create_dir_all(&outbox).unwrap();
    let config = |extra: &str| {
        format!(
            "[servers.s]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nio_timeout = \"10s\"\n{login}\n\
             [[send]]\nname = \"up\"\nserver = \"s\"\nlocal_dir = \"{}\"\nremote_dir = \"{}\"\n\
             stable_for = \"0s\"\nif_exists = \"overwrite\"\n{extra}\n",
            srv.port,
            outbox.display(),
            srv.remote("pub"),
        )
    };
    let dest = srv.root.join("pub");
    std::fs::create_dir_all(&dest).unwrap();
    let send = |extra: &str, seed: u32, len: u32| {
        let big: Vec<u8> = (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect();
        std::fs::write(outbox.join("big.dat"), &big).unwrap();
        std::fs::write(outbox.join("small.txt"), format!("small {seed}")).unwrap();
        f.write_config(&config(extra));
        f.once(0);
        assert_eq!(std::fs::read(dest.join("big.dat")).unwrap(), big);
        f.files(None)
    };
    let rows = send("", 1, 500_000);
    for name in ["big.dat", "small.txt"] {
        assert_eq!(row(&rows, name)["state"], "done");
        assert_eq!(
            row(&rows, name)["sha256"],
            sha256sum(&dest.join(name)).as_str()
        );
    }
    // New versions (other sizes), sent without a digest.
    let rows = send("digest = false", 22, 600_000);
    assert_eq!(std::fs::read(dest.join("small.txt")).unwrap(), b"small 22");
    for name in ["big.dat", "small.txt"] {
        assert_eq!(row(&rows, name)["state"], "done");
        assert_eq!(
            row(&rows, name)["size"],
            if name == "big.dat" { 600_000 } else { 8 }
        );
        assert!(row(&rows, name)["sha256"].is_null(), "{}", row(&rows, name));
    }
}

#[test]
fn uploads_record_their_digest_unless_told_not_to_vsftpd() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    uploads_record_their_digest_unless_told_not_to(&f, &srv, "");
}

#[test]
fn uploads_record_their_digest_unless_told_not_to_pyftpdlib() {
    let f = Fixture::new("");
    let srv = pyftpdlib(f.dir.path(), PyTls::None, None);
    std::fs::write(f.path("ftp-pw"), PY_PASSWORD).unwrap();
    let login = format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}\n",
        f.path("ftp-pw").display()
    );
    uploads_record_their_digest_unless_told_not_to(&f, &srv, &login);
}

#[test]
fn uploads_over_ftp_verify_with_proftpd_mod_digest() {
    let f = Fixture::new("");
    let srv = proftpd_digest(f.dir.path());
    std::fs::write(f.path("ftp-pw"), PY_PASSWORD).unwrap();
    let text = format!(
        "[servers.s]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{PY_USER}\"\n\
         password = {{ file = \"{}\" }}\nio_timeout = \"10s\"\n\n{}",
        srv.port,
        f.path("ftp-pw").display(),
        send_rule(&f, &srv.remote("pub"), "verify = \"server\"")
    );
    f.write_config(&text);
    sends_with_sidecars(&f, &srv.root.join("pub"));
    let commands = srv.log();
    assert!(
        commands.contains("HASH") && commands.contains("ferry-part"),
        "the temporary file was hashed by the server: {commands}"
    );
}

#[test]
fn a_resumed_download_hashes_the_bytes_already_there_and_a_torn_prefix_is_caught() {
    let s = sftp();
    let text = format!(
        "{}{}",
        s.server_block(""),
        s.watch("r", "inbox", "checksum_file = \"{name}.sha256\"")
    );
    s.f.write_config(&text);
    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 31 % 239) as u8).collect();
    let good = s.put("inbox/good.bin", &data);
    let torn = s.put("inbox/torn.bin", &data);
    s.f.once(0); // rows recorded; no sidecars yet
    let rows = s.f.files(None);
    // What an interrupted attempt left: half of each file, one with a
    // byte that a crash tore.
    std::fs::create_dir_all(&s.f.outbox).unwrap();
    std::fs::write(
        part_of(&s.f.outbox, row(&rows, "good.bin")),
        &data[..200_000],
    )
    .unwrap();
    let mut bad = data[..200_000].to_vec();
    bad[1234] ^= 0xff;
    std::fs::write(part_of(&s.f.outbox, row(&rows, "torn.bin")), &bad).unwrap();
    for p in [&good, &torn] {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        s.put(
            &format!("inbox/{name}.sha256"),
            format!("{}  {name}\n", sha256sum(p)).as_bytes(),
        );
    }

    let log = s.f.once(0);
    assert!(log.contains("resuming download"), "{log}");
    assert_eq!(std::fs::read(s.f.outbox.join("good.bin")).unwrap(), data);
    assert!(
        !s.f.outbox.join("torn.bin").exists(),
        "a torn prefix is never delivered"
    );
    let rows = s.f.files(None);
    assert_eq!(row(&rows, "good.bin")["sha256"], sha256sum(&good).as_str());
    let error = row(&rows, "torn.bin")["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("mismatch"), "{error}");
    // The temporary file went with the mismatch: the retry fetches it whole.
    s.f.once(0);
    assert_eq!(std::fs::read(s.f.outbox.join("torn.bin")).unwrap(), data);
    assert_eq!(row(&s.f.files(None), "torn.bin")["state"], "done");
}
