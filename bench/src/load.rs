//! Load clients: bare `/runner` connections that speak Engine.IO v4 and
//! Socket.IO v5 text frames over a WebSocket, with almost no work of their
//! own, so that the relay, not the client, is what a figure measures, and
//! both relays see exactly the same bytes.
//!
//! A client connects, sends the namespace `CONNECT` with the auth object,
//! registers, and then either answers `ping`s (and Engine.IO pings) until
//! told to stop, or streams `runner_session_event`s as fast as the socket
//! takes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::peers::API_KEY;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many frames a streaming client writes before each flush.
const BATCH: usize = 64;

/// What the clients do once registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer `ping` with `pong` until stopped.
    Answer,
    /// Send `runner_session_event`s until stopped.
    Stream,
}

/// A group of load clients.
#[derive(Debug)]
pub struct Clients {
    tasks: JoinSet<anyhow::Result<()>>,
    go: watch::Sender<bool>,
    stop: Arc<AtomicBool>,
    /// How long it took from the first connect until every client was
    /// registered.
    pub all_registered: Duration,
}

impl Clients {
    /// Connects `n` clients (at most `parallel` handshakes at a time) and
    /// waits until every one is registered, or `timeout`.
    pub async fn connect(
        port: u16,
        n: usize,
        parallel: usize,
        behaviour: Behaviour,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Clients> {
        let (go, go_rx) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(Semaphore::new(parallel.max(1)));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(n.max(1));
        let mut tasks = JoinSet::new();
        let t0 = Instant::now();
        for i in 0..n {
            let runner_id = format!("{prefix}-{i}");
            let gate = Arc::clone(&gate);
            let ready = ready_tx.clone();
            let go = go_rx.clone();
            let stop = Arc::clone(&stop);
            tasks.spawn(async move {
                let permit = gate.acquire_owned().await?;
                let ws = match register(port, &runner_id).await {
                    Ok(ws) => {
                        drop(permit);
                        let _ = ready.send(Ok(())).await;
                        ws
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e)).await;
                        return Ok(());
                    }
                };
                match behaviour {
                    Behaviour::Answer => answer(ws, &stop).await,
                    Behaviour::Stream => stream(ws, &runner_id, go, &stop).await,
                }
            });
        }
        drop(ready_tx);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut registered = 0;
        while registered < n {
            match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
                Ok(Some(Ok(()))) => registered += 1,
                Ok(Some(Err(e))) => {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.context(format!(
                        "a load client failed ({registered} of {n} registered)"
                    )));
                }
                Ok(None) => bail!("load clients ended early ({registered} of {n} registered)"),
                Err(_) => {
                    stop.store(true, Ordering::Relaxed);
                    bail!("{registered} of {n} load clients registered within {timeout:?}");
                }
            }
        }
        Ok(Clients {
            tasks,
            go,
            stop,
            all_registered: t0.elapsed(),
        })
    }

    /// Lets streaming clients start sending.
    pub fn start_streaming(&self) {
        self.go.send_replace(true);
    }

    /// Drops every connection at once, without a closing handshake (a
    /// streaming client's closing frame would queue behind everything still
    /// in the socket buffers).
    pub fn abort(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tasks.abort_all();
    }

    /// Stops every client and closes its connection.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.go.send_replace(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut first_error = None;
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(Ok(Ok(())))) => {}
                Ok(Some(Ok(Err(e)))) => {
                    first_error.get_or_insert(e);
                }
                Ok(Some(Err(e))) => {
                    first_error.get_or_insert(anyhow::anyhow!("a load client panicked: {e}"));
                }
                Ok(None) => break,
                Err(_) => {
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn text(frame: String) -> Message {
    Message::Text(frame.into())
}

/// Connects, joins `/runner` with the auth object, registers, and returns
/// the socket once `runner_registered` arrived.
async fn register(port: u16, runner_id: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async(&url),
    )
    .await
    .context("WebSocket connect timed out")?
    .with_context(|| format!("cannot connect to {url}"))?;
    let auth = serde_json::json!({"apiKey": API_KEY, "runnerId": runner_id, "runnerSecret": "bench-secret"});
    let register = serde_json::json!(["register_runner", {
        "name": "load", "roots": [], "runnerId": runner_id, "runnerSecret": "bench-secret", "skills": []
    }]);
    let mut joined = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("{runner_id}: no registration within 30 s"))?
            .with_context(|| format!("{runner_id}: the relay closed the connection"))??;
        let Message::Text(frame) = frame else {
            continue;
        };
        let frame = frame.as_str();
        if frame.starts_with('0') && !joined {
            ws.send(text(format!("40/runner,{auth}"))).await?;
        } else if frame.starts_with("40/runner,") {
            joined = true;
            ws.send(text(format!("42/runner,{register}"))).await?;
        } else if frame.starts_with("44/runner,") {
            bail!("{runner_id}: refused: {frame}");
        } else if frame.starts_with("42/runner,[\"runner_registered\"") {
            return Ok(ws);
        } else if frame == "2" {
            ws.send(text("3".to_owned())).await?;
        }
    }
}

/// Answers `ping` with `pong` and Engine.IO pings with pongs, until stopped.
async fn answer(mut ws: Ws, stop: &AtomicBool) -> anyhow::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Err(_) => continue,
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame?,
        };
        let Message::Text(frame) = frame else {
            continue;
        };
        let frame = frame.as_str();
        if frame == "2" {
            ws.send(text("3".to_owned())).await?;
        } else if frame.starts_with("42/runner,[\"ping\"") {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            ws.send(text(format!("42/runner,[\"pong\",{{\"now\":{now}}}]")))
                .await?;
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// Waits for the go signal, then sends `runner_session_event`s in batches
/// until stopped (the socket's back-pressure paces it).
async fn stream(
    mut ws: Ws,
    runner_id: &str,
    mut go: watch::Receiver<bool>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let _ = go.wait_for(|go| *go).await;
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..BATCH {
            seq += 1;
            ws.feed(text(format!(
                "42/runner,[\"runner_session_event\",{{\"sessionId\":\"{runner_id}\",\"event\":{{\"type\":\"message_update\",\"seq\":{seq}}}}}]"
            )))
            .await?;
        }
        ws.flush().await?;
    }
    let _ = ws.close(None).await;
    Ok(())
}
