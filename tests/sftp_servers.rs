//! The SFTP transport against servers other than OpenSSH, which hid
//! protocol mistakes by reusing small handle numbers: asyncssh (handles
//! count up from 0 and are never reused; with and without OpenSSH's
//! extensions) and ProFTPD's mod_sftp (status codes from later drafts).
//! Each scenario runs against each server.

mod common;

use common::sftp_servers::{self, Extensions, SftpServer};
use common::throttle::Throttle;
use common::*;
use ferry::remote::{ErrorKind, Pool, Version, WriteMode};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug)]
enum Kind {
    AsyncSsh,
    AsyncSshPlain,
    ProFtpd,
}

struct Setup {
    f: Fixture,
    server: SftpServer,
    /// The server's files: `inbox/` is the rule's `remote_dir`.
    srv: PathBuf,
}

impl Setup {
    fn new(kind: Kind, rule_extra: &str, server_extra: &str) -> Setup {
        let f = Fixture::new("");
        let srv = f.path("srv");
        std::fs::create_dir_all(srv.join("inbox")).unwrap();
        std::fs::create_dir_all(srv.join("nostat")).unwrap();
        let server = match kind {
            Kind::AsyncSsh => sftp_servers::asyncssh(&srv, Extensions::OpenSsh),
            Kind::AsyncSshPlain => sftp_servers::asyncssh(&srv, Extensions::None),
            Kind::ProFtpd => sftp_servers::proftpd(&srv),
        };
        let rules = format!(
            "{}\n[[watch]]\nname = \"r\"\nserver = \"s\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n\
             stable_for = \"0s\"\nretry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n{rule_extra}\n",
            server.server_block(&f.path("pw"), server_extra),
            srv.join("inbox").display(),
            f.outbox.display()
        );
        f.write_config(&rules);
        Setup { f, server, srv }
    }

    fn put(&self, rel: &[u8], data: &[u8]) {
        let p = self
            .srv
            .join("inbox")
            .join(std::ffi::OsStr::from_bytes(rel));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn once(&self, code: i32) -> String {
        let out = self.f.ferry(&["once"]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "ferry once log:\n{log}\nserver log:\n{}",
            self.server.log()
        );
        log
    }

    fn pool(&self) -> std::sync::Arc<Pool> {
        let text = std::fs::read_to_string(&self.f.config).unwrap();
        let cfg = ferry::config::parse(&self.f.config, &text).unwrap_or_else(|e| panic!("{e}"));
        Pool::new(cfg.servers["s"].clone())
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// Runs a scenario against each server, one test each.
macro_rules! on_each_server {
    ($scenario:ident) => {
        mod $scenario {
            use super::Kind;
            #[test]
            fn asyncssh() {
                super::$scenario(Kind::AsyncSsh)
            }
            #[test]
            fn asyncssh_without_extensions() {
                super::$scenario(Kind::AsyncSshPlain)
            }
            #[test]
            fn proftpd() {
                super::$scenario(Kind::ProFtpd)
            }
        }
    };
}

/// 300 files through one session in one poll: handles well past 127
/// (asyncssh's `00 00 00 80` is not UTF-8 on its own).
fn three_hundred_files_in_one_pass(kind: Kind) {
    let s = Setup::new(kind, "", "max_sessions = 1");
    let size = |i: usize| if i % 50 == 3 { 200_000 + i } else { 1 + i * 37 };
    for i in 0..300 {
        s.put(
            format!("f{i:03}.bin").as_bytes(),
            &pattern(size(i), i as u8),
        );
    }
    s.once(0);
    for i in 0..300 {
        let got = std::fs::read(s.f.outbox.join(format!("f{i:03}.bin")))
            .unwrap_or_else(|e| panic!("f{i:03}.bin: {e}"));
        assert!(got == pattern(size(i), i as u8), "f{i:03}.bin differs");
    }
}
on_each_server!(three_hundred_files_in_one_pass);

/// A recursive walk opens a directory handle per directory.
fn a_150_directory_tree_is_delivered(kind: Kind) {
    let s = Setup::new(kind, "recursive = true", "max_sessions = 1");
    for a in 0..15 {
        for b in 0..10 {
            s.put(
                format!("d{a:02}/e{b}/f.csv").as_bytes(),
                format!("{a}-{b}").as_bytes(),
            );
        }
    }
    s.once(0);
    for a in 0..15 {
        for b in 0..10 {
            let p = s.f.outbox.join(format!("d{a:02}/e{b}/f.csv"));
            assert_eq!(std::fs::read(&p).unwrap(), format!("{a}-{b}").as_bytes());
        }
    }
}
on_each_server!(a_150_directory_tree_is_delivered);

/// The name is listed with its bad byte escaped and recorded as failed;
/// every other file arrives.
fn a_name_that_is_not_utf8_fails_alone(kind: Kind) {
    let s = Setup::new(kind, "", "");
    s.put(b"bad\xff.csv", b"x");
    for i in 0..5 {
        s.put(format!("good{i}.csv").as_bytes(), b"fine");
    }
    s.once(1);
    for i in 0..5 {
        assert_eq!(
            std::fs::read(s.f.outbox.join(format!("good{i}.csv"))).unwrap(),
            b"fine"
        );
    }
    let failed = s.f.files(Some("failed"));
    assert_eq!(failed.len(), 1, "{failed:?}");
    let path = failed[0]["path"].as_str().unwrap();
    assert!(path.ends_with("bad\\xff.csv"), "{path}");
}
on_each_server!(a_name_that_is_not_utf8_fails_alone);

/// A rename onto an existing name that the client could not check first
/// (stat refused) is answered with status 11, a code SFTP v3 does not
/// define: that rename fails as "already exists", the session goes on.
fn a_rename_refused_with_an_unknown_code_fails_alone(kind: Kind) {
    let s = Setup::new(kind, "", "");
    s.put(b"a.csv", b"a");
    s.put(b"b.csv", b"b");
    std::fs::write(s.srv.join("nostat/taken.csv"), b"keep").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut session = s.pool().get().await.unwrap();
        let inbox = s.srv.join("inbox").display().to_string();
        let nostat = s.srv.join("nostat").display().to_string();
        let e = session
            .rename(
                &format!("{inbox}/a.csv"),
                &format!("{nostat}/taken.csv"),
                false,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(!e.breaks_session(), "{e}");
        let mut names: Vec<_> = session
            .list(&inbox)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a.csv", "b.csv"]);
        let b = format!("{inbox}/b.csv");
        let got = session
            .read_whole(
                &b,
                Version {
                    size: Some(1),
                    mtime: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(got, b"b");
        session
            .rename(&b, &format!("{nostat}/free.csv"), false)
            .await
            .unwrap();
    });
    assert_eq!(
        std::fs::read(s.srv.join("nostat/taken.csv")).unwrap(),
        b"keep"
    );
    assert_eq!(std::fs::read(s.srv.join("nostat/free.csv")).unwrap(), b"b");
    assert!(s.srv.join("inbox/a.csv").exists());
}
on_each_server!(a_rename_refused_with_an_unknown_code_fails_alone);

/// Writes in every mode, times, renames that replace (posix-rename or
/// remove + rename), directories: with and without the extensions.
fn operations_work(kind: Kind) {
    let s = Setup::new(kind, "", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = s.srv.join("inbox").display().to_string();
    rt.block_on(async {
        let mut session = s.pool().get().await.unwrap();
        let p = format!("{inbox}/up.bin");
        let body = pattern(700_000, 9);
        let n = session
            .write_from(&p, WriteMode::Replace, &mut &body[..400_000])
            .await
            .unwrap();
        assert_eq!(n, 400_000);
        session
            .write_from(&p, WriteMode::At(300_000), &mut &body[300_000..600_000])
            .await
            .unwrap();
        session
            .write_from(&p, WriteMode::Append, &mut &body[600_000..])
            .await
            .unwrap();
        assert!(session.set_mtime(&p, 1_500_000_000).await.unwrap());
        let e = session.stat(&p).await.unwrap();
        assert_eq!((e.size, e.mtime), (Some(700_000), 1_500_000_000));
        session
            .write_from(
                &format!("{inbox}/old.bin"),
                WriteMode::Replace,
                &mut &b"old"[..],
            )
            .await
            .unwrap();
        session
            .rename(&p, &format!("{inbox}/old.bin"), true)
            .await
            .unwrap();
        session
            .create_dirs(&format!("{inbox}/x/y/z"))
            .await
            .unwrap();
        let gone = format!("{inbox}/x/gone.bin");
        session
            .write_from(&gone, WriteMode::Replace, &mut &b"x"[..])
            .await
            .unwrap();
        session.remove(&gone).await.unwrap();

        // Many renames in flight: each answered on its own; the one onto a
        // taken name fails alone and nothing is overwritten.
        let mut pairs = Vec::new();
        for i in 0..40 {
            let from = format!("{inbox}/many.{i}.tmp");
            session
                .write_from(&from, WriteMode::Replace, &mut format!("{i}").as_bytes())
                .await
                .unwrap();
            pairs.push((from, format!("{inbox}/many.{i}")));
        }
        pairs[7].1 = format!("{inbox}/old.bin");
        let answers = session.renames(&pairs, false).await;
        assert_eq!(answers.len(), 40);
        for (i, a) in answers.iter().enumerate() {
            if i == 7 {
                let e = a.as_ref().unwrap_err();
                assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
            } else {
                a.as_ref().unwrap();
            }
        }
        // Replacing: every pair at once.
        let pairs = vec![(format!("{inbox}/many.7.tmp"), format!("{inbox}/many.0"))];
        for a in session.renames(&pairs, true).await {
            a.unwrap();
        }
    });
    for i in 1..40 {
        let want = if i == 7 { None } else { Some(format!("{i}")) };
        let got = std::fs::read_to_string(s.srv.join(format!("inbox/many.{i}"))).ok();
        assert_eq!(got, want, "many.{i}");
    }
    assert_eq!(
        std::fs::read_to_string(s.srv.join("inbox/many.0")).unwrap(),
        "7"
    );
    assert_eq!(
        std::fs::read(s.srv.join("inbox/old.bin")).unwrap(),
        pattern(700_000, 9)
    );
    assert!(s.srv.join("inbox/x/y/z").is_dir());
    assert!(!s.srv.join("inbox/x/gone.bin").exists());
}
on_each_server!(operations_work);

/// An upload long enough for early fsyncs (past 64 MiB): where the server
/// offers `fsync@openssh.com`, a second channel carries them (asyncssh
/// serves it; ProFTPD may refuse or ignore it); without it, none are
/// asked. Either way the file arrives whole, and the session goes on.
fn a_large_upload_arrives_whole(kind: Kind) {
    let s = Setup::new(kind, "", "");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let inbox = s.srv.join("inbox").display().to_string();
    rt.block_on(async {
        let mut session = s.pool().get().await.unwrap();
        let body = pattern(70 << 20, 3);
        for name in ["one.bin", "two.bin"] {
            let p = format!("{inbox}/{name}");
            let n = session
                .write_from(&p, WriteMode::Replace, &mut &body[..])
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", s.server.log()));
            assert_eq!(n, body.len() as u64);
            assert!(std::fs::read(s.srv.join("inbox").join(name)).unwrap() == body);
        }
        let listed = session.list(&inbox).await.unwrap();
        assert_eq!(listed.len(), 2, "{}", s.server.log());
    });
}
on_each_server!(a_large_upload_arrives_whole);

/// A large file through a link shaped per connection: the probe finds one
/// stream slow, its read goes on as the first range and three more
/// sessions fetch the rest at their offsets. Servers differ in how they
/// serve reads at offsets on several sessions of one user at once.
fn a_large_file_is_split_through_a_shaped_link(kind: Kind) {
    let s = Setup::new(
        kind,
        "",
        "max_sessions = 4\nsegments = 4\nsegment_threshold = \"1MiB\"",
    );
    let slow = Throttle::start(s.server.port, 2_000_000);
    // The same configuration, through the relay (written whole: the
    // fixture's `write_config` would add a second [daemon]).
    let config = std::fs::read_to_string(&s.f.config).unwrap().replace(
        &format!("port = {}\n", s.server.port),
        &format!("port = {}\n", slow.port),
    );
    std::fs::write(&s.f.config, config).unwrap();
    let data = pattern(8 * 1024 * 1024, 11);
    s.put(b"big.bin", &data);
    let log = s.once(0);
    assert!(log.contains("one stream is slow"), "{log}");
    assert!(log.contains("downloading in segments"), "{log}");
    assert!(
        std::fs::read(s.f.outbox.join("big.bin")).unwrap() == data,
        "big.bin differs:\n{log}"
    );
    assert_eq!(slow.connections(), 4, "{log}");
}
on_each_server!(a_large_file_is_split_through_a_shaped_link);
