//! Every scenario in `fixtures/scenarios/` runs against this workspace's
//! runner and must pass; its normalized transcript must be the same on two
//! runs and equal its snapshot (`snapshots/scenarios__transcript@<file>.snap`).
//! Review a changed transcript with `cargo insta review`.
//!
//! `SCENARIOS_ONCE=1` runs each scenario once and skips the two-run
//! comparison (for repeated runs such as mutation testing; the default and
//! CI run twice). `CONFORMANCE_REBUILD=1` rebuilds the runner first, so a
//! changed runner source is what gets judged.

use std::collections::BTreeMap;
use std::path::PathBuf;

use conformance::driver::{self, DriverConfig};
use conformance::scenario::Scenario;

/// Runs every scenario twice (once with `SCENARIOS_ONCE` set), a few at a
/// time, and returns the normalized transcript of each by file name, and
/// every failure.
fn run_everything() -> (BTreeMap<PathBuf, String>, Vec<String>) {
    let once = std::env::var_os("SCENARIOS_ONCE").is_some();
    let scenarios =
        Scenario::load_dir(&conformance::scenarios_dir()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        scenarios.len() >= 40,
        "only {} scenarios found",
        scenarios.len()
    );
    let config = DriverConfig::workspace().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        let mut tasks = tokio::task::JoinSet::new();
        for (path, scenario) in scenarios {
            let config = config.clone();
            let gate = gate.clone();
            tasks.spawn(async move {
                let _slot = gate.acquire_owned().await.unwrap();
                let first = driver::run(&scenario, &config).await;
                let second = if once {
                    None
                } else {
                    Some(driver::run(&scenario, &config).await)
                };
                (path, first, second)
            });
        }
        let mut texts = BTreeMap::new();
        let mut problems = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (path, first, second) = joined.unwrap();
            for outcome in std::iter::once(&first).chain(second.as_ref()) {
                if let Some(failure) = &outcome.failure {
                    problems.push(format!(
                        "{}: {failure}\n  transcript tail:\n{}\n  runner log tail:\n{}",
                        outcome.name,
                        outcome.transcript_tail(8),
                        tail(&outcome.runner_log, 15)
                    ));
                }
            }
            if let Some(second) = second.filter(|second| {
                first.passed() && second.passed() && first.normalized != second.normalized
            }) {
                problems.push(format!(
                    "{}: two runs gave different transcripts:\n--- first\n{}--- second\n{}",
                    first.name, first.normalized, second.normalized
                ));
            }
            texts.insert(path, first.normalized);
        }
        (texts, problems)
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn transcript() {
    let (texts, problems) = run_everything();
    // Failed steps are reported first; the snapshots are still compared, so
    // a broken rule shows both where a step failed and how the transcript
    // changed.
    if !problems.is_empty() {
        eprintln!(
            "{} problem(s):\n\n{}\n",
            problems.len(),
            problems.join("\n\n")
        );
    }
    let mut checked = 0;
    insta::glob!("../../fixtures/scenarios", "*.toml", |path| {
        let text = texts
            .get(path)
            .unwrap_or_else(|| panic!("{} was not run", path.display()));
        insta::assert_snapshot!(text);
        checked += 1;
    });
    assert_eq!(checked, texts.len(), "every scenario has a snapshot check");
    assert!(
        problems.is_empty(),
        "{} scenario problem(s), listed above",
        problems.len()
    );
}
