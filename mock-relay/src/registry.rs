//! The registry: which runners registered, with which secret, on which
//! socket, and what the relay last heard from them.

use std::collections::{BTreeMap, HashMap};

use runner_protocol::{RegisterRunner, RunnerHeartbeat, RunnerSkill, Secret, UsageCache};
use serde::Serialize;
use socketioxide::socket::Sid;

use crate::terminals::{TerminalBuffer, TerminalOutput};

/// What the relay knows about one runner. Entries stay after a disconnect
/// (with `connected: false`), as the real relay tells "unknown runner" (404)
/// from "not connected" (502).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerInfo {
    /// The runner's id.
    pub runner_id: String,
    /// Display name from `register_runner`, when given.
    pub name: Option<String>,
    /// Workspace roots from `register_runner` (empty: unscoped).
    pub roots: Vec<String>,
    /// Skills from `register_runner`, updated by every `skills_list`.
    pub skills: Vec<RunnerSkill>,
    /// Version from `register_runner` (extension), when given.
    pub version: Option<String>,
    /// Platform from `register_runner` (extension), when given.
    pub platform: Option<String>,
    /// The Socket.IO id of the runner's current socket.
    pub socket_id: String,
    /// Whether that socket is connected.
    pub connected: bool,
    /// When the current socket registered, in µs since the relay started.
    pub connected_at_us: u64,
    /// When the current socket registered, in ms since the Unix epoch.
    pub connected_at_ms: u64,
    /// Session ids the relay knows to be running (from `session_ready`,
    /// `session_killed`, `session_exited`, `sessions_list`, heartbeats), sorted.
    pub sessions: Vec<String>,
    /// `sessions.len()`, as the real relay's runner list shows it.
    pub session_count: usize,
    /// The last `runner_heartbeat` payload.
    pub last_heartbeat: Option<RunnerHeartbeat>,
    /// The last `usage_data` payload's data.
    pub last_usage: Option<UsageCache>,
}

impl RunnerInfo {
    pub(crate) fn add_session(&mut self, id: &str) {
        if let Err(at) = self.sessions.binary_search_by(|s| s.as_str().cmp(id)) {
            self.sessions.insert(at, id.to_owned());
        }
        self.session_count = self.sessions.len();
    }

    pub(crate) fn remove_session(&mut self, id: &str) {
        self.sessions.retain(|s| s != id);
        self.session_count = self.sessions.len();
    }

    pub(crate) fn set_sessions(&mut self, mut ids: Vec<String>) {
        ids.sort();
        ids.dedup();
        self.session_count = ids.len();
        self.sessions = ids;
    }
}

/// What the handshake said about a socket.
#[derive(Debug, Clone)]
pub(crate) struct SocketMeta {
    /// The `runnerId` of the handshake, replaced by the registered id.
    pub runner_id: String,
    /// The `runnerSecret` of the handshake.
    pub secret: Secret,
}

#[derive(Debug)]
struct Entry {
    info: RunnerInfo,
    sid: Sid,
    order: u64,
    /// Terminal output by terminal id.
    terminals: HashMap<String, TerminalBuffer>,
}

/// The outcome of a `register_runner`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Registration {
    /// Registered (first time, or again with the same secret); the socket it
    /// replaced, if another one was current.
    Accepted { replaced: Option<Sid> },
    /// The id is bound to another secret.
    SecretMismatch,
}

/// All runners and sockets. Lives behind one mutex in the relay.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    runners: BTreeMap<String, Entry>,
    secrets: HashMap<String, Secret>,
    sockets: HashMap<Sid, SocketMeta>,
    order: u64,
    terminal_cap: usize,
}

impl Registry {
    /// An empty registry keeping up to `terminal_cap` bytes per terminal.
    pub(crate) fn new(terminal_cap: usize) -> Self {
        Registry {
            terminal_cap,
            ..Registry::default()
        }
    }

    pub(crate) fn add_socket(&mut self, sid: Sid, meta: SocketMeta) {
        self.sockets.insert(sid, meta);
    }

    pub(crate) fn socket(&self, sid: Sid) -> Option<&SocketMeta> {
        self.sockets.get(&sid)
    }

    /// Binds `runner_id` to `secret` on first sight, refuses another secret,
    /// and makes `sid` the runner's socket.
    pub(crate) fn register(
        &mut self,
        sid: Sid,
        runner_id: &str,
        secret: &Secret,
        payload: &RegisterRunner,
        now_us: u64,
        now_ms: u64,
    ) -> Registration {
        match self.secrets.get(runner_id) {
            Some(bound) if bound != secret => return Registration::SecretMismatch,
            Some(_) => {}
            None => {
                self.secrets.insert(runner_id.to_owned(), secret.clone());
            }
        }
        if let Some(meta) = self.sockets.get_mut(&sid) {
            meta.runner_id = runner_id.to_owned();
        }
        self.order += 1;
        let previous = self.runners.remove(runner_id);
        let replaced = previous
            .as_ref()
            .filter(|p| p.sid != sid && p.info.connected)
            .map(|p| p.sid);
        let info = RunnerInfo {
            runner_id: runner_id.to_owned(),
            name: payload.name.clone(),
            roots: payload.roots.clone().unwrap_or_default(),
            skills: payload.skills.clone().unwrap_or_default(),
            version: payload.version.clone(),
            platform: payload.platform.clone(),
            socket_id: sid.to_string(),
            connected: true,
            connected_at_us: now_us,
            connected_at_ms: now_ms,
            sessions: previous
                .as_ref()
                .map(|p| p.info.sessions.clone())
                .unwrap_or_default(),
            session_count: 0,
            last_heartbeat: previous
                .as_ref()
                .and_then(|p| p.info.last_heartbeat.clone()),
            last_usage: previous.as_ref().and_then(|p| p.info.last_usage.clone()),
        };
        let mut entry = Entry {
            info,
            sid,
            order: self.order,
            terminals: previous.map(|p| p.terminals).unwrap_or_default(),
        };
        entry.info.session_count = entry.info.sessions.len();
        self.runners.insert(runner_id.to_owned(), entry);
        Registration::Accepted { replaced }
    }

    /// Forgets a socket. Returns the runner whose *current* socket it was
    /// (that runner is now marked disconnected).
    pub(crate) fn socket_closed(&mut self, sid: Sid) -> Option<String> {
        let meta = self.sockets.remove(&sid)?;
        let entry = self.runners.get_mut(&meta.runner_id)?;
        if entry.sid == sid {
            entry.info.connected = false;
            Some(meta.runner_id)
        } else {
            None
        }
    }

    /// The runner's current socket, or why there is none.
    pub(crate) fn current_socket(&self, runner_id: &str) -> Result<Sid, crate::RelayError> {
        match self.runners.get(runner_id) {
            None => Err(crate::RelayError::UnknownRunner(runner_id.to_owned())),
            Some(e) if !e.info.connected => {
                Err(crate::RelayError::NotConnected(runner_id.to_owned()))
            }
            Some(e) => Ok(e.sid),
        }
    }

    /// The runner registered on this socket, if it is still its current one.
    pub(crate) fn runner_of_current(&mut self, sid: Sid) -> Option<&mut RunnerInfo> {
        let id = &self.sockets.get(&sid)?.runner_id;
        let entry = self.runners.get_mut(id)?;
        (entry.sid == sid).then_some(&mut entry.info)
    }

    /// The terminal buffer `terminal_id` of the runner current on `sid`,
    /// created when missing.
    pub(crate) fn terminal_of_current(
        &mut self,
        sid: Sid,
        terminal_id: &str,
    ) -> Option<&mut TerminalBuffer> {
        let id = &self.sockets.get(&sid)?.runner_id;
        let entry = self.runners.get_mut(id)?;
        if entry.sid != sid {
            return None;
        }
        Some(entry.terminals.entry(terminal_id.to_owned()).or_default())
    }

    /// Appends output to a terminal of the runner current on `sid`.
    pub(crate) fn terminal_data(&mut self, sid: Sid, terminal_id: &str, data: &[u8]) {
        let cap = self.terminal_cap;
        if let Some(t) = self.terminal_of_current(sid, terminal_id) {
            t.push(data, cap);
        }
    }

    /// A terminal's output, or why there is none (unknown runner: `Err`,
    /// unknown terminal: `Ok(None)`).
    pub(crate) fn terminal_output(
        &self,
        runner_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalOutput>, crate::RelayError> {
        let entry = self
            .runners
            .get(runner_id)
            .ok_or_else(|| crate::RelayError::UnknownRunner(runner_id.to_owned()))?;
        Ok(entry
            .terminals
            .get(terminal_id)
            .map(|t| t.snapshot(terminal_id)))
    }

    pub(crate) fn get(&self, runner_id: &str) -> Option<RunnerInfo> {
        self.runners.get(runner_id).map(|e| e.info.clone())
    }

    /// All runners, sorted by id.
    pub(crate) fn all(&self) -> Vec<RunnerInfo> {
        self.runners.values().map(|e| e.info.clone()).collect()
    }

    /// The connected runner that registered first.
    pub(crate) fn first_connected(&self) -> Option<RunnerInfo> {
        self.runners
            .values()
            .filter(|e| e.info.connected)
            .min_by_key(|e| e.order)
            .map(|e| e.info.clone())
    }

    /// Forgets runners and secret bindings (a relay restart without state).
    pub(crate) fn clear_runners(&mut self) {
        self.runners.clear();
        self.secrets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> Sid {
        format!("AAAAAAAAAAAAAAA{}", char::from(b'a' + n))
            .parse()
            .unwrap()
    }

    fn reg(r: &mut Registry, s: Sid, id: &str, secret: &str) -> Registration {
        r.add_socket(
            s,
            SocketMeta {
                runner_id: id.into(),
                secret: secret.into(),
            },
        );
        r.register(s, id, &secret.into(), &RegisterRunner::default(), 1, 2)
    }

    #[test]
    fn first_sight_binds_same_secret_replaces_other_secret_is_refused() {
        let mut r = Registry::default();
        assert_eq!(
            reg(&mut r, sid(1), "run", "s1"),
            Registration::Accepted { replaced: None }
        );
        assert_eq!(
            reg(&mut r, sid(2), "run", "s2"),
            Registration::SecretMismatch
        );
        assert_eq!(r.current_socket("run"), Ok(sid(1)));
        assert_eq!(
            reg(&mut r, sid(3), "run", "s1"),
            Registration::Accepted {
                replaced: Some(sid(1))
            }
        );
        assert_eq!(r.current_socket("run"), Ok(sid(3)));
        // The replaced socket closing does not disconnect the runner.
        assert_eq!(r.socket_closed(sid(1)), None);
        assert!(r.get("run").unwrap().connected);
        assert_eq!(r.socket_closed(sid(3)), Some("run".into()));
        assert_eq!(
            r.current_socket("run"),
            Err(crate::RelayError::NotConnected("run".into()))
        );
        assert_eq!(
            r.current_socket("nope"),
            Err(crate::RelayError::UnknownRunner("nope".into()))
        );
    }

    #[test]
    fn sessions_stay_sorted_and_counted() {
        let mut r = Registry::default();
        reg(&mut r, sid(1), "run", "s");
        let info = r.runner_of_current(sid(1)).unwrap();
        info.add_session("b");
        info.add_session("a");
        info.add_session("b");
        assert_eq!(info.sessions, ["a", "b"]);
        assert_eq!(info.session_count, 2);
        info.remove_session("a");
        assert_eq!(info.session_count, 1);
        info.set_sessions(vec!["z".into(), "y".into(), "z".into()]);
        assert_eq!(info.sessions, ["y", "z"]);
    }
}
