//! The `pizzapi-runner` binary against the reference Socket.IO server
//! (socket.io 4.8 on Node, `tests/js/runner-relay.js`): registration, a
//! command round trip, kicks with `disconnect(true)` and `disconnect(false)`,
//! a kick after `error`, a relay restart, and payloads holding a lone UTF-16
//! surrogate (which only a JavaScript relay can send).

mod runner_support;

use std::path::Path;

use nix::sys::signal::Signal;
use runner_support::js_relay::{JsRelay, KEY};
use runner_support::{RunnerProcess, command};
use serde_json::{Value, json};

fn runner(url: &str, home: &Path, key: &str) -> RunnerProcess {
    let mut cmd = command(home);
    cmd.env("PIZZAPI_RELAY_URL", url)
        .env("PIZZAPI_API_KEY", key)
        .env("PIZZAPI_HEARTBEAT_INTERVAL_MS", "300");
    RunnerProcess::spawn(cmd, &home.join("runner.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_works_with_the_reference_relay() {
    let mut relay = JsRelay::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay.url(), home.path(), KEY);

    // Registration, with the identity of the state file.
    let reg = relay.expect_event("register_runner").await;
    let id = reg["payload"]["runnerId"].as_str().unwrap().to_owned();
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(home.path().join(".pizzapi/runner.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json!(id), state["runnerId"]);
    assert_eq!(reg["payload"]["platform"], json!(std::env::consts::OS));

    // A command round trip.
    relay
        .command(json!({"cmd": "send", "runnerId": id, "event": "get_usage", "payload": {"requestId": "u1"}}))
        .await;
    let reply = relay.expect_event("usage_data").await;
    assert_eq!(
        reply["payload"],
        json!({"requestId": "u1", "data": {"providers": {}}})
    );
    relay.expect_event("runner_heartbeat").await;

    // Kicked with disconnect(true): the transport closes; the runner comes back.
    relay
        .command(json!({"cmd": "kick", "runnerId": id, "close": true}))
        .await;
    relay.expect(|v| v["type"] == "disconnect").await;
    relay.expect_event("register_runner").await;
    relay.expect_event("runner_heartbeat").await;

    // Kicked with disconnect(false): the transport stays open and the client
    // library is stuck; the runner rebuilds its client and comes back.
    relay
        .command(json!({"cmd": "kick", "runnerId": id, "close": false}))
        .await;
    relay.expect(|v| v["type"] == "disconnect").await;
    relay.expect_event("register_runner").await;
    relay
        .command(json!({"cmd": "send", "runnerId": id, "event": "ping", "payload": {}}))
        .await;
    relay.expect_event("pong").await;

    // A binary payload (which the client library cannot even name) is
    // ignored; the runner keeps answering.
    relay
        .command(json!({"cmd": "sendBinary", "runnerId": id, "event": "list_skills", "text": "x"}))
        .await;
    relay
        .command(json!({"cmd": "send", "runnerId": id, "event": "get_usage", "payload": {"requestId": "after-binary"}}))
        .await;
    let reply = relay.expect_event("usage_data").await;
    assert_eq!(reply["payload"]["requestId"], json!("after-binary"));

    // A restart of the relay: exactly one new registration.
    let registrations =
        |relay: &JsRelay| relay.count(|v| v["type"] == "event" && v["event"] == "register_runner");
    let before = registrations(&relay);
    relay
        .command(json!({"cmd": "restart", "downMs": 1500}))
        .await;
    relay.expect(|v| v["type"] == "restarted").await;
    relay.expect_event("register_runner").await;
    // Let two heartbeats pass on the new connection: still one registration.
    relay.expect_event("runner_heartbeat").await;
    relay.expect_event("runner_heartbeat").await;
    assert_eq!(registrations(&relay), before + 1);
    assert_eq!(
        relay.count(|v| v["type"] == "connect") as isize
            - relay.count(|v| v["type"] == "disconnect") as isize,
        1,
        "one connection open:\n{}",
        relay.dump()
    );

    // An error, then a kick: the relay refused the runner → exit 77.
    relay
        .command(json!({"cmd": "kick", "runnerId": id, "close": true, "error": "runner banned"}))
        .await;
    assert_eq!(proc.wait().await, 77, "log:\n{}", proc.log_text());
    assert!(proc.log_text().contains("runner banned"));
    relay.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_the_reference_relay_exit_77() {
    let mut relay = JsRelay::start().await;

    let home = tempfile::tempdir().unwrap();
    let mut bad_key = runner(&relay.url(), home.path(), "wrong");
    assert_eq!(bad_key.wait().await, 77, "log:\n{}", bad_key.log_text());
    assert!(bad_key.log_text().contains("unauthorized"));
    relay.expect(|v| v["type"] == "refused").await;

    let first_home = tempfile::tempdir().unwrap();
    let mut first = runner(&relay.url(), first_home.path(), KEY);
    let reg = relay.expect_event("register_runner").await;
    let id = reg["payload"]["runnerId"].as_str().unwrap().to_owned();

    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join(".pizzapi")).unwrap();
    std::fs::write(
        other.path().join(".pizzapi/runner.json"),
        json!({"runnerId": id, "runnerSecret": "00".repeat(32)}).to_string(),
    )
    .unwrap();
    let mut impostor = runner(&relay.url(), other.path(), KEY);
    assert_eq!(impostor.wait().await, 77, "log:\n{}", impostor.log_text());
    assert!(
        impostor
            .log_text()
            .contains(&format!("secret mismatch for runner {id}"))
    );

    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait().await, 0);
    relay.quit().await;
}

/// socket.io sends a string holding half a surrogate pair as the escape
/// `"\ud800"`, which no Rust string can hold (rust_socketio 0.6 dropped such
/// a packet without a word; the workspace patches it, `vendor/README.md`).
/// Each command still gets its error reply, naming the cause; one without
/// an error reply gets a log line; the runner goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_surrogates_get_error_replies() {
    let mut relay = JsRelay::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay.url(), home.path(), KEY);
    let reg = relay.expect_event("register_runner").await;
    let id = reg["payload"]["runnerId"].as_str().unwrap().to_owned();
    let send = |event: &str, payload: &str| {
        format!(r#"{{"cmd":"send","runnerId":{id:?},"event":"{event}","payload":{payload}}}"#)
    };

    relay
        .command_text(&send("get_skill", r#"{"requestId":"r1","name":"\ud800"}"#))
        .await;
    let reply = relay.expect_event("skill_result").await;
    assert_eq!(reply["payload"]["requestId"], json!("r1"), "{reply}");
    assert_eq!(reply["payload"]["ok"], json!(false), "{reply}");
    let message = reply["payload"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("get_skill: the payload is not valid Unicode JSON ("),
        "{message}"
    );

    relay
        .command_text(&send(
            "read_file",
            r#"{"requestId":"f1","cwd":"/","path":"/x\udc00"}"#,
        ))
        .await;
    let reply = relay.expect_event("file_result").await;
    assert_eq!(reply["payload"]["requestId"], json!("f1"), "{reply}");
    assert_eq!(reply["payload"]["ok"], json!(false), "{reply}");

    // The id itself holds the surrogate: answered with the id as decoded
    // (U+FFFD in its place), never silence.
    relay
        .command_text(&send("new_session", r#"{"sessionId":"s\ud83d"}"#))
        .await;
    let reply = relay.expect_event("session_error").await;
    assert_eq!(reply["payload"]["sessionId"], json!("s\u{FFFD}"), "{reply}");
    relay
        .command_text(&send("list_terminals", r#"{"x":"\ud800"}"#))
        .await;

    // Nothing else was answered, and the runner still works.
    relay
        .command(json!({"cmd": "send", "runnerId": id, "event": "ping", "payload": {}}))
        .await;
    relay.expect_event("pong").await;
    assert_eq!(
        relay.count(|v| v["type"] == "event" && v["event"] == "terminals_list"),
        0,
        "{}",
        relay.dump()
    );
    let log = proc.log_text();
    assert!(
        log.contains("list_terminals") && log.contains("no error reply"),
        "log:\n{log}"
    );
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
    relay.quit().await;
}
