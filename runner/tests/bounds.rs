//! The runner's memory stays flat under what a hostile workspace, a
//! misbehaving worker or a slow relay can do: the `pizzapi-runner` binary
//! runs as a process against a mock relay, and its resident set size is
//! read from `/proc/<pid>/status` while the pressure lasts. Every loop is
//! bounded in count and time.

mod fixture;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fixture::{RunnerProcess, WAIT, registered, relay};
use mock_relay::RecordDirection;
use runner_protocol::{
    GetUsage, KillSession, NewSession, NewTerminal, Ping, ServerEvent, TerminalInput,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MIB: u64 = 1024 * 1024;

/// Samples the RSS every 50 ms for `time` and returns the highest value.
async fn peak_rss(runner: &RunnerProcess, time: Duration) -> u64 {
    let end = Instant::now() + time;
    let mut peak = runner.rss();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(runner.rss());
    }
    peak
}

fn assert_flat(what: &str, baseline: u64, peak: u64, allowed: u64) {
    let grew = peak.saturating_sub(baseline);
    eprintln!(
        "{what}: baseline {:.1} MiB, peak {:.1} MiB (+{:.1} MiB, allowed {} MiB)",
        baseline as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        grew as f64 / MIB as f64,
        allowed / MIB
    );
    assert!(
        grew <= allowed,
        "{what}: the runner grew by {} MiB",
        grew / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_dev_zero_as_usage_cache_neither_hangs_nor_grows_the_runner() {
    let relay = relay().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("usage-cache.json");
    nix::unistd::mkfifo(&cache, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let runner = RunnerProcess::start(
        &relay.url(),
        &[("PIZZAPI_USAGE_CACHE_PATH", cache.display().to_string())],
    );
    let id = registered(&relay, &runner).await;
    let baseline = runner.rss();
    // A FIFO: every request is answered, none waits for a writer.
    for i in 0..40 {
        let reply = relay
            .request(
                &id,
                ServerEvent::GetUsage(GetUsage {
                    request_id: Some(format!("fifo-{i}")),
                }),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("get_usage {i} on a FIFO: {e}"));
        assert_eq!(reply.payload()["data"]["providers"], serde_json::json!({}));
    }
    // A symlink to /dev/zero: answered, and read no further than the cap.
    std::fs::remove_file(&cache).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &cache).unwrap();
    for i in 0..20 {
        relay
            .request(
                &id,
                ServerEvent::GetUsage(GetUsage {
                    request_id: Some(format!("zero-{i}")),
                }),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|e| panic!("get_usage {i} on /dev/zero: {e}"));
    }
    let peak = peak_rss(&runner, Duration::from_millis(200)).await;
    assert_flat("usage cache", baseline, peak, 16 * MIB);
    relay
        .request(&id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("the runner still answers");
}

/// A TCP proxy in front of the relay whose runner → relay direction can be
/// paused: a relay that stops reading.
async fn pausable_proxy(target: std::net::SocketAddr) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (paused_tx, paused_rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let paused = paused_rx.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.into_split();
                let (mut ro, mut wo) = outbound.into_split();
                let up = async move {
                    let mut paused = paused;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        while *paused.borrow() {
                            if paused.changed().await.is_err() {
                                return;
                            }
                        }
                        match ri.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if wo.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut ro, &mut wi).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (format!("http://{addr}"), paused_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_flooding_stdout_is_slowed_by_a_stalled_relay_not_buffered() {
    let relay = relay().await;
    let (url, paused) = pausable_proxy(relay.addr()).await;
    let line = format!(r#"{{"type":"flood","pad":"{}"}}"#, "x".repeat(1000));
    let worker = shell_words::join(["/bin/sh", "-c", &format!("exec yes '{line}'")]);
    let runner = RunnerProcess::start(&url, &[("PIZZAPI_WORKER_CMD", worker)]);
    let id = registered(&relay, &runner).await;
    let idle = runner.rss();
    let mark = relay.mark();
    relay
        .send(
            &id,
            ServerEvent::NewSession(NewSession {
                session_id: "flood".into(),
                cwd: None,
                prompt: None,
                model: None,
                skills: None,
            }),
        )
        .await
        .unwrap();
    relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::In && r.event == "runner_session_event",
            WAIT,
        )
        .await
        .expect("the worker's events arrive");
    // The relay stops reading; whatever the runner would buffer now, it
    // buffers within a second.
    paused.send_replace(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = runner.rss();
    let peak = peak_rss(&runner, Duration::from_secs(3)).await;
    assert_flat("stalled relay", baseline, peak, 24 * MIB);
    // The relay reads again: events flow, the session can be killed.
    paused.send_replace(false);
    let mark = relay.mark();
    relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::In && r.event == "runner_session_event",
            WAIT,
        )
        .await
        .expect("events flow again");
    relay
        .send(
            &id,
            ServerEvent::KillSession(KillSession {
                session_id: "flood".into(),
            }),
        )
        .await
        .unwrap();
    relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::In && r.event == "session_killed",
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("session_killed: {e}; log:\n{}", runner.log_text()));
    // Once the flood is over the memory is given back: the runner is near
    // its idle size again (within 5 s), not holding what the flood made it
    // allocate.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = runner.rss();
    while after > idle + 16 * MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = runner.rss();
    }
    assert_flat("after the flood", idle, after, 16 * MIB);
}

fn deaf_shell(root: &Path) -> String {
    let script = root.join("deaf.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_input_to_a_shell_that_does_not_read_is_bounded_in_bytes() {
    let relay = Arc::new(relay().await);
    let runner = RunnerProcess::start(&relay.url(), &[]);
    let id = registered(&relay, &runner).await;
    let mark = relay.mark();
    relay
        .send(
            &id,
            ServerEvent::NewTerminal(NewTerminal {
                terminal_id: "deaf".into(),
                cwd: None,
                shell: Some(deaf_shell(&runner.root)),
                cols: None,
                rows: None,
            }),
        )
        .await
        .unwrap();
    relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::In && r.event == "terminal_ready",
            WAIT,
        )
        .await
        .expect("terminal_ready");
    let baseline = runner.rss();
    // 32 messages of 2 MiB: a bound in messages (256) would hold all 64 MiB.
    let data = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 2 * MIB as usize]);
    let mark = relay.mark();
    for _ in 0..32 {
        relay
            .send(
                &id,
                ServerEvent::TerminalInput(TerminalInput {
                    terminal_id: "deaf".into(),
                    data: data.clone(),
                }),
            )
            .await
            .unwrap();
    }
    let refused = relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::In && r.event == "terminal_error",
            WAIT,
        )
        .await
        .expect("input beyond the bound is refused");
    let message = refused.payload["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("PIZZAPI_TERMINAL_INPUT_MAX_BYTES"),
        "{message}"
    );
    relay
        .request(&id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("every input was handled");
    let peak = peak_rss(&runner, Duration::from_millis(500)).await;
    assert_flat("terminal input", baseline, peak, 24 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_limit_are_refused_naming_it() {
    let relay = relay().await;
    let worker = shell_words::join(["/bin/sh", "-c", "exec sleep 60"]);
    let runner = RunnerProcess::start(
        &relay.url(),
        &[
            ("PIZZAPI_WORKER_CMD", worker),
            ("PIZZAPI_MAX_SESSIONS", "3".to_owned()),
        ],
    );
    let id = registered(&relay, &runner).await;
    let baseline = runner.rss();
    for i in 0..4 {
        let reply = relay
            .request(
                &id,
                ServerEvent::NewSession(NewSession {
                    session_id: format!("s{i}"),
                    cwd: None,
                    prompt: None,
                    model: None,
                    skills: None,
                }),
                WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("new_session {i}: {e}"));
        if i < 3 {
            assert_eq!(reply.name(), "session_ready", "{i}: {:?}", reply.payload());
        } else {
            assert_eq!(reply.name(), "session_error");
            let message = reply.payload()["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                message.contains("Too many sessions") && message.contains("PIZZAPI_MAX_SESSIONS"),
                "{message}"
            );
        }
    }
    let peak = peak_rss(&runner, Duration::from_millis(200)).await;
    assert_flat("sessions", baseline, peak, 16 * MIB);
}
