//! Behaviour specific to the `local` transport: umask, user and group
//! switching, ownership of put files, process groups and error messages.
//!
//! The user checks take the branch that matches the euid they run under:
//! as root the switch must happen, otherwise it must be refused.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::{Group, getegid, geteuid};
use tether_core::{Command, ErrorKind, ExitStatus, FileKind, FileTransfer, PutOptions, StatOptions, Transport};
use tether_transport_local::{LocalHost, LocalOptions, local_host};
use tokio::io::AsyncReadExt;

fn host() -> Arc<LocalHost> {
    local_host(LocalOptions::default())
}

fn scratch() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap().to_string();
    (dir, base)
}

async fn put_bytes(host: &LocalHost, path: &str, data: &[u8], options: &PutOptions) -> tether_core::Result<u64> {
    let mut reader = data;
    host.put(&mut reader, Path::new(path), options).await
}

async fn stdout_of(host: &LocalHost, command: Command) -> String {
    let out = host.exec(&command.check(true)).await.unwrap();
    out.stdout_lossy().into_owned()
}

fn nogroup_gid() -> u32 {
    Group::from_name("nogroup").unwrap().expect("group nogroup exists").gid.as_raw()
}

#[tokio::test]
async fn umask_is_applied() {
    let host = host();
    assert_eq!(stdout_of(&host, Command::shell("umask").umask(0o027)).await, "0027\n");
    assert_eq!(stdout_of(&host, Command::shell("umask").umask(0o077)).await, "0077\n");
    let (_dir, base) = scratch();
    let made = format!("{base}/made");
    host.exec(&Command::argv(["touch", &made]).umask(0o077).check(true)).await.unwrap();
    let meta = host.stat(Path::new(&made), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!(meta.mode, 0o600);
}

#[tokio::test]
async fn runs_as_another_user_only_as_root() {
    let host = host();
    let as_nobody = |line: &str| Command::shell(line).user("nobody");
    if geteuid().is_root() {
        assert_eq!(stdout_of(&host, as_nobody("id -u")).await, "65534\n");
        assert_eq!(stdout_of(&host, as_nobody("id -g")).await, format!("{}\n", nogroup_gid()));
        assert_eq!(stdout_of(&host, as_nobody("id -u").group("daemon")).await, "65534\n");
        let daemon = Group::from_name("daemon").unwrap().unwrap().gid.as_raw();
        assert_eq!(stdout_of(&host, as_nobody("id -g").group("daemon")).await, format!("{daemon}\n"));
        // Root's supplementary groups must not leak into the switched process.
        assert_eq!(stdout_of(&host, as_nobody("id -G")).await, format!("{}\n", nogroup_gid()));
        assert_eq!(stdout_of(&host, Command::shell("id -u").user("65534")).await, "65534\n");
        assert_eq!(stdout_of(&host, as_nobody("echo $USER $LOGNAME $HOME")).await, "nobody nobody /nonexistent\n");
        assert_eq!(stdout_of(&host, as_nobody("echo $HOME").env("HOME", "/tmp")).await, "/tmp\n");
        assert_eq!(stdout_of(&host, Command::shell("id -g").group("nogroup")).await, format!("{}\n", nogroup_gid()));
        assert_eq!(stdout_of(&host, Command::shell("id -u").group("nogroup")).await, "0\n");
        // A uid the user database does not know has no primary group to default to.
        let err = host.exec(&Command::new("true").user("54321")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("uid 54321"), "{err}");
        let bare = Command::shell("id -u; id -g; id -G").user("54321").group("54321");
        assert_eq!(stdout_of(&host, bare).await, "54321\n54321\n54321\n");
    } else {
        let err = host.exec(&Command::shell("id -u").user("root")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let message = err.to_string();
        assert!(message.contains("running as user `root` needs root"), "{message}");
        assert!(message.contains(&format!("tether runs as uid {}", geteuid())), "{message}");
        if getegid().as_raw() != 0 {
            let err = host.exec(&Command::shell("id -g").group("root")).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("running as group `root` needs root"), "{err}");
        }
    }
    // Asking for oneself never needs root.
    let me = geteuid().to_string();
    assert_eq!(stdout_of(&host, Command::new("id").arg("-u").user(me.clone())).await, format!("{me}\n"));
}

#[tokio::test]
async fn unknown_user_or_group_is_not_found() {
    let host = host();
    let err = host.exec(&Command::new("true").user("tether-no-such-user")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("tether-no-such-user"), "{err}");
    let err = host.exec(&Command::new("true").group("tether-no-such-group")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("tether-no-such-group"), "{err}");
}

#[tokio::test]
async fn put_with_owner() {
    let host = host();
    let (_dir, base) = scratch();
    let path = format!("{base}/owned");
    if geteuid().is_root() {
        let options = PutOptions { owner: Some("nobody".into()), group: Some("nogroup".into()), ..Default::default() };
        put_bytes(&host, &path, b"mine", &options).await.unwrap();
        let meta = host.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
        assert_eq!((meta.uid, meta.gid, meta.mode), (Some(65534), Some(nogroup_gid()), 0o644));
        // Replacing it without naming an owner keeps the owner, as cp would.
        put_bytes(&host, &path, b"again", &PutOptions::default()).await.unwrap();
        let meta = host.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
        assert_eq!((meta.uid, meta.gid, meta.size), (Some(65534), Some(nogroup_gid()), 5));
        // chown drops set-id bits; the requested mode must survive it.
        let setuid = PutOptions { mode: Some(0o4755), owner: Some("65534".into()), ..Default::default() };
        put_bytes(&host, &path, b"suid", &setuid).await.unwrap();
        let meta = host.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
        assert_eq!((meta.uid, meta.mode), (Some(65534), 0o4755));
    } else {
        put_bytes(&host, &path, b"old", &PutOptions::default()).await.unwrap();
        let to_root = PutOptions { owner: Some("root".into()), ..Default::default() };
        let err = put_bytes(&host, &path, b"new", &to_root).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains(&path), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
    let err =
        put_bytes(&host, &path, b"x", &PutOptions { owner: Some("tether-no-such-user".into()), ..Default::default() })
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 1, "no temporary file left behind");
}

#[tokio::test]
async fn put_sets_mtime() {
    let host = host();
    let (_dir, base) = scratch();
    let path = format!("{base}/dated");
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    put_bytes(&host, &path, b"old news", &PutOptions { mtime: Some(mtime), ..Default::default() }).await.unwrap();
    let meta = host.stat(Path::new(&path), StatOptions::default()).await.unwrap().unwrap();
    assert_eq!(meta.mtime, Some(mtime));
}

#[tokio::test]
async fn get_of_a_directory_fails_clearly() {
    let host = host();
    let (_dir, base) = scratch();
    let mut sink = Vec::new();
    let err = host.get(Path::new(&base), &mut sink).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains(&format!("{base} is a directory")), "{err}");
    assert!(sink.is_empty());
}

#[tokio::test]
async fn errors_name_the_path() {
    let host = host();
    let (_dir, base) = scratch();
    let missing = format!("{base}/missing/file");
    let mut sink = Vec::new();
    let messages = [
        host.get(Path::new(&missing), &mut sink).await.unwrap_err(),
        host.list(Path::new(&missing)).await.unwrap_err(),
        host.remove(Path::new(&missing)).await.unwrap_err(),
        host.mkdir(Path::new(&missing), false).await.unwrap_err(),
        put_bytes(&host, &missing, b"x", &PutOptions::default()).await.unwrap_err(),
        host.rename(Path::new(&missing), Path::new(&format!("{base}/elsewhere"))).await.unwrap_err(),
    ];
    for err in messages {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains(&missing), "{err}");
    }
    // Under a file, a path does not exist either.
    put_bytes(&host, &format!("{base}/file"), b"x", &PutOptions::default()).await.unwrap();
    assert_eq!(host.stat(Path::new(&format!("{base}/file/below")), StatOptions::default()).await.unwrap(), None);
}

#[tokio::test]
async fn missing_program_or_directory_is_named() {
    let host = host();
    // A PATH entry the user may not search turns ENOENT into EACCES; keep to public ones.
    let err = host.exec(&Command::new("tether-no-such-program-x9").env("PATH", "/usr/bin:/bin")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("program `tether-no-such-program-x9`"), "{err}");
    let err = host.exec(&Command::new("true").cwd("/tether/no/such/dir")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("working directory `/tether/no/such/dir`"), "{err}");
    let other_shell = local_host(LocalOptions { shell: "/tether/no/sh".into(), ..Default::default() });
    let err = other_shell.exec(&Command::shell("true")).await.unwrap_err();
    assert!(err.to_string().contains("/tether/no/sh"), "{err}");
    // Through the shell the missing program is the shell's usual 127.
    let out = host.exec(&Command::shell("tether-no-such-program-x9")).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(127));
}

#[tokio::test]
async fn invalid_commands_are_rejected() {
    let err = host().exec(&Command::argv(Vec::<String>::new())).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = host().exec(&Command::new("true").umask(0o1000)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// True once `pid` is gone or a zombie.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_dead(pid: u32) {
    let started = Instant::now();
    while !is_dead(pid) {
        assert!(started.elapsed() < Duration::from_secs(5), "process {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn background_pid(process: &mut tether_core::Process) -> u32 {
    let stdout = process.stdout.as_mut().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).await.unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap().parse().unwrap()
}

#[tokio::test]
async fn kill_reaches_the_whole_process_group() {
    let host = host();
    let mut process = host.spawn(&Command::shell("sleep 30 & echo $!; wait")).await.unwrap();
    let grandchild = background_pid(&mut process).await;
    process.kill().await.unwrap();
    assert_eq!(process.wait().await.unwrap(), ExitStatus::Signal("KILL".into()));
    wait_dead(grandchild).await;
    let mut rest = Vec::new();
    let started = Instant::now();
    process.stdout.take().unwrap().read_to_end(&mut rest).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "stdout stayed open");
}

#[tokio::test]
async fn dropping_a_process_kills_its_group() {
    let host = host();
    let mut process = host.spawn(&Command::shell("sleep 30 & echo $!; wait")).await.unwrap();
    let grandchild = background_pid(&mut process).await;
    drop(process);
    wait_dead(grandchild).await;
}

#[tokio::test]
async fn timeout_with_a_background_child_returns() {
    let started = Instant::now();
    let command = Command::shell("sleep 30 & sleep 30; wait").timeout(Duration::from_millis(200));
    let err = host().exec(&command).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn stat_and_list_links() {
    let host = host();
    let (_dir, base) = scratch();
    put_bytes(&host, &format!("{base}/target"), b"abc", &PutOptions::default()).await.unwrap();
    std::os::unix::fs::symlink("target", format!("{base}/link")).unwrap();
    let link = format!("{base}/link");
    let meta = host.stat(Path::new(&link), StatOptions { follow_links: false, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.sha512), (FileKind::Link, None));
    let meta = host.stat(Path::new(&link), StatOptions { follow_links: true, sha512: true }).await.unwrap().unwrap();
    assert_eq!((meta.kind, meta.size), (FileKind::File, 3));
    assert!(meta.sha512.is_some_and(|digest| digest.starts_with("ddaf35a1")));
    let listing = host.list(Path::new(&base)).await.unwrap();
    let kinds: Vec<(&str, FileKind)> = listing.iter().map(|e| (e.name.to_str().unwrap(), e.metadata.kind)).collect();
    assert_eq!(kinds, [("link", FileKind::Link), ("target", FileKind::File)]);
    host.remove(Path::new(&link)).await.unwrap();
    assert!(host.stat(Path::new(&format!("{base}/target")), StatOptions::default()).await.unwrap().is_some());
}

#[tokio::test]
async fn put_over_a_directory_fails_and_cleans_up() {
    let host = host();
    let (_dir, base) = scratch();
    host.mkdir(Path::new(&format!("{base}/dir")), false).await.unwrap();
    let err = put_bytes(&host, &format!("{base}/dir"), b"x", &PutOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("{base}/dir")), "{err}");
    let names: Vec<_> = host.list(Path::new(&base)).await.unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["dir"]);
}
