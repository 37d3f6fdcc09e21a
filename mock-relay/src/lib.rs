//! A `/runner` relay for local development and tests.
//!
//! It speaks the PizzaPi `/runner` Socket.IO protocol (see the
//! `runner-protocol` crate) the way the real relay does — API-key check in a
//! connect middleware, `runnerId`/`runnerSecret` binding, request/reply
//! correlation with timeouts — and adds what a test or a developer needs:
//!
//! * a **recorder** that keeps every event both ways and every connection
//!   event, numbered and timestamped ([`Record`]);
//! * **faults** on command: kick a runner (the real relay's
//!   `disconnect(true)`: a client sees `io server disconnect` and does not
//!   reconnect by itself), drop its connection (a network failure: the
//!   client sees `transport close` and reconnects), refuse handshakes, delay
//!   or drop outgoing events, send arbitrary (malformed) payloads, restart
//!   the listener on the same port;
//! * a **REST control API** on the same port ([`api`]), used by the
//!   `mock-relay` binary and by anything that is not Rust;
//! * an **inspector page** at `/` on the same port: runners and traffic
//!   live, send any event, terminals, faults, and a recorded stretch of
//!   traffic exported as a scenario.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mock_relay::RelayError> {
//! use std::time::Duration;
//! use runner_protocol::{ServerEvent, ListSkills};
//!
//! let relay = mock_relay::MockRelay::builder().api_key("k").start().await?;
//! println!("PIZZAPI_RELAY_URL={} PIZZAPI_API_KEY=k", relay.url());
//! let runner = relay.wait_for_runner(Duration::from_secs(10)).await?;
//! let reply = relay
//!     .request(&runner.runner_id, ListSkills::default().into(), Duration::from_secs(10))
//!     .await?;
//! println!("{reply:?}");
//! relay.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! [`MockRelay`] builds a relay and returns a [`RelayHandle`], the one
//! object everything goes through. Inside, the `/runner` namespace handlers
//! feed the recorder ([`Record`]) and the registry ([`RunnerInfo`]); the
//! correlation table pairs commands with replies; a supervisor task owns the
//! listener so that it can be stopped and started again on the same port.
//! [`api`] maps the REST control API onto the handle.

#![warn(missing_docs)]

pub mod api;
mod conn;
mod correlate;
mod error;
mod guard;
mod inspector;
mod namespace;
mod recorder;
mod registry;
mod terminals;

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ConnectInfo;
use runner_protocol::names::{self, NAMESPACE};
use runner_protocol::{RunnerEvent, ServerEvent};
use serde_json::{Value, json};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::{SocketError, SocketIo, TransportType};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::{AppState, app};
pub use error::RelayError;
pub use recorder::{RECORDS_DROPPED, Record, RecordDirection};
pub use registry::RunnerInfo;
pub use terminals::{DEFAULT_TERMINAL_OUTPUT_CAP, TerminalOutput};

use conn::{ConnTag, KillableListener};
use correlate::Pending;
use recorder::Recorder;
use registry::Registry;

/// The API key a relay accepts when none is configured.
pub const DEFAULT_API_KEY: &str = "dev-key";
/// The port the binary listens on by default (the runner's default relay).
pub const DEFAULT_PORT: u16 = 7492;
/// How many records the transcript keeps in memory by default.
pub const DEFAULT_TRANSCRIPT_CAP: usize = 100_000;
/// How many bytes of payload the transcript keeps in memory by default.
pub const DEFAULT_TRANSCRIPT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// How long the relay waits for replies, per kind of command. The defaults
/// are the real relay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Skill commands (default 10 s).
    pub skills: Duration,
    /// File and git commands (default 15 s).
    pub files: Duration,
    /// `get_usage` (default 10 s).
    pub usage: Duration,
    /// `new_session` until `session_ready`/`session_error` (default 5 s).
    pub spawn: Duration,
    /// `kill_session` until `session_killed`/`session_error` (default 10 s).
    pub kill: Duration,
    /// `new_terminal` until `terminal_ready`/`terminal_error`, and
    /// `kill_terminal` until `terminal_exit`/`terminal_error` (default 10 s).
    pub terminal: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            skills: Duration::from_secs(10),
            files: Duration::from_secs(15),
            usage: Duration::from_secs(10),
            spawn: Duration::from_secs(5),
            kill: Duration::from_secs(10),
            terminal: Duration::from_secs(10),
        }
    }
}

/// Events that may wait in one socket's send queue. socketioxide's default
/// (128) refuses a burst of commands that a test or a developer fires at
/// once; the queue drains at the speed of the WebSocket.
pub const SEND_BUFFER: usize = 16 * 1024;

/// Entry point: `MockRelay::builder()…start().await`.
#[derive(Debug)]
pub struct MockRelay;

impl MockRelay {
    /// A builder with the defaults: key `dev-key`, `127.0.0.1`, an
    /// ephemeral port, the real relay's timeouts.
    pub fn builder() -> RelayBuilder {
        RelayBuilder::default()
    }
}

/// Configures and starts a relay.
#[derive(Clone)]
pub struct RelayBuilder {
    api_keys: Vec<String>,
    host: IpAddr,
    port: u16,
    timeouts: Timeouts,
    transcript_cap: usize,
    terminal_output_cap: usize,
    transcript_file: Option<PathBuf>,
    control_token: Option<String>,
    transcript_max_bytes: usize,
    allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for RelayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayBuilder")
            .field("api_keys", &format_args!("{} key(s)", self.api_keys.len()))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("timeouts", &self.timeouts)
            .field("transcript_cap", &self.transcript_cap)
            .field("terminal_output_cap", &self.terminal_output_cap)
            .field("transcript_file", &self.transcript_file)
            .field("control_token", &self.control_token.as_ref().map(|_| "***"))
            .field("transcript_max_bytes", &self.transcript_max_bytes)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Default for RelayBuilder {
    fn default() -> Self {
        RelayBuilder {
            api_keys: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            timeouts: Timeouts::default(),
            transcript_cap: DEFAULT_TRANSCRIPT_CAP,
            terminal_output_cap: DEFAULT_TERMINAL_OUTPUT_CAP,
            transcript_file: None,
            control_token: None,
            transcript_max_bytes: DEFAULT_TRANSCRIPT_MAX_BYTES,
            allowed_hosts: Vec::new(),
        }
    }
}

impl RelayBuilder {
    /// Adds an accepted API key (repeatable). Without any, `dev-key`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// The address to listen on (default `127.0.0.1`). Anything but a
    /// loopback address needs a [`control_token`](Self::control_token).
    pub fn host(mut self, ip: IpAddr) -> Self {
        self.host = ip;
        self
    }

    /// The port (default 0: an ephemeral one; see [`RelayHandle::addr`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Reply timeouts for the REST API's commands.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How many bytes of output the relay keeps per terminal (default
    /// 16 MiB); older bytes are dropped and counted.
    pub fn terminal_output_cap(mut self, cap: usize) -> Self {
        self.terminal_output_cap = cap;
        self
    }

    /// How many records the in-memory transcript keeps (default 100,000).
    /// Older ones are evicted and replaced by a `records_dropped` marker.
    pub fn transcript_cap(mut self, cap: usize) -> Self {
        self.transcript_cap = cap;
        self
    }

    /// How many bytes of payload the in-memory transcript keeps (default
    /// 256 MiB), besides the record cap; older records are evicted.
    pub fn transcript_max_bytes(mut self, max: usize) -> Self {
        self.transcript_max_bytes = max;
        self
    }

    /// A further name the `Host` header of a request may carry (repeatable),
    /// besides loopback names and the address listened on. Requests with
    /// another `Host`, cross-origin browser requests and non-JSON bodies
    /// are refused.
    pub fn allowed_host(mut self, name: impl Into<String>) -> Self {
        self.allowed_hosts.push(name.into());
        self
    }

    /// Also write every record to this file (created with mode 0600), as
    /// NDJSON, with secrets masked (no cap applies).
    pub fn transcript_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.transcript_file = Some(path.into());
        self
    }

    /// Require `Authorization: Bearer <token>` on the REST control API.
    /// Mandatory when listening on a non-loopback address.
    pub fn control_token(mut self, token: impl Into<String>) -> Self {
        self.control_token = Some(token.into());
        self
    }

    /// Checks the configuration without starting anything.
    pub fn validate(&self) -> Result<(), RelayError> {
        if self.api_keys.iter().any(String::is_empty) {
            return Err(RelayError::Config("an API key must not be empty".into()));
        }
        if self.control_token.as_deref() == Some("") {
            return Err(RelayError::Config(
                "the control token must not be empty".into(),
            ));
        }
        if !self.host.is_loopback() && self.control_token.is_none() {
            return Err(RelayError::Config(format!(
                "listening on {} (not loopback) requires a control token, \
                 or anyone on the network could drive your runner",
                self.host
            )));
        }
        if self.transcript_cap == 0 {
            return Err(RelayError::Config(
                "the transcript cap must be at least 1".into(),
            ));
        }
        if self.transcript_max_bytes == 0 {
            return Err(RelayError::Config(
                "the transcript's byte cap must be at least 1".into(),
            ));
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.trim().is_empty() || h.contains(['/', ' ', '@']))
        {
            return Err(RelayError::Config(format!(
                "{bad:?} is not a host name for --allowed-host"
            )));
        }
        Ok(())
    }

    /// Binds the port and starts serving.
    pub async fn start(self) -> Result<RelayHandle, RelayError> {
        self.validate()?;
        let mut api_keys = self.api_keys;
        if api_keys.is_empty() {
            api_keys.push(DEFAULT_API_KEY.to_owned());
        }
        let requested = SocketAddr::new(self.host, self.port);
        let listener = TcpListener::bind(requested)
            .await
            .map_err(|e| RelayError::Bind {
                addr: requested,
                message: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| RelayError::Bind {
            addr: requested,
            message: e.to_string(),
        })?;
        let (layer, io) = SocketIo::builder()
            .transports([TransportType::Websocket])
            .max_buffer_size(SEND_BUFFER)
            .build_layer();
        let (recorder, sink_rx) = Recorder::new(
            self.transcript_cap,
            self.transcript_max_bytes,
            self.transcript_file.is_some(),
        );
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config: Config {
                api_keys,
                timeouts: self.timeouts,
                control_token: self.control_token,
                host_policy: Arc::new(guard::HostPolicy::new(self.host, &self.allowed_hosts)),
            },
            recorder,
            registry: Mutex::new(Registry::new(self.terminal_output_cap)),
            registered: watch::channel(0).0,
            pending: Mutex::new(Pending::default()),
            faults: Faults::default(),
            io,
            layer,
            send_lock: Mutex::new(()),
            commands,
        });
        namespace::attach(&shared);
        let handle = RelayHandle {
            shared: shared.clone(),
            addr,
            task: Arc::new(Mutex::new(None)),
            outcome: Arc::new(Mutex::new(None)),
        };
        let router = app(AppState {
            relay: handle.clone(),
        });
        let sink = match (self.transcript_file, sink_rx) {
            (Some(path), Some(rx)) => Some(tokio::spawn(recorder::run_sink(path, rx))),
            _ => None,
        };
        let task = tokio::spawn(supervise(shared, router, listener, addr, commands_rx, sink));
        *handle.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        tracing::info!(%addr, "mock relay listening");
        Ok(handle)
    }
}

#[derive(Debug)]
pub(crate) struct Config {
    pub api_keys: Vec<String>,
    pub timeouts: Timeouts,
    pub control_token: Option<String>,
    pub host_policy: Arc<guard::HostPolicy>,
}

/// Injected faults. Counters are consumed as they apply.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    refuse: Mutex<(u32, Option<String>)>,
    delay_ms: AtomicU64,
    drop: AtomicU32,
}

/// The message a handshake refused by the refusal fault gets by default.
pub const DEFAULT_REFUSAL: &str = "handshake refused by mock-relay (injected fault)";

impl Faults {
    pub(crate) fn take_refusal(&self) -> Option<String> {
        let mut refuse = self.refuse.lock().unwrap_or_else(|e| e.into_inner());
        if refuse.0 == 0 {
            return None;
        }
        refuse.0 -= 1;
        Some(
            refuse
                .1
                .clone()
                .unwrap_or_else(|| DEFAULT_REFUSAL.to_owned()),
        )
    }

    pub(crate) fn take_drop(&self) -> bool {
        self.drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }
}

enum Command {
    Restart {
        down: Duration,
        keep_state: bool,
        done: oneshot::Sender<Result<(), RelayError>>,
    },
    Shutdown,
}

/// Everything the handle, the namespace handlers and the REST handlers share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) recorder: Recorder,
    registry: Mutex<Registry>,
    /// Bumped on every accepted registration.
    registered: watch::Sender<u64>,
    pending: Mutex<Pending>,
    pub(crate) faults: Faults,
    pub(crate) io: SocketIo,
    layer: SocketIoLayer,
    /// Held while handing an event to a socket and recording it, so that
    /// the transcript's order of outgoing events is the order on the wire.
    send_lock: Mutex<()>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn socket(&self, sid: Sid) -> Option<socketioxide::extract::SocketRef> {
        self.io.of(NAMESPACE)?.get_socket(sid)
    }

    /// Hands an event to a socket now and records it (no faults applied).
    pub(crate) fn emit_now(
        &self,
        sid: Sid,
        runner_id: Option<&str>,
        event: &str,
        payload: &Value,
    ) -> Result<(), RelayError> {
        let not_connected = || RelayError::NotConnected(runner_id.unwrap_or("?").to_owned());
        let socket = self.socket(sid).ok_or_else(not_connected)?;
        // socketioxide sends a namespace's CONNECT packet before it marks
        // the socket connected, and `emit` refuses an unmarked socket. A
        // runner that registers the moment it sees CONNECT can be handled
        // (on another thread) in that gap, and its `runner_registered`
        // would be lost. The mark follows within microseconds: wait for it.
        if !socket.connected() {
            let deadline = std::time::Instant::now() + CONNECT_MARK;
            while !socket.connected()
                && std::time::Instant::now() < deadline
                && self.socket(sid).is_some()
            {
                std::thread::yield_now();
            }
        }
        let _order = self.send_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Recorded before it is handed to the socket: once handed over, the
        // runner may answer before this thread records anything, and the
        // transcript would show the reply before its cause.
        self.recorder.push(
            RecordDirection::Out,
            runner_id,
            Some(&sid.to_string()),
            event,
            payload.clone(),
        );
        let result = socket.emit(event, payload).map_err(|e| match e {
            socketioxide::SendError::Socket(SocketError::Closed) => not_connected(),
            socketioxide::SendError::Socket(SocketError::InternalChannelFull) => RelayError::Send {
                event: event.to_owned(),
                message: format!(
                    "the runner's send buffer is full ({SEND_BUFFER} events waiting to be written)"
                ),
            },
            other => RelayError::Send {
                event: event.to_owned(),
                message: other.to_string(),
            },
        });
        if let Err(err) = &result {
            self.recorder.push(
                RecordDirection::Connection,
                runner_id,
                Some(&sid.to_string()),
                "send_failed",
                json!({"event": event, "reason": err.to_string()}),
            );
        }
        result
    }

    pub(crate) fn record_dropped(
        &self,
        sid: Sid,
        runner_id: Option<&str>,
        event: &str,
        payload: &Value,
    ) {
        self.recorder.push(
            RecordDirection::Connection,
            runner_id,
            Some(&sid.to_string()),
            "fault_dropped",
            json!({ "event": event, "payload": payload }),
        );
    }

    /// Sends an event to a runner's current socket, applying the delay and
    /// drop faults.
    async fn emit(&self, runner_id: &str, event: &str, payload: Value) -> Result<(), RelayError> {
        let delay = self.faults.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let sid = self.lock_registry().current_socket(runner_id)?;
        if self.faults.take_drop() {
            self.record_dropped(sid, Some(runner_id), event, &payload);
            return Ok(());
        }
        self.emit_now(sid, Some(runner_id), event, &payload)
    }

    /// Closes a socket's TCP connection (see `conn`); with
    /// [`Close::Disconnect`], after queueing the namespace DISCONNECT packet.
    ///
    /// socketioxide's `disconnect()` only queues that packet and leaves the
    /// namespace; it has no call that closes one socket's Engine.IO
    /// connection. Failing the connection's reads does: Engine.IO closes the
    /// session, and its WebSocket writer sends every packet already queued
    /// (it prefers queued packets over the close signal) before the close
    /// frame. So the client gets `error`, DISCONNECT, then the end of the
    /// transport, in that order, as from socket.io's `disconnect(true)`.
    pub(crate) fn close_socket(&self, sid: Sid, how: Close) {
        let Some(socket) = self.socket(sid) else {
            return;
        };
        let tag = socket
            .req_parts()
            .extensions
            .get::<ConnectInfo<ConnTag>>()
            .map(|c| c.0.clone());
        if how == Close::Disconnect || tag.is_none() {
            let _ = socket.disconnect();
        }
        if let Some(tag) = tag {
            tag.kill.cancel();
        }
    }
}

/// How [`Shared::close_socket`] ends a runner's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The namespace DISCONNECT packet, then the transport (socket.io's
    /// `disconnect(true)`): a client sees `io server disconnect`.
    Disconnect,
    /// The transport only (a network failure): a client sees
    /// `transport close` and reconnects.
    TransportOnly,
}

/// The supervisor task: it owns the listener and ends on shutdown.
type ServerTask = JoinHandle<Result<(), RelayError>>;

/// A running relay. Cheap to clone; every clone drives the same relay.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Arc<Mutex<Option<ServerTask>>>,
    /// How the server task ended, once some clone has awaited it.
    outcome: Arc<Mutex<Option<Result<(), RelayError>>>>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RelayHandle {
    /// `http://IP:PORT`, no namespace and no trailing slash: what a runner's
    /// `PIZZAPI_RELAY_URL` should be.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the relay listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API keys the relay accepts.
    pub fn api_keys(&self) -> &[String] {
        &self.shared.config.api_keys
    }

    /// The reply timeouts the REST API uses.
    pub fn timeouts(&self) -> Timeouts {
        self.shared.config.timeouts
    }

    /// The first registered runner that is connected, waiting up to
    /// `timeout` for one to register.
    pub async fn wait_for_runner(&self, timeout: Duration) -> Result<RunnerInfo, RelayError> {
        self.wait_registered(timeout, "a runner to register", |r| r.first_connected())
            .await
    }

    /// The runner `runner_id` once it is registered and connected, waiting
    /// up to `timeout`.
    pub async fn wait_for_runner_id(
        &self,
        runner_id: &str,
        timeout: Duration,
    ) -> Result<RunnerInfo, RelayError> {
        let what = format!("runner {runner_id} to register");
        self.wait_registered(timeout, &what, |r| r.get(runner_id).filter(|i| i.connected))
            .await
    }

    async fn wait_registered(
        &self,
        timeout: Duration,
        what: &str,
        find: impl Fn(&Registry) -> Option<RunnerInfo>,
    ) -> Result<RunnerInfo, RelayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut registered = self.shared.registered.subscribe();
        loop {
            if let Some(info) = find(&self.shared.lock_registry()) {
                return Ok(info);
            }
            match tokio::time::timeout_at(deadline, registered.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(RelayError::ShutDown),
                Err(_) => {
                    return Err(RelayError::Timeout {
                        what: what.to_owned(),
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Every runner that registered (connected or not), sorted by id.
    pub fn runners(&self) -> Vec<RunnerInfo> {
        self.shared.lock_registry().all()
    }

    /// One runner, if it ever registered.
    pub fn runner(&self, runner_id: &str) -> Option<RunnerInfo> {
        self.shared.lock_registry().get(runner_id)
    }

    /// What the relay kept of a terminal's output (`Ok(None)`: no such
    /// terminal of that runner; `Err`: unknown runner).
    pub fn terminal_output(
        &self,
        runner_id: &str,
        terminal_id: &str,
    ) -> Result<Option<TerminalOutput>, RelayError> {
        self.shared
            .lock_registry()
            .terminal_output(runner_id, terminal_id)
    }

    /// Sends a typed event to a runner's current socket.
    pub async fn send(&self, runner_id: &str, event: ServerEvent) -> Result<(), RelayError> {
        self.shared
            .emit(runner_id, event.name(), event.payload())
            .await
    }

    /// Sends any event name with any JSON payload, unchecked — for testing
    /// how a runner copes with malformed input. Recorded like any event.
    pub async fn send_raw(
        &self,
        runner_id: &str,
        event: &str,
        payload: Value,
    ) -> Result<(), RelayError> {
        self.shared.emit(runner_id, event, payload).await
    }

    /// Sends a command and waits for its reply: a fresh `requestId` is
    /// filled in where the command has one and none was given (replies are
    /// matched by it), spawns and kills are matched by `sessionId`, terminal
    /// commands by `terminalId`, `ping`/`list_sessions`/`list_terminals` by
    /// reply name. Events without a reply give [`RelayError::NoReply`].
    pub async fn request(
        &self,
        runner_id: &str,
        event: ServerEvent,
        timeout: Duration,
    ) -> Result<RunnerEvent, RelayError> {
        let (event, matcher) = correlate::prepare(event)?;
        let name = event.name();
        let (id, reply) = self.shared.lock_pending().register(runner_id, matcher);
        if let Err(err) = self.send(runner_id, event).await {
            self.shared.lock_pending().cancel(id);
            return Err(err);
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RelayError::ShutDown),
            Err(_) => {
                self.shared.lock_pending().cancel(id);
                Err(RelayError::Timeout {
                    what: format!("the reply to {name}"),
                    after: timeout,
                })
            }
        }
    }

    /// The sequence number the next record will get: pass it to
    /// [`expect`](Self::expect) to wait only for what happens from now on.
    pub fn mark(&self) -> u64 {
        self.shared.recorder.mark()
    }

    /// The first record with `seq >= since` matching `pred`, waiting up to
    /// `timeout` for live ones.
    pub async fn expect(
        &self,
        since: u64,
        pred: impl Fn(&Record) -> bool,
        timeout: Duration,
    ) -> Result<Record, RelayError> {
        self.shared.recorder.expect(since, pred, timeout).await
    }

    /// How many records each event name has had since the relay started,
    /// including those the transcript cap evicted: a cheap count of, say,
    /// `runner_session_event`s received, whatever the cap.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.recorder.counts()
    }

    /// The transcript kept in memory, oldest first (with a
    /// `records_dropped` marker first when the cap evicted records).
    pub fn transcript(&self) -> Vec<Record> {
        self.shared.recorder.snapshot(0, None)
    }

    /// Records with `seq >= since`, optionally only those of one runner.
    pub fn transcript_since(&self, since: u64, runner_id: Option<&str>) -> Vec<Record> {
        self.shared.recorder.snapshot(since, runner_id)
    }

    /// Forgets the in-memory transcript (sequence numbers continue).
    pub fn clear_transcript(&self) {
        self.shared.recorder.clear();
    }

    /// Drops a runner on purpose, as the real relay does (socket.io's
    /// `socket.disconnect(true)`): sends `error {message}` first when
    /// `error` is given, then the namespace DISCONNECT packet, then closes
    /// the transport. A stock socket.io-client reports `io server
    /// disconnect` and does **not** reconnect by itself; the runner must
    /// decide (reconnect after a plain kick, exit after a refusal).
    /// Recorded as `fault_kick {error}`.
    pub async fn kick(&self, runner_id: &str, error: Option<String>) -> Result<(), RelayError> {
        let sid = self.shared.lock_registry().current_socket(runner_id)?;
        self.shared.recorder.push(
            RecordDirection::Connection,
            Some(runner_id),
            Some(&sid.to_string()),
            "fault_kick",
            json!({ "error": error }),
        );
        if let Some(message) = error {
            self.shared.emit_now(
                sid,
                Some(runner_id),
                names::ERROR,
                &json!({ "message": message }),
            )?;
        }
        self.shared.close_socket(sid, Close::Disconnect);
        Ok(())
    }

    /// Drops a runner's connection the way a network failure would: the
    /// transport closes without a DISCONNECT packet, so a stock
    /// socket.io-client reports `transport close` and reconnects by itself.
    /// Recorded as `fault_drop_connection`.
    pub fn drop_connection(&self, runner_id: &str) -> Result<(), RelayError> {
        let sid = self.shared.lock_registry().current_socket(runner_id)?;
        self.shared.recorder.push(
            RecordDirection::Connection,
            Some(runner_id),
            Some(&sid.to_string()),
            "fault_drop_connection",
            json!({}),
        );
        self.shared.close_socket(sid, Close::TransportOnly);
        Ok(())
    }

    /// Refuses the next `count` handshakes with `message` (default
    /// [`DEFAULT_REFUSAL`]); `count` 0 cancels a pending refusal.
    pub fn refuse_handshakes(&self, count: u32, message: Option<String>) {
        *self
            .shared
            .faults
            .refuse
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (count, message);
        self.record_fault("fault_refuse", json!({ "count": count }));
    }

    /// Delays every event sent to runners by `delay` (zero: no delay).
    pub fn delay_outgoing(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.faults.delay_ms.store(ms, Ordering::SeqCst);
        self.record_fault("fault_delay", json!({ "ms": ms }));
    }

    /// Silently drops the next `count` events sent to runners (each drop is
    /// recorded as a `fault_dropped` connection record).
    pub fn drop_outgoing(&self, count: u32) {
        self.shared.faults.drop.store(count, Ordering::SeqCst);
        self.record_fault("fault_drop", json!({ "count": count }));
    }

    fn record_fault(&self, event: &str, payload: Value) {
        self.shared
            .recorder
            .push(RecordDirection::Connection, None, None, event, payload);
    }

    /// Stops listening and drops every connection, waits `down`, then
    /// listens again on the same port. Without `keep_state` the registry
    /// (runners and their secrets) is forgotten, as after a real restart.
    /// Returns once the relay listens again.
    pub async fn restart(&self, down: Duration, keep_state: bool) -> Result<(), RelayError> {
        let rx = self.start_restart(down, keep_state)?;
        rx.await.map_err(|_| RelayError::ShutDown)?
    }

    /// Starts a restart and returns at once (what the REST API uses: its
    /// own connection is one of those being dropped).
    pub(crate) fn start_restart(
        &self,
        down: Duration,
        keep_state: bool,
    ) -> Result<oneshot::Receiver<Result<(), RelayError>>, RelayError> {
        let (done, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Restart {
                down,
                keep_state,
                done,
            })
            .map_err(|_| RelayError::ShutDown)?;
        Ok(rx)
    }

    /// Closes every socket and stops the server; returns when it stopped
    /// (or at once when another clone is already awaiting the server task).
    pub async fn shutdown(self) {
        let _ = self.shared.commands.send(Command::Shutdown);
        let _ = self.await_task().await;
    }

    /// Waits for the server task to end (after [`shutdown`](Self::shutdown)
    /// from another clone, or a failure) and reports how it ended,
    /// including a panic ([`RelayError::ServerPanicked`]). After the task
    /// ended, every clone's `join` gives the same answer; while another
    /// clone is awaiting it, [`RelayError::AlreadyJoined`].
    pub async fn join(self) -> Result<(), RelayError> {
        self.await_task().await
    }

    async fn await_task(&self) -> Result<(), RelayError> {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(task) = task else {
            let outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            return outcome.clone().unwrap_or(Err(RelayError::AlreadyJoined));
        };
        let result = join_task(task).await;
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        result
    }
}

/// Runs a relay until `shutdown` resolves (the binary passes Ctrl-C), then
/// closes it. `ready` is called with the handle once it listens. Returns
/// early with the server task's error if the server stops by itself.
pub async fn run(
    builder: RelayBuilder,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(&RelayHandle),
) -> Result<(), RelayError> {
    let relay = builder.start().await?;
    ready(&relay);
    let task = relay.task.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(mut task) = task else {
        return Err(RelayError::AlreadyJoined);
    };
    tokio::select! {
        () = shutdown => {
            tracing::info!("shutdown requested");
            let _ = relay.shared.commands.send(Command::Shutdown);
            join_task(task).await
        }
        ended = &mut task => {
            tracing::error!("the server stopped by itself");
            match ended {
                Ok(result) => result,
                Err(err) if err.is_panic() => {
                    Err(RelayError::ServerPanicked(panic_text(err.into_panic())))
                }
                Err(_) => Err(RelayError::ShutDown),
            }
        }
    }
}

/// How a server task ended, with a panic turned into
/// [`RelayError::ServerPanicked`].
async fn join_task(task: ServerTask) -> Result<(), RelayError> {
    match task.await {
        Ok(result) => result,
        Err(err) if err.is_panic() => Err(RelayError::ServerPanicked(panic_text(err.into_panic()))),
        Err(_) => Err(RelayError::ShutDown),
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

/// How long an emit waits for socketioxide to mark a just-connected socket
/// connected (see [`Shared::emit_now`]); the gap is normally microseconds.
const CONNECT_MARK: Duration = Duration::from_millis(100);

/// How long a stopping listener may take to finish in-flight HTTP requests
/// before its connections are cut.
const DRAIN: Duration = Duration::from_secs(1);

/// Owns the listener: serves, and on command stops (restart, shutdown).
async fn supervise(
    shared: Arc<Shared>,
    router: axum::Router,
    mut listener: TcpListener,
    addr: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sink: Option<JoinHandle<()>>,
) -> Result<(), RelayError> {
    loop {
        let generation = CancellationToken::new();
        let stop = CancellationToken::new();
        let serve = axum::serve(
            KillableListener::new(listener, generation.clone()),
            router
                .clone()
                .into_make_service_with_connect_info::<ConnTag>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned());
        let mut serving = tokio::spawn(serve.into_future());
        let command = tokio::select! {
            command = commands.recv() => command,
            ended = &mut serving => {
                generation.cancel();
                return match ended {
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    _ => Err(RelayError::ShutDown),
                };
            }
        };
        // Stop accepting and let in-flight HTTP requests finish, then cut
        // every connection that is left (the WebSockets).
        stop.cancel();
        let _ = tokio::time::timeout(DRAIN, &mut serving).await;
        serving.abort();
        generation.cancel();
        match command {
            Some(Command::Restart {
                down,
                keep_state,
                done,
            }) => {
                shared.recorder.push(
                    RecordDirection::Connection,
                    None,
                    None,
                    "relay_down",
                    json!({ "downMs": down.as_millis() as u64, "keepState": keep_state }),
                );
                tracing::info!(?down, keep_state, "listener stopped");
                if !keep_state {
                    shared.lock_registry().clear_runners();
                }
                tokio::time::sleep(down).await;
                match TcpListener::bind(addr).await {
                    Ok(rebound) => {
                        listener = rebound;
                        shared.recorder.push(
                            RecordDirection::Connection,
                            None,
                            None,
                            "relay_up",
                            json!({}),
                        );
                        tracing::info!(%addr, "listening again");
                        let _ = done.send(Ok(()));
                    }
                    Err(err) => {
                        let err = RelayError::Bind {
                            addr,
                            message: err.to_string(),
                        };
                        tracing::error!(%err, "restart failed");
                        let _ = done.send(Err(err.clone()));
                        return Err(err);
                    }
                }
            }
            Some(Command::Shutdown) | None => {
                let _ = tokio::time::timeout(DRAIN, shared.io.close()).await;
                shared.recorder.close_sink();
                if let Some(sink) = sink {
                    let _ = sink.await;
                }
                tracing::info!("mock relay stopped");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_turns_a_panic_of_the_server_task_into_an_error() {
        let task = tokio::spawn(async { panic!("listener exploded") });
        assert_eq!(
            join_task(task).await,
            Err(RelayError::ServerPanicked("listener exploded".into()))
        );
        let task = tokio::spawn(async { std::panic::panic_any(format!("code {}", 7)) });
        assert_eq!(
            join_task(task).await,
            Err(RelayError::ServerPanicked("code 7".into()))
        );
        let task = tokio::spawn(async { Err(RelayError::ShutDown) });
        assert_eq!(join_task(task).await, Err(RelayError::ShutDown));
    }

    #[test]
    fn a_non_loopback_host_needs_a_control_token() {
        let public = MockRelay::builder().host(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert!(matches!(public.validate(), Err(RelayError::Config(_))));
        assert!(public.control_token("t").validate().is_ok());
        assert!(MockRelay::builder().validate().is_ok());
        assert!(matches!(
            MockRelay::builder().api_key("").validate(),
            Err(RelayError::Config(_))
        ));
    }

    #[test]
    fn faults_count_down() {
        let faults = Faults::default();
        assert_eq!(faults.take_refusal(), None);
        *faults.refuse.lock().unwrap() = (2, None);
        assert_eq!(faults.take_refusal().as_deref(), Some(DEFAULT_REFUSAL));
        assert!(faults.take_refusal().is_some());
        assert_eq!(faults.take_refusal(), None);
        faults.drop.store(1, Ordering::SeqCst);
        assert!(faults.take_drop());
        assert!(!faults.take_drop());
    }
}
