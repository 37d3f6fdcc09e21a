//! Sessions: worker processes spawned and stopped on the relay's command.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::ModelRef;

/// `new_session` (S→R): spawn a worker.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct NewSession {
    /// The session's id, chosen by the relay.
    pub session_id: String,
    /// The worker's working directory; must lie inside the runner's roots.
    pub cwd: Option<String>,
    /// The first prompt for the agent.
    pub prompt: Option<String>,
    /// The model for the first turn.
    pub model: Option<ModelRef>,
    /// Names of skills to enable.
    pub skills: Option<Vec<String>>,
}

/// `session_ready` (R→S): the worker was spawned (again, after a restart request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SessionReady {
    /// The session's id.
    pub session_id: String,
}

/// `session_error` (R→S): a spawn was refused or failed, or a command named an
/// unknown session. `sessionId` is empty when the command carried none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SessionError {
    /// The session's id, or `""`.
    pub session_id: String,
    /// What went wrong.
    pub message: String,
}

/// `kill_session` (S→R): stop a worker (SIGTERM, then SIGKILL after a grace period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct KillSession {
    /// The session to stop.
    pub session_id: String,
}

/// `session_killed` (R→S): the worker is gone, after a `kill_session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SessionKilled {
    /// The session that was stopped.
    pub session_id: String,
}

/// `list_sessions` (S→R): ask for the running sessions. No fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListSessions {}

/// `sessions_list` (R→S): the ids of the running sessions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SessionsList {
    /// Session ids.
    pub sessions: Vec<String>,
}

/// `runner_session_event` (R→S): one event a worker printed, forwarded as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RunnerSessionEvent {
    /// The worker's session.
    pub session_id: String,
    /// The worker's event (any JSON).
    #[cfg_attr(test, proptest(strategy = "crate::arb::json_value()"))]
    pub event: Value,
}

/// `session_exited` (R→S, extension): a worker ended on its own — not by
/// `kill_session`, and not with the restart code 43.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SessionExited {
    /// The worker's session.
    pub session_id: String,
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal's name (e.g. `SIGSEGV`), when a signal ended it.
    pub signal: Option<String>,
}
