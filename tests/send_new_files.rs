//! A new file's first upload (`WriteMode::Fresh`): APPE on FTP, which
//! spares the file vsftpd's truncation (and ext4 its block allocation in
//! the server's close); STOR on a server that refuses APPE, asked once;
//! and a leftover under the temporary name (a row id used again after
//! `ferry forget`) never reaches the final name, appended to or not.

mod common;

use common::ftp_servers::*;
use common::sshd::{self, PASSWORD, Sshd, USER};
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A send rule from `f.path("out")` to `remote_dir` on server `dest`.
fn config(f: &Fixture, server_block: &str, remote_dir: &str, extra: &str) {
    std::fs::create_dir_all(f.path("out")).unwrap();
    f.write_config(&format!(
        "{server_block}\n[[send]]\nname = \"s\"\nserver = \"dest\"\nlocal_dir = \"{}\"\n\
         remote_dir = \"{remote_dir}\"\nstable_for = \"0s\"\nrescan = \"300ms\"\n\
         retry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n{extra}\n",
        f.path("out").display(),
    ));
}

fn ftp_block(srv: &FtpServer, login: &str) -> String {
    format!(
        "[servers.dest]\nprotocol = \"ftp\"\nhost = \"127.0.0.1\"\nport = {}\nmax_sessions = 2\n\
         connect_timeout = \"10s\"\nio_timeout = \"10s\"\n{login}\n",
        srv.port
    )
}

fn pyftpdlib_login(f: &Fixture) -> String {
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}\n",
        f.path("ftp-password").display()
    )
}

/// [`config`] to pyftpdlib's root, logged in as its test user.
fn pyftpdlib_config(f: &Fixture, srv: &FtpServer) {
    config(f, &ftp_block(srv, &pyftpdlib_login(f)), &srv.remote(""), "");
}

fn data(i: usize) -> Vec<u8> {
    (0..100_000 + i).map(|b| (b * 7 + i) as u8).collect()
}

/// Puts `n` files in the outbox, sends them in one pass, and checks each
/// arrived whole with no temporary name left. Returns ferry's log.
fn send_files(f: &Fixture, server_dir: &Path, n: usize) -> String {
    for i in 0..n {
        std::fs::write(f.path(&format!("out/f{i}.csv")), data(i)).unwrap();
    }
    let log = f.once(0);
    for i in 0..n {
        let got = std::fs::read(server_dir.join(format!("f{i}.csv")))
            .unwrap_or_else(|e| panic!("f{i}.csv: {e}; log:\n{log}"));
        assert!(got == data(i), "f{i}.csv differs; log:\n{log}");
    }
    let left: Vec<_> = names(server_dir)
        .into_iter()
        .filter(|n| n.ends_with(".ferry-part"))
        .collect();
    assert!(left.is_empty(), "{left:?}; log:\n{log}");
    log
}

/// Commands of one kind for `.ferry-part` names in a server's log.
fn part_commands(log: &str, cmd: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("{cmd} ")) && l.contains(".ferry-part"))
        .count()
}

#[test]
fn new_files_reach_vsftpd_by_appe() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    config(&f, &ftp_block(&srv, ""), &srv.remote("pub"), "");
    send_files(&f, &srv.root.join("pub"), 4);
    let server_log = srv.log();
    assert_eq!(part_commands(&server_log, "APPE"), 4, "{server_log}");
    assert_eq!(part_commands(&server_log, "STOR"), 0, "{server_log}");
}

#[test]
fn a_server_refusing_appe_is_asked_once_then_gets_stor() {
    let f = Fixture::new("");
    let srv = pyftpdlib_without_appe(f.dir.path());
    pyftpdlib_config(&f, &srv);
    let log = send_files(&f, &srv.root, 6);
    let server_log = srv.log();
    assert_eq!(
        log.matches("refuses APPE for new files").count(),
        1,
        "said once, at info; log:\n{log}"
    );
    // Two sessions may each try before either learns: never more.
    let tried = part_commands(&server_log, "APPE");
    assert!((1..=2).contains(&tried), "{tried} APPE; {server_log}");
    assert_eq!(part_commands(&server_log, "STOR"), 6, "{server_log}");
}

/// The first file of a fresh state database is row 1: its temporary name
/// is known before ferry sees it.
fn leftover(f: &Fixture, server_dir: &Path, body: &[u8]) -> (PathBuf, Vec<u8>) {
    let source: Vec<u8> = (0..50_000u32).map(|b| (b % 251) as u8).collect();
    let local = f.path("out/a.csv");
    std::fs::write(&local, &source).unwrap();
    let mtime = std::fs::metadata(&local).unwrap().mtime();
    let part = server_dir.join(part_name("a.csv", 1, mtime, source.len() as u64));
    std::fs::write(&part, body).unwrap();
    // Writable by the SFTP test user too.
    std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o666)).unwrap();
    (part, source)
}

/// Runs one pass over [`leftover`] and checks what reached the final name.
fn leftover_never_delivered(f: &Fixture, server_dir: &Path) -> String {
    let (part, source) = leftover(f, server_dir, &[b'!'; 1000]);
    let log = f.once(0);
    let rows = f.files(None);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(part, part_of(server_dir, &rows[0]), "the leftover's name");
    assert_eq!(rows[0]["state"], "done", "{rows:?}; log:\n{log}");
    let got = std::fs::read(server_dir.join("a.csv")).unwrap();
    assert!(
        got == source,
        "a.csv is {} bytes, not the source's {}; log:\n{log}",
        got.len(),
        source.len()
    );
    assert!(!part.exists(), "log:\n{log}");
    log
}

#[test]
fn a_leftover_temporary_file_never_reaches_the_final_name_over_vsftpd() {
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    config(&f, &ftp_block(&srv, ""), &srv.remote("pub"), "");
    let log = leftover_never_delivered(&f, &srv.root.join("pub"));
    // APPE added the file to the leftover: the size check caught it, and
    // the next attempt sent the file from its first byte.
    assert!(
        log.contains("on the server after the upload, expected 50000 bytes")
            || log.contains("size differs after the upload"),
        "{log}"
    );
}

#[test]
fn a_leftover_temporary_file_never_reaches_the_final_name_unchecked() {
    // verify = "none": nothing would catch an append, so the first write
    // replaces whatever is there.
    let f = Fixture::new("");
    let srv = vsftpd(f.dir.path(), &Vsftpd::default());
    config(
        &f,
        &ftp_block(&srv, ""),
        &srv.remote("pub"),
        "verify = \"none\"",
    );
    leftover_never_delivered(&f, &srv.root.join("pub"));
}

#[test]
fn a_leftover_temporary_file_never_reaches_the_final_name_over_pyftpdlib() {
    let f = Fixture::new("");
    let srv = pyftpdlib(f.dir.path(), PyTls::None, None);
    pyftpdlib_config(&f, &srv);
    leftover_never_delivered(&f, &srv.root);
}

#[test]
fn a_leftover_temporary_file_never_reaches_the_final_name_over_sftp() {
    let sshd = Sshd::start(Default::default(), &[]);
    let f = Fixture::new("");
    let root = f.path("server");
    sshd::shared_dir(&root);
    std::fs::write(f.path("pw"), PASSWORD).unwrap();
    let block = format!(
        "[servers.dest]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
         password = {{ file = \"{}\" }}\nhost_key = \"{}\"\n",
        sshd.port,
        f.path("pw").display(),
        sshd.host_key_fingerprint
    );
    config(&f, &block, &root.display().to_string(), "");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    leftover_never_delivered(&f, &root);
}

#[test]
fn a_leftover_temporary_file_never_reaches_the_final_name_over_a_server_blind_to_sizes() {
    // No SIZE and no size in MLST: no size check could catch an append,
    // so new files go by STOR there.
    let f = Fixture::new("");
    let srv = pyftpdlib_blind_to_sizes(f.dir.path());
    pyftpdlib_config(&f, &srv);
    leftover_never_delivered(&f, &srv.root);
    assert_eq!(part_commands(&srv.log(), "STOR"), 1, "{}", srv.log());
}
