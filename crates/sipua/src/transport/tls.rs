//! TLS for `sips:`, TLS and WSS (RFC 3261 §26.2.1, RFC 5630, RFC 7118 §3): the rustls
//! configurations a user agent listens and connects with, read from PEM files, and the
//! "trust any certificate" verifier for tests.

use std::sync::Arc;

use super::invalid;

/// TLS configuration (rustls) for `sips:`, TLS and WSS: a server configuration with our
/// certificate for listeners, and a client configuration with the roots we trust for
/// connections we open. Either may be absent when that side is not used.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// For TLS and WSS listeners.
    pub server: Option<Arc<rustls::ServerConfig>>,
    /// For TLS and WSS connections we open; `None` trusts the platform's roots (the system's
    /// certificate store, or the file `SSL_CERT_FILE` names, through rustls-native-certs), so
    /// that servers are verified by default.
    pub client: Option<Arc<rustls::ClientConfig>>,
}

impl TlsOptions {
    /// Options from PEM text: our certificate chain and private key (for listeners; empty
    /// strings for none) and the certificates we trust as roots (for connections we open;
    /// empty for none). Errors say which part failed to load.
    pub fn from_pem(chain: &str, key: &str, roots: &str) -> Result<TlsOptions, crate::Error> {
        let mut o = TlsOptions::default();
        if !chain.is_empty() {
            let (certs, key) = pem_identity(chain, key)?;
            let server = rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| invalid(format!("server configuration: {e}")))?;
            o.server = Some(Arc::new(server));
        }
        if !roots.is_empty() {
            let client = rustls::ClientConfig::builder()
                .with_root_certificates(pem_roots(roots, "trusted roots")?)
                .with_no_client_auth();
            o.client = Some(Arc::new(client));
        }
        Ok(o)
    }
}

impl TlsOptions {
    /// Mutual TLS for listeners (RFC 5630 §3.2): our certificate `chain` and `key`, and every
    /// client must present a certificate that chains to one of `client_roots` (PEM) or the
    /// handshake fails. The client configuration is kept.
    pub fn require_client_certificates(
        mut self,
        chain: &str,
        key: &str,
        client_roots: &str,
    ) -> Result<TlsOptions, crate::Error> {
        let (certs, key) = pem_identity(chain, key)?;
        let roots = pem_roots(client_roots, "client roots")?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| invalid(format!("client roots: {e}")))?;
        let server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("server configuration: {e}")))?;
        self.server = Some(Arc::new(server));
        Ok(self)
    }

    /// Presents `chain` and `key` to servers that ask for a client certificate (mutual TLS),
    /// trusting `roots` (PEM), or the platform's roots when `roots` is empty.
    pub fn present_client_certificate(
        mut self,
        chain: &str,
        key: &str,
        roots: &str,
    ) -> Result<TlsOptions, crate::Error> {
        let (certs, key) = pem_identity(chain, key)?;
        let store = if roots.is_empty() {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store
        } else {
            let store = pem_roots(roots, "trusted roots")?;
            if store.is_empty() {
                return Err(invalid("trusted roots: no certificate".into()));
            }
            store
        };
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(store)
            .with_client_auth_cert(certs, key)
            .map_err(|e| invalid(format!("client certificate: {e}")))?;
        self.client = Some(Arc::new(client));
        Ok(self)
    }

    /// Accepts any server certificate, whatever it names and whoever signed it: for tests
    /// against a server whose certificate cannot be checked, never in production (anyone on
    /// the path can then read and change the signalling). The handshake's signatures are
    /// still checked against the certificate presented.
    pub fn insecure(mut self) -> TlsOptions {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        self.client = Some(Arc::new(client));
        self
    }
}

/// A certificate chain and its private key from PEM.
fn pem_identity(
    chain: &str,
    key: &str,
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    crate::Error,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("certificate chain: no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| invalid(format!("private key: {e}")))?;
    Ok((certs, key))
}

/// Trust anchors from PEM; `what` names them in errors.
fn pem_roots(pem: &str, what: &str) -> Result<rustls::RootCertStore, crate::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let c = c.map_err(|e| invalid(format!("{what}: {e}")))?;
        store.add(c).map_err(|e| invalid(format!("{what}: {e}")))?;
    }
    Ok(store)
}

/// The verifier of [`TlsOptions::insecure`]: any certificate, signatures still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("server", &self.server.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}
