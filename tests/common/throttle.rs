//! A loopback TCP relay that passes at most so many bytes per second in
//! each direction of each connection: a slow link.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct Throttle {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Throttle {
    pub fn start(upstream_port: u16, bytes_per_sec: u64) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                counter.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                pace(c2, s2, bytes_per_sec);
                pace(server, client, bytes_per_sec);
            }
        });
        Throttle { port, accepted }
    }

    /// Connections accepted so far: sessions a test's ferry opened.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn pace(mut from: TcpStream, mut to: TcpStream, bytes_per_sec: u64) {
    std::thread::spawn(move || {
        let began = Instant::now();
        let mut sent = 0u64;
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sent += n as u64;
            let due = Duration::from_secs_f64(sent as f64 / bytes_per_sec as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
