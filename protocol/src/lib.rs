//! The PizzaPi `/runner` Socket.IO contract as Rust types.
//!
//! A *relay* (server) and a *runner daemon* (client) talk over Socket.IO v5,
//! namespace `/runner`, WebSocket only. Every event carries one JSON object.
//! This crate holds one payload struct per event, the two event enums
//! ([`ServerEvent`]: relay → runner; [`RunnerEvent`]: runner → relay), the
//! handshake `auth` object ([`HandshakeAuth`]), the error messages of the
//! original daemon ([`messages`]) and the rules both sides enforce
//! ([`rules`]: skill names, paths inside workspace roots, relay URLs). It does
//! no I/O and needs no async runtime.
//!
//! Decoding tolerates unknown fields (forward compatibility) and reports a
//! missing or mistyped field by event and field name:
//!
//! ```
//! use runner_protocol::ServerEvent;
//! use serde_json::json;
//!
//! let err = ServerEvent::decode("new_session", json!({"cwd": "/w"})).unwrap_err();
//! assert_eq!(err.to_string(), r#"new_session: missing field "sessionId""#);
//!
//! let ev = ServerEvent::decode("ping", json!({"future": 1})).unwrap();
//! assert_eq!(ev.name(), "ping");
//! ```
//!
//! # The events
//!
//! `S→R`: relay to runner. `R→S`: runner to relay. *(ext)*: an extension of
//! this project; relays that do not know it ignore it.
//!
//! | event | dir | payload | meaning |
//! |---|---|---|---|
//! | `register_runner` | R→S | [`RegisterRunner`] | the runner announces itself, once after every (re)connect |
//! | `runner_registered` | S→R | [`RunnerRegistered`] | the relay accepted the registration |
//! | `new_session` | S→R | [`NewSession`] | spawn a worker process for a session |
//! | `session_ready` | R→S | [`SessionReady`] | the worker was spawned |
//! | `session_error` | R→S | [`SessionError`] | a spawn or kill was refused or failed |
//! | `kill_session` | S→R | [`KillSession`] | stop a worker (SIGTERM, then SIGKILL after a grace period) |
//! | `session_killed` | R→S | [`SessionKilled`] | the worker is gone after `kill_session` |
//! | `list_sessions` | S→R | [`ListSessions`] | ask for the running sessions |
//! | `sessions_list` | R→S | [`SessionsList`] | the running sessions' ids |
//! | `runner_session_event` | R→S | [`RunnerSessionEvent`] | a worker's event, forwarded |
//! | `session_exited` *(ext)* | R→S | [`SessionExited`] | a worker ended on its own |
//! | `ping` | S→R | [`Ping`] | health check |
//! | `pong` | R→S | [`Pong`] | answer to `ping`, with the runner's clock |
//! | `restart` | S→R | [`Restart`] | shut down and exit 42 so a supervisor restarts the daemon |
//! | `error` | S→R | [`RelayError`] | a relay-side error, e.g. a refused registration |
//! | `runner_heartbeat` *(ext)* | R→S | [`RunnerHeartbeat`] | periodic liveness: sessions, terminals, uptime |
//! | `list_skills` | S→R | [`ListSkills`] | ask for the skills |
//! | `create_skill` | S→R | [`CreateSkill`] | write a new skill |
//! | `update_skill` | S→R | [`UpdateSkill`] | replace a skill's markdown |
//! | `delete_skill` | S→R | [`DeleteSkill`] | remove a skill |
//! | `get_skill` | S→R | [`GetSkill`] | read one skill |
//! | `skills_list` | R→S | [`SkillsList`] | the skills, on request or after a change |
//! | `skill_result` | R→S | [`SkillResult`] | the outcome of a skill command |
//! | `list_files` | S→R | [`ListFiles`] | list a directory inside the roots |
//! | `read_file` | S→R | [`ReadFile`] | read a file inside the roots (utf8 or base64, bounded) |
//! | `git_status` | S→R | [`GitStatus`] | branch, changes, ahead/behind, staged diff |
//! | `git_diff` | S→R | [`GitDiff`] | the diff of one path |
//! | `file_result` | R→S | [`FileResult`] | the reply to a file or git command |
//! | `new_terminal` | S→R | [`NewTerminal`] | open a shell in a pseudo-terminal |
//! | `terminal_ready` | R→S | [`TerminalReady`] | the terminal is open |
//! | `terminal_input` | S→R | [`TerminalInput`] | bytes typed into a terminal (base64) |
//! | `terminal_data` | R→S | [`TerminalData`] | bytes a terminal printed (base64) |
//! | `terminal_resize` | S→R | [`TerminalResize`] | change a terminal's size |
//! | `kill_terminal` | S→R | [`KillTerminal`] | close a terminal, killing its shell |
//! | `terminal_exit` | R→S | [`TerminalExit`] | a terminal's shell ended (`-1` when killed) |
//! | `terminal_error` | R→S | [`TerminalError`] | a terminal command failed |
//! | `list_terminals` | S→R | [`ListTerminals`] | ask for the open terminals |
//! | `terminals_list` | R→S | [`TerminalsList`] | the open terminals' ids |
//! | `get_usage` *(ext)* | S→R | [`GetUsage`] | ask for provider usage data |
//! | `usage_data` *(ext)* | R→S | [`UsageData`] | provider usage data, on request and on change |
//!
//! Every request that carries a `requestId` gets exactly one reply carrying
//! the same `requestId`; a payload that does not decode gets the command's
//! error reply ([`ServerEvent::error_reply`]).
//!
//! # Modules
//!
//! [`names`] defines every event name once. The payloads live in one module
//! per family ([`registration`], [`session`], [`control`], [`skills`],
//! [`files`], [`terminal`], [`usage`]), shared types in [`types`]. [`event`]
//! builds the enums from them; [`schema`] produces the JSON Schemas checked
//! in under `fixtures/schema/`.

#![warn(missing_docs)]

#[cfg(test)]
mod arb;
pub mod control;
mod error;
pub mod event;
pub mod files;
pub mod lossy;
pub mod messages;
pub mod names;
pub mod registration;
pub mod rules;
pub mod schema;
pub mod session;
pub mod skills;
pub mod terminal;
pub mod types;
pub mod usage;

pub use control::{HeartbeatSession, Ping, Pong, RelayError, Restart, RunnerHeartbeat};
pub use error::{DecodeError, json_type_name};
pub use event::{Direction, RunnerEvent, ServerEvent, direction_of};
pub use files::{
    FileContent, FileEncoding, FileEntry, FileFailure, FileListing, FileResult, FileResultBody,
    GitChange, GitDiff, GitDiffReport, GitStatus, GitStatusReport, ListFiles, ReadFile,
};
pub use registration::{RegisterRunner, RunnerRegistered};
pub use session::{
    KillSession, ListSessions, NewSession, RunnerSessionEvent, SessionError, SessionExited,
    SessionKilled, SessionReady, SessionsList,
};
pub use skills::{
    CreateSkill, DeleteSkill, GetSkill, ListSkills, SkillResult, SkillsList, UpdateSkill,
};
pub use terminal::{
    KillTerminal, ListTerminals, NewTerminal, TerminalData, TerminalError, TerminalExit,
    TerminalInput, TerminalReady, TerminalResize, TerminalsList,
};
pub use types::{
    HandshakeAuth, ModelRef, ProviderUsage, RunnerSkill, Secret, UsageCache, UsageWindow,
};
pub use usage::{GetUsage, UsageData};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn server_events_round_trip(event in ServerEvent::arbitrary()) {
            let decoded = ServerEvent::decode(event.name(), event.payload());
            prop_assert_eq!(decoded, Ok(event));
        }

        #[test]
        fn runner_events_round_trip(event in RunnerEvent::arbitrary()) {
            let decoded = RunnerEvent::decode(event.name(), event.payload());
            prop_assert_eq!(decoded, Ok(event));
        }

        #[test]
        fn handshake_auth_round_trips(auth in any::<HandshakeAuth>()) {
            let value = serde_json::to_value(&auth).unwrap();
            prop_assert_eq!(serde_json::from_value::<HandshakeAuth>(value).unwrap(), auth);
        }
    }

    #[test]
    fn every_variant_is_generated() {
        // The round-trip strategies are unions over all variants; this pins
        // that every name is reachable, so a new variant cannot be left out.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4000 {
            let s = ServerEvent::arbitrary()
                .new_tree(&mut runner)
                .unwrap()
                .current();
            let r = RunnerEvent::arbitrary()
                .new_tree(&mut runner)
                .unwrap()
                .current();
            seen.insert(s.name());
            seen.insert(r.name());
        }
        let all: std::collections::BTreeSet<_> = ServerEvent::NAMES
            .iter()
            .chain(RunnerEvent::NAMES)
            .copied()
            .collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn names_are_unique_across_directions() {
        let mut all: Vec<&str> = ServerEvent::NAMES
            .iter()
            .chain(RunnerEvent::NAMES)
            .copied()
            .collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
        assert_eq!(count, 40);
    }

    #[test]
    fn decode_errors_name_event_and_field() {
        let cases = [
            (
                "new_session",
                json!({}),
                r#"new_session: missing field "sessionId""#,
            ),
            (
                "new_session",
                json!({"sessionId": 5}),
                r#"new_session: field "sessionId": invalid type: integer `5`, expected a string"#,
            ),
            (
                "new_session",
                json!({"sessionId": "s", "model": {"id": "m"}}),
                r#"new_session: missing field "model.provider""#,
            ),
            (
                "terminal_resize",
                json!({"terminalId": "t", "cols": -1, "rows": 2}),
                r#"terminal_resize: field "cols": invalid value: integer `-1`, expected u16"#,
            ),
            (
                "read_file",
                json!({"cwd": "/", "path": "x", "encoding": "latin1"}),
                r#"read_file: field "encoding": unknown variant `latin1`, expected `utf8` or `base64`"#,
            ),
            (
                "ping",
                json!("hello"),
                "ping: payload must be a JSON object, got a string",
            ),
            (
                "kill_session",
                json!([1]),
                "kill_session: payload must be a JSON object, got an array",
            ),
            (
                "no_such_event",
                json!({}),
                r#"unknown event "no_such_event""#,
            ),
        ];
        for (name, payload, expected) in cases {
            let err = ServerEvent::decode(name, payload).unwrap_err();
            assert_eq!(err.to_string(), expected);
        }
        let err = RunnerEvent::decode(
            "skills_list",
            json!({"skills": [{"name": "a", "description": "", "filePath": "/x"}, {"name": 1}]}),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("skills[1].name"));
    }

    #[test]
    fn null_payload_counts_as_empty_object() {
        assert_eq!(
            ServerEvent::decode("ping", serde_json::Value::Null),
            Ok(ServerEvent::Ping(Ping {}))
        );
        let err = ServerEvent::decode("kill_session", serde_json::Value::Null).unwrap_err();
        assert_eq!(err.field(), Some("sessionId"));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let ev = ServerEvent::decode(
            "kill_session",
            json!({"sessionId": "s1", "reason": "user", "nested": {"x": [1]}}),
        )
        .unwrap();
        assert_eq!(
            ev,
            ServerEvent::KillSession(KillSession {
                session_id: "s1".into()
            })
        );
        assert_eq!(ev.payload(), json!({"sessionId": "s1"}));
    }

    #[test]
    fn optional_fields_are_omitted_not_null() {
        let ev = RunnerEvent::from(SkillResult::failure(None, "Skill not found"));
        assert_eq!(
            ev.payload(),
            json!({"ok": false, "message": "Skill not found"})
        );
    }

    #[test]
    fn file_result_shapes() {
        let cases = [
            json!({"requestId": "r", "ok": false, "message": "Path outside allowed roots"}),
            json!({"requestId": "r", "ok": true, "files": [{"name": "a", "path": "/a", "isDirectory": true, "isSymlink": false}]}),
            json!({"ok": true, "content": "aGk=", "encoding": "base64", "size": 2, "truncated": false}),
            json!({"ok": true, "branch": "main", "changes": [], "ahead": 0, "behind": 1, "diffStaged": ""}),
            json!({"ok": true, "diff": "--- a\n+++ b\n"}),
        ];
        for payload in cases {
            let ev = RunnerEvent::decode("file_result", payload.clone()).unwrap();
            assert_eq!(ev.payload(), payload);
        }
        let ev = RunnerEvent::decode("file_result", json!({"message": "Missing path"})).unwrap();
        assert_eq!(
            ev,
            RunnerEvent::FileResult(FileResult::failure(None, "Missing path"))
        );
        let err =
            RunnerEvent::decode("file_result", json!({"ok": true, "content": "x"})).unwrap_err();
        assert_eq!(err.to_string(), r#"file_result: missing field "size""#);
        let err = RunnerEvent::decode("file_result", json!({"ok": true})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("file_result: none of the fields"),
            "{err}"
        );
        let err = RunnerEvent::decode("file_result", json!({"ok": "yes"})).unwrap_err();
        assert_eq!(err.field(), Some("ok"));
    }

    #[test]
    fn error_replies_carry_the_ids_they_can() {
        let cases = [
            (
                "new_session",
                json!({"sessionId": 7}),
                json!({"sessionId": "", "message": "m"}),
                "session_error",
            ),
            (
                "kill_session",
                json!({"sessionId": "s"}),
                json!({"sessionId": "s", "message": "m"}),
                "session_error",
            ),
            (
                "create_skill",
                json!({"requestId": "r1"}),
                json!({"requestId": "r1", "ok": false, "message": "m"}),
                "skill_result",
            ),
            (
                "list_skills",
                json!({"requestId": 5}),
                json!({"ok": false, "message": "m"}),
                "skill_result",
            ),
            (
                "read_file",
                json!({"requestId": "r2"}),
                json!({"requestId": "r2", "ok": false, "message": "m"}),
                "file_result",
            ),
            (
                "git_diff",
                json!({}),
                json!({"ok": false, "message": "m"}),
                "file_result",
            ),
            (
                "terminal_input",
                json!({"terminalId": "t"}),
                json!({"terminalId": "t", "message": "m"}),
                "terminal_error",
            ),
            (
                "new_terminal",
                json!("x"),
                json!({"terminalId": "", "message": "m"}),
                "terminal_error",
            ),
        ];
        for (name, raw, expected, reply) in cases {
            let ev = ServerEvent::error_reply(name, &raw, "m").unwrap();
            assert_eq!((ev.name(), ev.payload()), (reply, expected), "for {name}");
        }
        for name in [
            "ping",
            "list_sessions",
            "restart",
            "error",
            "list_terminals",
            "get_usage",
            "bogus",
        ] {
            assert_eq!(
                ServerEvent::error_reply(name, &json!({}), "m"),
                None,
                "for {name}"
            );
        }
    }

    #[test]
    fn secrets_do_not_leak_into_debug() {
        let auth = HandshakeAuth {
            api_key: Secret::new("key-123"),
            runner_id: "id".into(),
            runner_secret: Secret::new("abcdef"),
        };
        let text = format!("{auth:?}");
        assert!(
            !text.contains("key-123") && !text.contains("abcdef"),
            "{text}"
        );
        let reg = RegisterRunner {
            runner_secret: Some(Secret::new("abcdef")),
            ..Default::default()
        };
        assert!(!format!("{reg:?}").contains("abcdef"));
        assert_eq!(
            serde_json::to_value(&auth).unwrap(),
            json!({"apiKey": "key-123", "runnerId": "id", "runnerSecret": "abcdef"})
        );
    }

    #[test]
    fn directions() {
        assert_eq!(direction_of("ping"), Some(Direction::ServerToRunner));
        assert_eq!(direction_of("pong"), Some(Direction::RunnerToServer));
        assert_eq!(direction_of("connect"), None);
    }
}
