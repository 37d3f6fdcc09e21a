//! `runner_heartbeat`: the runner's liveness and state, every heartbeat
//! interval while connected.
//!
//! The connection starts one [`Heartbeat::run`] task per connection, after
//! `register_runner`, and cancels it when the connection is lost. The task
//! only reads the session table and pushes into the [`Outbox`]; handlers run
//! in their own tasks, so a slow command never delays a heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runner_protocol::{HeartbeatSession, RunnerHeartbeat};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::state::now_ms;

/// Where a heartbeat's session list comes from.
pub type SessionSnapshot = Arc<dyn Fn() -> Vec<HeartbeatSession> + Send + Sync>;

/// Where a heartbeat's terminal list comes from.
pub type TerminalSnapshot = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Builds and sends heartbeats.
#[derive(Clone)]
pub struct Heartbeat {
    runner_id: String,
    started: Instant,
    interval: Duration,
    sessions: SessionSnapshot,
    terminals: Option<TerminalSnapshot>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("runner_id", &self.runner_id)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    /// A heartbeat for `runner_id`, every `interval`, reporting the sessions
    /// `sessions` returns. Uptime counts from now.
    pub fn new(runner_id: String, interval: Duration, sessions: SessionSnapshot) -> Self {
        Heartbeat {
            runner_id,
            started: Instant::now(),
            interval,
            sessions,
            terminals: None,
        }
    }

    /// Also reports the terminals `terminals` returns.
    pub fn with_terminals(mut self, terminals: TerminalSnapshot) -> Self {
        self.terminals = Some(terminals);
        self
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// One heartbeat, as of now.
    pub fn beat(&self) -> RunnerHeartbeat {
        RunnerHeartbeat {
            runner_id: self.runner_id.clone(),
            ts: now_ms(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            sessions: (self.sessions)(),
            terminals: self.terminals.as_ref().map(|t| t()).unwrap_or_default(),
        }
    }

    /// Sends a heartbeat every interval (the first one interval from now)
    /// until `cancel`.
    pub async fn run(self, outbox: Outbox, cancel: CancellationToken) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticker = tokio::time::interval_at(start, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => outbox.emit(self.beat()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use runner_protocol::RunnerEvent;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn beats_every_interval_until_cancelled() {
        let sessions: SessionSnapshot = Arc::new(|| {
            vec![HeartbeatSession {
                session_id: "s1".into(),
                pid: 7,
                started_at: 9,
            }]
        });
        let hb = Heartbeat::new("rid".into(), Duration::from_secs(10), sessions);
        let (outbox, mut rx) = Outbox::channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(hb.run(outbox, cancel.clone()));

        let t0 = tokio::time::Instant::now();
        for n in 1..=3u32 {
            let ev = rx.recv().await.expect("a heartbeat");
            assert_eq!(t0.elapsed(), Duration::from_secs(10) * n);
            let RunnerEvent::RunnerHeartbeat(beat) = ev else {
                panic!("not a heartbeat: {ev:?}");
            };
            assert_eq!(beat.runner_id, "rid");
            assert_eq!(beat.sessions.len(), 1);
            assert_eq!(beat.sessions[0].session_id, "s1");
            assert!(beat.terminals.is_empty());
            assert!(beat.ts > 1_600_000_000_000);
        }
        cancel.cancel();
        task.await.unwrap();
        assert!(rx.try_recv().is_err());
    }
}
