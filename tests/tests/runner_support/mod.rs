//! Running the built `pizzapi-runner` binary the way a user does: its own
//! HOME, a clean environment, logs to a file, and a guard that leaves no
//! process behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::process::{Child, Command};

pub mod js_relay;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// The `pizzapi-runner` binary of this build, built first if needed.
pub fn runner_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("pizzapi-runner", "pizzapi-runner"))
        .clone()
}

/// The `fixture-worker` binary (a scriptable session worker).
pub fn worker_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("fixture-worker", "fixture-worker"))
        .clone()
}

/// The `mock-relay` binary.
pub fn mock_relay_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("mock-relay", "mock-relay"))
        .clone()
}

/// The `runner-conformance` binary, the conformance suite's runner judge
/// (it runs the runner and worker that sit beside it, so build those first).
pub fn conformance_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_binary("conformance", "runner-conformance"))
        .clone()
}

/// `tests/js/`: the pinned JavaScript Socket.IO implementation and the
/// Node programs of the interop tests.
pub fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the pinned packages of `tests/js` when `node_modules` is missing.
pub fn ensure_node_modules() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    let installed = ["socket.io", "playwright-core"]
        .iter()
        .all(|p| js_dir().join("node_modules").join(p).exists());
    if *done || installed {
        *done = true;
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(js_dir())
        .status()
        .expect("running npm ci in tests/js (Node.js and npm are needed for this test)");
    assert!(status.success(), "npm ci failed in tests/js");
    *done = true;
}

/// The path of `bin` of `package` for this test build, built when missing.
///
/// Test executables live in `target/<profile>/deps/`; binaries sit in
/// `target/<profile>/`. `cargo test --workspace` builds every binary of the
/// workspace before it runs a test, with the workspace's features. A
/// `cargo build -p <package>` here would resolve the features of that one
/// package and rebuild much of the dependency tree, so it only runs when the
/// binary is not there at all (e.g. after `cargo test -p e2e-tests` on a
/// fresh target directory; run `cargo build` first after changing a binary).
fn build_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let path = profile_dir.join(bin);
    if path.exists() {
        return path;
    }
    let target_dir = profile_dir.parent().expect("target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "cargo build -p {package} failed");
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// A runner process. Dropping it kills it (if still running) and reaps it.
pub struct RunnerProcess {
    pub child: Child,
    pid: u32,
    pub log: PathBuf,
    status: Option<ExitStatus>,
}

/// A clean environment for a runner: only PATH, HOME and the log filter.
pub fn command(home: &Path) -> Command {
    command_through(Command::new(runner_binary()), home)
}

/// `cmd` (which runs the runner, perhaps through a wrapper) with the clean
/// environment of [`command`].
pub fn command_through(mut cmd: Command, home: &Path) -> Command {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

impl RunnerProcess {
    /// Starts `cmd`, logging stdout and stderr to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> RunnerProcess {
        let file = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawning pizzapi-runner");
        let pid = child.id().expect("a fresh child has a pid");
        RunnerProcess {
            child,
            pid,
            log: log.to_owned(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub async fn wait(&mut self) -> i32 {
        if self.status.is_none() {
            let status = tokio::time::timeout(WAIT, self.child.wait()).await;
            let Ok(status) = status else {
                panic!("pizzapi-runner did not exit; log:\n{}", self.log_text());
            };
            self.status = Some(status.expect("waiting for pizzapi-runner"));
        }
        let status = self.status.expect("exited");
        assert_process_gone(self.pid);
        status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}"))
    }

    /// Sends a signal.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("sending a signal");
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        if self.status.is_none() {
            // kill_on_drop does the rest; tokio reaps the child.
            let _ = self.child.start_kill();
        }
    }
}

/// Whether `pid` names a live process (a zombie counts as gone).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

/// After a runner was reaped its pid must not name a live runner.
pub fn assert_process_gone(pid: u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        !is_alive(pid) || !stat.contains("pizzapi-runner"),
        "process {pid} is still there: {stat}"
    );
}
