//! Deciding whether to trust the key an SSH server offers. Unknown and
//! changed keys are refused with the offered fingerprint and how to pin it.

use crate::config::{HostKeyPolicy, KnownHosts, Verdict};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use std::sync::{Arc, Mutex};

/// Why a handshake failed: SSH itself, or our refusal of the host key.
#[derive(Debug)]
pub enum HandshakeError {
    Ssh(russh::Error),
    Refused(String),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

/// The russh client handler: checks the host key against the policy and
/// remembers what the server offered, for `ferry test-connection`.
pub struct Checker {
    pub policy: HostKeyPolicy,
    pub server: String,
    pub host: String,
    pub port: u16,
    pub offered: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for Checker {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return Err(HandshakeError::Refused(
                "the server presented a host certificate; ferry trusts host keys, not certificate authorities".into(),
            ));
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let described = format!("{} {fingerprint}", key.algorithm());
        *self.offered.lock().expect("offered lock") = Some(described.clone());
        match &self.policy {
            HostKeyPolicy::AcceptAny => {
                tracing::warn!(server = %self.server, host_key = %described,
                    "insecure_accept_any_host_key is set: the server's identity is NOT verified");
                Ok(true)
            }
            HostKeyPolicy::Pinned(pins) if pins.contains(&fingerprint) => Ok(true),
            HostKeyPolicy::Pinned(_) => Err(HandshakeError::Refused(self.unknown(
                &described,
                &fingerprint,
                None,
            ))),
            HostKeyPolicy::KnownHosts(known) => {
                self.check_known_hosts(key, known, &described, &fingerprint)
            }
        }
    }
}

impl Checker {
    fn check_known_hosts(
        &self,
        key: &PublicKey,
        known: &KnownHosts,
        described: &str,
        fingerprint: &str,
    ) -> Result<bool, HandshakeError> {
        let path = &known.path;
        match known.check(&self.host, self.port, key) {
            Verdict::Known => Ok(true),
            Verdict::Unknown => Err(HandshakeError::Refused(self.unknown(
                described,
                fingerprint,
                Some(path),
            ))),
            Verdict::Changed(line) => Err(HandshakeError::Refused(format!(
                "HOST KEY CHANGED for {}: the server offered {described}, but {}:{line} holds another key. \
                 Someone may be intercepting the connection. If the change is expected, replace that line \
                 (or pin host_key = \"{fingerprint}\" in [servers.{}])",
                self.endpoint(),
                path.display(),
                self.server
            ))),
        }
    }

    fn unknown(
        &self,
        described: &str,
        fingerprint: &str,
        known_hosts: Option<&std::path::Path>,
    ) -> String {
        let file_hint = match known_hosts {
            Some(p) => format!(
                ", or add the key to {} (e.g. ssh-keyscan -p {} {} >> {}) and reload ferry",
                p.display(),
                self.port,
                self.host,
                p.display()
            ),
            None => String::new(),
        };
        format!(
            "unknown host key for {}: the server offered {described}. If that is the server's key \
             (ask its administrator), pin it with host_key = \"{fingerprint}\" in [servers.{}]{file_hint}",
            self.endpoint(),
            self.server
        )
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
