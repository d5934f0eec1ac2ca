//! `nc` over `ssh` when session channels are scarce: a transfer holds one
//! channel at a time (its listener script checks readiness and hashes on
//! that same channel), so transfers beyond `max_sessions` queue for a slot
//! instead of failing or deadlocking.

mod common;

use std::sync::Arc;

use common::*;
use tether_core::{Host, OptionSource};
use tether_test_servers::Sshd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_beyond_max_sessions_queue() {
    let sshd = start_sshd(Sshd::builder().max_sessions(2)).await;
    let mut config = ssh_host_config(&sshd);
    config.options.set("ssh_options", "max_sessions", 2, OptionSource::Api).unwrap();
    let host = Arc::new(Host::new(config).unwrap());
    let files = files_of(&host).await;
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for index in 0..6u64 {
        let files = files.clone();
        let path = dir.path().join(format!("file {index}"));
        tasks.push(tokio::spawn(async move {
            let data = tether_core::conformance::random_bytes(2 << 20, index);
            put(&*files, &path, &data).await.unwrap_or_else(|e| panic!("put {index}: {e}"));
            let back = get(&*files, &path).await.unwrap_or_else(|e| panic!("get {index}: {e}"));
            assert!(back == data, "file {index} differs");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(leftovers(dir.path()).len(), 6);
}
