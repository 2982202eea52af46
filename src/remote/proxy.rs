//! Reaching a server through an HTTP CONNECT, SOCKS4 or SOCKS5 proxy: the
//! handshake is done here, then the stream is the server's, for any protocol.

use super::{ErrorKind, RemoteError, Result};
use crate::config::{Proxy, ProxyKind};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Opens a TCP connection to `host:port`, through `proxy` when given.
pub async fn connect(proxy: Option<&Proxy>, host: &str, port: u16) -> Result<TcpStream> {
    let target = format!("{host}:{port}");
    let Some(p) = proxy else {
        return TcpStream::connect((host, port))
            .await
            .map_err(|e| connection_error(&format!("connect {target}"), &e));
    };
    let via = format!(
        "connect {target} via {} proxy {}:{}",
        kind_name(p.kind),
        p.host,
        p.port
    );
    let mut stream = TcpStream::connect((p.host.as_str(), p.port))
        .await
        .map_err(|e| connection_error(&via, &e))?;
    let r = match p.kind {
        ProxyKind::Http => http_connect(&mut stream, p, host, port).await,
        ProxyKind::Socks4 => socks4(&mut stream, p, host, port).await,
        ProxyKind::Socks5 => socks5(&mut stream, p, host, port).await,
    };
    r.map_err(|e| RemoteError::new(e.kind, e.temporary, via, e.message))?;
    Ok(stream)
}

fn kind_name(k: ProxyKind) -> &'static str {
    match k {
        ProxyKind::Http => "HTTP",
        ProxyKind::Socks4 => "SOCKS4",
        ProxyKind::Socks5 => "SOCKS5",
    }
}

fn connection_error(ctx: &str, e: &std::io::Error) -> RemoteError {
    let mut err = RemoteError::from_io(ctx, e);
    if !matches!(err.kind, ErrorKind::Timeout) {
        err.kind = ErrorKind::Connection;
        err.temporary = true;
    }
    err
}

fn refused(message: impl Into<String>) -> RemoteError {
    RemoteError::new(ErrorKind::Connection, true, "", message)
}

fn io(e: std::io::Error) -> RemoteError {
    connection_error("", &e)
}

async fn http_connect(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<()> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(user) = &p.user {
        let pass = p.password.as_ref().map_or("", |s| s.expose());
        req.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(format!("{user}:{pass}").as_bytes())
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.map_err(io)?;
    // Read the reply head byte by byte-ish through a small buffer, and never
    // past it: what follows belongs to the tunnelled protocol.
    let mut reader = BufReader::with_capacity(1, &mut *s);
    let mut status = String::new();
    reader.read_line(&mut status).await.map_err(io)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.map_err(io)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).unwrap_or("");
    match code {
        "200" => Ok(()),
        "407" => Err(RemoteError::new(
            ErrorKind::Auth,
            false,
            "",
            "the HTTP proxy wants credentials (407)",
        )),
        _ => Err(refused(format!(
            "the HTTP proxy answered: {}",
            status.trim()
        ))),
    }
}

async fn socks4(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<()> {
    // SOCKS4a: an IPv4 address, or 0.0.0.1 plus the host name for the proxy to resolve.
    let ip: Option<std::net::Ipv4Addr> = host.parse().ok();
    let mut req = vec![4, 1];
    req.extend_from_slice(&port.to_be_bytes());
    req.extend_from_slice(&ip.map_or([0, 0, 0, 1], |a| a.octets()));
    req.extend_from_slice(p.user.as_deref().unwrap_or("").as_bytes());
    req.push(0);
    if ip.is_none() {
        req.extend_from_slice(host.as_bytes());
        req.push(0);
    }
    s.write_all(&req).await.map_err(io)?;
    let mut reply = [0u8; 8];
    s.read_exact(&mut reply).await.map_err(io)?;
    match reply[1] {
        0x5a => Ok(()),
        code => Err(refused(format!(
            "the SOCKS4 proxy refused the connection (code {code:#x})"
        ))),
    }
}

async fn socks5(s: &mut TcpStream, p: &Proxy, host: &str, port: u16) -> Result<()> {
    let methods: &[u8] = if p.user.is_some() {
        &[0x00, 0x02]
    } else {
        &[0x00]
    };
    let mut hello = vec![5, methods.len() as u8];
    hello.extend_from_slice(methods);
    s.write_all(&hello).await.map_err(io)?;
    let mut chosen = [0u8; 2];
    s.read_exact(&mut chosen).await.map_err(io)?;
    match chosen[1] {
        0x00 => {}
        0x02 => socks5_login(s, p).await?,
        _ => {
            return Err(RemoteError::new(
                ErrorKind::Auth,
                false,
                "",
                "the SOCKS5 proxy accepts none of our login methods",
            ));
        }
    }
    let mut req = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            req.push(1);
            req.extend_from_slice(&a.octets());
        }
        Ok(std::net::IpAddr::V6(a)) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        Err(_) => {
            req.push(3);
            req.push(host.len().min(255) as u8);
            req.extend_from_slice(&host.as_bytes()[..host.len().min(255)]);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(io)?;
    if head[1] != 0 {
        return Err(refused(format!(
            "the SOCKS5 proxy could not connect (reply {})",
            head[1]
        )));
    }
    // Skip the bound address the proxy reports.
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await.map_err(io)?;
            n[0] as usize
        }
        _ => return Err(refused("the SOCKS5 proxy sent a malformed reply")),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await.map_err(io)?;
    Ok(())
}

async fn socks5_login(s: &mut TcpStream, p: &Proxy) -> Result<()> {
    let user = p.user.as_deref().unwrap_or("");
    let pass = p.password.as_ref().map_or("", |s| s.expose());
    let mut req = vec![1, user.len() as u8];
    req.extend_from_slice(user.as_bytes());
    req.push(pass.len() as u8);
    req.extend_from_slice(pass.as_bytes());
    s.write_all(&req).await.map_err(io)?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.map_err(io)?;
    if reply[1] != 0 {
        return Err(RemoteError::new(
            ErrorKind::Auth,
            false,
            "",
            "the SOCKS5 proxy refused the user name or password",
        ));
    }
    Ok(())
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }
}
