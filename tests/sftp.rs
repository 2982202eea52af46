//! The SFTP transport against a real OpenSSH sshd on loopback: every auth
//! kind, host-key trust, the operations, and error classes.

mod common;

use common::cut::Relay;
use common::sshd::{self, PASSWORD, Sshd, USER};
use ferry::config::Server;
use ferry::remote::{EntryKind, ErrorKind, Pool, Version, WriteMode};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A read that expects no size in particular: to the end of the file.
const ANY: Version = Version {
    size: None,
    mtime: 0,
};

fn sized(size: u64) -> Version {
    Version {
        size: Some(size),
        mtime: 0,
    }
}

/// A server block for `sshd`, plus extra lines; parsed by ferry's own config.
fn server(sshd: &Sshd, dir: &Path, extra: &str) -> Arc<Server> {
    server_at(sshd.port, dir, extra)
}

/// As [`server`], through `port` (a relay in front of sshd).
fn server_at(port: u16, dir: &Path, extra: &str) -> Arc<Server> {
    let text = format!(
        "[daemon]\nstate = \"{d}/state.db\"\n\n[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {p}\nuser = \"{USER}\"\nio_timeout = \"10s\"\n{extra}\n",
        d = dir.display(),
        p = port
    );
    let path = dir.join("ferry.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = ferry::config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cfg.servers["s"].clone()
}

fn password_env() -> &'static str {
    // SAFETY: tests set this one variable to the same value everywhere.
    unsafe { std::env::set_var("FERRY_TEST_SFTP_PASSWORD", PASSWORD) };
    "password = { env = \"FERRY_TEST_SFTP_PASSWORD\" }"
}

fn pinned(sshd: &Sshd) -> String {
    format!("host_key = \"{}\"", sshd.host_key_fingerprint)
}

/// A data directory the test user can write, and a password login to
/// `sshd` through `port` (its own, or a relay's) with its key pinned.
fn password_login(sshd: &Sshd, port: u16) -> (tempfile::TempDir, PathBuf, Arc<Server>) {
    password_login_with(sshd, port, "")
}

/// [`password_login`] with `more` lines in the server's table.
fn password_login_with(
    sshd: &Sshd,
    port: u16,
    more: &str,
) -> (tempfile::TempDir, PathBuf, Arc<Server>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    let extra = format!("{}\n{}\n{more}", password_env(), pinned(sshd));
    let s = server_at(port, dir.path(), &extra);
    (dir, data, s)
}

async fn connect_err(s: Arc<Server>) -> ferry::remote::RemoteError {
    match Pool::new(s).get().await {
        Ok(_) => panic!("connected, but should have been refused"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn password_auth_lists_a_directory() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    std::fs::write(data.join("a file ü.csv"), b"hello").unwrap();
    std::fs::create_dir(data.join("sub")).unwrap();
    std::os::unix::fs::symlink("a file ü.csv", data.join("link")).unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let pool = Pool::new(s);
    let mut session = pool.get().await.unwrap();
    let mut entries = session.list(data.to_str().unwrap()).await.unwrap();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let summary: Vec<_> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    assert_eq!(summary[0], ("a file ü.csv", EntryKind::File, Some(5)));
    assert_eq!((summary[1].0, summary[1].1), ("link", EntryKind::Symlink));
    assert_eq!(entries[1].link_target.as_deref(), Some("a file ü.csv"));
    assert_eq!((summary[2].0, summary[2].1), ("sub", EntryKind::Dir));
    let mtime = std::fs::metadata(data.join("a file ü.csv")).unwrap();
    assert_eq!(
        entries[0].mtime,
        std::os::unix::fs::MetadataExt::mtime(&mtime)
    );
    assert!(
        session
            .identity()
            .unwrap()
            .contains(&sshd.host_key_fingerprint)
    );
}

#[tokio::test]
async fn follow_symlinks_lists_the_target() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    std::fs::write(data.join("real"), b"12345678").unwrap();
    std::os::unix::fs::symlink("real", data.join("link")).unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!(
            "{}\n{}\nfollow_symlinks = true",
            password_env(),
            pinned(&sshd)
        ),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let entries = session.list(data.to_str().unwrap()).await.unwrap();
    let link = entries.iter().find(|e| e.name == "link").unwrap();
    assert_eq!((link.kind, link.size), (EntryKind::File, Some(8)));
    assert_eq!(link.link_target.as_deref(), Some("real"));
}

#[tokio::test]
async fn keyboard_interactive_answers_with_the_password() {
    let sshd = Sshd::start(
        sshd::Options {
            password: false,
            keyboard_interactive_only: true,
            ..Default::default()
        },
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    session.list("/").await.unwrap();
}

#[tokio::test]
async fn key_auth_ed25519_file_ecdsa_content_and_rsa_with_passphrase() {
    let keys = tempfile::tempdir().unwrap();
    let ed = sshd::keygen(keys.path(), "id_ed25519", "ed25519", None, "");
    let ec = sshd::keygen(keys.path(), "id_ecdsa", "ecdsa", Some("256"), "");
    let rsa = sshd::keygen(keys.path(), "id_rsa", "rsa", Some("3072"), "sekrit phrase");
    let sshd = Sshd::start(
        sshd::Options {
            password: false,
            ..Default::default()
        },
        &[ed.clone(), ec.clone(), rsa.clone()],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&ec, dir.path().join("ec_content")).unwrap();
    std::fs::write(dir.path().join("phrase"), "sekrit phrase\n").unwrap();
    let cases = [
        format!("private_key = \"{}\"", ed.display()),
        format!(
            "private_key_content = {{ file = \"{}\" }}",
            dir.path().join("ec_content").display()
        ),
        format!(
            "private_key = \"{}\"\npassphrase = {{ file = \"{}\" }}",
            rsa.display(),
            dir.path().join("phrase").display()
        ),
    ];
    for (i, auth) in cases.iter().enumerate() {
        let sub = dir.path().join(format!("case{i}"));
        std::fs::create_dir_all(&sub).unwrap();
        let s = server(&sshd, &sub, &format!("{auth}\n{}", pinned(&sshd)));
        let mut session = Pool::new(s)
            .get()
            .await
            .unwrap_or_else(|e| panic!("{auth}: {e}\n{}", sshd.log()));
        session.list("/").await.unwrap();
    }
    // OpenSSH 8.8+ refuses SHA-1 RSA signatures, so the RSA login above
    // proves rsa-sha2-256/512 was used.
    assert!(
        sshd.log().contains("RSA SHA256:") || sshd.log().contains("Accepted publickey"),
        "{}",
        sshd.log()
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_permanent_auth_error() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "not-the-password").unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!(
            "password = {{ file = \"{}/pw\" }}\n{}",
            dir.path().display(),
            pinned(&sshd)
        ),
    );
    let e = connect_err(s).await;
    assert_eq!((e.kind, e.temporary), (ErrorKind::Auth, false), "{e}");
    assert!(!e.to_string().contains("not-the-password"));
}

#[tokio::test]
async fn known_hosts_plain_and_hashed_entries_are_trusted() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    for hashed in [false, true] {
        let kh = sshd.known_hosts(dir.path(), hashed);
        let s = server(
            &sshd,
            dir.path(),
            &format!("{}\nknown_hosts = \"{}\"", password_env(), kh.display()),
        );
        Pool::new(s)
            .get()
            .await
            .unwrap_or_else(|e| panic!("hashed={hashed}: {e}"));
    }
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_with_its_fingerprint_and_how_to_pin_it() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let kh = dir.path().join("empty_known_hosts");
    std::fs::write(&kh, "").unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\nknown_hosts = \"{}\"", password_env(), kh.display()),
    );
    let e = connect_err(s).await;
    let msg = e.to_string();
    assert!(!e.temporary, "{msg}");
    assert!(msg.contains("unknown host key"), "{msg}");
    assert!(
        msg.contains(&format!("host_key = \"{}\"", sshd.host_key_fingerprint)),
        "{msg}"
    );
    // A pin of another key is refused the same way.
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\nhost_key = \"{other}\"", password_env()),
    );
    assert!(
        connect_err(s)
            .await
            .to_string()
            .contains(&sshd.host_key_fingerprint)
    );
}

#[tokio::test]
async fn a_changed_host_key_is_refused_loudly() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let other = sshd::keygen(dir.path(), "other", "ed25519", None, "");
    let line = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = line.split_whitespace();
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\nknown_hosts = \"{}\"", password_env(), kh.display()),
    );
    let msg = connect_err(s).await.to_string();
    assert!(
        msg.contains("HOST KEY CHANGED") && msg.contains(&sshd.host_key_fingerprint),
        "{msg}"
    );
    assert!(msg.contains(&format!("{}:1", kh.display())), "{msg}");
}

#[tokio::test]
async fn operations_read_write_append_rename_remove_mkdir() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    let d = data.to_str().unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let path = format!("{d}/deep/er/x y.bin");
    session.create_dirs(&format!("{d}/deep/er")).await.unwrap();
    let n = session
        .write_from(&path, WriteMode::Replace, &mut &body[..])
        .await
        .unwrap();
    assert_eq!(n, body.len() as u64);
    assert_eq!(std::fs::read(data.join("deep/er/x y.bin")).unwrap(), body);
    session
        .write_from(&path, WriteMode::Append, &mut &b"tail"[..])
        .await
        .unwrap();
    let mut got = Vec::new();
    session
        .read_into(&path, 1_000_000, ANY, &mut got)
        .await
        .unwrap();
    assert_eq!(&got[..got.len() - 4], &body[1_000_000..]);
    assert_eq!(&got[got.len() - 4..], b"tail");
    let st = session.stat(&path).await.unwrap();
    assert_eq!(st.size, Some(body.len() as u64 + 4));
    // rename without replace refuses an existing target; with replace it is atomic.
    let other = format!("{d}/other");
    session
        .write_from(&other, WriteMode::Replace, &mut &b"other"[..])
        .await
        .unwrap();
    let e = session.rename(&other, &path, false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    session.rename(&other, &path, true).await.unwrap();
    assert_eq!(
        std::fs::read(data.join("deep/er/x y.bin")).unwrap(),
        b"other"
    );
    session.remove(&path).await.unwrap();
    let e = session.stat(&path).await.unwrap_err();
    assert_eq!((e.kind, e.temporary), (ErrorKind::NotFound, false));
}

#[tokio::test]
async fn permission_denied_is_permanent() {
    use std::os::unix::fs::PermissionsExt;
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    let secret = data.join("secret");
    std::fs::write(&secret, b"x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let e = session
        .read_into(secret.to_str().unwrap(), 0, ANY, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.temporary),
        (ErrorKind::PermissionDenied, false),
        "{e}"
    );
}

#[tokio::test]
async fn a_ten_thousand_entry_directory_lists_completely() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    for i in 0..10_000 {
        std::fs::write(data.join(format!("f{i:05}")), b"").unwrap();
    }
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let entries = session.list(data.to_str().unwrap()).await.unwrap();
    assert_eq!(entries.len(), 10_000);
    // In batches as the server sends them: never the whole directory at
    // once, and together every entry once.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let listing = session.list_batches(data.to_str().unwrap(), tx);
    let gathered = async {
        let (mut sizes, mut names) = (Vec::new(), std::collections::HashSet::new());
        while let Some(batch) = rx.recv().await {
            sizes.push(batch.len());
            names.extend(batch.into_iter().map(|e| e.name));
        }
        (sizes, names)
    };
    let (listed, (sizes, names)) = tokio::join!(listing, gathered);
    listed.unwrap();
    assert_eq!(names.len(), 10_000);
    assert!(sizes.len() >= 20, "{} batches", sizes.len());
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    // A reader that stops early stops the listing, and the session is fine.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let listing = session.list_batches(data.to_str().unwrap(), tx);
    let first = async move { rx.recv().await.map(|b| b.len()) };
    let (listed, first) = tokio::join!(listing, first);
    listed.unwrap();
    assert!(first.is_some_and(|n| n > 0));
    assert_eq!(
        session.list(data.to_str().unwrap()).await.unwrap().len(),
        10_000
    );
}

/// Many small files on one session at once: answers come back in the order
/// asked, each with its own bytes; a missing file fails in its own slot, a
/// file that grew returns more than the listed size (the engine refuses
/// it), and the session is still usable afterwards.
#[tokio::test]
async fn many_small_files_read_at_once_answer_in_order() {
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    let mut files = Vec::new();
    for i in 0..120usize {
        let body = format!("file {i} ").repeat(i * 7);
        std::fs::write(data.join(format!("f{i:03}")), &body).unwrap();
        files.push((
            format!("{}/f{i:03}", data.display()),
            sized(body.len() as u64),
        ));
    }
    files[50].0 = format!("{}/missing", data.display());
    files[60].1 = sized(files[60].1.size.unwrap() - 3); // the listing saw it 3 bytes shorter: it grew since
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let answers = session.read_wholes(&files).await;
    assert_eq!(answers.len(), files.len());
    for (i, answer) in answers.iter().enumerate() {
        match i {
            50 => {
                let e = answer.as_ref().unwrap_err();
                assert_eq!((e.kind, e.temporary), (ErrorKind::NotFound, false));
            }
            60 => assert_eq!(
                answer.as_ref().unwrap().len() as u64,
                files[60].1.size.unwrap() + 1,
                "one byte past the listed size, no more"
            ),
            _ => {
                let want = std::fs::read(data.join(format!("f{i:03}"))).unwrap();
                assert_eq!(answer.as_ref().unwrap(), &want, "file {i}");
            }
        }
    }
    let again = session.read_whole(&files[7].0, files[7].1).await.unwrap();
    assert_eq!(Some(again.len() as u64), files[7].1.size);
}

/// The single-file path reads one byte past the listed size and no more: a
/// file that grew to megabytes since the listing shows it by that byte.
/// An unknown size reads to the end. A name that is not UTF-8 is listed,
/// flagged, instead of vanishing.
#[tokio::test]
async fn reads_stop_one_byte_past_the_listed_size_and_odd_names_are_flagged() {
    use std::os::unix::ffi::OsStrExt;
    let sshd = Sshd::start(Default::default(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    sshd::shared_dir(&data);
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(data.join("grew.bin"), &body).unwrap();
    std::fs::write(
        data.join(std::ffi::OsStr::from_bytes(b"bad\xffname.csv")),
        b"x",
    )
    .unwrap();
    let s = server(
        &sshd,
        dir.path(),
        &format!("{}\n{}", password_env(), pinned(&sshd)),
    );
    let mut session = Pool::new(s).get().await.unwrap();
    let path = format!("{}/grew.bin", data.display());
    for offset in [0, 600_000] {
        let mut got = Vec::new();
        let n = session
            .read_into(&path, offset, sized(1_000_000), &mut got)
            .await
            .unwrap();
        assert_eq!(n, 1_000_001 - offset, "from {offset}");
        assert_eq!(&got[..], &body[offset as usize..1_000_001]);
    }
    let mut got = Vec::new();
    session.read_into(&path, 0, ANY, &mut got).await.unwrap();
    assert_eq!(got.len(), body.len(), "unknown size: to the end");
    let exact = session.read_whole(&path, sized(5_000_000)).await.unwrap();
    assert_eq!(exact.len(), body.len());
    let listed = session.list(data.to_str().unwrap()).await.unwrap();
    let bad = listed.iter().find(|e| e.name.starts_with("bad")).unwrap();
    assert!(bad.invalid_name, "{bad:?}");
    assert_eq!(
        bad.name, "bad\\xffname.csv",
        "the bad byte escaped, the rest kept"
    );
    assert!(
        !listed
            .iter()
            .find(|e| e.name == "grew.bin")
            .unwrap()
            .invalid_name
    );
}

/// A large upload's bytes are fsynced on the server along the way, on a
/// second SFTP channel (on OpenSSH a second `sftp-server`, whose fsync
/// does not hold up the writes), not only at its end: the disk writes
/// while the rest arrives, and the final fsync has only the last stretch.
#[tokio::test]
async fn a_large_upload_is_fsynced_along_the_way_on_a_second_channel() {
    let sshd = Sshd::start(
        sshd::Options {
            sftp_log: true,
            ..Default::default()
        },
        &[],
    );
    let (_dir, data, s) = password_login(&sshd, sshd.port);
    let mut session = Pool::new(s).get().await.unwrap();
    let body: Vec<u8> = (0..150u32 << 20).map(|i| (i % 251) as u8).collect();
    let path = format!("{}/big.bin", data.display());
    let n = session
        .write_from(&path, WriteMode::Replace, &mut &body[..])
        .await
        .unwrap();
    assert_eq!(n, body.len() as u64);
    assert!(std::fs::read(data.join("big.bin")).unwrap() == body);

    let log = sshd.sftp_log();
    let quoted = format!("\"{path}\"");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&quoted)).collect();
    let closed = lines
        .iter()
        .position(|l| l.contains("close ") && l.contains(&format!("written {}", body.len())))
        .unwrap_or_else(|| panic!("no close of the written file in the server's log:\n{log}"));
    let fsyncs = lines[..closed]
        .iter()
        .filter(|l| l.contains("fsync "))
        .count();
    assert!(
        fsyncs >= 2,
        "one fsync along the way and the final one expected before the close, saw {fsyncs}:\n{log}"
    );
    assert!(
        lines[..closed]
            .iter()
            .any(|l| l.contains("open ") && l.contains("flags READ ")),
        "no second handle (read-only) opened for the early fsyncs:\n{log}"
    );
    let servers = log.lines().filter(|l| l.starts_with("pid ")).count();
    assert_eq!(
        servers, 2,
        "two sftp-server processes, one per channel:\n{log}"
    );
}

/// `fsync = false` on the server: neither the final fsync of an upload
/// nor the early ones of a large upload are asked for (no fsync in the
/// server's log, no second `sftp-server`), and the files arrive whole.
/// The test above shows both with the default.
#[tokio::test]
async fn with_fsync_false_no_upload_asks_the_server_for_an_fsync() {
    let sshd = Sshd::start(
        sshd::Options {
            sftp_log: true,
            ..Default::default()
        },
        &[],
    );
    let (_dir, data, s) = password_login_with(&sshd, sshd.port, "fsync = false");
    assert!(s.sftp.skip_fsync, "fsync = false was not read");
    let mut session = Pool::new(s).get().await.unwrap();
    let small: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let big: Vec<u8> = (0..70u32 << 20).map(|i| (i % 239) as u8).collect();
    for (name, body) in [("small.bin", &small), ("big.bin", &big)] {
        let path = format!("{}/{name}", data.display());
        let n = session
            .write_from(&path, WriteMode::Replace, &mut &body[..])
            .await
            .unwrap();
        assert_eq!(n, body.len() as u64);
        assert!(std::fs::read(data.join(name)).unwrap() == *body);
    }

    let log = sshd.sftp_log();
    for (name, len) in [("small.bin", small.len()), ("big.bin", big.len())] {
        assert!(
            log.lines().any(|l| l.contains(name)
                && l.contains("close ")
                && l.contains(&format!("written {len}"))),
            "no close of {name} in the server's log:\n{log}"
        );
    }
    let fsyncs = log.lines().filter(|l| l.contains("fsync ")).count();
    assert_eq!(fsyncs, 0, "fsync = false, yet the server was asked:\n{log}");
    let servers = log.lines().filter(|l| l.starts_with("pid ")).count();
    assert_eq!(servers, 1, "no second channel without early fsyncs:\n{log}");
}

/// A connection cut while a large upload has early fsyncs going (past the
/// first 64 MiB): the upload fails at once as a temporary connection
/// error, nothing waits on the second channel, and a new session
/// continues the file at the offset the server holds.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_upload_cut_midway_fails_at_once_and_continues_at_its_offset() {
    let sshd = Sshd::start(Default::default(), &[]);
    let relay = std::sync::Arc::new(Relay::start(sshd.port));
    let (_dir, data, s) = password_login(&sshd, relay.port);
    let body: Vec<u8> = (0..150u32 << 20).map(|i| (i % 241) as u8).collect();
    let path = format!("{}/big.bin", data.display());
    let file = data.join("big.bin");
    let cutter = {
        let (relay, file) = (relay.clone(), file.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(60) {
                if std::fs::metadata(&file).is_ok_and(|m| m.len() >= 100 << 20) {
                    relay.cut_all();
                    return true;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            false
        })
    };
    let mut session = Pool::new(s.clone()).get().await.unwrap();
    let t = std::time::Instant::now();
    let e = session
        .write_from(&path, WriteMode::Replace, &mut &body[..])
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(cutter.join().unwrap(), "the upload never reached 100 MiB");
    assert!(e.temporary, "{e}");
    assert!(
        took < std::time::Duration::from_secs(8),
        "failed after {took:?}: {e}"
    );
    let have = std::fs::metadata(&file).unwrap().len();
    assert!(have >= 100 << 20 && have < body.len() as u64, "{have}");
    drop(session);
    let mut session = Pool::new(s).get().await.unwrap();
    session
        .write_from(&path, WriteMode::At(have), &mut &body[have as usize..])
        .await
        .unwrap();
    assert!(std::fs::read(&file).unwrap() == body);
}

/// A server that allows one channel per connection (`MaxSessions 1`)
/// refuses the second channel for early fsyncs: the upload goes on
/// without them, whole, without waiting for the refusal's timeout, and
/// the next large upload on the session does not ask again.
#[tokio::test]
async fn a_server_refusing_a_second_channel_gets_no_early_fsyncs_and_no_wait() {
    let sshd = Sshd::start(
        sshd::Options {
            sftp_log: true,
            max_sessions: Some(1),
            ..Default::default()
        },
        &[],
    );
    let (_dir, data, s) = password_login(&sshd, sshd.port);
    let mut session = Pool::new(s).get().await.unwrap();
    let body: Vec<u8> = (0..100u32 << 20).map(|i| (i % 239) as u8).collect();
    for name in ["one.bin", "two.bin"] {
        let path = format!("{}/{name}", data.display());
        let t = std::time::Instant::now();
        session
            .write_from(&path, WriteMode::Replace, &mut &body[..])
            .await
            .unwrap();
        let took = t.elapsed();
        assert!(took < std::time::Duration::from_secs(4), "{name}: {took:?}");
        assert!(std::fs::read(data.join(name)).unwrap() == body);
    }
    let log = sshd.sftp_log();
    let servers = log.lines().filter(|l| l.starts_with("pid ")).count();
    assert_eq!(servers, 1, "one sftp-server, the writing one:\n{log}");
    let fsyncs = log.lines().filter(|l| l.contains("fsync ")).count();
    assert_eq!(fsyncs, 2, "only each file's final fsync:\n{log}");
    let refused = sshd.log().matches("no more sessions").count();
    assert_eq!(
        refused,
        1,
        "the second channel asked for once:\n{}",
        sshd.log()
    );
}
