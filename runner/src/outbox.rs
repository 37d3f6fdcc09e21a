//! The one way a handler sends an event to the relay.
//!
//! Handlers never see the socket: they push [`RunnerEvent`]s into an
//! [`Outbox`], and the connection task drains it onto the wire. Handlers
//! are therefore testable with [`Outbox::channel`] and no network.
//!
//! Replies and notifications are small and go out with [`Outbox::emit`].
//! Bulk data (terminal output) goes out with [`Outbox::emit_bulk`], which
//! waits while more than [`BULK_CREDIT`] bytes of bulk data are queued: a
//! producer faster than the connection is slowed down to the connection's
//! pace instead of filling memory.

use std::sync::Arc;

use runner_protocol::RunnerEvent;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of bulk data that may wait in the outbox at once.
pub const BULK_CREDIT: usize = 1024 * 1024;

struct Queued {
    event: RunnerEvent,
    /// Released when the connection takes the event out of the queue.
    _credit: Option<OwnedSemaphorePermit>,
}

/// A cloneable sender of runner → relay events.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    credit: Arc<Semaphore>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("bulk_credit_left", &self.credit.available_permits())
            .finish()
    }
}

/// The receiving end of an [`Outbox`], drained by the connection task (or a test).
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.event.name())
    }
}

impl OutboxReceiver {
    /// The next event; `None` once every [`Outbox`] is gone.
    pub async fn recv(&mut self) -> Option<RunnerEvent> {
        self.rx.recv().await.map(|queued| queued.event)
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<RunnerEvent, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|queued| queued.event)
    }
}

impl Outbox {
    /// A new outbox and its receiver.
    pub fn channel() -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(BULK_CREDIT));
        (Outbox { tx, credit }, OutboxReceiver { rx })
    }

    /// Queues an event for the relay. When the connection task is gone (the
    /// daemon is shutting down) the event is dropped with a debug log: there
    /// is nobody left to send it to.
    pub fn emit(&self, event: impl Into<RunnerEvent>) {
        self.push(event.into(), None);
    }

    /// Queues an event carrying `bytes` of bulk data, first waiting until
    /// that much bulk credit is free (a single event larger than the whole
    /// credit waits for all of it).
    pub async fn emit_bulk(&self, event: impl Into<RunnerEvent>, bytes: usize) {
        let wanted = bytes.clamp(1, BULK_CREDIT) as u32;
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = self.credit.clone().acquire_many_owned(wanted).await.ok();
        self.push(event.into(), permit);
    }

    fn push(&self, event: RunnerEvent, credit: Option<OwnedSemaphorePermit>) {
        let queued = Queued {
            event,
            _credit: credit,
        };
        if let Err(err) = self.tx.send(queued) {
            tracing::debug!(event = err.0.event.name(), "outbox closed; event not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use runner_protocol::{Pong, TerminalData};

    use super::*;

    fn data(len: usize) -> TerminalData {
        TerminalData {
            terminal_id: "t".into(),
            data: "x".repeat(len),
        }
    }

    #[tokio::test]
    async fn bulk_waits_for_credit_and_control_events_do_not() {
        let (outbox, mut rx) = Outbox::channel();
        outbox.emit_bulk(data(1), BULK_CREDIT).await;
        // The credit is used up: the next bulk event waits...
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            outbox.emit_bulk(data(1), 1),
        )
        .await;
        assert!(blocked.is_err(), "bulk emit went through without credit");
        // ...while replies still go out.
        outbox.emit(Pong { now: 1 });
        // Taking the bulk event out of the queue frees its credit.
        assert_eq!(rx.recv().await.unwrap().name(), "terminal_data");
        outbox.emit_bulk(data(1), 1).await;
        assert_eq!(rx.recv().await.unwrap().name(), "pong");
        assert_eq!(rx.recv().await.unwrap().name(), "terminal_data");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn emitting_after_the_receiver_is_gone_is_harmless() {
        let (outbox, rx) = Outbox::channel();
        drop(rx);
        outbox.emit(Pong { now: 1 });
        outbox.emit_bulk(data(10), 10).await;
    }
}
