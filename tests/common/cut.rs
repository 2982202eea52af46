//! A loopback TCP relay that can cut its connections: after a byte budget
//! from the server, or on demand. It stands in for a network that drops.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct Relay {
    pub port: u16,
    /// Bytes from the server a connection may pass before it is cut.
    budget: Arc<AtomicU64>,
    /// Bytes passed from the server, across connections.
    pub passed: Arc<AtomicU64>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// While set, nothing is forwarded in either direction (a stalled peer).
    frozen: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(upstream_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let budget = Arc::new(AtomicU64::new(u64::MAX));
        let passed = Arc::new(AtomicU64::new(0));
        let open = Arc::new(Mutex::new(Vec::new()));
        let frozen = Arc::new(AtomicBool::new(false));
        let (b, p, o, f) = (budget.clone(), passed.clone(), open.clone(), frozen.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                o.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(c2, s2, None, p.clone(), f.clone());
                pump(server, client, Some(b.clone()), p.clone(), f.clone());
            }
        });
        Relay {
            port,
            budget,
            passed,
            open,
            frozen,
        }
    }

    /// Connections opened from now on (and open ones) are cut once this many
    /// more bytes came from the server.
    pub fn cut_after(&self, bytes: u64) {
        self.budget
            .store(self.passed.load(Ordering::SeqCst) + bytes, Ordering::SeqCst);
    }

    pub fn unlimited(&self) {
        self.budget.store(u64::MAX, Ordering::SeqCst);
    }

    /// Stops (or resumes) forwarding without closing anything.
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, Ordering::SeqCst);
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    budget: Option<Arc<AtomicU64>>,
    passed: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            while frozen.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if let Some(b) = &budget {
                let before = passed.fetch_add(n as u64, Ordering::SeqCst);
                if before + n as u64 > b.load(Ordering::SeqCst) {
                    break;
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
