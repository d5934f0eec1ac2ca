//! The `tether` binary with an FTP host, as a user runs it: `ftp` is a
//! listed scheme, `put`, `get` and `stat` work with `transfer: "ftp"` from
//! `hosts.json`, and a mistyped `ftp_options` key is refused by name.

use std::path::Path;

use serde_json::json;
use tether_test_servers::Vsftpd;

mod support;
use support::tether;

fn inventory(dir: &Path, vsftpd: &Vsftpd, options: serde_json::Value) -> std::path::PathBuf {
    let hosts = dir.join("hosts.json");
    let entry = json!({
        "ftpbox": {
            "ip": vsftpd.ip().to_string(),
            "transfer": "ftp",
            "creds": {vsftpd.user(): vsftpd.password()},
            "ftp_options": options,
        }
    });
    std::fs::write(&hosts, entry.to_string()).unwrap();
    hosts
}

#[test]
fn put_get_and_stat_through_the_cli() {
    let vsftpd = Vsftpd::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let hosts = inventory(dir.path(), &vsftpd, json!({"port": vsftpd.port()}));

    let out = tether(&hosts, &["--json", "schemes"]);
    let schemes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ftp = schemes.as_array().unwrap().iter().find(|s| s["scheme"] == "ftp").expect("ftp is linked");
    assert_eq!((ftp["options_table"].as_str(), ftp["capabilities"].clone()), (Some("ftp_options"), json!(["files"])));

    let local = dir.path().join("local file");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote = vsftpd.scratch_dir().join("via the cli");
    let (local_arg, remote_arg) = (local.to_str().unwrap(), remote.to_str().unwrap());
    let out = tether(&hosts, &["put", "ftpbox", local_arg, remote_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&remote).unwrap(), data);

    let out = tether(&hosts, &["--json", "stat", "ftpbox", remote_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((stat["kind"].as_str(), stat["size"].as_u64()), (Some("file"), Some(data.len() as u64)), "{stat}");

    let back = dir.path().join("back");
    let out = tether(&hosts, &["get", "ftpbox", remote_arg, back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // A missing remote file: one line, not found, nothing written.
    let missing = vsftpd.scratch_dir().join("missing");
    let out = tether(&hosts, &["get", "ftpbox", missing.to_str().unwrap(), dir.path().join("none").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found") && stderr.lines().count() == 1, "{stderr}");
    assert!(!dir.path().join("none").exists());
}

#[test]
fn a_mistyped_ftp_option_is_refused_by_name() {
    let vsftpd = Vsftpd::start().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let hosts = inventory(dir.path(), &vsftpd, json!({"port": vsftpd.port(), "extra": {"ca_fil": "/etc/ssl/x.pem"}}));
    let out = tether(&hosts, &["config", "ftpbox"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ca_fil"), "{stderr}");
    let hosts = inventory(dir.path(), &vsftpd, json!({"port": vsftpd.port(), "write_speed_limit": 0}));
    let out = tether(&hosts, &["config", "ftpbox"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("write_speed_limit"), "{stderr}");
}
