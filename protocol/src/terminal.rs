//! Terminals: shells in pseudo-terminals. Bytes travel base64-encoded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default terminal width.
pub const DEFAULT_COLS: u16 = 80;
/// Default terminal height.
pub const DEFAULT_ROWS: u16 = 24;

/// `new_terminal` (S→R): open a shell in a pseudo-terminal.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct NewTerminal {
    /// The terminal's id, chosen by the relay.
    pub terminal_id: String,
    /// The shell's working directory; must lie inside the roots.
    pub cwd: Option<String>,
    /// The shell to run (default `$SHELL`, else `/bin/sh`).
    pub shell: Option<String>,
    /// Width in columns (default 80).
    pub cols: Option<u16>,
    /// Height in rows (default 24).
    pub rows: Option<u16>,
}

/// `terminal_ready` (R→S): the terminal is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalReady {
    /// The terminal's id.
    pub terminal_id: String,
}

/// `terminal_input` (S→R): bytes typed into the terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalInput {
    /// The terminal's id.
    pub terminal_id: String,
    /// The bytes, base64.
    pub data: String,
}

/// `terminal_data` (R→S): bytes the terminal printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalData {
    /// The terminal's id.
    pub terminal_id: String,
    /// The bytes, base64.
    pub data: String,
}

/// `terminal_resize` (S→R): change the terminal's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalResize {
    /// The terminal's id.
    pub terminal_id: String,
    /// Width in columns.
    pub cols: u16,
    /// Height in rows.
    pub rows: u16,
}

/// `kill_terminal` (S→R): close the terminal, killing its shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct KillTerminal {
    /// The terminal's id.
    pub terminal_id: String,
}

/// `terminal_exit` (R→S): the terminal's shell ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalExit {
    /// The terminal's id.
    pub terminal_id: String,
    /// The shell's exit code; `-1` when killed.
    pub exit_code: i32,
}

/// `terminal_error` (R→S): a terminal command failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalError {
    /// The terminal's id, or `""` when the command carried none.
    pub terminal_id: String,
    /// What went wrong.
    pub message: String,
}

/// `list_terminals` (S→R): ask for the open terminals. No fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListTerminals {}

/// `terminals_list` (R→S): the open terminals' ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct TerminalsList {
    /// Terminal ids.
    pub terminals: Vec<String>,
}
