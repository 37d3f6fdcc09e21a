//! Turns a recorded transcript into stable text for snapshots.
//!
//! One event per line: an arrow for the direction (`→` relay to runner,
//! `←` runner to relay, `·` a connection event), the event name, and the
//! payload as compact JSON with sorted keys, in which
//!
//! * ids become numbered placeholders in first-seen order, per kind:
//!   `<session-1>`, `<request-2>`, `<runner-1>`, `<terminal-1>`, `<socket-1>`
//!   (an empty id stays empty: it means "none" on the wire);
//! * secrets become `<secret>`; clocks, pids, uptimes and the runner's
//!   version become `<time>`, `<pid>`, `<uptime>` and `<version>`;
//! * sandbox paths become their placeholder (`<root>`, `<home>`, `<sandbox>`);
//! * a text longer than [`LONG_TEXT`] bytes (a large diff, a large worker
//!   event) becomes `<N bytes, fnv1a XXXXXXXXXXXXXXXX>`: its length and a
//!   hash, so a change still shows without the text filling the snapshot;
//! * periodic and streamed events (`runner_heartbeat`, `terminal_data`) are
//!   left out: how many arrive, how output is cut into events and how it
//!   interleaves with other events is a matter of timing (scenarios check
//!   them with `expect` and `expect_output` steps).
//!
//! Two more canonical forms make runs repeatable: the `reason` of a
//! `disconnect` becomes `<reason>` (whether the socket or the namespace
//! closes first is transport detail), and a run of consecutive runner
//! events of one name about *different* ids (two terminals exiting during
//! shutdown) is sorted; events about the same id keep their order.
//!
//! When a run ends with connection events only (the runner is going away
//! while the client library may still be reconnecting), those are written
//! as one `disconnect` line when they contain one: whether a last doomed
//! reconnect got as far as `connect` before the process exited is timing.
//!
//! Where the driver marks a span of entries as *unordered* (a burst of
//! concurrent requests and their replies), the span is written relay-side
//! first, then runner-side, each sorted — one canonical order for any
//! interleaving.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// Texts longer than this (in bytes, after normalization) are written as
/// their length and hash.
pub const LONG_TEXT: usize = 4096;

/// The 64-bit FNV-1a hash: small, and the same on every platform and
/// release (unlike the standard library's hashers).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

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
pub const PERIODIC_EVENTS: &[&str] = &["runner_heartbeat", "terminal_data"];

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
        // The runner's own version: a release must not rewrite every snapshot.
        "version" => "<version>",
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
        // Ids also appear inside messages ("… for runner <id>"). Ids of one
        // character are left alone: they would match inside ordinary words.
        let mut ids: Vec<(&String, String)> = self
            .ids
            .iter()
            .flat_map(|(kind, ids)| {
                ids.iter()
                    .map(move |(raw, n)| (raw, format!("<{kind}-{n}>")))
            })
            .filter(|(raw, _)| raw.chars().count() > 1)
            .collect();
        ids.sort_by_key(|(raw, _)| std::cmp::Reverse(raw.len()));
        for (raw, placeholder) in ids {
            if out.contains(raw.as_str()) {
                out = out.replace(raw.as_str(), &placeholder);
            }
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
                None => {
                    let text = self.text(s);
                    Value::String(if text.len() > LONG_TEXT {
                        format!("<{} bytes, fnv1a {:016x}>", text.len(), fnv1a(&text))
                    } else {
                        text
                    })
                }
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
        let mut payload = self.value(&entry.payload);
        if entry.flow == Flow::Connection
            && entry.event == "disconnect"
            && let Some(reason) = payload.get_mut("reason")
        {
            *reason = Value::String("<reason>".to_owned());
        }
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
        // Number every id before writing anything, so that an id mentioned
        // in a message before its first id field is replaced as well. The
        // second pass assigns the same numbers in the same order.
        let mut first_pass = self.clone();
        for entry in entries {
            first_pass.value(&entry.payload);
        }
        self.ids = first_pass.ids;
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
            if skipped(entry) {
                i += 1;
                continue;
            }
            // A run of runner events of this name, each about another id.
            let mut end = i + 1;
            let mut ids = vec![subject(entry)];
            while end < entries.len() {
                let next = &entries[end];
                if skipped(next) {
                    end += 1;
                    continue;
                }
                if next.flow != Flow::FromRunner
                    || entry.flow != Flow::FromRunner
                    || next.event != entry.event
                    || unordered.iter().any(|r| r.start == end)
                    || ids.contains(&subject(next))
                    || subject(next).is_none()
                {
                    break;
                }
                ids.push(subject(next));
                end += 1;
            }
            if ids.len() > 1 && ids.iter().all(Option::is_some) {
                let mut run: Vec<String> = entries[i..end]
                    .iter()
                    .filter(|e| !skipped(e))
                    .map(|e| self.line(e))
                    .collect();
                run.sort();
                lines.extend(run);
                i = end;
            } else {
                lines.push(self.line(entry));
                i += 1;
            }
        }
        // The trailing connection events, reduced to one disconnect.
        let last_message = entries
            .iter()
            .rposition(|e| e.flow != Flow::Connection && !skipped(e));
        let tail = &entries[last_message.map_or(0, |i| i + 1)..];
        if tail.iter().any(|e| e.event == "disconnect") {
            lines.truncate(lines.len() - tail.iter().filter(|e| !skipped(e)).count());
            lines.push(self.line(&Entry {
                flow: Flow::Connection,
                event: "disconnect".to_owned(),
                payload: serde_json::json!({"reason": "<reason>"}),
            }));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// The id an event is about: its session, terminal or request id.
fn subject(entry: &Entry) -> Option<String> {
    ["sessionId", "terminalId", "requestId"]
        .iter()
        .find_map(|key| entry.payload.get(*key).and_then(Value::as_str))
        .map(str::to_owned)
}

/// Whether an entry is left out of the text.
fn skipped(entry: &Entry) -> bool {
    PERIODIC_EVENTS.contains(&entry.event.as_str())
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
    fn ids_inside_messages_are_replaced() {
        let entries = [
            e(
                Flow::ToRunner,
                "error",
                json!({"message": "secret mismatch for runner 0d2b-39c0"}),
            ),
            e(
                Flow::FromRunner,
                "register_runner",
                json!({"runnerId": "0d2b-39c0"}),
            ),
            e(
                Flow::FromRunner,
                "session_error",
                json!({"sessionId": "s", "message": "Session already running: s"}),
            ),
        ];
        let text = Normalizer::new().transcript(&entries, &[]);
        assert_eq!(
            text,
            "→ error {\"message\":\"secret mismatch for runner <runner-1>\"}\n← register_runner {\"runnerId\":\"<runner-1>\"}\n← session_error {\"message\":\"Session already running: s\",\"sessionId\":\"<session-1>\"}\n"
        );
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
    fn independent_events_of_one_kind_are_sorted_and_reasons_hidden() {
        let run = |first: &str, second: &str| {
            let entries = [
                e(Flow::ToRunner, "new_terminal", json!({"terminalId": "a"})),
                e(Flow::ToRunner, "new_terminal", json!({"terminalId": "b"})),
                e(
                    Flow::FromRunner,
                    "terminal_exit",
                    json!({"terminalId": first, "exitCode": -1}),
                ),
                e(
                    Flow::FromRunner,
                    "terminal_exit",
                    json!({"terminalId": second, "exitCode": -1}),
                ),
                e(Flow::Connection, "disconnect", json!({"reason": first})),
            ];
            Normalizer::new().transcript(&entries, &[])
        };
        assert_eq!(run("a", "b"), run("b", "a"));
        assert!(run("a", "b").ends_with("· disconnect {\"reason\":\"<reason>\"}\n"));
        // Events about one id keep their order.
        let same = |texts: [&str; 2]| {
            let entries: Vec<Entry> = texts
                .iter()
                .map(|t| {
                    e(
                        Flow::FromRunner,
                        "runner_session_event",
                        json!({"sessionId": "s", "event": {"t": t}}),
                    )
                })
                .collect();
            Normalizer::new().transcript(&entries, &[])
        };
        assert_ne!(same(["1", "2"]), same(["2", "1"]));
    }

    #[test]
    fn a_trailing_reconnect_race_reads_the_same() {
        let base = || {
            vec![
                e(Flow::ToRunner, "error", json!({"message": "m"})),
                e(Flow::Connection, "disconnect", json!({"reason": "x"})),
                e(
                    Flow::Connection,
                    "handshake_accepted",
                    json!({"runnerId": "r"}),
                ),
            ]
        };
        let short = base();
        let mut long = base();
        long.push(e(Flow::Connection, "connect", json!({"runnerId": "r"})));
        long.push(e(Flow::Connection, "disconnect", json!({"reason": "y"})));
        let a = Normalizer::new().transcript(&short, &[]);
        assert_eq!(a, Normalizer::new().transcript(&long, &[]));
        assert_eq!(
            a,
            "→ error {\"message\":\"m\"}\n· disconnect {\"reason\":\"<reason>\"}\n"
        );
    }

    #[test]
    fn streamed_and_periodic_events_are_left_out() {
        let entries = [
            e(
                Flow::FromRunner,
                "terminal_data",
                json!({"terminalId": "t", "data": "NDI="}),
            ),
            e(
                Flow::FromRunner,
                "runner_heartbeat",
                json!({"runnerId": "r", "ts": 1}),
            ),
            e(
                Flow::FromRunner,
                "terminal_exit",
                json!({"terminalId": "t", "exitCode": 0}),
            ),
        ];
        assert_eq!(
            Normalizer::new().transcript(&entries, &[]),
            "← terminal_exit {\"exitCode\":0,\"terminalId\":\"<terminal-1>\"}\n"
        );
    }

    #[test]
    fn long_texts_become_their_length_and_hash() {
        let mut n = Normalizer::new();
        let long = "x".repeat(LONG_TEXT + 1);
        let out = n.value(&serde_json::json!({"diff": long, "short": "x".repeat(LONG_TEXT)}));
        assert_eq!(
            out["diff"],
            serde_json::json!(format!(
                "<{} bytes, fnv1a {:016x}>",
                LONG_TEXT + 1,
                fnv1a(&long)
            ))
        );
        assert_eq!(out["short"], serde_json::json!("x".repeat(LONG_TEXT)));
        assert_ne!(fnv1a("a"), fnv1a("b"));
        // The published FNV-1a test vector.
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
