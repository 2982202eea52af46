//! Parsing the small value formats of server blocks: fingerprints, port
//! ranges, UTC offsets and proxy URLs. Pure functions, tested beside them.

use crate::config::model::{Proxy, ProxyKind};

pub(super) fn is_sha256_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
    })
}

pub(super) fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some((a, b))
}

/// "UTC", "Z", "+02:00", "-0530" -> seconds east of UTC.
pub(super) fn parse_utc_offset(s: &str) -> Option<i32> {
    if matches!(s, "UTC" | "utc" | "Z" | "GMT") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (digits[..2].parse().ok()?, digits[2..].parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

/// `scheme://[user@]host:port`. The password comes from `proxy_password`,
/// a secret like every other; one in the URL is refused, without echoing it.
pub(super) fn parse_proxy(url: &str) -> Result<Proxy, String> {
    let (scheme, rest) = url.split_once("://").ok_or("expected scheme://host:port")?;
    let kind = match scheme {
        "http" => ProxyKind::Http,
        "socks4" => ProxyKind::Socks4,
        "socks5" | "socks5h" => ProxyKind::Socks5,
        _ => return Err("the scheme must be http, socks4 or socks5".into()),
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or("the proxy needs a port, e.g. socks5://host:1080")?;
    let port: u16 = port.parse().map_err(|_| "the proxy port is not a number")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err("the proxy needs a host and a port".into());
    }
    if auth.is_some_and(|a| a.contains(':')) {
        return Err(
            "the password does not go into the URL; set proxy_password = { env = \"NAME\" } \
             (or file, credential)"
                .into(),
        );
    }
    Ok(Proxy {
        kind,
        host: host.to_string(),
        port,
        user: auth.map(str::to_string),
        password: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_parse_and_refuse_passwords_in_the_url() {
        let p = parse_proxy("socks5://me@127.0.0.1:1080").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Socks5, "127.0.0.1", 1080)
        );
        assert_eq!(p.user.as_deref(), Some("me"));
        let e = parse_proxy("socks5://me:s3cret@127.0.0.1:1080").unwrap_err();
        assert!(e.contains("proxy_password") && !e.contains("s3cret"), "{e}");
        assert_eq!(parse_proxy("http://[::1]:3128").unwrap().host, "::1");
        assert!(parse_proxy("ftp://x:1").is_err());
        assert!(parse_proxy("socks5://host").is_err());
    }

    #[test]
    fn offsets_ranges_and_fingerprints() {
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        assert_eq!(parse_utc_offset("+02:00"), Some(7200));
        assert_eq!(parse_utc_offset("-0530"), Some(-19800));
        assert_eq!(parse_utc_offset("Europe/Paris"), None);
        assert_eq!(parse_port_range("50000-50100"), Some((50000, 50100)));
        assert_eq!(parse_port_range("5-1"), None);
        assert!(is_sha256_fingerprint(
            "SHA256:zTNGmNWax82VdxahhyYGY68LqZLhUrtE/nn9pNMnfe4"
        ));
        assert!(!is_sha256_fingerprint("MD5:aa"));
    }
}
