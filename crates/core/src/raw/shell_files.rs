//! Files moved with shell commands: [`ShellFiles`], a [`FileTransfer`] made
//! of POSIX `sh` scripts run through any [`Transport`].
//!
//! Every operation is one short script, except the data itself, which
//! streams through the stdin or stdout of a spawned `cat`. The scripts test
//! the conditions callers match on with `[ … ]` and report them with fixed
//! exit codes, so error kinds do not depend on the wording of the host's
//! tools. Scripts are single lines, so a transport that can only type a line
//! into a console runs them as well.
//!
//! Transports that move the bytes some other way (SCP, a dispatcher) but
//! have a shell on the host reuse the rest: [`ShellFiles::stage_put`] checks
//! the destination and reserves a temporary sibling, the transport fills it,
//! and [`StagedPut::commit`] checks the size, applies owner, mode and mtime
//! and renames it into place.
//!
//! The host needs `sh`, `cat`, `mv`, `rm`, `rmdir`, `mkdir`, `chmod`,
//! GNU `find` (`-printf`, `-ignore_readdir_race`) and the GNU coreutils
//! flavours of `stat -c`, `touch -d @SECONDS` and `sha512sum`.

mod diagnose;
mod parse;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::command::{Command, Output, quote, quote_bytes};
use crate::error::{Error, ErrorKind, Result};
use crate::files::{
    DirEntry, FileKind, FileTransfer, Metadata, PutOptions, StatOptions, check_expected_size, read_full,
    temporary_sibling,
};
use crate::process::{BoxReader, Process};
use crate::transport::Transport;

pub use diagnose::failed;
use diagnose::{EXIT_EXISTS, EXIT_IS_DIR, EXIT_NOT_DIR, EXIT_NOT_FOUND, EXIT_SIZE, from_script, output_of, protocol};
use parse::{LIST_FORMAT, STAT_FORMAT, parse_listing, parse_mode, parse_stat_reply};

/// Bytes moved per write to (or read from) `cat`: large, so a transport
/// with per-message overhead (an SSH channel, a console) sends few messages.
const CHUNK: usize = 1 << 20;

/// How much of a command's stderr is kept for the error message.
const STDERR_KEPT: usize = 64 * 1024;

/// How long to wait for a killed process to go away before giving up on it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A [`FileTransfer`] that moves files with shell commands run through a
/// [`Transport`].
///
/// ```no_run
/// # async fn demo(transport: std::sync::Arc<dyn tether_core::Transport>) -> tether_core::Result<()> {
/// use tether_core::{FileTransfer, PutOptions};
/// use tether_core::raw::shell_files::ShellFiles;
/// let files = ShellFiles::new(transport);
/// files.put(&mut &b"hello\n"[..], "/tmp/greeting".as_ref(), &PutOptions::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShellFiles {
    inner: Arc<dyn Transport>,
}

impl ShellFiles {
    /// Moves files through the commands `inner` runs.
    pub fn new(inner: Arc<dyn Transport>) -> Self {
        ShellFiles { inner }
    }

    /// The command transport underneath.
    pub fn inner(&self) -> &Arc<dyn Transport> {
        &self.inner
    }

    /// Runs `script` with `check`, turning a failure into the kind it stands for.
    async fn run(&self, operation: &str, subject: &Path, script: &str) -> Result<Output> {
        run(&self.inner, operation, subject, script).await
    }

    /// The first half of an atomic put whose bytes some other channel
    /// carries: checks that `remote` can be written (its directory exists, it
    /// is not a directory, owner and group are valid names) before any data
    /// moves, learns the mode an existing destination keeps, and picks the
    /// temporary sibling the data goes to.
    ///
    /// The caller writes [`StagedPut::temporary`] (creating it with a
    /// private mode), then calls [`StagedPut::commit`] with the byte count,
    /// or [`StagedPut::abort`]. A `StagedPut` dropped without either removes
    /// the temporary file in the background.
    pub async fn stage_put(&self, remote: &Path, options: &PutOptions) -> Result<StagedPut> {
        let path = checked("put", remote)?;
        if path.as_os_str().as_bytes().ends_with(b"/") {
            return Err(
                Error::new(ErrorKind::InvalidInput, "put").with_context(format!("{}: not a file name", path.display()))
            );
        }
        let owner = options.owner.as_deref().map(|o| account("owner", o)).transpose()?;
        let group = options.group.as_deref().map(|g| account("group", g)).transpose()?;

        let prepare = format!(
            "d={}; p={}; [ -e \"$d\" ] || exit {EXIT_NOT_FOUND}; [ -d \"$d\" ] || exit {EXIT_NOT_DIR}; \
             if [ -d \"$p\" ]; then exit {EXIT_IS_DIR}; fi; if [ -e \"$p\" ]; then stat -L -c %a \"$p\" || exit; fi",
            word(parent_of(path)),
            word(path),
        );
        let reply = self.run("put", path, &prepare).await?;
        let existing = match std::str::from_utf8(&reply.stdout).map(str::trim) {
            Ok("") => None,
            Ok(text) => Some(parse_mode(text).map_err(|e| protocol("put", &prepare, e))?),
            Err(_) => return Err(protocol("put", &prepare, "the reply is not UTF-8")),
        };
        Ok(StagedPut {
            path: path.to_path_buf(),
            mode: options.mode.map(|m| m & 0o7777).or(existing).unwrap_or(0o644),
            owner: owner.map(str::to_string),
            group: group.map(str::to_string),
            mtime: options.mtime,
            expected_size: options.expected_size,
            temp: Temporary::new(self.inner.clone(), temporary_sibling(path)),
        })
    }

    /// Creates the temporary file and streams `source` into it; returns the
    /// bytes sent.
    async fn upload(&self, source: &mut (dyn AsyncRead + Send + Unpin), temp: &Path, remote: &Path) -> Result<u64> {
        let shown = remote.display();
        // A fresh, private file: `set -C` refuses to reuse an existing name,
        // and nobody else can read the data before its final mode is set.
        let script = format!("umask 077; set -C; exec cat > {}", word(temp));
        let mut process = self.inner.spawn(&command(&script)).await.map_err(|e| from_script("put", &shown, e))?;
        let Some(mut stdin) = process.stdin.take() else {
            // A terminal (`terminal_io`) has no stdin pipe: `cat` read
            // nothing and made the empty private file; the data follows in
            // commands that carry it as their stdin bytes.
            drop(process.stdout.take());
            let status = process.wait().await.map_err(|e| from_script("put", &shown, e))?;
            if !status.success() {
                return Err(failed("put", &shown, output_of(status, Vec::new())));
            }
            return self.upload_in_commands(source, temp, remote).await;
        };
        let stderr = Drain::start(process.stderr.take());
        drop(process.stdout.take());

        let mut buffer = vec![0u8; CHUNK];
        let mut sent = 0u64;
        let pipe_error = loop {
            let n = match read_full(source, &mut buffer).await {
                Ok(n) => n,
                Err(e) => {
                    // The data is incomplete: `cat` must not see a clean end of input.
                    stop(&mut process).await;
                    return Err(Error::io("put", e).with_context(format!("{shown}: reading the source")));
                }
            };
            if n == 0 {
                break stdin.shutdown().await.err();
            }
            if let Err(e) = stdin.write_all(&buffer[..n]).await {
                break Some(e);
            }
            sent += n as u64;
        };
        drop(stdin);
        let status = process.wait().await.map_err(|e| from_script("put", &shown, e))?;
        let stderr = stderr.finish().await;
        if !status.success() {
            // A broken pipe only says that `cat` died; its stderr says why.
            return Err(failed("put", &shown, output_of(status, stderr)));
        }
        match pipe_error {
            Some(e) => Err(Error::io("put", e).with_context(format!("{shown}: writing to `cat`"))),
            None => Ok(sent),
        }
    }
}

impl ShellFiles {
    /// Appends `source` to `temp` a chunk per command, each chunk the
    /// command's [`Command::stdin`]: for transports whose commands have no
    /// stdin pipe. Returns the bytes sent.
    async fn upload_in_commands(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        temp: &Path,
        remote: &Path,
    ) -> Result<u64> {
        let shown = remote.display();
        let append = format!("exec cat >> {}", word(temp));
        let mut buffer = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = read_full(source, &mut buffer)
                .await
                .map_err(|e| Error::io("put", e).with_context(format!("{shown}: reading the source")))?;
            if n == 0 {
                return Ok(sent);
            }
            let chunk = bytes::Bytes::copy_from_slice(&buffer[..n]);
            self.inner.exec(&command(&append).stdin(chunk)).await.map_err(|e| from_script("put", &shown, e))?;
            sent += n as u64;
        }
    }
}

/// Runs `script` through `inner` with `check`, turning a failure into the
/// kind it stands for.
async fn run(inner: &Arc<dyn Transport>, operation: &str, subject: &Path, script: &str) -> Result<Output> {
    inner.exec(&command(script)).await.map_err(|e| from_script(operation, subject.display(), e))
}

/// A checked command in the C locale, so messages match [`diagnose`]'s table.
fn command(script: &str) -> Command {
    Command::shell(script).env("LC_ALL", "C").check(true)
}

/// `path` as one `sh` word that no command can mistake for an option: quoted
/// where needed, and a relative path starting with `-` gets a `./` prefix.
/// ASCII whatever the name: see [`quote_bytes`].
pub fn word(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    if bytes.starts_with(b"-") {
        let prefixed = [&b"./"[..], bytes].concat();
        return quote_bytes(OsStr::from_bytes(&prefixed)).into_owned();
    }
    quote_bytes(path.as_os_str()).into_owned()
}

/// `path` as a starting point of `find`, which takes words beginning with
/// `-`, `(` or `!` for its expression.
fn find_start(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    if bytes.starts_with(b"/") || bytes.starts_with(b"./") { path.to_path_buf() } else { Path::new(".").join(path) }
}

/// Rejects paths no command line can carry (empty, or holding NUL).
pub fn checked<'a>(operation: &str, path: &'a Path) -> Result<&'a Path> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Error::new(ErrorKind::InvalidInput, operation).with_context(format!("invalid path {path:?}")));
    }
    Ok(path)
}

/// The directory holding `path`, as the shell sees it.
fn parent_of(path: &Path) -> &Path {
    let bytes = path.as_os_str().as_bytes();
    let trim = |b: &[u8]| b.iter().rposition(|&c| c != b'/').map_or(0, |i| i + 1);
    let trimmed = &bytes[..trim(bytes)];
    let parent: &[u8] = match trimmed.iter().rposition(|&b| b == b'/') {
        None if trimmed.is_empty() => b"/",
        None => b".",
        Some(i) => match &trimmed[..trim(&trimmed[..i])] {
            b"" => b"/",
            parent => parent,
        },
    };
    Path::new(OsStr::from_bytes(parent))
}

/// `touch -d` spelling of a time, to the nanosecond.
fn touch_stamp(time: SystemTime) -> String {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => format!("@{}.{:09}", after.as_secs(), after.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            format!("@-{}.{:09}", before.as_secs(), before.subsec_nanos())
        }
    }
}

/// An owner or group for `chown`: a `:` would split it into two names.
fn account<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    if name.is_empty() || name.contains([':', '\0']) {
        return Err(Error::new(ErrorKind::InvalidInput, "put").with_context(format!("invalid {what} {name:?}")));
    }
    Ok(name)
}

/// Kills a process and reaps it, bounded: the caller is already failing and
/// only wants the process gone before it cleans up.
async fn stop(process: &mut Process) {
    let _ = process.kill().await;
    let _ = tokio::time::timeout(KILL_GRACE, process.wait()).await;
}

/// Reads a process's stderr in the background, so a chatty process never
/// blocks on a full pipe while the data flows elsewhere.
struct Drain(Option<JoinHandle<Vec<u8>>>);

impl Drain {
    fn start(pipe: Option<BoxReader>) -> Self {
        Drain(pipe.map(|mut pipe| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buffer = vec![0u8; 8192];
                while let Ok(n) = pipe.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                }
                kept
            })
        }))
    }

    async fn finish(mut self) -> Vec<u8> {
        match self.0.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The temporary sibling of a put, removed unless the put succeeded.
struct Temporary {
    inner: Arc<dyn Transport>,
    path: Option<PathBuf>,
}

impl Temporary {
    fn new(inner: Arc<dyn Transport>, path: PathBuf) -> Self {
        Temporary { inner, path: Some(path) }
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// The rename happened: there is nothing left to remove.
    fn renamed(mut self) {
        self.path = None;
    }

    /// Removes the file before the caller sees the error, so nothing is
    /// left behind when it looks.
    async fn remove(mut self) {
        if let Some(path) = self.path.take() {
            remove_quietly(&self.inner, &path).await;
        }
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        // Reached only when the put's future was dropped midway: clean up
        // in the background, as nobody awaits anymore.
        if let Some(path) = self.path.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let inner = self.inner.clone();
            runtime.spawn(async move { remove_quietly(&inner, &path).await });
        }
    }
}

async fn remove_quietly(inner: &Arc<dyn Transport>, path: &Path) {
    // The put's own error is the one to report; a failed clean-up is logged.
    if let Err(err) = inner.exec(&command(&format!("rm -f {}", word(path)))).await {
        tracing::warn!(path = %path.display(), %err, "could not remove the temporary file of a put");
    }
}

/// An atomic put between [`ShellFiles::stage_put`] and its commit: the
/// destination is known to be writable and a temporary sibling is reserved
/// for the data.
pub struct StagedPut {
    path: PathBuf,
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
    mtime: Option<SystemTime>,
    expected_size: Option<u64>,
    temp: Temporary,
}

impl std::fmt::Debug for StagedPut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedPut")
            .field("path", &self.path)
            .field("temporary", &self.temp.path())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish_non_exhaustive()
    }
}

impl StagedPut {
    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the data goes first: a hidden, unique sibling of the
    /// destination, which does not exist yet.
    pub fn temporary(&self) -> &Path {
        self.temp.path()
    }

    /// The permission bits the file ends up with: the caller's, else the
    /// existing destination's, else `0o644`.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Finishes the put once `sent` bytes went into the temporary file:
    /// checks the count against the caller's expected size and the size on
    /// the host, sets owner and group, then mode (`chown` clears set-id bits
    /// that `chmod` then sets), then mtime, and renames the file over the
    /// destination. On failure the temporary file is removed and the
    /// destination is as it was. Returns `sent`.
    pub async fn commit(self, sent: u64) -> Result<u64> {
        let path = self.path.clone();
        let result = async {
            check_expected_size("put", &path, self.expected_size, sent)?;
            let mut steps = vec![
                format!("t={}; p={}", word(self.temp.path()), word(&path)),
                "s=$(stat -c %s \"$t\") || exit".to_string(),
                format!("if [ \"$s\" != {sent} ]; then printf %s \"$s\"; exit {EXIT_SIZE}; fi"),
            ];
            match (self.owner.as_deref(), self.group.as_deref()) {
                (Some(owner), Some(group)) => {
                    steps.push(format!("chown {} \"$t\" || exit", quote(&format!("{owner}:{group}"))))
                }
                (Some(owner), None) => steps.push(format!("chown {} \"$t\" || exit", quote(owner))),
                (None, Some(group)) => steps.push(format!("chgrp {} \"$t\" || exit", quote(group))),
                (None, None) => {}
            }
            steps.push(format!("chmod {:o} \"$t\" || exit", self.mode));
            if let Some(mtime) = self.mtime {
                steps.push(format!("touch -c -d {} \"$t\" || exit", touch_stamp(mtime)));
            }
            // `mv` onto a directory would move the file into it.
            steps.push(format!("if [ -d \"$p\" ]; then exit {EXIT_IS_DIR}; fi"));
            steps.push("mv -f \"$t\" \"$p\"".to_string());
            run(&self.temp.inner, "put", &path, &steps.join("; ")).await
        }
        .await;
        match result {
            Ok(_) => {
                self.temp.renamed();
                Ok(sent)
            }
            Err(err) => {
                self.temp.remove().await;
                Err(err)
            }
        }
    }

    /// Gives up: removes the temporary file (if it was created) before
    /// returning, and leaves the destination as it was.
    pub async fn abort(self) {
        self.temp.remove().await;
    }

    /// Commits after a successful upload of `sent` bytes, aborts after a
    /// failed one (returning its error).
    pub async fn finish(self, upload: Result<u64>) -> Result<u64> {
        match upload {
            Ok(sent) => self.commit(sent).await,
            Err(err) => {
                self.abort().await;
                Err(err)
            }
        }
    }
}

impl ShellFiles {
    /// The size of `path` (links followed), which must be a regular file: a
    /// device or a pipe could stream forever, and a directory has no bytes.
    /// What a download checks before it starts, so it knows what to expect.
    pub async fn regular_file_size(&self, operation: &str, path: &Path) -> Result<u64> {
        match self.stat(path, StatOptions { follow_links: true, sha512: false }).await? {
            None => Err(Error::new(ErrorKind::NotFound, operation).with_context(path.display().to_string())),
            Some(meta) if meta.kind == FileKind::File => Ok(meta.size),
            Some(meta) => Err(Error::new(ErrorKind::InvalidInput, operation).with_context(format!(
                "{}: not a regular file ({:?})",
                path.display(),
                meta.kind
            ))),
        }
    }
}

#[async_trait]
impl FileTransfer for ShellFiles {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        let staged = self.stage_put(remote, options).await?;
        let upload = self.upload(source, staged.temporary(), staged.path()).await;
        staged.finish(upload).await
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        let path = checked("get", remote)?;
        let shown = path.display();
        let expected = self.regular_file_size("get", path).await?;
        let script = format!("exec cat < {}", word(path));
        let mut process = self.inner.spawn(&command(&script)).await.map_err(|e| from_script("get", &shown, e))?;
        let Some(mut stdout) = process.stdout.take() else {
            stop(&mut process).await;
            return Err(protocol("get", &script, "the process has no stdout"));
        };
        let stderr = Drain::start(process.stderr.take());
        drop(process.stdin.take());

        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = match stdout.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    stop(&mut process).await;
                    return Err(Error::io("get", e).with_context(format!("{shown}: reading from `cat`")));
                }
            };
            if let Err(e) = sink.write_all(&buffer[..n]).await {
                stop(&mut process).await;
                return Err(Error::io("get", e).with_context(format!("{shown}: writing the sink")));
            }
            received += n as u64;
        }
        let status = process.wait().await.map_err(|e| from_script("get", &shown, e))?;
        let stderr = stderr.finish().await;
        if !status.success() {
            return Err(failed("get", &shown, output_of(status, stderr)));
        }
        sink.flush().await.map_err(|e| Error::io("get", e).with_context(format!("{shown}: flushing the sink")))?;
        check_expected_size("get", path, Some(expected), received)?;
        Ok(received)
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        let path = checked("stat", path)?;
        let (exists, follow, regular) = if options.follow_links {
            ("[ -e \"$p\" ]", "-L ", "[ -f \"$p\" ]")
        } else {
            ("{ [ -e \"$p\" ] || [ -L \"$p\" ]; }", "", "[ -f \"$p\" ] && [ ! -L \"$p\" ]")
        };
        let mut script = format!(
            "p={}; {exists} || exit {EXIT_NOT_FOUND}; stat {follow}-c '{STAT_FORMAT}' \"$p\" || exit",
            word(path)
        );
        if options.sha512 {
            // From stdin, so the line names `-` and never an escaped path.
            script.push_str(&format!("; if {regular}; then sha512sum < \"$p\" || exit; fi"));
        }
        match self.run("stat", path, &script).await {
            Ok(reply) => {
                parse_stat_reply(&reply.stdout, options.sha512).map(Some).map_err(|e| protocol("stat", &script, e))
            }
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        let path = checked("list", path)?;
        // `find` rather than `ls`: names come back byte-exact and
        // NUL-terminated, one process serves any directory size, and an entry
        // removed while listing is skipped instead of failing the listing.
        // `-H` lists through a link to a directory, as `[ -d ]` follows it.
        let script = format!(
            "p={}; [ -e \"$p\" ] || exit {EXIT_NOT_FOUND}; [ -d \"$p\" ] || exit {EXIT_NOT_DIR}; \
             find -H \"$p\" -mindepth 1 -maxdepth 1 -ignore_readdir_race -printf '{LIST_FORMAT}'",
            word(&find_start(path))
        );
        let reply = self.run("list", path, &script).await?;
        parse_listing(&reply.stdout).map_err(|e| protocol("list", &script, e))
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        let path = checked("mkdir", path)?;
        let script = if parents {
            format!(
                "p={}; if [ -e \"$p\" ] && [ ! -d \"$p\" ]; then exit {EXIT_EXISTS}; fi; mkdir -p \"$p\"",
                word(path)
            )
        } else {
            format!(
                "p={}; d={}; if [ -e \"$p\" ] || [ -L \"$p\" ]; then exit {EXIT_EXISTS}; fi; \
                 [ -e \"$d\" ] || exit {EXIT_NOT_FOUND}; [ -d \"$d\" ] || exit {EXIT_NOT_DIR}; mkdir \"$p\"",
                word(path),
                word(parent_of(path))
            )
        };
        self.run("mkdir", path, &script).await.map(drop)
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        let path = checked("remove", path)?;
        // `rmdir`, never `rm -r`: a directory with content must stay.
        let script = format!(
            "p={}; if [ -d \"$p\" ] && [ ! -L \"$p\" ]; then rmdir \"$p\"; \
             elif [ -e \"$p\" ] || [ -L \"$p\" ]; then rm -f \"$p\"; else exit {EXIT_NOT_FOUND}; fi",
            word(path)
        );
        self.run("remove", path, &script).await.map(drop)
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (from, to) = (checked("rename", from)?, checked("rename", to)?);
        // `mv` onto a directory would move `from` into it instead of replacing.
        let script = format!(
            "f={}; t={}; {{ [ -e \"$f\" ] || [ -L \"$f\" ]; }} || exit {EXIT_NOT_FOUND}; \
             if [ -d \"$t\" ]; then exit {EXIT_EXISTS}; fi; mv -f \"$f\" \"$t\"",
            word(from),
            word(to)
        );
        let subject = format!("{} -> {}", from.display(), to.display());
        self.run("rename", Path::new(&subject), &script).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        let parent = |p: &str| parent_of(Path::new(p)).to_str().unwrap().to_string();
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("a"), ".");
        assert_eq!(parent("a/b/"), "a");
        assert_eq!(parent("a//b"), "a");
        assert_eq!(parent("/"), "/");
        assert_eq!(parent_of(Path::new(OsStr::from_bytes(b"/\xff/x"))).as_os_str().as_bytes(), b"/\xff");
    }

    #[test]
    fn words_are_quoted_and_never_options() {
        let word = |p: &str| word(Path::new(p));
        assert_eq!(word("/tmp/x"), "/tmp/x");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("-rf"), "./-rf");
        assert_eq!(word("it's"), "'it'\\''s'");
        assert_eq!(find_start(Path::new("(")), Path::new("./("));
        assert_eq!(find_start(Path::new("/a")), Path::new("/a"));
    }

    #[test]
    fn names_that_are_not_utf8_become_ascii_printf_words() {
        let name = |b: &[u8]| word(Path::new(OsStr::from_bytes(b)));
        assert_eq!(name(b"a\xff"), "\"$(printf '\\141\\377')\"");
        assert_eq!(name(b"-\xff\n\n"), "\"$(printf '\\056\\057\\055\\377')\"'\n\n'");
    }

    #[test]
    fn stamps() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 5);
        assert_eq!(touch_stamp(t), "@1500000000.000000005");
        assert_eq!(touch_stamp(SystemTime::UNIX_EPOCH - Duration::from_millis(1500)), "@-1.500000000");
    }

    #[test]
    fn bad_input_is_rejected() {
        assert_eq!(checked("stat", Path::new("")).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(checked("stat", Path::new("a\0b")).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(account("owner", "a:b").unwrap_err().kind(), ErrorKind::InvalidInput);
        assert_eq!(account("owner", "root").unwrap(), "root");
    }
}
