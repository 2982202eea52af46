//! Whom an FTPS connection trusts: one rustls client configuration per
//! server, and from it one per control connection ([`for_connection`]),
//! which that control connection and its data connections share so that
//! data connections resume their own control connection's TLS session
//! (vsftpd `require_ssl_reuse=YES`, ProFTPD mod_tls at its defaults,
//! FileZilla Server and others refuse a data connection that does not).
//!
//! ring is the only crypto provider in the build, and the configuration is
//! built with `builder_with_provider`: `ClientConfig::builder()` panics at
//! run time once two providers are ever enabled (CRATES.md).

use super::sessions::Sessions;
use crate::config::FtpOptions;
use rustls::client::Resumption;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex};

/// How a server's certificate is checked, kept beside the configuration so
/// that each connection can wrap it in a [`Recording`] of its own.
pub type Verifier = Arc<dyn ServerCertVerifier>;

/// The leaf certificate a control connection's server presented (DER),
/// for `ferry test-connection`.
pub type SeenCertificate = Arc<Mutex<Option<Vec<u8>>>>;

/// The server's client configurations: TLS 1.3 or 1.2, and TLS 1.2 alone
/// (for a server whose TLS 1.3 tickets run out, `sessions::Versions`);
/// certificates checked against `ca_file` or the system roots, or against
/// a pin.
pub fn client_config(opts: &FtpOptions) -> Result<(Configs, Verifier), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = if opts.insecure_skip_verify {
        Arc::new(Pinned {
            sha256: None,
            algorithms,
        })
    } else if let Some(pin) = opts.certificate_sha256 {
        Arc::new(Pinned {
            sha256: Some(pin),
            algorithms,
        })
    } else {
        let roots = Arc::new(roots(opts)?);
        WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("cannot use the trusted certificates: {e}"))?
    };
    let build = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS setup: {e}"))
            .map(|b| {
                Arc::new(
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier.clone())
                        .with_no_client_auth(),
                )
            })
    };
    let configs = Configs {
        any: build(&[&rustls::version::TLS13, &rustls::version::TLS12])?,
        tls12: build(&[&rustls::version::TLS12])?,
    };
    Ok((configs, verifier))
}

/// A server's client configurations, by the versions they offer.
pub struct Configs {
    /// TLS 1.3 or 1.2: what every control connection offers first.
    pub any: Arc<ClientConfig>,
    /// TLS 1.2 only.
    pub tls12: Arc<ClientConfig>,
}

/// The configuration for one control connection and its data connections:
/// the server's, with a session store of its own. With one store per
/// server, a data connection takes whichever session was stored last for
/// the host name, often a sibling control connection's, and ProFTPD's
/// mod_tls refuses that with 425 (it demands the session of the data
/// connection's own control connection). A few entries suffice: one
/// connection's TLS 1.2 session, or its TLS 1.3 tickets.
///
/// The store is returned too: it tells when the connection has no session
/// left for a data connection to resume ([`Sessions::ran_dry`]).
///
/// Its verifier also keeps the first certificate it is shown: the control
/// connection's, before any data connection's.
pub fn for_connection(
    server: &Arc<ClientConfig>,
    verifier: &Verifier,
) -> (Arc<ClientConfig>, SeenCertificate, Arc<Sessions>) {
    let mut config = ClientConfig::clone(server);
    let sessions = Arc::new(Sessions::default());
    config.resumption = Resumption::store(sessions.clone());
    let seen = SeenCertificate::default();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(Recording {
            inner: verifier.clone(),
            seen: seen.clone(),
        }));
    (Arc::new(config), seen, sessions)
}

/// The name the certificate must carry: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("\"{host}\" is not a valid TLS server name: {e}"))
}

fn roots(opts: &FtpOptions) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match &opts.ca_file {
        // Read and checked at load: at least one usable certificate.
        Some(ca) => {
            store.add_parsable_certificates(ca.certs.iter().cloned());
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no system root certificates found (install ca-certificates, or set ca_file)"
                        .into(),
                );
            }
        }
    }
    Ok(store)
}

/// SHA-256 of a DER certificate, lower-case hex: what `certificate_sha256` pins
/// and what `openssl x509 -noout -fingerprint -sha256` prints (without colons).
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Keeps the first leaf certificate it checks, then asks `inner`; the
/// certificate is kept even when refused (the refusal names its SHA-256).
#[derive(Debug)]
struct Recording {
    inner: Verifier,
    seen: SeenCertificate,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.seen.lock()
            && seen.is_none()
        {
            *seen = Some(end_entity.to_vec());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// Trusts exactly one certificate, named by its SHA-256, or with no pin
/// (`insecure_skip_verify = true`) any certificate; the transport then warns
/// at every connect. The pin replaces the chain and name checks (it is how a
/// self-signed server is trusted); handshake signatures are always verified.
#[derive(Debug)]
struct Pinned {
    sha256: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.sha256 else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if got.as_ref() == pin.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate's SHA-256 is {}, not the pinned certificate_sha256",
                fingerprint(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_and_pinned_configs_build() {
        let opts = FtpOptions {
            insecure_skip_verify: true,
            ..FtpOptions::default()
        };
        assert!(client_config(&opts).is_ok());
        let opts = FtpOptions {
            certificate_sha256: Some([0; 32]),
            ..FtpOptions::default()
        };
        assert!(client_config(&opts).is_ok());
        assert!(server_name("127.0.0.1").is_ok());
    }
}
