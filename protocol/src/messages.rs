//! The error messages of the original daemon, written once so that runners,
//! relays and conformance scenarios agree on them to the letter.

/// `new_session` without a (non-empty) `sessionId`.
pub const MISSING_SESSION_ID: &str = "Missing sessionId";
/// `kill_session` for a session the runner does not have.
pub const SESSION_NOT_FOUND: &str = "Session not found";
/// `new_session` for a session id that is already running.
pub fn session_already_running(session_id: &str) -> String {
    format!("Session already running: {session_id}")
}
/// `new_session` whose `cwd` lies outside the workspace roots.
pub fn cwd_outside_roots(cwd: &str) -> String {
    format!("Requested cwd is outside allowed workspace root(s): {cwd}")
}

/// A skill command without a name.
pub const MISSING_SKILL_NAME: &str = "Missing skill name";
/// A skill command whose name fails validation.
pub const INVALID_SKILL_NAME: &str =
    "Invalid skill name: must be lowercase letters, numbers, and hyphens only";
/// A skill command naming a skill that does not exist.
pub const SKILL_NOT_FOUND: &str = "Skill not found";

/// A file command without `path`.
pub const MISSING_PATH: &str = "Missing path";
/// A git command without `cwd`.
pub const MISSING_CWD: &str = "Missing cwd";
/// `git_diff` without `cwd` or `path`.
pub const MISSING_CWD_OR_PATH: &str = "Missing cwd or path";
/// A file or git command whose path lies outside the workspace roots.
pub const PATH_OUTSIDE_ROOTS: &str = "Path outside allowed roots";

/// A terminal command without `terminalId`.
pub const MISSING_TERMINAL_ID: &str = "Missing terminalId";
/// `new_terminal` for an id that is already open.
pub const TERMINAL_ALREADY_EXISTS: &str = "Terminal already exists";
/// A terminal command naming a terminal that is not open.
pub const TERMINAL_NOT_FOUND: &str = "Terminal not found";
/// `new_terminal` whose `cwd` lies outside the workspace roots.
pub fn terminal_cwd_outside_roots(cwd: &str) -> String {
    format!("cwd outside allowed roots: {cwd}")
}

/// The relay's refusal of a handshake without a valid API key.
pub const UNAUTHORIZED: &str = "unauthorized";
/// The relay's refusal of a registration whose secret does not match.
pub fn secret_mismatch(runner_id: &str) -> String {
    format!("Runner authentication failed: secret mismatch for runner {runner_id}")
}

/// Exit code of a daemon asked to `restart` (a supervisor restarts it).
pub const EXIT_RESTART: i32 = 42;
/// Exit code of a worker that asks to be spawned again.
pub const WORKER_EXIT_RESTART: i32 = 43;
