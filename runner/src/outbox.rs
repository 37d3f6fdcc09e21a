//! The one way a handler sends an event to the relay.
//!
//! Handlers never see the socket: they push [`RunnerEvent`]s into an
//! [`Outbox`], and the connection task drains it onto the wire. Handlers
//! are therefore testable with [`Outbox::channel`] and no network.
//!
//! Replies and notifications are small and go out with [`Outbox::emit`].
//! Bulk data (worker events, terminal output) goes out with
//! [`Outbox::emit_bulk`], which waits while the outbox's bulk credit
//! ([`BULK_CREDIT`] bytes unless [`Outbox::with_credit`] says otherwise) is
//! used up by queued events: a producer faster than the connection is
//! slowed down to the connection's pace instead of filling memory. The
//! credit of an event comes back when the connection takes it out.

use std::sync::Arc;

use runner_protocol::RunnerEvent;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of bulk data that may wait in the outbox at once, by default.
pub const BULK_CREDIT: usize = 1024 * 1024;

struct Queued {
    event: RunnerEvent,
    /// The bulk bytes it was emitted with, when it was.
    bytes: Option<usize>,
    /// Released when the connection takes the event out of the queue.
    _credit: Option<OwnedSemaphorePermit>,
}

/// A cloneable sender of runner → relay events.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Queued>,
    credit: Arc<Semaphore>,
    credit_limit: usize,
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

    /// The next event and its bulk bytes, when it was emitted with
    /// [`Outbox::emit_bulk`]; `None` once every [`Outbox`] is gone.
    pub async fn recv_sized(&mut self) -> Option<(RunnerEvent, Option<usize>)> {
        self.rx
            .recv()
            .await
            .map(|queued| (queued.event, queued.bytes))
    }

    /// [`OutboxReceiver::recv_sized`] without waiting.
    pub fn try_recv_sized(
        &mut self,
    ) -> Result<(RunnerEvent, Option<usize>), mpsc::error::TryRecvError> {
        self.rx
            .try_recv()
            .map(|queued| (queued.event, queued.bytes))
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Result<RunnerEvent, mpsc::error::TryRecvError> {
        self.rx.try_recv().map(|queued| queued.event)
    }
}

impl Outbox {
    /// A new outbox with the default bulk credit ([`BULK_CREDIT`]) and its receiver.
    pub fn channel() -> (Outbox, OutboxReceiver) {
        Self::with_credit(BULK_CREDIT)
    }

    /// A new outbox in which at most `credit` bytes of bulk data wait at
    /// once (at least 1), and its receiver.
    pub fn with_credit(credit: usize) -> (Outbox, OutboxReceiver) {
        let credit_limit = credit.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (tx, rx) = mpsc::unbounded_channel();
        let credit = Arc::new(Semaphore::new(credit_limit));
        (
            Outbox {
                tx,
                credit,
                credit_limit,
            },
            OutboxReceiver { rx },
        )
    }

    /// Queues an event for the relay. When the connection task is gone (the
    /// daemon is shutting down) the event is dropped with a debug log: there
    /// is nobody left to send it to.
    pub fn emit(&self, event: impl Into<RunnerEvent>) {
        self.push(event.into(), None, None);
    }

    /// Queues an event carrying `bytes` of bulk data, first waiting until
    /// that much bulk credit is free (a single event larger than the whole
    /// credit waits for all of it).
    pub async fn emit_bulk(&self, event: impl Into<RunnerEvent>, bytes: usize) {
        let wanted = bytes.clamp(1, self.credit_limit) as u32;
        // The semaphore is never closed, so acquiring only fails if it were.
        let permit = self.credit.clone().acquire_many_owned(wanted).await.ok();
        self.push(event.into(), Some(bytes), permit);
    }

    fn push(&self, event: RunnerEvent, bytes: Option<usize>, credit: Option<OwnedSemaphorePermit>) {
        let queued = Queued {
            event,
            bytes,
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
    async fn the_credit_is_a_setting_and_sizes_travel_with_bulk_events() {
        let (outbox, mut rx) = Outbox::with_credit(10);
        outbox.emit_bulk(data(1), 10).await;
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            outbox.emit_bulk(data(1), 1),
        )
        .await;
        assert!(blocked.is_err(), "10 bytes of credit were used up");
        let (event, bytes) = rx.recv_sized().await.unwrap();
        assert_eq!((event.name(), bytes), ("terminal_data", Some(10)));
        outbox.emit(Pong { now: 1 });
        assert_eq!(rx.try_recv_sized().unwrap().1, None);
    }

    #[tokio::test]
    async fn emitting_after_the_receiver_is_gone_is_harmless() {
        let (outbox, rx) = Outbox::channel();
        drop(rx);
        outbox.emit(Pong { now: 1 });
        outbox.emit_bulk(data(10), 10).await;
    }
}
