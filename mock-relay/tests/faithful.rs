//! The mock relay is faithful: a stock socket.io-client 4.8 (the probe,
//! `tests/js/runner.js`) sees from it exactly what it sees from the reference
//! relay on socket.io 4.8 (`tests/js/runner-relay.js`, which behaves like
//! PizzaPi's relay), for every way a relay accepts, refuses or drops a
//! runner. The same script is played against both; each case's observations
//! (volatile socket ids removed) must be equal, and equal to what the
//! protocol reference says a client sees.

mod fixture;

use std::time::Duration;

use fixture::reference::ReferenceRelay;
use fixture::*;
use mock_relay::RelayHandle;
use runner_protocol::messages::secret_mismatch;
use serde_json::{Value, json};

/// How long a case keeps listening after its last expected observation: five
/// times the probe's longest reconnection delay (200 ms), so that a client
/// that reconnects by itself is seen doing it.
const QUIET: Duration = Duration::from_secs(1);

/// One relay under test, driven the same way whichever it is.
enum Relay {
    Mock(RelayHandle),
    Reference(ReferenceRelay),
}

impl Relay {
    fn url(&self) -> String {
        match self {
            Relay::Mock(relay) => relay.url(),
            Relay::Reference(relay) => relay.url(),
        }
    }

    /// Drops a runner on purpose (socket.io's `disconnect(true)`).
    async fn kick(&mut self, runner_id: &str, error: Option<&str>) {
        match self {
            Relay::Mock(relay) => relay
                .kick(runner_id, error.map(str::to_owned))
                .await
                .expect("kick"),
            Relay::Reference(relay) => {
                relay
                    .command(json!({
                        "cmd": "kick", "runnerId": runner_id, "close": true, "error": error,
                    }))
                    .await;
            }
        }
    }

    /// Closes a runner's transport, as a network failure would.
    async fn drop_connection(&mut self, runner_id: &str) {
        match self {
            Relay::Mock(relay) => relay.drop_connection(runner_id).expect("drop"),
            Relay::Reference(relay) => {
                relay
                    .command(json!({ "cmd": "drop", "runnerId": runner_id }))
                    .await;
            }
        }
    }

    async fn refuse(&mut self, count: u32, message: &str) {
        match self {
            Relay::Mock(relay) => relay.refuse_handshakes(count, Some(message.to_owned())),
            Relay::Reference(relay) => {
                relay
                    .command(json!({ "cmd": "refuse", "count": count, "message": message }))
                    .await;
            }
        }
    }

    async fn stop(self) {
        match self {
            Relay::Mock(relay) => relay.shutdown().await,
            Relay::Reference(relay) => relay.stop().await,
        }
    }
}

/// A probe's observations, without what varies from run to run (socket ids)
/// and without its own emits.
fn normalized(seen: &[Value]) -> Vec<Value> {
    seen.iter()
        .filter(|line| line["type"] != "emitted")
        .map(|line| {
            let mut line = line.clone();
            if let Some(map) = line.as_object_mut() {
                map.remove("id");
            }
            line
        })
        .collect()
}

/// Waits for the observation `pred` describes, then listens for [`QUIET`]
/// more, and returns everything the probe saw.
async fn settle(probe: &mut JsRunner, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    probe.wait_for(what, pred).await;
    tokio::time::sleep(QUIET).await;
    probe.drain();
    normalized(probe.seen())
}

fn is_event(line: &Value, event: &str) -> bool {
    line["type"] == "event" && line["event"] == event
}

async fn registered_probe(relay: &Relay, runner_id: &str, secret: &str) -> JsRunner {
    let mut probe = JsRunner::registered(&relay.url(), runner_id, secret, json!({})).await;
    probe.event("runner_registered").await;
    probe
}

/// Plays every case against `relay`; returns each case's observations.
async fn play(mut relay: Relay) -> Vec<(&'static str, Vec<Value>)> {
    let mut cases = Vec::new();

    let mut probe = JsRunner::start(
        &relay.url(),
        json!({
            "auth": { "apiKey": "wrong", "runnerId": "bad-key", "runnerSecret": "s" },
            "register": register("bad-key", "s"),
        }),
    )
    .await;
    let seen = settle(&mut probe, "connect_error", |l| {
        l["type"] == "connect_error"
    })
    .await;
    cases.push(("bad key", seen));
    probe.stop().await;

    let mut probe = JsRunner::registered(&relay.url(), "good", "s", json!({})).await;
    let seen = settle(&mut probe, "runner_registered", |l| {
        is_event(l, "runner_registered")
    })
    .await;
    cases.push(("good key, register", seen));
    probe.stop().await;

    let owner = registered_probe(&relay, "shared", "s1").await;
    let mut intruder = JsRunner::registered(&relay.url(), "shared", "s2", json!({})).await;
    let seen = settle(&mut intruder, "disconnect", |l| l["type"] == "disconnect").await;
    cases.push(("secret mismatch", seen));
    intruder.stop().await;
    owner.stop().await;

    let mut probe = registered_probe(&relay, "kicked", "s").await;
    relay.kick("kicked", None).await;
    let seen = settle(&mut probe, "disconnect", |l| l["type"] == "disconnect").await;
    cases.push(("kick", seen));
    probe.stop().await;

    let mut probe = registered_probe(&relay, "kicked-error", "s").await;
    relay.kick("kicked-error", Some("go away")).await;
    let seen = settle(&mut probe, "disconnect", |l| l["type"] == "disconnect").await;
    cases.push(("kick with error", seen));
    probe.stop().await;

    let mut probe = registered_probe(&relay, "dropped", "s").await;
    relay.drop_connection("dropped").await;
    probe.of_type("disconnect").await;
    let seen = settle(&mut probe, "runner_registered again", |l| {
        is_event(l, "runner_registered")
    })
    .await;
    cases.push(("drop", seen));
    probe.stop().await;

    relay.refuse(2, "relay busy").await;
    let mut probe = JsRunner::registered(&relay.url(), "refused", "s", json!({})).await;
    probe.of_type("connect_error").await;
    // A refused client does not retry by itself: ask it twice more.
    probe.command(json!({ "op": "connect" })).await;
    probe.of_type("connect_error").await;
    probe.command(json!({ "op": "connect" })).await;
    let seen = settle(&mut probe, "runner_registered", |l| {
        is_event(l, "runner_registered")
    })
    .await;
    cases.push(("refused handshakes", seen));
    probe.stop().await;

    relay.stop().await;
    cases
}

/// What the protocol reference (section 1) says a stock client sees.
fn expected() -> Vec<(&'static str, Vec<Value>)> {
    let connect = json!({ "type": "connect" });
    let registered = |id: &str| json!({ "type": "event", "event": "runner_registered", "args": [{ "runnerId": id }] });
    let error = |message: &str| json!({ "type": "event", "event": "error", "args": [{ "message": message }] });
    let disconnect = |reason: &str| json!({ "type": "disconnect", "reason": reason });
    let refused =
        |message: &str| json!({ "type": "connect_error", "message": message, "data": null });
    vec![
        ("bad key", vec![refused("unauthorized")]),
        (
            "good key, register",
            vec![connect.clone(), registered("good")],
        ),
        (
            "secret mismatch",
            vec![
                connect.clone(),
                error(&secret_mismatch("shared")),
                disconnect("io server disconnect"),
            ],
        ),
        (
            "kick",
            vec![
                connect.clone(),
                registered("kicked"),
                disconnect("io server disconnect"),
            ],
        ),
        (
            "kick with error",
            vec![
                connect.clone(),
                registered("kicked-error"),
                error("go away"),
                disconnect("io server disconnect"),
            ],
        ),
        (
            "drop",
            vec![
                connect.clone(),
                registered("dropped"),
                disconnect("transport close"),
                json!({ "type": "reconnect_attempt", "attempt": 1 }),
                json!({ "type": "reconnect", "attempt": 1 }),
                connect.clone(),
                registered("dropped"),
            ],
        ),
        (
            "refused handshakes",
            vec![
                refused("relay busy"),
                refused("relay busy"),
                connect,
                registered("refused"),
            ],
        ),
    ]
}

fn table(cases: &[(&str, Vec<Value>)]) -> String {
    cases
        .iter()
        .map(|(name, seen)| {
            let seen: Vec<String> = seen.iter().map(Value::to_string).collect();
            format!("{name}:\n  {}\n", seen.join("\n  "))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_sees_the_same_from_the_mock_and_the_reference_relay() {
    let reference = play(Relay::Reference(ReferenceRelay::start(KEY).await)).await;
    let mock = play(Relay::Mock(relay().await)).await;
    eprintln!(
        "reference relay (socket.io 4.8):\n{}\nmock relay:\n{}",
        table(&reference),
        table(&mock)
    );
    assert_eq!(mock.len(), reference.len());
    for ((name, from_mock), (_, from_reference)) in mock.iter().zip(&reference) {
        assert_eq!(
            from_mock, from_reference,
            "{name}: the client saw something else from the mock relay"
        );
    }
    // Both relays could agree on something the contract does not say.
    assert_eq!(
        reference,
        expected(),
        "the reference relay left the contract"
    );
}
