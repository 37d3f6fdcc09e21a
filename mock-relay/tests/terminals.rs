//! The terminal endpoints of the REST control API end to end: reqwest on one
//! side, the reference JavaScript client as the runner on the other.

mod fixture;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fixture::*;
use mock_relay::{MockRelay, RecordDirection, RelayHandle, Timeouts};
use runner_protocol::messages::{TERMINAL_NOT_FOUND, cwd_outside_roots};
use serde_json::{Value, json};

/// A short terminal timeout, so that the timeout case is quick.
const SHORT: Duration = Duration::from_secs(2);

async fn relay_with(output_cap: usize) -> RelayHandle {
    init_tracing();
    MockRelay::builder()
        .api_key(KEY)
        .timeouts(Timeouts {
            terminal: SHORT,
            ..Timeouts::default()
        })
        .terminal_output_cap(output_cap)
        .start()
        .await
        .expect("starting the relay")
}

async fn call(relay: &RelayHandle, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = client.request(method, format!("{}{path}", relay.url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("waiting for the HTTP answer")
        .expect("an HTTP answer");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("a body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A runner whose terminals echo every input back as output and exit with
/// -1 when killed.
fn echo_replies() -> Value {
    json!({
        "new_terminal": [{ "event": "terminal_ready", "copy": ["terminalId"] }],
        "terminal_input": [{ "event": "terminal_data", "copy": ["terminalId", "data"] }],
        "kill_terminal": [{ "event": "terminal_exit", "payload": { "exitCode": -1 }, "copy": ["terminalId"] }],
    })
}

/// A runner whose terminal commands all fail.
fn failing_replies() -> Value {
    json!({
        "new_terminal": [{ "event": "terminal_error", "payload": { "message": "no pty for you" }, "copy": ["terminalId"] }],
        "kill_terminal": [{ "event": "terminal_error", "payload": { "message": TERMINAL_NOT_FOUND }, "copy": ["terminalId"] }],
    })
}

async fn open(relay: &RelayHandle, runner_id: &str, body: Value) -> String {
    let (status, answer) = call(
        relay,
        "POST",
        &format!("/api/runners/{runner_id}/terminals"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["terminalId"]
        .as_str()
        .expect("a terminalId")
        .to_owned()
}

#[tokio::test]
async fn a_terminal_opens_takes_input_resizes_and_is_killed() {
    let relay = relay_with(mock_relay::DEFAULT_TERMINAL_OUTPUT_CAP).await;
    let mut runner = registered_runner(&relay, "echo", echo_replies()).await;

    let body = json!({ "cwd": "/work/root/sub", "shell": "/bin/sh", "cols": 100, "rows": 30 });
    let tid = open(&relay, "echo", body).await;
    let sent = runner.event("new_terminal").await;
    assert_eq!(
        sent[0],
        json!({ "terminalId": tid, "cwd": "/work/root/sub", "shell": "/bin/sh", "cols": 100, "rows": 30 })
    );
    let (status, out) = call(
        &relay,
        "GET",
        &format!("/api/runners/echo/terminals/{tid}/output"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out,
        json!({ "terminalId": tid, "output": "", "bytes": 0, "droppedBytes": 0 })
    );

    let base = format!("/api/runners/echo/terminals/{tid}");
    for text in ["echo héllo", " wörld\n"] {
        let (status, ok) = call(
            &relay,
            "POST",
            &format!("{base}/input"),
            Some(json!({ "data": text })),
        )
        .await;
        assert_eq!(status, 202, "{ok}");
        let sent = runner.event("terminal_input").await;
        assert_eq!(sent[0]["terminalId"], json!(tid));
        assert_eq!(sent[0]["data"], json!(BASE64.encode(text)));
    }
    let (status, ok) = call(
        &relay,
        "POST",
        &format!("{base}/resize"),
        Some(json!({ "cols": 120, "rows": 40 })),
    )
    .await;
    assert_eq!(status, 202, "{ok}");
    let sent = runner.event("terminal_resize").await;
    assert_eq!(
        sent[0],
        json!({ "terminalId": tid, "cols": 120, "rows": 40 })
    );

    // The echoed output is recorded base64, as sent.
    let mark = relay.mark();
    let (status, ok) = call(
        &relay,
        "POST",
        &format!("{base}/input"),
        Some(json!({ "data": "!" })),
    )
    .await;
    assert_eq!(status, 202, "{ok}");
    let echoed = record_of(&relay, mark, RecordDirection::In, "echo", "terminal_data").await;
    assert_eq!(echoed.payload["data"], json!(BASE64.encode("!")));
    let (_, out) = call(&relay, "GET", &format!("{base}/output"), None).await;
    assert_eq!(out["output"], "echo héllo wörld\n!");
    assert_eq!(out["bytes"], 20);
    assert!(out.get("exitCode").is_none(), "{out}");

    let (status, exit) = call(&relay, "DELETE", &base, None).await;
    assert_eq!(status, 200, "{exit}");
    assert_eq!(exit["exitCode"], -1);
    assert_eq!(exit["terminalId"], json!(tid));
    assert_eq!(
        runner.event("kill_terminal").await[0]["terminalId"],
        json!(tid)
    );
    let (status, out) = call(&relay, "GET", &format!("{base}/output"), None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["exitCode"], -1);
    assert_eq!(out["output"], "echo héllo wörld\n!");
    runner.stop().await;
}

#[tokio::test]
async fn output_is_capped_keeping_the_newest_bytes() {
    let relay = relay_with(10).await;
    let runner = registered_runner(&relay, "echo", echo_replies()).await;
    let tid = open(&relay, "echo", json!({})).await;
    let base = format!("/api/runners/echo/terminals/{tid}");
    for text in ["0123456789", "abcdef"] {
        let (status, _) = call(
            &relay,
            "POST",
            &format!("{base}/input"),
            Some(json!({ "data": text })),
        )
        .await;
        assert_eq!(status, 202);
    }
    // The kill's reply comes after both echoes on the same socket.
    let (status, _) = call(&relay, "DELETE", &base, None).await;
    assert_eq!(status, 200);
    let (_, out) = call(&relay, "GET", &format!("{base}/output"), None).await;
    assert_eq!(
        out,
        json!({ "terminalId": tid, "output": "6789abcdef", "bytes": 16, "droppedBytes": 6, "exitCode": -1 })
    );
    runner.stop().await;
}

#[tokio::test]
async fn terminal_errors_are_400_and_silence_is_504() {
    let relay = relay_with(mock_relay::DEFAULT_TERMINAL_OUTPUT_CAP).await;
    let failing = registered_runner(&relay, "failing", failing_replies()).await;
    let silent = registered_runner(&relay, "silent", json!({})).await;

    let (status, err) = call(&relay, "POST", "/api/runners/failing/terminals", None).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "no pty for you");
    let (status, err) = call(&relay, "DELETE", "/api/runners/failing/terminals/t1", None).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], TERMINAL_NOT_FOUND);

    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/failing/terminals",
        Some(json!({ "cwd": "/etc" })),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], cwd_outside_roots("/etc"));
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/failing/terminals",
        Some(json!({ "cols": "wide" })),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/failing/terminals/t1/input",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("data"), "{err}");
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/failing/terminals/t1/resize",
        Some(json!({ "cols": -1, "rows": 2 })),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    let (status, err) = call(&relay, "POST", "/api/runners/silent/terminals", None).await;
    assert_eq!(status, 504, "{err}");
    let (status, err) = call(&relay, "DELETE", "/api/runners/silent/terminals/t1", None).await;
    assert_eq!(status, 504, "{err}");
    failing.stop().await;
    silent.stop().await;
}

#[tokio::test]
async fn unknown_runners_are_404_and_disconnected_ones_502() {
    let relay = relay_with(mock_relay::DEFAULT_TERMINAL_OUTPUT_CAP).await;
    let runner = registered_runner(&relay, "gone", echo_replies()).await;
    let tid = open(&relay, "gone", json!({})).await;
    let (status, _) = call(
        &relay,
        "POST",
        &format!("/api/runners/gone/terminals/{tid}/input"),
        Some(json!({ "data": "kept\n" })),
    )
    .await;
    assert_eq!(status, 202);
    // The terminal's echo is in before the kill's reply.
    let (status, _) = call(
        &relay,
        "DELETE",
        &format!("/api/runners/gone/terminals/{tid}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let base = "/api/runners/ghost/terminals";
    let cases = [
        ("POST", base.to_owned(), Some(json!({}))),
        (
            "POST",
            format!("{base}/t/input"),
            Some(json!({ "data": "x" })),
        ),
        (
            "POST",
            format!("{base}/t/resize"),
            Some(json!({ "cols": 1, "rows": 1 })),
        ),
        ("DELETE", format!("{base}/t"), None),
        ("GET", format!("{base}/t/output"), None),
    ];
    for (method, path, body) in &cases {
        let (status, err) = call(&relay, method, path, body.clone()).await;
        assert_eq!(status, 404, "{method} {path}: {err}");
        assert!(err["error"].as_str().unwrap().contains("ghost"), "{err}");
    }
    let (status, err) = call(
        &relay,
        "GET",
        "/api/runners/gone/terminals/nope/output",
        None,
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].as_str().unwrap().contains("nope"), "{err}");

    let mark = relay.mark();
    runner.stop().await;
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "gone",
        "disconnect",
    )
    .await;
    for (method, path, body) in cases.iter().filter(|c| c.0 != "GET") {
        let path = path.replace("ghost", "gone");
        let (status, err) = call(&relay, method, &path, body.clone()).await;
        assert_eq!(status, 502, "{method} {path}: {err}");
    }
    // The output outlives the connection.
    let (status, out) = call(
        &relay,
        "GET",
        &format!("/api/runners/gone/terminals/{tid}/output"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["output"], "kept\n");
    assert_eq!(out["exitCode"], -1);
}
