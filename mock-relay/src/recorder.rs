//! The recorder: every event both ways and every connection event, in order.
//!
//! Records are appended under one lock, which also assigns the sequence
//! number and the timestamp, so sequence order, time order and the order of
//! the NDJSON file are the same. Memory is bounded by two caps, records and
//! bytes: when one is reached the oldest records are evicted and counted,
//! and readers get a `records_dropped` marker in their place. The transcript
//! file, when one is configured, receives every record (it is fed through an
//! unbounded channel, so a slow disk delays the file, never the relay, and
//! loses nothing); it is created with mode 0600.
//!
//! Every output for other eyes (the NDJSON of the REST API, the file, the
//! log) goes through [`Record::masked`]: a `runnerSecret` or `apiKey`
//! anywhere in a payload reads `***`. The in-process view
//! ([`crate::RelayHandle::transcript`]) keeps the payloads as they were.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use runner_protocol::names;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::RelayError;

/// Which way a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordDirection {
    /// Runner → relay: an event the relay received.
    In,
    /// Relay → runner: an event the relay sent.
    Out,
    /// Not an event: a handshake, connect, disconnect, fault or other
    /// relay-side occurrence (including the `records_dropped` marker).
    Connection,
}

/// One entry of the transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Sequence number, starting at 1, without gaps (the `records_dropped`
    /// marker has sequence number 0).
    pub seq: u64,
    /// Microseconds since the relay started (monotonic clock).
    pub at_us: u64,
    /// Which way the record went.
    pub direction: RecordDirection,
    /// The runner the record is about, when known.
    pub runner_id: Option<String>,
    /// The Socket.IO socket id, when there is a socket.
    pub socket_id: Option<String>,
    /// The event name (`register_runner`, …) or connection event name
    /// (`handshake_accepted`, `handshake_refused`, `connect`, `disconnect`, …).
    pub event: String,
    /// The event's payload as it was on the wire, or the connection event's
    /// details (e.g. `{"reason": …}`).
    pub payload: Value,
}

/// The value secrets are replaced with in every output.
pub const MASK: &str = "***";

/// Payload keys whose values are secrets.
const SECRET_KEYS: [&str; 2] = ["runnerSecret", "apiKey"];

impl Record {
    /// The record with every secret in its payload masked ([`MASK`]).
    pub fn masked(&self) -> Record {
        let mut record = self.clone();
        mask(&mut record.payload);
        record
    }
}

fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if SECRET_KEYS.contains(&key.as_str()) {
                    *item = Value::String(MASK.to_owned());
                } else {
                    mask(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn has_secret(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| SECRET_KEYS.contains(&key.as_str()) || has_secret(item)),
        Value::Array(items) => items.iter().any(has_secret),
        _ => false,
    }
}

/// Roughly the bytes a payload holds (strings, keys, a few per scalar),
/// without serializing it.
fn approx_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 4,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(approx_bytes).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 3 + approx_bytes(v))
                .sum::<usize>()
        }
    }
}

/// Name of the marker record that stands for evicted records.
pub const RECORDS_DROPPED: &str = "records_dropped";

struct Inner {
    next_seq: u64,
    records: VecDeque<(Record, usize)>,
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    dropped: u64,
    /// Records per event name, evicted ones included.
    counts: HashMap<String, u64>,
    sink: Option<mpsc::UnboundedSender<String>>,
}

/// The in-memory transcript, with an optional NDJSON file behind it.
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
    started: Instant,
    latest: watch::Sender<u64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// What a transcript file writer needs to finish: the receiving end is
/// drained and flushed by [`run_sink`].
pub(crate) type SinkRx = mpsc::UnboundedReceiver<String>;

impl Recorder {
    pub(crate) fn new(cap: usize, max_bytes: usize, file: bool) -> (Self, Option<SinkRx>) {
        let (sink, rx) = if file {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let recorder = Recorder {
            inner: Mutex::new(Inner {
                next_seq: 1,
                records: VecDeque::new(),
                cap: cap.max(1),
                max_bytes: max_bytes.max(1),
                bytes: 0,
                dropped: 0,
                counts: HashMap::new(),
                sink,
            }),
            started: Instant::now(),
            latest: watch::channel(0).0,
        };
        (recorder, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the deque half-written
        // (push/pop are atomic from our side), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record and returns its sequence number.
    pub(crate) fn push(
        &self,
        direction: RecordDirection,
        runner_id: Option<&str>,
        socket_id: Option<&str>,
        event: &str,
        payload: Value,
    ) -> u64 {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        match inner.counts.get_mut(event) {
            Some(count) => *count += 1,
            None => {
                inner.counts.insert(event.to_owned(), 1);
            }
        }
        let record = Record {
            seq,
            at_us: self.now_us(),
            direction,
            runner_id: runner_id.map(str::to_owned),
            socket_id: socket_id.map(str::to_owned),
            event: event.to_owned(),
            payload,
        };
        log_record(&record);
        if let Some(sink) = &inner.sink {
            // Sent under the lock so that the file is in sequence order.
            let line = if has_secret(&record.payload) {
                serde_json::to_string(&record.masked())
            } else {
                serde_json::to_string(&record)
            };
            if let Ok(line) = line {
                let _ = sink.send(line);
            }
        }
        let size = approx_bytes(&record.payload) + record.event.len() + 64;
        while !inner.records.is_empty()
            && (inner.records.len() >= inner.cap || inner.bytes + size > inner.max_bytes)
        {
            if let Some((_, evicted)) = inner.records.pop_front() {
                inner.bytes -= evicted;
                inner.dropped += 1;
            }
        }
        inner.bytes += size;
        inner.records.push_back((record, size));
        drop(inner);
        self.latest.send_replace(seq);
        seq
    }

    /// Microseconds since the relay started.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Stops feeding the transcript file, so that its writer can finish.
    pub(crate) fn close_sink(&self) {
        self.lock().sink = None;
    }

    /// How many records each event name has had, evicted ones included.
    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        let inner = self.lock();
        inner.counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The sequence number the next record will get.
    pub(crate) fn mark(&self) -> u64 {
        self.lock().next_seq
    }

    /// Records with `seq >= since` (and, when given, about `runner_id`),
    /// preceded by a `records_dropped` marker when some of the requested
    /// range was evicted.
    pub(crate) fn snapshot(&self, since: u64, runner_id: Option<&str>) -> Vec<Record> {
        self.read(since, runner_id, usize::MAX)
    }

    /// Up to `limit` records with `seq >= since`, oldest first (with the
    /// `records_dropped` marker first, as [`snapshot`](Self::snapshot)).
    pub(crate) fn page(&self, since: u64, limit: usize) -> Vec<Record> {
        self.read(since, None, limit)
    }

    fn read(&self, since: u64, runner_id: Option<&str>, limit: usize) -> Vec<Record> {
        let inner = self.lock();
        let mut out = Vec::new();
        let first_kept = inner.records.front().map_or(inner.next_seq, |(r, _)| r.seq);
        if inner.dropped > 0 && since < first_kept {
            out.push(dropped_marker(inner.dropped, first_kept));
        }
        let start = inner.records.partition_point(|(r, _)| r.seq < since);
        out.extend(
            inner
                .records
                .iter()
                .skip(start)
                .map(|(r, _)| r)
                .filter(|r| runner_id.is_none() || r.runner_id.as_deref() == runner_id)
                .take(limit)
                .cloned(),
        );
        out
    }

    /// Changes whenever a record is pushed (to the last sequence number).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Forgets every record kept in memory (sequence numbers continue).
    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.records = VecDeque::new();
        inner.bytes = 0;
        inner.dropped = 0;
    }

    /// The first record with `seq >= since` that matches `pred`, waiting up
    /// to `timeout` for live ones.
    pub(crate) async fn expect(
        &self,
        since: u64,
        pred: impl Fn(&Record) -> bool,
        timeout: Duration,
    ) -> Result<Record, RelayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut latest = self.latest.subscribe();
        let mut from = since;
        loop {
            // The predicate runs outside the lock: it may itself look at
            // the relay (and so at this recorder) without deadlocking.
            let fresh: Vec<Record> = {
                let inner = self.lock();
                let start = inner.records.partition_point(|(r, _)| r.seq < from);
                let fresh = inner
                    .records
                    .iter()
                    .skip(start)
                    .map(|(r, _)| r.clone())
                    .collect();
                from = from.max(inner.next_seq);
                fresh
            };
            if let Some(found) = fresh.into_iter().find(|r| pred(r)) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, latest.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RelayError::ShutDown),
                Err(_) => {
                    return Err(RelayError::Timeout {
                        what: format!("a matching record from seq {since}"),
                        after: timeout,
                    });
                }
            }
        }
    }
}

/// The record that stands for `dropped` evicted records.
fn dropped_marker(dropped: u64, first_kept: u64) -> Record {
    Record {
        seq: 0,
        at_us: 0,
        direction: RecordDirection::Connection,
        runner_id: None,
        socket_id: None,
        event: RECORDS_DROPPED.to_owned(),
        payload: json!({ "dropped": dropped, "firstKeptSeq": first_kept }),
    }
}

/// Writes NDJSON lines to `path` until every sender is gone, flushing
/// whenever the channel runs empty.
pub(crate) async fn run_sink(path: PathBuf, mut rx: SinkRx) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        // An existing file keeps its mode on open: make it private too.
        .and_then(|file| {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(file)
        });
    let file = match file {
        Ok(file) => file,
        Err(err) => {
            tracing::error!(path = %path.display(), %err, "cannot create the transcript file");
            return;
        }
    };
    let mut out = std::io::BufWriter::new(file);
    while let Some(line) = rx.recv().await {
        let mut result = writeln!(out, "{line}");
        while let Ok(line) = rx.try_recv() {
            result = result.and_then(|()| writeln!(out, "{line}"));
        }
        if let Err(err) = result.and_then(|()| out.flush()) {
            tracing::error!(path = %path.display(), %err, "writing the transcript file failed");
            return;
        }
    }
}

const LOG_PAYLOAD_CHARS: usize = 300;

fn log_record(record: &Record) {
    tracing::info!(
        target: "mock_relay::events",
        seq = record.seq,
        runner_id = record.runner_id.as_deref().unwrap_or("-"),
        socket_id = record.socket_id.as_deref().unwrap_or("-"),
        "{}",
        log_line(record)
    );
}

/// `<- event {payload}` (received), `-> …` (sent), `== …` (connection),
/// with long payloads cut and secrets masked.
fn log_line(record: &Record) -> String {
    let arrow = match record.direction {
        RecordDirection::In => "<-",
        RecordDirection::Out => "->",
        RecordDirection::Connection => "==",
    };
    if let Some(text) = terminal_text(record) {
        return format!("{arrow} {} {text}", record.event);
    }
    // The log is for eyes and terminals: never print a runner's secret.
    let mut payload = if has_secret(&record.payload) {
        record.masked().payload.to_string()
    } else {
        record.payload.to_string()
    };
    if payload.len() > LOG_PAYLOAD_CHARS {
        let mut cut = LOG_PAYLOAD_CHARS;
        while !payload.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.truncate(cut);
        payload.push('…');
    }
    format!("{arrow} {} {payload}", record.event)
}

const LOG_TERMINAL_CHARS: usize = 200;

/// For `terminal_data`/`terminal_input`: `terminalId` and the decoded bytes
/// as an escaped string (cut to [`LOG_TERMINAL_CHARS`] characters).
fn terminal_text(record: &Record) -> Option<String> {
    use base64::Engine as _;
    if record.event != names::TERMINAL_DATA && record.event != names::TERMINAL_INPUT {
        return None;
    }
    let terminal_id = record.payload.get("terminalId")?.as_str()?;
    let data = record.payload.get("data")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut chars = text.chars();
    let shown: String = chars.by_ref().take(LOG_TERMINAL_CHARS).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    Some(format!(
        "{terminal_id} ({} bytes) {shown:?}{more}",
        bytes.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &Recorder, event: &str) -> u64 {
        r.push(
            RecordDirection::In,
            Some("r1"),
            Some("s1"),
            event,
            json!({}),
        )
    }

    #[test]
    fn sequence_numbers_start_at_one_and_mark_is_the_next() {
        let (r, _) = Recorder::new(10, usize::MAX, false);
        assert_eq!(r.mark(), 1);
        assert_eq!(push(&r, "a"), 1);
        assert_eq!(push(&r, "b"), 2);
        assert_eq!(r.mark(), 3);
        let all = r.snapshot(0, None);
        assert_eq!(
            all.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(all[0].at_us <= all[1].at_us);
    }

    #[test]
    fn the_cap_evicts_oldest_and_leaves_a_marker() {
        let (r, _) = Recorder::new(3, usize::MAX, false);
        for i in 0..5 {
            push(&r, &format!("e{i}"));
        }
        let all = r.snapshot(0, None);
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].event, RECORDS_DROPPED);
        assert_eq!(all[0].payload, json!({"dropped": 2, "firstKeptSeq": 3}));
        assert_eq!(
            all[1..].iter().map(|r| r.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        // A range that was not evicted has no marker.
        assert_eq!(r.snapshot(4, None).len(), 2);
        r.clear();
        assert!(r.snapshot(0, None).is_empty());
        assert_eq!(push(&r, "after"), 6);
    }

    #[test]
    fn counts_include_evicted_and_cleared_records() {
        let (r, _) = Recorder::new(2, usize::MAX, false);
        for _ in 0..4 {
            push(&r, "runner_session_event");
        }
        push(&r, "pong");
        r.clear();
        let counts = r.counts();
        assert_eq!(counts["runner_session_event"], 4);
        assert_eq!(counts["pong"], 1);
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn snapshot_filters_by_runner() {
        let (r, _) = Recorder::new(10, usize::MAX, false);
        r.push(RecordDirection::In, Some("a"), None, "x", json!(1));
        r.push(RecordDirection::Out, Some("b"), None, "y", json!(2));
        r.push(RecordDirection::Connection, None, None, "z", json!(3));
        let only_b = r.snapshot(0, Some("b"));
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].event, "y");
    }

    #[test]
    fn records_serialize_in_camel_case() {
        let (r, _) = Recorder::new(10, usize::MAX, false);
        push(&r, "register_runner");
        let line = serde_json::to_value(&r.snapshot(0, None)[0]).unwrap();
        assert_eq!(line["runnerId"], "r1");
        assert_eq!(line["socketId"], "s1");
        assert_eq!(line["direction"], "in");
        assert!(line.get("atUs").is_some());
    }

    #[test]
    fn terminal_log_lines_show_the_decoded_text() {
        let (r, _) = Recorder::new(10, usize::MAX, false);
        r.push(
            RecordDirection::In,
            Some("r1"),
            None,
            "terminal_data",
            json!({ "terminalId": "t1", "data": "NDIKG1sxbQ==" }),
        );
        let long = "x".repeat(500);
        let data = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&long)
        };
        r.push(
            RecordDirection::Out,
            Some("r1"),
            None,
            "terminal_input",
            json!({ "terminalId": "t1", "data": data }),
        );
        let all = r.snapshot(0, None);
        assert_eq!(
            log_line(&all[0]),
            r#"<- terminal_data t1 (7 bytes) "42\n\u{1b}[1m""#
        );
        let line = log_line(&all[1]);
        assert!(
            line.starts_with("-> terminal_input t1 (500 bytes) \"xxx"),
            "{line}"
        );
        assert!(line.ends_with("\"…"), "{line}");
        assert!(line.len() < 260, "{line}");
        // Recorded as sent.
        assert_eq!(all[1].payload["data"], json!(data));
    }

    #[test]
    fn log_lines_are_short_and_mask_secrets() {
        let (r, _) = Recorder::new(10, usize::MAX, false);
        r.push(
            RecordDirection::In,
            Some("r1"),
            None,
            "register_runner",
            json!({ "runnerId": "r1", "runnerSecret": "abc123" }),
        );
        r.push(
            RecordDirection::Out,
            None,
            None,
            "x",
            json!({ "big": "é".repeat(400) }),
        );
        let all = r.snapshot(0, None);
        let line = log_line(&all[0]);
        assert!(line.starts_with("<- register_runner {"), "{line}");
        assert!(!line.contains("abc123"), "{line}");
        assert!(line.contains(r#""runnerSecret":"***""#), "{line}");
        // The record itself keeps the wire payload.
        assert_eq!(all[0].payload["runnerSecret"], "abc123");
        let long = log_line(&all[1]);
        assert!(long.starts_with("-> x {"));
        assert!(long.ends_with('…') && long.len() < LOG_PAYLOAD_CHARS + 20);
    }

    #[test]
    fn the_transcript_is_capped_in_bytes_too() {
        let (r, _) = Recorder::new(1_000_000, 100_000, false);
        for _ in 0..100 {
            r.push(
                RecordDirection::In,
                Some("r1"),
                None,
                "runner_session_event",
                json!({ "sessionId": "s", "event": { "pad": "x".repeat(10_000) } }),
            );
        }
        let all = r.snapshot(0, None);
        assert_eq!(all[0].event, RECORDS_DROPPED);
        let kept = all.len() - 1;
        assert!(
            (5..=10).contains(&kept),
            "{kept} records of 10 kB kept under 100 kB"
        );
        assert!(r.lock().bytes <= 100_000);
        r.clear();
        assert_eq!(r.lock().bytes, 0);
    }

    #[test]
    fn masked_records_hide_secrets_at_any_depth() {
        let record = Record {
            seq: 1,
            at_us: 0,
            direction: RecordDirection::In,
            runner_id: None,
            socket_id: None,
            event: "register_runner".into(),
            payload: json!({ "runnerSecret": "s1", "nested": [{ "apiKey": "k1", "ok": "v" }] }),
        };
        let masked = record.masked();
        assert_eq!(
            masked.payload,
            json!({ "runnerSecret": MASK, "nested": [{ "apiKey": MASK, "ok": "v" }] })
        );
        assert_eq!(record.payload["runnerSecret"], "s1");
    }

    #[tokio::test]
    async fn the_transcript_file_is_private_and_masked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ndjson");
        // An existing world-readable file is made private as well.
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (r, rx) = Recorder::new(10, usize::MAX, true);
        let sink = tokio::spawn(run_sink(path.clone(), rx.unwrap()));
        r.push(
            RecordDirection::In,
            Some("r1"),
            None,
            "register_runner",
            json!({ "runnerId": "r1", "runnerSecret": "abc123" }),
        );
        r.close_sink();
        sink.await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("abc123") && text.contains(MASK), "{text}");
        assert!(!text.contains("old"), "{text}");
    }

    #[tokio::test]
    async fn expect_sees_past_and_live_records() {
        let (r, _) = Recorder::new(100, usize::MAX, false);
        let r = std::sync::Arc::new(r);
        push(&r, "old");
        let found = r
            .expect(0, |rec| rec.event == "old", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(found.seq, 1);
        let mark = r.mark();
        let writer = {
            let r = r.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    push(&r, &format!("live{i}"));
                    tokio::task::yield_now().await;
                }
            })
        };
        let found = r
            .expect(mark, |rec| rec.event == "live49", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(found.seq, mark + 49);
        writer.await.unwrap();
        // A predicate may read the recorder itself.
        let found = r
            .expect(
                mark,
                |rec| rec.event == "live0" && r.mark() > rec.seq,
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(found.seq, mark);
        let err = r
            .expect(mark, |rec| rec.event == "old", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, RelayError::Timeout { .. }), "{err}");
    }
}
