//! Every fault, observed from the reference JavaScript client's side.

mod fixture;

use std::time::{Duration, Instant};

use fixture::*;
use mock_relay::{DEFAULT_REFUSAL, RecordDirection, RelayError};
use runner_protocol::{ListSessions, Ping};
use serde_json::json;

#[tokio::test]
async fn a_kick_is_a_server_disconnect_and_the_client_stays_away() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;

    let mark = relay.mark();
    relay.kick("r1", None).await.expect("kick");
    let gone = runner.of_type("disconnect").await;
    // The namespace DISCONNECT, as socket.io's `disconnect(true)` sends it:
    // a stock client does not reconnect by itself.
    assert_eq!(gone["reason"], "io server disconnect");
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "r1",
        "fault_kick",
    )
    .await;
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "r1",
        "disconnect",
    )
    .await;
    // Five times the client's longest reconnection delay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    runner.drain();
    let after = &runner.seen()[runner.seen().iter().position(|l| *l == gone).unwrap() + 1..];
    assert!(after.is_empty(), "the kicked client came back: {after:#?}");
    assert!(!relay.runner("r1").unwrap().connected);

    // It comes back when it decides to.
    let info = relay.runner("r1").unwrap();
    runner.command(json!({ "op": "connect" })).await;
    runner.event("runner_registered").await;
    assert_ne!(relay.runner("r1").unwrap().socket_id, info.socket_id);
    runner.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_close_and_the_runner_reconnects() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let first = relay.runner("r1").unwrap().socket_id;

    let mark = relay.mark();
    relay.drop_connection("r1").expect("drop");
    let gone = runner.of_type("disconnect").await;
    // No DISCONNECT packet, only the end of the transport: the client
    // reconnects by itself.
    assert_eq!(gone["reason"], "transport close");
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "r1",
        "fault_drop_connection",
    )
    .await;
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "r1",
        "disconnect",
    )
    .await;
    runner.of_type("reconnect").await;
    runner.of_type("connect").await;
    runner.event("runner_registered").await;
    let again = relay.runner("r1").unwrap();
    assert!(again.connected);
    assert_ne!(again.socket_id, first);
    assert_eq!(
        relay.drop_connection("ghost").unwrap_err(),
        RelayError::UnknownRunner("ghost".into())
    );
    runner.stop().await;
}

#[tokio::test]
async fn a_kick_with_an_error_delivers_the_error_first() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    relay
        .kick("r1", Some("go away".into()))
        .await
        .expect("kick");
    let error = runner
        .wait_for("the error event", |l| {
            l["type"] == "event" && l["event"] == "error"
        })
        .await;
    assert_eq!(error["args"], json!([{ "message": "go away" }]));
    // The disconnect comes after the error.
    assert_eq!(
        runner.of_type("disconnect").await["reason"],
        "io server disconnect"
    );
    assert_eq!(
        relay.kick("ghost", None).await.unwrap_err(),
        RelayError::UnknownRunner("ghost".into())
    );
    runner.stop().await;
}

#[tokio::test]
async fn refused_handshakes_are_counted_down() {
    let relay = relay().await;
    relay.refuse_handshakes(1, Some("come back later".into()));
    let mark = relay.mark();
    let mut refused = JsRunner::registered(&relay.url(), "r1", "s", json!({})).await;
    assert_eq!(
        refused.of_type("connect_error").await["message"],
        "come back later"
    );
    let rec = record(&relay, mark, "handshake_refused").await;
    assert_eq!(rec.payload["message"], "come back later");
    refused.stop().await;

    // The count is used up: the next runner gets in.
    let accepted = registered_runner(&relay, "r1", json!({})).await;
    accepted.stop().await;

    relay.refuse_handshakes(2, None);
    for _ in 0..2 {
        let mut r = JsRunner::registered(&relay.url(), "r2", "s", json!({})).await;
        assert_eq!(r.of_type("connect_error").await["message"], DEFAULT_REFUSAL);
        r.stop().await;
    }
    let accepted = registered_runner(&relay, "r2", json!({})).await;
    accepted.stop().await;
}

#[tokio::test]
async fn outgoing_events_can_be_delayed() {
    const DELAY: Duration = Duration::from_millis(400);
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let mark = relay.mark();
    relay.delay_outgoing(DELAY);
    let started = Instant::now();
    relay.send("r1", Ping {}.into()).await.expect("ping");
    runner.event("ping").await;
    // A lower bound, not a speed goal: the event must not arrive early.
    assert!(
        started.elapsed() >= DELAY,
        "arrived after {:?}",
        started.elapsed()
    );
    let out = record_of(&relay, mark, RecordDirection::Out, "r1", "ping").await;
    let fault = record(&relay, mark, "fault_delay").await;
    assert!(out.at_us >= fault.at_us + DELAY.as_micros() as u64 - 1_000);
    relay.delay_outgoing(Duration::ZERO);
    runner.stop().await;
}

#[tokio::test]
async fn outgoing_events_can_be_dropped() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    relay.drop_outgoing(1);
    let mark = relay.mark();
    relay
        .send("r1", Ping {}.into())
        .await
        .expect("ping is swallowed");
    relay
        .send("r1", ListSessions {}.into())
        .await
        .expect("list_sessions goes through");
    runner.event("list_sessions").await;
    runner.drain();
    assert!(
        !runner.seen().iter().any(|l| l["event"] == "ping"),
        "the dropped ping arrived: {:#?}",
        runner.seen()
    );
    let dropped = record(&relay, mark, "fault_dropped").await;
    assert_eq!(dropped.payload["event"], "ping");
    assert!(
        !relay
            .transcript_since(mark, None)
            .iter()
            .any(|r| r.direction == RecordDirection::Out && r.event == "ping")
    );
    runner.stop().await;
}

#[tokio::test]
async fn the_relay_restarts_on_the_same_port_and_runners_come_back() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let addr = relay.addr();

    let mark = relay.mark();
    relay
        .restart(Duration::from_millis(300), false)
        .await
        .expect("restart");
    assert_eq!(relay.addr(), addr);
    runner.of_type("disconnect").await;
    record(&relay, mark, "relay_down").await;
    record(&relay, mark, "relay_up").await;
    // While it was down the client's attempts failed; now it is back.
    let attempt = runner
        .wait_for("a second reconnect attempt", |l| {
            l["type"] == "reconnect_attempt" && l["attempt"].as_u64() >= Some(2)
        })
        .await;
    assert!(attempt["attempt"].as_u64() >= Some(2));
    runner.of_type("connect").await;
    runner.event("runner_registered").await;
    let info = relay.wait_for_runner(WAIT).await.expect("registered again");
    assert_eq!(info.runner_id, "r1");

    // Without keep_state the secret binding was forgotten: another secret
    // is accepted after a restart.
    relay
        .restart(Duration::from_millis(50), false)
        .await
        .expect("restart");
    runner.stop().await;
    let other = JsRunner::registered(&relay.url(), "r1", "a-new-secret", json!({})).await;
    let mut other = other;
    other.event("runner_registered").await;
    other.stop().await;
}

#[tokio::test]
async fn a_restart_keeping_state_keeps_the_secret_binding() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    relay
        .restart(Duration::from_millis(100), true)
        .await
        .expect("restart");
    runner.of_type("disconnect").await;
    runner.event("runner_registered").await;
    let mut intruder = JsRunner::registered(&relay.url(), "r1", "wrong", json!({})).await;
    intruder.event("error").await;
    intruder.stop().await;
    runner.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_server_and_join_reports_it() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let other = relay.clone();
    relay.clone().shutdown().await;
    runner.of_type("disconnect").await;
    // The task ended cleanly; any clone's join() says so.
    assert_eq!(other.clone().join().await, Ok(()));
    assert!(tokio::net::TcpStream::connect(other.addr()).await.is_err());
    runner.stop().await;
}

#[tokio::test]
async fn join_surfaces_a_clean_end() {
    let relay = relay().await;
    let joiner = relay.clone();
    let join = tokio::spawn(joiner.join());
    relay.clone().shutdown().await;
    // Whichever clone awaited the task, it ended cleanly.
    let result = tokio::time::timeout(WAIT, join)
        .await
        .expect("waiting for join")
        .expect("join task");
    assert!(
        matches!(result, Ok(()) | Err(RelayError::AlreadyJoined)),
        "{result:?}"
    );
    assert_eq!(relay.join().await, Ok(()));
}
