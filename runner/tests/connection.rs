//! The runner's connection against the mock relay, in-process: registration
//! once per connection, reconnection after a kick and after a relay restart,
//! refusals, and the heartbeat.

mod fixture;

use std::time::Duration;

use fixture::{KEY, Runner, WAIT, expect_in, received, relay};
use mock_relay::RecordDirection;
use pizzapi_runner::ExitReason;
use runner_protocol::{Ping, RunnerEvent, ServerEvent};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_once_with_its_identity_and_answers() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    let state = runner.state();
    assert_eq!(json!(info.runner_id), state["runnerId"]);
    assert_eq!(state["pid"], json!(std::process::id()));
    assert_eq!(info.name.as_deref(), Some("test-runner"));
    assert_eq!(info.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(info.platform.as_deref(), Some(std::env::consts::OS));

    let reg = expect_in(&relay, 0, "register_runner").await;
    assert_eq!(reg.payload["runnerSecret"], state["runnerSecret"]);
    assert_eq!(reg.payload["skills"], json!([]));

    let reply = relay
        .request(&info.runner_id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("pong");
    assert!(matches!(reply, RunnerEvent::Pong(p) if p.now > 1_600_000_000_000));

    // A heartbeat arrives, then another: still one registration.
    let hb = expect_in(&relay, 0, "runner_heartbeat").await;
    assert_eq!(hb.payload["runnerId"], json!(info.runner_id));
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(
        received(&relay, 0, &info.runner_id, "register_runner").len(),
        1
    );

    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_without_error_reconnects_and_registers_again_once() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    expect_in(&relay, 0, "runner_heartbeat").await;

    let mark = relay.mark();
    relay.kick(&info.runner_id, None).await.expect("kick");
    let again = expect_in(&relay, mark, "register_runner").await;
    // Two heartbeats on the new connection, and nothing registered twice.
    let hb = expect_in(&relay, again.seq, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(
        received(&relay, mark, &info.runner_id, "register_runner").len(),
        1
    );
    let reply = relay
        .request(&info.runner_id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("pong after the reconnect");
    assert_eq!(reply.name(), "pong");
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_gets_exactly_one_new_registration() {
    let relay = relay().await;
    let runner = Runner::start(&relay, KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");

    let mark = relay.mark();
    relay
        .restart(Duration::from_millis(1500), false)
        .await
        .expect("relay restart");
    let again = expect_in(&relay, mark, "register_runner").await;
    let hb = expect_in(&relay, again.seq, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(
        received(&relay, mark, &info.runner_id, "register_runner").len(),
        1
    );
    // The relay forgot the runner: the registration re-bound the same identity.
    assert_eq!(
        relay.wait_for_runner(WAIT).await.unwrap().runner_id,
        info.runner_id
    );
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_api_key_stops_the_runner_with_77() {
    let relay = relay().await;
    let mut runner = Runner::start(&relay, "wrong-key");
    // Waiting well below the 45 s after which a refused client would
    // silently try again.
    let reason = runner.exit().await.expect("runner ran");
    assert!(
        matches!(&reason, ExitReason::Refused { message } if message.contains("unauthorized")),
        "{reason:?}"
    );
    assert_eq!(reason.exit_code(), 77);
    assert!(runner.state().get("pid").is_none(), "lock released");
    let refused = relay
        .transcript()
        .into_iter()
        .filter(|r| r.direction == RecordDirection::Connection && r.event == "handshake_refused")
        .count();
    assert_eq!(refused, 1, "exactly one handshake, no retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_other_reasons_are_retried_until_accepted() {
    let relay = relay().await;
    relay.refuse_handshakes(2, Some("relay busy".into()));
    let runner = Runner::start(&relay, KEY);
    // Registered after the two refusals, well before the library's own
    // 45 s retry would have come.
    relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration after refusals");
    let refused = relay
        .transcript()
        .into_iter()
        .filter(|r| r.direction == RecordDirection::Connection && r.event == "handshake_refused")
        .count();
    assert_eq!(refused, 2);
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_mismatch_stops_the_runner_with_the_relays_message() {
    let relay = relay().await;
    let first = Runner::start(&relay, KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".pizzapi")).unwrap();
    // A second runner claiming the same id with another secret.
    std::fs::write(
        home.path().join(".pizzapi/runner.json"),
        json!({"runnerId": info.runner_id, "runnerSecret": "00".repeat(32)}).to_string(),
    )
    .unwrap();
    let config = fixture::config(&relay.url(), home.path(), KEY);
    let mut impostor = Runner::start_with(home, config);
    let reason = impostor.exit().await.expect("runner ran");
    assert_eq!(
        reason,
        ExitReason::Refused {
            message: format!(
                "Runner authentication failed: secret mismatch for runner {}",
                info.runner_id
            )
        }
    );
    // The rightful runner is still there.
    relay
        .request(&info.runner_id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("the first runner still answers");
    assert_eq!(first.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_alone_is_logged_but_an_error_then_a_kick_is_a_refusal() {
    let relay = relay().await;
    let mut runner = Runner::start(&relay, KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    // An error the relay reports while keeping the connection is not fatal.
    relay
        .send(
            &id,
            ServerEvent::Error(runner_protocol::RelayError {
                message: "something went wrong on the relay".into(),
            }),
        )
        .await
        .unwrap();
    let reply = relay
        .request(&id, ServerEvent::Ping(Ping {}), WAIT)
        .await
        .expect("pong after a relay error");
    assert_eq!(reply.name(), "pong");

    // An error followed by the relay dropping the connection is a refusal.
    relay
        .kick(&id, Some("runner disabled by the administrator".into()))
        .await
        .unwrap();
    let reason = runner.exit().await.expect("runner ran");
    assert_eq!(
        reason,
        ExitReason::Refused {
            message: "runner disabled by the administrator".into()
        }
    );
    assert!(runner.state().get("pid").is_none(), "lock released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_not_up_yet_is_waited_for() {
    // Something on the relay's port that hangs up on the runner's first
    // attempt, so the runner's first connection fails for certain.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let config = fixture::config(&format!("ws://127.0.0.1:{port}"), home.path(), KEY);
    let runner = Runner::start_with(home, config);
    let (first_attempt, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("waiting for the runner's first attempt")
        .unwrap();
    drop(first_attempt);
    drop(listener);

    // The relay comes up on that port; the runner gets there by itself.
    let relay = mock_relay::MockRelay::builder()
        .api_key(KEY)
        .port(port)
        .start()
        .await
        .expect("relay on the port the runner is trying");
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    assert_eq!(
        received(&relay, 0, &info.runner_id, "register_runner").len(),
        1
    );
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_an_outage_are_sent_after_the_next_registration() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut config = fixture::config(&relay.url(), home.path(), KEY);
    config.usage_poll_interval = Duration::from_millis(50);
    let cache = home.path().join(".pizzapi/usage-cache.json");
    let runner = Runner::start_with(home, config);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let mark = relay.mark();
    let restarting = {
        let relay = relay.clone();
        tokio::spawn(async move { relay.restart(Duration::from_secs(2), true).await })
    };
    relay
        .expect(
            mark,
            |r| r.direction == RecordDirection::Connection && r.event == "disconnect",
            WAIT,
        )
        .await
        .expect("the relay dropped the runner");
    // The cache changes while the relay is down: the runner's usage_data
    // has nowhere to go yet.
    std::fs::write(
        &cache,
        json!({"fetchedAt": 42, "providers": {}}).to_string(),
    )
    .unwrap();
    restarting.await.unwrap().expect("relay restarted");

    let registered = expect_in(&relay, mark, "register_runner").await;
    let usage = expect_in(&relay, mark, "usage_data").await;
    assert!(usage.seq > registered.seq, "sent after the registration");
    assert_eq!(
        usage.payload,
        json!({"data": {"fetchedAt": 42, "providers": {}}})
    );
    assert_eq!(received(&relay, mark, &id, "usage_data").len(), 1);
    assert_eq!(runner.stop().await.expect("clean stop"), ExitReason::Signal);
}
