//! Resolving `[servers.NAME]` blocks: the protocol, where to connect, how to
//! authenticate and whom to trust. Options of one protocol given to another
//! are errors, so a typo never silently weakens a connection.

use super::values::{is_sha256_fingerprint, parse_port_range, parse_proxy, parse_utc_offset};
use super::{LOCAL_SERVER, Resolver};
use crate::config::model::*;
use crate::config::raw::{RawServer, StringOrList};
use std::time::Duration;
use toml::Spanned;

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
        // FTP data connections would need the proxy too; not built yet.
        self.only_for(
            name,
            "proxy",
            &raw.proxy,
            protocol == Protocol::Sftp,
            "sftp",
        );
        let proxy = raw
            .proxy
            .as_ref()
            .and_then(|p| self.proxy(&field("proxy"), p));
        let sftp = self.sftp_options(name, protocol, &raw);
        let ftp = self.ftp_options(name, protocol, &raw);
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
            proxy,
            sftp: sftp?,
            ftp: ftp?,
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
        if !is {
            return Some(SftpOptions::default());
        }
        let field = |f: &str| format!("servers.{name}.{f}");
        let private_key = raw.private_key.as_ref().and_then(|k| {
            let path = self.local_path(&field("private_key"), k)?;
            self.readable_file(&field("private_key"), k, &path)
        });
        let private_key_content = raw
            .private_key_content
            .as_ref()
            .and_then(|k| self.secret(&field("private_key_content"), k));
        let passphrase = raw
            .passphrase
            .as_ref()
            .and_then(|k| self.secret(&field("passphrase"), k));
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
            private_key_content,
            passphrase,
            host_keys,
            follow_symlinks: raw.follow_symlinks.as_ref().is_some_and(|f| *f.get_ref()),
        })
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
            return self
                .readable_file(&field("known_hosts"), k, &path)
                .map(HostKeyPolicy::KnownHosts);
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
            Some((_, "active")) => Some(FtpMode::Active),
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
            Some(c) => self
                .local_path(&field("ca_file"), c)
                .and_then(|p| self.readable_file(&field("ca_file"), c, &p))
                .map(Some),
        };
        let certificate_sha256 = match &raw.certificate_sha256 {
            None => Some(None),
            Some(c) => {
                let hex: String = c
                    .get_ref()
                    .chars()
                    .filter(|ch| *ch != ':')
                    .collect::<String>()
                    .to_ascii_lowercase();
                if hex.len() == 64 && hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
                    Some(Some(hex))
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

    fn proxy(&mut self, field: &str, raw: &Spanned<String>) -> Option<Proxy> {
        match parse_proxy(raw.get_ref()) {
            Ok(p) => Some(p),
            Err(why) => {
                // The URL may hold a password: describe, never echo it.
                self.c.at(raw.span(), format!("{field}: {why}"));
                None
            }
        }
    }

    fn readable_file(
        &mut self,
        field: &str,
        raw: &Spanned<String>,
        path: &std::path::Path,
    ) -> Option<std::path::PathBuf> {
        match std::fs::File::open(path) {
            Ok(_) => Some(path.to_path_buf()),
            Err(e) => {
                self.c.at(
                    raw.span(),
                    format!("{field}: cannot read {}: {e}", path.display()),
                );
                None
            }
        }
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
        proxy: None,
        sftp: SftpOptions::default(),
        ftp: FtpOptions::default(),
    }
}
