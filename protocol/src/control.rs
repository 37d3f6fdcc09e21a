//! Daemon control and liveness: `ping`/`pong`, `restart`, `error`, and the
//! `runner_heartbeat` extension.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `ping` (S→R): health check. No fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ping {}

/// `pong` (R→S): answer to `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    /// The runner's clock, in ms since the epoch.
    pub now: u64,
}

/// `restart` (S→R): shut down and exit with code 42 so a supervisor restarts
/// the daemon. No fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Restart {}

/// `error` (S→R): a relay-side error, e.g. a refused registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RelayError {
    /// What the relay refused and why.
    pub message: String,
}

/// `runner_heartbeat` (R→S, extension): liveness and state, every
/// heartbeat interval (default 10 s) while connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RunnerHeartbeat {
    /// The runner's id.
    pub runner_id: String,
    /// The runner's clock, in ms since the epoch.
    pub ts: u64,
    /// How long the daemon has been running, in ms.
    pub uptime_ms: u64,
    /// The running sessions.
    pub sessions: Vec<HeartbeatSession>,
    /// The open terminals' ids.
    pub terminals: Vec<String>,
}

/// One running session in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatSession {
    /// The session's id.
    pub session_id: String,
    /// The worker's process id.
    pub pid: u32,
    /// When the worker was (last) spawned, in ms since the epoch.
    pub started_at: u64,
}
