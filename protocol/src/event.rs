//! The two event enums: [`ServerEvent`] (relay → runner) and [`RunnerEvent`]
//! (runner → relay), one variant per event, generated from one table each so
//! that a variant, its name and its payload type are written down once.

use serde_json::Value;

use crate::control::*;
use crate::error::{DecodeError, decode_payload};
use crate::files::*;
use crate::names;
use crate::registration::*;
use crate::session::*;
use crate::skills::*;
use crate::terminal::*;
use crate::usage::*;

/// Which way an event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Relay → runner (`S→R`).
    ServerToRunner,
    /// Runner → relay (`R→S`).
    RunnerToServer,
}

macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        $enum:ident, $direction:expr;
        $( $(#[$vmeta:meta])* $variant:ident($payload:ty) = $name:path ),+ $(,)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $enum {
            $( $(#[$vmeta])* $variant($payload), )+
        }

        impl $enum {
            /// Every event name of this direction, in declaration order.
            pub const NAMES: &'static [&'static str] = &[ $( $name ),+ ];

            /// The direction of every event of this enum.
            pub const DIRECTION: Direction = $direction;

            /// The event's wire name.
            pub fn name(&self) -> &'static str {
                match self { $( $enum::$variant(_) => $name, )+ }
            }

            /// Whether `name` is an event of this direction.
            pub fn is_known(name: &str) -> bool {
                Self::NAMES.contains(&name)
            }

            /// Decodes an event from its wire name and JSON payload. Unknown
            /// fields are ignored; a missing or mistyped field is an error
            /// naming the event and the field.
            pub fn decode(name: &str, payload: Value) -> Result<Self, DecodeError> {
                match name {
                    $( $name => Ok($enum::$variant(decode_event::<$payload>($name, payload)?)), )+
                    other => Err(DecodeError::UnknownEvent { name: other.to_owned() }),
                }
            }

            /// The event's JSON payload, as sent on the wire.
            pub fn payload(&self) -> Value {
                match self {
                    $( $enum::$variant(p) => to_json(p), )+
                }
            }

            /// The JSON Schema of every payload of this direction, by event name.
            pub fn schemas() -> Vec<(&'static str, Value)> {
                vec![ $( ($name, schema_of::<$payload>()), )+ ]
            }

            #[cfg(test)]
            pub(crate) fn arbitrary() -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::prelude::*;
                proptest::strategy::Union::new(vec![
                    $( any::<$payload>().prop_map($enum::$variant).boxed(), )+
                ]).boxed()
            }
        }

        $(
            impl From<$payload> for $enum {
                fn from(payload: $payload) -> Self { $enum::$variant(payload) }
            }
        )+
    };
}

/// Decodes one payload type; `file_result` has a shape chosen by its keys.
fn decode_event<T: DecodeEvent>(name: &'static str, payload: Value) -> Result<T, DecodeError> {
    T::decode_event(name, payload)
}

/// How a payload type decodes: by serde, except where a type says otherwise.
trait DecodeEvent: Sized {
    fn decode_event(name: &'static str, payload: Value) -> Result<Self, DecodeError>;
}

macro_rules! decode_by_serde {
    ($($ty:ty),+ $(,)?) => {
        $( impl DecodeEvent for $ty {
            fn decode_event(name: &'static str, payload: Value) -> Result<Self, DecodeError> {
                decode_payload(name, payload)
            }
        } )+
    };
}

decode_by_serde!(
    RegisterRunner,
    RunnerRegistered,
    NewSession,
    SessionReady,
    SessionError,
    KillSession,
    SessionKilled,
    ListSessions,
    SessionsList,
    RunnerSessionEvent,
    SessionExited,
    Ping,
    Pong,
    Restart,
    RelayError,
    RunnerHeartbeat,
    ListSkills,
    CreateSkill,
    UpdateSkill,
    DeleteSkill,
    GetSkill,
    SkillsList,
    SkillResult,
    ListFiles,
    ReadFile,
    GitStatus,
    GitDiff,
    NewTerminal,
    TerminalReady,
    TerminalInput,
    TerminalData,
    TerminalResize,
    KillTerminal,
    TerminalExit,
    TerminalError,
    ListTerminals,
    TerminalsList,
    GetUsage,
    UsageData,
);

impl DecodeEvent for FileResult {
    fn decode_event(_: &'static str, payload: Value) -> Result<Self, DecodeError> {
        FileResult::decode(payload)
    }
}

fn to_json<T: serde::Serialize>(payload: &T) -> Value {
    // Serializing these plain data types cannot fail: no maps with non-string
    // keys, no failing custom serializers.
    serde_json::to_value(payload).expect("protocol payloads always serialize")
}

pub(crate) fn schema_of<T: schemars::JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schemas always serialize")
}

event_enum! {
    /// An event the relay sends to a runner (`S→R`).
    ServerEvent, Direction::ServerToRunner;
    /// `runner_registered`
    RunnerRegistered(RunnerRegistered) = names::RUNNER_REGISTERED,
    /// `new_session`
    NewSession(NewSession) = names::NEW_SESSION,
    /// `kill_session`
    KillSession(KillSession) = names::KILL_SESSION,
    /// `list_sessions`
    ListSessions(ListSessions) = names::LIST_SESSIONS,
    /// `ping`
    Ping(Ping) = names::PING,
    /// `restart`
    Restart(Restart) = names::RESTART,
    /// `error`
    Error(RelayError) = names::ERROR,
    /// `list_skills`
    ListSkills(ListSkills) = names::LIST_SKILLS,
    /// `create_skill`
    CreateSkill(CreateSkill) = names::CREATE_SKILL,
    /// `update_skill`
    UpdateSkill(UpdateSkill) = names::UPDATE_SKILL,
    /// `delete_skill`
    DeleteSkill(DeleteSkill) = names::DELETE_SKILL,
    /// `get_skill`
    GetSkill(GetSkill) = names::GET_SKILL,
    /// `list_files`
    ListFiles(ListFiles) = names::LIST_FILES,
    /// `read_file`
    ReadFile(ReadFile) = names::READ_FILE,
    /// `git_status`
    GitStatus(GitStatus) = names::GIT_STATUS,
    /// `git_diff`
    GitDiff(GitDiff) = names::GIT_DIFF,
    /// `new_terminal`
    NewTerminal(NewTerminal) = names::NEW_TERMINAL,
    /// `terminal_input`
    TerminalInput(TerminalInput) = names::TERMINAL_INPUT,
    /// `terminal_resize`
    TerminalResize(TerminalResize) = names::TERMINAL_RESIZE,
    /// `kill_terminal`
    KillTerminal(KillTerminal) = names::KILL_TERMINAL,
    /// `list_terminals`
    ListTerminals(ListTerminals) = names::LIST_TERMINALS,
    /// `get_usage` (extension)
    GetUsage(GetUsage) = names::GET_USAGE,
}

event_enum! {
    /// An event a runner sends to the relay (`R→S`).
    RunnerEvent, Direction::RunnerToServer;
    /// `register_runner`
    RegisterRunner(RegisterRunner) = names::REGISTER_RUNNER,
    /// `session_ready`
    SessionReady(SessionReady) = names::SESSION_READY,
    /// `session_error`
    SessionError(SessionError) = names::SESSION_ERROR,
    /// `session_killed`
    SessionKilled(SessionKilled) = names::SESSION_KILLED,
    /// `sessions_list`
    SessionsList(SessionsList) = names::SESSIONS_LIST,
    /// `runner_session_event`
    RunnerSessionEvent(RunnerSessionEvent) = names::RUNNER_SESSION_EVENT,
    /// `session_exited` (extension)
    SessionExited(SessionExited) = names::SESSION_EXITED,
    /// `pong`
    Pong(Pong) = names::PONG,
    /// `runner_heartbeat` (extension)
    RunnerHeartbeat(RunnerHeartbeat) = names::RUNNER_HEARTBEAT,
    /// `skills_list`
    SkillsList(SkillsList) = names::SKILLS_LIST,
    /// `skill_result`
    SkillResult(SkillResult) = names::SKILL_RESULT,
    /// `file_result`
    FileResult(FileResult) = names::FILE_RESULT,
    /// `terminal_ready`
    TerminalReady(TerminalReady) = names::TERMINAL_READY,
    /// `terminal_data`
    TerminalData(TerminalData) = names::TERMINAL_DATA,
    /// `terminal_exit`
    TerminalExit(TerminalExit) = names::TERMINAL_EXIT,
    /// `terminal_error`
    TerminalError(TerminalError) = names::TERMINAL_ERROR,
    /// `terminals_list`
    TerminalsList(TerminalsList) = names::TERMINALS_LIST,
    /// `usage_data` (extension)
    UsageData(UsageData) = names::USAGE_DATA,
}

impl ServerEvent {
    /// The correlation id of a command, read leniently from a raw payload
    /// (only when it is a string), so that a reply to a payload that does
    /// not decode can still carry it.
    pub fn raw_request_id(payload: &Value) -> Option<String> {
        raw_string(payload, "requestId")
    }

    /// The reply a runner sends when the payload of command `name` cannot be
    /// used: `session_error` for session commands, `skill_result {ok: false}`
    /// for skill commands, `file_result {ok: false}` for file and git
    /// commands, `terminal_error` for terminal commands. The reply carries the
    /// command's `requestId`, `sessionId` or `terminalId` where the raw
    /// payload has one as a string. `None` for commands the protocol gives no
    /// error reply (`ping`, `list_sessions`, `restart`, `error`,
    /// `list_terminals`, `runner_registered`, `get_usage`) and unknown names.
    pub fn error_reply(
        name: &str,
        payload: &Value,
        message: impl Into<String>,
    ) -> Option<RunnerEvent> {
        let message = message.into();
        let request_id = Self::raw_request_id(payload);
        let session_id = || raw_string(payload, "sessionId").unwrap_or_default();
        let terminal_id = || raw_string(payload, "terminalId").unwrap_or_default();
        Some(match name {
            names::NEW_SESSION | names::KILL_SESSION => RunnerEvent::SessionError(SessionError {
                session_id: session_id(),
                message,
            }),
            names::LIST_SKILLS
            | names::CREATE_SKILL
            | names::UPDATE_SKILL
            | names::DELETE_SKILL
            | names::GET_SKILL => {
                RunnerEvent::SkillResult(SkillResult::failure(request_id, message))
            }
            names::LIST_FILES | names::READ_FILE | names::GIT_STATUS | names::GIT_DIFF => {
                RunnerEvent::FileResult(FileResult::failure(request_id, message))
            }
            names::NEW_TERMINAL
            | names::TERMINAL_INPUT
            | names::TERMINAL_RESIZE
            | names::KILL_TERMINAL => RunnerEvent::TerminalError(TerminalError {
                terminal_id: terminal_id(),
                message,
            }),
            _ => return None,
        })
    }
}

fn raw_string(payload: &Value, key: &str) -> Option<String> {
    payload.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl RunnerEvent {
    /// The `requestId` the event carries, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            RunnerEvent::SkillsList(p) => p.request_id.as_deref(),
            RunnerEvent::SkillResult(p) => p.request_id.as_deref(),
            RunnerEvent::FileResult(p) => p.request_id.as_deref(),
            RunnerEvent::UsageData(p) => p.request_id.as_deref(),
            _ => None,
        }
    }
}

/// The direction of an event name, or `None` for a name outside the protocol.
pub fn direction_of(name: &str) -> Option<Direction> {
    if ServerEvent::is_known(name) {
        Some(Direction::ServerToRunner)
    } else if RunnerEvent::is_known(name) {
        Some(Direction::RunnerToServer)
    } else {
        None
    }
}
