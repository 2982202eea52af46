//! FTP and FTPS through real proxies on loopback, with the real `ferry`
//! binary: tinyproxy (HTTP CONNECT) and dante (SOCKS4, SOCKS5 with and
//! without a login) in front of vsftpd and pyftpdlib. A watch rule lists and
//! downloads, a send rule uploads; every passive port the server offered
//! (read from its own log) must appear in the proxy's log as a connection
//! target, so no data connection went around the proxy.

mod common;

use common::ftp_servers::*;
use common::proxies::ProxyServer;
use common::sshd::{PASSWORD, USER, ensure_user};
use common::*;
use std::path::Path;

/// How ferry is told to use `proxy`, and the proxy's password file if any.
struct Via<'a> {
    proxy: &'a ProxyServer,
    url: String,
    password: Option<&'a str>,
}

fn http(proxy: &ProxyServer) -> Via<'_> {
    Via {
        url: format!("http://127.0.0.1:{}", proxy.port),
        proxy,
        password: None,
    }
}

fn socks5(proxy: &ProxyServer) -> Via<'_> {
    Via {
        url: format!("socks5://127.0.0.1:{}", proxy.port),
        proxy,
        password: None,
    }
}

/// SOCKS5 with dante's `username` method: the system test user.
fn socks5_login<'a>(proxy: &'a ProxyServer, password: &'a str) -> Via<'a> {
    ensure_user();
    Via {
        url: format!("socks5://{USER}@127.0.0.1:{}", proxy.port),
        proxy,
        password: Some(password),
    }
}

/// `[servers.ftp]` for `srv` through `via`; `extra` adds keys.
fn server_block(f: &Fixture, protocol: &str, srv: &FtpServer, via: &Via, extra: &str) -> String {
    let mut text = format!(
        "[servers.ftp]\nprotocol = \"{protocol}\"\nhost = \"127.0.0.1\"\nport = {}\nmax_sessions = 2\n\
         connect_timeout = \"10s\"\nio_timeout = \"10s\"\nproxy = \"{}\"\n{extra}\n",
        srv.port, via.url
    );
    if let Some(pw) = via.password {
        std::fs::write(f.path("proxy-password"), pw).unwrap();
        text.push_str(&format!(
            "proxy_password = {{ file = \"{}\" }}\n",
            f.path("proxy-password").display()
        ));
    }
    text
}

/// The login keys for pyftpdlib's user.
fn py_login(f: &Fixture) -> String {
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    format!(
        "user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}\n",
        f.path("ftp-password").display()
    )
}

/// A watch rule on `pub/in` and a send rule into `pub/up`, one `ferry
/// once`; asserts the files arrived both ways and that every data
/// connection went through the proxy.
fn round_trip(f: &Fixture, srv: &FtpServer, server: &str, via: &Via) {
    let base = srv.remote("pub");
    let outbox = f.path("out/up");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(srv.root.join("pub/up")).unwrap();
    let rules = format!(
        "[[watch]]\nname = \"down\"\nserver = \"ftp\"\nremote_dir = \"{base}/in\"\nlocal_dir = \"{}\"\n\
         stable_for = \"0s\"\ninterval = \"200ms\"\nretry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n\n\
         [[send]]\nname = \"up\"\nserver = \"ftp\"\nlocal_dir = \"{}\"\nremote_dir = \"{base}/up\"\n\
         stable_for = \"0s\"\nrescan = \"300ms\"\nretry = {{ attempts = 2, first = \"0s\", max = \"0s\" }}\n",
        f.outbox.display(),
        outbox.display(),
    );
    f.write_config(&format!("{server}\n{rules}"));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    put(&srv.root, "pub/in/small.csv", b"a,b\n1,2\n");
    put(&srv.root, "pub/in/big.bin", &big);
    std::fs::write(outbox.join("sent.csv"), b"sent through the proxy").unwrap();
    // Above the small-file batches' 64 KiB: on plain FTP, sent by sendfile.
    let big_up: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(outbox.join("sent.bin"), &big_up).unwrap();
    let log = f.once(0);
    let proxy_log = via.proxy.logs();
    let context = || format!("ferry:\n{log}\nproxy:\n{proxy_log}\nserver:\n{}", srv.log());
    assert_eq!(
        std::fs::read(f.outbox.join("small.csv")).ok().as_deref(),
        Some(&b"a,b\n1,2\n"[..]),
        "{}",
        context()
    );
    assert!(
        std::fs::read(f.outbox.join("big.bin")).ok() == Some(big),
        "{}",
        context()
    );
    assert_eq!(
        std::fs::read(srv.root.join("pub/up/sent.csv")).ok(),
        Some(b"sent through the proxy".to_vec()),
        "{}",
        context()
    );
    assert!(
        std::fs::read(srv.root.join("pub/up/sent.bin")).ok() == Some(big_up),
        "{}",
        context()
    );
    // The control connection, and every data port the server offered.
    assert!(mentions(&proxy_log, srv.port), "{}", context());
    let ports = offered_ports(&srv.log());
    // At least: a listing, two downloads, two uploads.
    assert!(ports.len() >= 5, "passive ports {ports:?}\n{}", context());
    for p in ports {
        assert!(
            mentions(&proxy_log, p),
            "data port {p} was not reached through the proxy\n{}",
            context()
        );
    }
    if let Some(pw) = via.password {
        assert!(
            !log.contains(pw),
            "the proxy password is in the log:\n{log}"
        );
    }
}

fn put(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Whether a proxy log names 127.0.0.1 port `port` (tinyproxy writes
/// `127.0.0.1:PORT`, dante `127.0.0.1.PORT`).
fn mentions(log: &str, port: u16) -> bool {
    [':', '.'].iter().any(|sep| {
        let needle = format!("127.0.0.1{sep}{port}");
        log.match_indices(&needle).any(|(i, _)| {
            !log[i + needle.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    })
}

/// The ports of every `229 (|||PORT|)` and `227 (h,h,h,h,p,p)` reply in a
/// server's log.
fn offered_ports(log: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in log.lines() {
        if let Some(i) = line.find("229 ")
            && let Some(inner) = line[i..].split_once("(|||").map(|(_, r)| r)
            && let Some(p) = inner.split('|').next().and_then(|p| p.parse().ok())
        {
            ports.push(p);
        }
        if let Some(i) = line.find("227 ")
            && let Some(inner) = line[i..].split_once('(').map(|(_, r)| r)
        {
            let nums: Vec<u16> = inner
                .split([',', ')'])
                .take(6)
                .filter_map(|n| n.trim().parse().ok())
                .collect();
            if let [_, _, _, _, hi, lo] = nums[..] {
                ports.push(hi << 8 | lo);
            }
        }
    }
    ports
}

#[test]
fn vsftpd_through_an_http_connect_proxy() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let proxy = ProxyServer::tinyproxy();
    let via = http(&proxy);
    let server = server_block(&f, "ftp", &srv, &via, "");
    round_trip(&f, &srv, &server, &via);
}

#[test]
fn vsftpd_through_a_socks5_proxy() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let proxy = ProxyServer::dante("none");
    let via = socks5(&proxy);
    let server = server_block(&f, "ftp", &srv, &via, "");
    round_trip(&f, &srv, &server, &via);
}

#[test]
fn vsftpd_through_a_socks4_proxy() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let proxy = ProxyServer::dante("none");
    let via = Via {
        url: format!("socks4://127.0.0.1:{}", proxy.port),
        proxy: &proxy,
        password: None,
    };
    let server = server_block(&f, "ftp", &srv, &via, "");
    round_trip(&f, &srv, &server, &via);
}

#[test]
fn pyftpdlib_through_a_socks5_proxy_with_a_login() {
    let f = Fixture::new("");
    let srv = pyftpdlib_logging_replies(&f.path("srv"), PyTls::None, None);
    let proxy = ProxyServer::dante("username");
    let via = socks5_login(&proxy, PASSWORD);
    let server = server_block(&f, "ftp", &srv, &via, &py_login(&f));
    round_trip(&f, &srv, &server, &via);
}

#[test]
fn pyftpdlib_through_an_http_connect_proxy() {
    let f = Fixture::new("");
    let srv = pyftpdlib_logging_replies(&f.path("srv"), PyTls::None, None);
    let proxy = ProxyServer::tinyproxy();
    let via = http(&proxy);
    let server = server_block(&f, "ftp", &srv, &via, &py_login(&f));
    round_trip(&f, &srv, &server, &via);
}

/// Explicit FTPS: AUTH TLS inside the tunnel, and TLS data connections that
/// resume the control session (`require_ssl_reuse=YES`) through it.
#[test]
fn explicit_ftps_on_vsftpd_through_a_socks5_proxy_with_a_login() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let opts = Vsftpd {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let proxy = ProxyServer::dante("username");
    let via = socks5_login(&proxy, PASSWORD);
    let ca = format!("ca_file = \"{}\"", certs.ca.display());
    let server = server_block(&f, "ftps", &srv, &via, &ca);
    round_trip(&f, &srv, &server, &via);
}

/// Implicit FTPS: TLS from the first byte, through the tunnel.
#[test]
fn implicit_ftps_on_pyftpdlib_through_an_http_connect_proxy() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = pyftpdlib_logging_replies(&f.path("srv"), PyTls::Implicit, Some(&certs));
    let proxy = ProxyServer::tinyproxy();
    let via = http(&proxy);
    let extra = format!("{}certificate_sha256 = \"{}\"", py_login(&f), certs.sha256);
    let server = server_block(&f, "ftps-implicit", &srv, &via, &extra);
    round_trip(&f, &srv, &server, &via);
}

/// A server behind NAT (no EPSV, PASV naming 10.255.255.1): through a
/// proxy, the data connections go to the configured host instead.
#[test]
fn a_private_pasv_address_through_a_proxy_goes_to_the_configured_host() {
    let f = Fixture::new("");
    let srv = pyftpdlib_nat(&f.path("srv"));
    let proxy = ProxyServer::dante("none");
    let via = socks5(&proxy);
    let server = server_block(&f, "ftp", &srv, &via, &py_login(&f));
    round_trip(&f, &srv, &server, &via);
    assert!(
        !proxy.logs().contains("10.255.255.1"),
        "the private address was asked of the proxy:\n{}",
        proxy.logs()
    );
}

/// A wrong proxy password fails the poll as an authentication error, and
/// is in no log line.
#[test]
fn a_wrong_proxy_password_is_refused_and_not_logged() {
    let f = Fixture::new("");
    let srv = vsftpd(&f.path("srv"), &Vsftpd::default());
    let proxy = ProxyServer::dante("username");
    let wrong = "Wrong-proxy-pw-7731";
    let via = socks5_login(&proxy, wrong);
    let server = server_block(&f, "ftp", &srv, &via, "");
    f.write_config(&format!(
        "{server}\n[[watch]]\nname = \"down\"\nserver = \"ftp\"\nremote_dir = \"{}\"\nlocal_dir = \"{}\"\n",
        srv.remote("pub"),
        f.outbox.display()
    ));
    let out = f.ferry(&["once"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("SOCKS5 proxy refused the user name or password"),
        "{log}"
    );
    assert!(!log.contains(wrong), "the proxy password leaked:\n{log}");
    let tc = f.ferry(&["test-connection", "ftp"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&tc.stdout),
        String::from_utf8_lossy(&tc.stderr)
    );
    assert!(text.contains("FAILED"), "{text}");
    assert!(!text.contains(wrong), "the proxy password leaked:\n{text}");
}
