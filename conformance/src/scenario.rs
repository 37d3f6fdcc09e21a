//! The scenario model: what a scenario sets up and the steps it runs.
//!
//! A scenario is data. It is written as a TOML file in
//! `fixtures/scenarios/` and parses into [`Scenario`]; Rust tests build the
//! same values in code. A file looks like this:
//!
//! ```toml
//! name = "spawn-cwd-outside-roots"
//! level = "contract"
//! description = "A new_session whose cwd lies outside the roots is refused."
//!
//! [sandbox]
//! dirs = ["outside"]
//!
//! [[steps]]
//! do = "emit"
//! event = "new_session"
//! payload = { sessionId = "s1", cwd = "{sandbox}/outside" }
//!
//! [[steps]]
//! do = "expect"
//! event = "session_error"
//! match = { sessionId = "s1", message = "Requested cwd is outside allowed workspace root(s): {sandbox}/outside" }
//! ```
//!
//! Strings in payloads, matches and paths may use placeholders: `{sandbox}`
//! (the scenario's temporary directory), `{root}` (the first workspace
//! root), `{home}` (the runner's `HOME`), `{relay_url}` and `{api_key}`
//! (what the runner was given), and any name captured by an earlier
//! `expect` or `read_worker` step. `{{name}}` stands for the literal text `{name}`;
//! any other brace is kept as written, so JSON content needs no escaping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runner_protocol::{RunnerEvent, ServerEvent};

pub use crate::level::Level;
use serde::Deserialize;
use serde_json::Value;

/// Events the relay records about connections rather than messages.
pub const CONNECTION_EVENTS: &[&str] = &[
    "handshake_accepted",
    "handshake_refused",
    "connect",
    "disconnect",
];

/// One scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// A short, unique, kebab-case name.
    pub name: String,
    /// What the scenario shows, in a sentence or two.
    pub description: String,
    /// What its verdict stands on (see [`crate::level`]).
    pub level: Level,
    /// What exists before the runner starts.
    pub sandbox: Sandbox,
    /// Whether the driver waits for the runner to register before the
    /// first step (default true; false for scenarios about refused starts).
    pub wait_registered: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The file's top level; steps are decoded one by one afterwards, so that
/// an error inside a step can name its field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    description: String,
    level: Level,
    #[serde(default)]
    sandbox: Sandbox,
    #[serde(default = "yes")]
    wait_registered: bool,
    #[serde(default)]
    steps: Vec<toml::Table>,
}

fn yes() -> bool {
    true
}

/// The files, directories, repositories and settings a scenario starts with.
/// Every path is relative to the scenario's temporary directory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Directories given to the runner as workspace roots (created).
    #[serde(default = "default_roots")]
    pub roots: Vec<String>,
    /// Further directories to create.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Files to create, path → content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Symlinks to create, link path → target (used as written, after placeholders).
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
    /// Directories to turn into git repositories with one commit of their files.
    #[serde(default)]
    pub git: Vec<String>,
    /// Skills in the runner's skills directory, name → `SKILL.md` content.
    #[serde(default)]
    pub skills: BTreeMap<String, String>,
    /// The runner's usage cache file content, when it has one.
    #[serde(default)]
    pub usage_cache: Option<Value>,
    /// How the fixture worker behaves when the runner spawns it.
    #[serde(default)]
    pub worker: WorkerBehaviour,
    /// Extra environment variables for the runner.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_roots() -> Vec<String> {
    vec!["root".to_owned()]
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            roots: default_roots(),
            dirs: Vec::new(),
            files: BTreeMap::new(),
            symlinks: BTreeMap::new(),
            git: Vec::new(),
            skills: BTreeMap::new(),
            usage_cache: None,
            worker: WorkerBehaviour::default(),
            env: BTreeMap::new(),
        }
    }
}

/// The fixture worker's behaviour, passed to it as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerBehaviour {
    /// Exit with this code (after `delay_ms`); absent: stay until killed.
    pub exit_code: Option<i32>,
    /// Wait this long before exiting.
    pub delay_ms: Option<u64>,
    /// Exit with 43 (restart me) the first time only.
    #[serde(default)]
    pub exit_43_once: bool,
    /// Ignore SIGTERM, so only SIGKILL stops it.
    #[serde(default)]
    pub ignore_sigterm: bool,
    /// Spawn a grandchild process that sleeps.
    #[serde(default)]
    pub grandchild: bool,
    /// Print these JSON values, one per stdout line, at start.
    #[serde(default)]
    pub events: Vec<Value>,
}

/// One step of a scenario, tagged by `do` in its TOML table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send an event to the runner. A typed emit (the default) must decode
    /// as a [`ServerEvent`]; a raw one is sent as written.
    Emit {
        /// The event name.
        event: String,
        /// The payload (any JSON when raw). In a file, `payload_json` gives
        /// it as JSON text instead, for what TOML cannot write (`null`).
        #[serde(default = "empty_object")]
        payload: Value,
        /// Send without checking the payload.
        #[serde(default)]
        raw: bool,
        /// Send this many copies at once (each `requestId`/`sessionId` gets
        /// `-N` appended so every copy is its own request).
        #[serde(default = "one")]
        count: u32,
        /// Part of a burst with the emits next to it: what they send and
        /// what comes back may interleave in any order, so the transcript
        /// puts that stretch in a canonical order (as for `count > 1`).
        #[serde(default)]
        burst: bool,
    },
    /// Wait for an event from the runner (or a connection event) whose
    /// payload contains `match` (a JSON subset).
    Expect {
        /// The event name.
        event: String,
        /// The subset the payload must contain.
        #[serde(rename = "match", default = "empty_object")]
        matches: Value,
        /// How many such events must arrive (default 1).
        #[serde(default = "one")]
        count: u32,
        /// How long to wait (default 5000 ms).
        timeout_ms: Option<u64>,
        /// Store payload fields for later steps: placeholder name → field path
        /// (`sessionId`, `skills.0.name`).
        #[serde(default)]
        capture: BTreeMap<String, String>,
    },
    /// Wait until a terminal's output (all its `terminal_data`, decoded and
    /// joined) contains a text.
    ExpectOutput {
        /// The terminal id (placeholders allowed).
        terminal: String,
        /// The text to find (placeholders allowed; `\r\n` as the PTY writes it).
        contains: String,
        /// How long to wait (default 5000 ms).
        timeout_ms: Option<u64>,
    },
    /// Require that no such event arrives for a while (events an earlier
    /// `expect` matched do not count, so `expect` + `expect_none` of one
    /// event means "exactly once").
    ExpectNone {
        /// The event name.
        event: String,
        /// The subset that must not appear.
        #[serde(rename = "match", default = "empty_object")]
        matches: Value,
        /// How long to watch.
        for_ms: u64,
    },
    /// Wait for the runner process to exit: with `code`, or with any
    /// non-zero code (`nonzero = true`, for where the reference says only
    /// that the runner stops on an error). Exactly one of the two.
    ExpectExit {
        /// The expected exit code.
        code: Option<i32>,
        /// Any exit code but 0 (a signal counts as non-zero).
        #[serde(default)]
        nonzero: bool,
        /// How long to wait (default 10000 ms).
        timeout_ms: Option<u64>,
    },
    /// Start the runner again (same home, state file and identity), e.g.
    /// after it exited, or a second instance beside a running one.
    StartRunner {
        /// Wait for its registration (default true).
        #[serde(default = "yes")]
        wait_registered: bool,
    },
    /// Drop the runner on purpose, as the real relay does (socket.io's
    /// `disconnect(true)`): the `error` first when given, then the namespace
    /// DISCONNECT, then the transport closes. A stock client does not
    /// reconnect by itself after it; the runner decides.
    Kick {
        /// The `error` message sent first.
        error: Option<String>,
    },
    /// Close the runner's transport without a DISCONNECT, as a network
    /// failure would; a stock client reconnects by itself.
    DropConnection {},
    /// Refuse the next handshakes.
    Refuse {
        /// How many.
        count: u32,
        /// The refusal message (default `unauthorized`).
        message: Option<String>,
    },
    /// Stop the relay's listener, wait, and listen again on the same port.
    RestartRelay {
        /// How long the relay is down.
        down_ms: u64,
        /// Keep the registry (identity bindings) across the restart.
        #[serde(default = "yes")]
        keep_state: bool,
    },
    /// Delay every event sent to runners.
    Delay {
        /// By how much.
        ms: u64,
    },
    /// Drop the next events sent to runners.
    Drop {
        /// How many.
        count: u32,
    },
    /// Send a signal to the runner process.
    Signal {
        /// `SIGTERM`, `SIGINT` or `SIGKILL`.
        signal: RunnerSignal,
    },
    /// Let time pass (only where the behaviour under test is time itself,
    /// such as a heartbeat interval).
    Wait {
        /// How long.
        ms: u64,
    },
    /// Check the file system.
    CheckFs {
        /// The path (placeholders allowed).
        path: String,
        /// Whether it must exist.
        exists: Option<bool>,
        /// The content it must have.
        content: Option<String>,
        /// The permission bits it must have, in octal (`"0600"`).
        mode: Option<String>,
    },
    /// Read a JSON file and store some of its fields as placeholders:
    /// placeholder name → field path, as in `expect`'s `capture`.
    ReadJson {
        /// The path (placeholders allowed).
        path: String,
        /// Placeholder name → field path (`runnerSecret`, `a.0.b`).
        capture: BTreeMap<String, String>,
    },
    /// Write a file (e.g. to tamper with the runner's state between runs).
    WriteFs {
        /// The path (placeholders allowed).
        path: String,
        /// The content (placeholders allowed).
        content: String,
    },
    /// Wait for the fixture worker of a session to write its record, then
    /// set the placeholders `worker_pid`, `grandchild_pid` (when it has
    /// one) and `worker_cwd`, and `worker_env_<NAME>` for each `PIZZAPI_`
    /// variable it saw.
    ///
    /// Placeholders set by an earlier `read_worker` are cleared first, so a
    /// variable the new record lacks is absent. With `alive = true` only a
    /// record whose worker is still running counts, so after a restart
    /// (code 43) the record of the new worker is read, not its
    /// predecessor's.
    ReadWorker {
        /// The session id (placeholders allowed).
        session: String,
        /// How long to wait for the record (default 5000 ms).
        timeout_ms: Option<u64>,
        /// Wait for the record of a live worker.
        #[serde(default)]
        alive: bool,
    },
    /// Check a placeholder's value, e.g. `worker_env_PIZZAPI_SESSION_ID`
    /// after `read_worker`: exactly one of `equals` (placeholders allowed),
    /// `matches` (a regular expression the whole value must match) or
    /// `absent = true`.
    CheckVar {
        /// The placeholder's name, without braces.
        name: String,
        /// The value it must have.
        equals: Option<String>,
        /// A regular expression the whole value must match, e.g.
        /// `[0-9a-f]{64}`.
        matches: Option<String>,
        /// It must have no value.
        #[serde(default)]
        absent: bool,
    },
    /// Check a process recorded by the fixture worker (or captured).
    CheckProcess {
        /// The pid, usually a placeholder such as `{worker_pid}`.
        pid: String,
        /// Whether it must be alive.
        alive: bool,
        /// How long it may take to get there (default 5000 ms).
        timeout_ms: Option<u64>,
    },
}

/// A signal a scenario may send to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RunnerSignal {
    /// Terminate (graceful shutdown, exit 0).
    #[serde(rename = "SIGTERM")]
    Term,
    /// Interrupt (graceful shutdown, exit 0).
    #[serde(rename = "SIGINT")]
    Int,
    /// Kill (no shutdown at all).
    #[serde(rename = "SIGKILL")]
    Kill,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn one() -> u32 {
    1
}

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ScenarioError {
    /// The file (or the origin name given to [`Scenario::from_toml`]).
    pub file: String,
    /// The 1-based line (0 when unknown).
    pub line: usize,
    /// The field's path, e.g. `steps[2].event`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Scenario {
    /// Parses and checks a scenario. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let error = |line: usize, field: String, message: String| ScenarioError {
            file: origin.to_owned(),
            line,
            field,
            message,
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            error(line, "(syntax)".to_owned(), e.message().trim().to_owned())
        })?;
        let raw: RawScenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| line_of(text, s.start))
                .or_else(|| line_of_path(text, &field))
                .unwrap_or(0);
            error(line, field, inner.message().trim().to_owned())
        })?;
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (i, mut table) in raw.steps.into_iter().enumerate() {
            let at_field = |field: &str| {
                let path = format!("steps[{i}].{field}");
                (line_of_path(text, &path).unwrap_or(0), path)
            };
            let action = match table.remove("do") {
                Some(toml::Value::String(action)) => action,
                Some(other) => {
                    let (line, path) = at_field("do");
                    return Err(error(
                        line,
                        path,
                        format!("must be a string, not {}", other.type_str()),
                    ));
                }
                None => {
                    let (line, path) = at_field("do");
                    return Err(error(
                        line,
                        path,
                        "missing field `do` (the step's action)".to_owned(),
                    ));
                }
            };
            // TOML has no null: `payload_json` writes an emit's payload as
            // JSON text instead.
            let payload_json = match table.remove("payload_json") {
                None => None,
                Some(toml::Value::String(text)) if action == "emit" => {
                    let (line, path) = at_field("payload_json");
                    if table.contains_key("payload") {
                        return Err(error(
                            line,
                            path,
                            "give `payload` or `payload_json`, not both".to_owned(),
                        ));
                    }
                    let value: Value = serde_json::from_str(&text)
                        .map_err(|e| error(line, path, format!("not JSON: {e}")))?;
                    Some(value)
                }
                Some(_) => {
                    let (line, path) = at_field("payload_json");
                    return Err(error(
                        line,
                        path,
                        "only an emit takes `payload_json`, as a string of JSON text".to_owned(),
                    ));
                }
            };
            let mut tagged = toml::Table::new();
            tagged.insert(action, toml::Value::Table(table));
            let mut step: Step = serde_path_to_error::deserialize(toml::Value::Table(tagged))
                .map_err(|e| {
                    // The path starts with the variant (`expect.timeout_ms`);
                    // an unknown variant has only that segment.
                    let path = e.path().to_string();
                    let field = match path.split_once('.') {
                        Some((_, f)) if !f.is_empty() => f.to_owned(),
                        _ => "do".to_owned(),
                    };
                    let (line, path) = at_field(&field);
                    error(line, path, e.into_inner().message().trim().to_owned())
                })?;
            if let (Some(value), Step::Emit { payload, .. }) = (payload_json, &mut step) {
                *payload = value;
            }
            steps.push(step);
        }
        let scenario = Scenario {
            name: raw.name,
            description: raw.description,
            level: raw.level,
            sandbox: raw.sandbox,
            wait_registered: raw.wait_registered,
            steps,
        };
        scenario.check().map_err(|(field, message)| {
            error(line_of_path(text, &field).unwrap_or(0), field, message)
        })?;
        Ok(scenario)
    }

    /// Reads and parses one scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: origin.clone(),
            line: 0,
            field: "(file)".to_owned(),
            message: e.to_string(),
        })?;
        Scenario::from_toml(&text, &origin)
    }

    /// Reads every `*.toml` file of a directory, sorted by file name. Fails
    /// on the first bad file, on duplicate names, and on an empty directory.
    pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
        let dir_error = |message: String| ScenarioError {
            file: dir.display().to_string(),
            line: 0,
            field: "(directory)".to_owned(),
            message,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| dir_error(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(dir_error("no scenario files (*.toml) found".to_owned()));
        }
        let mut seen = BTreeMap::new();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let scenario = Scenario::load(&path)?;
            if let Some(other) = seen.insert(scenario.name.clone(), path.clone()) {
                return Err(ScenarioError {
                    file: path.display().to_string(),
                    line: line_of_path(&std::fs::read_to_string(&path).unwrap_or_default(), "name")
                        .unwrap_or(0),
                    field: "name".to_owned(),
                    message: format!(
                        "{:?} is also the name of {}",
                        scenario.name,
                        other.display()
                    ),
                });
            }
            out.push((path, scenario));
        }
        Ok(out)
    }

    /// Checks what the types cannot: names, event names, payloads of typed
    /// emits, capture paths. Returns the field path and the message.
    fn check(&self) -> Result<(), (String, String)> {
        let kebab = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !kebab {
            return Err((
                "name".to_owned(),
                format!(
                    "{:?} must be lowercase letters, digits and hyphens",
                    self.name
                ),
            ));
        }
        if self.sandbox.roots.is_empty() {
            return Err((
                "sandbox.roots".to_owned(),
                "at least one root is needed".to_owned(),
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            match step {
                Step::Emit {
                    event,
                    payload,
                    raw,
                    count,
                    ..
                } => {
                    if *count == 0 {
                        return Err((at("count"), "must be at least 1".to_owned()));
                    }
                    if !raw {
                        if !ServerEvent::is_known(event) {
                            return Err((
                                at("event"),
                                format!(
                                    "{event:?} is not a server→runner event; use raw = true to send it anyway"
                                ),
                            ));
                        }
                        // Placeholders are filled in at run time, so check the
                        // shape with every placeholder still in place.
                        ServerEvent::decode(event, payload.clone()).map_err(|e| {
                            (
                                at("payload"),
                                format!(
                                    "{e}; use raw = true to send a malformed payload on purpose"
                                ),
                            )
                        })?;
                    }
                }
                Step::Expect { event, .. } | Step::ExpectNone { event, .. } => {
                    let known = RunnerEvent::is_known(event)
                        || ServerEvent::is_known(event)
                        || CONNECTION_EVENTS.contains(&event.as_str());
                    if !known {
                        return Err((
                            at("event"),
                            format!(
                                "{event:?} is neither a /runner event nor one of {CONNECTION_EVENTS:?}"
                            ),
                        ));
                    }
                    if matches!(step, Step::Expect { count: 0, .. }) {
                        return Err((
                            at("count"),
                            "must be at least 1; use expect_none".to_owned(),
                        ));
                    }
                }
                Step::ExpectExit { code, nonzero, .. } if code.is_some() == *nonzero => {
                    return Err((
                        at("code"),
                        "give exactly one of `code` or `nonzero = true`".to_owned(),
                    ));
                }
                Step::CheckVar {
                    equals,
                    matches,
                    absent,
                    ..
                } => {
                    let given = usize::from(equals.is_some())
                        + usize::from(matches.is_some())
                        + usize::from(*absent);
                    if given != 1 {
                        return Err((
                            at("equals"),
                            "give exactly one of `equals`, `matches` or `absent = true`".to_owned(),
                        ));
                    }
                    if let Some(pattern) = matches {
                        regex::Regex::new(pattern).map_err(|e| {
                            (at("matches"), format!("not a regular expression: {e}"))
                        })?;
                    }
                }
                Step::CheckFs {
                    mode: Some(mode), ..
                } if parse_mode(mode).is_none() => {
                    return Err((
                        at("mode"),
                        format!("{mode:?} is not an octal permission such as \"0600\""),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Permission bits written in octal (`"0600"`, `"600"`).
pub fn parse_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line where a field path such as `steps[2].event` is written: the
/// N-th `[[steps]]` header, then the first line after it that sets the key.
fn line_of_path(text: &str, path: &str) -> Option<usize> {
    let mut parts = path.split('.');
    let head = parts.next()?;
    let key = parts.next();
    let (table, index) = match head.split_once('[') {
        Some((table, rest)) => (table, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => {
            return text
                .lines()
                .position(|l| {
                    l.trim_start().starts_with(&format!("{head} "))
                        || l.trim_start().starts_with(&format!("{head}="))
                })
                .map(|i| i + 1);
        }
    };
    let header = format!("[[{table}]]");
    let start = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(index)?
        .0;
    let Some(key) = key else {
        return Some(start + 1);
    };
    text.lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
        .or(Some(start + 1))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const GOOD: &str = r#"
name = "spawn-ok"
level = "contract"
description = "Spawn works."

[sandbox]
dirs = ["root/src"]
files = { "root/a.txt" = "hello" }
worker = { exit_43_once = true, events = [{ type = "hello" }] }

[[steps]]
do = "emit"
event = "new_session"
payload = { sessionId = "s1", cwd = "{root}/src" }

[[steps]]
do = "expect"
event = "session_ready"
match = { sessionId = "s1" }
capture = { sid = "sessionId" }

[[steps]]
do = "expect_none"
event = "session_error"
for_ms = 200

[[steps]]
do = "emit"
event = "kill_session"
payload = { sessionId = 5 }
raw = true

[[steps]]
do = "signal"
signal = "SIGTERM"

[[steps]]
do = "expect_exit"
code = 0
"#;

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::from_toml(GOOD, "good.toml").unwrap();
        assert_eq!(s.name, "spawn-ok");
        assert_eq!(s.level, Level::Contract);
        assert_eq!(s.sandbox.roots, vec!["root"]);
        assert!(s.sandbox.worker.exit_43_once);
        assert_eq!(s.steps.len(), 6);
        assert_eq!(
            s.steps[0],
            Step::Emit {
                event: "new_session".into(),
                payload: json!({"sessionId": "s1", "cwd": "{root}/src"}),
                raw: false,
                count: 1,
                burst: false,
            }
        );
        assert!(
            matches!(&s.steps[1], Step::Expect { capture, count: 1, .. } if capture["sid"] == "sessionId")
        );
        assert_eq!(
            s.steps[4],
            Step::Signal {
                signal: RunnerSignal::Term
            }
        );
    }

    fn err(text: &str) -> ScenarioError {
        Scenario::from_toml(text, "bad.toml").unwrap_err()
    }

    #[test]
    fn errors_point_at_file_line_and_field() {
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n\n[[steps]]\ndo = \"emitt\"\n",
        );
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("bad.toml", 6, "steps[0].do")
        );
        assert!(e.message.contains("unknown variant `emitt`"), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"wait\"\nms = 1\n[[steps]]\ndo = \"expect\"\nevent = \"session_ready\"\ntimeout_ms = \"soon\"\n",
        );
        assert_eq!(e.field, "steps[1].timeout_ms");
        assert_eq!(e.line, 10, "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"new_sesion\"\n",
        );
        assert_eq!((e.line, e.field.as_str()), (6, "steps[0].event"));
        assert!(e.message.contains("not a server→runner event"), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"new_session\"\npayload = { cwd = \"/\" }\n",
        );
        assert_eq!((e.line, e.field.as_str()), (7, "steps[0].payload"));
        assert!(e.message.contains(r#"missing field "sessionId""#), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"expect\"\nevent = \"pong\"\nmatchs = {}\n",
        );
        assert!(e.message.contains("unknown field `matchs`"), "{e}");

        for both_or_neither in ["equals = \"s1\"\nabsent = true\n", ""] {
            let e = err(&format!(
                "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_var\"\nname = \"worker_env_PIZZAPI_SESSION_ID\"\n{both_or_neither}"
            ));
            assert_eq!(e.field, "steps[0].equals", "{e}");
            assert!(e.message.contains("exactly one of `equals`"), "{e}");
        }
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_var\"\nname = \"v\"\nmatches = \"[a-\"\n",
        );
        assert_eq!(e.field, "steps[0].matches", "{e}");
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_fs\"\npath = \"p\"\nmode = \"rw\"\n",
        );
        assert_eq!(e.field, "steps[0].mode", "{e}");
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"ping\"\nraw = true\npayload_json = \"{nope\"\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (8, "steps[0].payload_json"),
            "{e}"
        );
        let null = Scenario::from_toml(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"ping\"\nraw = true\npayload_json = \"null\"\n",
            "null.toml",
        )
        .unwrap();
        assert!(matches!(
            &null.steps[0],
            Step::Emit {
                payload: Value::Null,
                ..
            }
        ));

        let e = err("name = \"Bad Name\"\nlevel = \"contract\"\ndescription = \"d\"\n");
        assert_eq!((e.line, e.field.as_str()), (1, "name"));

        let e = err("name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]\n");
        assert_eq!((e.line, e.field.as_str()), (4, "(syntax)"));

        let e = err("name = \"x\"\nlevel = \"contract\"\n");
        assert!(e.message.contains("missing field `description`"), "{e}");

        let e = err("name = \"x\"\ndescription = \"d\"\n");
        assert!(e.message.contains("missing field `level`"), "{e}");
        let e = err("name = \"x\"\nlevel = \"strict\"\ndescription = \"d\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "level"), "{e}");
        assert!(e.message.contains("unknown variant `strict`"), "{e}");

        for both_or_neither in ["code = 1\nnonzero = true\n", ""] {
            let e = err(&format!(
                "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"expect_exit\"\n{both_or_neither}"
            ));
            assert_eq!(e.field, "steps[0].code", "{e}");
            assert!(e.message.contains("exactly one of `code`"), "{e}");
        }
        assert_eq!(e.to_string().split(':').next(), Some("bad.toml"));
    }

    #[test]
    fn load_dir_refuses_empty_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let e = Scenario::load_dir(dir.path()).unwrap_err();
        assert!(e.message.contains("no scenario files"), "{e}");
        std::fs::write(
            dir.path().join("a.toml"),
            "name = \"same\"\nlevel = \"contract\"\ndescription = \"d\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "name = \"same\"\nlevel = \"contract\"\ndescription = \"d\"\n",
        )
        .unwrap();
        let e = Scenario::load_dir(dir.path()).unwrap_err();
        assert!(
            e.file.ends_with("b.toml") && e.message.contains("also the name of"),
            "{e}"
        );
    }
}
