//! The `scp` scheme: [`FileTransfer`] speaking the scp protocol to a remote
//! `scp -t` (put) or `scp -f` (get), each on its own session channel of the
//! host's one SSH connection.
//!
//! The bytes travel in scp records ([`protocol`]); everything around them
//! is shell commands over the same connection, as a host with `scp` has a
//! shell: [`ShellFiles`] answers `stat`, `list`, `mkdir`, `remove` and
//! `rename`, checks a put's destination before any data moves, and, once
//! `scp -t` has written the temporary sibling, checks its size, applies
//! owner, group, mode and mtime and renames it into place. A failed put
//! removes the temporary file and leaves the destination untouched.
//!
//! scp announces a file's size before its bytes. A put that knows it
//! ([`PutOptions::expected_size`], which `put_file` fills in) streams at
//! once; a source of unknown length is read ahead up to
//! [`UNSIZED_READ_AHEAD`] bytes, and a longer one streams through `cat`
//! instead ([`ShellFiles`]' own put), with the same atomic semantics.
//!
//! Every wait on the server is bounded by `connect_timeout`, and a dropped
//! connection fails the transfer at once with
//! [`ErrorKind::ConnectionLost`].

mod protocol;
mod wire;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tether_core::raw::shell_files::{ShellFiles, StagedPut, checked, failed, word};
use tether_core::{
    DirEntry, Error, ErrorKind, ExitStatus, FileKind, FileTransfer, Metadata, Output, PutOptions, Result, StatOptions,
    Transport, TreeSummary,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connect::SshSession;
use crate::options::ScpOptions;
use protocol::{Fault, Peer, Step};
use wire::ChannelWire;

/// How much of a source of unknown length is held in memory to learn its
/// size for the `C` record; a longer source goes through `cat`.
pub const UNSIZED_READ_AHEAD: usize = 8 << 20;

/// The mode `scp -t` creates the temporary file with: private until the
/// commit sets the real one.
const TEMPORARY_MODE: u32 = 0o600;

/// The scp file transport on `session`.
pub(crate) fn open(session: Arc<SshSession>, options: ScpOptions) -> Result<Arc<dyn FileTransfer>> {
    options.checked()?;
    Ok(Arc::new(ScpFiles::new(session, options)))
}

/// Files over the scp protocol, with shell commands for everything else.
#[derive(Debug, Clone)]
pub struct ScpFiles {
    session: Arc<SshSession>,
    shell: ShellFiles,
    options: ScpOptions,
}

impl ScpFiles {
    /// Moves files over `session` with `options`.
    pub fn new(session: Arc<SshSession>, options: ScpOptions) -> Self {
        let shell = ShellFiles::new(session.clone() as Arc<dyn Transport>);
        ScpFiles { session, shell, options }
    }

    fn block(&self) -> usize {
        self.options.block_size as usize
    }

    /// Ends the conversation with the remote scp and turns how it went into
    /// the transfer's result: success needs a clean exit too, and a failure
    /// stops the remote command before the caller cleans up.
    async fn conclude<T>(&self, operation: &str, path: &Path, wire: &mut ChannelWire, step: Step<T>) -> Result<T> {
        let fault = match step {
            Ok(value) => {
                let ending = wire.finish().await?;
                return match ending.status {
                    ExitStatus::Code(0) => Ok(value),
                    _ => Err(failed(operation, path.display(), ending)),
                };
            }
            Err(fault) => fault,
        };
        let protocol =
            |why: String| Error::new(ErrorKind::Protocol, operation).with_context(format!("{}: {why}", path.display()));
        match fault {
            Fault::Eof => match wire.finish().await {
                // The remote scp (or the shell before it: `scp: not found`) exited with its reason.
                Ok(ending) if !matches!(ending.status, ExitStatus::Code(0)) => {
                    Err(failed(operation, path.display(), ending))
                }
                Ok(_) => Err(protocol("the remote scp ended in the middle of the transfer".into())),
                Err(err) => Err(err),
            },
            Fault::Remote { fatal, message } => {
                wire.abort().await;
                let code = if fatal { 2 } else { 1 };
                let said = Output { stdout: Vec::new(), stderr: message.into_bytes(), status: ExitStatus::Code(code) };
                Err(failed(operation, path.display(), said))
            }
            Fault::Protocol(why) => {
                wire.abort().await;
                Err(protocol(why))
            }
            Fault::Wire(err) | Fault::Local(err) => {
                wire.abort().await;
                Err(err)
            }
        }
    }

    /// Sends `size` bytes of `source` to the temporary file of `staged` with `scp -t`.
    async fn send(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        staged: &StagedPut,
        size: u64,
        options: &PutOptions,
    ) -> Result<u64> {
        let (temp, remote) = (staged.temporary(), staged.path());
        // The sink writes to the path on its command line and only checks
        // this name, so one a record cannot carry (a newline) is replaced.
        let temp_bytes = temp.as_os_str().as_bytes();
        let base = temp_bytes.rsplit(|&b| b == b'/').next().unwrap_or(temp_bytes);
        let name = if protocol::check_name(base).is_ok() { base } else { b"tether-upload".as_slice() };
        let preserve = if options.mtime.is_some() { "-p " } else { "" };
        let line = format!("scp {preserve}-t {}", word(temp));
        let mut wire = ChannelWire::start(&self.session, "put", remote, &line).await?;
        let mut peer = Peer::new(&mut wire);
        let step = async {
            peer.ack().await?;
            protocol::send_file(&mut peer, source, name, TEMPORARY_MODE, size, options.mtime, self.block()).await
        }
        .await;
        drop(peer);
        self.conclude("put", remote, &mut wire, step).await
    }
}

impl ScpFiles {
    /// Downloads `remote` with `scp -f` into the existing local directory
    /// `local`: a file lands as `local/<name>`, a directory (with
    /// `recurse`) as `local/<name>/…`, each file written to a temporary
    /// sibling and renamed. With `preserve`, modes and times are the
    /// remote ones.
    ///
    /// Every record is validated: names are single path components and an
    /// existing local directory must not be a link, so nothing is written
    /// outside `local`. Unlike [`FileTransfer::get`] this is not atomic as
    /// a whole: after a failure, the files completed so far stay.
    pub async fn get_tree(&self, remote: &Path, local: &Path) -> Result<TreeSummary> {
        let path = checked("get", remote)?;
        match tokio::fs::metadata(local).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::new(ErrorKind::InvalidInput, "get")
                    .with_context(format!("{}: not a directory", local.display())));
            }
            Err(e) => return Err(Error::io("get", e).with_context(local.display().to_string())),
        }
        let line =
            format!("scp {}{}-f {}", flag(self.options.recurse, "-r "), flag(self.options.preserve, "-p "), word(path));
        let mut wire = ChannelWire::start(&self.session, "get", path, &line).await?;
        let mut peer = Peer::new(&mut wire);
        let step = protocol::receive_tree(&mut peer, local, self.options.recurse, self.options.preserve).await;
        drop(peer);
        self.conclude("get", path, &mut wire, step).await
    }

    /// Uploads the local file or directory `local` with `scp -r -t` into the
    /// existing remote directory `remote_dir`, as `remote_dir/<name>`. With
    /// `preserve`, modes and times are the local ones. Links are followed;
    /// other special files are refused. Not atomic as a whole: after a
    /// failure, what the remote scp completed stays.
    pub async fn put_tree(&self, local: &Path, remote_dir: &Path) -> Result<TreeSummary> {
        let path = checked("put", remote_dir)?;
        let meta = tokio::fs::metadata(local)
            .await
            .map_err(|e| Error::io("put", e).with_context(local.display().to_string()))?;
        if meta.is_dir() && !self.options.recurse {
            return Err(Error::new(ErrorKind::InvalidInput, "put")
                .with_context(format!("{} is a directory and scp_options.recurse is off", local.display())));
        }
        match self.shell.stat(path, StatOptions { follow_links: true, sha512: false }).await? {
            Some(meta) if meta.kind == FileKind::Dir => {}
            Some(_) => {
                return Err(Error::new(ErrorKind::InvalidInput, "put")
                    .with_context(format!("{}: not a directory", path.display())));
            }
            None => return Err(Error::new(ErrorKind::NotFound, "put").with_context(path.display().to_string())),
        }
        let line = format!("scp -r {}-t {}", flag(self.options.preserve, "-p "), word(path));
        let mut wire = ChannelWire::start(&self.session, "put", path, &line).await?;
        let mut peer = Peer::new(&mut wire);
        let step = async {
            peer.ack().await?;
            protocol::send_tree(&mut peer, local, self.options.preserve, self.block()).await
        }
        .await;
        drop(peer);
        self.conclude("put", path, &mut wire, step).await
    }
}

fn flag(on: bool, flag: &'static str) -> &'static str {
    if on { flag } else { "" }
}

#[async_trait]
impl FileTransfer for ScpFiles {
    async fn put(
        &self,
        source: &mut (dyn AsyncRead + Send + Unpin),
        remote: &Path,
        options: &PutOptions,
    ) -> Result<u64> {
        let mut ahead = None;
        let size = match options.expected_size {
            Some(size) => size,
            None => {
                let mut data = Vec::new();
                (&mut *source).take(UNSIZED_READ_AHEAD as u64 + 1).read_to_end(&mut data).await.map_err(|e| {
                    Error::io("put", e).with_context(format!("{}: reading the source", remote.display()))
                })?;
                if data.len() > UNSIZED_READ_AHEAD {
                    tracing::debug!(remote = %remote.display(), "scp: source of unknown length; streaming it through `cat`");
                    let mut rest = (&data[..]).chain(source);
                    return self.shell.put(&mut rest, remote, options).await;
                }
                let size = data.len() as u64;
                ahead = Some(data);
                size
            }
        };
        let staged = self.shell.stage_put(remote, options).await?;
        let sent = match &ahead {
            Some(data) => self.send(&mut &data[..], &staged, size, options).await,
            None => self.send(source, &staged, size, options).await,
        };
        staged.finish(sent).await
    }

    async fn get(&self, remote: &Path, sink: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<u64> {
        let path = checked("get", remote)?;
        let expected = self.shell.regular_file_size("get", path).await?;
        let line = format!("scp -f {}", word(path));
        let mut wire = ChannelWire::start(&self.session, "get", path, &line).await?;
        let mut peer = Peer::new(&mut wire);
        let step = protocol::receive_file(&mut peer, expected, sink).await;
        drop(peer);
        let got = self.conclude("get", path, &mut wire, step).await?;
        sink.flush()
            .await
            .map_err(|e| Error::io("get", e).with_context(format!("{}: flushing the sink", path.display())))?;
        Ok(got)
    }

    async fn stat(&self, path: &Path, options: StatOptions) -> Result<Option<Metadata>> {
        self.shell.stat(path, options).await
    }

    async fn list(&self, path: &Path) -> Result<Vec<DirEntry>> {
        self.shell.list(path).await
    }

    async fn mkdir(&self, path: &Path, parents: bool) -> Result<()> {
        self.shell.mkdir(path, parents).await
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        self.shell.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.shell.rename(from, to).await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    use tether_core::{HostConfig, OptionSource};
    use tether_test_servers::Sshd;

    use super::*;

    /// The real scp (`$REAL`) unless the requested path ends in
    /// `/hostile` or `/flat`; those get crafted records.
    const FAKE_SCP: &str = r#"
eval "target=\${$#}"
case "$target" in
  */hostile) head -c 1 >/dev/null; printf 'D0755 0 top\nC0644 1 ../../escaped\nx\000E\n' ;;
  */flat) head -c 1 >/dev/null; printf 'D0755 0 d\nC0644 1 x\nx\000E\n' ;;
  *) exec "$REAL" "$@" ;;
esac
cat >/dev/null
"#;

    /// An sshd whose `scp` is [`FAKE_SCP`], and [`ScpFiles`] on it.
    async fn scp_files(options: ScpOptions) -> (ScpFiles, Sshd, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let real = ["/usr/bin/scp", "/usr/local/bin/scp", "/bin/scp"].into_iter().find(|p| Path::new(p).is_file());
        let script = format!("#!/bin/sh\nREAL='{}'\n{FAKE_SCP}", real.expect("scp is installed (openssh-client)"));
        std::fs::write(bin.join("scp"), script).unwrap();
        std::fs::set_permissions(bin.join("scp"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let builder = Sshd::builder()
            .config_line("Match all")
            .config_line(format!("SetEnv PATH={}:/usr/bin:/bin SHLVL=1", bin.display()));
        let sshd = tokio::task::spawn_blocking(move || builder.start()).await.unwrap().expect("start sshd");
        let mut host = HostConfig::new("sshd", "ssh", "scp");
        host.address = Some("127.0.0.1".into());
        host.port = Some(sshd.port());
        host.user = Some(sshd.user().to_string());
        let key = sshd.client_key_path().display().to_string();
        host.options.set("ssh_options", "client_keys", vec![key], OptionSource::Api).unwrap();
        let known_hosts = sshd.known_hosts_path().display().to_string();
        host.options.set("ssh_options", "known_hosts", vec![known_hosts], OptionSource::Api).unwrap();
        let connection = crate::connect_host(&host).await.expect("connect");
        (ScpFiles::new(connection.session(), options), sshd, dir)
    }

    fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let shown = path.strip_prefix(root).unwrap().display().to_string();
                if path.is_dir() {
                    found.push((format!("{shown}/"), Vec::new()));
                    stack.push(path);
                } else {
                    found.push((shown, std::fs::read(&path).unwrap()));
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trees_round_trip_with_times_and_modes() {
        let options = ScpOptions { preserve: true, ..ScpOptions::default() };
        let (scp, _sshd, dir) = scp_files(options).await;
        let source = dir.path().join("source");
        std::fs::create_dir_all(source.join("sub/empty")).unwrap();
        std::fs::write(source.join("a file"), b"alpha").unwrap();
        std::fs::write(source.join("sub/b"), tether_core::conformance::random_bytes(3 << 20, 3)).unwrap();
        std::fs::set_permissions(source.join("sub/b"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_400_000_000);
        let file = std::fs::File::options().write(true).open(source.join("a file")).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(mtime)).unwrap();
        drop(file);

        let remote = dir.path().join("remote");
        std::fs::create_dir(&remote).unwrap();
        let sent = scp.put_tree(&source, Path::new(remote.to_str().unwrap())).await.unwrap();
        assert_eq!(sent, TreeSummary { files: 2, directories: 3, bytes: 5 + (3 << 20), skipped: 0 });
        assert_eq!(tree(&remote.join("source")), tree(&source));

        let back = dir.path().join("back");
        std::fs::create_dir(&back).unwrap();
        let got = scp.get_tree(Path::new(remote.join("source").to_str().unwrap()), &back).await.unwrap();
        assert_eq!(got, sent);
        assert_eq!(tree(&back.join("source")), tree(&source));
        let meta = std::fs::metadata(back.join("source/a file")).unwrap();
        assert_eq!(meta.modified().unwrap(), mtime, "times travel both ways with preserve");
        let mode = std::fs::metadata(back.join("source/sub/b")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_tree_records_write_nothing_outside() {
        let (scp, _sshd, dir) = scp_files(ScpOptions::default()).await;
        let target = dir.path().join("a/b");
        std::fs::create_dir_all(&target).unwrap();
        let err = scp.get_tree(Path::new("/anywhere/hostile"), &target).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(!dir.path().join("a/escaped").exists() && !dir.path().join("escaped").exists());
        assert_eq!(tree(&target), [("top/".to_string(), Vec::new())], "only the announced directory exists");

        // Without recursion, a directory record is refused before anything is created.
        let (flat, _sshd, dir) = scp_files(ScpOptions { recurse: false, ..ScpOptions::default() }).await;
        let err = flat.get_tree(Path::new("/anywhere/flat"), dir.path()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("recursion is off"), "{err}");
        assert_eq!(tree(dir.path()).iter().filter(|(name, _)| !name.starts_with("bin")).count(), 0);
        let err = flat.put_tree(dir.path(), Path::new("/tmp")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
}
