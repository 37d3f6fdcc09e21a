//! The `mock-relay` binary as a developer runs it.

mod fixture;

use std::process::Stdio;

use fixture::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BIN: &str = env!("CARGO_BIN_EXE_mock-relay");

fn start(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting mock-relay");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout).lines())
}

async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.contains(what) => return line,
            Ok(Ok(Some(_))) => {}
            Ok(other) => panic!("mock-relay output ended before {what:?}: {other:?}"),
            Err(_) => panic!("timed out waiting for a line with {what:?}"),
        }
    }
}

async fn exit_code(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(WAIT, Command::new(BIN).args(args).output())
        .await
        .expect("waiting for mock-relay to exit")
        .expect("running mock-relay");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_printed_line_starts_a_runner_that_registers_and_ctrl_c_stops_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.ndjson");
    let (mut child, mut lines) = start(&["--port", "0", "--transcript", file.to_str().unwrap()]);
    let env_line = line_with(&mut lines, "PIZZAPI_RELAY_URL=").await;
    // `  PIZZAPI_RELAY_URL=http://127.0.0.1:PORT PIZZAPI_API_KEY=dev-key cargo run -p pizzapi-runner`
    let mut words = env_line.split_whitespace();
    let url = words
        .next()
        .unwrap()
        .strip_prefix("PIZZAPI_RELAY_URL=")
        .unwrap()
        .to_owned();
    let key = words
        .next()
        .unwrap()
        .strip_prefix("PIZZAPI_API_KEY=")
        .unwrap()
        .to_owned();
    assert_eq!(key, "dev-key");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let mut runner = JsRunner::start(
        &url,
        json!({
            "auth": { "apiKey": key, "runnerId": "r1", "runnerSecret": "s" },
            "register": register("r1", "s"),
        }),
    )
    .await;
    runner.event("runner_registered").await;
    // One readable log line per event.
    let logged = line_with(&mut lines, "runner_registered").await;
    assert!(logged.contains("r1"), "{logged}");

    let resp = reqwest::get(format!("{url}/api/runners"))
        .await
        .expect("GET /api/runners");
    let runners: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(runners[0]["runnerId"], "r1");

    let pid = child.id().expect("a pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("waiting for mock-relay to stop")
        .expect("exit status");
    assert!(status.success(), "{status}");
    runner.of_type("disconnect").await;
    let text = std::fs::read_to_string(&file).expect("the transcript file");
    assert!(
        text.lines().any(|l| l.contains("\"register_runner\"")),
        "{text}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn bad_configurations_exit_64() {
    let (code, _, err) = exit_code(&["--host", "0.0.0.0", "--port", "0"]).await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("control token"), "{err}");
    let (code, _, _) = exit_code(&["--no-such-flag"]).await;
    assert_eq!(code, 64);
    let (code, _, _) = exit_code(&["--port", "not-a-port"]).await;
    assert_eq!(code, 64);
    let (code, _, err) = exit_code(&["--port", "0", "--log-level", "mock_relay=loud"]).await;
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = exit_code(&["--port", "0", "--api-key", ""]).await;
    assert_eq!(code, 64, "{err}");
}

#[tokio::test]
async fn help_explains_itself() {
    let (code, out, _) = exit_code(&["--help"]).await;
    assert_eq!(code, 0);
    for needle in [
        "--api-key",
        "--port",
        "--transcript",
        "--control-token",
        "dev-key",
        "PIZZAPI_RELAY_URL",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}
