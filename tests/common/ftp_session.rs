//! Session helpers shared by the FTP transport tests.
#![allow(dead_code)]

use ferry::config::{FtpOptions, Protocol, Secret, Server, SftpOptions};
use ferry::remote::{Session, Version, choose};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ftp_servers::{PY_PASSWORD, PY_USER};

pub fn server(protocol: Protocol, port: u16, ftp: FtpOptions) -> Arc<Server> {
    Arc::new(Server {
        name: "t".into(),
        protocol,
        host: "127.0.0.1".into(),
        port,
        user: None,
        password: None,
        max_sessions: 2,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        proxy: None,
        sftp: SftpOptions::default(),
        ftp,
        bandwidth: Default::default(),
        segmenting: ferry::config::Segmenting::default(),
    })
}

pub fn py_user(mut s: Arc<Server>) -> Arc<Server> {
    let m = Arc::make_mut(&mut s);
    m.user = Some(PY_USER.into());
    m.password = Some(Secret::new(PY_PASSWORD.into()));
    s
}

pub async fn connect(s: &Arc<Server>) -> Box<dyn Session> {
    match choose(s).connect().await {
        Ok(c) => c,
        Err(e) => panic!("connect: {e}"),
    }
}

/// A plain FTP session to pyftpdlib on `port`, as its test user.
pub async fn connect_py(port: u16) -> Box<dyn Session> {
    connect(&py_user(server(Protocol::Ftp, port, FtpOptions::default()))).await
}

pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A time with seconds, a little in the past, set as the file's mtime.
pub fn set_mtime(path: &std::path::Path, ago: u64) -> i64 {
    let t = SystemTime::now() - Duration::from_secs(ago);
    let t = UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).unwrap().as_secs());
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Compares bytes without printing megabytes on failure.
pub fn same(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "{} bytes differ from the expected {} bytes",
        got.len(),
        want.len()
    );
}

/// What a read expects when the test does not care: unknown size, to the end.
pub const ANY: Version = Version {
    size: None,
    mtime: 0,
};

/// A read that expects `size` bytes (FTP ignores the mtime).
pub fn sized(size: u64) -> Version {
    Version {
        size: Some(size),
        mtime: 0,
    }
}

pub async fn read_all(s: &mut Box<dyn Session>, path: &str, offset: u64) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_into(path, offset, ANY, &mut out).await.unwrap();
    out
}
