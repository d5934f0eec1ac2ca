//! The scp protocol, both directions, over any [`Wire`].
//!
//! The remote `scp -t` (sink) and `scp -f` (source) speak in lines and acks:
//!
//! - `C<mode> <size> <name>\n` announces a file, then `size` bytes follow and
//!   a one-byte status (`\0`);
//! - `D<mode> 0 <name>\n` enters a directory, `E\n` leaves it (`-r`);
//! - `T<mtime> <usec> <atime> <usec>\n` gives the times of the next `C`/`D` (`-p`);
//! - every line, and every file's trailing status, is answered with one byte:
//!   `\0` for yes, `\1<message>\n` for an error that lets the transfer go on
//!   (a warning, which Tether still treats as an error), `\2<message>\n` for
//!   a fatal one.
//!
//! What the peer sends is checked before anything is done with it: lines
//! are capped at [`MAX_LINE`] bytes before they are buffered, numbers are
//! parsed without overflow, modes are at most `0o7777`, and names are one
//! path component (not empty, `.`, `..`, no `/`, no NUL), so nothing can be
//! written outside the target directory. Anything else is a
//! [`Fault::Protocol`], after which nothing more is written.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use tether_core::{Error, ErrorKind, Result, TreeSummary};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest record or error line accepted from the peer. Names are
/// 255 bytes on common file systems; the rest of a record is a few dozen.
pub(crate) const MAX_LINE: usize = 4096;

/// Largest size a record may announce: `off_t` is signed 64-bit.
const MAX_SIZE: u64 = i64::MAX as u64;

/// One record line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `C`: a file of `size` bytes follows.
    File { mode: u32, size: u64, name: Vec<u8> },
    /// `D`: entering a directory.
    Dir { mode: u32, name: Vec<u8> },
    /// `E`: leaving the directory last entered.
    End,
    /// `T`: times of the next file or directory.
    Time { mtime: SystemTime, atime: SystemTime },
}

/// Why an exchange stopped.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The remote scp ended its output where a line or an ack was due: its
    /// exit status and stderr tell why.
    Eof,
    /// The remote scp reported an error (`\1` warning, `\2` fatal).
    Remote { fatal: bool, message: String },
    /// The peer broke the protocol.
    Protocol(String),
    /// The channel failed: a typed error (connection lost, timeout).
    Wire(Error),
    /// The local side failed (source, sink, local file system).
    Local(Error),
}

pub(crate) type Step<T> = std::result::Result<T, Fault>;

/// How a [`Wire::send`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// All bytes went out.
    Done,
    /// The peer spoke (or ended) before all bytes went out: an error ack is
    /// waiting to be read with [`Wire::recv`].
    Interrupted,
}

/// The byte pipes to and from the remote scp.
#[async_trait]
pub(crate) trait Wire: Send {
    /// Sends `data` to the remote scp's stdin; stops early when the peer
    /// speaks, since a sink that refuses a file says so while data is due.
    async fn send(&mut self, data: Bytes) -> Result<Sent>;
    /// The next bytes of the remote scp's stdout; `None` once it ended.
    async fn recv(&mut self) -> Result<Option<Bytes>>;
}

#[async_trait]
impl<W: Wire + ?Sized> Wire for &mut W {
    async fn send(&mut self, data: Bytes) -> Result<Sent> {
        (**self).send(data).await
    }
    async fn recv(&mut self) -> Result<Option<Bytes>> {
        (**self).recv().await
    }
}

/// Checks that `name` is one path component that can travel in a record.
pub(crate) fn check_name(name: &[u8]) -> std::result::Result<(), String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!("file name `{shown}` is not allowed"));
    }
    if name.contains(&b'/') {
        return Err(format!("file name `{shown}` contains `/`"));
    }
    if name.contains(&0) {
        return Err(format!("file name `{}` contains NUL", shown.escape_debug()));
    }
    if name.contains(&b'\n') {
        return Err(format!("file name `{}` contains a newline", shown.escape_debug()));
    }
    Ok(())
}

/// A run of decimal digits as a number, without overflow.
fn decimal(what: &str, text: &[u8]) -> std::result::Result<u64, String> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} `{}` is not a decimal number", String::from_utf8_lossy(text)));
    }
    text.iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        .ok_or_else(|| format!("{what} `{}` is out of range", String::from_utf8_lossy(text)))
}

/// Permission bits: octal digits, at most `0o7777`.
fn octal_mode(text: &[u8]) -> std::result::Result<u32, String> {
    let bad = || format!("mode `{}` is not an octal permission mode", String::from_utf8_lossy(text));
    if text.is_empty() || text.len() > 6 || !text.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return Err(bad());
    }
    let mode = text.iter().fold(0u32, |m, &d| (m << 3) | u32::from(d - b'0'));
    if mode > 0o7777 { Err(bad()) } else { Ok(mode) }
}

/// `<seconds> <microseconds>` of a `T` record.
fn stamp(what: &str, secs: &[u8], usec: &[u8]) -> std::result::Result<SystemTime, String> {
    let secs = decimal(&format!("{what} seconds"), secs)?;
    let usec = decimal(&format!("{what} microseconds"), usec)?;
    if secs > MAX_SIZE || usec > 999_999 {
        return Err(format!("{what} {secs}.{usec:06} is out of range"));
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(secs, (usec as u32) * 1000))
        .ok_or_else(|| format!("{what} {secs} is out of range"))
}

/// Parses one record line (without its `\n`).
pub(crate) fn parse_record(line: &[u8]) -> std::result::Result<Record, String> {
    let Some((&kind, rest)) = line.split_first() else {
        return Err("empty record".into());
    };
    match kind {
        b'C' | b'D' => {
            let mut fields = rest.splitn(3, |&b| b == b' ');
            let (Some(mode), Some(size), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!("`{}` record has too few fields", kind as char));
            };
            let mode = octal_mode(mode)?;
            let size = decimal("size", size)?;
            if size > MAX_SIZE {
                return Err(format!("size {size} is out of range"));
            }
            check_name(name)?;
            Ok(if kind == b'C' {
                Record::File { mode, size, name: name.to_vec() }
            } else {
                Record::Dir { mode, name: name.to_vec() }
            })
        }
        b'E' if rest.is_empty() => Ok(Record::End),
        b'T' => {
            let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
            let [msec, musec, asec, ausec] = fields[..] else {
                return Err("`T` record needs four numbers".into());
            };
            Ok(Record::Time { mtime: stamp("mtime", msec, musec)?, atime: stamp("atime", asec, ausec)? })
        }
        _ => {
            Err(format!("unexpected record `{}`", String::from_utf8_lossy(&line[..line.len().min(64)]).escape_debug()))
        }
    }
}

/// `C<mode> <size> <name>\n`.
pub(crate) fn file_record(mode: u32, size: u64, name: &[u8]) -> Bytes {
    let mut line = format!("C{:04o} {size} ", mode & 0o7777).into_bytes();
    line.extend_from_slice(name);
    line.push(b'\n');
    line.into()
}

/// `D<mode> 0 <name>\n`.
pub(crate) fn dir_record(mode: u32, name: &[u8]) -> Bytes {
    let mut line = format!("D{:04o} 0 ", mode & 0o7777).into_bytes();
    line.extend_from_slice(name);
    line.push(b'\n');
    line.into()
}

/// `T<mtime> 0 <atime> 0\n`, whole seconds (times before 1970 become 0, as
/// OpenSSH sends them).
pub(crate) fn time_record(mtime: SystemTime, atime: SystemTime) -> Bytes {
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Bytes::from(format!("T{} 0 {} 0\n", secs(mtime), secs(atime)))
}

/// The scp conversation over a [`Wire`]: buffered reads of lines, acks and
/// file bytes.
pub(crate) struct Peer<W> {
    wire: W,
    pending: Bytes,
}

impl<W: Wire> Peer<W> {
    pub(crate) fn new(wire: W) -> Self {
        Peer { wire, pending: Bytes::new() }
    }

    /// Refills `pending`; false at the end of the peer's output.
    async fn fill(&mut self) -> Step<bool> {
        while self.pending.is_empty() {
            match self.wire.recv().await.map_err(Fault::Wire)? {
                Some(bytes) => self.pending = bytes,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The next byte; `None` at the end of the peer's output.
    async fn byte(&mut self) -> Step<Option<u8>> {
        if !self.fill().await? {
            return Ok(None);
        }
        let byte = self.pending[0];
        self.pending.advance(1);
        Ok(Some(byte))
    }

    /// The rest of a line, without its `\n`, at most [`MAX_LINE`] bytes: a
    /// longer one is refused before it is buffered.
    async fn line(&mut self, what: &str) -> Step<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            if !self.fill().await? {
                return Err(Fault::Protocol(format!("the {what} ends without a newline")));
            }
            let (take, done) = match self.pending.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (self.pending.len(), false),
            };
            if line.len() + take > MAX_LINE {
                return Err(Fault::Protocol(format!("the {what} is longer than {MAX_LINE} bytes")));
            }
            line.extend_from_slice(&self.pending[..take]);
            self.pending.advance(take + usize::from(done));
            if done {
                return Ok(line);
            }
        }
    }

    /// Reads an error message after a `\1` or `\2`.
    async fn remote_error(&mut self, code: u8) -> Fault {
        match self.line("error message").await {
            Ok(message) => {
                Fault::Remote { fatal: code == 2, message: String::from_utf8_lossy(&message).trim().to_string() }
            }
            Err(fault) => fault,
        }
    }

    /// Reads one ack: `\0` is yes, `\1` and `\2` carry the peer's error.
    pub(crate) async fn ack(&mut self) -> Step<()> {
        match self.byte().await? {
            Some(0) => Ok(()),
            Some(code @ (1 | 2)) => Err(self.remote_error(code).await),
            Some(other) => Err(Fault::Protocol(format!("expected an ack, got byte {other:#04x}"))),
            None => Err(Fault::Eof),
        }
    }

    /// The next record; `None` when the peer's output ends cleanly between
    /// records. An error line from the peer is its [`Fault::Remote`].
    pub(crate) async fn record(&mut self) -> Step<Option<Record>> {
        if !self.fill().await? {
            return Ok(None);
        }
        if let code @ (1 | 2) = self.pending[0] {
            self.pending.advance(1);
            return Err(self.remote_error(code).await);
        }
        let line = self.line("record").await?;
        parse_record(&line).map(Some).map_err(Fault::Protocol)
    }

    /// Sends bytes; the peer speaking meanwhile means it refused them.
    pub(crate) async fn send(&mut self, data: Bytes) -> Step<()> {
        match self.wire.send(data).await.map_err(Fault::Wire)? {
            Sent::Done => Ok(()),
            Sent::Interrupted => match self.ack().await {
                Err(fault) => Err(fault),
                Ok(()) => Err(Fault::Protocol("unexpected ack while data was due".into())),
            },
        }
    }

    /// Says yes.
    pub(crate) async fn yes(&mut self) -> Step<()> {
        self.send(Bytes::from_static(b"\0")).await
    }

    /// Copies the next `size` bytes of the peer's output into `sink`.
    async fn copy_to(&mut self, size: u64, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Step<()> {
        let mut left = size;
        while left > 0 {
            if !self.fill().await? {
                return Err(Fault::Protocol(format!("the stream ended {left} bytes before the end of the file")));
            }
            let take = self.pending.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let chunk = self.pending.split_to(take);
            sink.write_all(&chunk).await.map_err(|e| Fault::Local(Error::io("get", e).with_context("writing")))?;
            left -= take as u64;
        }
        Ok(())
    }

    /// Fails unless the peer's output has ended: a source that was asked
    /// for one file has nothing more to say.
    pub(crate) async fn expect_end(&mut self) -> Step<()> {
        if self.fill().await? {
            let start = &self.pending[..self.pending.len().min(32)];
            return Err(Fault::Protocol(format!(
                "more records than asked for (`{}`…)",
                String::from_utf8_lossy(start).escape_debug()
            )));
        }
        Ok(())
    }
}

/// Reads up to `len` bytes of `source` into a fresh buffer, fewer only at
/// its end. The buffer is not zeroed first, and it becomes the channel
/// message as it is.
async fn read_block(source: &mut (dyn AsyncRead + Send + Unpin), len: usize) -> std::io::Result<Bytes> {
    let mut block = BytesMut::with_capacity(len);
    while block.len() < len {
        let mut limited = (&mut *source).take((len - block.len()) as u64);
        if limited.read_buf(&mut block).await? == 0 {
            break;
        }
    }
    Ok(block.freeze())
}

/// The sending side of one file, after the sink's greeting: `T` (when
/// `mtime` is given), `C`, exactly `size` bytes of `source` in `block`-sized
/// messages, the status byte, each acked.
///
/// A source that gives fewer or more than `size` bytes fails with
/// [`ErrorKind::Corrupted`] before the status byte, so the sink never
/// accepts the file.
pub(crate) async fn send_file<W: Wire>(
    peer: &mut Peer<W>,
    source: &mut (dyn AsyncRead + Send + Unpin),
    name: &[u8],
    mode: u32,
    size: u64,
    mtime: Option<SystemTime>,
    block: usize,
) -> Step<u64> {
    if let Some(mtime) = mtime {
        peer.send(time_record(mtime, mtime)).await?;
        peer.ack().await?;
    }
    peer.send(file_record(mode, size, name)).await?;
    peer.ack().await?;
    let mut sent = 0u64;
    let reading = |e: std::io::Error| Fault::Local(Error::io("put", e).with_context("reading the source"));
    while sent < size {
        let want = usize::try_from(size - sent).unwrap_or(usize::MAX).min(block);
        let data = read_block(source, want).await.map_err(reading)?;
        if data.is_empty() {
            return Err(Fault::Local(
                Error::new(ErrorKind::Corrupted, "put")
                    .with_context(format!("expected {size} bytes, the source ended after {sent}")),
            ));
        }
        sent += data.len() as u64;
        peer.send(data).await?;
    }
    if !read_block(source, 1).await.map_err(reading)?.is_empty() {
        return Err(Fault::Local(
            Error::new(ErrorKind::Corrupted, "put").with_context(format!("the source has more than {size} bytes")),
        ));
    }
    peer.yes().await?;
    peer.ack().await?;
    Ok(sent)
}

/// The receiving side of a single-file `scp -f`: the file must be one `C`
/// record (after an optional `T`) of exactly `expected` bytes, and nothing
/// may follow it. Returns the bytes written to `sink`.
pub(crate) async fn receive_file<W: Wire>(
    peer: &mut Peer<W>,
    expected: u64,
    sink: &mut (dyn AsyncWrite + Send + Unpin),
) -> Step<u64> {
    peer.yes().await?;
    let mut timed = false;
    let size = loop {
        match peer.record().await? {
            None => return Err(Fault::Eof),
            Some(Record::Time { .. }) if !timed => {
                timed = true;
                peer.yes().await?;
            }
            Some(Record::File { size, .. }) if size == expected => break size,
            Some(Record::File { size, .. }) => {
                return Err(Fault::Protocol(format!("the server announced {size} bytes, stat said {expected}")));
            }
            Some(Record::Dir { .. }) => return Err(Fault::Protocol("a directory record for a file".into())),
            Some(other) => return Err(Fault::Protocol(format!("unexpected record {other:?}"))),
        }
    };
    peer.yes().await?;
    peer.copy_to(size, sink).await?;
    peer.ack().await?;
    peer.yes().await?;
    peer.expect_end().await?;
    Ok(size)
}

/// A directory entered by a `D` record, with what to apply when it is left.
struct Entered {
    path: PathBuf,
    mode: u32,
    times: Option<(SystemTime, SystemTime)>,
}

fn local(operation: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Fault {
    let shown = path.display().to_string();
    let operation = operation.to_string();
    move |e| Fault::Local(Error::io(operation, e).with_context(shown))
}

fn name_of(name: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name)
}

async fn set_times(path: &Path, (mtime, atime): (SystemTime, SystemTime)) -> Step<()> {
    let file = std::fs::File::options().read(true).open(path).map_err(local("get", path))?;
    file.set_times(std::fs::FileTimes::new().set_modified(mtime).set_accessed(atime)).map_err(local("get", path))
}

async fn set_mode(path: &Path, mode: u32) -> Step<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await.map_err(local("get", path))
}

/// The receiving side of `scp -f` (with `-r` when `recurse`) into the
/// existing local directory `target`.
///
/// Files are written to a temporary sibling and renamed into place; a
/// directory that exists already must be a real directory (not a link),
/// so every write stays under `target`. `D` records are refused unless
/// `recurse`; with `preserve`, `T` times and record modes are applied,
/// otherwise modes are the record's under the local umask.
pub(crate) async fn receive_tree<W: Wire>(
    peer: &mut Peer<W>,
    target: &Path,
    recurse: bool,
    preserve: bool,
) -> Step<TreeSummary> {
    let mut summary = TreeSummary::default();
    let mut entered: Vec<Entered> = Vec::new();
    let mut times = None;
    peer.yes().await?;
    loop {
        let record = match peer.record().await? {
            Some(record) => record,
            None if entered.is_empty() => return Ok(summary),
            None => return Err(Fault::Protocol("the stream ended inside a directory".into())),
        };
        let here = entered.last().map_or(target, |d| d.path.as_path()).to_path_buf();
        match record {
            Record::Time { mtime, atime } => {
                if times.replace((mtime, atime)).is_some() {
                    return Err(Fault::Protocol("two `T` records in a row".into()));
                }
            }
            Record::Dir { .. } if !recurse => {
                return Err(Fault::Protocol("a directory record, but recursion is off".into()));
            }
            Record::Dir { mode, name } => {
                let path = here.join(name_of(&name));
                match tokio::fs::symlink_metadata(&path).await {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(Fault::Local(
                            Error::new(ErrorKind::AlreadyExists, "get")
                                .with_context(format!("{} exists and is not a directory", path.display())),
                        ));
                    }
                    Err(_) => tokio::fs::create_dir(&path).await.map_err(local("get", &path))?,
                }
                summary.directories += 1;
                entered.push(Entered { path, mode, times: times.take() });
            }
            Record::End => {
                let Some(dir) = entered.pop() else {
                    return Err(Fault::Protocol("an `E` record outside any directory".into()));
                };
                if preserve {
                    set_mode(&dir.path, dir.mode).await?;
                    if let Some(t) = dir.times {
                        set_times(&dir.path, t).await?;
                    }
                }
            }
            Record::File { mode, size, name } => {
                let path = here.join(name_of(&name));
                let temp = tether_core::raw::temporary_sibling(&path);
                let times = times.take();
                let result =
                    receive_one(peer, &temp, &path, mode, size, preserve.then_some(times).flatten(), preserve).await;
                if result.is_err() {
                    let _ = tokio::fs::remove_file(&temp).await;
                }
                result?;
                summary.files += 1;
                summary.bytes += size;
                continue;
            }
        }
        peer.yes().await?;
    }
}

/// One file of [`receive_tree`]: into `temp`, then renamed to `path`.
async fn receive_one<W: Wire>(
    peer: &mut Peer<W>,
    temp: &Path,
    path: &Path,
    mode: u32,
    size: u64,
    times: Option<(SystemTime, SystemTime)>,
    preserve: bool,
) -> Step<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(temp)
        .map_err(local("get", temp))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    peer.yes().await?;
    peer.copy_to(size, &mut file).await?;
    peer.ack().await?;
    file.flush().await.map_err(local("get", temp))?;
    drop(file);
    if preserve {
        set_mode(temp, mode).await?;
    }
    if let Some(t) = times {
        set_times(temp, t).await?;
    }
    tokio::fs::rename(temp, path).await.map_err(local("get", path))?;
    peer.yes().await
}

/// One entry still to send by [`send_tree`].
enum Pending {
    Entry(PathBuf),
    Leave,
}

/// The sending side of `scp -r -t`, after the sink's greeting: `root` (a
/// directory or a regular file, links followed) and everything under it.
/// Other kinds of files, and names a record cannot carry, fail before
/// anything about them is sent.
pub(crate) async fn send_tree<W: Wire>(
    peer: &mut Peer<W>,
    root: &Path,
    preserve: bool,
    block: usize,
) -> Step<TreeSummary> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut summary = TreeSummary::default();
    let mut stack = VecDeque::from([Pending::Entry(root.to_path_buf())]);
    while let Some(next) = stack.pop_front() {
        let path = match next {
            Pending::Leave => {
                peer.send(Bytes::from_static(b"E\n")).await?;
                peer.ack().await?;
                continue;
            }
            Pending::Entry(path) => path,
        };
        let invalid = |why: String| {
            Fault::Local(Error::new(ErrorKind::InvalidInput, "put").with_context(format!("{}: {why}", path.display())))
        };
        let name = path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        check_name(&name).map_err(&invalid)?;
        let meta = tokio::fs::metadata(&path).await.map_err(local("put", &path))?;
        let mode = meta.permissions().mode() & 0o7777;
        let mtime = preserve.then(|| meta.modified().ok()).flatten();
        if meta.is_dir() {
            let mut names = Vec::new();
            let mut dir = tokio::fs::read_dir(&path).await.map_err(local("put", &path))?;
            while let Some(entry) = dir.next_entry().await.map_err(local("put", &path))? {
                names.push(entry.file_name());
            }
            names.sort();
            if let Some(mtime) = mtime {
                let atime = meta.accessed().unwrap_or(mtime);
                peer.send(time_record(mtime, atime)).await?;
                peer.ack().await?;
            }
            peer.send(dir_record(mode, &name)).await?;
            peer.ack().await?;
            summary.directories += 1;
            // Depth first, in name order, with the `E` after the contents.
            stack.push_front(Pending::Leave);
            for child in names.into_iter().rev() {
                stack.push_front(Pending::Entry(path.join(child)));
            }
        } else if meta.is_file() {
            let mut file = tokio::fs::File::open(&path).await.map_err(local("put", &path))?;
            let sent = send_file(peer, &mut file, &name, mode, meta.len(), mtime, block).await?;
            summary.files += 1;
            summary.bytes += sent;
        } else {
            return Err(invalid("not a regular file or directory".into()));
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A remote scp that says what the test scripted and records what it
    /// was sent.
    pub(crate) struct Scripted {
        pub(crate) input: VecDeque<Bytes>,
        pub(crate) output: Vec<u8>,
    }

    impl Scripted {
        pub(crate) fn new(chunks: &[&[u8]]) -> Peer<Self> {
            let input = chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect();
            Peer::new(Scripted { input, output: Vec::new() })
        }
    }

    #[async_trait]
    impl Wire for Scripted {
        async fn send(&mut self, data: Bytes) -> Result<Sent> {
            self.output.extend_from_slice(&data);
            Ok(Sent::Done)
        }
        async fn recv(&mut self) -> Result<Option<Bytes>> {
            Ok(self.input.pop_front())
        }
    }

    fn protocol_error<T: std::fmt::Debug>(result: Step<T>) -> String {
        match result {
            Err(Fault::Protocol(why)) => why,
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn records_parse() {
        assert_eq!(
            parse_record(b"C0644 12 name with spaces").unwrap(),
            Record::File { mode: 0o644, size: 12, name: b"name with spaces".to_vec() }
        );
        assert_eq!(parse_record(b"D4755 0 d").unwrap(), Record::Dir { mode: 0o4755, name: b"d".to_vec() });
        assert_eq!(parse_record(b"E").unwrap(), Record::End);
        let Record::Time { mtime, atime } = parse_record(b"T1700000000 5 1600000000 0").unwrap() else {
            panic!("not a time record");
        };
        assert_eq!(mtime, SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5000));
        assert_eq!(atime, SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        assert_eq!(parse_record(b"C0644 0 \xff").unwrap(), Record::File { mode: 0o644, size: 0, name: vec![0xff] });
    }

    #[test]
    fn hostile_records_are_refused() {
        for line in [
            &b"C0644 1 ../x"[..],
            b"C0644 1 ..",
            b"C0644 1 .",
            b"C0644 1 a/b",
            b"C0644 1 /etc/passwd",
            b"C0644 1 ",
            b"C0644 1 a\0b",
            b"C0644 1",
            b"C0644",
            b"C0644 -1 x",
            b"C0644 +1 x",
            b"C0644 0x10 x",
            b"C0644 18446744073709551616 x",
            b"C0644 9223372036854775808 x",
            b"C0844 1 x",
            b"C17777 1 x",
            b"C 1 x",
            b"Cabc 1 x",
            b"D0755 0 ..",
            b"D0755 0 a/b",
            b"E0",
            b"T1 0 1",
            b"T1 1000000 1 0",
            b"T-1 0 1 0",
            b"T99999999999999999999 0 1 0",
            b"X",
            b"",
        ] {
            assert!(parse_record(line).is_err(), "accepted {:?}", String::from_utf8_lossy(line));
        }
        let huge = parse_record(b"C0644 9223372036854775807 x").unwrap();
        assert_eq!(huge, Record::File { mode: 0o644, size: i64::MAX as u64, name: b"x".to_vec() });
    }

    #[tokio::test]
    async fn a_file_is_received_exactly() {
        let mut peer = Scripted::new(&[b"C0644 5 f\nhe", b"llo", b"\0"]);
        let mut sink = Vec::new();
        assert_eq!(receive_file(&mut peer, 5, &mut sink).await.unwrap(), 5);
        assert_eq!(sink, b"hello");
        assert_eq!(peer.wire.output, b"\0\0\0", "greeting, record ack, data ack");
    }

    #[tokio::test]
    async fn hostile_sources_write_nothing() {
        let long = [b"C0644 1 ".as_slice(), &vec![b'a'; MAX_LINE], b"\n"].concat();
        let cases: [(&[u8], u64); 12] = [
            (b"C0644 5 ../x\nhello\0", 5),
            (b"C0644 5 a/b\nhello\0", 5),
            (b"C0644 5 .\nhello\0", 5),
            (b"C0644 5 \nhello\0", 5),
            (b"C0644 5 a\0b\nhello\0", 5),
            (b"C0644 9223372036854775807 x\nhello\0", 5),
            (b"C0644 99999999999999999999999 x\nhello\0", 5),
            (b"C0999 5 x\nhello\0", 5),
            (b"C0644 6 x\nhello!\0", 5),
            (b"D0755 0 d\nC0644 5 x\nhello\0E\n", 5),
            (&long, 1),
            (b"C0644 5 x", 5),
        ];
        for (stream, expected) in cases {
            let mut peer = Scripted::new(&[stream]);
            let mut sink = Vec::new();
            let why = protocol_error(receive_file(&mut peer, expected, &mut sink).await);
            assert!(sink.is_empty(), "wrote {} bytes for {:?} ({why})", sink.len(), String::from_utf8_lossy(stream));
        }
    }

    #[tokio::test]
    async fn truncated_and_extra_streams_fail() {
        let mut peer = Scripted::new(&[b"C0644 5 x\nhel"]);
        let why = protocol_error(receive_file(&mut peer, 5, &mut Vec::new()).await);
        assert!(why.contains("2 bytes before the end"), "{why}");
        let mut peer = Scripted::new(&[b"C0644 1 x\nA\0C0644 1 y\nB\0"]);
        let mut sink = Vec::new();
        let why = protocol_error(receive_file(&mut peer, 1, &mut sink).await);
        assert!(why.contains("more records than asked for"), "{why}");
        assert_eq!(sink, b"A", "the second file is not written");
        let mut peer = Scripted::new(&[]);
        assert!(matches!(receive_file(&mut peer, 1, &mut Vec::new()).await, Err(Fault::Eof)));
    }

    #[tokio::test]
    async fn error_acks_carry_the_message() {
        let mut peer = Scripted::new(&[b"\x01scp: /x: No such file or directory\n"]);
        match receive_file(&mut peer, 1, &mut Vec::new()).await {
            Err(Fault::Remote { fatal: false, message }) => assert_eq!(message, "scp: /x: No such file or directory"),
            other => panic!("{other:?}"),
        }
        let mut peer = Scripted::new(&[b"C0644 1 x\nA", b"\x02scp: read error\n"]);
        match receive_file(&mut peer, 1, &mut Vec::new()).await {
            Err(Fault::Remote { fatal: true, message }) => assert_eq!(message, "scp: read error"),
            other => panic!("{other:?}"),
        }
        let mut peer = Scripted::new(&[b"\x01no newline"]);
        protocol_error(receive_file(&mut peer, 1, &mut Vec::new()).await);
        let mut peer = Scripted::new(&[b"\x00", b"\x07"]);
        protocol_error(send_file(&mut peer, &mut &b"x"[..], b"x", 0o600, 1, None, 1024).await);
    }

    #[tokio::test]
    async fn a_file_is_sent_with_acks() {
        let mut peer = Scripted::new(&[b"\0", b"\0", b"\0"]);
        let data = vec![7u8; 2500];
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        let sent = send_file(&mut peer, &mut data.as_slice(), b"n", 0o600, 2500, Some(mtime), 1024).await.unwrap();
        assert_eq!(sent, 2500);
        let expected = [b"T1234567890 0 1234567890 0\nC0600 2500 n\n".as_slice(), &data, b"\0"].concat();
        assert_eq!(peer.wire.output, expected);

        let mut peer = Scripted::new(&[b"\0", b"\x01scp: /t: Permission denied\n"]);
        match send_file(&mut peer, &mut &b"x"[..], b"n", 0o600, 1, None, 1024).await {
            Err(Fault::Remote { fatal: false, message }) => assert!(message.contains("Permission denied")),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_source_of_the_wrong_size_is_refused() {
        for (data, size) in [(&b"1234"[..], 5), (b"123456", 5)] {
            let mut peer = Scripted::new(&[b"\0", b"\0"]);
            match send_file(&mut peer, &mut &data[..], b"n", 0o600, size, None, 1024).await {
                Err(Fault::Local(err)) => assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}"),
                other => panic!("{other:?}"),
            }
            assert!(!peer.wire.output.ends_with(b"\0"), "the status byte is never sent");
        }
    }

    #[tokio::test]
    async fn trees_stay_inside_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let stream: &[u8] = b"D0755 0 top\nC0640 3 a\nabc\0D0700 0 sub\nC0600 0 e\n\0E\nE\n";
        let mut peer = Scripted::new(&[stream]);
        let summary = receive_tree(&mut peer, dir.path(), true, true).await.unwrap();
        assert_eq!(summary, TreeSummary { files: 2, directories: 2, bytes: 3, skipped: 0 });
        assert_eq!(std::fs::read(dir.path().join("top/a")).unwrap(), b"abc");
        assert_eq!(std::fs::read(dir.path().join("top/sub/e")).unwrap(), b"");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("top/sub")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);

        for stream in [
            &b"D0755 0 d\nC0644 1 ../x\nx\0E\n"[..],
            b"D0755 0 ..\nC0644 1 x\nx\0E\n",
            b"E\nC0644 1 x\nx\0",
            b"D0755 0 d\nD0755 0 e\n",
        ] {
            let target = dir.path().join("target");
            std::fs::create_dir(&target).unwrap();
            let mut peer = Scripted::new(&[stream]);
            protocol_error(receive_tree(&mut peer, &target, true, false).await);
            assert!(!dir.path().join("x").exists(), "escaped the target");
            std::fs::remove_dir_all(&target).unwrap();
        }

        // Without recursion a directory record is refused before anything is created.
        let target = dir.path().join("flat");
        std::fs::create_dir(&target).unwrap();
        let mut peer = Scripted::new(&[b"D0755 0 d\nC0644 1 x\nx\0E\n"]);
        let why = protocol_error(receive_tree(&mut peer, &target, false, false).await);
        assert!(why.contains("recursion is off"), "{why}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_link_in_the_target_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        let target = dir.path().join("target");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("d")).unwrap();
        let mut peer = Scripted::new(&[b"D0755 0 d\nC0644 1 x\nx\0E\n"]);
        match receive_tree(&mut peer, &target, true, false).await {
            Err(Fault::Local(err)) => assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn trees_are_sent_depth_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a"), b"A").unwrap();
        std::fs::write(root.join("b/c"), b"CC").unwrap();
        let mut peer = Scripted::new(&[&[0u8; 16]]);
        let summary = send_tree(&mut peer, &root, false, 1024).await.unwrap();
        assert_eq!(summary, TreeSummary { files: 2, directories: 2, bytes: 3, skipped: 0 });
        let text = String::from_utf8_lossy(&peer.wire.output).into_owned();
        let expected = "D0755 0 root\nC0644 1 a\nA\0D0755 0 b\nC0644 2 c\nCC\0E\nE\n";
        assert_eq!(text.replace("C0664", "C0644").replace("D0775", "D0755"), expected);
    }
}
