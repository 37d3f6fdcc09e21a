//! Every event has a realistic payload in `fixtures/payloads/<event>.json`;
//! each decodes, re-encodes to the same JSON, and the set of files equals
//! the set of event names (a new event without a fixture fails here).

use std::collections::BTreeSet;
use std::path::PathBuf;

use runner_protocol::{DecodeError, Direction, RunnerEvent, ServerEvent, direction_of};
use serde_json::{Value, json};

fn payload_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/payloads")
}

fn fixtures() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(payload_dir()).expect("fixtures/payloads exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        !out.is_empty(),
        "no fixtures found in {}",
        payload_dir().display()
    );
    out
}

/// Decodes by the name's direction and re-encodes.
fn round_trip(name: &str, value: Value) -> Result<Value, DecodeError> {
    match direction_of(name) {
        Some(Direction::ServerToRunner) => ServerEvent::decode(name, value).map(|e| e.payload()),
        Some(Direction::RunnerToServer) => RunnerEvent::decode(name, value).map(|e| e.payload()),
        None => Err(DecodeError::UnknownEvent {
            name: name.to_owned(),
        }),
    }
}

#[test]
fn fixture_files_are_exactly_the_event_names() {
    let files: BTreeSet<String> = fixtures().into_iter().map(|(name, _)| name).collect();
    let events: BTreeSet<String> = ServerEvent::NAMES
        .iter()
        .chain(RunnerEvent::NAMES)
        .map(|n| n.to_string())
        .collect();
    let missing: Vec<_> = events.difference(&files).collect();
    let extra: Vec<_> = files.difference(&events).collect();
    assert!(missing.is_empty(), "events without a fixture: {missing:?}");
    assert!(extra.is_empty(), "fixtures for no event: {extra:?}");
}

#[test]
fn every_fixture_round_trips_unchanged() {
    for (name, value) in fixtures() {
        let again = round_trip(&name, value.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(again, value, "{name} changed on the round trip");
    }
}

/// A value of another JSON type than `value`'s.
fn wrong_type(value: &Value) -> Value {
    match value {
        Value::String(_) => json!(12345),
        _ => json!("not the right type"),
    }
}

#[test]
fn breaking_any_field_of_any_fixture_names_that_field() {
    let mut broken = 0;
    for (name, value) in fixtures() {
        let Value::Object(map) = &value else {
            panic!("{name}: fixture is not an object")
        };
        for (key, field) in map {
            // A field of the wrong type.
            let mut bad = map.clone();
            bad.insert(key.clone(), wrong_type(field));
            if let Err(err) = round_trip(&name, Value::Object(bad)) {
                broken += 1;
                let text = err.to_string();
                assert!(text.starts_with(&format!("{name}: ")), "{text}");
                assert!(text.contains(&format!("\"{key}")), "{name}.{key}: {text}");
            } else {
                // Only a field that takes any JSON may accept another type.
                assert_eq!(
                    (name.as_str(), key.as_str()),
                    ("runner_session_event", "event")
                );
            }
            // The field missing: fine when optional, else named.
            let mut without = map.clone();
            without.remove(key);
            if let Err(err) = round_trip(&name, Value::Object(without)) {
                let text = err.to_string();
                assert!(
                    text.contains(&format!("\"{key}\"")) || name == "file_result",
                    "{name} without {key}: {text}"
                );
            }
        }
    }
    assert!(broken > 60, "only {broken} broken payloads were refused");
}

#[test]
fn a_wrong_fixture_reads_well() {
    let err = ServerEvent::decode(
        "new_session",
        json!({"sessionId": "s", "model": {"provider": "anthropic", "id": 7}}),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"new_session: field "model.id": invalid type: integer `7`, expected a string"#
    );
}
