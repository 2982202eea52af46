//! FTPS against real servers on 127.0.0.1: explicit TLS on vsftpd with
//! `require_ssl_reuse`, trust (CA file, system roots, pins, insecure), and
//! implicit TLS with MLSD on pyftpdlib.

mod common;

use common::ftp_servers::*;
use common::ftp_session::*;
use ferry::config::{FtpOptions, Protocol};
use ferry::remote::{EntryKind, ErrorKind, WriteMode, choose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A `ca_file` as the config loader reads it.
fn ca(path: &std::path::Path) -> ferry::config::CaCertificates {
    let certs = CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    ferry::config::CaCertificates {
        path: path.to_path_buf(),
        certs,
    }
}

/// A `certificate_sha256` as the config loader parses it.
fn pin(hex: &str) -> [u8; 32] {
    let hex: String = hex.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ftps_on_vsftpd_verifies_the_ca_and_reuses_tls_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let opts = Vsftpd {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    let p = |rel: &str| srv.remote(rel);
    let body = data(2_000_000);
    std::fs::write(srv.root.join("pub/big.bin"), &body).unwrap();
    let ftp = FtpOptions {
        ca_file: Some(ca(&certs.ca)),
        ..FtpOptions::default()
    };
    // require_ssl_reuse=YES: every data connection below must resume the
    // control connection's TLS session or vsftpd refuses it.
    let mut s = connect(&server(Protocol::Ftps, srv.port, ftp)).await;
    assert_eq!(s.list(&p("pub")).await.unwrap().len(), 1);
    same(&read_all(&mut s, &p("pub/big.bin"), 0).await, &body);
    same(
        &read_all(&mut s, &p("pub/big.bin"), 1_999_000).await,
        &body[1_999_000..],
    );
    s.write_from(&p("pub/up.bin"), WriteMode::Replace, &mut &body[..70_000])
        .await
        .unwrap_or_else(|e| panic!("{e}\nvsftpd log:\n{}", srv.log()));
    same(
        &std::fs::read(srv.root.join("pub/up.bin")).unwrap(),
        &body[..70_000],
    );
    assert_eq!(s.stat(&p("pub/up.bin")).await.unwrap().size, Some(70_000));
    // Uploads never read from the data connection, so TLS 1.3 tickets the
    // server sends there are not seen: resumption must not run dry.
    for i in 0..12 {
        let name = p(&format!("pub/many-{i}.bin"));
        s.write_from(&name, WriteMode::Replace, &mut &body[..1000 + i])
            .await
            .unwrap();
    }
    assert_eq!(s.list(&p("pub")).await.unwrap().len(), 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftps_refuses_untrusted_certificates_and_honours_pins() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let opts = Vsftpd {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    let try_with = |ftp: FtpOptions| {
        let s = server(Protocol::Ftps, srv.port, ftp);
        async move { choose(&s).connect().await.map(|_| ()) }
    };
    let wrong_ca = try_with(FtpOptions {
        ca_file: Some(ca(&certs.other_ca)),
        ..FtpOptions::default()
    })
    .await
    .unwrap_err();
    assert_eq!(
        (wrong_ca.kind, wrong_ca.temporary),
        (ErrorKind::Auth, false),
        "{wrong_ca}"
    );
    assert!(wrong_ca.message.contains("certificate"), "{wrong_ca}");
    // The system roots do not know the test CA either.
    let system = try_with(FtpOptions::default()).await.unwrap_err();
    assert_eq!(system.kind, ErrorKind::Auth, "{system}");
    let bad_pin = try_with(FtpOptions {
        certificate_sha256: Some([0xab; 32]),
        ..FtpOptions::default()
    })
    .await
    .unwrap_err();
    assert!(bad_pin.message.contains("pinned"), "{bad_pin}");
    try_with(FtpOptions {
        certificate_sha256: Some(pin(&certs.sha256)),
        ..FtpOptions::default()
    })
    .await
    .unwrap();
    try_with(FtpOptions {
        insecure_skip_verify: true,
        ..FtpOptions::default()
    })
    .await
    .unwrap();
    // Plain FTP to a server that demands TLS: refused at login, for good.
    let plain = choose(&server(Protocol::Ftp, srv.port, FtpOptions::default()))
        .connect()
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(!plain.temporary, "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyftpdlib_mlsd_and_implicit_ftps() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let srv = pyftpdlib(dir.path(), PyTls::Implicit, Some(&certs));
    let body = data(1_500_000);
    std::fs::create_dir_all(srv.root.join("in/sub")).unwrap();
    std::fs::write(srv.root.join("in/x y;z.bin"), &body).unwrap();
    let t = set_mtime(&srv.root.join("in/x y;z.bin"), 3600 * 24 * 400);
    let ftp = FtpOptions {
        ca_file: Some(ca(&certs.ca)),
        ..FtpOptions::default()
    };
    let mut s = connect(&py_user(server(Protocol::FtpsImplicit, srv.port, ftp))).await;
    let mut list = s.list("/in").await.unwrap();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(
        (list[1].kind, list[0].name.as_str()),
        (EntryKind::File, "sub")
    );
    assert_eq!(
        (list[1].name.as_str(), list[1].size, list[1].mtime),
        ("x y;z.bin", Some(1_500_000), t),
        "MLSD: exact UTC seconds, even for an old file"
    );
    let st = s.stat("/in/x y;z.bin").await.unwrap();
    assert_eq!((st.size, st.mtime), (Some(1_500_000), t));
    assert_eq!(read_all(&mut s, "/in/x y;z.bin", 1000).await, &body[1000..]);
    s.create_dirs("/out/a/b").await.unwrap();
    s.write_from("/out/a/b/up.bin", WriteMode::Replace, &mut &body[..])
        .await
        .unwrap();
    same(
        &std::fs::read(srv.root.join("out/a/b/up.bin")).unwrap(),
        &body,
    );
    let taken = s
        .rename("/in/x y;z.bin", "/out/a/b/up.bin", false)
        .await
        .unwrap_err();
    assert_eq!(taken.kind, ErrorKind::AlreadyExists);
}

/// Over TLS too, a read stops one byte past the listed size: the data
/// connection is closed early, and the control connection (and its TLS
/// session for the next data connection) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_ftps_reads_stop_one_byte_past_the_listed_size() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let opts = Vsftpd {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    let body = data(20_000_000);
    std::fs::write(srv.root.join("pub/grew.bin"), &body).unwrap();
    let ftp = FtpOptions {
        ca_file: Some(ca(&certs.ca)),
        ..FtpOptions::default()
    };
    let mut s = connect(&server(Protocol::Ftps, srv.port, ftp)).await;
    let path = srv.remote("pub/grew.bin");
    for _ in 0..3 {
        let whole = s.read_whole(&path, sized(4000)).await.unwrap();
        same(&whole, &body[..4001]);
        assert_eq!(s.list(&srv.remote("pub")).await.unwrap().len(), 1);
    }
    let logins = srv.log().matches("230 Login successful").count();
    assert_eq!(logins, 1, "{}", srv.log());
}

/// A server that presents a CA certificate as its own (a self-signed one
/// made with `openssl req -x509`), trusted through `ca_file`: webpki refuses
/// it as CaUsedAsEndEntity, and the error says what to configure instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_served_as_the_servers_own_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let opts = Vsftpd {
        tls: Some((certs.ca.clone(), dir.path().join("ca.key"))),
        ..Vsftpd::default()
    };
    let srv = vsftpd(dir.path(), &opts);
    let s = server(
        Protocol::Ftps,
        srv.port,
        FtpOptions {
            ca_file: Some(ca(&certs.ca)),
            ..FtpOptions::default()
        },
    );
    let e = choose(&s).connect().await.map(|_| ()).unwrap_err();
    assert_eq!((e.kind, e.temporary), (ErrorKind::Auth, false), "{e}");
    assert!(
        e.message
            .contains("CA certificate used as the server's own; use certificate_sha256"),
        "{e}"
    );
}
