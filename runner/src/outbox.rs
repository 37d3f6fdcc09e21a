//! The one way a handler sends an event to the relay.
//!
//! Handlers never see the socket: they push [`RunnerEvent`]s into an
//! [`Outbox`], and the connection task drains it onto the wire. Handlers
//! are therefore testable with [`Outbox::channel`] and no network.

use runner_protocol::RunnerEvent;
use tokio::sync::mpsc;

/// A cloneable sender of runner → relay events.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<RunnerEvent>,
}

/// The receiving end of an [`Outbox`], drained by the connection task (or a test).
pub type OutboxReceiver = mpsc::UnboundedReceiver<RunnerEvent>;

impl Outbox {
    /// A new outbox and its receiver.
    pub fn channel() -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Outbox { tx }, rx)
    }

    /// Queues an event for the relay. When the connection task is gone (the
    /// daemon is shutting down) the event is dropped with a debug log: there
    /// is nobody left to send it to.
    pub fn emit(&self, event: impl Into<RunnerEvent>) {
        let event = event.into();
        if let Err(err) = self.tx.send(event) {
            tracing::debug!(event = err.0.name(), "outbox closed; event not sent");
        }
    }
}
