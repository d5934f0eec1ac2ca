//! SOCKS5 (RFC 1928) for `socks_forwards`: no authentication, CONNECT only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tether_core::ErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::connect::SshSession;

use super::forwards::relay;

/// The whole SOCKS handshake (greeting and request) must arrive within this.
const SOCKS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A SOCKS5 reply with an all-zero IPv4 bound address: clients use only the
/// code, and the bound address through an SSH channel is unknown anyway.
fn socks_reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

const SOCKS_OK: u8 = 0x00;
const SOCKS_GENERAL_FAILURE: u8 = 0x01;
const SOCKS_NOT_ALLOWED: u8 = 0x02;
const SOCKS_HOST_UNREACHABLE: u8 = 0x04;
const SOCKS_REFUSED: u8 = 0x05;
const SOCKS_TTL_EXPIRED: u8 = 0x06;
const SOCKS_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const SOCKS_ADDRESS_NOT_SUPPORTED: u8 = 0x08;

/// "No acceptable methods": the answer to a greeting we cannot serve.
const SOCKS_NO_METHOD: [u8; 2] = [5, 0xff];
/// SOCKS4's "request rejected", so a SOCKS4 client sees a clean refusal.
const SOCKS4_REJECTED: [u8; 8] = [0, 0x5b, 0, 0, 0, 0, 0, 0];

/// Why a SOCKS handshake ended early, and what to tell the client.
#[derive(Debug)]
struct SocksRefusal {
    reply: Vec<u8>,
    why: String,
}

impl SocksRefusal {
    fn new(reply: &[u8], why: impl Into<String>) -> Self {
        SocksRefusal { reply: reply.to_vec(), why: why.into() }
    }

    fn code(code: u8, why: impl Into<String>) -> Self {
        SocksRefusal::new(&socks_reply(code), why)
    }
}

pub(super) async fn forward_socks(mut inbound: TcpStream, session: Weak<SshSession>, name: Arc<str>) {
    let request = match tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, socks_handshake(&mut inbound)).await {
        Ok(Ok(request)) => request,
        Ok(Err(refusal)) => {
            tracing::debug!(forward = %name, why = %refusal.why, "SOCKS request refused");
            let _ = inbound.write_all(&refusal.reply).await;
            let _ = inbound.shutdown().await;
            return;
        }
        Err(_) => {
            tracing::debug!(forward = %name, "SOCKS handshake incomplete after {SOCKS_HANDSHAKE_TIMEOUT:?}; closed");
            return;
        }
    };
    let opened = match session.upgrade() {
        Some(session) => session.open_direct(&request.0, request.1).await,
        None => return,
    };
    match opened {
        Ok(outbound) => {
            if inbound.write_all(&socks_reply(SOCKS_OK)).await.is_ok() {
                relay(inbound, outbound, &name).await;
            }
        }
        Err(err) => {
            tracing::warn!(forward = %name, %err, "SOCKS CONNECT failed");
            let code = match err.kind() {
                ErrorKind::ConnectFailed => SOCKS_REFUSED,
                ErrorKind::PermissionDenied => SOCKS_NOT_ALLOWED,
                ErrorKind::Timeout => SOCKS_TTL_EXPIRED,
                ErrorKind::NotFound => SOCKS_HOST_UNREACHABLE,
                _ => SOCKS_GENERAL_FAILURE,
            };
            let _ = inbound.write_all(&socks_reply(code)).await;
            let _ = inbound.shutdown().await;
        }
    }
}

/// Reads a SOCKS5 greeting and CONNECT request, answering the greeting;
/// returns the destination. Every length is a single byte, so nothing read
/// here exceeds 255 bytes.
async fn socks_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
) -> std::result::Result<(String, u16), SocksRefusal> {
    let mut greeting = [0u8; 2];
    io.read_exact(&mut greeting).await.map_err(|_| SocksRefusal::new(&SOCKS_NO_METHOD, "truncated greeting"))?;
    match greeting[0] {
        5 => {}
        4 => return Err(SocksRefusal::new(&SOCKS4_REJECTED, "SOCKS4 is not served (only SOCKS5)")),
        other => return Err(SocksRefusal::new(&SOCKS_NO_METHOD, format!("not SOCKS5 (version byte {other})"))),
    }
    let mut methods = vec![0u8; usize::from(greeting[1])];
    io.read_exact(&mut methods).await.map_err(|_| SocksRefusal::new(&SOCKS_NO_METHOD, "truncated method list"))?;
    if !methods.contains(&0) {
        return Err(SocksRefusal::new(&SOCKS_NO_METHOD, "the client offers no unauthenticated method"));
    }
    io.write_all(&[5, 0]).await.map_err(|e| SocksRefusal::new(&[], format!("client gone: {e}")))?;

    let truncated = || SocksRefusal::code(SOCKS_GENERAL_FAILURE, "truncated request");
    let mut head = [0u8; 4];
    io.read_exact(&mut head).await.map_err(|_| truncated())?;
    let [version, command, _reserved, address_type] = head;
    if version != 5 {
        return Err(SocksRefusal::code(SOCKS_GENERAL_FAILURE, format!("request version byte {version}")));
    }
    if command != 1 {
        return Err(SocksRefusal::code(SOCKS_COMMAND_NOT_SUPPORTED, format!("command {command} (only CONNECT)")));
    }
    let host = match address_type {
        1 => {
            let mut octets = [0u8; 4];
            io.read_exact(&mut octets).await.map_err(|_| truncated())?;
            IpAddr::from(Ipv4Addr::from(octets)).to_string()
        }
        4 => {
            let mut octets = [0u8; 16];
            io.read_exact(&mut octets).await.map_err(|_| truncated())?;
            IpAddr::from(Ipv6Addr::from(octets)).to_string()
        }
        3 => {
            let length = io.read_u8().await.map_err(|_| truncated())?;
            let mut name = vec![0u8; usize::from(length)];
            io.read_exact(&mut name).await.map_err(|_| truncated())?;
            match String::from_utf8(name) {
                Ok(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) => name,
                _ => return Err(SocksRefusal::code(SOCKS_ADDRESS_NOT_SUPPORTED, "malformed domain name")),
            }
        }
        other => {
            return Err(SocksRefusal::code(SOCKS_ADDRESS_NOT_SUPPORTED, format!("address type {other}")));
        }
    };
    let port = io.read_u16().await.map_err(|_| truncated())?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn handshake(input: &[u8]) -> (std::result::Result<(String, u16), SocksRefusal>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let result = socks_handshake(&mut server).await;
        drop(server);
        let mut written = Vec::new();
        client.read_to_end(&mut written).await.unwrap();
        (result, written)
    }

    #[tokio::test]
    async fn socks_connect_requests_parse() {
        let (ok, written) = handshake(&[5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]).await;
        assert_eq!(ok.unwrap(), ("127.0.0.1".to_string(), 8080));
        assert_eq!(written, [5, 0]);
        let mut v6 = vec![5, 2, 2, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 22]);
        assert_eq!(handshake(&v6).await.0.unwrap(), ("::1".to_string(), 22));
        let mut name = vec![5, 1, 0, 5, 1, 0, 3, 9];
        name.extend_from_slice(b"localhost");
        name.extend_from_slice(&[1, 0]);
        assert_eq!(handshake(&name).await.0.unwrap(), ("localhost".to_string(), 256));
    }

    #[tokio::test]
    async fn bad_socks_input_is_refused_with_a_reply() {
        let cases: &[(&[u8], &[u8])] = &[
            (&[], &SOCKS_NO_METHOD),
            (&[5], &SOCKS_NO_METHOD),
            (&[6, 1, 0], &SOCKS_NO_METHOD),
            (&[4, 1, 0, 80, 127, 0, 0, 1, 0], &SOCKS4_REJECTED),
            (&[5, 1, 2], &SOCKS_NO_METHOD),
            (&[5, 3, 0], &SOCKS_NO_METHOD),
            (&[5, 1, 0, 5, 1], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80], &socks_reply(SOCKS_COMMAND_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 9], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 4, b'a', b' ', b'b', b'c', 0, 80], &socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED)),
            (&[5, 1, 0, 5, 1, 0, 3, 200, b'a'], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 5, 1, 0, 1, 127, 0], &socks_reply(SOCKS_GENERAL_FAILURE)),
            (&[5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80], &socks_reply(SOCKS_GENERAL_FAILURE)),
        ];
        for (input, reply) in cases {
            let (result, written) = handshake(input).await;
            let refusal = result.expect_err(&format!("{input:?} must be refused"));
            let mut expected = written.clone();
            // The greeting's answer precedes the refusal once the greeting was fine.
            if written.starts_with(&[5, 0]) {
                expected.drain(..2);
            }
            assert!(expected.is_empty(), "nothing is written besides the greeting answer: {written:?}");
            assert_eq!(refusal.reply, *reply, "{input:?}: {}", refusal.why);
        }
    }
}
