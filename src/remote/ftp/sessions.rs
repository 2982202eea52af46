//! An FTPS control connection's TLS session store, which knows when it
//! has nothing left for a data connection to resume.

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

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

/// Which TLS versions a server's new control connections offer. TLS 1.3
/// or 1.2 at first. Once a control connection's TLS 1.3 tickets ran out
/// (ProFTPD: two per control connection, none after), TLS 1.2 alone: a
/// TLS 1.2 session resumes any number of data connections, where TLS 1.3
/// needed a new control connection, with its login, every two transfers
/// (ProFTPD's mod_delay makes a login take a while). rustls's TLS 1.2 is
/// ECDHE with AEAD ciphers only. A server that refuses TLS 1.2 keeps
/// TLS 1.3, and its new control connections.
#[derive(Debug, Default)]
pub struct Versions(AtomicU8);

const ANY: u8 = 0;
const TLS12: u8 = 1;
const TLS12_REFUSED: u8 = 2;

impl Versions {
    /// Whether new control connections offer TLS 1.2 alone.
    pub fn tls12_only(&self) -> bool {
        self.0.load(Ordering::Relaxed) == TLS12
    }

    /// A control connection's TLS 1.3 tickets ran out.
    pub fn ran_dry(&self, server: &str) {
        if self
            .0
            .compare_exchange(ANY, TLS12, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                server,
                "the server gives each control connection's data connections two TLS 1.3 sessions to resume, no more; its control connections use TLS 1.2 from now on, whose session resumes them all"
            );
        }
    }

    /// A TLS 1.2 connection failed where TLS 1.3 then succeeded.
    pub fn tls12_refused(&self, server: &str) {
        self.0.store(TLS12_REFUSED, Ordering::Relaxed);
        tracing::warn!(
            server,
            "the server refuses TLS 1.2: staying on TLS 1.3, with a new control connection whenever its sessions run out"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::Versions;

    #[test]
    fn tls12_is_chosen_once_and_never_again_after_a_refusal() {
        let v = Versions::default();
        assert!(!v.tls12_only());
        v.ran_dry("s");
        assert!(v.tls12_only());
        v.tls12_refused("s");
        assert!(!v.tls12_only());
        // Tickets that run out again change nothing now.
        v.ran_dry("s");
        assert!(!v.tls12_only());
    }
}
