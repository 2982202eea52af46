//! Upload benchmark for the FTP transport's write path: ferry has no upload
//! command yet (the `[[send]]` outbox is a later issue), so this drives
//! `Session::write_from` directly, as the outbox will.
//!
//! `cargo run --release --example ftp_upload -- PORT LOCAL_FILE REMOTE_PATH`
//! uploads to anonymous FTP on 127.0.0.1:PORT and prints bytes and seconds.

use ferry::config::{FtpOptions, Protocol, Server, SftpOptions};
use ferry::remote::WriteMode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, local, remote] = &args[..] else {
        eprintln!("usage: ftp_upload PORT LOCAL_FILE REMOTE_PATH");
        std::process::exit(2);
    };
    let server = Arc::new(Server {
        name: "bench".into(),
        protocol: Protocol::Ftp,
        host: "127.0.0.1".into(),
        port: port.parse().expect("port"),
        user: None,
        password: None,
        max_sessions: 1,
        connect_timeout: Duration::from_secs(10),
        io_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(300),
        proxy: None,
        sftp: SftpOptions::default(),
        ftp: FtpOptions::default(),
        bandwidth: Default::default(),
        segmenting: ferry::config::Segmenting::default(),
    });
    let start = Instant::now();
    let mut session = ferry::remote::choose(&server)
        .connect()
        .await
        .expect("connect");
    let mut file = tokio::fs::File::open(local).await.expect("open local file");
    let n = session
        .write_from(remote, WriteMode::Replace, &mut file)
        .await
        .expect("upload");
    println!("{n} bytes in {:.3} s", start.elapsed().as_secs_f64());
}
