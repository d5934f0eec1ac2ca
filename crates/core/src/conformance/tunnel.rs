//! Checks for [`Tunnel`]: bytes go through a stream and a forwarded port and
//! come back from an echo service unchanged.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::random_bytes;
use crate::tunnel::{Tunnel, forward_port};

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let data = random_bytes(4 << 20, 11);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let send = async {
        for chunk in data.chunks(50_000) {
            writer.write_all(chunk).await.unwrap();
        }
        writer.flush().await.unwrap();
    };
    let receive = async {
        let mut back = vec![0u8; data.len()];
        reader.read_exact(&mut back).await.unwrap();
        back
    };
    let ((), back) = tokio::join!(send, receive);
    assert!(back == data, "echoed bytes differ");
}

/// 4 MiB sent through `open_stream` comes back unchanged.
pub async fn echo_through_stream(t: &dyn Tunnel, host: &str, port: u16) {
    let stream = t.open_stream(host, port).await.unwrap();
    echo(stream).await;
}

/// The same through a forwarded local port and a real `TcpStream`.
pub async fn echo_through_forwarded_port(t: Arc<dyn Tunnel>, host: &str, port: u16) {
    let forward = forward_port(t, host, port).await.unwrap();
    assert!(forward.local_addr().ip().is_loopback());
    for _ in 0..2 {
        let stream = tokio::net::TcpStream::connect(forward.local_addr()).await.unwrap();
        echo(stream).await;
    }
}

/// A port nobody listens on gives an error, not a hang.
pub async fn refused_port_is_an_error(t: &dyn Tunnel, host: &str) {
    let result = tokio::time::timeout(std::time::Duration::from_secs(20), t.open_stream(host, 1)).await;
    let err = result.expect("open_stream to a closed port must not hang").err().expect("port 1 is closed");
    assert!(
        matches!(err.kind(), crate::ErrorKind::ConnectFailed | crate::ErrorKind::Io),
        "unexpected kind for a refused connection: {err}"
    );
}
