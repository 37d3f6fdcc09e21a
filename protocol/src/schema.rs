//! JSON Schema for every payload, by file stem: one per event name, plus
//! `handshake_auth` and `usage_cache`. `fixtures/schema/` holds them, written
//! by `cargo run -p runner-protocol --bin write-schema`; a test fails when
//! the checked-in files differ from the types.

use serde_json::Value;

use crate::event::{RunnerEvent, ServerEvent, schema_of};
use crate::types::{HandshakeAuth, UsageCache};

/// Every schema, as (file stem, schema), sorted by stem.
pub fn all_schemas() -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = ServerEvent::schemas()
        .into_iter()
        .chain(RunnerEvent::schemas())
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    all.push(("handshake_auth".to_owned(), schema_of::<HandshakeAuth>()));
    all.push(("usage_cache".to_owned(), schema_of::<UsageCache>()));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// A schema as the checked-in file's text: pretty JSON and a final newline.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas always serialize");
    text.push('\n');
    text
}
