//! Stopping a server together with every process it started.
//!
//! Killing only the server's main process is not enough: sshd forks one
//! process per connection and each of those calls `setsid`, so they are in
//! neither the server's process group nor its session, and they keep serving
//! open connections after the listener died. A test that simulates a crash
//! needs those connections to drop too, and a finished test must not leave
//! sessions behind. So the harness walks `/proc` for the descendants.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Sends SIGKILL to `root` and all its descendants.
///
/// Each process is first stopped (SIGSTOP) and the tree read again until no
/// new process appears: a stopped process cannot fork, so no child escapes
/// between reading the tree and killing it. Killing a parent first would
/// instead re-parent its children to init, where they could no longer be
/// found.
pub(crate) fn kill_tree(root: u32) -> io::Result<()> {
    let mut stopped = BTreeSet::new();
    loop {
        let tree = descendants(root)?;
        let new: Vec<u32> = tree.difference(&stopped).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            signal(pid, Signal::SIGSTOP)?;
            stopped.insert(pid);
        }
    }
    for &pid in &stopped {
        signal(pid, Signal::SIGKILL)?;
    }
    Ok(())
}

/// Stops (`freeze = true`, SIGSTOP) or resumes (SIGCONT) `root` and all its
/// descendants: a frozen server keeps its TCP connections open but answers
/// nothing, as a hung or unplugged peer does.
pub(crate) fn freeze_tree(root: u32, freeze: bool) -> io::Result<()> {
    let sig = if freeze { Signal::SIGSTOP } else { Signal::SIGCONT };
    for pid in descendants(root)? {
        signal(pid, sig)?;
    }
    Ok(())
}

/// Sends `sig`, treating a process that already exited as done.
fn signal(pid: u32, sig: Signal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("pid {pid} out of range")));
    };
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// `root` and every process below it, from the parent links in `/proc/*/stat`.
fn descendants(root: u32) -> io::Result<BTreeSet<u32>> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // A process may exit while we read; its file is then gone, which is fine.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some(ppid) = parent_of(&stat) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut tree = BTreeSet::from([root]);
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if tree.insert(child) {
                queue.push(child);
            }
        }
    }
    Ok(tree)
}

/// The parent pid from a `/proc/PID/stat` line: `pid (comm) state ppid …`.
/// The command name may contain spaces and parentheses, so parse after the
/// last `)`.
fn parent_of(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parent_of;

    #[test]
    fn parent_of_handles_odd_command_names() {
        assert_eq!(parent_of("42 (sshd) S 7 42 42 0 -1"), Some(7));
        assert_eq!(parent_of("42 (a) b) (c) R 9 1 1"), Some(9));
        assert_eq!(parent_of("garbage"), None);
    }
}
