//! The Socket.IO connection to the relay, and the only module that knows
//! the client library (`rust_socketio` 0.6).
//!
//! The library reconnects by itself (delay 1 s growing to 30 s,
//! randomized); this module configures it and *reacts* to what it reports.
//! Its measured defects (see the notes on the Socket.IO crates) are handled
//! here, each in one place:
//!
//! * **Callbacks only forward.** Every library callback pushes a `Link`
//!   message into a channel and returns; one actor task reacts to them.
//!   Library callbacks run one after another on the socket's reader task, so
//!   a callback that did work would starve the engine.io heartbeat, and a
//!   panic in one would kill the reader.
//! * **`connect()` returning `Ok` means nothing yet.** The connection counts
//!   from the namespace's `Connect` packet (the library's `Event::Connect`,
//!   i.e. `"open"`), which fires after the first connect and after every
//!   reconnect; `register_runner` is emitted there, once per connection.
//! * **A refused handshake** arrives only as an `Event::Error` text
//!   `Received an ConnectError frame: {...}`, and the library would retry it
//!   forever, silently. It is a fatal refusal here: the client is
//!   disconnected (which is what stops the library's loop) and the daemon
//!   exits with code 77.
//! * **A registration the relay refuses** (`error {message}`, then a
//!   server-side disconnect) is fatal too (exit 77, with the relay's
//!   message).
//! * **A server-side disconnect** leaves the library's client stuck (it
//!   never reconnects, whatever `reconnect_on_disconnect` says, when the
//!   transport stays open). The library is told not to react to it
//!   (`reconnect_on_disconnect(false)`), and the actor retires that client
//!   (disconnecting it closes its transport and ends its loop) and builds a
//!   new one. Events of a retired client are ignored; if one reconnects
//!   anyway it is disconnected again, so only one client is ever registered.
//! * **A lost transport** surfaces as `Event::Error "EngineIO Error"`, and
//!   the library then reconnects; its `on_reconnect` callback (run before
//!   every attempt) tells the actor the connection is down, and sends the
//!   handshake `auth` again.
//! * **The library's reconnect loop spins after 15 minutes of outage**: its
//!   exponential backoff stops giving delays once 15 minutes have elapsed
//!   since the outage began. See [`ReconnectPolicy`] for why one backoff
//!   cycle here can never get that far.
//! * **Nothing is buffered by the library.** Events emitted while the
//!   connection is down are kept (up to [`BACKLOG_LIMIT`] events and
//!   [`Connection::backlog_max_bytes`] bytes) by the writer task and sent
//!   after the next registration. While connected, the writer takes one
//!   event at a time and waits for the library to have written it: a relay
//!   that reads slowly keeps the outbox full, and its bulk credit then
//!   holds back the workers' stdout and the terminals' output.
//! * **Payloads are built from JSON values** (`Payload::Text`), never from
//!   strings, which the library would parse as JSON. The relay's acks are
//!   not used (the library cannot answer them); the protocol correlates by
//!   `requestId`.
//! * **WebSocket only** (`TransportType::Websocket`), not the library's
//!   default polling-then-upgrade.
//! * **A packet the library cannot decode** (JSON text holding a lone UTF-16
//!   surrogate, which a JavaScript relay sends without complaint) arrives,
//!   through the workspace's patch of the library, as an error text
//!   starting with [`UNDECODABLE_EVENT_PACKET`]. It is decoded again with
//!   the surrogates replaced, only to find the command and its ids: the
//!   command gets its error reply, or a log line when it has none.
//!
//! A connection that the library never opened (the first one, or a rebuilt
//! one, while the relay is unreachable) cannot be retried by the library:
//! it has no client yet. Such builds are repeated on the library's own
//! schedule (1 s growing to 30 s, randomized), and only then.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use runner_protocol::rules::redact_userinfo;
use runner_protocol::{HandshakeAuth, RegisterRunner, RunnerEvent, names};
use rust_socketio::asynchronous::{
    Client, ClientBuilder, ReconnectSettings, UNDECODABLE_EVENT_PACKET,
};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::dispatch::{Dispatcher, Routed};
use crate::heartbeat::Heartbeat;
use crate::outbox::{Outbox, OutboxReceiver};
use crate::{ExitReason, ShutdownHandle};

/// How many events are kept while the connection is down; older ones are
/// dropped (and logged) beyond that.
pub const BACKLOG_LIMIT: usize = 1024;

/// How many bytes of events are kept while the connection is down, by
/// default ([`Connection::backlog_max_bytes`]).
pub const BACKLOG_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The backoff limit of `rust_socketio` 0.6: its `ExponentialBackoff`
/// (crate `backoff` 0.4, default settings) stops giving delays after this
/// much time since the cycle began, and the library then retries without
/// sleeping.
pub const LIBRARY_BACKOFF_LIMIT: Duration = Duration::from_secs(15 * 60);

/// How long one failing connection attempt is allowed for in the bound of
/// [`ReconnectPolicy::worst_case_cycle`]: a refused or unreachable relay
/// fails in far less (TCP refuses at once; an unanswered SYN gives up after
/// about two minutes only on routes that drop packets, and attempts that
/// slow cannot spin anyway).
pub const ATTEMPT_ALLOWANCE: Duration = Duration::from_secs(20);

/// The Socket.IO client's reconnection settings.
///
/// `rust_socketio` 0.6 reconnects in *cycles*: after a connection is lost it
/// creates a fresh exponential backoff (initial `delay_min`, max
/// `delay_max`, multiplier 1.5, randomization ±50 %, **maximum elapsed time
/// 15 minutes**) and attempts until one attempt succeeds or
/// `max_reconnect_attempts` attempts have failed; every failed attempt is
/// followed by the backoff's delay, or by no delay at all once the backoff
/// has run past its 15 minutes — which is how an unbounded cycle ends up
/// spinning at thousands of attempts per second. When the attempt limit
/// ends a cycle, the library finds its client still closed and starts the
/// next cycle at once, with a fresh backoff (delay back to `delay_min`).
///
/// So the attempt limit is set such that a whole cycle — every delay at the
/// top of its randomization range, every attempt taking
/// [`ATTEMPT_ALLOWANCE`] — stays below the 15-minute limit
/// ([`ReconnectPolicy::worst_case_cycle`]; pinned by a test). The backoff
/// is thereby never exhausted, every failed attempt is followed by a delay,
/// and reconnection continues for as long as the outage lasts, driven by
/// the library alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// First delay between attempts.
    pub delay_min: Duration,
    /// Largest delay between attempts (before randomization).
    pub delay_max: Duration,
    /// Attempts per backoff cycle.
    pub attempts_per_cycle: u8,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            delay_min: Duration::from_secs(1),
            delay_max: Duration::from_secs(30),
            attempts_per_cycle: 16,
        }
    }
}

impl ReconnectPolicy {
    /// The `backoff` crate's multiplier, as `rust_socketio` leaves it.
    pub const MULTIPLIER: f64 = 1.5;
    /// The `backoff` crate's randomization factor, as `rust_socketio` leaves it.
    pub const RANDOMIZATION: f64 = 0.5;

    /// The longest one library backoff cycle can take: every attempt takes
    /// [`ATTEMPT_ALLOWANCE`] and is followed by the largest delay the
    /// backoff can give.
    pub fn worst_case_cycle(&self) -> Duration {
        let mut interval = self.delay_min.as_secs_f64();
        let max = self.delay_max.as_secs_f64();
        let mut total = 0.0;
        for _ in 0..self.attempts_per_cycle {
            total += ATTEMPT_ALLOWANCE.as_secs_f64() + interval * (1.0 + Self::RANDOMIZATION);
            interval = (interval * Self::MULTIPLIER).min(max);
        }
        Duration::from_secs_f64(total)
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Produces the `register_runner` payload for a new connection (the skills
/// are read afresh every time).
pub type Registration = Arc<dyn Fn() -> BoxFuture<'static, RegisterRunner> + Send + Sync>;

/// Everything the connection needs.
pub struct Connection {
    /// The relay URL, normalized (`http(s)://host[:port][/path]`).
    pub relay_url: String,
    /// The handshake `auth`.
    pub auth: HandshakeAuth,
    /// Reconnection settings.
    pub reconnect: ReconnectPolicy,
    /// Builds `register_runner`.
    pub registration: Registration,
    /// The heartbeat, started on every connection.
    pub heartbeat: Heartbeat,
    /// Where incoming events go.
    pub dispatcher: Arc<Dispatcher>,
    /// The outbox (for the heartbeat).
    pub outbox: Outbox,
    /// The daemon's shutdown path (for refusals).
    pub control: ShutdownHandle,
    /// The most bytes of events kept while disconnected.
    pub backlog_max_bytes: usize,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("relay_url", &redact_userinfo(&self.relay_url))
            .field("auth", &self.auth)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

/// An incoming payload.
#[derive(Debug)]
enum Incoming {
    Json(Value),
    Binary,
}

/// What the library's callbacks report, tagged with the client generation
/// they belong to.
enum Link {
    Open {
        generation: u64,
        client: Client,
    },
    Close {
        generation: u64,
    },
    Reconnecting {
        generation: u64,
        at: Instant,
    },
    LibraryError {
        generation: u64,
        text: String,
    },
    Event {
        generation: u64,
        name: String,
        payload: Incoming,
    },
    Built {
        generation: u64,
        result: Result<Client, String>,
    },
}

/// The Socket.IO origin and namespace for a relay URL: a path in the relay
/// URL prefixes the `/runner` namespace, as `io(relayUrl + "/runner")` does.
fn origin_and_namespace(relay_url: &str) -> (String, String) {
    let (scheme, rest) = relay_url.split_once("://").unwrap_or(("http", relay_url));
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    (
        format!("{scheme}://{host}"),
        format!("{path}{}", names::NAMESPACE),
    )
}

fn payload_of(event: &RunnerEvent) -> Payload {
    Payload::Text(vec![event.payload()])
}

async fn emit(client: &Client, event: &RunnerEvent) -> Result<(), rust_socketio::Error> {
    client.emit(event.name(), payload_of(event)).await
}

/// The first JSON argument of an event (`null` when it has none).
fn incoming(payload: Payload) -> Incoming {
    match payload {
        Payload::Text(values) => Incoming::Json(values.into_iter().next().unwrap_or(Value::Null)),
        Payload::Binary(_) => Incoming::Binary,
        #[allow(deprecated)]
        Payload::String(text) => {
            Incoming::Json(serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
    }
}

/// Whether a refusal is about the runner's credentials (`unauthorized`,
/// possibly with details after it), which no retry can fix.
fn is_auth_refusal(message: &str) -> bool {
    message
        .trim_start()
        .starts_with(runner_protocol::messages::UNAUTHORIZED)
}

/// A library error text of a refused namespace connect: the relay's message.
fn connect_error_message(text: &str) -> Option<String> {
    let (_, data) = text.split_once("ConnectError frame:")?;
    let data = data.trim();
    let message = serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| match v {
            Value::Object(map) => map
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
            Value::String(s) => Some(s),
            _ => None,
        })
        .unwrap_or_else(|| data.to_owned());
    Some(message)
}

fn builder(
    relay_url: &str,
    auth: &HandshakeAuth,
    policy: ReconnectPolicy,
    generation: u64,
    tx: &mpsc::UnboundedSender<Link>,
) -> ClientBuilder {
    let (origin, namespace) = origin_and_namespace(relay_url);
    let auth = serde_json::to_value(auth).expect("the handshake auth serializes");
    let on_open = tx.clone();
    let on_close = tx.clone();
    let on_error = tx.clone();
    let on_any = tx.clone();
    let on_reconnect = tx.clone();
    let reconnect_auth = auth.clone();
    ClientBuilder::new(origin)
        .namespace(namespace)
        .transport_type(TransportType::Websocket)
        .auth(auth)
        .reconnect(true)
        .reconnect_on_disconnect(false)
        .reconnect_delay(
            ReconnectPolicy::millis(policy.delay_min),
            ReconnectPolicy::millis(policy.delay_max),
        )
        .max_reconnect_attempts(policy.attempts_per_cycle)
        .on(Event::Connect, move |_, client: Client| {
            let _ = on_open.send(Link::Open { generation, client });
            async {}.boxed()
        })
        .on(Event::Close, move |_, _| {
            let _ = on_close.send(Link::Close { generation });
            async {}.boxed()
        })
        .on(Event::Error, move |payload, _| {
            // The relay's own `error` event arrives here too (the library
            // maps the name "error" to `Event::Error`): it carries an
            // object, the library's errors a string.
            let link = match incoming(payload) {
                Incoming::Json(Value::String(text)) => Link::LibraryError { generation, text },
                Incoming::Json(value) => Link::Event {
                    generation,
                    name: names::ERROR.to_owned(),
                    payload: Incoming::Json(value),
                },
                Incoming::Binary => Link::LibraryError {
                    generation,
                    text: "binary error payload".to_owned(),
                },
            };
            let _ = on_error.send(link);
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            let name = match event {
                Event::Custom(name) => name,
                other => other.as_str().to_owned(),
            };
            let _ = on_any.send(Link::Event {
                generation,
                name,
                payload: incoming(payload),
            });
            async {}.boxed()
        })
        .on_reconnect(move || {
            let _ = on_reconnect.send(Link::Reconnecting {
                generation,
                at: Instant::now(),
            });
            let auth = reconnect_auth.clone();
            async move {
                let mut settings = ReconnectSettings::new();
                settings.auth(auth);
                settings
            }
            .boxed()
        })
}

/// Disconnects a client in the background (bounded), so that its library
/// loop ends and its transport closes.
fn retire(client: Client) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
    });
}

/// The schedule of client (re)builds after a failed build or a server-side
/// disconnect: the library's delays (1 s growing to 30 s, randomized). A
/// connection that lasted at least `delay_max` resets it, so the rebuild
/// after it starts at once; a relay that drops every connection right away
/// cannot make the runner reconnect in a tight loop.
struct Pacer {
    policy: ReconnectPolicy,
    next: Option<Duration>,
}

impl Pacer {
    fn delay(&mut self, last_connection_lasted: Option<Duration>) -> Duration {
        if last_connection_lasted.is_some_and(|d| d >= self.policy.delay_max) {
            self.next = None;
        }
        match self.next {
            None => {
                self.next = Some(self.policy.delay_min);
                Duration::ZERO
            }
            Some(current) => {
                let factor =
                    1.0 + ReconnectPolicy::RANDOMIZATION * (2.0 * rand::random::<f64>() - 1.0);
                self.next = Some(
                    current
                        .mul_f64(ReconnectPolicy::MULTIPLIER)
                        .min(self.policy.delay_max),
                );
                current.mul_f64(factor)
            }
        }
    }
}

struct Actor {
    conn: Connection,
    tx: mpsc::UnboundedSender<Link>,
    generation: u64,
    client: Option<Client>,
    connected_since: Option<Instant>,
    /// When the library began reconnecting, for the log of the next connect.
    down_since: Option<Instant>,
    pending_refusal: Option<String>,
    refused: bool,
    heartbeat: Option<CancellationToken>,
    writer: watch::Sender<Option<Client>>,
    rebuild_at: Option<Instant>,
    pacer: Pacer,
}

impl Connection {
    /// Connects, keeps the connection up and serves it until `close` is
    /// cancelled; then sends what is left in the outbox and disconnects.
    pub async fn run(self, outbox_rx: OutboxReceiver, close: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (writer_tx, writer_rx) = watch::channel(None);
        let writer_close = CancellationToken::new();
        let writer = tokio::spawn(
            write_outbox(
                outbox_rx,
                writer_rx,
                writer_close.clone(),
                self.backlog_max_bytes,
            )
            .instrument(tracing::Span::current()),
        );
        // The first build starts at once (`rebuild_at` below); should it
        // fail, the next one follows after the first delay.
        let pacer = Pacer {
            policy: self.reconnect,
            next: Some(self.reconnect.delay_min),
        };
        let mut actor = Actor {
            conn: self,
            tx,
            generation: 0,
            client: None,
            connected_since: None,
            down_since: None,
            pending_refusal: None,
            refused: false,
            heartbeat: None,
            writer: writer_tx,
            rebuild_at: Some(Instant::now()),
            pacer,
        };
        loop {
            let rebuild_at = actor.rebuild_at;
            tokio::select! {
                _ = close.cancelled() => break,
                Some(link) = rx.recv() => actor.on_link(link).await,
                _ = async { tokio::time::sleep_until(rebuild_at.unwrap_or_else(Instant::now)).await }, if rebuild_at.is_some() => {
                    actor.rebuild_at = None;
                    actor.build();
                }
            }
        }
        actor.stop_heartbeat();
        writer_close.cancel();
        if tokio::time::timeout(Duration::from_secs(5), writer)
            .await
            .is_err()
        {
            tracing::warn!("could not send the last events before disconnecting");
        }
        if let Some(client) = actor.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), client.disconnect()).await;
            tracing::info!("disconnected from the relay");
        }
    }
}

impl Actor {
    fn build(&mut self) {
        if self.conn.control.is_triggered() {
            return;
        }
        if let Some(old) = self.client.take() {
            retire(old);
        }
        self.generation += 1;
        let generation = self.generation;
        let builder = builder(
            &self.conn.relay_url,
            &self.conn.auth,
            self.conn.reconnect,
            generation,
            &self.tx,
        );
        let tx = self.tx.clone();
        tracing::info!(url = %redact_userinfo(&self.conn.relay_url), generation, "connecting to the relay");
        tokio::spawn(async move {
            // A relay that accepts TCP but never answers would hold a
            // build forever; give up on it like on a refused one.
            let result = match tokio::time::timeout(ATTEMPT_ALLOWANCE, builder.connect()).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} s",
                    ATTEMPT_ALLOWANCE.as_secs()
                )),
            };
            if let Err(mpsc::error::SendError(Link::Built {
                result: Ok(client), ..
            })) = tx.send(Link::Built { generation, result })
            {
                // Nobody is listening any more: do not leave it connected.
                retire(client);
            }
        });
    }

    fn schedule_rebuild(&mut self) {
        if self.conn.control.is_triggered() {
            return;
        }
        let lasted = self.connected_since.take().map(|t| t.elapsed());
        let delay = self.pacer.delay(lasted);
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "connecting again after a pause"
            );
        }
        self.rebuild_at = Some(Instant::now() + delay);
    }

    fn stop_heartbeat(&mut self) {
        if let Some(hb) = self.heartbeat.take() {
            hb.cancel();
        }
    }

    /// The connection is down: no heartbeats, events wait in the backlog.
    fn went_down(&mut self) {
        self.stop_heartbeat();
        self.writer.send_replace(None);
    }

    fn refuse(&mut self, message: String) {
        if self.refused {
            return;
        }
        self.refused = true;
        tracing::error!(message = %message, "the relay refused this runner; stopping (exit code 77)");
        self.went_down();
        self.rebuild_at = None;
        if let Some(client) = self.client.take() {
            // Disconnecting is what stops the library's endless retries.
            retire(client);
        }
        self.conn.control.trigger(ExitReason::Refused { message });
    }

    async fn on_link(&mut self, link: Link) {
        match link {
            Link::Open { generation, client } if generation == self.generation => {
                self.on_open(client).await;
            }
            Link::Open { generation, client } => {
                tracing::debug!(
                    generation,
                    "a retired client connected again; disconnecting it"
                );
                retire(client);
            }
            Link::Built { generation, result } if generation == self.generation => match result {
                Ok(client) => {
                    if self.client.is_none() {
                        self.client = Some(client);
                    }
                }
                Err(error) => {
                    tracing::warn!(url = %redact_userinfo(&self.conn.relay_url), error = %error, "cannot reach the relay");
                    self.schedule_rebuild();
                }
            },
            Link::Built { result, .. } => {
                if let Ok(client) = result {
                    retire(client);
                }
            }
            Link::Close { generation } if generation == self.generation => {
                tracing::warn!("the relay closed the connection");
                if let Some(message) = self.pending_refusal.take() {
                    return self.refuse(message);
                }
                self.went_down();
                if let Some(client) = self.client.take() {
                    retire(client);
                }
                self.schedule_rebuild();
            }
            Link::Reconnecting { generation, at } if generation == self.generation => {
                if let Some(message) = self.pending_refusal.take() {
                    return self.refuse(message);
                }
                if self.connected_since.take().is_some() {
                    tracing::warn!("lost the connection to the relay; the client is reconnecting");
                    self.down_since = Some(at);
                    self.went_down();
                } else {
                    tracing::debug!("reconnect attempt");
                }
            }
            Link::LibraryError { generation, text } if generation == self.generation => {
                if let Some(rest) = text.strip_prefix(UNDECODABLE_EVENT_PACKET) {
                    self.on_undecodable(rest);
                } else if let Some(message) = connect_error_message(&text) {
                    if is_auth_refusal(&message) {
                        tracing::error!(message = %message, "the relay refused the connection (check the API key)");
                        self.refuse(format!("the relay refused the connection: {message}"));
                    } else {
                        // A refusal for another reason (a relay that is busy or
                        // restarting) may pass. The library would retry it only
                        // after its 45 s connect timeout, silently: retire that
                        // client and connect again on the pacer's schedule.
                        tracing::warn!(message = %message, "the relay refused the connection for now; connecting again");
                        if let Some(client) = self.client.take() {
                            retire(client);
                        }
                        self.went_down();
                        self.schedule_rebuild();
                    }
                } else {
                    tracing::warn!(error = %text, "socket.io client error");
                }
            }
            Link::Event {
                generation,
                name,
                payload,
            } if generation == self.generation => self.on_event(name, payload),
            Link::Close { .. }
            | Link::Reconnecting { .. }
            | Link::LibraryError { .. }
            | Link::Event { .. } => {
                tracing::debug!("event of a retired client ignored");
            }
        }
    }

    async fn on_open(&mut self, client: Client) {
        if self.refused || self.conn.control.is_triggered() {
            retire(client);
            return;
        }
        self.client = Some(client.clone());
        self.connected_since = Some(Instant::now());
        self.pending_refusal = None;
        let outage_ms = self
            .down_since
            .take()
            .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        tracing::info!(
            url = %redact_userinfo(&self.conn.relay_url),
            generation = self.generation,
            outage_ms,
            "connected to the relay"
        );

        let registration = (self.conn.registration)().await;
        let skills = registration.skills.as_ref().map_or(0, Vec::len);
        match emit(&client, &RunnerEvent::RegisterRunner(registration)).await {
            Ok(()) => tracing::info!(skills, "register_runner sent"),
            Err(err) => tracing::warn!(error = %err, "could not send register_runner"),
        }

        self.stop_heartbeat();
        let cancel = CancellationToken::new();
        tokio::spawn(
            self.conn
                .heartbeat
                .clone()
                .run(self.conn.outbox.clone(), cancel.clone())
                .instrument(tracing::Span::current()),
        );
        self.heartbeat = Some(cancel);
        self.writer.send_replace(Some(client));
    }

    /// A command the library could not decode (`rest` is `" (<reason>):
    /// <packet data>"`): its error reply, built from the packet decoded with
    /// lone surrogates replaced, or a log line.
    fn on_undecodable(&mut self, rest: &str) {
        if self.refused {
            return;
        }
        let (reason, data) = rest
            .strip_prefix(" (")
            .and_then(|r| r.split_once("): "))
            .unwrap_or(("unknown reason", rest));
        match runner_protocol::lossy::event_lossy(data) {
            Some((name, payload)) => self.conn.dispatcher.reject(
                &name,
                &payload,
                &format!("{name}: the payload is not valid Unicode JSON ({reason})"),
            ),
            None => {
                let shown: String = data.chars().take(200).collect();
                tracing::warn!(
                    reason,
                    packet = %shown.escape_debug(),
                    "an event packet that does not decode was dropped"
                );
            }
        }
    }

    fn on_event(&mut self, name: String, payload: Incoming) {
        if self.refused {
            return;
        }
        let value = match payload {
            Incoming::Json(value) => value,
            Incoming::Binary => {
                self.pending_refusal = None;
                self.conn.dispatcher.reject(
                    &name,
                    &Value::Null,
                    &format!("{name}: payload must be a JSON object, got binary data"),
                );
                return;
            }
        };
        match self.conn.dispatcher.dispatch(&name, value) {
            Routed::Registered(reg) => {
                self.pending_refusal = None;
                if reg.runner_id == self.conn.auth.runner_id {
                    tracing::info!("runner_registered");
                } else {
                    tracing::warn!(
                        registered_id = %reg.runner_id,
                        "runner_registered with a runner id that is not ours"
                    );
                }
            }
            Routed::RelayError(message) => {
                tracing::warn!(message = %message, "error from the relay");
                self.pending_refusal = Some(message);
            }
            Routed::Handled => self.pending_refusal = None,
        }
    }
}

/// The events waiting for a connection, bounded in count and bytes.
#[derive(Debug)]
struct Backlog {
    events: VecDeque<(RunnerEvent, usize)>,
    bytes: usize,
    max_bytes: usize,
}

/// Roughly how many bytes an event takes on the wire: its bulk size when it
/// was emitted as bulk, else the length of its JSON.
fn wire_size(event: &RunnerEvent, bulk: Option<usize>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    bulk.unwrap_or_else(|| {
        let mut count = Count(0);
        let _ = serde_json::to_writer(&mut count, &event.payload());
        count.0
    }) + event.name().len()
}

impl Backlog {
    fn new(max_bytes: usize) -> Self {
        Backlog {
            events: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Queues an event; the oldest ones make room when a limit is reached.
    fn push(&mut self, event: RunnerEvent, bulk: Option<usize>) {
        let size = wire_size(&event, bulk);
        while !self.events.is_empty()
            && (self.events.len() >= BACKLOG_LIMIT || self.bytes + size > self.max_bytes)
        {
            if let Some((dropped, dropped_size)) = self.events.pop_front() {
                self.bytes -= dropped_size;
                tracing::warn!(
                    event = dropped.name(),
                    limit_events = BACKLOG_LIMIT,
                    limit_bytes = self.max_bytes,
                    "backlog full while disconnected; oldest event dropped"
                );
            }
        }
        self.bytes += size;
        self.events.push_back((event, size));
    }

    fn front(&self) -> Option<&RunnerEvent> {
        self.events.front().map(|(event, _)| event)
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.events.pop_front() {
            self.bytes -= size;
        }
        // Give the memory of a burst back once it has been sent.
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
    }

    fn len(&self) -> usize {
        self.events.len()
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Sends the outbox's events while a client is connected; keeps them (up to
/// [`BACKLOG_LIMIT`] events and `max_bytes` bytes) while none is, and after
/// a failed send until the next connection. On `close`, sends what is left
/// and returns.
async fn write_outbox(
    mut rx: OutboxReceiver,
    mut client: watch::Receiver<Option<Client>>,
    close: CancellationToken,
    max_bytes: usize,
) {
    let mut backlog = Backlog::new(max_bytes);
    let mut stalled = false;
    loop {
        tokio::select! {
            biased;
            _ = close.cancelled() => break,
            changed = client.changed() => {
                if changed.is_err() {
                    break;
                }
                stalled = false;
            }
            event = rx.recv_sized() => match event {
                Some((event, bulk)) => backlog.push(event, bulk),
                None => break,
            },
        }
        let current = client.borrow().clone();
        if let (Some(current), false) = (current, stalled) {
            stalled = !flush(&current, &mut backlog).await;
        }
    }
    while let Ok((event, bulk)) = rx.try_recv_sized() {
        backlog.push(event, bulk);
    }
    let current = client.borrow().clone();
    if let Some(current) = current {
        flush(&current, &mut backlog).await;
    }
    if !backlog.is_empty() {
        tracing::warn!(
            count = backlog.len(),
            "events not sent: no connection at shutdown"
        );
    }
}

/// Sends the backlog in order; `false` (keeping the rest) when a send fails.
async fn flush(client: &Client, backlog: &mut Backlog) -> bool {
    while let Some(event) = backlog.front() {
        if let Err(err) = emit(client, event).await {
            tracing::warn!(event = event.name(), error = %err, "send failed; keeping the event for the next connection");
            return false;
        }
        backlog.pop_front();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_library_backoff_cycle_cannot_reach_its_elapsed_limit() {
        use backoff::ExponentialBackoffBuilder;
        let policy = ReconnectPolicy::default();
        // Built exactly as rust_socketio 0.6 builds it (client.rs,
        // `poll_stream`), so a change of the backoff crate's defaults shows
        // up here.
        let library = ExponentialBackoffBuilder::new()
            .with_initial_interval(policy.delay_min)
            .with_max_interval(policy.delay_max)
            .build();
        assert_eq!(library.max_elapsed_time, Some(LIBRARY_BACKOFF_LIMIT));
        assert_eq!(library.multiplier, ReconnectPolicy::MULTIPLIER);
        assert_eq!(library.randomization_factor, ReconnectPolicy::RANDOMIZATION);

        let worst = policy.worst_case_cycle();
        assert!(
            worst < LIBRARY_BACKOFF_LIMIT,
            "a cycle may take {worst:?}, over the library's limit"
        );

        // The delays still grow to the 30 s cap within a cycle.
        let mut interval = policy.delay_min.as_secs_f64();
        let mut reached_cap = false;
        for _ in 0..policy.attempts_per_cycle {
            interval = (interval * ReconnectPolicy::MULTIPLIER).min(policy.delay_max.as_secs_f64());
            reached_cap |= interval >= policy.delay_max.as_secs_f64();
        }
        assert!(reached_cap, "the delay reaches delay_max within one cycle");
    }

    #[test]
    fn the_backoff_never_runs_out_within_a_cycle() {
        use backoff::backoff::Backoff;
        use backoff::exponential::ExponentialBackoff;
        use backoff::{Clock, ExponentialBackoffBuilder};
        use std::cell::Cell;

        /// A clock the test moves: each attempt takes the allowance, each
        /// sleep the delay the backoff gave.
        struct TestClock {
            base: std::time::Instant,
            offset: Cell<Duration>,
        }
        impl Clock for TestClock {
            fn now(&self) -> std::time::Instant {
                self.base + self.offset.get()
            }
        }
        let policy = ReconnectPolicy::default();
        let library = ExponentialBackoffBuilder::new()
            .with_initial_interval(policy.delay_min)
            .with_max_interval(policy.delay_max)
            .build();
        // The delays are random: many cycles.
        for _ in 0..500 {
            let base = std::time::Instant::now();
            let mut cycle = ExponentialBackoff {
                current_interval: library.initial_interval,
                initial_interval: library.initial_interval,
                randomization_factor: library.randomization_factor,
                multiplier: library.multiplier,
                max_interval: library.max_interval,
                max_elapsed_time: library.max_elapsed_time,
                clock: TestClock {
                    base,
                    offset: Cell::new(Duration::ZERO),
                },
                start_time: base,
            };
            for attempt in 0..policy.attempts_per_cycle {
                let after_attempt = cycle.clock.offset.get() + ATTEMPT_ALLOWANCE;
                cycle.clock.offset.set(after_attempt);
                let delay = cycle.next_backoff().unwrap_or_else(|| {
                    panic!("no delay after attempt {attempt}: the cycle would spin")
                });
                cycle.clock.offset.set(after_attempt + delay);
            }
        }
    }

    /// Pins three behaviours of the library the construction above relies
    /// on: a lost transport is reconnected by the library itself, announced
    /// by `on_reconnect`; when a cycle's attempt limit is reached the
    /// library starts a fresh cycle rather than giving up; and every failed
    /// attempt is followed by a delay (no spinning).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_library_keeps_reconnecting_past_its_attempt_limit_without_spinning() {
        const WAIT: Duration = Duration::from_secs(20);
        let relay = mock_relay::MockRelay::builder()
            .api_key("k")
            .start()
            .await
            .expect("mock relay");
        let policy = ReconnectPolicy {
            delay_min: Duration::from_millis(50),
            delay_max: Duration::from_millis(100),
            attempts_per_cycle: 2,
        };
        let auth = HandshakeAuth {
            api_key: runner_protocol::Secret::new("k"),
            runner_id: uuid::Uuid::new_v4().to_string(),
            runner_secret: runner_protocol::Secret::new("ab".repeat(32)),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let client = builder(&relay.url(), &auth, policy, 1, &tx)
            .connect()
            .await
            .expect("connecting");
        async fn next(rx: &mut mpsc::UnboundedReceiver<Link>) -> Link {
            tokio::time::timeout(WAIT, rx.recv())
                .await
                .expect("waiting for the client library")
                .expect("channel open")
        }
        while !matches!(next(&mut rx).await, Link::Open { .. }) {}

        // The relay goes away for two seconds: about a dozen cycles of two
        // attempts each fail against a closed port.
        let restarting = {
            let relay = relay.clone();
            tokio::spawn(async move { relay.restart(Duration::from_secs(2), false).await })
        };
        let mut attempts = Vec::new();
        let mut errors = 0;
        loop {
            match next(&mut rx).await {
                Link::Reconnecting { at, .. } => attempts.push(at),
                Link::LibraryError { .. } => errors += 1,
                Link::Open { .. } => break,
                Link::Close { .. } => panic!("a lost transport is not a close"),
                _ => {}
            }
        }
        restarting.await.unwrap().expect("relay restarted");
        // Whether the library also reports an error depends on how the
        // transport ended (an abrupt end gives "EngineIO Error", a closed
        // WebSocket nothing); the connection relies on `on_reconnect` only.
        tracing::debug!(errors, "library errors during the outage");
        let limit = usize::from(policy.attempts_per_cycle);
        assert!(
            attempts.len() > 2 * limit,
            "only {} attempts: the library stopped after a cycle",
            attempts.len()
        );
        let smallest_delay = policy
            .delay_min
            .mul_f64(1.0 - ReconnectPolicy::RANDOMIZATION);
        for pair in attempts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= smallest_delay, "attempts {gap:?} apart: spinning");
        }
        let _ = client.disconnect().await;
    }

    #[test]
    fn only_this_module_knows_the_client_library() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "connection.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    !text.contains(concat!("rust_", "socketio")),
                    "{} uses the client library",
                    path.display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 10, "only {checked} files checked");
    }

    #[test]
    fn the_backlog_is_bounded_in_events_and_bytes() {
        let data = |n: usize| {
            RunnerEvent::TerminalData(runner_protocol::TerminalData {
                terminal_id: "t".into(),
                data: "x".repeat(n),
            })
        };
        let mut backlog = Backlog::new(10_000);
        for _ in 0..100 {
            backlog.push(data(1000), Some(1000));
        }
        assert!(backlog.bytes <= 10_000, "{} bytes kept", backlog.bytes);
        assert_eq!(backlog.len(), 9, "1013 bytes each");
        let mut backlog = Backlog::new(usize::MAX);
        for _ in 0..(BACKLOG_LIMIT + 10) {
            backlog.push(runner_protocol::Pong { now: 1 }.into(), None);
        }
        assert_eq!(backlog.len(), BACKLOG_LIMIT);
        // An event larger than the whole limit is still kept, alone.
        let mut backlog = Backlog::new(10);
        backlog.push(data(5), Some(5));
        backlog.push(data(100), Some(100));
        assert_eq!(backlog.len(), 1);
        while !backlog.is_empty() {
            backlog.pop_front();
        }
        assert_eq!(backlog.bytes, 0);
    }

    #[test]
    fn the_relay_url_gives_origin_and_namespace() {
        assert_eq!(
            origin_and_namespace("http://127.0.0.1:7492"),
            ("http://127.0.0.1:7492".into(), "/runner".into())
        );
        assert_eq!(
            origin_and_namespace("https://relay.example/base/"),
            ("https://relay.example".into(), "/base/runner".into())
        );
    }

    #[test]
    fn only_credential_refusals_are_fatal() {
        assert!(is_auth_refusal("unauthorized"));
        assert!(is_auth_refusal("unauthorized: missing runnerSecret"));
        assert!(!is_auth_refusal("relay busy"));
        assert!(!is_auth_refusal(
            "handshake refused by mock-relay (injected fault)"
        ));
    }

    #[test]
    fn connect_errors_are_recognized() {
        assert_eq!(
            connect_error_message(r#"Received an ConnectError frame: {"message":"unauthorized"}"#),
            Some("unauthorized".into())
        );
        assert_eq!(
            connect_error_message(r#"Received an ConnectError frame: "No error message provided""#),
            Some("No error message provided".into())
        );
        assert_eq!(connect_error_message("EngineIO Error"), None);
    }

    #[test]
    fn payloads_are_json_values_not_strings_to_parse() {
        // A string field that itself looks like JSON stays a string.
        let event = RunnerEvent::SkillResult(runner_protocol::SkillResult {
            request_id: Some("42".into()),
            ok: true,
            message: None,
            skills: None,
            content: Some("[1, 2]".into()),
            name: Some("n".into()),
        });
        let Payload::Text(values) = payload_of(&event) else {
            panic!("not a text payload");
        };
        assert_eq!(values.len(), 1);
        assert_eq!(values[0]["requestId"], Value::String("42".into()));
        assert_eq!(values[0]["content"], Value::String("[1, 2]".into()));
    }

    #[test]
    fn incoming_takes_the_first_argument() {
        let Incoming::Json(v) = incoming(Payload::Text(vec![
            serde_json::json!({"a": 1}),
            Value::Null,
        ])) else {
            panic!()
        };
        assert_eq!(v, serde_json::json!({"a": 1}));
        let Incoming::Json(v) = incoming(Payload::Text(vec![])) else {
            panic!()
        };
        assert_eq!(v, Value::Null);
        assert!(matches!(
            incoming(Payload::Binary(vec![1u8].into())),
            Incoming::Binary
        ));
    }

    #[test]
    fn rebuilds_start_at_once_then_follow_the_library_schedule() {
        let policy = ReconnectPolicy::default();
        let mut pacer = Pacer { policy, next: None };
        assert_eq!(pacer.delay(None), Duration::ZERO);
        let mut nominal = policy.delay_min;
        for _ in 0..20 {
            let d = pacer.delay(None);
            assert!(
                d >= nominal.mul_f64(0.5) && d <= nominal.mul_f64(1.5),
                "{d:?} vs {nominal:?}"
            );
            nominal = nominal
                .mul_f64(ReconnectPolicy::MULTIPLIER)
                .min(policy.delay_max);
        }
        assert_eq!(nominal, policy.delay_max);
        // A connection that lasted resets the schedule.
        assert_eq!(pacer.delay(Some(policy.delay_max)), Duration::ZERO);
        // A connection that was kicked at once does not.
        let d = pacer.delay(Some(Duration::from_millis(10)));
        assert!(d >= policy.delay_min.mul_f64(0.5));
    }
}
