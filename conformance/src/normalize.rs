//! Turns a recorded transcript into stable text for snapshots.
//!
//! One event per line: an arrow for the direction (`→` relay to runner,
//! `←` runner to relay, `·` a connection event), the event name, and the
//! payload as compact JSON with sorted keys, in which
//!
//! * ids become numbered placeholders in first-seen order, per kind:
//!   `<session-1>`, `<request-2>`, `<runner-1>`, `<terminal-1>`, `<socket-1>`
//!   (an empty id stays empty: it means "none" on the wire);
//! * secrets become `<secret>`; clocks, pids and uptimes become `<time>`,
//!   `<pid>` and `<uptime>`;
//! * sandbox paths become their placeholder (`<root>`, `<home>`, `<sandbox>`);
//! * periodic events (`runner_heartbeat`) are left out: how many fit in a
//!   run is a matter of timing (scenarios check them with `expect` steps);
//! * consecutive `terminal_data` events of one terminal are joined, their
//!   bytes decoded, because how output is cut into events is timing too.
//!
//! Where the driver marks a span of entries as *unordered* (a burst of
//! concurrent requests and their replies), the span is written relay-side
//! first, then runner-side, each sorted — one canonical order for any
//! interleaving.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Map, Value};

/// Which way an entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    /// Relay → runner.
    ToRunner,
    /// Runner → relay.
    FromRunner,
    /// A connection event recorded by the relay.
    Connection,
}

impl Flow {
    fn arrow(self) -> &'static str {
        match self {
            Flow::ToRunner => "→",
            Flow::FromRunner => "←",
            Flow::Connection => "·",
        }
    }
}

/// One recorded event, as the normalizer needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Which way it went.
    pub flow: Flow,
    /// The event name.
    pub event: String,
    /// The payload.
    pub payload: Value,
}

/// Events left out of the text because their count depends on timing.
pub const PERIODIC_EVENTS: &[&str] = &["runner_heartbeat"];

/// The stateful part of normalization: placeholders assigned so far.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    /// Path prefixes and their placeholders, longest first.
    paths: Vec<(String, String)>,
    /// Per id kind: raw id → number.
    ids: BTreeMap<&'static str, BTreeMap<String, usize>>,
}

/// The id kind of a key whose value is an id (or a list of ids).
fn id_kind(key: &str) -> Option<&'static str> {
    Some(match key {
        "sessionId" | "sessions" => "session",
        "requestId" => "request",
        "runnerId" => "runner",
        "terminalId" | "terminals" => "terminal",
        "socketId" => "socket",
        _ => return None,
    })
}

/// The placeholder of a key whose value varies from run to run.
fn volatile(key: &str) -> Option<&'static str> {
    Some(match key {
        "runnerSecret" | "apiKey" => "<secret>",
        "now" | "ts" | "startedAt" | "connectedAt" | "fetchedAt" => "<time>",
        "pid" | "grandchildPid" => "<pid>",
        "uptimeMs" => "<uptime>",
        _ => return None,
    })
}

impl Normalizer {
    /// A normalizer with no path placeholders.
    pub fn new() -> Self {
        Normalizer::default()
    }

    /// Replaces `prefix` (and its canonical form, when it differs) by
    /// `placeholder` in every string.
    pub fn path(mut self, prefix: impl Into<PathBuf>, placeholder: &str) -> Self {
        let prefix: PathBuf = prefix.into();
        let mut forms = vec![prefix.display().to_string()];
        if let Ok(canonical) = prefix.canonicalize() {
            forms.push(canonical.display().to_string());
        }
        for form in forms {
            if !form.is_empty() && !self.paths.iter().any(|(p, _)| *p == form) {
                self.paths.push((form, placeholder.to_owned()));
            }
        }
        self.paths.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        self
    }

    fn id(&mut self, kind: &'static str, raw: &str) -> String {
        if raw.is_empty() {
            return String::new();
        }
        let ids = self.ids.entry(kind).or_default();
        let next = ids.len() + 1;
        let n = *ids.entry(raw.to_owned()).or_insert(next);
        format!("<{kind}-{n}>")
    }

    fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (prefix, placeholder) in &self.paths {
            out = out.replace(prefix.as_str(), placeholder);
        }
        out
    }

    /// Normalizes one payload (keys sorted, ids and volatile values replaced).
    pub fn value(&mut self, value: &Value) -> Value {
        self.value_at(None, value)
    }

    fn value_at(&mut self, key: Option<&str>, value: &Value) -> Value {
        if let Some(placeholder) = key.and_then(volatile) {
            return Value::String(placeholder.to_owned());
        }
        let kind = key.and_then(id_kind);
        match value {
            Value::String(s) => match kind {
                Some(kind) => Value::String(self.id(kind, s)),
                None => Value::String(self.text(s)),
            },
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| match (kind, item) {
                        (Some(kind), Value::String(s)) => Value::String(self.id(kind, s)),
                        _ => self.value_at(None, item),
                    })
                    .collect(),
            ),
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                let mut out = Map::new();
                for (k, v) in sorted {
                    let v = self.value_at(Some(k), v);
                    out.insert(self.text(k), v);
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    /// One line of text for one entry.
    pub fn line(&mut self, entry: &Entry) -> String {
        let payload = self.value(&entry.payload);
        format!(
            "{} {} {}",
            entry.flow.arrow(),
            entry.event,
            compact(&payload)
        )
    }

    /// The whole transcript as text, one line per event, with `unordered`
    /// spans (index ranges into `entries`) in canonical order.
    pub fn transcript(&mut self, entries: &[Entry], unordered: &[Range<usize>]) -> String {
        let entries = join_terminal_data(entries);
        let mut lines: Vec<String> = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            if let Some(span) = unordered.iter().find(|r| r.start == i && r.end > r.start) {
                let end = span.end.min(entries.len());
                let mut group: Vec<&Entry> =
                    entries[i..end].iter().filter(|e| !skipped(e)).collect();
                // Relay-side entries keep their order (the driver sent them
                // in order), so ids are numbered in sending order; replies
                // are then sorted by their normalized text.
                group.sort_by_key(|e| e.flow);
                let mut replies = Vec::new();
                for entry in group {
                    let line = self.line(entry);
                    if entry.flow == Flow::FromRunner {
                        replies.push(line);
                    } else {
                        lines.push(line);
                    }
                }
                replies.sort();
                lines.extend(replies);
                i = end;
                continue;
            }
            let entry = &entries[i];
            if !skipped(entry) {
                lines.push(self.line(entry));
            }
            i += 1;
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// The name of an entry whose content was joined into an earlier one.
const JOINED: &str = "";

/// Whether an entry is left out of the text.
fn skipped(entry: &Entry) -> bool {
    entry.event == JOINED || PERIODIC_EVENTS.contains(&entry.event.as_str())
}

/// Joins runs of `terminal_data` of one terminal into one entry with the
/// decoded `text`. Index ranges stay valid: joined entries keep their slots
/// as nameless entries that [`Normalizer::transcript`] skips.
fn join_terminal_data(entries: &[Entry]) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
    let mut last_data: Option<usize> = None;
    for entry in entries {
        let terminal = (entry.event == "terminal_data")
            .then(|| entry.payload.get("terminalId").cloned())
            .flatten();
        let bytes = terminal.as_ref().and_then(|_| {
            entry
                .payload
                .get("data")
                .and_then(Value::as_str)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        });
        match (terminal, bytes, last_data) {
            (Some(t), Some(bytes), Some(at)) if out[at].payload.get("terminalId") == Some(&t) => {
                let text = out[at].payload["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
                    + &String::from_utf8_lossy(&bytes);
                out[at].payload["text"] = Value::String(text);
                out.push(Entry {
                    flow: entry.flow,
                    event: JOINED.to_owned(),
                    payload: Value::Null,
                });
            }
            (Some(t), Some(bytes), _) => {
                last_data = Some(out.len());
                out.push(Entry {
                    flow: entry.flow,
                    event: entry.event.clone(),
                    payload: serde_json::json!({
                        "terminalId": t,
                        "text": String::from_utf8_lossy(&bytes),
                    }),
                });
            }
            _ => {
                last_data = None;
                out.push(entry.clone());
            }
        }
    }
    out
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values always serialize")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn e(flow: Flow, event: &str, payload: Value) -> Entry {
        Entry {
            flow,
            event: event.to_owned(),
            payload,
        }
    }

    #[test]
    fn ids_secrets_times_and_paths() {
        let mut n = Normalizer::new()
            .path("/tmp/sbx-1/home", "<home>")
            .path("/tmp/sbx-1/root", "<root>")
            .path("/tmp/sbx-1", "<sandbox>");
        let entries = [
            e(Flow::Connection, "connect", json!({"socketId": "aZ9"})),
            e(
                Flow::FromRunner,
                "register_runner",
                json!({"runnerId": "r-uuid", "runnerSecret": "abc", "roots": ["/tmp/sbx-1/root"], "name": "h"}),
            ),
            e(
                Flow::ToRunner,
                "new_session",
                json!({"sessionId": "S2", "cwd": "/tmp/sbx-1/root/src"}),
            ),
            e(
                Flow::FromRunner,
                "session_error",
                json!({"sessionId": "", "message": "Requested cwd is outside allowed workspace root(s): /tmp/sbx-1/out"}),
            ),
            e(
                Flow::FromRunner,
                "runner_heartbeat",
                json!({"runnerId": "r-uuid", "ts": 5}),
            ),
            e(
                Flow::FromRunner,
                "sessions_list",
                json!({"sessions": ["S2", "S1"]}),
            ),
            e(Flow::FromRunner, "pong", json!({"now": 1795046400123_u64})),
            e(
                Flow::FromRunner,
                "file_result",
                json!({"requestId": "q", "ok": true, "files": [{"path": "/tmp/sbx-1/home/.x", "size": 3, "name": "b", "isSymlink": false, "isDirectory": false}]}),
            ),
        ];
        let text = n.transcript(&entries, &[]);
        let expected = r#"· connect {"socketId":"<socket-1>"}
← register_runner {"name":"h","roots":["<root>"],"runnerId":"<runner-1>","runnerSecret":"<secret>"}
→ new_session {"cwd":"<root>/src","sessionId":"<session-1>"}
← session_error {"message":"Requested cwd is outside allowed workspace root(s): <sandbox>/out","sessionId":""}
← sessions_list {"sessions":["<session-1>","<session-2>"]}
← pong {"now":"<time>"}
← file_result {"files":[{"isDirectory":false,"isSymlink":false,"name":"b","path":"<home>/.x","size":3}],"ok":true,"requestId":"<request-1>"}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn unordered_spans_have_one_canonical_order() {
        let burst = |order: &[usize]| {
            let mut entries = vec![e(Flow::ToRunner, "list_skills", json!({"requestId": "a"}))];
            entries.push(e(Flow::ToRunner, "list_skills", json!({"requestId": "b"})));
            for &i in order {
                let id = ["a", "b"][i];
                entries.insert(
                    1 + i,
                    e(
                        Flow::FromRunner,
                        "skills_list",
                        json!({"requestId": id, "skills": []}),
                    ),
                );
            }
            entries.push(e(Flow::ToRunner, "ping", json!({})));
            let span = 0..entries.len() - 1;
            Normalizer::new().transcript(&entries, &[span])
        };
        let a = burst(&[0, 1]);
        let b = burst(&[1, 0]);
        assert_eq!(a, b);
        assert_eq!(
            a,
            "→ list_skills {\"requestId\":\"<request-1>\"}\n→ list_skills {\"requestId\":\"<request-2>\"}\n← skills_list {\"requestId\":\"<request-1>\",\"skills\":[]}\n← skills_list {\"requestId\":\"<request-2>\",\"skills\":[]}\n→ ping {}\n"
        );
    }

    #[test]
    fn terminal_output_is_joined_however_it_was_cut() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cut = |parts: &[&str]| {
            let mut entries: Vec<Entry> = parts
                .iter()
                .map(|p| {
                    e(
                        Flow::FromRunner,
                        "terminal_data",
                        json!({"terminalId": "t", "data": b64(p)}),
                    )
                })
                .collect();
            entries.push(e(
                Flow::FromRunner,
                "terminal_exit",
                json!({"terminalId": "t", "exitCode": 0}),
            ));
            Normalizer::new().transcript(&entries, &[])
        };
        assert_eq!(cut(&["42\r\n"]), cut(&["4", "2\r", "\n"]));
        assert_eq!(
            cut(&["4", "2"]),
            "← terminal_data {\"terminalId\":\"<terminal-1>\",\"text\":\"42\"}\n← terminal_exit {\"exitCode\":0,\"terminalId\":\"<terminal-1>\"}\n"
        );
    }
}
