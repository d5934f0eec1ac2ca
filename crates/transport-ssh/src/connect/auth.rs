//! Authentication in `preferred_auth` order: key files, the ssh-agent,
//! password and keyboard-interactive.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use tether_core::{Error, ErrorKind, HostConfig, Result};

use super::ClientHandler;
use crate::error::{ssh, timed};
use crate::known_hosts;
use crate::options::{AuthMethod, SshOptions};

/// Default private keys tried for `publickey` when `client_keys` is empty,
/// in OpenSSH's order.
const DEFAULT_KEYS: &[&str] = &["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"];

/// Rounds of keyboard-interactive questions answered before giving up (PAM
/// asks once; a server that keeps asking is not going to accept).
const MAX_KBD_ROUNDS: usize = 5;

/// Tries each method of `preferred_auth` in order; the error lists what was
/// tried and why each failed.
pub(super) async fn authenticate(
    handle: &mut client::Handle<ClientHandler>,
    host: &HostConfig,
    login: &str,
    options: &SshOptions,
    limit: Duration,
) -> Result<()> {
    let mut tried: Vec<String> = Vec::new();
    let password = host.password();
    for method in &options.preferred_auth {
        match method {
            AuthMethod::Publickey => {
                if publickey_files(handle, login, options, limit, &mut tried).await?
                    || publickey_agent(handle, login, options, limit, &mut tried).await?
                {
                    return Ok(());
                }
            }
            AuthMethod::Password => match password {
                None => tried.push("password (no password for this login)".into()),
                Some(password) => {
                    let result = timed("connect", "password authentication", limit, async {
                        handle.authenticate_password(login, password).await.map_err(|e| ssh("connect", e))
                    })
                    .await?;
                    if result.success() {
                        return Ok(());
                    }
                    tried.push("password (rejected)".into());
                }
            },
            AuthMethod::KeyboardInteractive => match password {
                None => tried.push("keyboard-interactive (no password to answer with)".into()),
                Some(password) => {
                    if keyboard_interactive(handle, login, password, limit).await? {
                        return Ok(());
                    }
                    tried.push("keyboard-interactive (rejected)".into());
                }
            },
        }
    }
    Err(Error::new(ErrorKind::AuthFailed, "connect").with_context(format!("as `{login}`: tried {}", tried.join(", "))))
}

/// `publickey` with the key files of `client_keys` (or the default ones).
async fn publickey_files(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    options: &SshOptions,
    limit: Duration,
    tried: &mut Vec<String>,
) -> Result<bool> {
    let keys = key_paths(options);
    if keys.is_empty() {
        tried.push("publickey (no key file)".into());
    }
    for path in keys {
        let shown = path.display().to_string();
        let key = match tokio::task::spawn_blocking(move || russh::keys::load_secret_key(&path, None)).await {
            Ok(Ok(key)) => Arc::new(key),
            Ok(Err(e)) => {
                // An encrypted or unreadable key is skipped, as ssh does in batch mode.
                tried.push(format!("publickey {shown} (unusable: {e})"));
                continue;
            }
            Err(_) => continue,
        };
        let hash = rsa_hash(handle, key.algorithm().is_rsa(), limit).await?;
        let result = timed("connect", "publickey authentication", limit, async {
            handle
                .authenticate_publickey(login, PrivateKeyWithHashAlg::new(key, hash))
                .await
                .map_err(|e| ssh("connect", e))
        })
        .await?;
        if result.success() {
            return Ok(true);
        }
        tried.push(format!("publickey {shown} (rejected)"));
    }
    Ok(false)
}

/// `publickey` with each identity of the ssh-agent (`agent_socket`, else
/// `SSH_AUTH_SOCK`); the agent signs, the key never leaves it.
async fn publickey_agent(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    options: &SshOptions,
    limit: Duration,
    tried: &mut Vec<String>,
) -> Result<bool> {
    use russh::keys::agent::{AgentIdentity, client::AgentClient};
    let Some(socket) = options.agent_socket() else {
        return Ok(false);
    };
    let shown = socket.display().to_string();
    let agent = tokio::time::timeout(limit, AgentClient::connect_uds(&socket)).await;
    let mut agent = match agent {
        Ok(Ok(agent)) => agent,
        Ok(Err(e)) => {
            tried.push(format!("agent {shown} (unreachable: {e})"));
            return Ok(false);
        }
        Err(_) => {
            tried.push(format!("agent {shown} (no answer within {limit:?})"));
            return Ok(false);
        }
    };
    let identities = match tokio::time::timeout(limit, agent.request_identities()).await {
        Ok(Ok(identities)) => identities,
        Ok(Err(e)) => {
            tried.push(format!("agent {shown} (listing keys failed: {e})"));
            return Ok(false);
        }
        Err(_) => {
            tried.push(format!("agent {shown} (no key list within {limit:?})"));
            return Ok(false);
        }
    };
    if identities.is_empty() {
        tried.push(format!("agent {shown} (holds no key)"));
    }
    for identity in identities {
        // Certificates would need the server's CA trust; plain keys are what agents hold here.
        let AgentIdentity::PublicKey { key, comment } = identity else {
            continue;
        };
        let hash = rsa_hash(handle, key.algorithm().is_rsa(), limit).await?;
        let attempt =
            tokio::time::timeout(limit, handle.authenticate_publickey_with(login, key, hash, &mut agent)).await;
        match attempt {
            Ok(Ok(result)) if result.success() => return Ok(true),
            Ok(Ok(_)) => tried.push(format!("agent key {comment} (rejected)")),
            Ok(Err(e)) => tried.push(format!("agent key {comment} (signing failed: {e})")),
            Err(_) => {
                return Err(Error::new(ErrorKind::Timeout, "connect")
                    .with_context(format!("agent publickey authentication took over {limit:?}")));
            }
        }
    }
    Ok(false)
}

/// The RSA signature hash the server prefers (`None` for other key types).
async fn rsa_hash(
    handle: &mut client::Handle<ClientHandler>,
    is_rsa: bool,
    limit: Duration,
) -> Result<Option<russh::keys::HashAlg>> {
    if !is_rsa {
        return Ok(None);
    }
    Ok(timed("connect", "RSA hash negotiation", limit, async {
        handle.best_supported_rsa_hash().await.map_err(|e| ssh("connect", e))
    })
    .await?
    .flatten())
}

/// Answers every prompt with the password (PAM's "Password:" prompt).
async fn keyboard_interactive(
    handle: &mut client::Handle<ClientHandler>,
    login: &str,
    password: &str,
    limit: Duration,
) -> Result<bool> {
    use client::KeyboardInteractiveAuthResponse as Reply;
    let mut reply = timed("connect", "keyboard-interactive authentication", limit, async {
        handle.authenticate_keyboard_interactive_start(login, None::<String>).await.map_err(|e| ssh("connect", e))
    })
    .await?;
    for _ in 0..MAX_KBD_ROUNDS {
        match reply {
            Reply::Success => return Ok(true),
            Reply::Failure { .. } => return Ok(false),
            Reply::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                reply = timed("connect", "keyboard-interactive authentication", limit, async {
                    handle.authenticate_keyboard_interactive_respond(answers).await.map_err(|e| ssh("connect", e))
                })
                .await?;
            }
        }
    }
    Ok(matches!(reply, Reply::Success))
}

/// `client_keys`, or the default key files that exist.
fn key_paths(options: &SshOptions) -> Vec<PathBuf> {
    if !options.client_keys.is_empty() {
        return options.client_keys.iter().map(|k| known_hosts::expand_home(k)).collect();
    }
    DEFAULT_KEYS.iter().map(|k| known_hosts::expand_home(k)).filter(|p| p.is_file()).collect()
}
