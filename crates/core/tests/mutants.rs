//! The suite's own test: every deliberately broken transport must fail it.
//! Each mutant wraps `mem` (which passes the whole suite, see `memory.rs`)
//! and gets one thing wrong; a mutant that passes every check is a hole in
//! the suite.

use std::sync::Arc;

use tether_core::conformance::mutants::{Mutant, MutantFactory};
use tether_core::conformance::{MemoryServices, Subject, run_checks};
use tether_core::memory::MemoryHost;
use tether_core::{Host, HostConfig, RegistryFactory};

/// A fresh `mem` host whose connections carry `mutant`.
async fn subject(mutant: Mutant) -> Subject {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("mutant-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let memory = MemoryHost::named(&name);
    tether_core::FileTransfer::mkdir(&memory, "/scratch", false).await.unwrap();
    let mut config = HostConfig::new(name.clone(), "mem", "mem");
    config.address = Some(name);
    let factory = MutantFactory::new(Arc::new(RegistryFactory::global()), mutant);
    let host = Arc::new(Host::with_factory(config, Arc::new(factory)));
    let mut subject = Subject::of_host(host, "/scratch");
    subject.services = Some(Arc::new(MemoryServices::new(memory.clone())));
    let (sever, link) = (memory.clone(), memory.clone());
    subject.sever = Some(Box::new(move || sever.drop_connections()));
    subject.symlink = Some(Box::new(move |target, path| link.symlink(target, path)));
    subject.files_in_memory = true;
    subject.guard = Box::new(memory);
    subject
}

/// The check meant to catch each mutant: a new mutant does not compile
/// until it is given one, and then it is tested below.
fn catcher(mutant: Mutant) -> &'static str {
    match mutant {
        Mutant::PutIgnoresMode => "files::mode_kept",
        Mutant::RenameWillNotOverwrite => "files::rename_replaces",
        Mutant::MergesStderr => "exec::stdout_and_stderr_apart",
        Mutant::KillDoesNothing => "exec::kill_ends_the_process",
        Mutant::PutDropsLastByte => "files::round_trip_100_mib",
        Mutant::ListDropsSpacedNames => "files::hostile_names",
        Mutant::LosesHalfClose => "tunnel::client_half_close",
    }
}

/// Runs the whole suite, in order, against each mutant at once until a
/// check fails: none may get through, and the first check to fail must be
/// the one meant to catch it (not an accident earlier in the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_fails_the_suite() {
    let runs = Mutant::ALL
        .map(|mutant| tokio::spawn(async move { (mutant, run_checks(|| subject(mutant), &[], true).await) }));
    for run in runs {
        let (mutant, failures) = run.await.unwrap();
        let Some(first) = failures.first() else {
            panic!("{mutant:?} passed every check: the suite has a hole");
        };
        assert_eq!(first.check, catcher(mutant), "{mutant:?} was caught by another check: {}", first.message);
    }
}

/// The unbroken `mem` passes the whole suite through the same runner, so a
/// mutant's failure is its own doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unbroken_transport_passes_through_the_runner() {
    let failures = run_checks(
        || async {
            let mut subject = subject(Mutant::PutIgnoresMode).await;
            // Same host, a factory with no mutant.
            let config = subject.host.config().clone();
            subject.host = Arc::new(Host::with_factory(config, Arc::new(RegistryFactory::global())));
            subject
        },
        &[],
        false,
    )
    .await;
    assert!(failures.is_empty(), "{failures:#?}");
}
