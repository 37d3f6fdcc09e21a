//! From an incoming event to the handler that answers it.
//!
//! The connection hands every event it receives to [`Dispatcher::dispatch`]
//! and returns at once; nothing here blocks the socket's reader. The
//! dispatcher decodes the payload with [`ServerEvent::decode`]:
//!
//! * a payload that does not decode gets the command's error reply
//!   ([`ServerEvent::error_reply`]: the decode error names the field, the
//!   reply carries the command's `requestId`/`sessionId`/`terminalId`);
//! * so does a command whose `requestId`, `sessionId` or `terminalId` is
//!   unusable (a NUL byte, a control character, too long:
//!   [`validate_ids`]), before any handler sees it;
//! * so does a command beyond the limit of commands in flight
//!   ([`Dispatcher::with_max_in_flight`]); a command without an error reply
//!   is then logged and dropped;
//! * an unknown event is logged and ignored;
//! * `runner_registered` and `error` concern the connection itself and are
//!   handed back to it ([`Routed`]);
//! * every command runs in its own task on a [`TaskTracker`], so a slow
//!   command (a big `git status`) never delays another one or the heartbeat.
//!   A handler that panics is caught: the panic is logged, the command gets
//!   its error reply, and the connection lives on.
//!
//! `new_session` and `kill_session` for the same `sessionId` run one after
//! the other in the order they arrived, so a kill sent right after a spawn
//! finds the session; likewise the commands of one `terminalId`, so typed
//! input reaches the shell in the order it was typed.
//!
//! [`CommandHandler`] is the seam between routing and the work itself:
//! [`Services`] is the runner's implementation over the concern modules;
//! tests plug in their own.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use runner_protocol::rules::validate_ids;
use runner_protocol::{DecodeError, Pong, RunnerEvent, RunnerRegistered, ServerEvent, names};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::files::FileService;
use crate::git::GitService;
use crate::outbox::Outbox;
use crate::sessions::SessionManager;
use crate::skills::SkillStore;
use crate::state::now_ms;
use crate::terminals::TerminalManager;
use crate::usage::UsageSource;
use crate::{ExitReason, ShutdownHandle};

/// Runs one decoded command and returns its reply, if the command has one
/// that is not emitted by the handler itself.
pub trait CommandHandler: Send + Sync + 'static {
    /// Handles `command`. The future runs in its own task.
    fn handle(&self, command: ServerEvent) -> BoxFuture<'static, Option<RunnerEvent>>;
}

/// The runner's handlers: one service per concern.
#[derive(Clone)]
pub struct Services {
    /// Worker processes.
    pub sessions: SessionManager,
    /// The skills directory.
    pub skills: SkillStore,
    /// Files inside the roots.
    pub files: FileService,
    /// Git inside the roots.
    pub git: GitService,
    /// Shells in pseudo-terminals.
    pub terminals: TerminalManager,
    /// The provider-usage cache.
    pub usage: UsageSource,
    /// The daemon's one shutdown path (for `restart`).
    pub control: ShutdownHandle,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("usage", &self.usage)
            .finish_non_exhaustive()
    }
}

impl CommandHandler for Services {
    fn handle(&self, command: ServerEvent) -> BoxFuture<'static, Option<RunnerEvent>> {
        let this = self.clone();
        async move {
            match command {
                ServerEvent::NewSession(req) => {
                    this.sessions.new_session(req).await;
                    None
                }
                ServerEvent::KillSession(req) => {
                    this.sessions.kill_session(req).await;
                    None
                }
                ServerEvent::ListSessions(_) => Some(this.sessions.list().into()),
                ServerEvent::Ping(_) => Some(Pong { now: now_ms() }.into()),
                ServerEvent::Restart(_) => {
                    tracing::info!("restart requested by the relay");
                    this.control.trigger(ExitReason::Restart);
                    None
                }
                ServerEvent::ListSkills(req) => Some(this.skills.list_skills(req).await.into()),
                ServerEvent::CreateSkill(req) => Some(this.skills.create(req).await.into()),
                ServerEvent::UpdateSkill(req) => Some(this.skills.update(req).await.into()),
                ServerEvent::DeleteSkill(req) => Some(this.skills.delete(req).await.into()),
                ServerEvent::GetSkill(req) => Some(this.skills.get(req).await.into()),
                ServerEvent::ListFiles(req) => Some(this.files.list_files(req).await.into()),
                ServerEvent::ReadFile(req) => Some(this.files.read_file(req).await.into()),
                ServerEvent::GitStatus(req) => Some(this.git.status(req).await.into()),
                ServerEvent::GitDiff(req) => Some(this.git.diff(req).await.into()),
                ServerEvent::GetUsage(req) => Some(this.usage.reply(req.request_id).await.into()),
                ServerEvent::ListTerminals(_) => Some(this.terminals.list().into()),
                ServerEvent::NewTerminal(req) => {
                    this.terminals.new_terminal(req).await;
                    None
                }
                ServerEvent::TerminalInput(req) => {
                    this.terminals.input(req).await;
                    None
                }
                ServerEvent::TerminalResize(req) => {
                    this.terminals.resize(req).await;
                    None
                }
                ServerEvent::KillTerminal(req) => {
                    this.terminals.kill(req).await;
                    None
                }
                // The connection handles these itself; they never get here.
                ServerEvent::RunnerRegistered(_) | ServerEvent::Error(_) => None,
            }
        }
        .boxed()
    }
}

/// What the connection has to do about an event after dispatch.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// `runner_registered`: the relay accepted the registration.
    Registered(RunnerRegistered),
    /// `error`: the relay reports an error (e.g. a refused registration).
    RelayError(String),
    /// A command was started, answered or ignored; nothing for the connection.
    Handled,
}

/// The most commands handled at once unless
/// [`Dispatcher::with_max_in_flight`] says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Routes incoming events to handler tasks.
pub struct Dispatcher {
    handler: Arc<dyn CommandHandler>,
    outbox: Outbox,
    tracker: TaskTracker,
    max_in_flight: usize,
    closed: CancellationToken,
    lanes: Arc<Mutex<HashMap<String, Lane>>>,
    next_lane_ticket: std::sync::atomic::AtomicU64,
}

/// The tail of one session's queue of commands.
struct Lane {
    ticket: u64,
    done: oneshot::Receiver<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("in_flight", &self.tracker.len())
            .field("closed", &self.closed.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher running `handler`'s futures and emitting replies into `outbox`.
    pub fn new(handler: Arc<dyn CommandHandler>, outbox: Outbox) -> Self {
        Dispatcher {
            handler,
            outbox,
            tracker: TaskTracker::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            closed: CancellationToken::new(),
            lanes: Arc::default(),
            next_lane_ticket: Default::default(),
        }
    }

    /// At most `max` commands are handled at once (at least 1); a command
    /// beyond that gets its error reply naming the limit.
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Handles one incoming event: decodes it, answers what cannot be
    /// decoded, starts the command's task, or hands a connection event back.
    /// Never blocks.
    pub fn dispatch(&self, name: &str, payload: Value) -> Routed {
        let event = match ServerEvent::decode(name, payload.clone()) {
            Ok(event) => event,
            Err(DecodeError::UnknownEvent { .. }) => {
                tracing::warn!(event = name, "unknown event from the relay; ignored");
                return Routed::Handled;
            }
            Err(err) => {
                if name == names::ERROR {
                    // A relay error without a usable message still counts.
                    tracing::warn!(error = %err, "relay error event without a message");
                    return Routed::RelayError(format!("relay error: {payload}"));
                }
                self.reject(name, &payload, &err.to_string());
                return Routed::Handled;
            }
        };
        match event {
            ServerEvent::RunnerRegistered(reg) => Routed::Registered(reg),
            ServerEvent::Error(err) => Routed::RelayError(err.message),
            command => {
                if let Err(err) = validate_ids(&payload) {
                    self.reject(name, &payload, &format!("{name}: {err}"));
                } else {
                    self.spawn(command, payload);
                }
                Routed::Handled
            }
        }
    }

    /// Answers a command that cannot be handled (its payload does not
    /// decode, arrived as binary data or holds an unusable id, or too many
    /// commands are in flight) with the command's error reply, or logs it
    /// when the command has none.
    pub fn reject(&self, name: &str, raw: &Value, message: &str) {
        // The id may be the very thing at fault: logged escaped.
        let request_id = ServerEvent::raw_request_id(raw).map(|id| id.escape_debug().to_string());
        match ServerEvent::error_reply(name, raw, message) {
            Some(reply) => {
                tracing::warn!(
                    command = name,
                    request_id = request_id.as_deref(),
                    error = message,
                    "command refused; answered with {}",
                    reply.name()
                );
                self.outbox.emit(reply);
            }
            None => {
                tracing::warn!(
                    command = name,
                    request_id = request_id.as_deref(),
                    error = message,
                    "command refused and dropped (it has no error reply)"
                );
            }
        }
    }

    fn spawn(&self, command: ServerEvent, raw: Value) {
        let name = command.name();
        let request_id = ServerEvent::raw_request_id(&raw);
        let session_id = raw
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let terminal_id = raw
            .get("terminalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if self.closed.is_cancelled() {
            tracing::info!(
                command = name,
                request_id = request_id.as_deref(),
                "runner is shutting down; command ignored"
            );
            return;
        }
        let in_flight = self.tracker.len();
        if in_flight >= self.max_in_flight {
            self.reject(
                name,
                &raw,
                &format!(
                    "{name}: too many commands in flight ({in_flight}, the limit of this runner: --max-commands-in-flight / PIZZAPI_MAX_COMMANDS_IN_FLIGHT); try again later"
                ),
            );
            return;
        }
        let span = tracing::info_span!(
            "command",
            command = name,
            request_id = request_id.as_deref(),
            session_id = session_id.as_deref()
        );
        span.in_scope(|| tracing::info!("command received"));

        let lane = match (&command, &session_id, &terminal_id) {
            (ServerEvent::NewSession(_) | ServerEvent::KillSession(_), Some(id), _) => {
                Some(self.join_lane(&format!("session:{id}")))
            }
            (
                ServerEvent::NewTerminal(_)
                | ServerEvent::TerminalInput(_)
                | ServerEvent::TerminalResize(_)
                | ServerEvent::KillTerminal(_),
                _,
                Some(id),
            ) => Some(self.join_lane(&format!("terminal:{id}"))),
            _ => None,
        };
        let handler = Arc::clone(&self.handler);
        let outbox = self.outbox.clone();
        let lanes = Arc::clone(&self.lanes);
        self.tracker.spawn(
            async move {
                let mut finished = None;
                if let Some((id, ticket, previous, done)) = lane {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    finished = Some((id, ticket, done));
                }
                let result = AssertUnwindSafe(async move { handler.handle(command).await })
                    .catch_unwind()
                    .await;
                match result {
                    Ok(Some(reply)) => outbox.emit(reply),
                    Ok(None) => {}
                    Err(panic) => {
                        let what = panic_text(panic.as_ref());
                        tracing::error!(panic = %what, "command handler panicked");
                        if let Some(reply) = ServerEvent::error_reply(
                            name,
                            &raw,
                            format!("internal error while handling {name}"),
                        ) {
                            outbox.emit(reply);
                        }
                    }
                }
                if let Some((id, ticket, done)) = finished {
                    let _ = done.send(());
                    let mut lanes = lanes.lock().unwrap_or_else(|e| e.into_inner());
                    if lanes.get(&id).is_some_and(|lane| lane.ticket == ticket) {
                        lanes.remove(&id);
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Queues a session command behind the previous one for the same id.
    #[allow(clippy::type_complexity)]
    fn join_lane(
        &self,
        id: &str,
    ) -> (
        String,
        u64,
        Option<oneshot::Receiver<()>>,
        oneshot::Sender<()>,
    ) {
        let ticket = self
            .next_lane_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (done_tx, done_rx) = oneshot::channel();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let previous = lanes
            .insert(
                id.to_owned(),
                Lane {
                    ticket,
                    done: done_rx,
                },
            )
            .map(|lane| lane.done);
        (id.to_owned(), ticket, previous, done_tx)
    }

    /// Stops starting commands; commands that arrive later are ignored.
    pub fn stop_accepting(&self) {
        self.closed.cancel();
        self.tracker.close();
    }

    /// Waits up to `grace` for the commands in flight. `false` when some
    /// were still running when the time was up.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }

    /// The number of commands in flight.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use runner_protocol::RunnerEvent;
    use serde_json::json;

    use super::*;
    use crate::outbox::OutboxReceiver;

    const WAIT: Duration = Duration::from_secs(10);

    /// Answers `ping` with a pong, panics on `list_skills`, and records the
    /// order of session commands.
    #[derive(Default)]
    struct Fake {
        order: Mutex<Vec<String>>,
        handled: AtomicUsize,
    }

    impl CommandHandler for Arc<Fake> {
        fn handle(&self, command: ServerEvent) -> BoxFuture<'static, Option<RunnerEvent>> {
            let this = Arc::clone(self);
            async move {
                this.handled.fetch_add(1, Ordering::SeqCst);
                match command {
                    ServerEvent::Ping(_) => Some(Pong { now: 1 }.into()),
                    ServerEvent::ListSkills(_) | ServerEvent::Restart(_) => {
                        panic!("handler bug")
                    }
                    ServerEvent::NewSession(req) => {
                        // A slow spawn: the kill queued behind it must wait.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        this.order
                            .lock()
                            .unwrap()
                            .push(format!("new {}", req.session_id));
                        None
                    }
                    ServerEvent::KillSession(req) => {
                        this.order
                            .lock()
                            .unwrap()
                            .push(format!("kill {}", req.session_id));
                        None
                    }
                    _ => None,
                }
            }
            .boxed()
        }
    }

    fn dispatcher() -> (Dispatcher, OutboxReceiver, Arc<Fake>) {
        let (outbox, rx) = Outbox::channel();
        let fake = Arc::new(Fake::default());
        (
            Dispatcher::new(Arc::new(Arc::clone(&fake)), outbox),
            rx,
            fake,
        )
    }

    async fn next(rx: &mut OutboxReceiver) -> RunnerEvent {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("waiting for a reply")
            .expect("outbox open")
    }

    /// A malformed payload for every command that has an error reply, the
    /// reply expected (name, and the field the message must name).
    #[tokio::test]
    async fn malformed_payloads_get_the_commands_error_reply_naming_the_field() {
        let (d, mut rx, fake) = dispatcher();
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "new_session",
                json!({"cwd": "/w"}),
                "session_error",
                "sessionId",
            ),
            (
                "new_session",
                json!({"sessionId": "s1", "cwd": 5}),
                "session_error",
                "cwd",
            ),
            (
                "kill_session",
                json!({"sessionId": 3}),
                "session_error",
                "sessionId",
            ),
            (
                "list_skills",
                json!({"requestId": 9}),
                "skill_result",
                "requestId",
            ),
            (
                "create_skill",
                json!({"requestId": "r", "name": "n"}),
                "skill_result",
                "content",
            ),
            (
                "update_skill",
                json!({"requestId": "r", "content": "c"}),
                "skill_result",
                "name",
            ),
            (
                "delete_skill",
                json!({"requestId": "r", "name": []}),
                "skill_result",
                "name",
            ),
            (
                "get_skill",
                json!({"requestId": "r"}),
                "skill_result",
                "name",
            ),
            (
                "list_files",
                json!({"requestId": "r", "cwd": "/"}),
                "file_result",
                "path",
            ),
            (
                "read_file",
                json!({"requestId": "r", "cwd": "/", "path": "x", "maxBytes": "big"}),
                "file_result",
                "maxBytes",
            ),
            (
                "git_status",
                json!({"requestId": "r", "cwd": false}),
                "file_result",
                "cwd",
            ),
            (
                "git_diff",
                json!({"requestId": "r", "cwd": "/"}),
                "file_result",
                "path",
            ),
            (
                "new_terminal",
                json!({"terminalId": "t", "cols": "wide"}),
                "terminal_error",
                "cols",
            ),
            (
                "terminal_input",
                json!({"terminalId": "t"}),
                "terminal_error",
                "data",
            ),
            (
                "terminal_resize",
                json!({"terminalId": "t", "cols": 1}),
                "terminal_error",
                "rows",
            ),
            ("kill_terminal", json!({}), "terminal_error", "terminalId"),
        ];
        for (name, payload, reply, field) in cases {
            assert_eq!(d.dispatch(name, payload.clone()), Routed::Handled);
            let ev = next(&mut rx).await;
            assert_eq!(ev.name(), reply, "reply to {name}");
            let body = ev.payload();
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("\"{field}\"")) && message.starts_with(name),
                "{name}: message {message:?} should name {field}"
            );
            match payload.get("requestId") {
                Some(Value::String(id)) => assert_eq!(body["requestId"], json!(id), "{name}"),
                _ => assert!(body.get("requestId").is_none(), "{name}: {body}"),
            }
            if reply == "skill_result" || reply == "file_result" {
                assert_eq!(body["ok"], json!(false), "{name}");
            }
            for key in ["sessionId", "terminalId"] {
                if let Some(Value::String(id)) = payload.get(key) {
                    assert_eq!(body[key], json!(id), "{name}");
                }
            }
        }
        assert_eq!(fake.handled.load(Ordering::SeqCst), 0, "no handler ran");
    }

    #[tokio::test]
    async fn commands_without_an_error_reply_and_unknown_events_are_ignored() {
        let (d, mut rx, fake) = dispatcher();
        for (name, payload) in [
            ("ping", json!("not an object")),
            ("get_usage", json!({"requestId": 1})),
            ("list_sessions", json!([])),
            ("no_such_event", json!({"requestId": "r"})),
            ("runner_registered", json!({})),
        ] {
            assert_eq!(d.dispatch(name, payload), Routed::Handled, "{name}");
        }
        // A ping after them is the first thing answered.
        d.dispatch("ping", json!({}));
        assert_eq!(next(&mut rx).await.name(), "pong");
        assert!(rx.try_recv().is_err());
        assert_eq!(fake.handled.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn connection_events_are_handed_back() {
        let (d, _rx, _) = dispatcher();
        assert_eq!(
            d.dispatch("runner_registered", json!({"runnerId": "r1"})),
            Routed::Registered(RunnerRegistered {
                runner_id: "r1".into()
            })
        );
        assert_eq!(
            d.dispatch("error", json!({"message": "nope"})),
            Routed::RelayError("nope".into())
        );
        assert!(matches!(
            d.dispatch("error", json!({"msg": 1})),
            Routed::RelayError(m) if m.contains("msg")
        ));
    }

    #[tokio::test]
    async fn a_panicking_handler_is_answered_and_the_dispatcher_lives_on() {
        let (d, mut rx, _) = dispatcher();
        d.dispatch("list_skills", json!({"requestId": "r-panic"}));
        let ev = next(&mut rx).await;
        assert_eq!(
            ev.payload(),
            json!({"requestId": "r-panic", "ok": false, "message": "internal error while handling list_skills"})
        );
        // A command without an error reply that panics is only logged.
        d.dispatch("restart", json!({}));
        d.dispatch("ping", json!({}));
        assert_eq!(next(&mut rx).await.name(), "pong");
        assert!(d.drain(WAIT).await);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn session_commands_for_one_id_keep_their_order() {
        let (d, _rx, fake) = dispatcher();
        d.dispatch("new_session", json!({"sessionId": "a"}));
        d.dispatch("kill_session", json!({"sessionId": "a"}));
        d.dispatch("kill_session", json!({"sessionId": "b"}));
        assert!(d.drain(WAIT).await);
        let order = fake.order.lock().unwrap().clone();
        // `b` does not wait for `a`; `a`'s kill waits for `a`'s spawn.
        assert_eq!(order, vec!["kill b", "new a", "kill a"]);
        assert!(d.lanes.lock().unwrap().is_empty(), "lanes are cleaned up");
    }

    #[tokio::test]
    async fn many_concurrent_commands_are_each_answered_once() {
        let (d, mut rx, _) = dispatcher();
        for _ in 0..200 {
            d.dispatch("ping", json!({}));
        }
        for _ in 0..200 {
            assert_eq!(next(&mut rx).await.name(), "pong");
        }
        assert!(d.drain(WAIT).await);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn unusable_ids_get_the_error_reply_before_any_handler() {
        let (d, mut rx, fake) = dispatcher();
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "new_terminal",
                json!({"terminalId": "a\u{0}b"}),
                "terminal_error",
            ),
            (
                "kill_terminal",
                json!({"terminalId": "x\u{1b}[2J"}),
                "terminal_error",
            ),
            (
                "new_session",
                json!({"sessionId": "s\u{0}"}),
                "session_error",
            ),
            (
                "kill_session",
                json!({"sessionId": "s\n1"}),
                "session_error",
            ),
            (
                "list_skills",
                json!({"requestId": "r\u{0}"}),
                "skill_result",
            ),
            (
                "read_file",
                json!({"requestId": "r\u{7}", "cwd": "/", "path": "/x"}),
                "file_result",
            ),
            (
                "git_status",
                json!({"requestId": "x".repeat(300), "cwd": "/"}),
                "file_result",
            ),
        ];
        for (name, payload, reply) in cases {
            assert_eq!(d.dispatch(name, payload.clone()), Routed::Handled);
            let ev = next(&mut rx).await;
            assert_eq!(ev.name(), reply, "reply to {name}");
            let body = ev.payload();
            let message = body["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with(&format!("{name}: Invalid ")),
                "{name}: {message}"
            );
            for key in ["requestId", "sessionId", "terminalId"] {
                if let Some(id) = payload.get(key) {
                    assert_eq!(
                        &body[key], id,
                        "{name}: the reply carries the {key} as sent"
                    );
                }
            }
        }
        // Without an error reply: nothing is sent, nothing runs.
        d.dispatch("get_usage", json!({"requestId": "u\u{0}"}));
        d.dispatch("ping", json!({}));
        assert_eq!(next(&mut rx).await.name(), "pong");
        assert_eq!(fake.handled.load(Ordering::SeqCst), 1, "only the ping ran");
    }

    /// Holds every `list_files` until released.
    struct Gate(tokio::sync::Semaphore);

    impl CommandHandler for Arc<Gate> {
        fn handle(&self, command: ServerEvent) -> BoxFuture<'static, Option<RunnerEvent>> {
            let this = Arc::clone(self);
            async move {
                match command {
                    ServerEvent::ListFiles(req) => {
                        let _ = this.0.acquire().await;
                        Some(
                            runner_protocol::FileResult::failure(req.request_id, "released").into(),
                        )
                    }
                    ServerEvent::Ping(_) => Some(Pong { now: 1 }.into()),
                    _ => None,
                }
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn commands_beyond_the_in_flight_limit_are_answered_naming_it() {
        let (outbox, mut rx) = Outbox::channel();
        let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0)));
        let d = Dispatcher::new(Arc::new(Arc::clone(&gate)), outbox).with_max_in_flight(3);
        let list = |i: usize| json!({"requestId": format!("r{i}"), "cwd": "/", "path": "/"});
        for i in 0..3 {
            d.dispatch("list_files", list(i));
        }
        d.dispatch("list_files", list(3));
        let ev = next(&mut rx).await;
        let body = ev.payload();
        assert_eq!(body["requestId"], json!("r3"));
        assert_eq!(body["ok"], json!(false));
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("too many commands in flight (3")
                && message.contains("PIZZAPI_MAX_COMMANDS_IN_FLIGHT"),
            "{message}"
        );
        // A command without an error reply is dropped, not queued.
        d.dispatch("ping", json!({}));
        gate.0.add_permits(3);
        let mut released = Vec::new();
        for _ in 0..3 {
            released.push(next(&mut rx).await.payload()["requestId"].clone());
        }
        released.sort_by_key(|v| v.to_string());
        assert_eq!(released, vec![json!("r0"), json!("r1"), json!("r2")]);
        assert!(d.drain(WAIT).await);
        assert!(rx.try_recv().is_err(), "the dropped ping got no pong");
        // Below the limit again: commands run.
        d.dispatch("ping", json!({}));
        assert_eq!(next(&mut rx).await.name(), "pong");
    }

    #[tokio::test]
    async fn nothing_starts_after_stop_accepting() {
        let (d, mut rx, fake) = dispatcher();
        d.stop_accepting();
        d.dispatch("ping", json!({}));
        assert!(d.drain(WAIT).await);
        assert!(rx.try_recv().is_err());
        assert_eq!(fake.handled.load(Ordering::SeqCst), 0);
    }
}
