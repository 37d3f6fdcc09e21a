//! The conformance suite judged against a second, independent runner:
//! `tests/js/reference-runner.js`, written from the protocol reference only
//! (socket.io-client 4.8, Node's standard library, a Python pty helper).
//! It must pass every `contract` and `extension` scenario: a scenario that
//! fails it either found a fault of that runner or asserts more than its
//! level promises, and the log of the failing scenario says which.

mod runner_support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use runner_support::{conformance_binary, ensure_node_modules, js_dir, worker_binary};
use tokio::process::Command;

/// The whole run takes about two minutes on two cores.
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// A command-line word for `runner-conformance`, which splits like a shell.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    assert!(!text.contains('\''), "a path with a quote: {text}");
    format!("'{text}'")
}

/// `N passed, M failed`, the summary's last line.
fn totals(stdout: &str) -> Option<(usize, usize)> {
    let line = stdout.lines().rev().find(|l| l.ends_with(" failed"))?;
    let (passed, failed) = line.strip_suffix(" failed")?.split_once(" passed, ")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

#[tokio::test]
async fn the_js_reference_runner_passes_every_contract_and_extension_scenario() {
    ensure_node_modules();
    let runner = format!("node {}", quoted(&js_dir().join("reference-runner.js")));
    let worker = quoted(&worker_binary());
    let mut cmd = Command::new(conformance_binary());
    cmd.args(["--runner-cmd", &runner, "--worker-cmd", &worker])
        .args([
            "--level",
            "contract,extension",
            "--jobs",
            "2",
            "--show-logs",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("runner-conformance did not finish within {RUN_LIMIT:?}"))
        .expect("running runner-conformance");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = format!("{stdout}\n--- stderr ---\n{stderr}");
    let (passed, failed) =
        totals(&stdout).unwrap_or_else(|| panic!("no summary line in the output:\n{report}"));
    assert!(
        output.status.success(),
        "runner-conformance exited with {}:\n{report}",
        output.status
    );
    assert_eq!(failed, 0, "scenarios failed:\n{report}");
    assert!(passed > 0, "no scenario ran:\n{report}");
    println!("{stdout}");
}

#[test]
fn the_summary_line_is_read() {
    assert_eq!(totals("| table |\n58 passed, 0 failed\n"), Some((58, 0)));
    assert_eq!(totals("57 passed, 1 failed"), Some((57, 1)));
    assert_eq!(totals("nothing"), None);
}
