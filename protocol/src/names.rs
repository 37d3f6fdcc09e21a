//! Event names on the `/runner` namespace, each defined exactly once.
//!
//! Everything else in the workspace (the event enums, the relay, the runner,
//! the conformance scenarios) refers to these constants.

// ---- registration ----
/// R→S: the runner announces itself after every (re)connect.
pub const REGISTER_RUNNER: &str = "register_runner";
/// S→R: the relay confirms a registration.
pub const RUNNER_REGISTERED: &str = "runner_registered";

// ---- sessions ----
/// S→R: spawn a worker.
pub const NEW_SESSION: &str = "new_session";
/// R→S: the worker was spawned.
pub const SESSION_READY: &str = "session_ready";
/// R→S: a spawn was refused or failed, or a kill named an unknown session.
pub const SESSION_ERROR: &str = "session_error";
/// S→R: stop a worker.
pub const KILL_SESSION: &str = "kill_session";
/// R→S: the worker was stopped.
pub const SESSION_KILLED: &str = "session_killed";
/// S→R: ask for the running sessions.
pub const LIST_SESSIONS: &str = "list_sessions";
/// R→S: the running sessions.
pub const SESSIONS_LIST: &str = "sessions_list";
/// R→S: a worker's event, forwarded.
pub const RUNNER_SESSION_EVENT: &str = "runner_session_event";
/// R→S (extension): a worker ended on its own.
pub const SESSION_EXITED: &str = "session_exited";

// ---- daemon control ----
/// S→R: health check.
pub const PING: &str = "ping";
/// R→S: answer to `ping`.
pub const PONG: &str = "pong";
/// S→R: the daemon shuts down and exits with code 42.
pub const RESTART: &str = "restart";
/// S→R: a relay-side error (e.g. registration refused).
pub const ERROR: &str = "error";
/// R→S (extension): periodic liveness and state.
pub const RUNNER_HEARTBEAT: &str = "runner_heartbeat";

// ---- skills ----
/// S→R: ask for the skills.
pub const LIST_SKILLS: &str = "list_skills";
/// S→R: create a skill.
pub const CREATE_SKILL: &str = "create_skill";
/// S→R: update a skill.
pub const UPDATE_SKILL: &str = "update_skill";
/// S→R: delete a skill.
pub const DELETE_SKILL: &str = "delete_skill";
/// S→R: read one skill.
pub const GET_SKILL: &str = "get_skill";
/// R→S: the skills, on request or unsolicited after a change.
pub const SKILLS_LIST: &str = "skills_list";
/// R→S: the result of a skill command.
pub const SKILL_RESULT: &str = "skill_result";

// ---- files and git ----
/// S→R: list a directory.
pub const LIST_FILES: &str = "list_files";
/// S→R: read a file.
pub const READ_FILE: &str = "read_file";
/// S→R: `git status` of a working tree.
pub const GIT_STATUS: &str = "git_status";
/// S→R: `git diff` of one path.
pub const GIT_DIFF: &str = "git_diff";
/// R→S: the result of a file or git command.
pub const FILE_RESULT: &str = "file_result";

// ---- terminals ----
/// S→R: open a terminal.
pub const NEW_TERMINAL: &str = "new_terminal";
/// R→S: the terminal is open.
pub const TERMINAL_READY: &str = "terminal_ready";
/// S→R: bytes typed into a terminal (base64).
pub const TERMINAL_INPUT: &str = "terminal_input";
/// R→S: bytes a terminal printed (base64).
pub const TERMINAL_DATA: &str = "terminal_data";
/// S→R: change a terminal's size.
pub const TERMINAL_RESIZE: &str = "terminal_resize";
/// S→R: close a terminal.
pub const KILL_TERMINAL: &str = "kill_terminal";
/// R→S: a terminal's shell ended.
pub const TERMINAL_EXIT: &str = "terminal_exit";
/// R→S: a terminal command failed.
pub const TERMINAL_ERROR: &str = "terminal_error";
/// S→R: ask for the open terminals.
pub const LIST_TERMINALS: &str = "list_terminals";
/// R→S: the open terminals.
pub const TERMINALS_LIST: &str = "terminals_list";

// ---- usage (extension) ----
/// S→R (extension): ask for provider usage data.
pub const GET_USAGE: &str = "get_usage";
/// R→S (extension): provider usage data.
pub const USAGE_DATA: &str = "usage_data";

/// The Socket.IO namespace of this protocol.
pub const NAMESPACE: &str = "/runner";
