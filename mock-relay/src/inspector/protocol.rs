//! `GET /api/protocol`: what the page's send panel needs to know about the
//! protocol — each event's direction and JSON Schema (from the protocol
//! crate's types, the same ones `fixtures/schema/` is checked against) and
//! the payload fixture of each event the relay sends, to pre-fill the editor.

use axum::Json;
use runner_protocol::{RunnerEvent, ServerEvent};
use serde_json::{Map, Value, json};

/// `fixtures/payloads/<event>.json` for every event the relay sends.
macro_rules! fixtures {
    ($($name:literal),+ $(,)?) => {
        &[ $( ($name, include_str!(concat!("../../../fixtures/payloads/", $name, ".json"))), )+ ]
    };
}

const FIXTURES: &[(&str, &str)] = fixtures!(
    "runner_registered",
    "new_session",
    "kill_session",
    "list_sessions",
    "ping",
    "restart",
    "error",
    "list_skills",
    "create_skill",
    "update_skill",
    "delete_skill",
    "get_skill",
    "list_files",
    "read_file",
    "git_status",
    "git_diff",
    "new_terminal",
    "terminal_input",
    "terminal_resize",
    "kill_terminal",
    "list_terminals",
    "get_usage",
);

pub(super) async fn protocol() -> Json<Value> {
    Json(describe())
}

fn describe() -> Value {
    let mut events = Map::new();
    for (name, schema) in ServerEvent::schemas() {
        let fixture = FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, text)| serde_json::from_str::<Value>(text).ok())
            .unwrap_or_else(|| json!({}));
        events.insert(
            name.to_owned(),
            json!({ "direction": "toRunner", "schema": schema, "fixture": fixture }),
        );
    }
    for (name, schema) in RunnerEvent::schemas() {
        events.insert(
            name.to_owned(),
            json!({ "direction": "fromRunner", "schema": schema }),
        );
    }
    json!({ "events": events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_the_relay_sends_has_a_fixture_that_decodes() {
        let schemas = ServerEvent::schemas();
        assert!(schemas.len() > 10);
        for (name, _) in schemas {
            let (_, text) = FIXTURES
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no fixture for {name}"));
            let payload: Value = serde_json::from_str(text).expect("fixture is JSON");
            ServerEvent::decode(name, payload)
                .unwrap_or_else(|e| panic!("fixture of {name} does not decode: {e}"));
        }
        assert_eq!(FIXTURES.len(), ServerEvent::schemas().len());
    }

    #[test]
    fn both_directions_are_described() {
        let all = describe();
        assert_eq!(all["events"]["new_session"]["direction"], "toRunner");
        assert!(all["events"]["new_session"]["fixture"]["sessionId"].is_string());
        assert_eq!(all["events"]["session_ready"]["direction"], "fromRunner");
        assert!(all["events"]["session_ready"]["schema"]["properties"].is_object());
    }
}
