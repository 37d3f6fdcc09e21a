//! The REST control API, on the relay's own port under `/api`.
//!
//! Bodies are JSON; errors are `{"error": "…"}` with a fitting status
//! (400 bad input, 401 missing control token, 404 unknown runner or skill,
//! 502 runner not connected, 504 no reply in time). Every handler is a thin
//! mapping onto [`RelayHandle`].
//!
//! | route | does |
//! |---|---|
//! | `GET /api/runners`, `GET /api/runners/{id}` | the registry |
//! | `POST /api/runners/spawn` `{runnerId, cwd?, prompt?, model?}` | `new_session`, waits for `session_ready`/`session_error` |
//! | `POST /api/runners/{id}/sessions/{sessionId}/kill` | `kill_session`, waits for `session_killed`/`session_error` |
//! | `POST /api/runners/restart` `{runnerId}` | `restart` |
//! | `GET`/`POST /api/runners/{id}/skills`, `GET`/`PUT`/`DELETE /api/runners/{id}/skills/{name}` | skill commands |
//! | `POST /api/runners/{id}/files/list` `{path, cwd?}`, `/files/read` `{path, cwd?, encoding?, maxBytes?}` | file commands |
//! | `POST /api/runners/{id}/git/status` `{cwd}`, `/git/diff` `{cwd, path, staged?}` | git commands |
//! | `POST /api/runners/{id}/usage` | `get_usage` |
//! | `POST /api/runners/{id}/terminals` `{cwd?, shell?, cols?, rows?}` | `new_terminal` with a fresh id, waits for `terminal_ready`/`terminal_error` |
//! | `POST /api/runners/{id}/terminals/{terminalId}/input` `{data}` | `terminal_input` (text, base64-encoded by the relay), 202 |
//! | `POST /api/runners/{id}/terminals/{terminalId}/resize` `{cols, rows}` | `terminal_resize`, 202 |
//! | `DELETE /api/runners/{id}/terminals/{terminalId}` | `kill_terminal`, waits for `terminal_exit`/`terminal_error` |
//! | `GET /api/runners/{id}/terminals/{terminalId}/output` | the output kept so far, and the exit code once known |
//! | `POST /api/runners/{id}/emit` `{event, payload}` | any event, unchecked |
//! | `GET /api/transcript?since=N&runnerId=…` (NDJSON), `DELETE /api/transcript` | the recording |
//! | `POST /api/faults/kick` `{runnerId, error?}` | drop a runner on purpose: `error {message}` if given, the namespace DISCONNECT, then the transport closes (socket.io's `disconnect(true)`; a client sees `io server disconnect` and does not reconnect by itself) |
//! | `POST /api/faults/drop-connection` `{runnerId}` | a network failure: the transport closes without DISCONNECT (a client sees `transport close` and reconnects) |
//! | `POST /api/faults/refuse` `{count, message?}` | refuse the next handshakes |
//! | `POST /api/faults/delay` `{ms}`, `/api/faults/drop` `{count}` | delay or drop events to runners |
//! | `POST /api/faults/restart` `{downMs, keepState?}` | stop listening, wait, listen again (answers 202 first) |
//! | `GET /api/events?since=N`, `GET /api/protocol` | the inspector page's live feed and protocol description |
//!
//! The inspector page itself is served at `/`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use runner_protocol::messages::{SKILL_NOT_FOUND, cwd_outside_roots};
use runner_protocol::rules::is_inside_roots;
use runner_protocol::{
    CreateSkill, DeleteSkill, FileEncoding, FileResultBody, GetSkill, GetUsage, GitDiff, GitStatus,
    KillSession, KillTerminal, ListFiles, ListSkills, ModelRef, NewSession, NewTerminal, ReadFile,
    Restart, RunnerEvent, ServerEvent, TerminalInput, TerminalResize, UpdateSkill,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{RelayError, RelayHandle};

/// What the REST handlers share: the relay they drive.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The relay.
    pub relay: RelayHandle,
}

/// The whole HTTP surface of a relay: the `/runner` Socket.IO endpoint and
/// the REST control API.
pub fn app(state: AppState) -> Router {
    let layer = state.relay.shared.layer.clone();
    let policy = state.relay.shared.config.host_policy.clone();
    Router::new()
        .merge(crate::inspector::page_routes().with_state(state.clone()))
        .nest("/api", api_routes(state))
        .layer(layer)
        // Outermost: no request reaches the page, the API or the Socket.IO
        // endpoint before its Host, Origin and body type are checked.
        .layer(middleware::from_fn_with_state(policy, crate::guard::guard))
}

fn api_routes(state: AppState) -> Router {
    Router::new()
        .merge(runner_routes())
        .merge(transcript_routes())
        .merge(fault_routes())
        .merge(crate::inspector::api_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), check_token))
        .with_state(state)
}

fn runner_routes() -> Router<AppState> {
    Router::new()
        .route("/runners", get(list_runners))
        .route("/runners/spawn", post(spawn))
        .route("/runners/restart", post(restart_runner))
        .route("/runners/{id}", get(get_runner))
        .route("/runners/{id}/sessions/{session_id}/kill", post(kill))
        .route("/runners/{id}/skills", get(list_skills).post(create_skill))
        .route(
            "/runners/{id}/skills/{name}",
            get(get_skill).put(update_skill).delete(delete_skill),
        )
        .route("/runners/{id}/files/list", post(list_files))
        .route("/runners/{id}/files/read", post(read_file))
        .route("/runners/{id}/git/status", post(git_status))
        .route("/runners/{id}/git/diff", post(git_diff))
        .route("/runners/{id}/usage", post(usage))
        .route("/runners/{id}/emit", post(emit))
        .route("/runners/{id}/terminals", post(new_terminal))
        .route("/runners/{id}/terminals/{tid}", delete(kill_terminal))
        .route("/runners/{id}/terminals/{tid}/input", post(terminal_input))
        .route(
            "/runners/{id}/terminals/{tid}/resize",
            post(terminal_resize),
        )
        .route("/runners/{id}/terminals/{tid}/output", get(terminal_output))
}

fn transcript_routes() -> Router<AppState> {
    Router::new().route("/transcript", get(transcript).delete(clear_transcript))
}

fn fault_routes() -> Router<AppState> {
    Router::new()
        .route("/faults/kick", post(fault_kick))
        .route("/faults/drop-connection", post(fault_drop_connection))
        .route("/faults/refuse", post(fault_refuse))
        .route("/faults/delay", post(fault_delay))
        .route("/faults/drop", post(fault_drop))
        .route("/faults/restart", post(fault_restart))
}

/// An error answer: `{"error": message}` with `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<RelayError> for ApiError {
    fn from(err: RelayError) -> Self {
        let status = match &err {
            RelayError::UnknownRunner(_) => StatusCode::NOT_FOUND,
            RelayError::NotConnected(_)
            | RelayError::RunnerDisconnected(_)
            | RelayError::Send { .. } => StatusCode::BAD_GATEWAY,
            RelayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RelayError::NoReply(_) | RelayError::Config(_) => StatusCode::BAD_REQUEST,
            RelayError::ShutDown => StatusCode::SERVICE_UNAVAILABLE,
            RelayError::Bind { .. } | RelayError::ServerPanicked(_) | RelayError::AlreadyJoined => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, err.to_string())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

/// Decodes a JSON body; an empty body counts as `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

async fn check_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.relay.shared.config.control_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this control API needs `Authorization: Bearer <control token>`",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route in the control API")
}

// ---- registry ----

async fn list_runners(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.relay.runners()))
}

async fn get_runner(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    match state.relay.runner(&id) {
        Some(info) => ok(json!(info)),
        None => Err(RelayError::UnknownRunner(id).into()),
    }
}

/// The runner, when it is known and connected (404 / 502 otherwise).
fn connected(state: &AppState, id: &str) -> Result<crate::RunnerInfo, ApiError> {
    match state.relay.runner(id) {
        None => Err(RelayError::UnknownRunner(id.to_owned()).into()),
        Some(info) if !info.connected => Err(RelayError::NotConnected(id.to_owned()).into()),
        Some(info) => Ok(info),
    }
}

// ---- sessions and control ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpawnBody {
    runner_id: String,
    cwd: Option<String>,
    prompt: Option<String>,
    model: Option<ModelRef>,
}

async fn spawn(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: SpawnBody = parse(&body)?;
    if body.runner_id.is_empty() {
        return Err(ApiError::bad_request("runnerId must not be empty"));
    }
    let info = connected(&state, &body.runner_id)?;
    if let Some(cwd) = &body.cwd {
        match is_inside_roots(cwd, &info.roots) {
            Ok(true) => {}
            Ok(false) => return Err(ApiError::bad_request(cwd_outside_roots(cwd))),
            Err(err) => return Err(ApiError::bad_request(format!("invalid cwd: {err}"))),
        }
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let event = ServerEvent::NewSession(NewSession {
        session_id: session_id.clone(),
        cwd: body.cwd,
        prompt: body.prompt,
        model: body.model,
        skills: None,
    });
    let timeout = state.relay.timeouts().spawn;
    let answer = |pending: bool| {
        ok(json!({
            "ok": true,
            "runnerId": body.runner_id,
            "sessionId": session_id,
            "pending": pending,
        }))
    };
    match state.relay.request(&body.runner_id, event, timeout).await {
        Ok(RunnerEvent::SessionError(e)) => Err(ApiError::bad_request(e.message)),
        Ok(_) => answer(false),
        Err(RelayError::Timeout { .. }) => answer(true),
        Err(err) => Err(err.into()),
    }
}

async fn kill(
    State(state): State<AppState>,
    Path((id, session_id)): Path<(String, String)>,
) -> ApiResult {
    connected(&state, &id)?;
    let event = ServerEvent::KillSession(KillSession {
        session_id: session_id.clone(),
    });
    let timeout = state.relay.timeouts().kill;
    match state.relay.request(&id, event, timeout).await? {
        RunnerEvent::SessionError(e) => Err(ApiError::bad_request(e.message)),
        _ => ok(json!({ "ok": true, "runnerId": id, "sessionId": session_id })),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunnerBody {
    runner_id: String,
}

async fn restart_runner(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: RunnerBody = parse(&body)?;
    connected(&state, &body.runner_id)?;
    state
        .relay
        .send(&body.runner_id, ServerEvent::Restart(Restart {}))
        .await?;
    ok(json!({ "ok": true, "runnerId": body.runner_id }))
}

// ---- commands with a reply ----

/// Sends a command, waits for its reply, and answers with the reply's
/// payload (or the failure it reports).
async fn command(state: &AppState, id: &str, event: ServerEvent, timeout: Duration) -> ApiResult {
    connected(state, id)?;
    let reply = state.relay.request(id, event, timeout).await?;
    match &reply {
        RunnerEvent::SkillResult(r) if !r.ok => {
            let message = r
                .message
                .clone()
                .unwrap_or_else(|| "skill command failed".into());
            let status = if message == SKILL_NOT_FOUND {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ApiError::new(status, message))
        }
        RunnerEvent::FileResult(r) if !r.ok => {
            let message = match &r.body {
                FileResultBody::Failure(f) => f.message.clone(),
                _ => "file command failed".to_owned(),
            };
            Err(ApiError::bad_request(message))
        }
        _ => ok(reply.payload()),
    }
}

async fn list_skills(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let t = state.relay.timeouts().skills;
    command(&state, &id, ListSkills::default().into(), t).await
}

#[derive(Debug, Deserialize)]
struct SkillBody {
    name: String,
    content: String,
}

async fn create_skill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body: SkillBody = parse(&body)?;
    let t = state.relay.timeouts().skills;
    let event = CreateSkill {
        request_id: None,
        name: body.name,
        content: body.content,
    };
    command(&state, &id, event.into(), t).await
}

async fn get_skill(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    let t = state.relay.timeouts().skills;
    let event = GetSkill {
        request_id: None,
        name,
    };
    command(&state, &id, event.into(), t).await
}

#[derive(Debug, Deserialize)]
struct ContentBody {
    content: String,
}

async fn update_skill(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: ContentBody = parse(&body)?;
    let t = state.relay.timeouts().skills;
    let event = UpdateSkill {
        request_id: None,
        name,
        content: body.content,
    };
    command(&state, &id, event.into(), t).await
}

async fn delete_skill(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    let t = state.relay.timeouts().skills;
    let event = DeleteSkill {
        request_id: None,
        name,
    };
    command(&state, &id, event.into(), t).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileBody {
    path: String,
    cwd: Option<String>,
    encoding: Option<FileEncoding>,
    max_bytes: Option<u64>,
}

/// The wire's `cwd` is required; the REST body may leave it out.
fn default_cwd(path: &str, cwd: Option<String>, listing: bool) -> Result<String, ApiError> {
    if let Some(cwd) = cwd {
        return Ok(cwd);
    }
    if !path.starts_with('/') {
        return Err(ApiError::bad_request(
            "cwd is required when path is relative",
        ));
    }
    if listing {
        return Ok(path.to_owned());
    }
    let parent = std::path::Path::new(path)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/");
    Ok(if parent.is_empty() { "/" } else { parent }.to_owned())
}

async fn list_files(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body: FileBody = parse(&body)?;
    let cwd = default_cwd(&body.path, body.cwd, true)?;
    let t = state.relay.timeouts().files;
    let event = ListFiles {
        request_id: None,
        cwd,
        path: body.path,
    };
    command(&state, &id, event.into(), t).await
}

async fn read_file(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body: FileBody = parse(&body)?;
    let cwd = default_cwd(&body.path, body.cwd, false)?;
    let t = state.relay.timeouts().files;
    let event = ReadFile {
        request_id: None,
        cwd,
        path: body.path,
        encoding: body.encoding,
        max_bytes: body.max_bytes,
    };
    command(&state, &id, event.into(), t).await
}

#[derive(Debug, Deserialize)]
struct GitStatusBody {
    cwd: String,
}

async fn git_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body: GitStatusBody = parse(&body)?;
    let t = state.relay.timeouts().files;
    let event = GitStatus {
        request_id: None,
        cwd: body.cwd,
    };
    command(&state, &id, event.into(), t).await
}

#[derive(Debug, Deserialize)]
struct GitDiffBody {
    cwd: String,
    path: String,
    staged: Option<bool>,
}

async fn git_diff(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body: GitDiffBody = parse(&body)?;
    let t = state.relay.timeouts().files;
    let event = GitDiff {
        request_id: None,
        cwd: body.cwd,
        path: body.path,
        staged: body.staged,
    };
    command(&state, &id, event.into(), t).await
}

async fn usage(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let t = state.relay.timeouts().usage;
    command(&state, &id, GetUsage::default().into(), t).await
}

#[derive(Debug, Deserialize)]
struct EmitBody {
    event: String,
    #[serde(default)]
    payload: Value,
}

async fn emit(State(state): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult {
    let body: EmitBody = parse(&body)?;
    if body.event.is_empty() {
        return Err(ApiError::bad_request("event must not be empty"));
    }
    connected(&state, &id)?;
    state.relay.send_raw(&id, &body.event, body.payload).await?;
    ok(json!({ "ok": true, "event": body.event }))
}

// ---- terminals ----

#[derive(Debug, Deserialize)]
struct NewTerminalBody {
    cwd: Option<String>,
    shell: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

async fn new_terminal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body: NewTerminalBody = parse(&body)?;
    let info = connected(&state, &id)?;
    if let Some(cwd) = &body.cwd {
        match is_inside_roots(cwd, &info.roots) {
            Ok(true) => {}
            Ok(false) => return Err(ApiError::bad_request(cwd_outside_roots(cwd))),
            Err(err) => return Err(ApiError::bad_request(format!("invalid cwd: {err}"))),
        }
    }
    let terminal_id = uuid::Uuid::new_v4().to_string();
    let event = ServerEvent::NewTerminal(NewTerminal {
        terminal_id: terminal_id.clone(),
        cwd: body.cwd,
        shell: body.shell,
        cols: body.cols,
        rows: body.rows,
    });
    let timeout = state.relay.timeouts().terminal;
    match state.relay.request(&id, event, timeout).await? {
        RunnerEvent::TerminalError(e) => Err(ApiError::bad_request(e.message)),
        _ => ok(json!({ "terminalId": terminal_id })),
    }
}

#[derive(Debug, Deserialize)]
struct InputBody {
    data: String,
}

async fn terminal_input(
    State(state): State<AppState>,
    Path((id, terminal_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: InputBody = parse(&body)?;
    connected(&state, &id)?;
    let event = ServerEvent::TerminalInput(TerminalInput {
        terminal_id,
        data: BASE64.encode(body.data.as_bytes()),
    });
    state.relay.send(&id, event).await?;
    accepted()
}

#[derive(Debug, Deserialize)]
struct ResizeBody {
    cols: u16,
    rows: u16,
}

async fn terminal_resize(
    State(state): State<AppState>,
    Path((id, terminal_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: ResizeBody = parse(&body)?;
    connected(&state, &id)?;
    let event = ServerEvent::TerminalResize(TerminalResize {
        terminal_id,
        cols: body.cols,
        rows: body.rows,
    });
    state.relay.send(&id, event).await?;
    accepted()
}

async fn kill_terminal(
    State(state): State<AppState>,
    Path((id, terminal_id)): Path<(String, String)>,
) -> ApiResult {
    connected(&state, &id)?;
    let event = ServerEvent::KillTerminal(KillTerminal {
        terminal_id: terminal_id.clone(),
    });
    let timeout = state.relay.timeouts().terminal;
    match state.relay.request(&id, event, timeout).await? {
        RunnerEvent::TerminalExit(e) => {
            ok(json!({ "terminalId": terminal_id, "exitCode": e.exit_code }))
        }
        RunnerEvent::TerminalError(e) => Err(ApiError::bad_request(e.message)),
        other => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("unexpected reply {}", other.name()),
        )),
    }
}

async fn terminal_output(
    State(state): State<AppState>,
    Path((id, terminal_id)): Path<(String, String)>,
) -> ApiResult {
    match state.relay.terminal_output(&id, &terminal_id)? {
        Some(output) => ok(json!(output)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown terminal {terminal_id} of runner {id}"),
        )),
    }
}

fn accepted() -> ApiResult {
    Ok((StatusCode::ACCEPTED, Json(json!({ "ok": true }))).into_response())
}

// ---- transcript ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TranscriptQuery {
    since: Option<u64>,
    runner_id: Option<String>,
}

async fn transcript(
    State(state): State<AppState>,
    query: Result<Query<TranscriptQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query?;
    let records = state
        .relay
        .transcript_since(query.since.unwrap_or(0), query.runner_id.as_deref());
    let mut body = String::new();
    for record in records {
        let line = serde_json::to_string(&record.masked())
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        body.push_str(&line);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn clear_transcript(State(state): State<AppState>) -> Json<Value> {
    state.relay.clear_transcript();
    Json(json!({ "ok": true }))
}

// ---- faults ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KickBody {
    runner_id: String,
    error: Option<String>,
}

async fn fault_kick(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: KickBody = parse(&body)?;
    state.relay.kick(&body.runner_id, body.error).await?;
    ok(json!({ "ok": true, "runnerId": body.runner_id }))
}

async fn fault_drop_connection(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: RunnerBody = parse(&body)?;
    state.relay.drop_connection(&body.runner_id)?;
    ok(json!({ "ok": true, "runnerId": body.runner_id }))
}

#[derive(Debug, Deserialize)]
struct RefuseBody {
    count: u32,
    message: Option<String>,
}

async fn fault_refuse(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: RefuseBody = parse(&body)?;
    state.relay.refuse_handshakes(body.count, body.message);
    ok(json!({ "ok": true, "count": body.count }))
}

#[derive(Debug, Deserialize)]
struct DelayBody {
    ms: u64,
}

async fn fault_delay(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: DelayBody = parse(&body)?;
    state.relay.delay_outgoing(Duration::from_millis(body.ms));
    ok(json!({ "ok": true, "ms": body.ms }))
}

#[derive(Debug, Deserialize)]
struct DropBody {
    count: u32,
}

async fn fault_drop(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: DropBody = parse(&body)?;
    state.relay.drop_outgoing(body.count);
    ok(json!({ "ok": true, "count": body.count }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestartBody {
    down_ms: u64,
    #[serde(default)]
    keep_state: bool,
}

async fn fault_restart(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let body: RestartBody = parse(&body)?;
    // Answer first: this very connection is about to be closed.
    drop(
        state
            .relay
            .start_restart(Duration::from_millis(body.down_ms), body.keep_state)?,
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "ok": true, "downMs": body.down_ms, "keepState": body.keep_state })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cwd_follows_the_rest_contract() {
        assert_eq!(default_cwd("/w/a", None, true).unwrap(), "/w/a");
        assert_eq!(default_cwd("/w/a.txt", None, false).unwrap(), "/w");
        assert_eq!(default_cwd("/a.txt", None, false).unwrap(), "/");
        assert_eq!(default_cwd("rel", Some("/w".into()), false).unwrap(), "/w");
        assert_eq!(
            default_cwd("rel", None, false).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn bodies_report_the_missing_field() {
        let err = parse::<SpawnBody>(&Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("runnerId"), "{}", err.message);
        let err = parse::<SpawnBody>(&Bytes::from_static(b"{not json")).unwrap_err();
        assert!(err.message.starts_with("invalid body"), "{}", err.message);
        assert!(parse::<TranscriptQuery>(&Bytes::new()).is_ok());
    }

    #[test]
    fn relay_errors_map_to_statuses() {
        let cases = [
            (RelayError::UnknownRunner("x".into()), 404),
            (RelayError::NotConnected("x".into()), 502),
            (
                RelayError::Timeout {
                    what: "w".into(),
                    after: Duration::from_secs(1),
                },
                504,
            ),
            (RelayError::NoReply("restart"), 400),
        ];
        for (err, status) in cases {
            assert_eq!(ApiError::from(err).status.as_u16(), status);
        }
    }
}
