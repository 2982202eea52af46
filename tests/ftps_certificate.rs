//! `ferry test-connection` on FTPS servers prints the certificate: subject,
//! issuer, validity, SHA-256 (compared with what `openssl x509` says of the
//! same file) and the `certificate_sha256` line to pin it, with a warning
//! when it ends within 30 days. Certificates are made with the openssl CLI;
//! the servers are real vsftpd (explicit) and pyftpdlib (implicit).

mod common;

use common::ftp_servers::*;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) -> String {
    require("/usr/bin/openssl", "openssl");
    let out = Command::new("/usr/bin/openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A self-signed certificate for 127.0.0.1, valid for `days`; returns the
/// certificate and key paths.
fn self_signed(dir: &Path, name: &str, days: u32) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            &days.to_string(),
            "-subj",
            "/C=DE/O=Ferry Test Partner/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// What openssl says of `cert`: (subject, issuer, SHA-256 with colons).
fn openssl_view(cert: &Path) -> (String, String, String) {
    let dir = cert.parent().unwrap();
    let c = cert.to_str().unwrap();
    let field = |flag: &str, prefix: &str| {
        // "C=DE, O=..., CN=..." (the default puts spaces around "=").
        let opts = "oneline,-space_eq";
        let out = openssl(dir, &["x509", "-in", c, "-noout", flag, "-nameopt", opts]);
        out.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("openssl printed {out:?}"))
            .to_string()
    };
    let fp = openssl(
        dir,
        &["x509", "-in", c, "-noout", "-fingerprint", "-sha256"],
    );
    (
        field("-subject", "subject="),
        field("-issuer", "issuer="),
        fp.split_once('=').unwrap().1.to_string(),
    )
}

/// Runs `ferry test-connection ftp` with `server` as the server table;
/// returns its exit code and stdout.
fn test_connection(f: &Fixture, server: &str) -> (Option<i32>, String) {
    f.write_config(server);
    let out = f.ferry(&["test-connection", "ftp"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "test-connection failed:\n{text}\n{err}"
    );
    (out.status.code(), text)
}

fn vsftpd_block(srv: &FtpServer, extra: &str) -> String {
    format!(
        "[servers.ftp]\nprotocol = \"ftps\"\nhost = \"127.0.0.1\"\nport = {}\n\
         connect_timeout = \"10s\"\nio_timeout = \"10s\"\n{extra}\n",
        srv.port
    )
}

/// The printed lines match openssl's view, and the printed pin is the
/// certificate's SHA-256 in the form the configuration accepts.
fn assert_describes(text: &str, cert: &Path) {
    let (subject, issuer, fp) = openssl_view(cert);
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{text}"))
            .to_string()
    };
    assert_eq!(line("certificate subject: "), subject, "{text}");
    assert_eq!(line("certificate issuer: "), issuer, "{text}");
    assert_eq!(line("certificate SHA-256 fingerprint: "), fp, "{text}");
    let pin = fp.replace(':', "").to_lowercase();
    assert!(
        text.contains(&format!("certificate_sha256 = \"{pin}\"")),
        "{text}"
    );
    assert!(
        line("certificate valid from ").contains(" UTC until "),
        "{text}"
    );
}

#[test]
fn a_certificate_valid_for_a_year_is_shown_without_a_warning() {
    let f = Fixture::new("");
    let (cert, key) = self_signed(&f.path("srv"), "year", 365);
    let opts = Vsftpd {
        tls: Some((cert.clone(), key)),
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let (_, _, fp) = openssl_view(&cert);
    let server = vsftpd_block(&srv, &format!("certificate_sha256 = \"{fp}\""));
    let (_, text) = test_connection(&f, &server);
    assert_describes(&text, &cert);
    assert!(text.contains("O=Ferry Test Partner"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
}

#[test]
fn a_certificate_ending_in_10_days_is_warned_about() {
    let f = Fixture::new("");
    let (cert, key) = self_signed(&f.path("srv"), "soon", 10);
    let opts = Vsftpd {
        tls: Some((cert.clone(), key)),
        ..Vsftpd::default()
    };
    let srv = vsftpd(&f.path("srv"), &opts);
    let (_, _, fp) = openssl_view(&cert);
    let server = vsftpd_block(&srv, &format!("certificate_sha256 = \"{fp}\""));
    let (_, text) = test_connection(&f, &server);
    assert_describes(&text, &cert);
    let warning = text
        .lines()
        .find(|l| l.starts_with("WARNING: the certificate expires in"))
        .unwrap_or_else(|| panic!("no expiry warning in:\n{text}"));
    // Ten days less the seconds since openssl made it.
    assert!(
        warning.contains(" 9 days") || warning.contains(" 10 days"),
        "{warning}"
    );
}

/// A certificate signed by a CA (issuer differs from subject), trusted
/// through `ca_file`, on implicit FTPS.
#[test]
fn an_implicit_ftps_certificate_signed_by_a_ca_names_its_issuer() {
    let f = Fixture::new("");
    std::fs::create_dir_all(f.path("srv")).unwrap();
    let certs = make_certs(&f.path("srv"));
    let srv = pyftpdlib(&f.path("srv"), PyTls::Implicit, Some(&certs));
    std::fs::write(f.path("ftp-password"), PY_PASSWORD).unwrap();
    let server = format!(
        "[servers.ftp]\nprotocol = \"ftps-implicit\"\nhost = \"127.0.0.1\"\nport = {}\n\
         user = \"{PY_USER}\"\npassword = {{ file = \"{}\" }}\nca_file = \"{}\"\n",
        srv.port,
        f.path("ftp-password").display(),
        certs.ca.display()
    );
    let (_, text) = test_connection(&f, &server);
    assert_describes(&text, &certs.cert);
    assert!(
        text.contains("certificate issuer: CN=ferry test ca"),
        "{text}"
    );
    assert!(text.contains("certificate subject: CN=127.0.0.1"), "{text}");
    // make_certs signs for 2 days: 1 day and some hours left, or 2 days
    // when openssl and the check ran within the same second.
    assert!(
        text.contains("WARNING: the certificate expires in 1 day,")
            || text.contains("WARNING: the certificate expires in 2 days,"),
        "{text}"
    );
}
