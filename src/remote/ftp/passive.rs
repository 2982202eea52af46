//! Where a passive data connection goes, and opening it: the EPSV and PASV
//! replies read (RFC 2428, RFC 959), the address of a server behind NAT
//! repaired, and the connection made straight or through the server's
//! proxy. Through a proxy the data connection goes to the host as
//! configured (a name is resolved by the proxy, as for the control
//! connection): this side never learns the server's address.

use crate::config::Server;
use crate::remote::proxy;
use crate::remote::{ErrorKind, RemoteError, Result};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpStream;

/// Where to open one passive data connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Straight to this address.
    Direct(SocketAddr),
    /// Through the server's proxy to this host (name or address) and port.
    Proxied(String, u16),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Direct(a) => write!(f, "{a}"),
            Target::Proxied(h, p) if h.contains(':') => write!(f, "[{h}]:{p} via the proxy"),
            Target::Proxied(h, p) => write!(f, "{h}:{p} via the proxy"),
        }
    }
}

/// How this control connection reaches the server, which decides where
/// its data connections go.
pub struct Route<'a> {
    /// The server's address on the control connection (the proxy's, when
    /// there is one: then it is not used).
    pub control: IpAddr,
    /// The host as configured.
    pub host: &'a str,
    pub proxied: bool,
}

impl Route<'_> {
    /// EPSV gives a port only: the data connection goes where the control
    /// connection went.
    pub fn epsv(&self, port: u16) -> Target {
        if self.proxied {
            Target::Proxied(self.host.to_string(), port)
        } else {
            Target::Direct(SocketAddr::new(self.control, port))
        }
    }

    /// A PASV address; a private or unroutable one is taken for a server
    /// behind NAT and replaced by the control connection's server (through
    /// a proxy: the configured host, since the proxy chose the address).
    pub fn pasv(&self, addr: SocketAddr) -> Target {
        if !self.proxied {
            return Target::Direct(fix_pasv_address(addr, self.control));
        }
        if unroutable(addr.ip()) {
            Target::Proxied(self.host.to_string(), addr.port())
        } else {
            Target::Proxied(addr.ip().to_string(), addr.port())
        }
    }
}

/// Opens the data connection to `target`, within `connect_timeout`.
pub async fn connect(server: &Server, target: &Target) -> Result<TcpStream> {
    let what = || format!("data connection to {target}");
    let open = async {
        match target {
            Target::Direct(addr) => TcpStream::connect(addr)
                .await
                .map_err(|e| RemoteError::from_io(what(), &e)),
            Target::Proxied(host, port) => proxy::connect(server.proxy.as_ref(), host, *port)
                .await
                .map_err(|mut e| {
                    // "connect HOST:PORT via KIND proxy P" says where it went.
                    e.context = format!("data connection: {}", e.context);
                    e
                }),
        }
    };
    match tokio::time::timeout(server.connect_timeout, open).await {
        Ok(r) => r,
        Err(_) => Err(RemoteError::new(
            ErrorKind::Timeout,
            true,
            what(),
            format!("not connected within {:?}", server.connect_timeout),
        )),
    }
}

/// `229 Entering Extended Passive Mode (|||6446|)`
pub fn epsv_port(reply: &str) -> Option<u16> {
    let inner = reply.split_once('(')?.1.split_once(')')?.0;
    let d = inner.chars().next()?;
    let parts: Vec<_> = inner.split(d).collect();
    parts.get(3)?.parse().ok()
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`; some servers omit the
/// parentheses, so take the first run of six comma-separated numbers.
pub fn pasv_address(reply: &str) -> Option<SocketAddr> {
    let text = reply.get(4..)?;
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u8> = text[start..]
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .next()?
        .split(',')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let [a, b, c, d, p1, p2] = nums[..] else {
        return None;
    };
    let ip = Ipv4Addr::new(a, b, c, d);
    Some(SocketAddr::new(
        IpAddr::V4(ip),
        u16::from(p1) << 8 | u16::from(p2),
    ))
}

/// A server behind NAT often announces its inside address. When the PASV
/// address is private or unroutable and differs from the address the
/// control connection reached, connect to the control address instead.
fn fix_pasv_address(addr: SocketAddr, control: IpAddr) -> SocketAddr {
    if unroutable(addr.ip()) && addr.ip() != control {
        SocketAddr::new(control, addr.port())
    } else {
        addr
    }
}

fn unroutable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_private()
                || ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_link_local()
                || ip.is_broadcast()
                || ip.is_documentation()
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
                || o[0] == 0
        }
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_replies_parse() {
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(epsv_port("229 ok (!!!1234!)"), Some(1234));
        assert_eq!(epsv_port("229 nonsense"), None);
        let a = pasv_address("227 Entering Passive Mode (127,0,0,1,4,1).").unwrap();
        assert_eq!(a, "127.0.0.1:1025".parse().unwrap());
        let a = pasv_address("227 =10,1,2,3,200,10").unwrap();
        assert_eq!(a, "10.1.2.3:51210".parse().unwrap());
        assert_eq!(pasv_address("227 (1,2,3)"), None);
        assert_eq!(pasv_address("227 (1,2,3,4,5,666)"), None);
    }

    #[test]
    fn private_pasv_addresses_are_replaced_by_the_control_address() {
        let control: IpAddr = "203.0.113.7".parse().unwrap();
        let inside: SocketAddr = "10.0.0.5:5000".parse().unwrap();
        assert_eq!(
            fix_pasv_address(inside, control),
            "203.0.113.7:5000".parse().unwrap()
        );
        let zero: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        assert_eq!(fix_pasv_address(zero, control).ip(), control);
        // A public address elsewhere (a separate data host) is kept.
        let public: SocketAddr = "1.1.1.1:5000".parse().unwrap();
        assert_eq!(fix_pasv_address(public, "9.9.9.9".parse().unwrap()), public);
        // Same private address as the control connection: nothing to fix.
        let lan: SocketAddr = "192.168.1.2:21000".parse().unwrap();
        assert_eq!(fix_pasv_address(lan, "192.168.1.2".parse().unwrap()), lan);
    }

    #[test]
    fn through_a_proxy_data_connections_go_to_the_configured_host() {
        let route = Route {
            control: "127.0.0.1".parse().unwrap(), // the proxy's address
            host: "ftp.partner.example",
            proxied: true,
        };
        let named = |p| Target::Proxied("ftp.partner.example".into(), p);
        assert_eq!(route.epsv(40001), named(40001));
        // A private PASV address: the proxy could not reach it; the host can.
        assert_eq!(route.pasv("10.0.0.5:5000".parse().unwrap()), named(5000));
        assert_eq!(route.pasv("127.0.0.1:5001".parse().unwrap()), named(5001));
        // A public one (a separate data host) is kept, for the proxy to reach.
        assert_eq!(
            route.pasv("1.1.1.1:5002".parse().unwrap()),
            Target::Proxied("1.1.1.1".into(), 5002)
        );
        assert_eq!(
            named(21).to_string(),
            "ftp.partner.example:21 via the proxy"
        );
    }

    #[test]
    fn without_a_proxy_data_connections_go_straight() {
        let route = Route {
            control: "203.0.113.7".parse().unwrap(),
            host: "ftp.partner.example",
            proxied: false,
        };
        let direct = |a: &str| Target::Direct(a.parse().unwrap());
        assert_eq!(route.epsv(6000), direct("203.0.113.7:6000"));
        assert_eq!(
            route.pasv("10.0.0.5:6001".parse().unwrap()),
            direct("203.0.113.7:6001")
        );
    }
}
