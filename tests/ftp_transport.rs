//! The plain FTP transport against real vsftpd and pyftpdlib processes on
//! 127.0.0.1: every Session operation over UNIX LIST, EPSV/PASV and NAT
//! repair, active mode, timeouts, reconnects and resuming after a cut.

mod common;

use common::free_port;
use common::ftp_servers::*;
use common::ftp_session::*;
use ferry::config::{FtpMode, FtpOptions, Protocol};
use ferry::remote::{EntryKind, ErrorKind, WriteMode, choose};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vsftpd_plain_serves_every_session_operation() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let p = |rel: &str| srv.remote(rel);
    let pub_dir = srv.root.join("pub");
    let body = data(300_000);
    std::fs::write(pub_dir.join("a.txt"), &body).unwrap();
    let a_mtime = set_mtime(&pub_dir.join("a.txt"), 7);
    for odd in ["name with  spaces ü.txt", "-dash.txt", "€uro ünï.csv"] {
        std::fs::write(pub_dir.join(odd), odd).unwrap();
    }
    std::fs::create_dir(pub_dir.join("sub")).unwrap();
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;

    let mut list = s.list(&p("pub")).await.unwrap();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "-dash.txt",
            "a.txt",
            "name with  spaces ü.txt",
            "sub",
            "€uro ünï.csv"
        ]
    );
    let a = &list[1];
    assert_eq!((a.kind, a.size), (EntryKind::File, Some(300_000)));
    assert_eq!(a.mtime, a_mtime, "LIST minutes refined to MDTM seconds");
    assert_eq!(list[3].kind, EntryKind::Dir);

    let st = s.stat(&p("pub/a.txt")).await.unwrap();
    assert_eq!(
        (st.size, st.mtime),
        (Some(300_000), a_mtime),
        "stat and list agree on the version"
    );
    assert_eq!(s.stat(&p("pub/sub")).await.unwrap().kind, EntryKind::Dir);
    let missing = s.stat(&p("pub/nope")).await.unwrap_err();
    assert_eq!(
        (missing.kind, missing.temporary),
        (ErrorKind::NotFound, false)
    );

    same(&read_all(&mut s, &p("pub/a.txt"), 0).await, &body);
    same(
        &read_all(&mut s, &p("pub/a.txt"), 123_456).await,
        &body[123_456..],
    );
    let odd = read_all(&mut s, &p("pub/-dash.txt"), 0).await;
    assert_eq!(odd, b"-dash.txt");
    let gone = s
        .read_into(&p("pub/nope"), 0, ANY, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!((gone.kind, gone.temporary), (ErrorKind::NotFound, false));

    s.create_dirs(&p("pub/up/deep er/x")).await.unwrap();
    s.create_dirs(&p("pub/up/deep er/x")).await.unwrap();
    let n = s
        .write_from(
            &p("pub/up/deep er/x/new.bin"),
            WriteMode::Replace,
            &mut &body[..1000],
        )
        .await
        .unwrap();
    assert_eq!(n, 1000);
    s.write_from(
        &p("pub/up/deep er/x/new.bin"),
        WriteMode::Append,
        &mut &b"tail"[..],
    )
    .await
    .unwrap();
    let mut want = body[..1000].to_vec();
    want.extend_from_slice(b"tail");
    same(
        &std::fs::read(pub_dir.join("up/deep er/x/new.bin")).unwrap(),
        &want,
    );

    let exists = s
        .rename(&p("pub/a.txt"), &p("pub/-dash.txt"), false)
        .await
        .unwrap_err();
    assert_eq!(exists.kind, ErrorKind::AlreadyExists);
    assert_eq!(
        std::fs::read(pub_dir.join("-dash.txt")).unwrap(),
        b"-dash.txt",
        "never overwritten"
    );
    s.rename(&p("pub/a.txt"), &p("pub/up/a moved.txt"), false)
        .await
        .unwrap();
    // With replace, an existing target is replaced.
    std::fs::write(pub_dir.join("up/other.txt"), b"other").unwrap();
    s.rename(&p("pub/up/other.txt"), &p("pub/-dash.txt"), true)
        .await
        .unwrap();
    assert_eq!(std::fs::read(pub_dir.join("-dash.txt")).unwrap(), b"other");
    same(
        &std::fs::read(pub_dir.join("up/a moved.txt")).unwrap(),
        &body,
    );
    s.remove(&p("pub/up/a moved.txt")).await.unwrap();
    assert!(!pub_dir.join("up/a moved.txt").exists());
    let again = s.remove(&p("pub/up/a moved.txt")).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_mode_falls_back_to_pasv_and_repairs_a_nat_address() {
    let dir = tempfile::tempdir().unwrap();
    let srv = pyftpdlib_nat(dir.path());
    std::fs::write(srv.root.join("a.bin"), data(50_000)).unwrap();
    let mut s = connect_py(srv.port).await;
    assert_eq!(s.list("/").await.unwrap().len(), 1);
    same(&read_all(&mut s, "/a.bin", 0).await, &data(50_000));
    let log = srv.log();
    assert!(
        log.contains("EPSV") && log.contains("PASV"),
        "EPSV refused, then PASV:\n{log}"
    );
    assert!(
        log.contains("10,255,255,1"),
        "PASV announced the NAT address:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_mode_listens_on_the_configured_ports() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let p = |rel: &str| srv.remote(rel);
    let body = data(100_000);
    std::fs::write(srv.root.join("pub/a.bin"), &body).unwrap();
    let lo = free_port().clamp(1024, 65000);
    let ftp = FtpOptions {
        mode: FtpMode::Active,
        active_ports: Some((lo, lo + 20)),
        ..FtpOptions::default()
    };
    let mut s = connect(&server(Protocol::Ftp, srv.port, ftp)).await;
    assert_eq!(s.list(&p("pub")).await.unwrap().len(), 1);
    same(&read_all(&mut s, &p("pub/a.bin"), 0).await, &body);
    s.write_from(&p("pub/b.bin"), WriteMode::Replace, &mut &body[..10])
        .await
        .unwrap();
    let log = srv.log();
    let ports: Vec<u16> = log
        .lines()
        .filter_map(|l| l.split("\"PORT ").nth(1))
        .map(|p| {
            let n: Vec<u16> = p
                .trim_end_matches('"')
                .split(',')
                .map(|x| x.parse().unwrap())
                .collect();
            n[4] * 256 + n[5]
        })
        .collect();
    assert_eq!(ports.len(), 3, "one PORT per transfer:\n{log}");
    assert!(
        ports.iter().all(|p| (lo..=lo + 20).contains(p)),
        "{ports:?} outside {lo}-{}",
        lo + 20
    );
    assert!(!log.contains("\"EPSV\"") && !log.contains("\"PASV\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_server_dropped_while_idle_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Vsftpd {
        extra: "idle_session_timeout=2\n".into(),
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    std::fs::write(srv.root.join("pub/a.bin"), b"abc").unwrap();
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    assert_eq!(s.list(&srv.remote("pub")).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // vsftpd closed the control connection; NOOP finds out and a new one is made.
    assert_eq!(read_all(&mut s, &srv.remote("pub/a.bin"), 0).await, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_servers_and_stalled_transfers_time_out() {
    // Accepts TCP but never says 220.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = server(
        Protocol::Ftp,
        mute.local_addr().unwrap().port(),
        FtpOptions::default(),
    );
    Arc::make_mut(&mut s).connect_timeout = Duration::from_secs(1);
    let e = choose(&s).connect().await.map(|_| ()).unwrap_err();
    assert_eq!((e.kind, e.temporary), (ErrorKind::Timeout, true), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let opts = Vsftpd {
        max_rate: 2_000_000,
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    std::fs::write(srv.root.join("pub/big.bin"), data(20_000_000)).unwrap();
    let mut s = server(Protocol::Ftp, srv.port, FtpOptions::default());
    Arc::make_mut(&mut s).io_timeout = Duration::from_secs(1);
    let mut session = connect(&s).await;
    let stalled = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        srv.freeze_sessions();
    };
    let started = std::time::Instant::now();
    let (path, mut sink) = (srv.remote("pub/big.bin"), Vec::new());
    let (r, ()) = tokio::join!(session.read_into(&path, 0, ANY, &mut sink), stalled);
    let e = r.unwrap_err();
    assert!(
        e.temporary && matches!(e.kind, ErrorKind::Timeout | ErrorKind::Connection),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "gave up after {:?}",
        started.elapsed()
    );
}

/// Collects a download and cuts the server's sessions once `cut_at` bytes arrived.
struct CutSink<'a> {
    got: Vec<u8>,
    cut_at: usize,
    server: Option<&'a FtpServer>,
}

impl tokio::io::AsyncWrite for CutSink<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.got.extend_from_slice(buf);
        if self.got.len() >= self.cut_at
            && let Some(s) = self.server.take()
        {
            s.cut_sessions();
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_byte_identical_without_resending_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Vsftpd {
        max_rate: 8_000_000,
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    let p = |rel: &str| srv.remote(rel);
    let body = data(6_000_000);
    std::fs::write(srv.root.join("pub/big.bin"), &body).unwrap();
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    let mut sink = CutSink {
        got: Vec::new(),
        cut_at: 1_000_000,
        server: Some(&srv),
    };
    let cut = s
        .read_into(&p("pub/big.bin"), 0, ANY, &mut sink)
        .await
        .unwrap_err();
    assert!(cut.temporary, "a cut connection is worth retrying: {cut}");
    let have = sink.got.len();
    assert!(
        have >= 1_000_000 && have < body.len(),
        "cut after {have} bytes"
    );
    // The same session reconnects by itself.
    let mut rest = Vec::new();
    let sent = s
        .read_into(&p("pub/big.bin"), have as u64, ANY, &mut rest)
        .await
        .unwrap();
    assert_eq!(
        sent as usize,
        body.len() - have,
        "only the missing bytes are sent"
    );
    let mut whole = sink.got;
    whole.extend_from_slice(&rest);
    assert!(whole == body, "resumed download differs from the source");
}

/// A session that is dropped (as the pool drops its idle sessions) ends
/// its control connection with QUIT, which vsftpd logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_says_quit() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    s.list(&srv.remote("pub")).await.unwrap();
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !srv.log().contains("\"QUIT\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no QUIT in the server log:\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server without REST cannot resume: the read says so with its own
/// kind (the engine then starts again from byte 0), and the session still
/// reads from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_rest_refuses_resuming_with_its_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let srv = pyftpdlib_without_rest(dir.path());
    std::fs::write(srv.root.join("f.bin"), data(5000)).unwrap();
    let mut s = connect_py(srv.port).await;
    let mut sink = Vec::new();
    let e = s
        .read_into("/f.bin", 1000, sized(5000), &mut sink)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResumeRefused, "{e}");
    assert!(sink.is_empty());
    let mut whole = Vec::new();
    let n = s
        .read_into("/f.bin", 0, sized(5000), &mut whole)
        .await
        .unwrap();
    assert_eq!(n, 5000);
    same(&whole, &data(5000));
}

/// A first listing of many recent files asks MDTM for each; the commands go
/// out in windows on a plain connection. Every file must get its own
/// second, in order, and the connection must stay in step afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_recent_files_get_their_own_mdtm_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let many = srv.root.join("pub/many");
    std::fs::create_dir(&many).unwrap();
    let mut want = std::collections::HashMap::new();
    for i in 0..150u64 {
        let name = format!("f{i:03}.dat");
        std::fs::write(many.join(&name), i.to_string()).unwrap();
        // Spread over two minutes, so LIST's minute-precision times differ
        // from the true ones and MDTM's answers differ from each other.
        want.insert(name.clone(), set_mtime(&many.join(&name), i % 120));
    }
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    let list = s.list(&srv.remote("pub/many")).await.unwrap();
    assert_eq!(list.len(), 150);
    for e in &list {
        assert_eq!(Some(&e.mtime), want.get(&e.name), "{}", e.name);
    }
    let st = s.stat(&srv.remote("pub/many/f007.dat")).await.unwrap();
    assert_eq!(
        (st.size, st.mtime),
        (Some(1), want["f007.dat"]),
        "still in step"
    );
}

/// Once EPSV has worked, downloads send EPSV and RETR together. A refused
/// RETR (missing file) must come back as its own permanent error and leave
/// the control connection in step for the next download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_downloads_survive_a_refused_retr() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let pub_dir = srv.root.join("pub");
    for i in 0..5 {
        std::fs::write(pub_dir.join(format!("f{i}")), data(1000 + i)).unwrap();
    }
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    for round in 0..3 {
        for i in 0..5 {
            let got = read_all(&mut s, &srv.remote(&format!("pub/f{i}")), 0).await;
            same(&got, &data(1000 + i));
        }
        let mut sink = Vec::new();
        let e = s
            .read_into(&srv.remote("pub/missing"), 0, ANY, &mut sink)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.temporary),
            (ErrorKind::NotFound, false),
            "round {round}: {e}"
        );
    }
    let wholes = s
        .read_wholes(&[
            (srv.remote("pub/f1"), sized(1001)),
            (srv.remote("pub/nope"), sized(5)),
            (srv.remote("pub/f2"), sized(1002)),
        ])
        .await;
    same(wholes[0].as_ref().unwrap(), &data(1001));
    assert_eq!(wholes[1].as_ref().unwrap_err().kind, ErrorKind::NotFound);
    same(wholes[2].as_ref().unwrap(), &data(1002));
}

/// A file that grew since the listing is read to one byte past its listed
/// size, not to its new end: ferry closes the data connection there, vsftpd
/// answers 426, and the session stays in step for the next command. Small
/// files read whole are bounded the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stop_one_byte_past_the_listed_size() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let body = data(30_000_000);
    std::fs::write(srv.root.join("pub/grew.bin"), &body).unwrap();
    std::fs::write(srv.root.join("pub/small"), data(1000)).unwrap();
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    let path = srv.remote("pub/grew.bin");
    for round in 0..3 {
        let offset = round * 1000;
        let mut got = Vec::new();
        let n = s
            .read_into(&path, offset, sized(10_000), &mut got)
            .await
            .unwrap();
        assert_eq!(n, 10_001 - offset, "round {round}");
        same(&got, &body[offset as usize..10_001]);
        let whole = s.read_whole(&path, sized(2000)).await.unwrap();
        same(&whole, &body[..2001]);
        // Still in step: the next replies belong to the next commands.
        same(
            &read_all(&mut s, &srv.remote("pub/small"), 0).await,
            &data(1000),
        );
        let listed = s.list(&srv.remote("pub")).await.unwrap();
        assert_eq!(listed.len(), 2, "round {round}");
    }
    let exact = s
        .read_whole(&srv.remote("pub/small"), sized(1000))
        .await
        .unwrap();
    same(&exact, &data(1000));
    let log = srv.log();
    assert_eq!(
        log.matches("230 Login successful").count(),
        1,
        "one control connection throughout (vsftpd answered 426): {log}"
    );
}

/// A name that is not UTF-8 is listed with its bytes escaped and flagged,
/// instead of being mangled into a name that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_utf8_is_listed_escaped_and_flagged() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    std::fs::write(srv.root.join("pub").join(bad), b"x").unwrap();
    std::fs::write(srv.root.join("pub/fine.csv"), b"y").unwrap();
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    let mut listed = s.list(&srv.remote("pub")).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = listed
        .iter()
        .map(|e| (e.name.as_str(), e.invalid_name))
        .collect();
    assert_eq!(names, vec![("caf\\xe9.csv", true), ("fine.csv", false)]);
}

/// Renames of a send batch go out a window at a time on plain
/// connections: each is answered on its own, a taken name is refused
/// without being overwritten, and the connection stays in step. Over
/// vsftpd (targets checked with SIZE) and pyftpdlib (MLST).
async fn many_renames(s: &mut Box<dyn ferry::remote::Session>, srv: &FtpServer) {
    let dir = srv.root.join("pub/many");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pairs = Vec::new();
    for i in 0..70 {
        std::fs::write(dir.join(format!("f{i}.tmp")), i.to_string()).unwrap();
        pairs.push((
            srv.remote(&format!("pub/many/f{i}.tmp")),
            srv.remote(&format!("pub/many/f{i}")),
        ));
    }
    std::fs::write(dir.join("f40"), "old").unwrap();
    // A source that is gone: its RNFR is refused, the RNTO after it too.
    pairs[3].0 = srv.remote("pub/many/missing.tmp");
    let answers = s.renames(&pairs, false).await;
    assert_eq!(answers.len(), 70);
    for (i, a) in answers.iter().enumerate() {
        match i {
            3 => assert!(a.is_err(), "missing source renamed"),
            40 => assert_eq!(a.as_ref().unwrap_err().kind, ErrorKind::AlreadyExists),
            _ => assert!(a.is_ok(), "f{i}: {:?}", a.as_ref().err()),
        }
    }
    for i in 0..70 {
        let got = std::fs::read_to_string(dir.join(format!("f{i}"))).ok();
        let want = match i {
            3 => None,
            40 => Some("old".to_string()),
            _ => Some(i.to_string()),
        };
        assert_eq!(got, want, "f{i}");
    }
    assert!(
        dir.join("f40.tmp").exists(),
        "the refused one keeps its temp"
    );
    let st = s.stat(&srv.remote("pub/many/f7")).await.unwrap();
    assert_eq!(st.size, Some(1), "still in step");
    // An upload's size check: SIZE alone (vsftpd) or MLST (pyftpdlib).
    let size = s.file_size(&srv.remote("pub/many/f7")).await.unwrap();
    assert_eq!(size, Some(1));
    let gone = s.file_size(&srv.remote("pub/many/f7.tmp")).await;
    assert_eq!(gone.unwrap_err().kind, ErrorKind::NotFound);
}

/// A send batch's small files on one session: written one after another,
/// then their size checks sent together (two windows here). A file the
/// server refuses answers alone; the others get their sizes, in order,
/// and the connection stays in step.
async fn whole_writes(s: &mut Box<dyn ferry::remote::Session>, srv: &FtpServer) {
    std::fs::create_dir_all(srv.root.join("pub/whole")).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..70)
        .map(|i| (srv.remote(&format!("pub/whole/f{i}")), data(100 + i)))
        .collect();
    files[5].0 = srv.remote("pub/no-such-dir/f5");
    let answers = s.write_wholes(&files, WriteMode::Fresh).await;
    assert_eq!(answers.len(), 70);
    for (i, a) in answers.iter().enumerate() {
        match i {
            5 => assert!(a.is_err(), "written into a missing directory"),
            _ => assert_eq!(a.as_ref().ok(), Some(&Some(100 + i as u64)), "f{i}"),
        }
    }
    for i in (0..70).filter(|&i| i != 5) {
        let got = std::fs::read(srv.root.join(format!("pub/whole/f{i}"))).unwrap();
        assert!(got == data(100 + i), "f{i}");
    }
    let st = s.stat(&srv.remote("pub/whole/f7")).await.unwrap();
    assert_eq!(st.size, Some(107), "still in step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_writes_check_their_sizes_together_on_vsftpd() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    whole_writes(&mut s, &srv).await;
    // Every SIZE came after the last upload.
    let log = srv.log();
    let commands: Vec<&str> = log.lines().filter(|l| l.contains("FTP command")).collect();
    let last_upload = commands
        .iter()
        .rposition(|l| l.contains("\"APPE "))
        .unwrap();
    let first_size = commands.iter().position(|l| l.contains("\"SIZE ")).unwrap();
    assert!(first_size > last_upload, "{log}");
    assert_eq!(
        commands.iter().filter(|l| l.contains("\"SIZE ")).count(),
        69 + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_writes_check_their_sizes_together_on_pyftpdlib() {
    let dir = tempfile::tempdir().unwrap();
    let srv = pyftpdlib(dir.path(), PyTls::None, None);
    let mut s = connect_py(srv.port).await;
    whole_writes(&mut s, &srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_writes_check_their_sizes_together_on_proftpd() {
    let dir = tempfile::tempdir().unwrap();
    let srv = proftpd_digest(dir.path());
    let mut s = connect_py(srv.port).await;
    whole_writes(&mut s, &srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_renames_in_flight_on_vsftpd() {
    let dir = tempfile::tempdir().unwrap();
    let srv = vsftpd(dir.path(), &Vsftpd::default());
    let mut s = connect(&server(Protocol::Ftp, srv.port, FtpOptions::default())).await;
    many_renames(&mut s, &srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_renames_in_flight_on_pyftpdlib() {
    let dir = tempfile::tempdir().unwrap();
    let srv = pyftpdlib(dir.path(), PyTls::None, None);
    let mut s = connect_py(srv.port).await;
    many_renames(&mut s, &srv).await;
}

/// Batches `list_batches` sends for `dir`, read with a reader that stops
/// after `keep` batches; the session must be in step afterwards.
async fn batches(s: &mut Box<dyn ferry::remote::Session>, dir: &str, keep: usize) -> Vec<usize> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let listing = s.list_batches(dir, tx);
    let read = async move {
        let mut rx = rx;
        let mut sizes = Vec::new();
        while sizes.len() < keep {
            let Some(b) = rx.recv().await else { break };
            sizes.push(b.len());
        }
        sizes
    };
    let (listed, sizes) = tokio::join!(listing, read);
    listed.unwrap();
    sizes
}

/// MLSD (pyftpdlib) comes in batches as its lines arrive, and a reader
/// that stops early stops it with the control connection in step; a LIST
/// (vsftpd) comes whole, its times refined once it is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mlsd_listing_comes_in_batches() {
    const N: usize = 3500;
    let dir = tempfile::tempdir().unwrap();
    let py = pyftpdlib(dir.path(), PyTls::None, None);
    let many = py.root.join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..N {
        std::fs::write(many.join(format!("f{i:04}")), b"x").unwrap();
    }
    let mut s = connect_py(py.port).await;
    let sizes = batches(&mut s, &py.remote("many"), usize::MAX).await;
    assert_eq!(sizes.iter().sum::<usize>(), N);
    assert!(
        sizes.len() >= 4 && sizes.iter().all(|&n| n <= 1000),
        "{sizes:?}"
    );
    assert_eq!(batches(&mut s, &py.remote("many"), 1).await, [1000]);
    let st = s.stat(&py.remote("many/f0007")).await.unwrap();
    assert_eq!(st.size, Some(1), "still in step");
    assert_eq!(s.list(&py.remote("many")).await.unwrap().len(), N);

    let dir = tempfile::tempdir().unwrap();
    let vs = vsftpd(dir.path(), &Vsftpd::default());
    let many = vs.root.join("pub/many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..1500 {
        std::fs::write(many.join(format!("f{i:04}")), b"x").unwrap();
    }
    let mut s = connect(&server(Protocol::Ftp, vs.port, FtpOptions::default())).await;
    assert_eq!(
        batches(&mut s, &vs.remote("pub/many"), usize::MAX).await,
        [1500]
    );
}
