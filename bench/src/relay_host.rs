//! `bench relay`: the mock relay as a process the harness controls over
//! stdio, with the same control lines as `bench/js/relay.js`, so that both
//! relays are measured the same way (their own process, their own RSS,
//! timings taken inside the relay).
//!
//! Out (stdout): `{"type":"listening","port":P}` once, then one
//! `{"type":"reply","id":n,...}` (or `{"type":"reply","id":n,"error":"…"}`)
//! per command. In (stdin), one JSON object per line:
//!
//! * `{"id":n,"cmd":"stats"}` → `registered` (runners connected now),
//!   `events` (`runner_session_event`s received), `records`, `timeNs`
//!   (the relay's monotonic clock).
//! * `{"id":n,"cmd":"runners"}` → `runners`: ids of connected runners, in
//!   the order they registered.
//! * `{"id":n,"cmd":"window","delayMs":D,"windowMs":W}` → `events`,
//!   `elapsedNs`: `runner_session_event`s counted from D ms after the
//!   command for W ms, on the relay's clock (sent before a load starts, so
//!   that a saturated relay need not read its stdin in time).
//! * `{"id":n,"cmd":"ping","runnerId":r,"count":N,"timeoutMs":T}` → `rttNs`:
//!   N sequential `ping`→`pong` round trips.
//! * `{"id":n,"cmd":"pingAll","timeoutMs":T}` → `rttNs`, `missing`: one
//!   `ping` to every connected runner at once.
//! * `{"id":n,"cmd":"waitRunner","runnerId":r,"timeoutMs":T}` → `ok` once
//!   r is registered.
//! * `{"id":n,"cmd":"spawn","runnerId":r,"count":N,"timeoutMs":T}` →
//!   `rttNs`: N sequential `new_session`→`session_ready`, each session
//!   killed (and its `session_killed` awaited) before the next. Only this
//!   relay has it: it measures our runner, not a relay.
//! * `{"id":n,"cmd":"quit"}` → `ok`, then exit. End of stdin also exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mock_relay::{MockRelay, RelayHandle};
use runner_protocol::{KillSession, NewSession, Ping, RunnerEvent, ServerEvent};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::Mutex;

use crate::stats::nanos;

/// Runs the relay until `quit` or the end of stdin.
pub async fn run(port: u16, api_key: String) -> anyhow::Result<()> {
    let relay = MockRelay::builder()
        .api_key(api_key)
        .host(std::net::Ipv4Addr::LOCALHOST.into())
        .port(port)
        .start()
        .await
        .context("cannot start the relay")?;
    let relay = Arc::new(relay);
    let started = Instant::now();
    let out = Arc::new(Mutex::new(tokio::io::stdout()));
    write_line(
        &out,
        &json!({"type": "listening", "port": relay.addr().port()}),
    )
    .await?;

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let command: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let reply = json!({"type": "reply", "id": null, "error": format!("not JSON: {e}")});
                write_line(&out, &reply).await?;
                continue;
            }
        };
        let id = command.get("id").cloned().unwrap_or(Value::Null);
        if command["cmd"] == "quit" {
            write_line(&out, &json!({"type": "reply", "id": id, "ok": true})).await?;
            break;
        }
        let relay = Arc::clone(&relay);
        let out = Arc::clone(&out);
        tokio::spawn(async move {
            let mut reply = match handle(&relay, &command, started).await {
                Ok(fields) => fields,
                Err(e) => json!({ "error": format!("{e:#}") }),
            };
            reply["type"] = json!("reply");
            reply["id"] = id;
            if let Err(e) = write_line(&out, &reply).await {
                tracing::error!(error = %e, "cannot write a reply");
            }
        });
    }
    match Arc::try_unwrap(relay) {
        Ok(relay) => relay.shutdown().await,
        Err(_) => tracing::warn!("commands still running at quit; not waiting for them"),
    }
    Ok(())
}

async fn write_line(out: &Mutex<tokio::io::Stdout>, value: &Value) -> anyhow::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    let mut out = out.lock().await;
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

fn timeout_of(command: &Value) -> Duration {
    Duration::from_millis(command["timeoutMs"].as_u64().unwrap_or(10_000))
}

fn runner_of(command: &Value) -> anyhow::Result<String> {
    command["runnerId"]
        .as_str()
        .map(str::to_owned)
        .context("runnerId (a string) is required")
}

async fn handle(relay: &RelayHandle, command: &Value, started: Instant) -> anyhow::Result<Value> {
    let count = command["count"].as_u64().unwrap_or(1);
    match command["cmd"].as_str().unwrap_or_default() {
        "stats" => {
            let counts = relay.counts();
            Ok(json!({
                "registered": relay.runners().iter().filter(|r| r.connected).count(),
                "events": counts.get("runner_session_event").copied().unwrap_or(0),
                "records": counts.values().sum::<u64>(),
                "timeNs": nanos(started.elapsed()),
            }))
        }
        "window" => {
            let events = || {
                relay
                    .counts()
                    .get("runner_session_event")
                    .copied()
                    .unwrap_or(0)
            };
            let delay = command["delayMs"].as_u64().unwrap_or(0);
            let window = command["windowMs"].as_u64().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let (e0, t0) = (events(), Instant::now());
            tokio::time::sleep(Duration::from_millis(window)).await;
            let (e1, elapsed) = (events(), t0.elapsed());
            Ok(json!({ "events": e1 - e0, "elapsedNs": nanos(elapsed) }))
        }
        "runners" => {
            let mut runners: Vec<_> = relay
                .runners()
                .into_iter()
                .filter(|r| r.connected)
                .collect();
            runners.sort_by_key(|r| r.connected_at_us);
            let ids: Vec<String> = runners.into_iter().map(|r| r.runner_id).collect();
            Ok(json!({ "runners": ids }))
        }
        "ping" => {
            let runner = runner_of(command)?;
            let mut rtt = Vec::new();
            for i in 0..count {
                let t0 = Instant::now();
                relay
                    .request(&runner, ServerEvent::Ping(Ping {}), timeout_of(command))
                    .await
                    .with_context(|| format!("ping {i} to {runner}"))?;
                rtt.push(nanos(t0.elapsed()));
            }
            Ok(json!({ "rttNs": rtt }))
        }
        "pingAll" => {
            let timeout = timeout_of(command);
            let pings = relay
                .runners()
                .into_iter()
                .filter(|r| r.connected)
                .map(|r| async move {
                    let t0 = Instant::now();
                    relay
                        .request(&r.runner_id, ServerEvent::Ping(Ping {}), timeout)
                        .await
                        .ok()
                        .map(|_| nanos(t0.elapsed()))
                });
            let answers = futures_util::future::join_all(pings).await;
            let missing = answers.iter().filter(|a| a.is_none()).count();
            let rtt: Vec<u64> = answers.into_iter().flatten().collect();
            Ok(json!({ "rttNs": rtt, "missing": missing }))
        }
        "waitRunner" => {
            let runner = runner_of(command)?;
            relay
                .wait_for_runner_id(&runner, timeout_of(command))
                .await?;
            Ok(json!({ "ok": true }))
        }
        "spawn" => {
            let runner = runner_of(command)?;
            let timeout = timeout_of(command);
            let mut rtt = Vec::new();
            for i in 0..count {
                let session_id = format!("bench-{i}");
                let new_session = ServerEvent::NewSession(NewSession {
                    session_id: session_id.clone(),
                    cwd: None,
                    prompt: None,
                    model: None,
                    skills: None,
                });
                let t0 = Instant::now();
                let reply = relay.request(&runner, new_session, timeout).await?;
                let elapsed = nanos(t0.elapsed());
                anyhow::ensure!(
                    matches!(reply, RunnerEvent::SessionReady(_)),
                    "new_session {session_id}: {reply:?}"
                );
                rtt.push(elapsed);
                let kill = ServerEvent::KillSession(KillSession { session_id });
                relay.request(&runner, kill, timeout).await?;
            }
            Ok(json!({ "rttNs": rtt }))
        }
        other => anyhow::bail!(
            "unknown command {other:?} (stats, runners, window, ping, pingAll, waitRunner, spawn, quit)"
        ),
    }
}
