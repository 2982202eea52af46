//! SFTP through real proxies on loopback: tinyproxy for HTTP CONNECT,
//! dante for SOCKS4 and SOCKS5 with a user name and password.

mod common;

use common::proxies::ProxyServer;
use common::sshd::{PASSWORD, Sshd, USER};
use ferry::remote::{ErrorKind, Pool};

/// Lists `/` through `proxy`, whose password (if any) comes from a secret file.
async fn list_through(
    sshd: &Sshd,
    proxy: &str,
    proxy_password: Option<&str>,
) -> ferry::remote::Result<usize> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
    let mut text = format!(
        "[daemon]\nstate = \"{d}/s.db\"\n[servers.s]\nprotocol = \"sftp\"\nhost = \"127.0.0.1\"\nport = {p}\n\
         user = \"{USER}\"\npassword = {{ file = \"{d}/pw\" }}\nhost_key = \"{k}\"\nproxy = \"{proxy}\"\n",
        d = dir.path().display(),
        p = sshd.port,
        k = sshd.host_key_fingerprint
    );
    if let Some(pw) = proxy_password {
        std::fs::write(dir.path().join("proxy-pw"), pw).unwrap();
        let d = dir.path().display();
        text.push_str(&format!("proxy_password = {{ file = \"{d}/proxy-pw\" }}\n"));
    }
    let cfg = ferry::config::parse(&dir.path().join("f.toml"), &text).unwrap();
    let mut session = Pool::new(cfg.servers["s"].clone()).get().await?;
    Ok(session.list("/").await?.len())
}

#[tokio::test]
async fn through_an_http_connect_proxy() {
    let sshd = Sshd::start(Default::default(), &[]);
    let proxy = ProxyServer::tinyproxy();
    let n = list_through(&sshd, &format!("http://127.0.0.1:{}", proxy.port), None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert!(n > 0);
    assert!(
        proxy.logs().contains(&format!("127.0.0.1:{}", sshd.port)),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn through_a_socks4_proxy() {
    let sshd = Sshd::start(Default::default(), &[]);
    let proxy = ProxyServer::dante("none");
    list_through(&sshd, &format!("socks4://127.0.0.1:{}", proxy.port), None)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert!(
        proxy.logs().contains(&format!("127.0.0.1.{}", sshd.port)),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn through_a_socks5_proxy_with_a_login_and_refused_with_a_wrong_one() {
    let sshd = Sshd::start(Default::default(), &[]);
    let proxy = ProxyServer::dante("username");
    let url = format!("socks5://{USER}@127.0.0.1:{}", proxy.port);
    list_through(&sshd, &url, Some(PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.logs()));
    assert!(
        proxy.logs().contains(&format!("127.0.0.1.{}", sshd.port)),
        "{}",
        proxy.logs()
    );
    let e = list_through(&sshd, &url, Some("wrong")).await.unwrap_err();
    assert_eq!((e.kind, e.temporary), (ErrorKind::Auth, false), "{e}");
    assert!(!e.to_string().contains("wrong"), "the password leaked: {e}");
}
