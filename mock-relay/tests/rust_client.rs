//! The relay with a rust_socketio 0.6 client as the runner, where that
//! client can take part: registration, refusals, commands, kick, restart.
//! These tests also pin the client's behaviour the runner relies on.

mod fixture;

use std::time::Duration;

use fixture::*;
use futures_util::FutureExt;
use mock_relay::{RecordDirection, RelayHandle};
use runner_protocol::ListSkills;
use runner_protocol::messages::secret_mismatch;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the client saw: `("open", _)`, `("close", _)`, `("error", text or
/// payload)`, or `(event name, payload)`.
type Seen = (String, Value);

struct RustRunner {
    client: Client,
    seen: mpsc::UnboundedReceiver<Seen>,
}

fn first_arg(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.remove(0),
        Payload::Text(_) => Value::Null,
        #[allow(deprecated)]
        Payload::String(s) => Value::String(s),
        Payload::Binary(b) => Value::String(format!("<{} bytes>", b.len())),
    }
}

impl RustRunner {
    /// Connects with `auth`; registers as `register` after every open.
    /// Callbacks only forward to a channel (they run on the reader task).
    async fn connect(relay: &RelayHandle, auth: Value, register: Option<Value>) -> RustRunner {
        let (tx, seen) = mpsc::unbounded_channel::<Seen>();
        let on_open = {
            let tx = tx.clone();
            move |_: Payload, client: Client| {
                let tx = tx.clone();
                let register = register.clone();
                async move {
                    let _ = tx.send(("open".into(), Value::Null));
                    if let Some(register) = register {
                        let _ = client.emit("register_runner", register).await;
                    }
                }
                .boxed()
            }
        };
        let forward = |kind: &'static str| {
            let tx = tx.clone();
            move |payload: Payload, _: Client| {
                let _ = tx.send((kind.to_owned(), first_arg(payload)));
                async {}.boxed()
            }
        };
        let on_any = {
            let tx = tx.clone();
            move |event: Event, payload: Payload, _: Client| {
                let _ = tx.send((String::from(event), first_arg(payload)));
                async {}.boxed()
            }
        };
        let client = ClientBuilder::new(relay.url())
            .namespace("/runner")
            .transport_type(TransportType::Websocket)
            .auth(auth)
            .reconnect(true)
            .reconnect_on_disconnect(true)
            .reconnect_delay(50, 200)
            .on(Event::Connect, on_open)
            .on(Event::Close, forward("close"))
            .on(Event::Error, forward("error"))
            .on_any(on_any)
            .connect()
            .await
            .expect("connect() returns before the handshake is answered");
        RustRunner { client, seen }
    }

    async fn wait(&mut self, what: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) if pred(&seen) => return seen,
                Ok(Some(_)) => {}
                Ok(None) => panic!("client callbacks gone while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    async fn kind(&mut self, kind: &str) -> Value {
        self.wait(kind, |(k, _)| k == kind).await.1
    }

    async fn stop(self) {
        let _ = self.client.disconnect().await;
    }
}

#[tokio::test]
async fn a_rust_runner_registers() {
    let relay = relay().await;
    let mut runner =
        RustRunner::connect(&relay, auth("rust-1", "s"), Some(register("rust-1", "s"))).await;
    runner.kind("open").await;
    assert_eq!(
        runner.kind("runner_registered").await,
        json!({ "runnerId": "rust-1" })
    );
    let info = relay.wait_for_runner(WAIT).await.expect("registered");
    assert_eq!(info.runner_id, "rust-1");
    assert_eq!(info.roots, ["/work/root"]);
    runner.stop().await;
}

#[tokio::test]
async fn a_refusal_reaches_a_rust_client_only_as_an_error_event() {
    let relay = relay().await;
    let mut bad = json!(auth("rust-1", "s"));
    bad["apiKey"] = json!("wrong");
    // connect() has already returned Ok here: the refusal comes later.
    let mut runner = RustRunner::connect(&relay, bad, None).await;
    let error = runner.kind("error").await;
    assert_eq!(
        error,
        json!(r#"Received an ConnectError frame: {"message":"unauthorized"}"#)
    );
    // disconnect() stops the client's silent retry loop.
    runner.stop().await;
    assert!(relay.runners().is_empty());
}

#[tokio::test]
async fn a_rust_runner_answers_correlated_commands() {
    let relay = relay().await;
    let mut runner =
        RustRunner::connect(&relay, auth("rust-1", "s"), Some(register("rust-1", "s"))).await;
    runner.kind("runner_registered").await;

    let request = {
        let relay = relay.clone();
        tokio::spawn(async move {
            relay
                .request("rust-1", ListSkills::default().into(), WAIT)
                .await
        })
    };
    let asked = runner.kind("list_skills").await;
    let request_id = asked["requestId"]
        .as_str()
        .expect("a requestId was filled")
        .to_owned();
    runner
        .client
        .emit(
            "skills_list",
            json!({ "skills": [], "requestId": request_id }),
        )
        .await
        .expect("emit");
    let reply = request
        .await
        .expect("join")
        .expect("the reply is correlated");
    assert_eq!(reply.request_id(), Some(request_id.as_str()));
    runner.stop().await;
}

#[tokio::test]
async fn a_kicked_rust_runner_sees_a_server_side_disconnect() {
    let relay = relay().await;
    let mut runner =
        RustRunner::connect(&relay, auth("rust-1", "s"), Some(register("rust-1", "s"))).await;
    runner.kind("runner_registered").await;
    let mark = relay.mark();
    relay.kick("rust-1", None).await.expect("kick");
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "rust-1",
        "disconnect",
    )
    .await;
    // The namespace DISCONNECT reaches rust_socketio as `close` (a
    // server-side disconnect), not as the `error` of a lost transport. The
    // transport is closed after it, so the library's reconnection (with
    // `reconnect_on_disconnect`) brings the runner back.
    let first = runner
        .wait("close or error", |(k, _)| k == "close" || k == "error")
        .await;
    assert_eq!(first.0, "close", "{first:?}");
    runner.kind("open").await;
    runner.kind("runner_registered").await;
    runner.stop().await;
}

#[tokio::test]
async fn a_dropped_rust_runner_reconnects_without_a_close() {
    let relay = relay().await;
    let mut runner =
        RustRunner::connect(&relay, auth("rust-1", "s"), Some(register("rust-1", "s"))).await;
    runner.kind("runner_registered").await;
    relay.drop_connection("rust-1").expect("drop");
    // The relay ends the WebSocket with a close frame and no DISCONNECT:
    // rust_socketio reports nothing of it, neither `close` nor `error`,
    // only the next `open`.
    let mut before_open = Vec::new();
    loop {
        let seen = runner.wait("open", |_| true).await;
        if seen.0 == "open" {
            break;
        }
        before_open.push(seen);
    }
    assert_eq!(before_open, Vec::<Seen>::new());
    runner.kind("runner_registered").await;
    runner.stop().await;
}

#[tokio::test]
async fn a_rust_runner_comes_back_after_a_relay_restart() {
    let relay = relay().await;
    let mut runner =
        RustRunner::connect(&relay, auth("rust-1", "s"), Some(register("rust-1", "s"))).await;
    runner.kind("runner_registered").await;
    relay
        .restart(Duration::from_millis(300), false)
        .await
        .expect("restart");
    runner.kind("open").await;
    runner.kind("runner_registered").await;
    assert!(relay.runner("rust-1").expect("registered again").connected);
    runner.stop().await;
}

#[tokio::test]
async fn a_secret_mismatch_reaches_a_rust_client_and_closes_its_transport() {
    let relay = relay().await;
    let owner = registered_runner(&relay, "shared-id", json!({})).await;
    let mut runner = RustRunner::connect(
        &relay,
        auth("shared-id", "other"),
        Some(register("shared-id", "other")),
    )
    .await;
    // rust_socketio maps the event name `error` onto its Event::Error.
    let error = runner.kind("error").await;
    assert_eq!(error, json!({ "message": secret_mismatch("shared-id") }));
    runner.kind("close").await;
    // The transport was closed too, so the client reconnects (a namespace
    // disconnect alone would leave it stranded).
    runner.kind("open").await;
    runner.stop().await;
    owner.stop().await;
}

#[tokio::test]
async fn polling_clients_are_refused() {
    let relay = relay().await;
    let url = format!("{}/socket.io/?EIO=4&transport=polling", relay.url());
    let resp = tokio::time::timeout(WAIT, reqwest::get(url))
        .await
        .expect("waiting for the answer")
        .expect("an answer");
    assert_eq!(resp.status().as_u16(), 400);
}
