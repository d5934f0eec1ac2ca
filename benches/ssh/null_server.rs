//! An SSH server that runs nothing: it accepts any key, and answers
//! `echo WORDS` with `WORDS\n` and exit status 0 without forking. Against it
//! the burst measures the client alone, where OpenSSH's sshd spends about
//! 2.4 ms of CPU per command (fork, initgroups, `bash -c`) and caps the rate
//! near 850/s on two cores whatever the client does.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Config, Handler, Msg, Server, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, Preferred};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A running null server: where it listens and its host key's
/// `known_hosts` line.
pub struct NullServer {
    pub addr: SocketAddr,
    pub known_hosts_line: String,
}

/// Starts the server on a thread of its own (one core, as sshd's session
/// process has), for the life of the process.
pub fn start(dir: &Path, cipher: &'static str) -> BenchResult<NullServer> {
    let key_path = dir.join("null_host_key");
    let generated = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key_path)
        .status()?;
    if !generated.success() {
        return Err("ssh-keygen failed for the null server's host key".into());
    }
    let key = russh::keys::load_secret_key(&key_path, None)?;
    let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let cipher = match cipher {
        "aes128-gcm@openssh.com" => russh::cipher::AES_128_GCM,
        other => return Err(format!("the null server does not offer {other}").into()),
    };
    let config = Arc::new(Config {
        keys: vec![key],
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        nodelay: true,
        preferred: Preferred { cipher: Cow::Owned(vec![cipher]), ..Preferred::default() },
        ..Config::default()
    });
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
            let _ = NullSsh.run_on_socket(config, &listener).await;
        });
    });
    let known_hosts_line = format!("[127.0.0.1]:{} {}", addr.port(), public.trim());
    Ok(NullServer { addr, known_hosts_line })
}

#[derive(Clone)]
struct NullSsh;

impl Server for NullSsh {
    type Handler = Self;

    fn new_client(&mut self, _: Option<SocketAddr>) -> Self {
        Self
    }
}

impl Handler for NullSsh {
    type Error = russh::Error;

    async fn auth_publickey(&mut self, _user: &str, _key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if let Some(words) = data.strip_prefix(b"echo ") {
            let mut line = words.to_vec();
            line.push(b'\n');
            session.data(channel, line)?;
        }
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}
