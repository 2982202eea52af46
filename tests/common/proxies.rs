//! Real proxy servers on loopback: tinyproxy (HTTP CONNECT) and dante
//! (SOCKS4, SOCKS5 with user names). Stopped on drop.

use super::sshd::{free_port, require, world_readable};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct ProxyServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: &'static str,
    child: Child,
}

impl ProxyServer {
    pub fn tinyproxy() -> ProxyServer {
        require("/usr/bin/tinyproxy", "tinyproxy");
        let dir = tempfile::tempdir().unwrap();
        world_readable(dir.path());
        let port = free_port();
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nMaxClients 50\n\
             LogFile \"{d}/proxy.log\"\nPidFile \"{d}/proxy.pid\"\nLogLevel Info\nUser nobody\nGroup nogroup\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).unwrap();
        let child = Command::new("/usr/bin/tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("tinyproxy.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Self::ready(ProxyServer {
            port,
            dir,
            log: "proxy.log",
            child,
        })
    }

    /// dante; `socksmethod` is `none` or `username` (system users).
    pub fn dante(socksmethod: &str) -> ProxyServer {
        require("/usr/sbin/danted", "dante-server");
        let dir = tempfile::tempdir().unwrap();
        world_readable(dir.path());
        let port = free_port();
        let conf = format!(
            "logoutput: {d}/proxy.log\ninternal: 127.0.0.1 port = {port}\nexternal: 127.0.0.1\n\
             clientmethod: none\nsocksmethod: {socksmethod}\nuser.privileged: root\nuser.unprivileged: nobody\n\
             client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
             socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect error }}\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("danted.conf"), conf).unwrap();
        let child = Command::new("/usr/sbin/danted")
            .arg("-f")
            .arg(dir.path().join("danted.conf"))
            .arg("-p")
            .arg(dir.path().join("danted.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Self::ready(ProxyServer {
            port,
            dir,
            log: "proxy.log",
            child,
        })
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir, port: u16) -> ProxyServer {
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        Self::ready(ProxyServer {
            port,
            dir,
            log: "proxy.log",
            child,
        })
    }

    fn ready(mut p: ProxyServer) -> ProxyServer {
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", p.port)).is_err() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("proxy exited ({status}): {}", p.logs());
            }
            assert!(
                Instant::now() < deadline,
                "proxy did not start: {}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}{}", read(self.log), read("stderr.log"))
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
