//! `ftp` against a real ProFTPD, which lists `MLST` (and `MFMT`) in `FEAT`:
//! list and put take the machine-readable path (`MLSD`, `MFMT`), as
//! ProFTPD's command log shows, and the facts read are the real file's.
//! Stat reads the parent's `LIST` even here, because ProFTPD's `MLST`
//! follows a link and mixes its facts with the target's. ProFTPD cuts names
//! at a NUL, which FTP uses for a newline in a name: such names are refused
//! there rather than sent to a shorter name. Every other file check of the
//! conformance suite runs against it.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{proftpd_host_for, start_proftpd};
use tether_core::{FileKind, FileTransfer, Host, Metadata, PutOptions, StatOptions};
use tether_test_servers::Proftpd;

/// Outer bound on every step, so a hang fails the test instead of blocking it.
const LIMIT: Duration = Duration::from_secs(60);

/// 2021-02-03 04:05:06 UTC: whole seconds, as `MFMT` sets them.
const MTIME_SECS: u64 = 1_612_325_106;

async fn files_of(host: &Host) -> Arc<dyn FileTransfer> {
    tokio::time::timeout(LIMIT, host.files()).await.expect("connect within the limit").unwrap()
}

/// The commands in ProFTPD's command log (`ExtendedLog … ALL`, default
/// format `host ident user [time] "command" code bytes`), each with its reply
/// code: `("MLST /path", "250")`.
fn commands(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|line| {
            let start = line.find('"')?;
            let end = line.rfind('"')?;
            let code = line.get(end + 1..)?.split_whitespace().next()?;
            Some((line.get(start + 1..end)?.to_string(), code.to_string()))
        })
        .collect()
}

/// Waits (briefly) until ProFTPD's log holds `command` answered with
/// `code`: a command is logged just after its reply is sent, so the line
/// may trail the reply Tether already read.
async fn assert_logged(proftpd: &Proftpd, command: &str, code: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = proftpd.log();
        if commands(&log).iter().any(|(c, r)| c == command && r == code) {
            return;
        }
        assert!(Instant::now() < deadline, "ProFTPD's log has no {command:?} answered {code}:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the local filesystem says of `path` (without following links), in
/// Tether's terms; mtimes in whole seconds, as MLSx facts give them, and no
/// size for a directory (ProFTPD sends no `size` fact for one).
fn real_metadata(path: &Path) -> Metadata {
    let real = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let kind = if real.is_dir() {
        FileKind::Dir
    } else if real.is_file() {
        FileKind::File
    } else {
        panic!("{} is neither a file nor a directory", path.display())
    };
    Metadata {
        kind,
        size: if kind == FileKind::Dir { 0 } else { real.len() },
        mode: real.permissions().mode() & 0o7777,
        uid: None,
        gid: None,
        mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(real.mtime()).unwrap())),
        sha512: None,
    }
}

/// Tether's metadata with what MLSx does not carry (owners) left out, for
/// comparing with [`real_metadata`].
fn comparable(mut metadata: Metadata) -> Metadata {
    (metadata.uid, metadata.gid) = (None, None);
    metadata
}

#[tokio::test]
async fn stat_list_and_put_use_mlst_mlsd_and_mfmt_and_report_the_real_facts() {
    let proftpd = start_proftpd(Proftpd::builder()).await;
    let host = Host::new(proftpd_host_for(&proftpd)).unwrap();
    let files = files_of(&host).await;
    let dir = proftpd.scratch_dir();

    // A put with a mode and an mtime: SITE CHMOD and MFMT (not MDTM).
    let path = dir.join("facts of a file.bin");
    let data = vec![7u8; 12_345];
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME_SECS);
    let options = PutOptions { mode: Some(0o640), mtime: Some(mtime), ..Default::default() };
    let mut source = data.as_slice();
    let written = tokio::time::timeout(LIMIT, files.put(&mut source, &path, &options)).await.unwrap().unwrap();
    assert_eq!(written, data.len() as u64);
    let log = proftpd.log();
    let mfmt = commands(&log)
        .into_iter()
        .find(|(c, _)| c.starts_with("MFMT "))
        .unwrap_or_else(|| panic!("the put set its mtime with MFMT:\n{log}"));
    assert!(mfmt.0.starts_with("MFMT 20210203040506 ") && mfmt.1 == "213", "{mfmt:?}\n{log}");
    assert!(!commands(&log).iter().any(|(c, _)| c.starts_with("MDTM 2")), "no two-argument MDTM:\n{log}");
    let real = real_metadata(&path);
    assert_eq!(
        (real.kind, real.size, real.mode, real.mtime),
        (FileKind::File, data.len() as u64, 0o640, Some(mtime)),
        "the file ProFTPD wrote"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), proftpd.uid(), "written as the login");

    // stat: the real file's facts (the mtime exact, from MDTM).
    let stat = |path: &Path| {
        let path = path.to_path_buf();
        let files = files.clone();
        async move {
            tokio::time::timeout(LIMIT, files.stat(&path, StatOptions::default())).await.unwrap().unwrap().unwrap()
        }
    };
    assert_eq!(comparable(stat(&path).await), real, "stat of the file");
    let sub = dir.join("a directory");
    tokio::time::timeout(LIMIT, files.mkdir(&sub, false)).await.unwrap().unwrap();
    let (seen, real_dir) = (stat(&sub).await, real_metadata(&sub));
    assert_eq!((seen.kind, seen.mode), (real_dir.kind, real_dir.mode), "stat of a directory");

    // list: MLSD, never LIST, with the same facts for every entry.
    let listing = tokio::time::timeout(LIMIT, files.list(&dir)).await.unwrap().unwrap();
    let listed: Vec<_> = listing.into_iter().map(|entry| (entry.name, comparable(entry.metadata))).collect();
    assert_eq!(
        listed,
        vec![("a directory".into(), real_metadata(&sub)), ("facts of a file.bin".into(), real)],
        "the listing"
    );
    assert_logged(&proftpd, "MLSD", "226").await;
}

#[tokio::test]
async fn a_newline_in_a_name_is_refused_rather_than_cut_short() {
    let proftpd = start_proftpd(Proftpd::builder()).await;
    let host = Host::new(proftpd_host_for(&proftpd)).unwrap();
    let files = files_of(&host).await;
    let dir = proftpd.scratch_dir();
    // The precondition: the name it would be cut to holds something else.
    std::fs::write(dir.join("new"), b"another file").unwrap();
    let mut source = &b"x"[..];
    let err = files.put(&mut source, &dir.join("new\nline"), &PutOptions::default()).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::Unsupported, "{err}");
    let err = files.mkdir(&dir.join("new\nline"), false).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::Unsupported, "{err}");
    // Read from the listing, such a name is simply not there.
    assert_eq!(files.stat(&dir.join("new\nline"), StatOptions::default()).await.unwrap(), None);
    let err = files.remove(&dir.join("new\nline")).await.unwrap_err();
    assert_eq!(err.kind(), tether_core::ErrorKind::NotFound, "{err}");
    assert_eq!(std::fs::read(dir.join("new")).unwrap(), b"another file");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["new"]);
}

/// The conformance suite's file checks, but for `hostile_names`, whose
/// `new\nline` ProFTPD cannot carry (the test above shows it is refused).
mod conformance {
    use tether_core::conformance::files;

    async fn subject() -> tether_core::conformance::Subject {
        super::common::proftpd_subject().await
    }

    macro_rules! checks {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                files::$check(&subject().await).await;
            }
        )*};
    }

    checks!(
        round_trip_empty,
        round_trip_one_byte,
        round_trip_100_mib,
        mode_kept,
        overwrite_keeps_mode,
        mtime_kept,
        owner_kept,
        stat_describes,
        stat_sha512,
        stat_links,
        missing_path_not_found,
        put_into_missing_dir_fails,
        failed_put_keeps_destination,
        short_put_keeps_destination,
        abandoned_put_leaves_nothing,
        directories,
        nested_mkdir,
        rename_replaces,
        remove_non_empty_dir,
        byte_names,
        long_and_unicode_names,
        large_file_streams,
    );
}

#[test]
fn command_log_lines_are_split_into_command_and_code() {
    let log = "127.0.0.1 UNKNOWN tetherftp [07/Dec/2026:18:31:20 +0000] \"MLST /tmp/a \"q\" b\" 250 -\n\
               127.0.0.1 UNKNOWN tetherftp [07/Dec/2026:18:31:20 +0000] \"MLSD\" 226 509\n\
               --- ProFTPD's stderr ---\n";
    assert_eq!(
        commands(log),
        vec![("MLST /tmp/a \"q\" b".to_string(), "250".to_string()), ("MLSD".to_string(), "226".to_string())]
    );
}
