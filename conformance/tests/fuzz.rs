//! Property tests against a live runner, through the mock relay.
//!
//! * `commands_match_the_model`: generated sequences of session, skill,
//!   file and terminal commands — valid and hostile ids, names and cwds, interleaved — are
//!   turned into a scenario whose expectations come from a reference model
//!   of the runner's state. The runner's replies must match the model;
//!   every request is answered exactly once with its `requestId`; files
//!   outside the skills directory survive; no file outside the roots is
//!   ever read (each such `read_file` must be refused); the runner still
//!   answers `ping`;
//!   no worker outlives it (the driver checks by pid).
//! * `malformed_payloads_never_break_the_runner`: generated JSON of every
//!   shape for every command. A command with a string `requestId` gets
//!   exactly one reply carrying it; the runner never disconnects and still
//!   answers `ping`.
//!
//! Few cases by default so CI stays fast: `FUZZ_CASES=100` runs more.

use std::collections::{BTreeMap, BTreeSet};

use conformance::driver::{self, DriverConfig, Outcome};
use conformance::level::Level;
use conformance::scenario::{Sandbox, Scenario, Step};
use mock_relay::RecordDirection;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use runner_protocol::messages;
use serde_json::{Value, json};

fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a spawned session asks to run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cwd {
    Default,
    Root,
    Sub,
    Outside,
    DotDot,
    Symlink,
    Evil,
    Missing,
}

impl Cwd {
    fn path(self) -> Option<&'static str> {
        match self {
            Cwd::Default => None,
            Cwd::Root => Some("{root}"),
            Cwd::Sub => Some("{root}/sub"),
            Cwd::Outside => Some("{sandbox}/outside"),
            Cwd::DotDot => Some("{root}/../outside"),
            Cwd::Symlink => Some("{root}/escape"),
            Cwd::Evil => Some("{sandbox}/root-evil"),
            Cwd::Missing => Some("{root}/missing"),
        }
    }

    fn outside(self) -> bool {
        matches!(self, Cwd::Outside | Cwd::DotDot | Cwd::Symlink | Cwd::Evil)
    }
}

#[derive(Debug, Clone)]
enum Command {
    Spawn(&'static str, Cwd),
    Kill(&'static str),
    Create(&'static str, &'static str),
    Update(&'static str, &'static str),
    Delete(&'static str),
    Get(&'static str),
    ListSkills,
    Read(&'static str),
    OpenTerminal(&'static str, bool),
    KillTerminal(&'static str),
    ListTerminals,
    Ping,
}

const TERMINALS: &[&str] = &["t1", "t2"];

/// Paths a `read_file` asks for (relative to the root), and whether they
/// lie inside it; inside ones exist and hold `inside`.
const READS: &[(&str, bool)] = &[
    ("file.txt", true),
    ("sub/../file.txt", true),
    ("../outside/canary.txt", false),
    ("escape/canary.txt", false),
    ("{sandbox}/outside/canary.txt", false),
    ("{sandbox}/root-evil/secret.txt", false),
    ("{home}/.pizzapi/escape", false),
];

const SESSIONS: &[&str] = &["s1", "s2", "s3"];
const NAMES: &[&str] = &[
    "alpha",
    "beta-2",
    "c",
    "../escape",
    "a/b",
    "-x",
    "Bad_Name",
    "  ",
    "..",
];
const CONTENTS: &[&str] = &["---\ndescription: one\n---\nbody", "plain text", ""];

fn command() -> impl Strategy<Value = Command> {
    let session = proptest::sample::select(SESSIONS);
    let name = proptest::sample::select(NAMES);
    let content = proptest::sample::select(CONTENTS);
    let cwd = proptest::sample::select(vec![
        Cwd::Default,
        Cwd::Root,
        Cwd::Sub,
        Cwd::Outside,
        Cwd::DotDot,
        Cwd::Symlink,
        Cwd::Evil,
        Cwd::Missing,
    ]);
    prop_oneof![
        3 => (session.clone(), cwd).prop_map(|(s, c)| Command::Spawn(s, c)),
        2 => session.prop_map(Command::Kill),
        2 => (name.clone(), content.clone()).prop_map(|(n, c)| Command::Create(n, c)),
        1 => (name.clone(), content).prop_map(|(n, c)| Command::Update(n, c)),
        2 => name.clone().prop_map(Command::Delete),
        1 => name.prop_map(Command::Get),
        1 => Just(Command::ListSkills),
        2 => proptest::sample::select(READS).prop_map(|(path, _)| Command::Read(path)),
        2 => (proptest::sample::select(TERMINALS), any::<bool>())
            .prop_map(|(id, outside)| Command::OpenTerminal(id, outside)),
        1 => proptest::sample::select(TERMINALS).prop_map(Command::KillTerminal),
        1 => Just(Command::ListTerminals),
        1 => Just(Command::Ping),
    ]
}

/// The reference model: what runs, what skills exist, which terminals are open.
#[derive(Debug, Default)]
struct Model {
    sessions: BTreeSet<&'static str>,
    skills: BTreeMap<&'static str, &'static str>,
    terminals: BTreeSet<&'static str>,
}

fn name_error(name: &str) -> Option<&'static str> {
    runner_protocol::rules::validate_skill_name(name)
        .err()
        .map(|e| match e {
            runner_protocol::rules::SkillNameError::Missing => messages::MISSING_SKILL_NAME,
            runner_protocol::rules::SkillNameError::Invalid => messages::INVALID_SKILL_NAME,
        })
}

fn emit(event: &str, payload: Value) -> Step {
    Step::Emit {
        event: event.into(),
        payload,
        raw: false,
        count: 1,
        burst: false,
    }
}

fn expect(event: &str, matches: Value) -> Step {
    Step::Expect {
        event: event.into(),
        matches,
        count: 1,
        timeout_ms: Some(10_000),
        capture: BTreeMap::new(),
    }
}

impl Model {
    fn skills_json(&self) -> Value {
        Value::Array(self.skills.keys().map(|n| json!({"name": n})).collect())
    }

    /// The steps that send `command` and expect the model's reply.
    fn steps(&mut self, i: usize, command: &Command) -> Vec<Step> {
        let rid = format!("r{i}");
        match *command {
            Command::Spawn(id, cwd) => {
                let mut payload = json!({"sessionId": id});
                if let Some(path) = cwd.path() {
                    payload["cwd"] = json!(path);
                }
                let reply = if self.sessions.contains(id) {
                    expect(
                        "session_error",
                        json!({"sessionId": id, "message": messages::session_already_running(id)}),
                    )
                } else if cwd.outside() {
                    let path = cwd.path().unwrap_or_default();
                    expect(
                        "session_error",
                        json!({"sessionId": id, "message": messages::cwd_outside_roots(path)}),
                    )
                } else if cwd == Cwd::Missing {
                    expect("session_error", json!({"sessionId": id}))
                } else {
                    self.sessions.insert(id);
                    expect("session_ready", json!({"sessionId": id}))
                };
                vec![emit("new_session", payload), reply]
            }
            Command::Kill(id) => {
                let reply = if self.sessions.remove(id) {
                    expect("session_killed", json!({"sessionId": id}))
                } else {
                    expect(
                        "session_error",
                        json!({"sessionId": id, "message": messages::SESSION_NOT_FOUND}),
                    )
                };
                vec![emit("kill_session", json!({"sessionId": id})), reply]
            }
            Command::Create(name, content) | Command::Update(name, content) => {
                let event = if matches!(command, Command::Create(..)) {
                    "create_skill"
                } else {
                    "update_skill"
                };
                let reply = match name_error(name) {
                    Some(message) => json!({"requestId": rid, "ok": false, "message": message}),
                    None => {
                        self.skills.insert(name.trim(), content);
                        json!({"requestId": rid, "ok": true, "skills": self.skills_json()})
                    }
                };
                vec![
                    emit(
                        event,
                        json!({"requestId": rid, "name": name, "content": content}),
                    ),
                    expect("skill_result", reply),
                ]
            }
            Command::Delete(name) => {
                let reply = match name_error(name) {
                    Some(message) => json!({"requestId": rid, "ok": false, "message": message}),
                    None if self.skills.remove(name.trim()).is_some() => {
                        json!({"requestId": rid, "ok": true, "skills": self.skills_json()})
                    }
                    None => {
                        json!({"requestId": rid, "ok": false, "message": messages::SKILL_NOT_FOUND})
                    }
                };
                vec![
                    emit("delete_skill", json!({"requestId": rid, "name": name})),
                    expect("skill_result", reply),
                ]
            }
            Command::Get(name) => {
                let reply = match (name_error(name), self.skills.get(name.trim())) {
                    (Some(message), _) => {
                        json!({"requestId": rid, "ok": false, "message": message})
                    }
                    (None, Some(content)) => {
                        json!({"requestId": rid, "ok": true, "name": name.trim(), "content": content})
                    }
                    (None, None) => {
                        json!({"requestId": rid, "ok": false, "message": messages::SKILL_NOT_FOUND})
                    }
                };
                vec![
                    emit("get_skill", json!({"requestId": rid, "name": name})),
                    expect("skill_result", reply),
                ]
            }
            Command::ListSkills => vec![
                emit("list_skills", json!({"requestId": rid})),
                expect(
                    "skills_list",
                    json!({"requestId": rid, "skills": self.skills_json()}),
                ),
            ],
            Command::Read(path) => {
                let inside = READS.iter().any(|(p, inside)| *p == path && *inside);
                let reply = if inside {
                    json!({"requestId": rid, "ok": true, "content": "inside"})
                } else {
                    json!({"requestId": rid, "ok": false, "message": messages::PATH_OUTSIDE_ROOTS})
                };
                vec![
                    emit(
                        "read_file",
                        json!({"requestId": rid, "cwd": "{root}", "path": path}),
                    ),
                    expect("file_result", reply),
                ]
            }
            Command::OpenTerminal(id, outside) => {
                let mut payload = json!({"terminalId": id, "shell": "/bin/sh"});
                let reply = if outside {
                    payload["cwd"] = json!("{sandbox}/outside");
                    expect(
                        "terminal_error",
                        json!({"terminalId": id, "message": messages::terminal_cwd_outside_roots("{sandbox}/outside")}),
                    )
                } else if self.terminals.contains(id) {
                    expect(
                        "terminal_error",
                        json!({"terminalId": id, "message": messages::TERMINAL_ALREADY_EXISTS}),
                    )
                } else {
                    self.terminals.insert(id);
                    expect("terminal_ready", json!({"terminalId": id}))
                };
                vec![emit("new_terminal", payload), reply]
            }
            Command::KillTerminal(id) => {
                let reply = if self.terminals.remove(id) {
                    expect("terminal_exit", json!({"terminalId": id, "exitCode": -1}))
                } else {
                    expect(
                        "terminal_error",
                        json!({"terminalId": id, "message": messages::TERMINAL_NOT_FOUND}),
                    )
                };
                vec![emit("kill_terminal", json!({"terminalId": id})), reply]
            }
            Command::ListTerminals => vec![
                emit("list_terminals", json!({})),
                expect(
                    "terminals_list",
                    json!({"terminals": self.terminals.iter().collect::<Vec<_>>()}),
                ),
            ],
            Command::Ping => vec![emit("ping", json!({})), expect("pong", json!({}))],
        }
    }
}

fn sandbox() -> Sandbox {
    Sandbox {
        dirs: vec!["root/sub".into(), "outside".into(), "root-evil".into()],
        files: BTreeMap::from([
            ("outside/canary.txt".into(), "canary".into()),
            ("root-evil/secret.txt".into(), "secret".into()),
            ("root/file.txt".into(), "inside".into()),
            ("home/.pizzapi/escape".into(), "canary".into()),
        ]),
        symlinks: BTreeMap::from([("root/escape".into(), "{sandbox}/outside".into())]),
        ..Sandbox::default()
    }
}

/// The properties every run must hold beyond its expect steps.
fn check_transcript(outcome: &Outcome, request_ids: &[String]) -> Result<(), TestCaseError> {
    let transcript = &outcome.transcript;
    prop_assert!(
        transcript.iter().any(|r| r.event == "pong"),
        "the run never reached the final ping"
    );
    for rid in request_ids {
        let replies = transcript
            .iter()
            .filter(|r| {
                r.direction == RecordDirection::In
                    && r.payload.get("requestId") == Some(&json!(rid))
            })
            .count();
        prop_assert_eq!(replies, 1, "request {} was answered {} times", rid, replies);
    }
    let disconnects = transcript
        .iter()
        .filter(|r| r.event == "disconnect")
        .count();
    prop_assert_eq!(disconnects, 0, "the runner disconnected during the run");
    Ok(())
}

/// A proptest runner for `default` cases (more with `FUZZ_CASES`). Shrunk
/// failures are kept (and committed) in `conformance/proptest-regressions/`,
/// and replayed first.
fn test_runner(default: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz.txt",
        ))),
        ..Config::default()
    })
}

/// Runs one generated case as a scenario and checks the run-wide
/// properties; `inputs` names what was generated, for the failure message.
fn run_case(
    name: &str,
    inputs: String,
    steps: Vec<Step>,
    request_ids: &[String],
) -> Result<(), TestCaseError> {
    let scenario = Scenario {
        name: name.into(),
        description: inputs.clone(),
        // The reference model is of this workspace's runner.
        level: Level::PizzapiRunner,
        sandbox: sandbox(),
        wait_registered: true,
        steps,
    };
    let config = DriverConfig::workspace().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime.block_on(driver::run(&scenario, &config));
    if let Some(failure) = &outcome.failure {
        return Err(TestCaseError::fail(format!(
            "{failure}\ngenerated: {inputs}\ntranscript tail:\n{}",
            outcome.transcript_tail(10)
        )));
    }
    check_transcript(&outcome, request_ids)
}

#[test]
fn commands_match_the_model() {
    let mut runner = test_runner(6);
    let result = runner.run(&proptest::collection::vec(command(), 1..25), |commands| {
        let mut model = Model::default();
        let mut steps = Vec::new();
        let mut request_ids = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            if !matches!(
                command,
                Command::Spawn(..)
                    | Command::Kill(..)
                    | Command::Ping
                    | Command::OpenTerminal(..)
                    | Command::KillTerminal(..)
                    | Command::ListTerminals
            ) {
                request_ids.push(format!("r{i}"));
            }
            steps.extend(model.steps(i, command));
        }
        steps.extend([
            Step::CheckFs {
                path: "{sandbox}/outside/canary.txt".into(),
                exists: None,
                content: Some("canary".into()),
                mode: None,
            },
            Step::CheckFs {
                path: "{home}/.pizzapi/escape".into(),
                exists: None,
                content: Some("canary".into()),
                mode: None,
            },
            Step::CheckFs {
                path: "{home}/.pizzapi/skills/a".into(),
                exists: Some(false),
                content: None,
                mode: None,
            },
            Step::CheckFs {
                path: "{home}/.pizzapi/Bad_Name".into(),
                exists: Some(false),
                content: None,
                mode: None,
            },
            emit("ping", json!({})),
            expect("pong", json!({})),
        ]);
        run_case(
            "fuzz-commands",
            format!("{commands:?}"),
            steps,
            &request_ids,
        )
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// Commands whose payloads are fuzzed (`restart` stops the runner by design;
/// `error` and `runner_registered` are the relay's own answers).
const FUZZED: &[&str] = &[
    "new_session",
    "kill_session",
    "list_sessions",
    "ping",
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
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        // No braces: the driver would read `{name}` as a placeholder.
        "[^{}]{0,8}".prop_map(Value::String),
        Just(json!("../../etc/passwd")),
        Just(json!("$(touch pwned)")),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(vec![
                    "sessionId",
                    "requestId",
                    "terminalId",
                    "name",
                    "content",
                    "cwd",
                    "path",
                    "data",
                    "cols",
                    "rows",
                    "encoding",
                    "maxBytes",
                    "staged",
                    "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn malformed_payloads_never_break_the_runner() {
    let mut runner = test_runner(4);
    let strategy =
        proptest::collection::vec((proptest::sample::select(FUZZED), json_value()), 1..30);
    let result = runner.run(&strategy, |sends| {
        let mut steps = Vec::new();
        let mut request_ids = Vec::new();
        for (i, (event, payload)) in sends.iter().enumerate() {
            let mut payload = payload.clone();
            // A string requestId of our own on half the objects: those must
            // be answered exactly once, whatever else the payload holds.
            let mut reply_step = None;
            if let (0, Some(reply), Value::Object(map)) = (i % 2, reply_event(event), &mut payload)
            {
                let rid = format!("m{i}");
                map.insert("requestId".into(), json!(rid));
                // `expect` looks at what arrived since the last emit.
                reply_step = Some(expect(reply, json!({"requestId": rid})));
                request_ids.push(rid);
            }
            steps.push(Step::Emit {
                event: (*event).into(),
                payload,
                raw: true,
                count: 1,
                burst: false,
            });
            steps.extend(reply_step);
        }
        steps.extend([emit("ping", json!({})), expect("pong", json!({}))]);
        run_case("fuzz-malformed", format!("{sends:?}"), steps, &request_ids)
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// The reply event of a command that carries a `requestId`, whether the
/// payload decodes or not (`list_skills` and `get_usage` have no other
/// field, so they always succeed).
fn reply_event(command: &str) -> Option<&'static str> {
    Some(match command {
        "list_skills" => "skills_list",
        "get_usage" => "usage_data",
        "create_skill" | "update_skill" | "delete_skill" | "get_skill" => "skill_result",
        "list_files" | "read_file" | "git_status" | "git_diff" => "file_result",
        _ => return None,
    })
}
