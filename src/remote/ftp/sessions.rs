//! An FTPS control connection's TLS session store, which knows when it
//! has nothing left for a data connection to resume.

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Tickets kept per control connection: rustls's in-memory store keeps at
/// most 8 TLS 1.3 tickets per server name.
const TICKETS: usize = 8;

/// One control connection's session store: rustls's in-memory store,
/// counting what it holds. A TLS 1.3 ticket resumes one connection only
/// (rustls takes it out of the store; RFC 8446 advises against reuse), and
/// a server may give its tickets after the full handshake only: ProFTPD
/// sends two then and none after a resumption, so a control connection's
/// third data connection had no ticket, made a full handshake, and was
/// refused ("client did not reuse TLS session", 425). Knowing that the
/// store ran dry, the session opens a new control connection instead
/// (`FtpSession::data_conn`). A TLS 1.2 session resumes any number of
/// connections and never runs dry.
#[derive(Debug)]
pub struct Sessions {
    inner: ClientSessionMemoryCache,
    tickets: AtomicUsize,
    /// A ticket was taken: the server gives them, so an empty store means
    /// used up, not a server that never gives any (for which a new
    /// control connection would change nothing).
    took: AtomicBool,
    tls12: AtomicBool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            inner: ClientSessionMemoryCache::new(TICKETS),
            tickets: AtomicUsize::new(0),
            took: AtomicBool::new(false),
            tls12: AtomicBool::new(false),
        }
    }
}

impl Sessions {
    /// Whether the next data connection would find no session to resume
    /// after earlier ones used up what the server gave.
    pub fn ran_dry(&self) -> bool {
        !self.tls12.load(Ordering::Relaxed)
            && self.took.load(Ordering::Relaxed)
            && self.tickets.load(Ordering::Relaxed) == 0
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(name)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.tls12.store(true, Ordering::Relaxed);
        self.inner.set_tls12_session(name, value)
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.tls12.store(false, Ordering::Relaxed);
        self.inner.remove_tls12_session(name)
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        let _ = self
            .tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n + 1).min(TICKETS))
            });
        self.inner.insert_tls13_ticket(name, value)
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let ticket = self.inner.take_tls13_ticket(name);
        if ticket.is_some() {
            self.took.store(true, Ordering::Relaxed);
            let _ = self
                .tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        ticket
    }
}
