//! The Listen pipeline over FTP and FTPS through the real `ferry` binary,
//! against vsftpd on 127.0.0.1: delivery, `move_to` (never overwriting),
//! `delete`, a handler, and a SIGKILL mid-download that the next start resumes.

mod common;

use common::ftp_servers::*;
use common::*;
use std::path::Path;
use std::time::Duration;

/// The `[servers.ftp]` table for `srv`; `extra` adds keys.
fn server_block(protocol: &str, srv: &FtpServer, extra: &str) -> String {
    format!(
        "[servers.ftp]\nprotocol = \"{protocol}\"\nhost = \"127.0.0.1\"\nport = {}\nmax_sessions = 3\n\
         connect_timeout = \"10s\"\nio_timeout = \"10s\"\n{extra}\n",
        srv.port
    )
}

/// A rule over `remote_dir` on the server, delivering into `f.outbox`.
fn rule(f: &Fixture, name: &str, remote_dir: &str, extra: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\nserver = \"ftp\"\nremote_dir = \"{remote_dir}\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\ninterval = \"200ms\"\nretry = {{ attempts = 3, first = \"0s\", max = \"0s\" }}\n{extra}\n",
        f.outbox.join(name).display()
    )
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Delivery with `move_to`, the timestamp suffix for a taken archive name,
/// and `delete` with a handler, over `protocol` against `srv`.
fn pipeline_round_trip(f: &Fixture, srv: &FtpServer, server: &str) {
    let out = f.path("handler.out");
    let h = script(
        f,
        "h.sh",
        &format!("env | grep ^FERRY_ | sort > '{}'", out.display()),
    );
    let rules = [
        rule(
            f,
            "moved",
            &srv.remote("pub/in"),
            &format!(
                "move_to = \"{}\"\nrecursive = true",
                srv.remote("pub/archive/2026")
            ),
        ),
        rule(
            f,
            "deleted",
            &srv.remote("pub/del"),
            &format!(
                "delete = true\nhandler = [\"{}\", \"{{local_path}}\"]",
                h.display()
            ),
        ),
    ];
    f.write_config(&format!("{server}\n{}", rules.join("\n")));
    let root = &srv.root;
    put(root, "pub/in/a.csv", b"first");
    put(root, "pub/in/sub dir/ünï code.csv", b"deep");
    put(root, "pub/in/-dash.csv", b"dash");
    put(root, "pub/del/b.csv", b"bee");
    f.once(0);
    let moved = f.outbox.join("moved");
    assert_eq!(std::fs::read(moved.join("a.csv")).unwrap(), b"first");
    assert_eq!(
        std::fs::read(moved.join("sub dir/ünï code.csv")).unwrap(),
        b"deep"
    );
    assert_eq!(std::fs::read(moved.join("-dash.csv")).unwrap(), b"dash");
    assert_eq!(
        std::fs::read(root.join("pub/archive/2026/a.csv")).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read(root.join("pub/archive/2026/sub dir/ünï code.csv")).unwrap(),
        b"deep"
    );
    assert!(!root.join("pub/in/a.csv").exists());
    assert_eq!(
        std::fs::read(f.outbox.join("deleted/b.csv")).unwrap(),
        b"bee"
    );
    assert!(!root.join("pub/del/b.csv").exists(), "delete = true");
    let env = std::fs::read_to_string(&out).unwrap();
    for var in [
        "FERRY_FILE_NAME=b.csv",
        "FERRY_HOST=127.0.0.1",
        &format!("FERRY_PORT={}", srv.port),
        "FERRY_RULE=deleted",
    ] {
        assert!(env.contains(var), "missing {var} in:\n{env}");
    }
    assert_eq!(f.files(Some("done")).len(), 4);

    // Same name again: the archived file is kept, the new one gets a suffix.
    put(root, "pub/in/a.csv", b"second version");
    f.once(0);
    // Locally too: the unread first file is kept (if_exists = "unique").
    assert_eq!(std::fs::read(moved.join("a.csv")).unwrap(), b"first");
    let local: Vec<_> = names(&moved)
        .into_iter()
        .filter(|n| n.starts_with("a.") && n.ends_with("Z.csv"))
        .collect();
    assert_eq!(local.len(), 1, "{:?}", names(&moved));
    assert_eq!(
        std::fs::read(moved.join(&local[0])).unwrap(),
        b"second version"
    );
    assert_eq!(
        std::fs::read(root.join("pub/archive/2026/a.csv")).unwrap(),
        b"first"
    );
    let archived = names(&root.join("pub/archive/2026"));
    let suffixed: Vec<_> = archived
        .iter()
        .filter(|n| n.starts_with("a.") && n.ends_with("Z.csv"))
        .collect();
    assert_eq!(suffixed.len(), 1, "{archived:?}");
    assert_eq!(f.files(Some("done")).len(), 5);
    assert!(f.files(Some("failed")).is_empty());
}

#[test]
fn listen_pipeline_over_ftp_moves_deletes_and_runs_handlers() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let server = server_block("ftp", &srv, "");
    pipeline_round_trip(&f, &srv, &server);
}

#[test]
fn listen_pipeline_over_explicit_ftps() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let opts = Vsftpd {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let server = server_block(
        "ftps",
        &srv,
        &format!("ca_file = \"{}\"", certs.ca.display()),
    );
    pipeline_round_trip(&f, &srv, &server);
}

#[test]
fn listen_pipeline_over_implicit_ftps_with_a_password() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = pyftpdlib(&f.path("srv"), PyTls::Implicit, Some(&certs));
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let extra = format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}\ncertificate_sha256 = \"{}\"",
        f.path("ftp-password").display(),
        certs.sha256
    );
    let server = server_block("ftps-implicit", &srv, &extra);
    f.write_config(&format!(
        "{server}\n{}",
        rule(&f, "r", "/in", "delete = true")
    ));
    put(&srv.root, "in/x.bin", &[9u8; 70_000]);
    f.once(0);
    assert_eq!(
        std::fs::read(f.outbox.join("r/x.bin")).unwrap(),
        vec![9u8; 70_000]
    );
    assert!(!srv.root.join("in/x.bin").exists());
}

#[test]
fn sigkill_mid_download_then_restart_resumes() {
    let f = Fixture::new("");
    // 1 MB/s: the 5 MB download takes seconds, so the kill lands inside it.
    let opts = Vsftpd {
        max_rate: 1_000_000,
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let server = server_block("ftp", &srv, "");
    f.write_config(&format!(
        "{server}\n{}",
        rule(&f, "r", &srv.remote("pub/in"), "")
    ));
    let body: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    put(&srv.root, "pub/in/big.bin", &body);
    let out = f.outbox.join("r");
    let mut daemon = f.spawn_run();
    let partial = || {
        std::fs::read_dir(&out)
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok)
                    .find(|e| e.file_name().to_string_lossy().ends_with(".ferry-part"))
            })
            .and_then(|e| e.metadata().ok())
            .map_or(0, |m| m.len())
    };
    wait_for(
        Duration::from_secs(30),
        "a partial download of 1.5 MB",
        || partial() > 1_500_000,
    );
    daemon.kill9();
    let had = partial();
    assert!(had < body.len() as u64, "killed too late");
    let log = f.once(0);
    assert!(log.contains("resuming download"), "{log}");
    assert!(
        std::fs::read(out.join("big.bin")).unwrap() == body,
        "resumed file differs"
    );
    // vsftpd's transfer log: the second download sent only what was missing.
    let sent: Vec<u64> = srv
        .log()
        .lines()
        .filter(|l| l.contains("OK DOWNLOAD") && l.contains("big.bin"))
        .filter_map(|l| {
            l.split(", ")
                .find(|p| p.ends_with(" bytes"))?
                .trim_end_matches(" bytes")
                .parse()
                .ok()
        })
        .collect();
    let last = *sent.last().expect("a completed download in the vsftpd log");
    assert!(
        last <= body.len() as u64 - had,
        "re-sent {last} bytes after {had} were on disk"
    );
}

/// MLSD without a `size` fact: the file's size is unknown, stored as -1,
/// and the file is read to its end, never delivered as an empty file.
#[test]
fn a_file_listed_without_a_size_is_read_to_its_end() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let srv = pyftpdlib_without_sizes(&f.path("srv"));
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let extra = format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}",
        f.path("ftp-password").display()
    );
    let server = server_block("ftp", &srv, &extra);
    f.write_config(&format!("{server}\n{}", rule(&f, "r", "/in", "")));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    put(&srv.root, "in/big.bin", &body);
    put(&srv.root, "in/small.csv", b"small but not empty");
    f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("r/big.bin")).unwrap(), body);
    assert_eq!(
        std::fs::read(f.outbox.join("r/small.csv")).unwrap(),
        b"small but not empty"
    );
    let rows = f.files(Some("done"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["size"] == -1), "{rows:?}");
    // Polled again, an unknown size is the same version: nothing twice.
    std::fs::remove_file(f.outbox.join("r/big.bin")).unwrap();
    f.once(0);
    assert!(!f.outbox.join("r/big.bin").exists());
    assert_eq!(f.files(None).len(), 2);
}

/// ProFTPD's mod_tls at its defaults refuses (425) a data connection that
/// resumes any TLS session but its own control connection's. Four sessions
/// at once fetch 40 files, small (batched) and large: every one delivered
/// at the first attempt, no data connection refused.
#[test]
fn proftpd_ftps_data_connections_resume_their_own_session() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = proftpd_tls(&f.path("srv"), &certs);
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let server = format!(
        "[servers.ftp]\nprotocol = \"ftps\"\nhost = \"127.0.0.1\"\nport = {}\nmax_sessions = 4\n\
         connect_timeout = \"10s\"\nio_timeout = \"10s\"\nuser = \"{PY_USER}\"\n\
         password = {{ file = \"{}\" }}\nca_file = \"{}\"\n",
        srv.port,
        f.path("ftp-password").display(),
        certs.ca.display()
    );
    let mut r = rule(&f, "r", &srv.remote("pub/in"), "");
    r = r.replace("attempts = 3", "attempts = 1");
    f.write_config(&format!("{server}\n{r}"));
    let body = |i: usize| {
        vec![
            i as u8;
            if i.is_multiple_of(5) {
                100_000
            } else {
                1_000 + i
            }
        ]
    };
    for i in 0..40 {
        put(&srv.root, &format!("pub/in/f{i:02}.bin"), &body(i));
    }
    let log = f.once(0);
    let failed = f.files(Some("failed"));
    assert!(failed.is_empty(), "{failed:?}\n{log}");
    for i in 0..40 {
        let got = std::fs::read(f.outbox.join(format!("r/f{i:02}.bin")));
        assert_eq!(got.ok(), Some(body(i)), "f{i:02}.bin\n{log}");
    }
    assert!(
        !data_connection_refused(&log),
        "a data connection was refused:\n{log}"
    );
}

/// A partial download left by an earlier run, on a server without REST:
/// the file is fetched again from byte 0 in the same attempt, not failed.
#[test]
fn a_partial_file_from_a_server_without_rest_is_fetched_from_the_start() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let srv = pyftpdlib_without_rest(&f.path("srv"));
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let extra = format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}",
        f.path("ftp-password").display()
    );
    let server = server_block("ftp", &srv, &extra);
    f.write_config(&format!("{server}\n{}", rule(&f, "r", "/in", "")));
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    put(&srv.root, "in/big.bin", &body);
    let mtime = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(srv.root.join("in/big.bin"))
            .unwrap()
            .mtime()
    };
    // What a killed run leaves (row 1, this version): the first 100 kB.
    let out = f.outbox.join("r");
    std::fs::create_dir_all(&out).unwrap();
    let temp = out.join(part_name("big.bin", 1, mtime, 300_000));
    std::fs::write(&temp, &body[..100_000]).unwrap();
    let log = f.once(0);
    assert!(log.contains("resuming download"), "{log}");
    assert!(log.contains("downloading from the start"), "{log}");
    assert!(std::fs::read(out.join("big.bin")).unwrap() == body, "{log}");
    assert_eq!(f.files(Some("done")).len(), 1, "{log}");
    assert!(!temp.exists());
}

/// vsftpd lists a file with its time (`Jun  2 18:00`) until it is 182 days
/// old, then with the year only (`Jun  2  2026`). A file delivered while its
/// listing showed the time must not become a new version when the listing
/// drops it (with `keep` it would be delivered again). The file is made
/// just younger than the boundary, delivered, and polled again once past it.
fn listing_that_drops_the_time_keeps_the_version(vsftpd_extra: &str) {
    let f = Fixture::new("");
    let opts = Vsftpd {
        extra: vsftpd_extra.into(),
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let server = server_block("ftp", &srv, "");
    f.write_config(&format!(
        "{server}\n{}",
        rule(&f, "r", &srv.remote("pub/in"), "")
    ));
    put(&srv.root, "pub/in/old.csv", b"half a year");
    let boundary = 182 * 86_400;
    let margin = 5;
    let file = srv.root.join("pub/in/old.csv");
    let mtime = std::time::SystemTime::now() - Duration::from_secs(boundary - margin);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let log = f.once(0);
    assert_eq!(f.files(Some("done")).len(), 1, "{log}");
    let past = mtime + Duration::from_secs(boundary + 1);
    while std::time::SystemTime::now() < past {
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..2 {
        let log = f.once(0);
        let rows = f.files(None);
        assert_eq!(rows.len(), 1, "a second version appeared: {rows:?}\n{log}");
    }
    assert_eq!(names(&f.outbox.join("r")), vec!["old.csv".to_string()]);
}

#[test]
fn a_listing_that_drops_the_time_is_not_a_new_version_with_mdtm() {
    listing_that_drops_the_time_keeps_the_version("");
}

#[test]
fn a_listing_that_drops_the_time_is_not_a_new_version_on_a_list_only_server() {
    listing_that_drops_the_time_keeps_the_version("cmds_denied=FEAT,MDTM,SIZE\n");
}

/// The pyftpdlib server block with the test user's password in a file.
fn py_server_block(f: &Fixture, srv: &FtpServer) -> String {
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let extra = format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}",
        f.path("ftp-password").display()
    );
    server_block("ftp", srv, &extra)
}

/// An MLSD line that does not parse names a file ferry cannot see: it is
/// warned about, with an example, and the readable entries are delivered.
#[test]
fn unreadable_mlsd_lines_are_warned_about() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let srv = pyftpdlib_with_a_bad_mlsd_line(&f.path("srv"));
    let server = py_server_block(&f, &srv);
    f.write_config(&format!("{server}\n{}", rule(&f, "r", "/in", "")));
    put(&srv.root, "in/good.csv", b"good");
    let log = f.once(0);
    assert_eq!(std::fs::read(f.outbox.join("r/good.csv")).unwrap(), b"good");
    let warning = log
        .lines()
        .find(|l| l.contains("MLSD lines in an unknown format were skipped"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("count=1") && warning.contains("broken.csv"),
        "{warning}"
    );
}

/// A name that fits the server but whose local path passes PATH_MAX
/// (4096 bytes) fails at once, for good, with the limit in the message,
/// instead of spending its retries; a short name beside it is delivered.
#[test]
fn a_path_too_long_for_the_local_file_system_fails_at_once_with_the_limit() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let server = server_block("ftp", &srv, "");
    // local_dir about 3900 bytes deep; the long name takes it past 4096.
    let mut deep = f.outbox.join("r");
    while deep.as_os_str().len() < 3900 {
        deep.push("d".repeat(200));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let r = rule(&f, "r", &srv.remote("pub/in"), "").replace(
        &format!("local_dir = \"{}\"", f.outbox.join("r").display()),
        &format!("local_dir = \"{}\"", deep.display()),
    );
    f.write_config(&format!("{server}\n{r}"));
    let long = format!("{}.csv", "n".repeat(240));
    put(&srv.root, &format!("pub/in/{long}"), &[7u8; 100_000]);
    put(&srv.root, "pub/in/short.csv", b"short");
    // Exit code 1: a file failed.
    let log = f.once(1);
    assert_eq!(std::fs::read(deep.join("short.csv")).unwrap(), b"short");
    let failed = f.files(Some("failed"));
    assert_eq!(failed.len(), 1, "{failed:?}\n{log}");
    assert_eq!(failed[0]["failures"], 1, "{failed:?}");
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("a path 4096 bytes"), "{error}");
}
