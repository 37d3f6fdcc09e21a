//! The `/runner` namespace: the handshake check, registration, and the
//! handling of every incoming event.
//!
//! The connect, message and disconnect handlers are plain structs with
//! synchronous `call`s rather than async closures: socketioxide spawns one
//! task per async handler call, and separate tasks could record two events of
//! one socket out of order. Everything here is quick, lock-and-update work;
//! the only waiting (a configured send delay) is moved to a spawned task.

use std::sync::{Arc, Weak};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use runner_protocol::messages::{UNAUTHORIZED, secret_mismatch};
use runner_protocol::names::{self, NAMESPACE};
use runner_protocol::{RunnerEvent, Secret};
use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::handler::{
    ConnectHandler, DisconnectHandler, FromMessageParts, MessageHandler, Value as RawValue,
};
use socketioxide::socket::{DisconnectReason, Sid, Socket};

use crate::recorder::RecordDirection;
use crate::registry::{Registration, SocketMeta};
use crate::{Close, Shared};

/// Installs the namespace on the relay's `SocketIo`.
pub(crate) fn attach(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let middleware = {
        let weak = weak.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let weak = weak.clone();
            async move {
                match weak.upgrade() {
                    Some(shared) => authenticate(&shared, &socket, auth),
                    None => Err(Refusal("relay is shutting down".to_owned())),
                }
            }
        }
    };
    shared
        .io
        .ns(NAMESPACE, OnConnect { shared: weak }.with(middleware));
}

/// The message a refused client gets (`{"message": …}` in its connect error).
#[derive(Debug)]
pub(crate) struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The handshake check: the injected refusal fault first, then `apiKey`,
/// `runnerId` and `runnerSecret`. Accepted sockets get their event handlers
/// here, before the client is told it is connected, so that no early event
/// can arrive before a handler exists.
fn authenticate(
    shared: &Arc<Shared>,
    socket: &SocketRef,
    auth: Result<Value, socketioxide::ParserError>,
) -> Result<(), Refusal> {
    let sid = socket.id.to_string();
    let refuse = |message: String, reason: String, runner_id: Option<&str>| {
        shared.recorder.push(
            RecordDirection::Connection,
            runner_id,
            Some(&sid),
            "handshake_refused",
            json!({ "reason": reason, "message": message }),
        );
        Err(Refusal(message))
    };
    if let Some(message) = shared.faults.take_refusal() {
        return refuse(message, "refusal injected by a fault".to_owned(), None);
    }
    let auth = match auth {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            return refuse(
                UNAUTHORIZED.to_owned(),
                format!(
                    "auth must be an object, got {}",
                    runner_protocol::json_type_name(&other)
                ),
                None,
            );
        }
        Err(err) => {
            return refuse(
                UNAUTHORIZED.to_owned(),
                format!("auth could not be read: {err}"),
                None,
            );
        }
    };
    let runner_id = auth.get("runnerId").and_then(Value::as_str);
    match auth.get("apiKey") {
        None => {
            return refuse(UNAUTHORIZED.to_owned(), "apiKey missing".into(), runner_id);
        }
        Some(Value::String(key)) if shared.config.api_keys.iter().any(|k| k == key) => {}
        Some(Value::String(_)) => {
            return refuse(
                UNAUTHORIZED.to_owned(),
                "apiKey not accepted".into(),
                runner_id,
            );
        }
        Some(other) => {
            return refuse(
                UNAUTHORIZED.to_owned(),
                format!(
                    "apiKey must be a string, got {}",
                    runner_protocol::json_type_name(other)
                ),
                runner_id,
            );
        }
    }
    let mut fields = Vec::with_capacity(2);
    for field in ["runnerId", "runnerSecret"] {
        match auth.get(field) {
            Some(Value::String(value)) => fields.push(value.clone()),
            None => {
                let message = format!("{UNAUTHORIZED}: missing {field}");
                return refuse(message.clone(), message, runner_id);
            }
            Some(other) => {
                let message = format!(
                    "{UNAUTHORIZED}: {field} must be a string, got {}",
                    runner_protocol::json_type_name(other)
                );
                return refuse(message.clone(), message, runner_id);
            }
        }
    }
    let secret = Secret::new(fields.pop().unwrap_or_default());
    let runner_id = fields.pop().unwrap_or_default();
    shared.lock_registry().add_socket(
        socket.id,
        SocketMeta {
            runner_id: runner_id.clone(),
            secret,
        },
    );
    shared.recorder.push(
        RecordDirection::Connection,
        Some(&runner_id),
        Some(&sid),
        "handshake_accepted",
        json!({ "runnerId": runner_id }),
    );
    let weak = Arc::downgrade(shared);
    socket.on_fallback(Inbound {
        shared: weak.clone(),
    });
    socket.on_disconnect(Closed { shared: weak });
    Ok(())
}

/// Marker types that keep our handler impls apart from socketioxide's
/// closure impls.
#[derive(Debug)]
pub(crate) enum ConnectMarker {}
/// See [`ConnectMarker`].
#[derive(Debug)]
pub(crate) enum InboundMarker {}
/// See [`ConnectMarker`].
#[derive(Debug)]
pub(crate) enum ClosedMarker {}

#[derive(Debug, Clone)]
struct OnConnect {
    shared: Weak<Shared>,
}

impl ConnectHandler<LocalAdapter, ConnectMarker> for OnConnect {
    fn call(&self, s: Arc<Socket<LocalAdapter>>, _auth: Option<RawValue>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let runner_id = shared
            .lock_registry()
            .socket(s.id)
            .map(|m| m.runner_id.clone());
        shared.recorder.push(
            RecordDirection::Connection,
            runner_id.as_deref(),
            Some(&s.id.to_string()),
            "connect",
            json!({ "runnerId": runner_id }),
        );
    }
}

#[derive(Debug, Clone)]
struct Inbound {
    shared: Weak<Shared>,
}

impl MessageHandler<LocalAdapter, InboundMarker> for Inbound {
    fn call(&self, s: Arc<Socket<LocalAdapter>>, mut v: RawValue, ack_id: Option<i64>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let name = match Event::from_message_parts(&s, &mut v, &ack_id) {
            Ok(Event(name)) => name,
            Err(err) => {
                tracing::warn!(socket_id = %s.id, %err, "unreadable event name");
                return;
            }
        };
        let payload = match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
            Ok(TryData(Ok(payload))) => payload,
            Ok(TryData(Err(err))) => {
                tracing::warn!(socket_id = %s.id, event = %name, %err, "unreadable payload");
                Value::Null
            }
            Err(never) => match never {},
        };
        shared.inbound(s.id, &name, payload);
    }
}

#[derive(Debug, Clone)]
struct Closed {
    shared: Weak<Shared>,
}

impl DisconnectHandler<LocalAdapter, ClosedMarker> for Closed {
    fn call_with_defer(
        &self,
        s: Arc<Socket<LocalAdapter>>,
        reason: DisconnectReason,
        defer: fn(Arc<Socket<LocalAdapter>>),
    ) {
        if let Some(shared) = self.shared.upgrade() {
            shared.socket_closed(s.id, reason);
        }
        defer(s);
    }
}

impl Shared {
    /// One event from a runner: record it, then act on it.
    fn inbound(self: &Arc<Self>, sid: Sid, name: &str, payload: Value) {
        if name == names::REGISTER_RUNNER {
            let meta = self.lock_registry().socket(sid).cloned();
            self.recorder.push(
                RecordDirection::In,
                meta.as_ref().map(|m| m.runner_id.as_str()),
                Some(&sid.to_string()),
                name,
                payload.clone(),
            );
            if let Some(meta) = meta {
                self.register(sid, meta, payload);
            }
            return;
        }
        let runner_id = self
            .lock_registry()
            .socket(sid)
            .map(|m| m.runner_id.clone());
        let decoded = RunnerEvent::decode(name, payload.clone());
        // Terminal output is stored before the event is recorded, so that
        // whoever waits for the record finds the output already there.
        if let Ok(event) = &decoded {
            self.terminal_event(sid, event);
        }
        // The payload itself goes to the transcript: no second copy.
        self.recorder.push(
            RecordDirection::In,
            runner_id.as_deref(),
            Some(&sid.to_string()),
            name,
            payload,
        );
        let event = match decoded {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(
                    runner_id = runner_id.as_deref().unwrap_or("-"),
                    %err,
                    "event does not decode"
                );
                return;
            }
        };
        {
            let mut registry = self.lock_registry();
            if let Some(info) = registry.runner_of_current(sid) {
                match &event {
                    RunnerEvent::SessionReady(p) => info.add_session(&p.session_id),
                    RunnerEvent::SessionKilled(p) => info.remove_session(&p.session_id),
                    RunnerEvent::SessionExited(p) => info.remove_session(&p.session_id),
                    RunnerEvent::SessionsList(p) => info.set_sessions(p.sessions.clone()),
                    RunnerEvent::RunnerHeartbeat(p) => {
                        info.set_sessions(
                            p.sessions.iter().map(|s| s.session_id.clone()).collect(),
                        );
                        info.last_heartbeat = Some(p.clone());
                    }
                    RunnerEvent::SkillsList(p) => info.skills = p.skills.clone(),
                    RunnerEvent::SkillResult(p) => {
                        if let Some(skills) = &p.skills {
                            info.skills = skills.clone();
                        }
                    }
                    RunnerEvent::UsageData(p) => info.last_usage = Some(p.data.clone()),
                    _ => {}
                }
            }
        }
        if let Some(runner_id) = runner_id {
            self.lock_pending().resolve(&runner_id, &event);
        }
    }

    /// Keeps terminal output and exit codes for the control API.
    fn terminal_event(&self, sid: Sid, event: &RunnerEvent) {
        match event {
            RunnerEvent::TerminalData(p) => match BASE64.decode(&p.data) {
                Ok(bytes) => self
                    .lock_registry()
                    .terminal_data(sid, &p.terminal_id, &bytes),
                Err(err) => tracing::warn!(
                    terminal_id = %p.terminal_id,
                    %err,
                    "terminal_data is not base64"
                ),
            },
            RunnerEvent::TerminalReady(p) => {
                self.lock_registry()
                    .terminal_of_current(sid, &p.terminal_id);
            }
            RunnerEvent::TerminalExit(p) => {
                if let Some(t) = self
                    .lock_registry()
                    .terminal_of_current(sid, &p.terminal_id)
                {
                    t.set_exit(p.exit_code);
                }
            }
            _ => {}
        }
    }

    /// `register_runner`, as the real relay does it.
    fn register(self: &Arc<Self>, sid: Sid, meta: SocketMeta, payload: Value) {
        let fallback_id = meta.runner_id.clone();
        let reply_error = |message: String, close: bool| {
            self.reply(
                sid,
                Some(fallback_id.clone()),
                names::ERROR,
                json!({ "message": message }),
                close,
            );
        };
        let register = match RunnerEvent::decode(names::REGISTER_RUNNER, payload) {
            Ok(RunnerEvent::RegisterRunner(register)) => register,
            Ok(other) => {
                tracing::error!(
                    event = other.name(),
                    "register_runner decoded as another event"
                );
                return;
            }
            Err(err) => {
                reply_error(err.to_string(), false);
                return;
            }
        };
        let runner_id = register.runner_id.clone().unwrap_or(meta.runner_id);
        let secret = register.runner_secret.clone().unwrap_or(meta.secret);
        let (now_us, now_ms) = (self.recorder.now_us(), unix_ms());
        let outcome = self
            .lock_registry()
            .register(sid, &runner_id, &secret, &register, now_us, now_ms);
        match outcome {
            Registration::SecretMismatch => {
                tracing::warn!(%runner_id, "registration refused: secret mismatch");
                self.reply(
                    sid,
                    Some(runner_id.clone()),
                    names::ERROR,
                    json!({ "message": secret_mismatch(&runner_id) }),
                    true,
                );
            }
            Registration::Accepted { replaced } => {
                if let Some(old) = replaced {
                    self.recorder.push(
                        RecordDirection::Connection,
                        Some(&runner_id),
                        Some(&sid.to_string()),
                        "runner_replaced",
                        json!({ "oldSocketId": old.to_string() }),
                    );
                }
                self.registered.send_modify(|n| *n += 1);
                self.reply(
                    sid,
                    Some(runner_id.clone()),
                    names::RUNNER_REGISTERED,
                    json!({ "runnerId": runner_id }),
                    false,
                );
            }
        }
    }

    /// A reply from inside a handler: sent at once, or from a task when a
    /// delay fault is set. With `close`, the namespace DISCONNECT packet
    /// follows and then the transport closes, as after socket.io's
    /// `disconnect(true)` (the secret-mismatch path).
    fn reply(
        self: &Arc<Self>,
        sid: Sid,
        runner_id: Option<String>,
        event: &'static str,
        payload: Value,
        close: bool,
    ) {
        let send = {
            let shared = self.clone();
            move || {
                if shared.faults.take_drop() {
                    shared.record_dropped(sid, runner_id.as_deref(), event, &payload);
                } else if let Err(err) = shared.emit_now(sid, runner_id.as_deref(), event, &payload)
                {
                    tracing::warn!(%err, "reply not sent");
                }
                if close {
                    shared.close_socket(sid, Close::Disconnect);
                }
            }
        };
        let delay = self.faults.delay();
        if delay.is_zero() {
            send();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send();
            });
        }
    }

    /// A socket left: record why, mark its runner disconnected and fail the
    /// requests that were waiting on it.
    fn socket_closed(&self, sid: Sid, reason: DisconnectReason) {
        let runner_id = self
            .lock_registry()
            .socket(sid)
            .map(|m| m.runner_id.clone());
        self.recorder.push(
            RecordDirection::Connection,
            runner_id.as_deref(),
            Some(&sid.to_string()),
            "disconnect",
            json!({ "reason": reason.to_string() }),
        );
        let gone = self.lock_registry().socket_closed(sid);
        if let Some(runner_id) = gone {
            self.lock_pending().runner_gone(&runner_id);
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
