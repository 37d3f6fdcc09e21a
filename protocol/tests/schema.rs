//! The JSON Schemas checked in under `fixtures/schema/` are exactly what the
//! types produce. Regenerate with `cargo run -p runner-protocol --bin write-schema`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use runner_protocol::schema::{all_schemas, render};
use runner_protocol::{RunnerEvent, ServerEvent};

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/schema")
}

const REGENERATE: &str = "regenerate with: cargo run -p runner-protocol --bin write-schema";

#[test]
fn checked_in_schemas_match_the_types() {
    let schemas = all_schemas();
    assert_eq!(
        schemas.len(),
        ServerEvent::NAMES.len() + RunnerEvent::NAMES.len() + 2
    );
    for (stem, schema) in &schemas {
        let path = schema_dir().join(format!("{stem}.json"));
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
        assert!(
            on_disk == render(schema),
            "{} differs from the types; {REGENERATE}",
            path.display()
        );
    }
    let expected: BTreeSet<String> = schemas.iter().map(|(s, _)| format!("{s}.json")).collect();
    let found: BTreeSet<String> = std::fs::read_dir(schema_dir())
        .expect("fixtures/schema exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        found, expected,
        "stale or missing schema files; {REGENERATE}"
    );
}

#[test]
fn schemas_describe_the_wire_names() {
    let schemas = all_schemas();
    let new_session = &schemas.iter().find(|(s, _)| s == "new_session").unwrap().1;
    assert_eq!(new_session["required"], serde_json::json!(["sessionId"]));
    assert!(new_session["properties"]["model"].is_object());
    let file_result = &schemas.iter().find(|(s, _)| s == "file_result").unwrap().1;
    let text = file_result.to_string();
    for key in [
        "files",
        "content",
        "branch",
        "diffStaged",
        "diff",
        "message",
        "requestId",
    ] {
        assert!(
            text.contains(&format!("\"{key}\"")),
            "file_result schema lacks {key}"
        );
    }
}
