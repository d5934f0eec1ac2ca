//! Checks for [`Tunnel`](crate::Tunnel): bytes through a stream and a
//! forwarded port come back from an echo service unchanged, a half-close
//! travels in each direction, 16 streams run at once, and a port nobody
//! listens on is a prompt, typed error.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{GREETING, ServiceKind, Subject, open_stream, random_bytes, within};
use crate::error::ErrorKind;
use crate::process::join_all;
use crate::tunnel::forward_port;

/// Sends `data` while reading the same number of bytes back.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S, data: &[u8]) {
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
    let ((), back) = within("an echo", async { tokio::join!(send, receive) }).await;
    assert!(back == data, "echoed bytes differ");
}

/// 4 MiB sent through `open_stream` comes back unchanged.
pub async fn echo_through_stream(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let service = services.start(ServiceKind::Echo).await;
    let stream = open_stream(&*tunnel, &service.host, service.port).await;
    echo(stream, &random_bytes(4 << 20, 11)).await;
}

/// The same through a forwarded local port and a real `TcpStream`, twice.
pub async fn echo_through_forwarded_port(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let service = services.start(ServiceKind::Echo).await;
    let forward = within("forward a port", forward_port(tunnel, &service.host, service.port)).await.unwrap();
    assert!(forward.local_addr().ip().is_loopback());
    for round in 0..2 {
        let stream = tokio::net::TcpStream::connect(forward.local_addr()).await.unwrap();
        echo(stream, &random_bytes(1 << 20, 12 + round)).await;
    }
}

/// When the client half-closes, the service sees end of input while the
/// stream still carries its answer back, to the end.
pub async fn client_half_close(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let service = services.start(ServiceKind::Echo).await;
    let stream = open_stream(&*tunnel, &service.host, service.port).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let data = random_bytes(1 << 20, 13);
    let send = async {
        writer.write_all(&data).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let receive = async {
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.unwrap();
        back
    };
    let ((), back) =
        within("the echo after a half-close (EOF must reach the service)", async { tokio::join!(send, receive) }).await;
    assert_eq!(back.len(), data.len(), "the answer was cut short by the half-close");
    assert!(back == data);
}

/// When the service half-closes, the client reads to end of input and can
/// still send, and the service receives it.
pub async fn server_half_close(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let mut service = services.start(ServiceKind::Greeter).await;
    let stream = open_stream(&*tunnel, &service.host, service.port).await;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut greeting = Vec::new();
    within("the greeting and its EOF", reader.read_to_end(&mut greeting)).await.unwrap();
    assert_eq!(greeting, GREETING);
    let reply = random_bytes(256 << 10, 14);
    writer.write_all(&reply).await.unwrap_or_else(|e| panic!("send after the service half-closed: {e}"));
    writer.shutdown().await.unwrap();
    let received = within("what the service received", service.received.recv()).await;
    let received = received.expect("the service recorded the connection");
    assert_eq!(received.len(), reply.len(), "the service got a different amount after its half-close");
    assert!(received == reply);
}

/// 16 streams at once each carry their own bytes.
pub async fn concurrent_streams(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let service = services.start(ServiceKind::Echo).await;
    let streams = (0..16u64).map(|i| {
        let (tunnel, host) = (tunnel.clone(), service.host.clone());
        async move {
            let stream = open_stream(&*tunnel, &host, service.port).await;
            echo(stream, &random_bytes(256 << 10, 100 + i)).await;
        }
    });
    within("16 streams at once", join_all(streams)).await;
}

/// A port nobody listens on gives [`ErrorKind::ConnectFailed`] promptly.
pub async fn refused_port_is_an_error(s: &Subject) {
    let Some((tunnel, services)) = s.tunnel().await else { return };
    let (host, port) = services.closed_port().await;
    let result = tokio::time::timeout(Duration::from_secs(20), tunnel.open_stream(&host, port)).await;
    let err = result.expect("open_stream to a closed port must not hang").err().expect("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::ConnectFailed, "a refused connection: {err}");
}
