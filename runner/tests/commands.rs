//! Commands through a real connection to the mock relay: concurrency,
//! malformed payloads, a panicking and a slow handler, the control commands.

mod fixture;

use std::sync::Arc;
use std::time::Duration;

use fixture::{KEY, Runner, WAIT, expect_in, received, relay};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use mock_relay::RecordDirection;
use pizzapi_runner::connection::{Connection, ReconnectPolicy};
use pizzapi_runner::dispatch::{CommandHandler, Dispatcher};
use pizzapi_runner::heartbeat::Heartbeat;
use pizzapi_runner::outbox::Outbox;
use pizzapi_runner::{ExitReason, ShutdownHandle};
use runner_protocol::{
    GetUsage, HandshakeAuth, ListSkills, Ping, Pong, RegisterRunner, Restart, RunnerEvent, Secret,
    ServerEvent,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_in_concurrent_waves_are_each_answered_once() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    // Two waves of 100 requests in flight at once: the mock relay's
    // per-socket send buffer (socketioxide's default, 128 packets) is the
    // limit of one burst, not the runner.
    let mark = relay.mark();
    for wave in 0..2 {
        let requests = (0..100).map(|n| {
            let i = wave * 100 + n;
            let relay = relay.clone();
            let id = id.clone();
            async move {
                let event = if i % 2 == 0 {
                    ServerEvent::Ping(Ping {})
                } else {
                    ServerEvent::GetUsage(GetUsage {
                        request_id: Some(format!("usage-{i}")),
                    })
                };
                (i, relay.request(&id, event, WAIT).await)
            }
        });
        for (i, reply) in futures_util::future::join_all(requests).await {
            let reply = reply.unwrap_or_else(|e| panic!("request {i}: {e}"));
            if i % 2 == 0 {
                assert_eq!(reply.name(), "pong");
            } else {
                assert_eq!(reply.request_id(), Some(format!("usage-{i}").as_str()));
            }
        }
    }
    // Exactly one reply each: wait for a heartbeat to let stragglers arrive.
    let hb = expect_in(&relay, mark, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(received(&relay, mark, &id, "pong").len(), 100);
    let usage = received(&relay, mark, &id, "usage_data");
    let mut ids: Vec<String> = usage
        .iter()
        .map(|r| r.payload["requestId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((usage.len(), ids.len()), (100, 100));
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_unknown_and_unsupported_commands_over_the_wire() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let mark = relay.mark();
    relay
        .send_raw(
            &id,
            "create_skill",
            json!({"requestId": "bad-1", "content": 5}),
        )
        .await
        .unwrap();
    let reply = expect_in(&relay, mark, "skill_result").await;
    assert_eq!(reply.payload["requestId"], json!("bad-1"));
    assert_eq!(reply.payload["ok"], json!(false));
    assert!(
        reply.payload["message"]
            .as_str()
            .unwrap()
            .contains("\"content\""),
        "{}",
        reply.payload
    );

    let mark = relay.mark();
    relay
        .send_raw(&id, "read_file", json!({"requestId": "bad-2", "path": "x"}))
        .await
        .unwrap();
    let reply = expect_in(&relay, mark, "file_result").await;
    assert_eq!(reply.payload["requestId"], json!("bad-2"));
    assert!(
        reply.payload["message"]
            .as_str()
            .unwrap()
            .contains("\"cwd\"")
    );

    // Unknown events are ignored; the runner keeps answering.
    relay
        .send_raw(&id, "no_such_command", json!({"requestId": "x"}))
        .await
        .unwrap();
    let mark = relay.mark();
    relay
        .send_raw(&id, "new_terminal", json!({"terminalId": "t1"}))
        .await
        .unwrap();
    let reply = expect_in(&relay, mark, "terminal_ready").await;
    assert_eq!(reply.payload, json!({"terminalId": "t1"}));
    let reply = relay
        .request(&id, ServerEvent::ListTerminals(Default::default()), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.payload(), json!({"terminals": ["t1"]}));
    let nothing_for_unknown = relay
        .transcript_since(0, Some(&id))
        .into_iter()
        .filter(|r| r.direction == RecordDirection::In)
        .all(|r| r.payload.get("requestId") != Some(&json!("x")));
    assert!(nothing_for_unknown);
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_usage_serves_the_cache_and_reports_changes() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    let reply = relay
        .request(&id, ServerEvent::GetUsage(GetUsage::default()), WAIT)
        .await
        .unwrap();
    let RunnerEvent::UsageData(data) = reply else {
        panic!("{reply:?}")
    };
    assert!(data.data.providers.is_empty());

    let mark = relay.mark();
    let cache = runner.home.path().join(".pizzapi/usage-cache.json");
    let content = json!({"fetchedAt": 7, "providers": {"anthropic": {"windows": [{"label": "5h", "utilization": 50.0}]}}});
    std::fs::write(&cache, content.to_string()).unwrap();
    let pushed = expect_in(&relay, mark, "usage_data").await;
    assert_eq!(pushed.payload, json!({"data": content}));
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_ends_the_run_with_42_and_releases_the_lock() {
    let relay = relay().await;
    let mut runner = Runner::start(&relay, KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    relay
        .send(&id, ServerEvent::Restart(Restart {}))
        .await
        .unwrap();
    let reason = runner.exit().await.expect("runner ran");
    assert_eq!(reason, ExitReason::Restart);
    assert_eq!(reason.exit_code(), 42);
    let state = runner.state();
    assert!(state.get("pid").is_none() && state.get("startedAt").is_none());
    assert_eq!(state["runnerId"], json!(id));
    relay
        .expect(
            0,
            |r| r.direction == RecordDirection::Connection && r.event == "disconnect",
            WAIT,
        )
        .await
        .expect("the runner disconnected");
}

/// Panics on `list_skills`, never finishes `git_status`, answers `ping`.
struct Troublesome;

impl CommandHandler for Troublesome {
    fn handle(&self, command: ServerEvent) -> BoxFuture<'static, Option<RunnerEvent>> {
        async move {
            match command {
                ServerEvent::Ping(_) => Some(Pong { now: 1 }.into()),
                ServerEvent::ListSkills(_) => panic!("a bug in a handler"),
                ServerEvent::GitStatus(_) => {
                    std::future::pending::<()>().await;
                    None
                }
                _ => None,
            }
        }
        .boxed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_stuck_handler_never_takes_the_connection_down() {
    let relay = relay().await;
    let (outbox, outbox_rx) = Outbox::channel();
    let runner_id = uuid::Uuid::new_v4().to_string();
    let secret = Secret::new("ab".repeat(32));
    let registration = {
        let runner_id = runner_id.clone();
        let secret = secret.clone();
        Arc::new(move || {
            let reg = RegisterRunner {
                runner_id: Some(runner_id.clone()),
                runner_secret: Some(secret.clone()),
                ..Default::default()
            };
            async move { reg }.boxed()
        })
    };
    let connection = Connection {
        relay_url: relay.url(),
        auth: HandshakeAuth {
            api_key: Secret::new(KEY),
            runner_id: runner_id.clone(),
            runner_secret: secret,
        },
        reconnect: ReconnectPolicy::default(),
        registration,
        heartbeat: Heartbeat::new(
            runner_id.clone(),
            Duration::from_millis(200),
            Arc::new(Vec::new),
        ),
        dispatcher: Arc::new(Dispatcher::new(Arc::new(Troublesome), outbox.clone())),
        outbox,
        control: ShutdownHandle::new(),
        backlog_max_bytes: pizzapi_runner::connection::BACKLOG_MAX_BYTES,
    };
    let close = CancellationToken::new();
    let task = tokio::spawn(connection.run(outbox_rx, close.clone()));
    relay.wait_for_runner(WAIT).await.expect("registration");

    let reply = relay
        .request(
            &runner_id,
            ServerEvent::ListSkills(ListSkills {
                request_id: Some("boom".into()),
            }),
            WAIT,
        )
        .await
        .expect("an error reply to the panicking command");
    assert_eq!(
        reply.payload(),
        json!({"requestId": "boom", "ok": false, "message": "internal error while handling list_skills"})
    );

    let mark = relay.mark();
    relay
        .send_raw(
            &runner_id,
            "git_status",
            json!({"requestId": "slow", "cwd": "/"}),
        )
        .await
        .unwrap();
    // The stuck command holds nothing up: heartbeats and pings go on.
    let hb = expect_in(&relay, mark, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    for _ in 0..3 {
        let reply = relay
            .request(&runner_id, ServerEvent::Ping(Ping {}), WAIT)
            .await
            .expect("pong while a command is stuck");
        assert_eq!(reply.name(), "pong");
    }
    assert!(received(&relay, 0, &runner_id, "file_result").is_empty());

    close.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("waiting for the connection to close")
        .unwrap();
}
