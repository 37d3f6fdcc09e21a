//! Steps about what goes over the socket: sending events to the runner and
//! waiting for (or ruling out) what it sends back.
//!
//! `expect` looks at what arrived since the last *action* step (emit,
//! fault, signal, start), skipping records an earlier `expect` already
//! matched, so two expects after one emit may match in either arrival
//! order. `wait` lets time pass, for where the behaviour under test is time
//! itself (a heartbeat interval): it only lets events accumulate for the
//! next `expect`.

use std::collections::BTreeMap;
use std::time::Duration;

use mock_relay::{Record, RelayError, RelayHandle};
use runner_protocol::{DecodeError, RunnerEvent, ServerEvent};
use serde::Deserialize;
use serde_json::Value;

use super::{Invalid, one};
use crate::driver::{DEFAULT_EXPECT, Run, RunnerError, poll};
use crate::scenario::CONNECTION_EVENTS;
use crate::template::{Mismatch, UnknownPlaceholder, field, shown, subset};

/// Send an event to the runner. A typed emit (the default) must decode as
/// a [`ServerEvent`]; a raw one is sent as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emit {
    /// The event name.
    pub event: String,
    /// The payload (any JSON when raw). In a file, `payload_json` gives it
    /// as JSON text instead, for what TOML cannot write (`null`).
    #[serde(default = "empty_object")]
    pub payload: Value,
    /// Send without checking the payload.
    #[serde(default)]
    pub raw: bool,
    /// Send this many copies at once (each `requestId`/`sessionId` gets
    /// `-N` appended so every copy is its own request).
    #[serde(default = "one")]
    pub count: u32,
    /// Part of a burst with the emits next to it: what they send and what
    /// comes back may interleave in any order, so the transcript puts that
    /// stretch in a canonical order (as for `count > 1`).
    #[serde(default)]
    pub burst: bool,
}

/// Wait for an event from the runner (or a connection event) whose payload
/// contains `match` (a JSON subset).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The event name.
    pub event: String,
    /// The subset the payload must contain.
    #[serde(rename = "match", default = "empty_object")]
    pub matches: Value,
    /// How many such events must arrive (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// How long to wait (default 5000 ms).
    pub timeout_ms: Option<u64>,
    /// Store payload fields for later steps: placeholder name → field path
    /// (`sessionId`, `skills.0.name`).
    #[serde(default)]
    pub capture: BTreeMap<String, String>,
}

/// Wait until a terminal's output (all its `terminal_data`, decoded and
/// joined) contains a text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectOutput {
    /// The terminal id (placeholders allowed).
    pub terminal: String,
    /// The text to find (placeholders allowed; `\r\n` as the PTY writes it).
    pub contains: String,
    /// How long to wait (default 5000 ms).
    pub timeout_ms: Option<u64>,
}

/// Require that no such event arrives for a while (events an earlier
/// `expect` matched do not count, so `expect` + `expect_none` of one event
/// means "exactly once").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectNone {
    /// The event name.
    pub event: String,
    /// The subset that must not appear.
    #[serde(rename = "match", default = "empty_object")]
    pub matches: Value,
    /// How long to watch.
    pub for_ms: u64,
}

/// Let time pass (only where the behaviour under test is time itself, such
/// as a heartbeat interval).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long.
    pub ms: u64,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Why a wire step did not hold.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// There is no runner to send to.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// A placeholder in the step has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// A typed emit's payload, once filled in, is not its event's.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The relay could not send the event.
    #[error("cannot send {event}: {source}")]
    Send {
        /// The event being sent.
        event: String,
        /// Why the relay could not send it.
        source: RelayError,
    },
    /// An expected event did not arrive in time.
    #[error(
        "expected {event} matching {want}{} within {timeout:?}; {closest}",
        progress(*.n, *.count)
    )]
    Missing {
        /// The event name.
        event: String,
        /// The subset it had to contain (placeholders filled in).
        want: Value,
        /// Which of the expected events was missing (1-based).
        n: u32,
        /// How many were expected.
        count: u32,
        /// How long the step waited.
        timeout: Duration,
        /// What arrived instead.
        closest: Closest,
    },
    /// A captured field is not in the matched event.
    #[error("capture {name}: {event} has no field {path}: {payload}")]
    Capture {
        /// The placeholder to set.
        name: String,
        /// The matched event.
        event: String,
        /// The field path.
        path: String,
        /// The matched event's payload.
        payload: Value,
    },
    /// A terminal did not print the text in time.
    #[error(
        "terminal {terminal} did not print {needle:?} within {timeout:?}; its output ends with {tail:?}"
    )]
    NoOutput {
        /// The terminal id.
        terminal: String,
        /// The text it had to print.
        needle: String,
        /// How long the step waited.
        timeout: Duration,
        /// The last 300 characters it printed.
        tail: String,
    },
    /// An event that must not arrive arrived.
    #[error("expected no {event} matching {want}, got {}", shown(payload))]
    Unexpected {
        /// The event name.
        event: String,
        /// The subset that must not appear.
        want: Value,
        /// The payload of the event that arrived.
        payload: Value,
    },
}

fn progress(n: u32, count: u32) -> String {
    if count > 1 {
        format!(" ({n} of {count})")
    } else {
        String::new()
    }
}

/// What arrived instead of an expected event.
#[derive(Debug, Clone, PartialEq)]
pub enum Closest {
    /// An event of that name that does not match, and the first difference.
    Got {
        /// Its payload.
        payload: Value,
        /// Where it differs from the expected subset.
        mismatch: Mismatch,
    },
    /// No event of that name arrived at all.
    NoneArrived {
        /// The event name.
        event: String,
    },
    /// Events that match arrived, but earlier expects took all of them.
    AllTaken,
}

impl std::fmt::Display for Closest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closest::Got { payload, mismatch } => write!(f, "got {} ({mismatch})", shown(payload)),
            Closest::NoneArrived { event } => write!(f, "no {event} arrived"),
            Closest::AllTaken => {
                f.write_str("every matching event was already taken by an earlier expect")
            }
        }
    }
}

/// Whether `event` is a name an expectation can wait for.
fn check_expectable(event: &str) -> Result<(), Invalid> {
    let known = RunnerEvent::is_known(event)
        || ServerEvent::is_known(event)
        || CONNECTION_EVENTS.contains(&event);
    if known {
        Ok(())
    } else {
        Err(Invalid::new(
            "event",
            format!("{event:?} is neither a /runner event nor one of {CONNECTION_EVENTS:?}"),
        ))
    }
}

impl Emit {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.count == 0 {
            return Err(Invalid::new("count", "must be at least 1"));
        }
        if !self.raw {
            if !ServerEvent::is_known(&self.event) {
                return Err(Invalid::new(
                    "event",
                    format!(
                        "{:?} is not a server→runner event; use raw = true to send it anyway",
                        self.event
                    ),
                ));
            }
            // Placeholders are filled in at run time, so check the shape
            // with every placeholder still in place.
            ServerEvent::decode(&self.event, self.payload.clone()).map_err(|e| {
                Invalid::new(
                    "payload",
                    format!("{e}; use raw = true to send a malformed payload on purpose"),
                )
            })?;
        }
        Ok(())
    }

    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), WireError> {
        let runner = run.runner_id()?;
        let payload = run.vars.fill_json(&self.payload)?;
        let mark = run.relay.mark();
        if (self.count > 1 || self.burst) && run.open_burst.is_none() {
            run.open_burst = Some(mark);
        }
        run.action_mark = mark;
        let event = &self.event;
        for copy in 1..=self.count {
            let payload = if self.count > 1 {
                numbered(&payload, copy)
            } else {
                payload.clone()
            };
            if self.raw {
                run.relay.send_raw(&runner, event, payload).await
            } else {
                let typed = ServerEvent::decode(event, payload)?;
                run.relay.send(&runner, typed).await
            }
            .map_err(|source| WireError::Send {
                event: event.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Copy `copy` of a burst payload: its ids get `-copy` appended.
fn numbered(payload: &Value, copy: u32) -> Value {
    let mut payload = payload.clone();
    if let Value::Object(map) = &mut payload {
        for key in ["requestId", "sessionId", "terminalId"] {
            if let Some(Value::String(id)) = map.get_mut(key) {
                id.push_str(&format!("-{copy}"));
            }
        }
    }
    payload
}

impl Expect {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check_expectable(&self.event)?;
        if self.count == 0 {
            return Err(Invalid::new("count", "must be at least 1; use expect_none"));
        }
        Ok(())
    }

    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), WireError> {
        let event = &self.event;
        let want = run.vars.fill_json(&self.matches)?;
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_EXPECT, Duration::from_millis);
        let deadline = tokio::time::Instant::now() + timeout;
        for n in 1..=self.count {
            let consumed = &run.consumed;
            let found = run
                .relay
                .expect(
                    run.action_mark,
                    |r| {
                        r.event == *event
                            && !consumed.contains(&r.seq)
                            && subset(&want, &r.payload).is_ok()
                    },
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                )
                .await
                .map_err(|_| WireError::Missing {
                    event: event.clone(),
                    want: want.clone(),
                    n,
                    count: self.count,
                    timeout,
                    closest: closest(run, event, &want),
                })?;
            run.consumed.insert(found.seq);
            for (name, path) in &self.capture {
                let value = field(&found.payload, path).ok_or_else(|| WireError::Capture {
                    name: name.clone(),
                    event: event.clone(),
                    path: path.clone(),
                    payload: found.payload.clone(),
                })?;
                run.vars.set(name.clone(), value);
            }
        }
        Ok(())
    }
}

/// Says what arrived since the last action instead of an expected event.
fn closest(run: &Run, event: &str, want: &Value) -> Closest {
    let since = run.relay.transcript_since(run.action_mark, None);
    let same: Vec<&Record> = since.iter().filter(|r| r.event == event).collect();
    let got = same
        .iter()
        .filter(|r| !run.consumed.contains(&r.seq))
        .find_map(|r| subset(want, &r.payload).err().map(|m| (r, m)));
    match got {
        Some((r, mismatch)) => Closest::Got {
            payload: r.payload.clone(),
            mismatch,
        },
        None if same.is_empty() => Closest::NoneArrived {
            event: event.to_owned(),
        },
        None => Closest::AllTaken,
    }
}

impl ExpectOutput {
    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), WireError> {
        let terminal = run.vars.fill(&self.terminal)?;
        let needle = run.vars.fill(&self.contains)?;
        let timeout = self
            .timeout_ms
            .map_or(DEFAULT_EXPECT, Duration::from_millis);
        let mut output = TerminalOutput::new(&terminal);
        let found = poll(timeout, || {
            output.update(&run.relay);
            output.text().contains(&needle).then_some(())
        })
        .await;
        if found.is_some() {
            return Ok(());
        }
        output.update(&run.relay);
        let text = output.text();
        let tail: String = text
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(WireError::NoOutput {
            terminal,
            needle,
            timeout,
            tail,
        })
    }
}

/// Everything a terminal printed so far, decoded, read from the transcript
/// a piece at a time: each update looks only at records it has not seen.
struct TerminalOutput<'a> {
    terminal: &'a str,
    /// The sequence number of the first record not looked at yet.
    next: u64,
    bytes: Vec<u8>,
}

impl<'a> TerminalOutput<'a> {
    fn new(terminal: &'a str) -> Self {
        TerminalOutput {
            terminal,
            next: 0,
            bytes: Vec::new(),
        }
    }

    /// Adds what the terminal printed since the last update.
    fn update(&mut self, relay: &RelayHandle) {
        use base64::Engine as _;
        for r in relay.transcript_since(self.next, None) {
            // The marker of evicted records has sequence number 0.
            if r.seq < self.next {
                continue;
            }
            self.next = r.seq + 1;
            if r.event == "terminal_data"
                && r.payload.get("terminalId").and_then(Value::as_str) == Some(self.terminal)
                && let Some(data) = r.payload.get("data").and_then(Value::as_str)
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(data)
            {
                self.bytes.extend(decoded);
            }
        }
    }

    fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}

impl ExpectNone {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check_expectable(&self.event)
    }

    pub(crate) async fn run(&self, run: &mut Run) -> Result<(), WireError> {
        let want = run.vars.fill_json(&self.matches)?;
        // Watching for an absence is waiting by definition.
        tokio::time::sleep(Duration::from_millis(self.for_ms)).await;
        if let Some(r) = run
            .relay
            .transcript_since(run.action_mark, None)
            .into_iter()
            .find(|r| {
                r.event == self.event
                    && !run.consumed.contains(&r.seq)
                    && subset(&want, &r.payload).is_ok()
            })
        {
            return Err(WireError::Unexpected {
                event: self.event.clone(),
                want,
                payload: r.payload,
            });
        }
        Ok(())
    }
}

impl Wait {
    pub(crate) async fn run(&self) {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
    }
}
