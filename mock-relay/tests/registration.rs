//! Handshake, registration, correlation and the transcript, with the
//! reference JavaScript client as the runner.

mod fixture;

use std::time::Duration;

use fixture::*;
use mock_relay::{RecordDirection, RelayError};
use runner_protocol::messages::{UNAUTHORIZED, secret_mismatch};
use runner_protocol::{
    GetSkill, KillSession, ListSkills, NewSession, Ping, RunnerEvent, ServerEvent,
};
use serde_json::json;

#[tokio::test]
async fn a_wrong_api_key_is_refused_with_unauthorized() {
    let relay = relay().await;
    let mark = relay.mark();
    let mut runner = JsRunner::start(
        &relay.url(),
        json!({ "auth": { "apiKey": "nope", "runnerId": "r1", "runnerSecret": "s" }, "reconnection": false }),
    )
    .await;
    let err = runner.of_type("connect_error").await;
    assert_eq!(err["message"], UNAUTHORIZED);
    // Only `message` travels in a connect error.
    assert_eq!(err["data"], serde_json::Value::Null);
    let refused = record(&relay, mark, "handshake_refused").await;
    assert_eq!(refused.direction, RecordDirection::Connection);
    assert_eq!(refused.payload["reason"], "apiKey not accepted");
    assert_eq!(refused.payload["message"], UNAUTHORIZED);
    assert!(relay.runners().is_empty());
    runner.stop().await;
}

#[tokio::test]
async fn missing_fields_are_refused_naming_the_field() {
    let relay = relay().await;
    let cases = [
        (json!({ "runnerId": "r1", "runnerSecret": "s" }), UNAUTHORIZED.to_owned()),
        (json!({ "apiKey": KEY, "runnerSecret": "s" }), format!("{UNAUTHORIZED}: missing runnerId")),
        (json!({ "apiKey": KEY, "runnerId": "r1" }), format!("{UNAUTHORIZED}: missing runnerSecret")),
        (
            json!({ "apiKey": KEY, "runnerId": 7, "runnerSecret": "s" }),
            format!("{UNAUTHORIZED}: runnerId must be a string, got a number"),
        ),
    ];
    for (auth, expected) in cases {
        let mut runner =
            JsRunner::start(&relay.url(), json!({ "auth": auth, "reconnection": false })).await;
        let err = runner.of_type("connect_error").await;
        assert_eq!(err["message"], expected.as_str(), "auth {auth}");
        runner.stop().await;
    }
    // No auth object at all.
    let mut runner = JsRunner::start(&relay.url(), json!({ "reconnection": false })).await;
    assert_eq!(runner.of_type("connect_error").await["message"], UNAUTHORIZED);
    runner.stop().await;
}

#[tokio::test]
async fn a_good_registration_is_answered_and_recorded_in_order() {
    let relay = relay().await;
    let mark = relay.mark();
    let mut runner = JsRunner::registered(&relay.url(), "r1", "secret-1", json!({})).await;
    let connect = runner.of_type("connect").await;
    let args = runner.event("runner_registered").await;
    assert_eq!(args, vec![json!({ "runnerId": "r1" })]);

    let info = relay.wait_for_runner(WAIT).await.expect("a runner registers");
    assert_eq!(info.runner_id, "r1");
    assert_eq!(info.name.as_deref(), Some("runner r1"));
    assert_eq!(info.roots, ["/work/root"]);
    assert_eq!(info.version.as_deref(), Some("0.0.0-test"));
    assert_eq!(info.platform.as_deref(), Some("linux"));
    assert!(info.connected);
    // socket.io-client's `socket.id` is the namespace socket id.
    assert_eq!(connect["id"], info.socket_id.as_str());

    let events: Vec<(RecordDirection, String)> = relay
        .transcript_since(mark, None)
        .into_iter()
        .map(|r| (r.direction, r.event))
        .collect();
    assert_eq!(
        events,
        [
            (RecordDirection::Connection, "handshake_accepted".to_owned()),
            (RecordDirection::Connection, "connect".to_owned()),
            (RecordDirection::In, "register_runner".to_owned()),
            (RecordDirection::Out, "runner_registered".to_owned()),
        ]
    );
    let transcript = relay.transcript_since(mark, None);
    assert!(transcript.windows(2).all(|w| w[0].seq + 1 == w[1].seq && w[0].at_us <= w[1].at_us));
    assert!(transcript.iter().all(|r| r.runner_id.as_deref() == Some("r1")));
    assert!(transcript.iter().all(|r| r.socket_id.as_deref() == Some(info.socket_id.as_str())));
    runner.stop().await;
}

#[tokio::test]
async fn a_secret_mismatch_is_refused_and_the_client_sees_the_disconnect() {
    let relay = relay().await;
    let first = registered_runner(&relay, "r1", json!({})).await;
    let owner = relay.runner("r1").expect("registered");

    let mark = relay.mark();
    let mut intruder = JsRunner::start(
        &relay.url(),
        json!({ "auth": auth("r1", "other"), "register": register("r1", "other") }),
    )
    .await;
    let args = intruder.event("error").await;
    assert_eq!(args, vec![json!({ "message": secret_mismatch("r1") })]);
    let disconnect = intruder.of_type("disconnect").await;
    assert_eq!(disconnect["reason"], "io server disconnect");
    record_of(&relay, mark, RecordDirection::Connection, "r1", "disconnect").await;

    // The binding and the first socket are untouched.
    let after = relay.runner("r1").expect("still registered");
    assert_eq!(after.socket_id, owner.socket_id);
    assert!(after.connected);
    assert!(
        !relay
            .transcript_since(mark, None)
            .iter()
            .any(|r| r.event == "runner_registered")
    );
    intruder.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn re_registration_with_the_same_secret_replaces_the_socket() {
    let relay = relay().await;
    let first = registered_runner(&relay, "r1", json!({})).await;
    let old = relay.runner("r1").expect("registered").socket_id;

    let mark = relay.mark();
    let mut second = JsRunner::registered(&relay.url(), "r1", "secret-1", json!({})).await;
    second.event("runner_registered").await;
    let replaced = record(&relay, mark, "runner_replaced").await;
    assert_eq!(replaced.payload["oldSocketId"], old.as_str());
    let now = relay.runner("r1").expect("registered");
    assert_ne!(now.socket_id, old);

    // Commands go to the new socket; the old one closing changes nothing.
    relay
        .send("r1", ServerEvent::Ping(Ping {}))
        .await
        .expect("sending ping");
    second.event("ping").await;
    let mark = relay.mark();
    first.stop().await;
    relay
        .expect(mark, |r| r.event == "disconnect" && r.socket_id.as_deref() == Some(old.as_str()), WAIT)
        .await
        .expect("the old socket disconnects");
    assert!(relay.runner("r1").expect("registered").connected);
    second.stop().await;
}

#[tokio::test]
async fn requests_are_correlated_by_request_id_and_session_id() {
    let relay = relay().await;
    let replies = json!({
        "list_skills": [
            // A reply for someone else first: it must not be taken.
            { "event": "skills_list", "payload": { "skills": [], "requestId": "someone-else" } },
            { "event": "skills_list", "payload": { "skills": [{ "name": "a", "description": "d", "filePath": "/s/a.md" }] }, "copy": ["requestId"] },
        ],
        "new_session": [{ "event": "session_ready", "copy": ["sessionId"] }],
        "kill_session": [{ "event": "session_error", "payload": { "message": "Session not found" }, "copy": ["sessionId"] }],
        "ping": [{ "event": "pong", "payload": { "now": 5 } }],
    });
    let mut runner = registered_runner(&relay, "r1", replies).await;

    let reply = relay
        .request("r1", ListSkills::default().into(), WAIT)
        .await
        .expect("list_skills is answered");
    let RunnerEvent::SkillsList(list) = reply else {
        panic!("unexpected reply {reply:?}")
    };
    assert_eq!(list.skills.len(), 1);
    let sent = runner.event("list_skills").await;
    assert_eq!(sent[0]["requestId"], list.request_id.clone().expect("echoed id").as_str());
    // The registry follows skills_list.
    assert_eq!(relay.runner("r1").unwrap().skills.len(), 1);

    let spawn = NewSession {
        session_id: "sess-1".into(),
        cwd: None,
        prompt: None,
        model: None,
        skills: None,
    };
    let reply = relay.request("r1", spawn.into(), WAIT).await.expect("spawn answered");
    assert!(matches!(reply, RunnerEvent::SessionReady(ref p) if p.session_id == "sess-1"), "{reply:?}");
    assert_eq!(relay.runner("r1").unwrap().sessions, ["sess-1"]);

    let kill = KillSession { session_id: "nope".into() };
    let reply = relay.request("r1", kill.into(), WAIT).await.expect("kill answered");
    assert!(matches!(reply, RunnerEvent::SessionError(ref p) if p.session_id == "nope"), "{reply:?}");

    let reply = relay.request("r1", Ping {}.into(), WAIT).await.expect("ping answered");
    assert!(matches!(reply, RunnerEvent::Pong(ref p) if p.now == 5), "{reply:?}");

    // No reply configured: the request times out.
    let get = GetSkill { request_id: None, name: "a".into() };
    let err = relay
        .request("r1", get.into(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Timeout { .. }), "{err}");

    // Events without a reply are refused up front.
    let err = relay
        .request("r1", ServerEvent::Restart(Default::default()), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err, RelayError::NoReply("restart"));
    assert_eq!(
        relay.request("ghost", Ping {}.into(), WAIT).await.unwrap_err(),
        RelayError::UnknownRunner("ghost".into())
    );
    runner.stop().await;
}

#[tokio::test]
async fn raw_emits_of_malformed_payloads_are_delivered_and_recorded_as_sent() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let payloads = [
        json!("not an object"),
        json!(42),
        json!([1, 2, 3]),
        json!({ "sessionId": 7 }),
        json!(null),
    ];
    for payload in &payloads {
        let mark = relay.mark();
        relay
            .send_raw("r1", "new_session", payload.clone())
            .await
            .expect("raw emit");
        let rec = record_of(&relay, mark, RecordDirection::Out, "r1", "new_session").await;
        assert_eq!(&rec.payload, payload);
        let args = runner.event("new_session").await;
        assert_eq!(args, vec![payload.clone()], "payload {payload}");
    }
    relay
        .send_raw("r1", "no_such_event", json!({ "x": 1 }))
        .await
        .expect("unknown names are sent too");
    assert_eq!(runner.event("no_such_event").await, vec![json!({ "x": 1 })]);
    runner.stop().await;
}

#[tokio::test]
async fn malformed_events_from_a_runner_are_recorded_as_received() {
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let mark = relay.mark();
    runner.emit("session_ready", json!({ "sessionId": 5 })).await;
    runner.command(json!({ "op": "emit", "event": "pong", "args": [] })).await;
    runner.emit("made_up", json!("text")).await;
    let bad = record_of(&relay, mark, RecordDirection::In, "r1", "session_ready").await;
    assert_eq!(bad.payload, json!({ "sessionId": 5 }));
    let empty = record_of(&relay, mark, RecordDirection::In, "r1", "pong").await;
    assert_eq!(empty.payload, serde_json::Value::Null);
    let made_up = record_of(&relay, mark, RecordDirection::In, "r1", "made_up").await;
    assert_eq!(made_up.payload, json!("text"));
    assert!(bad.seq < empty.seq && empty.seq < made_up.seq);
    // The relay is still answering.
    relay.send("r1", Ping {}.into()).await.expect("ping");
    runner.event("ping").await;
    runner.stop().await;
}

#[tokio::test]
async fn nothing_is_lost_under_load_and_order_is_kept() {
    const N: usize = 2000;
    let relay = relay().await;
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    let mark = relay.mark();
    for i in 0..N {
        runner
            .emit("runner_session_event", json!({ "sessionId": "s", "event": { "i": i } }))
            .await;
    }
    relay
        .expect(mark, |r| r.event == "runner_session_event" && r.payload["event"]["i"] == (N - 1), Duration::from_secs(60))
        .await
        .expect("the last event arrives");
    let got: Vec<u64> = relay
        .transcript_since(mark, Some("r1"))
        .iter()
        .filter(|r| r.event == "runner_session_event")
        .map(|r| r.payload["event"]["i"].as_u64().expect("a counter"))
        .collect();
    assert_eq!(got, (0..N as u64).collect::<Vec<_>>());
    runner.stop().await;
}

#[tokio::test]
async fn the_transcript_cap_bounds_memory_with_a_marker() {
    init_tracing();
    let relay = mock_relay::MockRelay::builder()
        .api_key(KEY)
        .transcript_cap(10)
        .start()
        .await
        .expect("start");
    let mut runner = registered_runner(&relay, "r1", json!({})).await;
    for i in 0..30 {
        runner.emit("runner_session_event", json!({ "sessionId": "s", "event": i })).await;
    }
    relay
        .expect(0, |r| r.payload["event"] == 29, WAIT)
        .await
        .expect("the last event is recorded");
    let transcript = relay.transcript();
    assert_eq!(transcript.len(), 11);
    assert_eq!(transcript[0].event, mock_relay::RECORDS_DROPPED);
    assert_eq!(transcript[0].seq, 0);
    let dropped = transcript[0].payload["dropped"].as_u64().unwrap();
    assert_eq!(transcript[0].payload["firstKeptSeq"], transcript[1].seq);
    assert_eq!(dropped + 10, transcript.last().unwrap().seq);
    runner.stop().await;
}

#[tokio::test]
async fn the_transcript_file_gets_every_record_as_ndjson() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("transcript.ndjson");
    let relay = mock_relay::MockRelay::builder()
        .api_key(KEY)
        .transcript_cap(2)
        .transcript_file(&path)
        .start()
        .await
        .expect("start");
    let runner = registered_runner(&relay, "r1", json!({})).await;
    runner.stop().await;
    record(&relay, 0, "disconnect").await;
    let last = relay.mark() - 1;
    relay.clone().shutdown().await;
    let text = std::fs::read_to_string(&path).expect("reading the transcript file");
    let records: Vec<mock_relay::Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one record per line"))
        .collect();
    assert!(records.len() as u64 >= last, "{} records for {last}", records.len());
    assert!(records.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    assert!(records.iter().any(|r| r.event == "register_runner"));
}
