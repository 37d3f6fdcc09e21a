//! Steps about what the relay does wrong on purpose: kicking the runner or
//! dropping its connection, refusing handshakes, going away for a while, delaying or
//! dropping what it sends.

use std::time::Duration;

use mock_relay::RelayError;
use serde::Deserialize;

use super::yes;
use crate::driver::{Run, RunnerError};
use crate::template::UnknownPlaceholder;

/// Drop the runner on purpose, as the real relay does (socket.io's
/// `disconnect(true)`): the `error` first when given, then the namespace
/// DISCONNECT, then the transport closes. A stock client does not reconnect
/// by itself after it; the runner decides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kick {
    /// The `error` message sent first.
    pub error: Option<String>,
}

/// Close the runner's transport without a DISCONNECT, as a network failure
/// would (`do = "drop_connection"`); a stock client reconnects by itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConnection {}

/// Refuse the next handshakes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refuse {
    /// How many.
    pub count: u32,
    /// The refusal message (default `unauthorized`).
    pub message: Option<String>,
}

/// Stop the relay's listener, wait, and listen again on the same port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartRelay {
    /// How long the relay is down.
    pub down_ms: u64,
    /// Keep the registry (identity bindings) across the restart.
    #[serde(default = "yes")]
    pub keep_state: bool,
}

/// Delay every event sent to runners (`do = "delay"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayOutgoing {
    /// By how much.
    pub ms: u64,
}

/// Drop the next events sent to runners (`do = "drop"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropOutgoing {
    /// How many.
    pub count: u32,
}

/// Why a fault step could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// There is no runner to kick.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A placeholder in the step has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// The relay could not drop the runner's connection.
    #[error("kick: {0}")]
    Kick(RelayError),
    /// The relay could not close the runner's transport.
    #[error("drop_connection: {0}")]
    DropConnection(RelayError),
    /// The relay could not restart.
    #[error("restart: {0}")]
    Restart(RelayError),
}

impl Kick {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), FaultError> {
        let runner = run.runner_id()?;
        run.action_mark = run.relay.mark();
        let error = match &self.error {
            Some(text) => Some(run.vars.fill(text)?),
            None => None,
        };
        run.relay
            .kick(&runner, error)
            .await
            .map_err(FaultError::Kick)
    }
}

impl DropConnection {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), FaultError> {
        let runner = run.runner_id()?;
        run.action_mark = run.relay.mark();
        run.relay
            .drop_connection(&runner)
            .map_err(FaultError::DropConnection)
    }
}

impl Refuse {
    pub(crate) fn run(&self, run: &mut Run) {
        run.action_mark = run.relay.mark();
        run.relay
            .refuse_handshakes(self.count, self.message.clone());
    }
}

impl RestartRelay {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), FaultError> {
        run.action_mark = run.relay.mark();
        run.relay
            .restart(Duration::from_millis(self.down_ms), self.keep_state)
            .await
            .map_err(FaultError::Restart)
    }
}

impl DelayOutgoing {
    pub(crate) fn run(&self, run: &mut Run) {
        run.relay.delay_outgoing(Duration::from_millis(self.ms));
    }
}

impl DropOutgoing {
    pub(crate) fn run(&self, run: &mut Run) {
        run.relay.drop_outgoing(self.count);
    }
}
