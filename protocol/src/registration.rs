//! Registration: `register_runner` (R→S) and `runner_registered` (S→R).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::{RunnerSkill, Secret};

/// `register_runner` (R→S): emitted once after every successful (re)connect.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RegisterRunner {
    /// Display name (default: host name, or `PIZZAPI_RUNNER_NAME`).
    pub name: Option<String>,
    /// Workspace roots; absent or empty means unscoped.
    pub roots: Option<Vec<String>>,
    /// The runner's id, as in the handshake.
    pub runner_id: Option<String>,
    /// The runner's secret, as in the handshake.
    pub runner_secret: Option<Secret>,
    /// The skills on the runner's disk.
    pub skills: Option<Vec<RunnerSkill>>,
    /// The runner's version (extension).
    pub version: Option<String>,
    /// The runner's platform, e.g. `linux` (extension).
    pub platform: Option<String>,
}

/// `runner_registered` (S→R): the relay accepted the registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RunnerRegistered {
    /// The id the relay registered; a runner warns when it differs from its own.
    pub runner_id: String,
}
