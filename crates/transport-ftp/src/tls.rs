//! Explicit FTPS with rustls: the server's certificate is checked against
//! the system's roots or `extra.ca_file`, unless checking was switched off
//! by name (`extra.verify_certificate = false`), which is logged.
//!
//! Each session gets its own copy of the host's configuration with a
//! session cache of its own, so its data connections resume its control
//! connection's TLS session, as vsftpd's `require_ssl_reuse` (on by
//! default) demands, and never another session's.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tether_core::{Error, ErrorKind, Result};

use crate::options::FtpExtra;

/// The client configuration for one host, built once (each session copies
/// it with a fresh resumption cache).
pub(crate) fn client_config(extra: &FtpExtra, host: &str) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::InvalidConfig, "FTPS").with_context(e.to_string()))?;
    let config = if extra.verify_certificate {
        builder.with_root_certificates(roots(extra.ca_file.as_deref())?).with_no_client_auth()
    } else {
        tracing::warn!(
            host,
            "ftp_options.extra.verify_certificate is false: the FTPS server's certificate is not checked, \
             so anyone in the path can read and change the session"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The trust anchors: `ca_file`'s certificates, or the system's.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| Error::io("FTPS", e).with_context(format!("ca_file {shown}")))?;
            let mut added = 0;
            for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
                let cert: CertificateDer<'static> = cert.map_err(|e| {
                    Error::new(ErrorKind::InvalidConfig, "FTPS").with_context(format!("ca_file {shown}: {e}"))
                })?;
                store.add(cert).map_err(|e| {
                    Error::new(ErrorKind::InvalidConfig, "FTPS").with_context(format!("ca_file {shown}: {e}"))
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(Error::new(ErrorKind::InvalidConfig, "FTPS")
                    .with_context(format!("ca_file {shown} holds no PEM certificate")));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(Error::new(ErrorKind::InvalidConfig, "FTPS").with_context(
                    "no system root certificates were found: install ca-certificates or set ftp_options.extra.ca_file",
                ));
            }
        }
    }
    Ok(store)
}

/// Accepts any certificate, still checking that the handshake's signatures
/// are made with the key it presents.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
