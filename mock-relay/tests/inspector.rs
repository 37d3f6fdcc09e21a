//! The inspector page's HTTP side: the page and its assets with a strict
//! content security policy, and the live feed (`/api/events`), which never
//! shows a runner's secret, resumes where a reader left off, and sits
//! behind the control token like the rest of `/api`.

mod fixture;

use fixture::*;
use mock_relay::MockRelay;
use serde_json::{Value, json};

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    tokio::time::timeout(WAIT, req.send())
        .await
        .expect("waiting for the HTTP answer")
        .expect("an HTTP answer")
}

/// Reads Server-Sent Events from `resp` until `done` holds for the events
/// so far, as (event name, data as JSON).
async fn read_events(
    mut resp: reqwest::Response,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !done(&events) {
            let chunk = resp
                .chunk()
                .await
                .expect("reading the stream")
                .expect("more");
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !data.is_empty() {
                    events.push((name, serde_json::from_str(&data).expect("data is JSON")));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the feed did not deliver; so far: {events:#?}"));
    events
}

#[tokio::test]
async fn the_page_and_its_modules_are_served_with_a_strict_policy() {
    let relay = relay().await;
    let resp = get(&format!("{}/", relay.url()), None).await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("/inspector/main.js"));
    for asset in ["main.js", "app.css", "schema.js", "record.js"] {
        let resp = get(&format!("{}/inspector/{asset}", relay.url()), None).await;
        assert_eq!(resp.status(), 200, "{asset}");
    }
    for missing in ["nope.js", "..%2Flib.rs", "index.html"] {
        let resp = get(&format!("{}/inspector/{missing}", relay.url()), None).await;
        assert_eq!(resp.status(), 404, "{missing}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("no inspector asset")
        );
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn the_live_feed_masks_secrets_and_resumes_after_the_last_record() {
    let relay = relay().await;
    let runner = registered_runner(&relay, "r-feed", json!({})).await;
    let resp = get(&format!("{}/api/events?since=0", relay.url()), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = read_events(resp, |events| {
        events
            .iter()
            .any(|(_, d)| d["event"] == "runner_registered")
    })
    .await;
    assert_eq!(events[0].0, "runners", "the registry comes first");
    assert_eq!(events[0].1[0]["runnerId"], "r-feed");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("secret-1"), "a secret in the feed: {text}");
    let registration = events
        .iter()
        .find(|(_, d)| d["event"] == "register_runner")
        .expect("the registration");
    assert_eq!(registration.1["payload"]["runnerSecret"], "***");

    // A reader that comes back asks for what follows the last record it saw.
    let last = events
        .iter()
        .filter(|(name, _)| name == "record")
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let mark = relay.mark();
    relay.drop_outgoing(0);
    let resp = get(
        &format!("{}/api/events?since={}", relay.url(), last + 1),
        None,
    )
    .await;
    let again = read_events(resp, |events| {
        events.iter().any(|(_, d)| d["event"] == "fault_drop")
    })
    .await;
    let seqs: Vec<u64> = again
        .iter()
        .filter(|(name, _)| name == "record")
        .map(|(_, d)| d["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&mark), "{again:#?}");
    runner.stop().await;
    relay.shutdown().await;
}

#[tokio::test]
async fn the_feed_needs_the_control_token_and_the_page_does_not() {
    init_tracing();
    let relay = MockRelay::builder()
        .api_key(KEY)
        .control_token("t0ken")
        .start()
        .await
        .unwrap();
    let base = relay.url();
    assert_eq!(get(&format!("{base}/"), None).await.status(), 200);
    assert_eq!(get(&format!("{base}/api/events"), None).await.status(), 401);
    assert_eq!(
        get(&format!("{base}/api/protocol"), None).await.status(),
        401
    );
    let resp = get(&format!("{base}/api/protocol"), Some("t0ken")).await;
    assert_eq!(resp.status(), 200);
    let protocol: Value = resp.json().await.unwrap();
    assert_eq!(protocol["events"]["list_skills"]["direction"], "toRunner");
    let resp = get(&format!("{base}/api/events"), Some("t0ken")).await;
    let events = read_events(resp, |events| !events.is_empty()).await;
    assert_eq!(events[0].0, "runners");
    relay.shutdown().await;
}
