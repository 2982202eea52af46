//! Real proxy servers on loopback: tinyproxy (HTTP CONNECT) and dante
//! (SOCKS4, SOCKS5 with user names). Stopped on drop.

use super::process::{Proc, free_port, require};
use super::sshd::world_readable;
use std::path::Path;
use std::process::Command;

pub struct ProxyServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    proc: Proc,
}

impl ProxyServer {
    pub fn tinyproxy() -> ProxyServer {
        require("/usr/bin/tinyproxy", "tinyproxy");
        Self::start(|d, port| {
            let conf = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\n\
                 LogFile \"{d}/proxy.log\"\nPidFile \"{d}/proxy.pid\"\nLogLevel Info\nUser nobody\nGroup nogroup\n",
                d = d.display()
            );
            std::fs::write(d.join("tinyproxy.conf"), conf).unwrap();
            let mut cmd = Command::new("/usr/bin/tinyproxy");
            cmd.arg("-d").arg("-c").arg(d.join("tinyproxy.conf"));
            cmd
        })
    }

    /// dante; `socksmethod` is `none` or `username` (system users).
    pub fn dante(socksmethod: &str) -> ProxyServer {
        require("/usr/sbin/danted", "dante-server");
        Self::start(|d, port| {
            let conf = format!(
                "logoutput: {d}/proxy.log\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
                 clientmethod: none\nsocksmethod: {socksmethod}\nuser.privileged: root\nuser.unprivileged: nobody\n\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect error }}\n",
                d = d.display()
            );
            std::fs::write(d.join("danted.conf"), conf).unwrap();
            let mut cmd = Command::new("/usr/sbin/danted");
            cmd.arg("-f")
                .arg(d.join("danted.conf"))
                .arg("-p")
                .arg(d.join("danted.pid"));
            cmd
        })
    }

    /// Runs the command `command(dir, port)` writes its configuration for,
    /// in a temp directory the proxy's unprivileged user can read.
    fn start(command: impl FnOnce(&Path, u16) -> Command) -> ProxyServer {
        let dir = tempfile::tempdir().unwrap();
        world_readable(dir.path());
        let port = free_port();
        let cmd = command(dir.path(), port);
        let mut p = ProxyServer {
            port,
            proc: Proc::spawn(cmd, &dir.path().join("stderr.log")),
            dir,
        };
        let logs = logs_in(p.dir.path());
        p.proc.wait_port(port, |_| true, logs);
        p
    }

    pub fn logs(&self) -> String {
        logs_in(self.dir.path())()
    }
}

/// The proxy's own log and its stderr, as one text.
fn logs_in(dir: &Path) -> impl Fn() -> String + '_ {
    move || {
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        format!("{}{}", read("proxy.log"), read("stderr.log"))
    }
}
