//! The suite's own test: every deliberately broken transport must fail it.
//! Each mutant wraps `mem` (which passes the whole suite, see `memory.rs`)
//! and gets one thing wrong; a mutant that passes every check is a hole in
//! the suite.

use std::sync::Arc;

use tether_core::conformance::mutants::{Mutant, MutantFactory};
use tether_core::conformance::{Subject, memory_subject, run_checks};
use tether_core::{Host, RegistryFactory};

/// A fresh `mem` host whose connections carry `mutant`.
async fn subject(mutant: Mutant) -> Subject {
    memory_subject(Arc::new(MutantFactory::new(Arc::new(RegistryFactory::global()), mutant))).await
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
