//! The REST control API end to end: reqwest on one side, the reference
//! JavaScript client as the runner on the other.

mod fixture;

use std::time::Duration;

use fixture::*;
use mock_relay::{MockRelay, RecordDirection, RelayHandle, Timeouts};
use runner_protocol::messages::{SKILL_NOT_FOUND, cwd_outside_roots};
use serde_json::{Value, json};

/// Short reply timeouts, so that the timeout cases are quick.
const SHORT: Duration = Duration::from_secs(2);

async fn short_relay() -> RelayHandle {
    init_tracing();
    MockRelay::builder()
        .api_key(KEY)
        .timeouts(Timeouts {
            skills: SHORT,
            files: SHORT,
            usage: SHORT,
            spawn: SHORT,
            kill: SHORT,
            terminal: SHORT,
        })
        .start()
        .await
        .expect("starting the relay")
}

async fn call(relay: &RelayHandle, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = call_text(relay, method, path, body, None).await;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn call_text(
    relay: &RelayHandle,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, String) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = client.request(method, format!("{}{path}", relay.url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("waiting for the HTTP answer")
        .expect("an HTTP answer");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("a body"))
}

/// A runner answering every command successfully.
fn happy_replies() -> Value {
    json!({
        "new_session": [{ "event": "session_ready", "copy": ["sessionId"] }],
        "kill_session": [{ "event": "session_killed", "copy": ["sessionId"] }],
        "list_skills": [{ "event": "skills_list", "payload": { "skills": [{ "name": "a", "description": "d", "filePath": "/s/a/SKILL.md" }] }, "copy": ["requestId"] }],
        "create_skill": [{ "event": "skill_result", "payload": { "ok": true, "skills": [] }, "copy": ["requestId"] }],
        "update_skill": [{ "event": "skill_result", "payload": { "ok": true, "skills": [] }, "copy": ["requestId"] }],
        "get_skill": [{ "event": "skill_result", "payload": { "ok": true, "content": "# a" }, "copy": ["requestId", "name"] }],
        "delete_skill": [{ "event": "skill_result", "payload": { "ok": false, "message": SKILL_NOT_FOUND, "skills": [] }, "copy": ["requestId"] }],
        "list_files": [{ "event": "file_result", "payload": { "ok": true, "files": [{ "name": "x", "path": "/work/root/x", "isDirectory": false, "isSymlink": false, "size": 1 }] }, "copy": ["requestId"] }],
        "read_file": [{ "event": "file_result", "payload": { "ok": true, "content": "aGk=", "encoding": "base64", "size": 2, "truncated": false }, "copy": ["requestId"] }],
        "git_status": [{ "event": "file_result", "payload": { "ok": true, "branch": "main", "changes": [], "ahead": 0, "behind": 0, "diffStaged": "" }, "copy": ["requestId"] }],
        "git_diff": [{ "event": "file_result", "payload": { "ok": false, "message": "Path outside allowed roots" }, "copy": ["requestId"] }],
        "get_usage": [{ "event": "usage_data", "payload": { "data": { "fetchedAt": 1, "providers": {} } }, "copy": ["requestId"] }],
    })
}

#[tokio::test]
async fn the_registry_is_listed_and_unknown_runners_are_404() {
    let relay = short_relay().await;
    let runner = registered_runner(&relay, "r1", json!({})).await;
    let (status, list) = call(&relay, "GET", "/api/runners", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["runnerId"], "r1");
    assert_eq!(list[0]["roots"], json!(["/work/root"]));
    assert_eq!(list[0]["connected"], true);
    let (status, one) = call(&relay, "GET", "/api/runners/r1", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "runner r1");
    let (status, err) = call(&relay, "GET", "/api/runners/ghost", None).await;
    assert_eq!(status, 404);
    assert!(err["error"].as_str().unwrap().contains("ghost"), "{err}");
    let (status, err) = call(&relay, "GET", "/api/nothing-here", None).await;
    assert_eq!(status, 404);
    assert!(err["error"].is_string());
    runner.stop().await;
}

#[tokio::test]
async fn spawn_answers_like_the_real_relay() {
    let relay = short_relay().await;
    let mut happy = registered_runner(&relay, "happy", happy_replies()).await;
    let grumpy_replies = json!({ "new_session": [{ "event": "session_error", "payload": { "message": "no workers today" }, "copy": ["sessionId"] }] });
    let grumpy = registered_runner(&relay, "grumpy", grumpy_replies).await;
    let silent = registered_runner(&relay, "silent", json!({})).await;

    let body = json!({ "runnerId": "happy", "cwd": "/work/root/sub", "prompt": "hi", "model": { "provider": "p", "id": "m" } });
    let (status, ok) = call(&relay, "POST", "/api/runners/spawn", Some(body)).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["runnerId"], "happy");
    assert_eq!(ok["pending"], false);
    let sent = happy.event("new_session").await;
    assert_eq!(sent[0]["sessionId"], ok["sessionId"]);
    assert_eq!(sent[0]["cwd"], "/work/root/sub");
    assert_eq!(sent[0]["prompt"], "hi");
    assert_eq!(sent[0]["model"], json!({ "provider": "p", "id": "m" }));

    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "runnerId": "grumpy" })),
    )
    .await;
    assert_eq!((status, err), (400, json!({ "error": "no workers today" })));

    let (status, pending) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "runnerId": "silent" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(pending["pending"], true);

    let mark = relay.mark();
    let outside = json!({ "runnerId": "happy", "cwd": "/work/root/../etc" });
    let (status, err) = call(&relay, "POST", "/api/runners/spawn", Some(outside)).await;
    assert_eq!(
        (status, err),
        (
            400,
            json!({ "error": cwd_outside_roots("/work/root/../etc") })
        )
    );
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "runnerId": "happy", "cwd": "rel" })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"].as_str().unwrap().contains("invalid cwd"),
        "{err}"
    );
    // Refused before anything was sent.
    assert!(
        !relay
            .transcript_since(mark, None)
            .iter()
            .any(|r| r.event == "new_session")
    );

    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "cwd": "/" })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(err["error"].as_str().unwrap().contains("runnerId"), "{err}");
    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "runnerId": "ghost" })),
    )
    .await;
    assert_eq!(status, 404);

    let mark = relay.mark();
    grumpy.stop().await;
    record_of(
        &relay,
        mark,
        RecordDirection::Connection,
        "grumpy",
        "disconnect",
    )
    .await;
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/spawn",
        Some(json!({ "runnerId": "grumpy" })),
    )
    .await;
    assert_eq!(status, 502, "{err}");
    happy.stop().await;
    silent.stop().await;
}

#[tokio::test]
async fn kill_waits_for_the_runner() {
    let relay = short_relay().await;
    let happy = registered_runner(&relay, "happy", happy_replies()).await;
    let not_found = json!({ "kill_session": [{ "event": "session_error", "payload": { "message": "Session not found" }, "copy": ["sessionId"] }] });
    let grumpy = registered_runner(&relay, "grumpy", not_found).await;
    let silent = registered_runner(&relay, "silent", json!({})).await;

    let (status, ok) = call(&relay, "POST", "/api/runners/happy/sessions/s1/kill", None).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(
        ok,
        json!({ "ok": true, "runnerId": "happy", "sessionId": "s1" })
    );
    let (status, err) = call(&relay, "POST", "/api/runners/grumpy/sessions/s1/kill", None).await;
    assert_eq!(
        (status, err),
        (400, json!({ "error": "Session not found" }))
    );
    let (status, err) = call(&relay, "POST", "/api/runners/silent/sessions/s1/kill", None).await;
    assert_eq!(status, 504, "{err}");
    let (status, _) = call(&relay, "POST", "/api/runners/ghost/sessions/s1/kill", None).await;
    assert_eq!(status, 404);
    for r in [happy, grumpy, silent] {
        r.stop().await;
    }
}

#[tokio::test]
async fn restart_emits_restart() {
    let relay = short_relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let (status, ok) = call(
        &relay,
        "POST",
        "/api/runners/restart",
        Some(json!({ "runnerId": "r1" })),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(runner.event("restart").await, vec![json!({})]);
    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/restart",
        Some(json!({ "runnerId": "ghost" })),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&relay, "POST", "/api/runners/restart", Some(json!({}))).await;
    assert_eq!(status, 400);
    runner.stop().await;
}

#[tokio::test]
async fn skill_commands_map_replies_and_timeouts() {
    let relay = short_relay().await;
    let mut happy = registered_runner(&relay, "happy", happy_replies()).await;
    let silent = registered_runner(&relay, "silent", json!({})).await;

    let (status, list) = call(&relay, "GET", "/api/runners/happy/skills", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["skills"][0]["name"], "a");
    let sent = happy.event("list_skills").await;
    assert_eq!(list["requestId"], sent[0]["requestId"]);

    let body = json!({ "name": "new-skill", "content": "# x" });
    let (status, created) = call(&relay, "POST", "/api/runners/happy/skills", Some(body)).await;
    assert_eq!((status, &created["ok"]), (200, &json!(true)), "{created}");
    let sent = happy.event("create_skill").await;
    assert_eq!(sent[0]["name"], "new-skill");
    assert_eq!(sent[0]["content"], "# x");

    let (status, got) = call(&relay, "GET", "/api/runners/happy/skills/a", None).await;
    assert_eq!(status, 200);
    assert_eq!(got["content"], "# a");
    assert_eq!(got["name"], "a");

    let (status, _) = call(
        &relay,
        "PUT",
        "/api/runners/happy/skills/a",
        Some(json!({ "content": "# b" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(happy.event("update_skill").await[0]["content"], "# b");
    let (status, _) = call(
        &relay,
        "PUT",
        "/api/runners/happy/skills/a",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400);

    let (status, err) = call(&relay, "DELETE", "/api/runners/happy/skills/zzz", None).await;
    assert_eq!((status, err), (404, json!({ "error": SKILL_NOT_FOUND })));

    let (status, err) = call(&relay, "GET", "/api/runners/silent/skills", None).await;
    assert_eq!(status, 504, "{err}");
    let (status, _) = call(&relay, "GET", "/api/runners/ghost/skills", None).await;
    assert_eq!(status, 404);
    happy.stop().await;
    silent.stop().await;
}

#[tokio::test]
async fn file_git_and_usage_commands_fill_cwd_and_map_replies() {
    let relay = short_relay().await;
    let mut happy = registered_runner(&relay, "happy", happy_replies()).await;
    let silent = registered_runner(&relay, "silent", json!({})).await;

    let (status, listing) = call(
        &relay,
        "POST",
        "/api/runners/happy/files/list",
        Some(json!({ "path": "/work/root/src" })),
    )
    .await;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["files"][0]["name"], "x");
    let sent = happy.event("list_files").await;
    assert_eq!(sent[0]["cwd"], "/work/root/src");
    assert_eq!(sent[0]["path"], "/work/root/src");

    let body = json!({ "path": "/work/root/a.txt", "encoding": "base64", "maxBytes": 10 });
    let (status, read) = call(&relay, "POST", "/api/runners/happy/files/read", Some(body)).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["content"], "aGk=");
    let sent = happy.event("read_file").await;
    assert_eq!(sent[0]["cwd"], "/work/root");
    assert_eq!(sent[0]["encoding"], "base64");
    assert_eq!(sent[0]["maxBytes"], 10);

    let body = json!({ "path": "a.txt", "cwd": "/work/root/sub" });
    let (status, _) = call(&relay, "POST", "/api/runners/happy/files/read", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(happy.event("read_file").await[0]["cwd"], "/work/root/sub");
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/happy/files/read",
        Some(json!({ "path": "a.txt" })),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = call(
        &relay,
        "POST",
        "/api/runners/happy/files/read",
        Some(json!({ "path": "/a", "encoding": "latin1" })),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    let (status, git) = call(
        &relay,
        "POST",
        "/api/runners/happy/git/status",
        Some(json!({ "cwd": "/work/root" })),
    )
    .await;
    assert_eq!(status, 200, "{git}");
    assert_eq!(git["branch"], "main");
    let body = json!({ "cwd": "/work/root", "path": "../x", "staged": true });
    let (status, err) = call(&relay, "POST", "/api/runners/happy/git/diff", Some(body)).await;
    assert_eq!(
        (status, err),
        (400, json!({ "error": "Path outside allowed roots" }))
    );
    let sent = happy.event("git_diff").await;
    assert_eq!(sent[0]["staged"], true);

    let (status, usage) = call(&relay, "POST", "/api/runners/happy/usage", None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["data"]["fetchedAt"], 1);
    assert_eq!(
        relay
            .runner("happy")
            .unwrap()
            .last_usage
            .unwrap()
            .fetched_at,
        Some(1)
    );

    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/silent/files/list",
        Some(json!({ "path": "/w" })),
    )
    .await;
    assert_eq!(status, 504);
    let (status, _) = call(&relay, "POST", "/api/runners/silent/usage", None).await;
    assert_eq!(status, 504);
    happy.stop().await;
    silent.stop().await;
}

#[tokio::test]
async fn emit_sends_anything_and_records_it() {
    let relay = short_relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    for payload in [json!("garbage"), json!({ "sessionId": [] }), json!(null)] {
        let mark = relay.mark();
        let body = json!({ "event": "new_session", "payload": payload });
        let (status, ok) = call(&relay, "POST", "/api/runners/r1/emit", Some(body)).await;
        assert_eq!(status, 200, "{ok}");
        assert_eq!(runner.event("new_session").await, vec![payload.clone()]);
        let rec = record_of(&relay, mark, RecordDirection::Out, "r1", "new_session").await;
        assert_eq!(rec.payload, payload);
    }
    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/r1/emit",
        Some(json!({ "payload": 1 })),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/ghost/emit",
        Some(json!({ "event": "x" })),
    )
    .await;
    assert_eq!(status, 404);
    runner.stop().await;
}

#[tokio::test]
async fn the_transcript_is_served_as_ndjson_and_can_be_cleared() {
    let relay = short_relay().await;
    let one = registered_runner(&relay, "one", json!({})).await;
    let two = registered_runner(&relay, "two", json!({})).await;

    let (status, text) = call_text(&relay, "GET", "/api/transcript", None, None).await;
    assert_eq!(status, 200);
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(records.len(), relay.transcript().len());
    assert!(
        records
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "register_runner" && r["runnerId"] == "two")
    );

    let since = records[3]["seq"].as_u64().unwrap();
    let (_, text) = call_text(
        &relay,
        "GET",
        &format!("/api/transcript?since={since}&runnerId=one"),
        None,
        None,
    )
    .await;
    let filtered: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!filtered.is_empty());
    assert!(
        filtered
            .iter()
            .all(|r| r["runnerId"] == "one" && r["seq"].as_u64() >= Some(since))
    );

    let (status, err) = call(&relay, "GET", "/api/transcript?since=soon", None).await;
    assert_eq!(status, 400, "{err}");

    let (status, _) = call(&relay, "DELETE", "/api/transcript", None).await;
    assert_eq!(status, 200);
    let (_, text) = call_text(&relay, "GET", "/api/transcript", None, None).await;
    assert_eq!(text, "");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn faults_over_rest_are_seen_by_the_client() {
    let relay = short_relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;

    let body = json!({ "runnerId": "r1", "error": "bye" });
    let (status, _) = call(&relay, "POST", "/api/faults/kick", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(
        runner.event("error").await,
        vec![json!({ "message": "bye" })]
    );
    assert_eq!(
        runner.of_type("disconnect").await["reason"],
        "io server disconnect"
    );
    // A kicked client does not come back by itself; this one is told to.
    runner.command(json!({ "op": "connect" })).await;
    runner.event("runner_registered").await;
    for route in ["/api/faults/kick", "/api/faults/drop-connection"] {
        let (status, _) = call(&relay, "POST", route, Some(json!({ "runnerId": "ghost" }))).await;
        assert_eq!(status, 404, "{route}");
    }
    let (status, err) = call(
        &relay,
        "POST",
        "/api/faults/drop-connection",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{err}");

    let (status, _) = call(
        &relay,
        "POST",
        "/api/faults/drop-connection",
        Some(json!({ "runnerId": "r1" })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        runner.of_type("disconnect").await["reason"],
        "transport close"
    );
    runner.event("runner_registered").await;

    let (status, _) = call(
        &relay,
        "POST",
        "/api/faults/drop",
        Some(json!({ "count": 1 })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &relay,
        "POST",
        "/api/runners/r1/emit",
        Some(json!({ "event": "dropped_one" })),
    )
    .await;
    assert_eq!(status, 200);
    call(
        &relay,
        "POST",
        "/api/runners/r1/emit",
        Some(json!({ "event": "kept_one" })),
    )
    .await;
    runner.event("kept_one").await;
    runner.drain();
    assert!(!runner.seen().iter().any(|l| l["event"] == "dropped_one"));

    let (status, _) = call(
        &relay,
        "POST",
        "/api/faults/delay",
        Some(json!({ "ms": 300 })),
    )
    .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    call(
        &relay,
        "POST",
        "/api/runners/r1/emit",
        Some(json!({ "event": "late" })),
    )
    .await;
    runner.event("late").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    call(
        &relay,
        "POST",
        "/api/faults/delay",
        Some(json!({ "ms": 0 })),
    )
    .await;

    let mark = relay.mark();
    let (status, ok) = call(
        &relay,
        "POST",
        "/api/faults/restart",
        Some(json!({ "downMs": 200 })),
    )
    .await;
    assert_eq!(status, 202, "{ok}");
    runner.of_type("disconnect").await;
    record(&relay, mark, "relay_up").await;
    runner.event("runner_registered").await;

    let (status, _) = call(
        &relay,
        "POST",
        "/api/faults/refuse",
        Some(json!({ "count": 1, "message": "not now" })),
    )
    .await;
    assert_eq!(status, 200);
    let mut refused = JsRunner::registered(&relay.url(), "r2", "s", json!({})).await;
    assert_eq!(refused.of_type("connect_error").await["message"], "not now");
    refused.stop().await;
    let (status, err) = call(
        &relay,
        "POST",
        "/api/faults/refuse",
        Some(json!({ "count": -1 })),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    runner.stop().await;
}

#[tokio::test]
async fn a_control_token_guards_the_api_but_not_the_runners() {
    init_tracing();
    let relay = MockRelay::builder()
        .api_key(KEY)
        .control_token("tok")
        .start()
        .await
        .expect("start");
    let (status, text) = call_text(&relay, "GET", "/api/runners", None, None).await;
    assert_eq!(status, 401, "{text}");
    let (status, _) = call_text(&relay, "GET", "/api/runners", None, Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = call_text(&relay, "GET", "/api/runners", None, Some("tok")).await;
    assert_eq!(status, 200);
    let runner = registered_runner(&relay, "r1", json!({})).await;
    runner.stop().await;
}
