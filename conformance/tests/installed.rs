//! An installed `runner-conformance` works outside the workspace: a copy of
//! the built program, in a temporary directory with a scrubbed environment
//! and no workspace around it, lists the scenarios built into it, runs some
//! against this workspace's runner (its sessions' worker being the copy's
//! own `worker` subcommand), and without `--runner-cmd` says what to pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built program, copied into `dir` (the copy is not in a cargo target
/// directory, so it cannot build or find the workspace's runner).
fn installed_copy(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let copy = bin.join("runner-conformance");
    std::fs::copy(env!("CARGO_BIN_EXE_runner-conformance"), &copy).unwrap();
    copy
}

/// Runs the copy with `args`, in `dir`, with only `PATH` and `HOME` set.
fn run(copy: &Path, dir: &Path, args: &[&str]) -> Output {
    output(
        Command::new(copy)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", dir),
    )
}

/// Runs `cmd` to its end. A program just written can be "busy" (`ETXTBSY`)
/// for a moment: a child that another test thread forks meanwhile holds the
/// copy's write descriptor until it executes. Such a start is tried again,
/// 50 times at most.
fn output(cmd: &mut Command) -> Output {
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(err) if err.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_installed_copy_works_outside_the_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let copy = installed_copy(&dir);

    let list = run(&copy, &dir, &["--list"]);
    assert!(list.status.success(), "--list: {}", text(&list.stderr));
    let listed = text(&list.stdout);
    let embedded = conformance::scenario::EMBEDDED.len();
    assert_eq!(listed.lines().count(), embedded, "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("spawn-worker-environment ")),
        "{listed}"
    );

    let missing = run(&copy, &dir, &["--scenario", "control-ping"]);
    assert_eq!(missing.status.code(), Some(64), "{}", text(&missing.stderr));
    let message = text(&missing.stderr);
    assert!(
        message.contains("--runner-cmd is required") && message.contains("--runner-cmd /path/to/"),
        "{message}"
    );

    let runner = conformance::workspace_binaries(&[("pizzapi-runner", "pizzapi-runner")])
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0);
    // The scenarios about what the worker sees and prints (two of them are
    // at the pizzapi-runner level, which --runner-cmd leaves out unless
    // asked).
    let ran = run(
        &copy,
        &dir,
        &[
            "--runner-cmd",
            &runner,
            "--scenario",
            "spawn-*worker*",
            "--level",
            "contract,pizzapi-runner",
            "--jobs",
            "1",
        ],
    );
    let stdout = text(&ran.stdout);
    assert!(ran.status.success(), "{stdout}\n{}", text(&ran.stderr));
    assert!(
        stdout.contains("| spawn-worker-environment | pass |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| spawn-forwards-worker-events | pass |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| spawn-worker-environment-scrubbed | pass |"),
        "{stdout}"
    );
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
}

#[test]
fn the_worker_subcommand_is_the_fixture_worker() {
    let dir = tempfile::tempdir().unwrap();
    let copy = installed_copy(dir.path());
    let records = dir.path().join("records");
    std::fs::create_dir(&records).unwrap();
    let out = output(
        Command::new(&copy)
            .arg("worker")
            .env_clear()
            .env("FIXTURE_RECORD_DIR", &records)
            .env("PIZZAPI_SESSION_ID", "s1")
            .env("FIXTURE_EVENTS", r#"[{"type":"hello"}]"#)
            .env("FIXTURE_EXIT_CODE", "3"),
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"type\":\"hello\"}\nfixture-worker: this line is not JSON\n"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records.join("s1.json")).unwrap()).unwrap();
    assert_eq!(record["env"]["PIZZAPI_SESSION_ID"], "s1");
}
