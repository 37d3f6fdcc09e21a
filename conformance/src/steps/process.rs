//! Steps about processes: starting the runner (again), signalling it,
//! waiting for its exit, and looking at the workers it spawned (their
//! records, written by the fixture worker, and whether they still run).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;

use super::{Invalid, yes};
use crate::driver::{DEFAULT_EXPECT, Run, RunnerError, StartError, is_alive, poll};
use crate::template::{UnknownPlaceholder, field};

const DEFAULT_EXIT: Duration = Duration::from_secs(10);

/// Wait for the runner process to exit: with `code`, or with any non-zero
/// code (`nonzero = true`, for where the reference says only that the
/// runner stops on an error). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectExit {
    /// The expected exit code.
    pub code: Option<i32>,
    /// Any exit code but 0 (a signal counts as non-zero).
    #[serde(default)]
    pub nonzero: bool,
    /// Any exit at all (for where the reference says only that the runner
    /// stops, not how).
    #[serde(default)]
    pub any: bool,
    /// How long to wait (default 10000 ms).
    pub timeout_ms: Option<u64>,
}

/// Start the runner again (same home, state file and identity), e.g. after
/// it exited, or a second instance beside a running one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRunner {
    /// Wait for its registration (default true).
    #[serde(default = "yes")]
    pub wait_registered: bool,
}

/// Send a signal to the runner process (`do = "signal"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSignal {
    /// `SIGTERM`, `SIGINT` or `SIGKILL`.
    pub signal: RunnerSignal,
}

/// A signal a scenario may send to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RunnerSignal {
    /// Terminate (graceful shutdown, exit 0).
    #[serde(rename = "SIGTERM")]
    Term,
    /// Interrupt (graceful shutdown, exit 0).
    #[serde(rename = "SIGINT")]
    Int,
    /// Kill (no shutdown at all).
    #[serde(rename = "SIGKILL")]
    Kill,
}

/// Wait for the fixture worker of a session to write its record, then set
/// the placeholders `worker_pid`, `grandchild_pid` (when it has one) and
/// `worker_cwd`, and `worker_env_<NAME>` for each `PIZZAPI_` variable it
/// saw.
///
/// Placeholders set by an earlier `read_worker` are cleared first, so a
/// variable the new record lacks is absent. With `alive = true` only a
/// record whose worker is still running counts, so after a restart (code
/// 43) the record of the new worker is read, not its predecessor's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadWorker {
    /// The session id (placeholders allowed).
    pub session: String,
    /// How long to wait for the record (default 5000 ms).
    pub timeout_ms: Option<u64>,
    /// Wait for the record of a live worker.
    #[serde(default)]
    pub alive: bool,
}

/// Check a process recorded by the fixture worker (or captured).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckProcess {
    /// The pid, usually a placeholder such as `{worker_pid}`.
    pub pid: String,
    /// Whether it must be alive.
    pub alive: bool,
    /// How long it may take to get there (default 5000 ms).
    pub timeout_ms: Option<u64>,
}

/// Read the runner's peak resident memory so far (`VmHWM` of the latest
/// runner process, in KiB) into a placeholder, for a later `check_memory`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveMemory {
    /// The placeholder's name, without braces.
    #[serde(rename = "as")]
    pub name: String,
}

/// Require the runner's peak resident memory (`VmHWM`) to be at most
/// `max_growth_mib` above what a `save_memory` step read: whatever happened
/// in between (a flood) never made the runner that much larger, even for a
/// moment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckMemory {
    /// The placeholder a `save_memory` step filled.
    pub since: String,
    /// The growth allowed, in MiB.
    pub max_growth_mib: u64,
}

/// Why a process step did not hold.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// There is no runner process to wait for or signal.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The runner could not be started again.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A placeholder in the step has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// The runner was still running when the time was up.
    #[error("the runner did not exit within {0:?}")]
    NoExit(Duration),
    /// Waiting for the runner's exit failed.
    #[error("waiting for the runner: {0}")]
    Wait(std::io::Error),
    /// The runner exited, but not as expected.
    #[error("expected {wanted}, got {status}\n{log}")]
    WrongExit {
        /// What was expected (`exit code 0`, `a non-zero exit`).
        wanted: String,
        /// How it exited.
        status: ExitStatus,
        /// The runners' logs.
        log: String,
    },
    /// The signal could not be sent.
    #[error("signal: {0}")]
    Signal(nix::Error),
    /// The runner's memory could not be read.
    #[error("cannot read the memory of runner process {pid}: {reason}")]
    Memory {
        /// The process.
        pid: u32,
        /// Why.
        reason: String,
    },
    /// The runner grew more than allowed.
    #[error(
        "the runner's peak resident memory grew by {grown_kib} KiB (from {before_kib} to {now_kib} KiB), more than {allowed_mib} MiB"
    )]
    Grew {
        /// What `save_memory` read.
        before_kib: u64,
        /// What it is now.
        now_kib: u64,
        /// The difference.
        grown_kib: u64,
        /// The allowed growth.
        allowed_mib: u64,
    },
    /// The `pid` field, filled in, is not a number.
    #[error("{0:?} is not a pid")]
    NotAPid(String),
    /// The process did not reach the expected state in time.
    #[error("process {pid} is {} after {timeout:?}", if *.alive { "gone" } else { "still alive" })]
    ProcessState {
        /// The process.
        pid: i32,
        /// Whether it had to be alive.
        alive: bool,
        /// How long the step waited.
        timeout: Duration,
    },
    /// The worker's record did not appear in time.
    #[error("no {}record {} within {timeout:?}", if *.alive { "live worker's " } else { "" }, .path.display())]
    NoRecord {
        /// The record file.
        path: PathBuf,
        /// Whether only a live worker's record counted.
        alive: bool,
        /// How long the step waited.
        timeout: Duration,
    },
}

impl ExpectExit {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if [self.code.is_some(), self.nonzero, self.any]
            .iter()
            .filter(|b| **b)
            .count()
            != 1
        {
            return Err(Invalid::new(
                "code",
                "give exactly one of `code`, `nonzero = true` or `any = true`",
            ));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let timeout = self.timeout_ms.map_or(DEFAULT_EXIT, Duration::from_millis);
        let child = run.latest()?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .map_err(|_| ProcessError::NoExit(timeout))?
            .map_err(ProcessError::Wait)?;
        let (held, wanted) = match self.code {
            Some(code) => (status.code() == Some(code), format!("exit code {code}")),
            None if self.any => (true, "an exit".to_owned()),
            None => (
                self.nonzero && !status.success(),
                "a non-zero exit".to_owned(),
            ),
        };
        if !held {
            return Err(ProcessError::WrongExit {
                wanted,
                status,
                log: run.logs(),
            });
        }
        run.settle_disconnect().await;
        Ok(())
    }
}

impl StartRunner {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        Ok(run.start_runner(self.wait_registered).await?)
    }
}

impl SendSignal {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let pid = run.latest()?.id().ok_or(RunnerError::Exited)?;
        let signal = match self.signal {
            RunnerSignal::Term => Signal::SIGTERM,
            RunnerSignal::Int => Signal::SIGINT,
            RunnerSignal::Kill => Signal::SIGKILL,
        };
        run.action_mark = run.relay.mark();
        kill(Pid::from_raw(pid as i32), signal).map_err(ProcessError::Signal)
    }
}

impl ReadWorker {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let session = run.vars.fill(&self.session)?;
        let path = run.record_dir.join(format!("{session}.json"));
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_EXPECT, Duration::from_millis);
        let live = |record: &Value| {
            record
                .get("pid")
                .and_then(Value::as_i64)
                .and_then(|pid| i32::try_from(pid).ok())
                .is_some_and(is_alive)
        };
        let record = poll(timeout, || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .filter(|record| !self.alive || live(record))
        })
        .await
        .ok_or_else(|| ProcessError::NoRecord {
            path: path.clone(),
            alive: self.alive,
            timeout,
        })?;
        run.vars.remove_where(|name| {
            name.starts_with("worker_env_")
                || ["worker_pid", "grandchild_pid", "worker_cwd"].contains(&name)
        });
        for (name, key) in [
            ("worker_pid", "pid"),
            ("grandchild_pid", "grandchildPid"),
            ("worker_cwd", "cwd"),
        ] {
            if let Some(value) = field(&record, key).filter(|v| v != "null") {
                run.vars.set(name, value);
            }
        }
        if let Some(env) = record.get("env").and_then(Value::as_object) {
            for (k, v) in env {
                run.vars
                    .set(format!("worker_env_{k}"), v.as_str().unwrap_or_default());
            }
        }
        Ok(())
    }
}

/// `VmHWM` (peak resident set size) of the latest runner process, in KiB.
fn runner_peak_kib(run: &mut Run) -> Result<u64, ProcessError> {
    let child = run.latest()?;
    let pid = child.id().ok_or(ProcessError::Memory {
        pid: 0,
        reason: "the runner has exited".to_owned(),
    })?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| {
        ProcessError::Memory {
            pid,
            reason: e.to_string(),
        }
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| ProcessError::Memory {
            pid,
            reason: "no VmHWM line in /proc/<pid>/status".to_owned(),
        })
}

impl SaveMemory {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let kib = runner_peak_kib(run)?;
        run.vars.set(self.name.clone(), kib.to_string());
        Ok(())
    }
}

impl CheckMemory {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let text = run.vars.fill(&format!("{{{}}}", self.since))?;
        let before_kib: u64 = text.parse().map_err(|_| ProcessError::Memory {
            pid: 0,
            reason: format!(
                "{{{}}} is {text:?}, not a size saved by save_memory",
                self.since
            ),
        })?;
        let now_kib = runner_peak_kib(run)?;
        let grown_kib = now_kib.saturating_sub(before_kib);
        if grown_kib > self.max_growth_mib * 1024 {
            return Err(ProcessError::Grew {
                before_kib,
                now_kib,
                grown_kib,
                allowed_mib: self.max_growth_mib,
            });
        }
        Ok(())
    }
}

impl CheckProcess {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), ProcessError> {
        let text = run.vars.fill(&self.pid)?;
        let pid: i32 = text.parse().map_err(|_| ProcessError::NotAPid(text))?;
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_EXPECT, Duration::from_millis);
        let alive = self.alive;
        let reached = poll(timeout, || (is_alive(pid) == alive).then_some(())).await;
        if reached.is_none() {
            return Err(ProcessError::ProcessState {
                pid,
                alive,
                timeout,
            });
        }
        Ok(())
    }
}
