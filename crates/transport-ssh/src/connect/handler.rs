//! The russh event handler: the host key checked against `known_hosts` by
//! the policy, and connections arriving on `remote_forwards`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use tether_core::{Error, ErrorKind, Result};

use crate::known_hosts::{self, HostKey, Verdict};
use crate::options::{HostKeyPolicy, SshOptions};
use crate::tunnel::RemoteRoutes;

/// The russh event handler: checks the host key. Its verdict is also left in
/// `refusal` so the connect error can say why, since russh only reports
/// "unknown key".
pub(crate) struct ClientHandler {
    pub(super) host_name: String,
    pub(super) options: SshOptions,
    pub(super) refusal: Arc<Mutex<Option<Error>>>,
    /// Where connections arriving on our `remote_forwards` go.
    pub(super) remote_routes: Arc<RemoteRoutes>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = self.verify(server_key).await;
        match verdict {
            Ok(()) => Ok(true),
            Err(err) => {
                if let Ok(mut slot) = self.refusal.lock() {
                    *slot = Some(err);
                }
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        crate::tunnel::accept_forwarded(&self.remote_routes, channel, connected_address, connected_port, reply).await;
        Ok(())
    }

    async fn channel_open_failure(
        &mut self,
        _channel: russh::ChannelId,
        _reason: russh::ChannelOpenFailure,
        description: &str,
        _language: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // russh gives the opener only the reason code; the server's words
        // ("Connection refused") go into the stream's error.
        self.remote_routes.note_open_failure(description);
        Ok(())
    }
}

impl ClientHandler {
    async fn verify(&self, server_key: &PublicKeyOrCertificate) -> Result<()> {
        let refuse = |kind, why: String| Err(Error::new(kind, "connect").with_context(why));
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(_) => {
                return refuse(
                    ErrorKind::Unsupported,
                    "the server presented a host certificate; only plain host keys are checked".into(),
                );
            }
        };
        let blob = match key.to_bytes() {
            Ok(blob) => blob,
            Err(e) => return refuse(ErrorKind::Protocol, format!("cannot encode the server's host key: {e}")),
        };
        let key = HostKey { algorithm: key.algorithm().as_str().to_string(), blob };
        let policy = self.options.host_key_policy;
        if policy == HostKeyPolicy::Off {
            tracing::warn!(host = %self.host_name, key = %key.openssh(), "host key not checked (host_key_policy = off)");
            return Ok(());
        }
        let files: Vec<PathBuf> = self.options.known_hosts.iter().map(|f| known_hosts::expand_home(f)).collect();
        let (name, lookup_files, lookup_key) = (self.host_name.clone(), files.clone(), key.clone());
        let verdict = tokio::task::spawn_blocking(move || known_hosts::check(&lookup_files, &name, &lookup_key))
            .await
            .map_err(|_| Error::new(ErrorKind::Io, "connect").with_context("known_hosts lookup was cancelled"))?
            .map_err(|e| Error::io("connect", e).with_context("reading known_hosts"))?;
        let first = files.first().map(|f| f.display().to_string()).unwrap_or_default();
        match verdict {
            Verdict::Trusted => Ok(()),
            Verdict::Mismatch { file, line, revoked } => refuse(
                ErrorKind::HostKeyMismatch,
                format!(
                    "{} host key {} for {} (recorded at {}:{line}); refusing to connect",
                    if revoked { "revoked" } else { "changed" },
                    key.algorithm,
                    self.host_name,
                    file.display()
                ),
            ),
            Verdict::Unknown if policy == HostKeyPolicy::AcceptNew => {
                let Some(file) = files.first().cloned() else {
                    return refuse(
                        ErrorKind::InvalidConfig,
                        "accept-new needs a known_hosts file to record the key in".into(),
                    );
                };
                let (name, new_key) = (self.host_name.clone(), key.clone());
                tokio::task::spawn_blocking(move || known_hosts::append(&file, &name, &new_key))
                    .await
                    .map_err(|_| Error::new(ErrorKind::Io, "connect").with_context("known_hosts update was cancelled"))?
                    .map_err(|e| Error::io("connect", e).with_context(format!("adding the host key to {first}")))?;
                tracing::info!(host = %self.host_name, file = %first, "new host key recorded (accept-new)");
                Ok(())
            }
            Verdict::Unknown => refuse(
                ErrorKind::HostKeyMismatch,
                format!(
                    "unknown host key {} for {} (policy strict; add it to {first} or use host_key_policy=accept-new)",
                    key.openssh(),
                    self.host_name
                ),
            ),
        }
    }
}
