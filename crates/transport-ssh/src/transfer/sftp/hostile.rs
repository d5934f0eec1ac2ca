//! The client against a scripted SFTP server in this process: short reads,
//! oversized and malformed packets, silence and hang-ups, which OpenSSH's
//! server never produces on purpose.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tether_core::{ErrorKind, PutOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::client::{Client, Peer};
use super::get::download;
use super::put::{Ownership, upload};
use crate::options::SftpOptions;

/// How the scripted server misbehaves once `after` data requests were answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trick {
    Nothing,
    /// Closes the stream.
    HangUp,
    /// Stops answering but keeps the stream open.
    Silent,
    /// Announces a 64 MiB packet.
    Oversized,
    /// Answers a read with more bytes than asked.
    TooMuch,
    /// Answers a read with no bytes (and no end of file).
    Empty,
}

#[derive(Debug, Clone)]
struct Script {
    file: Vec<u8>,
    /// Most bytes one read is answered with.
    chunk: usize,
    after: usize,
    trick: Trick,
}

impl Script {
    fn file(file: Vec<u8>) -> Self {
        Script { file, chunk: usize::MAX, after: usize::MAX, trick: Trick::Nothing }
    }
}

const SSH_FXP_VERSION: u8 = 2;
const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_ATTRS: u8 = 105;

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn status(id: u32, code: u32) -> (u8, Vec<u8>) {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&code.to_be_bytes());
    string(&mut body, b"scripted");
    string(&mut body, b"en");
    (SSH_FXP_STATUS, body)
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u32(&mut self) -> u32 {
        let (head, rest) = self.0.split_at(4);
        self.0 = rest;
        u32::from_be_bytes(head.try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
    fn string(&mut self) -> Vec<u8> {
        let len = self.u32() as usize;
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        head.to_vec()
    }
}

/// Serves `script` on `stream`; counts the data requests in `served`.
async fn serve(mut stream: DuplexStream, script: Script, served: Arc<AtomicUsize>) {
    let mut written = Vec::new();
    loop {
        let Ok(len) = stream.read_u32().await else { return };
        let mut packet = vec![0; len as usize];
        if stream.read_exact(&mut packet).await.is_err() {
            return;
        }
        let kind = packet[0];
        let mut body = Cursor(&packet[1..]);
        if kind == 1 {
            send(&mut stream, SSH_FXP_VERSION, 3u32.to_be_bytes().to_vec()).await;
            continue;
        }
        let id = body.u32();
        let data_request = matches!(kind, 5 | 6);
        if data_request && served.fetch_add(1, Ordering::SeqCst) >= script.after {
            match script.trick {
                Trick::HangUp => return,
                Trick::Silent => {
                    // Read on, answer nothing, until the client hangs up.
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink).await;
                    return;
                }
                Trick::Oversized => {
                    let _ = stream.write_all(&(64u32 << 20).to_be_bytes()).await;
                    let _ = stream.write_all(&[SSH_FXP_DATA]).await;
                    let mut sink = Vec::new();
                    let _ = stream.read_to_end(&mut sink).await;
                    return;
                }
                Trick::TooMuch | Trick::Empty | Trick::Nothing => {}
            }
        }
        let (reply_kind, reply) = match kind {
            // OPEN, OPENDIR
            3 | 11 => {
                let mut reply = id.to_be_bytes().to_vec();
                string(&mut reply, b"h");
                (SSH_FXP_HANDLE, reply)
            }
            // FSTAT, STAT, LSTAT
            8 | 17 | 7 => {
                let mut reply = id.to_be_bytes().to_vec();
                let size = if kind == 8 && !written.is_empty() { written.len() } else { script.file.len() };
                reply.extend_from_slice(&(0x1u32 | 0x4).to_be_bytes());
                reply.extend_from_slice(&(size as u64).to_be_bytes());
                reply.extend_from_slice(&0o100_644u32.to_be_bytes());
                (SSH_FXP_ATTRS, reply)
            }
            // READ
            5 => {
                let _handle = body.string();
                let (offset, len) = (body.u64() as usize, body.u32() as usize);
                if offset >= script.file.len() {
                    status(id, 1)
                } else {
                    let end = script.file.len().min(offset + len.min(script.chunk));
                    let mut data = script.file[offset..end].to_vec();
                    let tricked = served.load(Ordering::SeqCst) > script.after;
                    if tricked && script.trick == Trick::TooMuch {
                        data.resize(len + 1, 0);
                    }
                    if tricked && script.trick == Trick::Empty {
                        data.clear();
                    }
                    let mut reply = id.to_be_bytes().to_vec();
                    string(&mut reply, &data);
                    (SSH_FXP_DATA, reply)
                }
            }
            // WRITE
            6 => {
                let _handle = body.string();
                let offset = body.u64() as usize;
                let data = body.string();
                if written.len() < offset + data.len() {
                    written.resize(offset + data.len(), 0);
                }
                written[offset..offset + data.len()].copy_from_slice(&data);
                status(id, 0)
            }
            // CLOSE, FSETSTAT, REMOVE, RENAME: fine.
            4 | 10 | 13 | 18 => status(id, 0),
            _ => status(id, 8),
        };
        send(&mut stream, reply_kind, reply).await;
    }
}

async fn send(stream: &mut DuplexStream, kind: u8, body: Vec<u8>) {
    let mut packet = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    packet.push(kind);
    packet.extend_from_slice(&body);
    let _ = stream.write_all(&packet).await;
}

/// A client talking to `script`, with a short time limit.
async fn scripted(script: Script, options: SftpOptions) -> (Arc<Client>, Arc<AtomicUsize>) {
    let (near, far) = tokio::io::duplex(1 << 20);
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve(far, script, served.clone()));
    let peer = Peer { target: "scripted".into(), session: None };
    let client = Client::over(near, peer, &options, Duration::from_millis(500), None).await.unwrap();
    (Arc::new(client), served)
}

fn small(request_size: u32, read_requests: u32) -> SftpOptions {
    SftpOptions { request_size, read_requests, write_requests: read_requests, ..Default::default() }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn fetch(client: &Client, size: u64) -> tether_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), download(client, "get", "/f", "h", size, &mut out))
        .await
        .expect("no hang")?;
    Ok(out)
}

#[tokio::test]
async fn short_reads_are_completed_in_order() {
    for (len, chunk) in [(10_000, 1000), (10_000, 999), (4096, 1), (5000, 4096), (0, 10)] {
        let file = pattern(len);
        let (client, _) = scripted(Script { chunk, ..Script::file(file.clone()) }, small(4096, 4)).await;
        assert_eq!(fetch(&client, len as u64).await.unwrap(), file, "len {len}, chunk {chunk}");
    }
}

#[tokio::test]
async fn reads_cover_the_size_and_one_probe() {
    // Three pieces (the last one 1808 bytes) and one read at 10,000 that
    // finds end of file, all in the first window: one round trip.
    let file = pattern(10_000);
    let (client, served) = scripted(Script::file(file.clone()), small(4096, 8)).await;
    assert_eq!(fetch(&client, 10_000).await.unwrap(), file);
    assert_eq!(served.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn unknown_sizes_are_read_to_the_end() {
    let file = pattern(50_000);
    let (client, served) = scripted(Script::file(file.clone()), small(4096, 8)).await;
    assert_eq!(fetch(&client, 0).await.unwrap(), file);
    // The window opened up from one request: not 8 wasted on an empty file.
    let (empty, served_empty) = client_for_empty().await;
    assert_eq!(fetch(&empty, 0).await.unwrap(), b"");
    assert_eq!(served_empty.load(Ordering::SeqCst), 1);
    assert!(served.load(Ordering::SeqCst) >= 13);
}

async fn client_for_empty() -> (Arc<Client>, Arc<AtomicUsize>) {
    scripted(Script::file(Vec::new()), small(4096, 8)).await
}

#[tokio::test]
async fn a_changed_size_is_corrupted() {
    let (client, _) = scripted(Script::file(pattern(10_000)), small(4096, 4)).await;
    assert_eq!(fetch(&client, 12_000).await.unwrap_err().kind(), ErrorKind::Corrupted, "shrank");
    assert_eq!(fetch(&client, 8_000).await.unwrap_err().kind(), ErrorKind::Corrupted, "grew");
}

#[tokio::test]
async fn broken_replies_are_protocol_errors() {
    for trick in [Trick::TooMuch, Trick::Empty] {
        let script = Script { after: 2, trick, ..Script::file(pattern(100_000)) };
        let (client, _) = scripted(script, small(4096, 4)).await;
        let err = fetch(&client, 100_000).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{trick:?}: {err}");
    }
}

#[tokio::test]
async fn an_oversized_packet_ends_the_session_without_allocating() {
    let script = Script { after: 3, trick: Trick::Oversized, ..Script::file(pattern(100_000)) };
    let (client, _) = scripted(script, small(4096, 4)).await;
    let err = fetch(&client, 100_000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("oversized"), "{err}");
    assert!(client.is_lost());
}

#[tokio::test]
async fn a_hang_up_fails_pending_requests_at_once() {
    let script = Script { after: 3, trick: Trick::HangUp, ..Script::file(pattern(100_000)) };
    let (client, _) = scripted(script, small(4096, 8)).await;
    let started = std::time::Instant::now();
    let err = fetch(&client, 100_000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "{err}");
    assert!(started.elapsed() < Duration::from_millis(400), "not the time limit: {:?}", started.elapsed());
    let err = client.call("stat", "/f", client.raw.stat("/f")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionLost, "later requests too: {err}");
}

#[tokio::test]
async fn silence_is_a_timeout() {
    let script = Script { after: 2, trick: Trick::Silent, ..Script::file(pattern(100_000)) };
    let (client, _) = scripted(script, small(4096, 4)).await;
    let err = fetch(&client, 100_000).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[tokio::test]
async fn puts_pipeline_and_stop_on_silence() {
    let data = pattern(100_000);
    let options = PutOptions::default();
    let (client, served) = scripted(Script::file(Vec::new()), small(4096, 4)).await;
    let mut source = &data[..];
    let sent = upload(client.clone(), &mut source, "/dir/file", &options, Ownership::default());
    assert_eq!(sent.await.unwrap(), 100_000);
    assert_eq!(served.load(Ordering::SeqCst), 100_000usize.div_ceil(4096));

    let script = Script { after: 5, trick: Trick::Silent, ..Script::file(Vec::new()) };
    let (client, _) = scripted(script, small(4096, 4)).await;
    let mut source = &data[..];
    let put = upload(client, &mut source, "/dir/file", &options, Ownership::default());
    let err = tokio::time::timeout(Duration::from_secs(10), put).await.expect("no hang").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}
