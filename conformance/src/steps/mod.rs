//! The steps a scenario runs, one module per family:
//!
//! * [`wire`] — what goes over the socket: `emit`, `expect`,
//!   `expect_none`, `expect_output`, and `wait` (letting time pass so that
//!   periodic events arrive);
//! * [`faults`] — what the relay does wrong on purpose: `kick`, `refuse`,
//!   `restart_relay`, `delay`, `drop`;
//! * [`process`] — the runner and worker processes: `start_runner`,
//!   `expect_exit`, `signal`, `check_process`, `read_worker`,
//!   `save_memory`, `check_memory`;
//! * [`files`] — the sandbox's files: `check_fs`, `write_fs`, `read_json`;
//! * [`variables`] — placeholders: `check_var`.
//!
//! Each module holds its steps' types (as they are written in a scenario
//! file), what [`Scenario`](crate::scenario::Scenario) checks about them when
//! it loads, and how they run against the driver's state of a run.

pub mod faults;
pub mod files;
pub mod process;
pub mod variables;
pub mod wire;

use serde::Deserialize;

use crate::driver::Run;

/// One step of a scenario, tagged by `do` in its TOML table.
///
/// The variants are in the order `do` lists them in errors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// See [`wire::Emit`].
    Emit(wire::Emit),
    /// See [`wire::Expect`].
    Expect(wire::Expect),
    /// See [`wire::ExpectOutput`].
    ExpectOutput(wire::ExpectOutput),
    /// See [`wire::ExpectNone`].
    ExpectNone(wire::ExpectNone),
    /// See [`process::ExpectExit`].
    ExpectExit(process::ExpectExit),
    /// See [`process::StartRunner`].
    StartRunner(process::StartRunner),
    /// See [`faults::Kick`].
    Kick(faults::Kick),
    /// See [`faults::DropConnection`].
    DropConnection(faults::DropConnection),
    /// See [`faults::Refuse`].
    Refuse(faults::Refuse),
    /// See [`faults::RestartRelay`].
    RestartRelay(faults::RestartRelay),
    /// See [`faults::DelayOutgoing`].
    Delay(faults::DelayOutgoing),
    /// See [`faults::DropOutgoing`].
    Drop(faults::DropOutgoing),
    /// See [`process::SendSignal`].
    Signal(process::SendSignal),
    /// See [`wire::Wait`].
    Wait(wire::Wait),
    /// See [`files::CheckFs`].
    CheckFs(files::CheckFs),
    /// See [`files::ReadJson`].
    ReadJson(files::ReadJson),
    /// See [`files::WriteFs`].
    WriteFs(files::WriteFs),
    /// See [`process::ReadWorker`].
    ReadWorker(process::ReadWorker),
    /// See [`variables::CheckVar`].
    CheckVar(variables::CheckVar),
    /// See [`process::CheckProcess`].
    CheckProcess(process::CheckProcess),
    /// See [`process::SaveMemory`].
    SaveMemory(process::SaveMemory),
    /// See [`process::CheckMemory`].
    CheckMemory(process::CheckMemory),
}

/// A step that cannot run as written: which of its fields and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field, relative to the step (`count`, `event`).
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Why a step did not hold, by family.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An `emit`, `expect`, `expect_none` or `expect_output` step.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// A `kick` or `restart_relay` step.
    #[error(transparent)]
    Fault(#[from] faults::FaultError),
    /// A `start_runner`, `expect_exit`, `signal`, `check_process`,
    /// `read_worker`, `save_memory` or `check_memory` step.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A `check_fs`, `write_fs` or `read_json` step.
    #[error(transparent)]
    Files(#[from] files::FileError),
    /// A `check_var` step.
    #[error(transparent)]
    Variables(#[from] variables::VarError),
}

impl Step {
    /// Checks what the types cannot (event names, payloads of typed emits,
    /// exclusive options, patterns); placeholders are still unfilled.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Step::Emit(step) => step.check(),
            Step::Expect(step) => step.check(),
            Step::ExpectNone(step) => step.check(),
            Step::ExpectExit(step) => step.check(),
            Step::CheckFs(step) => step.check(),
            Step::CheckVar(step) => step.check(),
            Step::ExpectOutput(_)
            | Step::StartRunner(_)
            | Step::Kick(_)
            | Step::DropConnection(_)
            | Step::Refuse(_)
            | Step::RestartRelay(_)
            | Step::Delay(_)
            | Step::Drop(_)
            | Step::Signal(_)
            | Step::Wait(_)
            | Step::ReadJson(_)
            | Step::WriteFs(_)
            | Step::ReadWorker(_)
            | Step::CheckProcess(_)
            | Step::SaveMemory(_)
            | Step::CheckMemory(_) => Ok(()),
        }
    }

    /// Whether the step is (part of) a burst: several copies at once, or an
    /// emit marked `burst`, whose replies arrive in no meaningful order.
    pub(crate) fn is_burst(&self) -> bool {
        matches!(self, Step::Emit(emit) if emit.count > 1 || emit.burst)
    }

    /// Runs the step against the state of a run.
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), StepError> {
        match self {
            Step::Emit(step) => step.run(run).await?,
            Step::Expect(step) => step.run(run).await?,
            Step::ExpectOutput(step) => step.run(run).await?,
            Step::ExpectNone(step) => step.run(run).await?,
            Step::Wait(step) => step.run().await,
            Step::ExpectExit(step) => step.run(run).await?,
            Step::StartRunner(step) => step.run(run).await?,
            Step::Signal(step) => step.run(run)?,
            Step::CheckProcess(step) => step.run(run).await?,
            Step::SaveMemory(step) => step.run(run)?,
            Step::CheckMemory(step) => step.run(run)?,
            Step::ReadWorker(step) => step.run(run).await?,
            Step::Kick(step) => step.run(run).await?,
            Step::DropConnection(step) => step.run(run)?,
            Step::Refuse(step) => step.run(run),
            Step::RestartRelay(step) => step.run(run).await?,
            Step::Delay(step) => step.run(run),
            Step::Drop(step) => step.run(run),
            Step::CheckFs(step) => step.run(run)?,
            Step::ReadJson(step) => step.run(run)?,
            Step::WriteFs(step) => step.run(run)?,
            Step::CheckVar(step) => step.run(run)?,
        }
        Ok(())
    }
}

/// `true`, for `#[serde(default = …)]`.
pub(crate) fn yes() -> bool {
    true
}

/// `1`, for `#[serde(default = …)]`.
pub(crate) fn one() -> u32 {
    1
}
