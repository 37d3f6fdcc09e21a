//! No web page can drive the relay: a foreign `Host` (DNS rebinding), a
//! cross-origin browser request and a non-JSON body are refused before any
//! handler runs; the relay's own origin, `curl`-like clients and runners
//! keep working, without a token. Secrets never leave through the REST API.

mod fixture;

use fixture::{KEY, WAIT, init_tracing, registered_runner};
use mock_relay::{MockRelay, RecordDirection, RelayHandle};
use reqwest::header;
use serde_json::{Value, json};

async fn relay() -> RelayHandle {
    init_tracing();
    MockRelay::builder()
        .api_key(KEY)
        .allowed_host("relay.test")
        .start()
        .await
        .expect("starting the relay")
}

/// Sends a request with the given extra headers and raw body; the status.
async fn send(
    relay: &RelayHandle,
    method: reqwest::Method,
    path: &str,
    headers: &[(header::HeaderName, String)],
    body: Option<&str>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", relay.url()));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Some(body) = body {
        req = req.body(body.to_owned());
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("waiting for the HTTP answer")
        .expect("an HTTP answer");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn authority(relay: &RelayHandle) -> String {
    relay.url().trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_text_plain_post_is_refused_and_reaches_no_runner() {
    let relay = relay().await;
    let runner = registered_runner(&relay, "one", json!({})).await;
    let mark = relay.mark();
    // What a page on another site can send without a preflight.
    let body = json!({"runnerId": "one", "cwd": "/work/root"}).to_string();
    let (status, text) = send(
        &relay,
        reqwest::Method::POST,
        "/api/runners/spawn",
        &[
            (header::ORIGIN, "http://evil.example".to_owned()),
            (header::CONTENT_TYPE, "text/plain;charset=UTF-8".to_owned()),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("cross-origin"), "{text}");
    // The same without an Origin (a page cannot do that) still needs JSON.
    let (status, text) = send(
        &relay,
        reqwest::Method::POST,
        "/api/runners/one/emit",
        &[(header::CONTENT_TYPE, "text/plain".to_owned())],
        Some(&json!({"event": "ping", "payload": {}}).to_string()),
    )
    .await;
    assert_eq!(status, 415, "{text}");
    let sent: Vec<_> = relay
        .transcript_since(mark, None)
        .into_iter()
        .filter(|r| r.direction == RecordDirection::Out)
        .collect();
    assert!(sent.is_empty(), "the runner got {sent:?}");
    drop(runner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_refused_on_the_api_and_the_socket_endpoint() {
    let relay = relay().await;
    for path in ["/api/runners", "/socket.io/?EIO=4&transport=websocket"] {
        let (status, text) = send(
            &relay,
            reqwest::Method::GET,
            path,
            &[(header::HOST, "rebound.evil.example:7492".to_owned())],
            None,
        )
        .await;
        assert_eq!(status, 421, "{path}: {text}");
        assert!(text.contains("--allowed-host"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_same_origin_and_configured_hosts_need_no_token() {
    let relay = relay().await;
    let port = relay.addr().port();
    let cases: Vec<Vec<(header::HeaderName, String)>> = vec![
        vec![],
        vec![(header::HOST, format!("localhost:{port}"))],
        vec![(header::HOST, format!("[::1]:{port}"))],
        vec![(header::HOST, "relay.test".to_owned())],
        vec![(header::ORIGIN, format!("http://{}", authority(&relay)))],
    ];
    for headers in cases {
        let (status, text) =
            send(&relay, reqwest::Method::GET, "/api/runners", &headers, None).await;
        assert_eq!(status, 200, "{headers:?}: {text}");
    }
    // A page of the relay itself: same-origin fetch with a JSON body.
    let (status, text) = send(
        &relay,
        reqwest::Method::POST,
        "/api/faults/drop",
        &[
            (header::ORIGIN, format!("http://{}", authority(&relay))),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        Some(r#"{"count": 0}"#),
    )
    .await;
    assert!(status < 300, "{status}: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_transcript_masks_the_runner_secret() {
    let relay = relay().await;
    let runner = registered_runner(&relay, "one", json!({})).await;
    let (status, text) = send(&relay, reqwest::Method::GET, "/api/transcript", &[], None).await;
    assert_eq!(status, 200);
    assert!(!text.contains("secret-1"), "{text}");
    let register: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "register_runner")
        .expect("register_runner recorded");
    assert_eq!(register["payload"]["runnerSecret"], "***");
    // The in-process view keeps the wire payload.
    let kept = relay
        .transcript()
        .into_iter()
        .find(|r| r.event == "register_runner")
        .unwrap();
    assert_eq!(kept.payload["runnerSecret"], "secret-1");
    drop(runner);
}
