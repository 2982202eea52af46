//! Resolving `[servers.NAME]` blocks: the protocol, where to connect, how to
//! authenticate and whom to trust. Options of one protocol given to another
//! are errors, so a typo never silently weakens a connection.

use super::values::{is_sha256_fingerprint, parse_port_range, parse_proxy, parse_utc_offset};
use super::{LOCAL_SERVER, Resolver, Secrets};
use crate::config::known_hosts::KnownHosts;
use crate::config::model::*;
use crate::config::raw::{RawSecretValue, RawServer, StringOrList};
use crate::config::secret::{Secret, SecretKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::time::Duration;
use toml::Spanned;

/// How long an unused session stays open between polls by default: longer
/// than common intervals, so a server's rules poll over warm connections,
/// and no longer than common server-side idle limits (vsftpd's
/// `idle_session_timeout` is 300 s).
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Protocols whose transport is built in this version.
const SUPPORTED: &[Protocol] = &[
    Protocol::Local,
    Protocol::Sftp,
    Protocol::Ftp,
    Protocol::Ftps,
    Protocol::FtpsImplicit,
];

impl Resolver<'_> {
    pub(super) fn server(&mut self, name: &str, raw: Spanned<RawServer>) -> Option<Server> {
        let raw = raw.into_inner();
        let field = |f: &str| format!("servers.{name}.{f}");
        let protocol = self.protocol(&field("protocol"), &raw.protocol)?;
        let network = protocol != Protocol::Local;
        let host = match (&raw.host, network) {
            (Some(h), _) if h.get_ref().trim().is_empty() => {
                self.c
                    .at(h.span(), format!("{}: must not be empty", field("host")));
                None
            }
            (Some(h), _) => Some(h.get_ref().clone()),
            (None, true) => {
                let msg = format!(
                    "{}: {} servers need a host",
                    field("host"),
                    protocol.as_str()
                );
                self.c.at(raw.protocol.span(), msg);
                None
            }
            (None, false) => Some("localhost".to_string()),
        };
        let port = match &raw.port {
            Some(p) => self.port(&field("port"), p),
            None => Some(protocol.default_port()),
        };
        if protocol == Protocol::Sftp && raw.user.is_none() {
            let msg = format!("{}: an sftp server needs a user", field("user"));
            self.c.at(raw.protocol.span(), msg);
        }
        let password = raw
            .password
            .as_ref()
            .and_then(|p| self.secret(&field("password"), p));
        let max_sessions = raw
            .max_sessions
            .as_ref()
            .map_or(Some(4), |v| self.positive(&field("max_sessions"), v));
        let connect_timeout = self.duration(
            &field("connect_timeout"),
            raw.connect_timeout.as_ref(),
            Duration::from_secs(30),
        );
        let io_timeout = self.duration(
            &field("io_timeout"),
            raw.io_timeout.as_ref(),
            Duration::from_secs(60),
        );
        let idle_timeout = self.duration(
            &field("idle_timeout"),
            raw.idle_timeout.as_ref(),
            DEFAULT_IDLE_TIMEOUT,
        );
        // FTP sends every passive data connection through the proxy too (ftp/passive.rs).
        self.only_for(
            name,
            "proxy",
            &raw.proxy,
            protocol != Protocol::Local,
            "sftp, ftp, ftps and ftps-implicit",
        );
        if let (Some(pw), None) = (&raw.proxy_password, &raw.proxy) {
            let msg = format!("{}: set proxy too", field("proxy_password"));
            self.c.at(pw.span(), msg);
        }
        let proxy = raw
            .proxy
            .as_ref()
            .and_then(|p| self.proxy(name, p, raw.proxy_password.as_ref()));
        let sftp = self.sftp_options(name, protocol, &raw);
        let ftp = self.ftp_options(name, protocol, &raw);
        let bandwidth = self.bandwidth(
            &field(""),
            raw.bandwidth.as_ref(),
            raw.bandwidth_schedule.as_ref(),
        );
        let segmenting = self.segmenting(name, &raw);
        Some(Server {
            name: name.to_string(),
            protocol,
            host: host?,
            port: port?,
            user: raw.user.map(Spanned::into_inner),
            password,
            max_sessions: max_sessions?,
            connect_timeout: connect_timeout?,
            io_timeout: io_timeout?,
            idle_timeout: idle_timeout?,
            proxy,
            sftp: sftp?,
            ftp: ftp?,
            bandwidth: bandwidth?,
            segmenting: segmenting?,
        })
    }

    fn protocol(&mut self, field: &str, raw: &Spanned<String>) -> Option<Protocol> {
        let Some(p) = Protocol::parse(raw.get_ref()) else {
            let msg = format!(
                "{field}: unknown protocol \"{}\" (expected one of: local, sftp, ftp, ftps, ftps-implicit)",
                raw.get_ref()
            );
            self.c.at(raw.span(), msg);
            return None;
        };
        if !SUPPORTED.contains(&p) {
            let names: Vec<_> = SUPPORTED.iter().map(|p| p.as_str()).collect();
            let msg = format!(
                "{field}: protocol \"{}\" is not supported yet in this version (supported: {})",
                p.as_str(),
                names.join(", ")
            );
            self.c.at(raw.span(), msg);
            return None;
        }
        Some(p)
    }

    fn port(&mut self, field: &str, p: &Spanned<i64>) -> Option<u16> {
        match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                let msg = format!("{field}: {} is not a TCP port (1-65535)", p.get_ref());
                self.c.at(p.span(), msg);
                None
            }
        }
    }

    /// Refuses an option that belongs to another protocol.
    fn only_for<T>(
        &mut self,
        name: &str,
        key: &str,
        v: &Option<Spanned<T>>,
        applies: bool,
        to: &str,
    ) {
        if let Some(v) = v
            && !applies
        {
            let msg = format!("servers.{name}.{key}: applies only to {to} servers");
            self.c.at(v.span(), msg);
        }
    }

    fn sftp_options(
        &mut self,
        name: &str,
        protocol: Protocol,
        raw: &RawServer,
    ) -> Option<SftpOptions> {
        let is = protocol == Protocol::Sftp;
        self.only_for(name, "private_key", &raw.private_key, is, "sftp");
        self.only_for(
            name,
            "private_key_content",
            &raw.private_key_content,
            is,
            "sftp",
        );
        self.only_for(name, "passphrase", &raw.passphrase, is, "sftp");
        self.only_for(name, "known_hosts", &raw.known_hosts, is, "sftp");
        self.only_for(name, "host_key", &raw.host_key, is, "sftp");
        self.only_for(
            name,
            "insecure_accept_any_host_key",
            &raw.insecure_accept_any_host_key,
            is,
            "sftp",
        );
        self.only_for(name, "follow_symlinks", &raw.follow_symlinks, is, "sftp");
        self.only_for(name, "exec_checksum", &raw.exec_checksum, is, "sftp");
        self.only_for(name, "fsync", &raw.fsync, is, "sftp");
        if !is {
            return Some(SftpOptions::default());
        }
        let field = |f: &str| format!("servers.{name}.{f}");
        let private_key = self.private_key(name, raw);
        if raw.password.is_none() && raw.private_key.is_none() && raw.private_key_content.is_none()
        {
            let msg = format!(
                "{}: set password, private_key or private_key_content",
                field("password")
            );
            self.c.at(raw.protocol.span(), msg);
        }
        let host_keys = self.host_key_policy(name, raw)?;
        Some(SftpOptions {
            private_key,
            host_keys,
            follow_symlinks: raw.follow_symlinks.as_ref().is_some_and(|f| *f.get_ref()),
            exec_checksum: raw.exec_checksum.as_ref().is_some_and(|f| *f.get_ref()),
            skip_fsync: raw.fsync.as_ref().is_some_and(|f| !*f.get_ref()),
        })
    }

    /// Decodes `private_key` (a file) or `private_key_content` (a secret)
    /// with `passphrase`, so that a key ferry cannot use fails the load, not
    /// every connect. Skipped, with the other secrets, by read-only commands:
    /// their operator may not be allowed to read the key.
    fn private_key(&mut self, name: &str, raw: &RawServer) -> Option<SecretKey> {
        let field = |f: &str| format!("servers.{name}.{f}");
        if let (Some(_), Some(c)) = (&raw.private_key, &raw.private_key_content) {
            let msg = format!(
                "{}: give only one of private_key, private_key_content",
                field("private_key_content")
            );
            self.c.at(c.span(), msg);
            return None;
        }
        let path = match &raw.private_key {
            Some(k) => Some((k.span(), self.local_path(&field("private_key"), k)?)),
            None => None,
        };
        let content = raw
            .private_key_content
            .as_ref()
            .map(|k| (k.span(), self.secret(&field("private_key_content"), k)));
        let passphrase = match &raw.passphrase {
            Some(p) => Some(self.secret(&field("passphrase"), p)?),
            None => None,
        };
        if self.secrets == Secrets::Skip {
            return None;
        }
        let (span, text, what, key_field) = match (path, content) {
            (Some((span, path)), _) => {
                let bytes = self.read_file(&field("private_key"), span.clone(), &path)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                (span, text, format!("\"{}\"", path.display()), "private_key")
            }
            (None, Some((span, content))) => (
                span,
                content?.expose().to_string(),
                "the key".to_string(),
                "private_key_content",
            ),
            (None, None) => return None,
        };
        let decoded =
            russh::keys::decode_secret_key(&text, passphrase.as_ref().map(Secret::expose));
        match decoded {
            Ok(key) => Some(SecretKey::new(key)),
            Err(e) => {
                let why = key_problem(&e, &text, passphrase.is_some());
                let msg = format!("{}: cannot decode {what}: {why}", field(key_field));
                self.c.at(span, msg);
                None
            }
        }
    }

    fn host_key_policy(&mut self, name: &str, raw: &RawServer) -> Option<HostKeyPolicy> {
        let field = |f: &str| format!("servers.{name}.{f}");
        let insecure = raw
            .insecure_accept_any_host_key
            .as_ref()
            .is_some_and(|f| *f.get_ref());
        let given = [raw.known_hosts.is_some(), raw.host_key.is_some(), insecure];
        match given.iter().filter(|g| **g).count() {
            0 => {
                let msg = format!(
                    "{}: an sftp server needs known_hosts = \"/path\" or host_key = \"SHA256:...\" \
                     (ferry test-connection {name} prints the server's key); \
                     insecure_accept_any_host_key = true turns the check off",
                    field("known_hosts")
                );
                self.c.at(raw.protocol.span(), msg);
                return None;
            }
            1 => {}
            _ => {
                let msg = format!(
                    "{}: give only one of known_hosts, host_key, insecure_accept_any_host_key",
                    field("known_hosts")
                );
                self.c.at(raw.protocol.span(), msg);
                return None;
            }
        }
        if let Some(k) = &raw.known_hosts {
            let path = self.local_path(&field("known_hosts"), k)?;
            let bytes = self.read_file(&field("known_hosts"), k.span(), &path)?;
            let text = String::from_utf8_lossy(&bytes);
            return match KnownHosts::parse(path.clone(), &text) {
                Ok(known) => Some(HostKeyPolicy::KnownHosts(known)),
                Err(why) => {
                    let msg = format!(
                        "{}: cannot parse {}: {why}",
                        field("known_hosts"),
                        path.display()
                    );
                    self.c.at(k.span(), msg);
                    None
                }
            };
        }
        if let Some(k) = &raw.host_key {
            let keys = match k.get_ref() {
                StringOrList::One(s) => vec![s.clone()],
                StringOrList::Many(v) => v.clone(),
            };
            let bad = keys.iter().find(|k| !is_sha256_fingerprint(k));
            if keys.is_empty() || bad.is_some() {
                let msg = format!(
                    "{}: \"{}\" is not a fingerprint like \"SHA256:\" followed by 43 base64 characters",
                    field("host_key"),
                    bad.map_or("", String::as_str)
                );
                self.c.at(k.span(), msg);
                return None;
            }
            return Some(HostKeyPolicy::Pinned(keys));
        }
        Some(HostKeyPolicy::AcceptAny)
    }

    fn ftp_options(
        &mut self,
        name: &str,
        protocol: Protocol,
        raw: &RawServer,
    ) -> Option<FtpOptions> {
        let ftp = protocol.is_ftp();
        let tls = matches!(protocol, Protocol::Ftps | Protocol::FtpsImplicit);
        self.only_for(name, "mode", &raw.mode, ftp, "ftp, ftps and ftps-implicit");
        self.only_for(
            name,
            "active_ports",
            &raw.active_ports,
            ftp,
            "ftp, ftps and ftps-implicit",
        );
        self.only_for(
            name,
            "server_timezone",
            &raw.server_timezone,
            ftp,
            "ftp, ftps and ftps-implicit",
        );
        self.only_for(name, "ca_file", &raw.ca_file, tls, "ftps and ftps-implicit");
        self.only_for(
            name,
            "certificate_sha256",
            &raw.certificate_sha256,
            tls,
            "ftps and ftps-implicit",
        );
        self.only_for(
            name,
            "insecure_skip_verify",
            &raw.insecure_skip_verify,
            tls,
            "ftps and ftps-implicit",
        );
        if !ftp {
            return Some(FtpOptions::default());
        }
        let field = |f: &str| format!("servers.{name}.{f}");
        let mode = match raw.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "passive")) => Some(FtpMode::Passive),
            Some((m, "active")) => {
                if raw.proxy.is_some() {
                    // In active mode the server connects to us: no proxy carries that.
                    let msg = format!(
                        "{}: active mode cannot go through a proxy (the server would connect \
                         to this machine, past it); use mode = \"passive\" or remove proxy",
                        field("mode")
                    );
                    self.c.at(m.span(), msg);
                }
                Some(FtpMode::Active)
            }
            Some((m, other)) => {
                let msg = format!("{}: \"{other}\" is not passive or active", field("mode"));
                self.c.at(m.span(), msg);
                None
            }
        };
        let active_ports = match &raw.active_ports {
            None => Some(None),
            Some(r) => match parse_port_range(r.get_ref()) {
                Some(range) => Some(Some(range)),
                None => {
                    let msg = format!(
                        "{}: \"{}\" is not a range like \"50000-50100\"",
                        field("active_ports"),
                        r.get_ref()
                    );
                    self.c.at(r.span(), msg);
                    None
                }
            },
        };
        let ca_file = match &raw.ca_file {
            None => Some(None),
            Some(c) => self.ca_certificates(&field("ca_file"), c).map(Some),
        };
        let certificate_sha256 = match &raw.certificate_sha256 {
            None => Some(None),
            Some(c) => {
                if let Some(pin) = parse_sha256_hex(c.get_ref()) {
                    Some(Some(pin))
                } else {
                    let msg = format!(
                        "{}: expected 64 hexadecimal digits (':' separators allowed)",
                        field("certificate_sha256")
                    );
                    self.c.at(c.span(), msg);
                    None
                }
            }
        };
        let server_utc_offset = match &raw.server_timezone {
            None => Some(0),
            Some(tz) => match parse_utc_offset(tz.get_ref()) {
                Some(o) => Some(o),
                None => {
                    let msg = format!(
                        "{}: \"{}\" is not \"UTC\" or an offset like \"+02:00\"",
                        field("server_timezone"),
                        tz.get_ref()
                    );
                    self.c.at(tz.span(), msg);
                    None
                }
            },
        };
        Some(FtpOptions {
            mode: mode?,
            active_ports: active_ports?,
            ca_file: ca_file?,
            certificate_sha256: certificate_sha256?,
            insecure_skip_verify: raw
                .insecure_skip_verify
                .as_ref()
                .is_some_and(|f| *f.get_ref()),
            server_utc_offset: server_utc_offset?,
        })
    }

    /// The proxy URL, and its password from `proxy_password`. SOCKS5 sends
    /// the user and the password with a one-byte length each (RFC 1929).
    fn proxy(
        &mut self,
        name: &str,
        raw: &Spanned<String>,
        password: Option<&Spanned<RawSecretValue>>,
    ) -> Option<Proxy> {
        let field = |f: &str| format!("servers.{name}.{f}");
        let mut proxy = match parse_proxy(raw.get_ref()) {
            Ok(p) => p,
            Err(why) => {
                // Describe, never echo: the URL may hold a password.
                self.c.at(raw.span(), format!("{}: {why}", field("proxy")));
                return None;
            }
        };
        let socks5 = proxy.kind == ProxyKind::Socks5;
        if socks5 && proxy.user.as_ref().is_some_and(|u| u.len() > 255) {
            let msg = format!(
                "{}: the user is longer than 255 bytes, the SOCKS5 limit",
                field("proxy")
            );
            self.c.at(raw.span(), msg);
            return None;
        }
        if let Some(pw) = password {
            if proxy.user.is_none() {
                let msg = format!(
                    "{}: the proxy URL names no user (e.g. socks5://USER@host:1080)",
                    field("proxy_password")
                );
                self.c.at(pw.span(), msg);
                return None;
            }
            proxy.password = self.secret(&field("proxy_password"), pw);
            if socks5
                && proxy
                    .password
                    .as_ref()
                    .is_some_and(|p| p.expose().len() > 255)
            {
                let msg = format!(
                    "{}: longer than 255 bytes, the SOCKS5 limit",
                    field("proxy_password")
                );
                self.c.at(pw.span(), msg);
                return None;
            }
        }
        Some(proxy)
    }

    /// The certificates of a `ca_file`, read and parsed at load.
    fn ca_certificates(&mut self, field: &str, raw: &Spanned<String>) -> Option<CaCertificates> {
        let path = self.local_path(field, raw)?;
        let bytes = self.read_file(field, raw.span(), &path)?;
        let problem = match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
            Err(e) => format!("{e}"),
            Ok(certs) if certs.is_empty() => "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
            Ok(certs) => {
                let mut store = rustls::RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(certs.clone());
                if added > 0 {
                    return Some(CaCertificates { path, certs });
                }
                "none of its certificates can be parsed".into()
            }
        };
        let msg = format!("{field}: cannot use {}: {problem}", path.display());
        self.c.at(raw.span(), msg);
        None
    }

    fn read_file(
        &mut self,
        field: &str,
        span: std::ops::Range<usize>,
        path: &std::path::Path,
    ) -> Option<Vec<u8>> {
        match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                let msg = format!("{field}: cannot read {}: {e}", path.display());
                self.c.at(span, msg);
                None
            }
        }
    }
}

/// 64 hex digits, `:` separators allowed (as `openssl x509 -fingerprint`
/// prints them).
fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Why russh could not decode a key, in the operator's words. The key's
/// text never appears: russh's errors describe, they do not quote.
fn key_problem(e: &russh::keys::Error, text: &str, passphrase_given: bool) -> String {
    use russh::keys::Error;
    match e {
        Error::KeyIsEncrypted => {
            "the key is encrypted; set passphrase = { env = \"NAME\" } (or file, credential)".into()
        }
        Error::CouldNotReadKey => "not a private key in OpenSSH or PEM format".into(),
        _ if passphrase_given
            && matches!(
                russh::keys::decode_secret_key(text, None),
                Err(Error::KeyIsEncrypted)
            ) =>
        {
            "the passphrase is wrong".into()
        }
        _ => e.to_string(),
    }
}

pub(super) fn local_server() -> Server {
    Server {
        name: LOCAL_SERVER.into(),
        protocol: Protocol::Local,
        host: "localhost".into(),
        port: 0,
        user: None,
        password: None,
        max_sessions: 16,
        connect_timeout: Duration::from_secs(30),
        io_timeout: Duration::from_secs(60),
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        proxy: None,
        sftp: SftpOptions::default(),
        ftp: FtpOptions::default(),
        bandwidth: Bandwidth::unlimited(),
        segmenting: Segmenting {
            segments: 1,
            ..Segmenting::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse_sha256_hex;

    #[test]
    fn pins_decode_with_or_without_colons() {
        let colons: Vec<_> = (0..32).map(|_| "AB").collect();
        assert_eq!(parse_sha256_hex(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex(&colons.join(":")), Some([0xab; 32]));
        assert_eq!(parse_sha256_hex("abc"), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
        assert_eq!(parse_sha256_hex(&"+f".repeat(32)), None);
    }
}
