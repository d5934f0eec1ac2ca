//! Commands as child processes of this one.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Group, Pid, Uid, User, getegid, geteuid, getgrouplist, setgid, setgroups, setuid};
use tether_core::{
    BoxReader, BoxWriter, Command, CommandLine, Error, ErrorKind, ExitStatus, Process, ProcessControl, Pty, Result,
    Transport, signal_name,
};

use crate::connect::LocalHost;
use crate::error::{blocking, errno};
use crate::pty::{Master, MasterReader, MasterWriter, Terminal, resize};

/// A user named by a command or a put.
pub(crate) struct ResolvedUser {
    pub(crate) uid: Uid,
    /// The user database's entry; a bare numeric id may have none.
    pub(crate) entry: Option<User>,
}

/// Looks `name` up as a user name, then as a numeric uid (as `chown` does).
/// Blocking: the user database may be remote (NSS).
pub(crate) fn resolve_user(operation: &str, name: &str) -> Result<ResolvedUser> {
    let lookup_failed = |e| errno(operation, e).with_context(format!("looking up user `{name}`"));
    if let Some(entry) = User::from_name(name).map_err(lookup_failed)? {
        return Ok(ResolvedUser { uid: entry.uid, entry: Some(entry) });
    }
    match name.parse::<u32>() {
        Ok(id) => {
            let uid = Uid::from_raw(id);
            Ok(ResolvedUser { uid, entry: User::from_uid(uid).map_err(lookup_failed)? })
        }
        Err(_) => {
            Err(Error::new(ErrorKind::NotFound, operation).with_context(format!("no user `{name}` on this machine")))
        }
    }
}

/// Looks `name` up as a group name, then as a numeric gid. Blocking.
pub(crate) fn resolve_group(operation: &str, name: &str) -> Result<Gid> {
    let lookup_failed = |e| errno(operation, e).with_context(format!("looking up group `{name}`"));
    if let Some(entry) = Group::from_name(name).map_err(lookup_failed)? {
        return Ok(entry.gid);
    }
    match name.parse::<u32>() {
        Ok(id) => Ok(Gid::from_raw(id)),
        Err(_) => {
            Err(Error::new(ErrorKind::NotFound, operation).with_context(format!("no group `{name}` on this machine")))
        }
    }
}

/// Who a child runs as. Everything is settled before the fork, so the child
/// only has to make system calls.
#[derive(Debug, Default)]
struct Identity {
    uid: Option<Uid>,
    gid: Option<Gid>,
    groups: Option<Vec<Gid>>,
    env: Vec<(&'static str, String)>,
}

fn needs_root(what: &str, name: &str, euid: Uid) -> Error {
    Error::new(ErrorKind::PermissionDenied, "exec")
        .with_context(format!("running as {what} `{name}` needs root; tether runs as uid {euid}"))
}

/// Resolves `user` and `group` into the ids to switch to. Without root only
/// the current ids can be asked for, and asking for others is an error rather
/// than a silent run as the wrong user. Blocking.
fn plan_identity(user: Option<&str>, group: Option<&str>) -> Result<Identity> {
    let euid = geteuid();
    let root = euid.is_root();
    let mut identity = Identity::default();
    let mut switch_to = None;
    let mut primary_gid = None;
    if let Some(name) = user {
        let user = resolve_user("exec", name)?;
        if !root && user.uid != euid {
            return Err(needs_root("user", name, euid));
        }
        match &user.entry {
            Some(entry) => {
                identity.env.push(("HOME", entry.dir.to_string_lossy().into_owned()));
                identity.env.push(("USER", entry.name.clone()));
                identity.env.push(("LOGNAME", entry.name.clone()));
                primary_gid = Some(entry.gid);
            }
            None => {
                identity.env.push(("HOME", "/".into()));
                identity.env.push(("USER", user.uid.to_string()));
                identity.env.push(("LOGNAME", user.uid.to_string()));
            }
        }
        switch_to = Some(user);
    }
    let gid = match group {
        Some(name) => {
            let gid = resolve_group("exec", name)?;
            if !root && gid != getegid() {
                return Err(needs_root("group", name, euid));
            }
            Some(gid)
        }
        None => primary_gid,
    };
    if !root {
        return Ok(identity);
    }
    identity.gid = gid;
    if let Some(user) = switch_to {
        let gid = gid.ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "exec").with_context(format!(
                "uid {} has no entry in the user database and so no primary group: name a group",
                user.uid
            ))
        })?;
        identity.uid = Some(user.uid);
        identity.groups = Some(match &user.entry {
            Some(entry) => supplementary_groups(entry, gid)?,
            None => vec![gid],
        });
    }
    Ok(identity)
}

/// The groups `initgroups` would give `user` with primary group `gid`.
fn supplementary_groups(user: &User, gid: Gid) -> Result<Vec<Gid>> {
    let name = CString::new(user.name.as_bytes()).map_err(|_| {
        Error::new(ErrorKind::InvalidInput, "exec")
            .with_context(format!("user name `{}` contains a NUL byte", user.name))
    })?;
    getgrouplist(&name, gid).map_err(|e| errno("exec", e).with_context(format!("groups of user `{}`", user.name)))
}

/// Makes the child apply `identity` and `umask` between fork and exec, and
/// with `terminal` start a session whose controlling terminal is its stdin.
#[allow(unsafe_code)]
fn apply_in_child(command: &mut tokio::process::Command, identity: Identity, umask: Option<u32>, terminal: bool) {
    let Identity { uid, gid, groups, .. } = identity;
    let umask = umask.map(|mask| Mode::from_bits_truncate(mask as libc::mode_t));
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is allowed. It only makes the setsid, ioctl,
    // setgroups, setgid, setuid and umask system calls on values computed
    // before the fork; it allocates nothing and takes no locks (errno values
    // convert to io::Error without allocating).
    unsafe {
        command.pre_exec(move || {
            if terminal {
                // A new session (and so a new process group, which kill
                // reaches) that takes the terminal on stdin as its own, so
                // job control and ^C work inside it.
                nix::unistd::setsid().map_err(io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Groups first, then gid, then uid: after setuid there is no
            // privilege left to change the others.
            if let Some(groups) = &groups {
                setgroups(groups).map_err(io::Error::from)?;
            }
            if let Some(gid) = gid {
                setgid(gid).map_err(io::Error::from)?;
            }
            if let Some(uid) = uid {
                setuid(uid).map_err(io::Error::from)?;
            }
            if let Some(mask) = umask {
                nix::sys::stat::umask(mask);
            }
            Ok(())
        });
    }
}

/// Turns a failed spawn into an error that says what was missing.
fn spawn_error(err: io::Error, program: &OsStr, command: &Command, identity: bool) -> Error {
    let program = program.to_string_lossy();
    let context = match (err.kind(), &command.cwd) {
        (io::ErrorKind::NotFound, Some(cwd)) if !cwd.is_dir() => format!("working directory `{}`", cwd.display()),
        _ if identity && err.raw_os_error() == Some(libc::EPERM) => {
            let who = command.user.as_deref().or(command.group.as_deref()).unwrap_or_default();
            format!("switching to `{who}` for `{program}`")
        }
        _ => format!("program `{program}`"),
    };
    Error::io("exec", err).with_context(context)
}

#[async_trait]
impl Transport for LocalHost {
    async fn spawn(&self, command: &Command) -> Result<Process> {
        self.ensure_open("exec")?;
        command.validate()?;
        let identity = match (&command.user, &command.group) {
            (None, None) => None,
            (user, group) => {
                let (user, group) = (user.clone(), group.clone());
                Some(blocking("exec", move || plan_identity(user.as_deref(), group.as_deref())).await?)
            }
        };
        let (program, mut child) = match &command.line {
            CommandLine::Argv(argv) => {
                let Some((program, args)) = argv.split_first() else {
                    return Err(Error::new(ErrorKind::InvalidInput, "exec").with_context("empty command"));
                };
                let mut child = tokio::process::Command::new(program);
                child.args(args);
                (program.as_os_str(), child)
            }
            CommandLine::Shell(line) => {
                let shell = OsStr::new(&self.options.shell);
                let mut child = tokio::process::Command::new(shell);
                child.arg("-c").arg(line);
                (shell, child)
            }
        };
        let terminal = command.pty.as_ref().map(Terminal::open).transpose()?;
        match (&terminal, &command.pty) {
            (Some(terminal), Some(pty)) => {
                // Its own session is made in the child (see apply_in_child).
                child.stdin(terminal.slave_stdio()?).stdout(terminal.slave_stdio()?).stderr(terminal.slave_stdio()?);
                child.env("TERM", &pty.term);
            }
            _ => {
                // Its own group, so kill reaches whatever the command started:
                // a grandchild holding stdout open would otherwise outlive a
                // timeout and keep the read waiting.
                child.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
            }
        }
        child.kill_on_drop(true);
        if let Some(cwd) = &command.cwd {
            child.current_dir(cwd);
        }
        let switching = identity.is_some();
        if let Some(identity) = &identity {
            child.envs(identity.env.iter().map(|(k, v)| (*k, v.as_str())));
        }
        child.envs(&command.env);
        if identity.is_some() || command.umask.is_some() || terminal.is_some() {
            apply_in_child(&mut child, identity.unwrap_or_default(), command.umask, terminal.is_some());
        }
        let spawned = child.spawn().map_err(|e| spawn_error(e, program, command, switching));
        // Our copies of the slave must close, or reading the master would
        // never see the end once the program exits.
        drop(child);
        let mut child = spawned?;
        tracing::debug!(pid = child.id(), command = %command, "spawned");
        if let Some(Terminal { master, .. }) = terminal {
            let stdin = Some(Box::pin(MasterWriter(master.clone())) as BoxWriter);
            let stdout = Some(Box::pin(MasterReader(master.clone())) as BoxReader);
            return Ok(Process::new(stdin, stdout, None, Box::new(LocalProcess { child, terminal: Some(master) })));
        }
        let stdin = child.stdin.take().map(|pipe| Box::pin(pipe) as BoxWriter);
        let stdout = child.stdout.take().map(|pipe| Box::pin(pipe) as BoxReader);
        let stderr = child.stderr.take().map(|pipe| Box::pin(pipe) as BoxReader);
        Ok(Process::new(stdin, stdout, stderr, Box::new(LocalProcess { child, terminal: None })))
    }

    async fn shell(&self, pty: &Pty) -> Result<Process> {
        // The user's own shell, as a login over SSH would give; the option is
        // the fallback for environments without SHELL.
        let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| self.options.shell.clone());
        self.spawn(&Command::argv([shell, "-i".to_string()]).pty(pty.clone())).await
    }
}

/// A child process and its process group.
#[derive(Debug)]
struct LocalProcess {
    child: tokio::process::Child,
    /// The terminal's master, when the command runs on one.
    terminal: Option<Master>,
}

impl LocalProcess {
    /// SIGKILLs the whole group; false when there is no group left to signal.
    fn kill_group(&self) -> bool {
        // `id` is `None` once the child is reaped. Until then the leader's
        // pid, and with it the group id, cannot be reused, so the signal can
        // only reach this command's processes.
        let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return false;
        };
        match killpg(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(pid, %err, "killpg failed");
                false
            }
        }
    }
}

fn exit_status(status: std::process::ExitStatus) -> ExitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(signal)) => ExitStatus::Signal(signal_name(signal)),
        (None, None) => ExitStatus::Unknown,
    }
}

#[async_trait]
impl ProcessControl for LocalProcess {
    async fn wait(&mut self) -> Result<ExitStatus> {
        let status = self.child.wait().await.map_err(|e| Error::io("wait", e))?;
        Ok(exit_status(status))
    }

    async fn kill(&mut self) -> Result<()> {
        if self.child.id().is_none() {
            return Ok(());
        }
        if !self.kill_group() {
            self.child.start_kill().map_err(|e| Error::io("kill", e))?;
        }
        self.child.wait().await.map_err(|e| Error::io("kill", e))?;
        Ok(())
    }

    async fn resize(&mut self, cols: u16, rows: u16) -> Result<()> {
        match &self.terminal {
            Some(master) => resize(master, cols, rows),
            None => Err(Error::new(ErrorKind::Unsupported, "resize").with_context("the command has no terminal")),
        }
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        // kill_on_drop only reaches the leader; the rest of the group goes too.
        self.kill_group();
    }
}
