//! Sessions: one worker process per session, spawned and stopped on the
//! relay's command (`new_session`, `kill_session`).
//!
//! A worker is the configured worker command (`PIZZAPI_WORKER_CMD` /
//! `--worker-cmd`, already split into words by the caller), run without a
//! shell, in the session's working directory, in a process group of its own,
//! with stdin at `/dev/null`. It learns about its session from `PIZZAPI_*`
//! environment variables (protocol reference, section 3); besides those it
//! inherits the runner's environment without the runner's own configuration
//! ([`crate::config::config_variables`]).
//!
//! Each session has one supervisor task that owns the worker process:
//!
//! * it forwards every stdout line that is a JSON object as a
//!   `runner_session_event`, and logs every other stdout and stderr line.
//!   Events go out as bulk data ([`Outbox::emit_bulk`]): while the outbox
//!   is full, stdout is not read, the pipe fills and the worker's writes
//!   block — a slow relay slows the worker down;
//! * when the worker exits with code 43 it spawns it again, without the
//!   initial prompt and model, and emits `session_ready` again;
//! * when the worker exits otherwise it emits `session_exited`;
//! * when asked to stop (`kill_session`, [`SessionManager::shutdown`]) it
//!   sends SIGTERM to the process group, SIGKILL after the grace period, and
//!   emits `session_killed` once the worker is gone.
//!
//! Whatever way a worker ends, its process group gets a final SIGKILL, so no
//! grandchild of a session outlives it.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use runner_protocol::rules::join_path;
use runner_protocol::{
    HeartbeatSession, KillSession, ModelRef, NewSession, RunnerSessionEvent, Secret, SessionError,
    SessionExited, SessionKilled, SessionReady, SessionsList, messages,
};
use rustix::fs::OFlags;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::beneath::{self, BeneathError, Opened};
use crate::outbox::Outbox;

/// The longest worker output line the runner keeps in memory. A longer line
/// is discarded (with a warning), so a worker cannot exhaust the runner's
/// memory by never printing a newline.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The exit code with which a worker asks to be spawned again.
pub const RESTART_EXIT_CODE: i32 = messages::WORKER_EXIT_RESTART;

/// The message of a `session_error` when no worker command is configured.
pub const NO_WORKER_COMMAND: &str =
    "No worker command configured: set PIZZAPI_WORKER_CMD or pass --worker-cmd to the runner";

/// How long, after a worker is gone, its output readers may take to reach
/// the end of the pipes before they are abandoned.
const READER_DRAIN: Duration = Duration::from_secs(2);

/// A worker that asks for a restart sooner than this after its spawn counts
/// as a quick restart; the second quick restart in a row waits
/// [`RESTART_PAUSE`] first, so a worker that always exits 43 cannot spin.
const QUICK_RESTART: Duration = Duration::from_secs(1);
const RESTART_PAUSE: Duration = Duration::from_secs(1);

const ENV_SESSION_ID: &str = "PIZZAPI_SESSION_ID";
const ENV_API_KEY: &str = "PIZZAPI_API_KEY";
const ENV_RELAY_URL: &str = "PIZZAPI_RELAY_URL";
const ENV_WORKER_CWD: &str = "PIZZAPI_WORKER_CWD";
const ENV_INITIAL_PROMPT: &str = "PIZZAPI_WORKER_INITIAL_PROMPT";
const ENV_INITIAL_MODEL_PROVIDER: &str = "PIZZAPI_WORKER_INITIAL_MODEL_PROVIDER";
const ENV_INITIAL_MODEL_ID: &str = "PIZZAPI_WORKER_INITIAL_MODEL_ID";
const ENV_USAGE_CACHE_PATH: &str = "PIZZAPI_RUNNER_USAGE_CACHE_PATH";

/// What the session manager needs from the runner's configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The worker command, split into program and arguments; `None` (or an
    /// empty vector) means no worker is configured and every `new_session`
    /// is refused with [`NO_WORKER_COMMAND`].
    pub worker_cmd: Option<Vec<String>>,
    /// The workspace roots, already canonical; empty means unscoped.
    pub roots: Vec<PathBuf>,
    /// The working directory of a session that asks for none (the first
    /// root, else `$HOME`). It is confined to the roots like a requested one.
    pub default_cwd: PathBuf,
    /// How long a worker has between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The API key, passed to workers as `PIZZAPI_API_KEY`.
    pub api_key: Secret,
    /// The relay URL, passed to workers as `PIZZAPI_RELAY_URL`.
    pub relay_url: String,
    /// The usage cache file, passed to workers as
    /// `PIZZAPI_RUNNER_USAGE_CACHE_PATH`.
    pub usage_cache_path: PathBuf,
    /// The most sessions running at once.
    pub max_sessions: usize,
}

/// Why a `new_session` was refused. `Display` is the `session_error` message.
#[derive(Debug, thiserror::Error)]
enum SpawnError {
    #[error("{}", messages::MISSING_SESSION_ID)]
    MissingSessionId,
    #[error("{}", messages::session_already_running(.0))]
    AlreadyRunning(String),
    #[error("{}", messages::cwd_outside_roots(.0))]
    CwdOutsideRoots(String),
    #[error("Requested cwd does not exist: {0}")]
    CwdMissing(String),
    #[error("Requested cwd is not a directory: {0}")]
    CwdNotADirectory(String),
    #[error("Requested cwd cannot be used: {cwd}: {reason}")]
    CwdUnusable { cwd: String, reason: String },
    #[error("{NO_WORKER_COMMAND}")]
    NoWorkerCommand,
    #[error("Failed to spawn worker {program:?}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("The runner is shutting down")]
    ShuttingDown,
    #[error(
        "Too many sessions: {0} are running, the limit of this runner (--max-sessions / PIZZAPI_MAX_SESSIONS)"
    )]
    TooMany(usize),
}

/// The running sessions and their workers. Cheap to clone (an `Arc` inside);
/// every clone manages the same sessions.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: SessionSettings,
    outbox: Outbox,
    state: Mutex<State>,
    /// The supervisor tasks, one per session; [`SessionManager::shutdown`]
    /// waits for them.
    supervisors: TaskTracker,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Entry>,
    closing: bool,
}

#[derive(Debug)]
struct Entry {
    /// The current worker's pid, which is also its process group id.
    pid: u32,
    /// When the current worker was spawned, in ms since the epoch.
    started_at: u64,
    /// A `kill_session` (or the shutdown) is under way: no second
    /// `session_killed`, no respawn, no `session_exited`.
    killing: bool,
    /// Cancelled to make the supervisor stop the worker.
    stop: CancellationToken,
}

/// Where a session's worker runs, and whether the relay chose it. The
/// directory is held open for the session's life: every spawn and respawn
/// starts in it through the handle, whatever its name leads to meanwhile.
#[derive(Debug)]
struct WorkDir {
    dir: Opened,
    path: PathBuf,
    requested: bool,
}

impl SessionManager {
    /// A manager with no sessions, emitting its events into `outbox`.
    pub fn new(settings: SessionSettings, outbox: Outbox) -> Self {
        SessionManager {
            inner: Arc::new(Inner {
                settings,
                outbox,
                state: Mutex::new(State::default()),
                supervisors: TaskTracker::new(),
            }),
        }
    }

    /// Handles `new_session`: checks the request, spawns the worker and
    /// emits `session_ready`, or emits `session_error` saying why not. Later
    /// events of the session (`runner_session_event`, `session_ready` after
    /// a restart, `session_exited`) follow from its supervisor task.
    ///
    /// A relative `cwd` is taken relative to the default working directory;
    /// an empty one counts as absent. The worker runs in the resolved
    /// directory (symlinks followed), and `PIZZAPI_WORKER_CWD` names that
    /// resolved directory when the request gave a `cwd`.
    pub async fn new_session(&self, req: NewSession) {
        let session_id = req.session_id.clone();
        if let Err(err) = self.start(req).await {
            let session_id = match err {
                SpawnError::MissingSessionId => String::new(),
                _ => session_id,
            };
            tracing::warn!(session_id = %session_id, error = %err, "new_session refused");
            self.inner.outbox.emit(SessionError {
                session_id,
                message: err.to_string(),
            });
        }
    }

    /// Handles `kill_session`: starts stopping the worker and returns; the
    /// supervisor emits `session_killed` once the worker's process group is
    /// gone (SIGTERM, then SIGKILL after the grace period). A session already
    /// being killed is left alone (no second `session_killed`, no error); an
    /// unknown session gets `session_error` `Session not found`.
    pub async fn kill_session(&self, req: KillSession) {
        let session_id = req.session_id;
        let mut state = self.inner.lock();
        match state.sessions.get_mut(&session_id) {
            None => {
                drop(state);
                tracing::warn!(session_id = %session_id, "kill_session for an unknown session");
                self.inner.outbox.emit(SessionError {
                    session_id,
                    message: messages::SESSION_NOT_FOUND.to_owned(),
                });
            }
            Some(entry) if entry.killing => {
                tracing::debug!(session_id = %session_id, "kill_session: already being killed");
            }
            Some(entry) => {
                tracing::info!(session_id = %session_id, pid = entry.pid, "killing session");
                entry.killing = true;
                entry.stop.cancel();
            }
        }
    }

    /// The ids of the sessions, sorted (for `sessions_list`). A session being
    /// killed is listed until its worker is gone.
    pub fn list(&self) -> SessionsList {
        let mut sessions: Vec<String> = self.inner.lock().sessions.keys().cloned().collect();
        sessions.sort();
        SessionsList { sessions }
    }

    /// The sessions with their current worker's pid and spawn time, sorted by
    /// id (for `runner_heartbeat`).
    pub fn heartbeat_sessions(&self) -> Vec<HeartbeatSession> {
        let state = self.inner.lock();
        let mut sessions: Vec<HeartbeatSession> = state
            .sessions
            .iter()
            .map(|(id, entry)| HeartbeatSession {
                session_id: id.clone(),
                pid: entry.pid,
                started_at: entry.started_at,
            })
            .collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        sessions
    }

    /// Stops every worker (SIGTERM to each process group, SIGKILL after the
    /// grace period) and returns when all of them and their process groups
    /// are gone. Later `new_session`s are refused.
    pub async fn shutdown(&self) {
        {
            let mut state = self.inner.lock();
            state.closing = true;
            for (id, entry) in &mut state.sessions {
                if !entry.killing {
                    tracing::info!(session_id = %id, pid = entry.pid, "stopping session for shutdown");
                    entry.killing = true;
                    entry.stop.cancel();
                }
            }
        }
        self.inner.supervisors.close();
        self.inner.supervisors.wait().await;
    }

    async fn start(&self, req: NewSession) -> Result<(), SpawnError> {
        let session_id = req.session_id.clone();
        if session_id.trim().is_empty() {
            return Err(SpawnError::MissingSessionId);
        }
        self.inner.check_can_start(&session_id)?;

        let settings = &self.inner.settings;
        let roots = settings.roots.clone();
        let default_cwd = settings.default_cwd.clone();
        let requested = req.cwd.clone().filter(|cwd| !cwd.is_empty());
        let workdir = tokio::task::spawn_blocking(move || {
            resolve_workdir(requested.as_deref(), &default_cwd, &roots)
        })
        .await
        .map_err(|err| SpawnError::CwdUnusable {
            cwd: req.cwd.clone().unwrap_or_default(),
            reason: err.to_string(),
        })??;

        let program = settings
            .worker_cmd
            .as_ref()
            .filter(|cmd| !cmd.is_empty())
            .ok_or(SpawnError::NoWorkerCommand)?;

        // Everything from the re-check to handing the worker to its
        // supervisor happens under the lock and without an await: a
        // concurrent `new_session` for the same id, a `kill_session` or the
        // shutdown sees either no session or one with a supervisor.
        let mut state = self.inner.lock();
        if state.closing {
            return Err(SpawnError::ShuttingDown);
        }
        if state.sessions.contains_key(&session_id) {
            return Err(SpawnError::AlreadyRunning(session_id));
        }
        if state.sessions.len() >= settings.max_sessions {
            return Err(SpawnError::TooMany(settings.max_sessions));
        }
        let initial = Initial {
            prompt: req.prompt.as_deref(),
            model: req.model.as_ref(),
        };
        let child = spawn_worker(settings, program, &session_id, &workdir, Some(initial))?;
        let pid = child.id().unwrap_or_default();
        let stop = CancellationToken::new();
        state.sessions.insert(
            session_id.clone(),
            Entry {
                pid,
                started_at: now_ms(),
                killing: false,
                stop: stop.clone(),
            },
        );
        tracing::info!(session_id = %session_id, pid, cwd = %workdir.path.display(), "worker spawned");
        self.inner.outbox.emit(SessionReady {
            session_id: session_id.clone(),
        });
        let worker = Worker::attach(child, &session_id, &self.inner.outbox);
        let span = tracing::info_span!("session", session_id = %session_id);
        self.inner.supervisors.spawn(
            supervise(Arc::clone(&self.inner), session_id, worker, stop, workdir).instrument(span),
        );
        Ok(())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is a single insert/remove/field store), so a
        // poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_can_start(&self, session_id: &str) -> Result<(), SpawnError> {
        let state = self.lock();
        if state.closing {
            return Err(SpawnError::ShuttingDown);
        }
        if state.sessions.contains_key(session_id) {
            return Err(SpawnError::AlreadyRunning(session_id.to_owned()));
        }
        if state.sessions.len() >= self.settings.max_sessions {
            return Err(SpawnError::TooMany(self.settings.max_sessions));
        }
        Ok(())
    }

    fn finish_killed(&self, session_id: &str) {
        self.lock().sessions.remove(session_id);
        tracing::info!(session_id = %session_id, "session killed");
        self.outbox.emit(SessionKilled {
            session_id: session_id.to_owned(),
        });
    }
}

/// Resolves the working directory: the requested one (relative to the
/// default one when relative) or the default, with `..` and symlinks
/// resolved, inside the roots, existing, a directory. Blocking.
fn resolve_workdir(
    requested: Option<&str>,
    default_cwd: &Path,
    roots: &[PathBuf],
) -> Result<WorkDir, SpawnError> {
    let shown = requested
        .map(str::to_owned)
        .unwrap_or_else(|| default_cwd.display().to_string());
    let unusable = |reason: String| SpawnError::CwdUnusable {
        cwd: shown.clone(),
        reason,
    };
    let joined = match requested {
        Some(cwd) => join_path(&default_cwd.to_string_lossy(), cwd)
            .map_err(|err| unusable(err.to_string()))?,
        None => default_cwd.to_path_buf(),
    };
    let opened = match beneath::open(&joined, roots, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(opened) => opened,
        Err(BeneathError::Outside) => return Err(SpawnError::CwdOutsideRoots(shown)),
        Err(BeneathError::Io(err)) if err.kind() == io::ErrorKind::NotFound => {
            return Err(SpawnError::CwdMissing(shown));
        }
        Err(BeneathError::Io(err)) if err.kind() == io::ErrorKind::NotADirectory => {
            // The path itself is something else, or a component on the way.
            return Err(match beneath::open(&joined, roots, OFlags::PATH) {
                Ok(_) => SpawnError::CwdNotADirectory(shown),
                Err(_) => SpawnError::CwdMissing(shown),
            });
        }
        Err(err) => return Err(unusable(err.to_string())),
    };
    Ok(WorkDir {
        path: opened.path.clone(),
        dir: opened,
        requested: requested.is_some(),
    })
}

/// The first spawn's extra environment.
#[derive(Debug, Clone, Copy)]
struct Initial<'a> {
    prompt: Option<&'a str>,
    model: Option<&'a ModelRef>,
}

fn spawn_worker(
    settings: &SessionSettings,
    program: &[String],
    session_id: &str,
    workdir: &WorkDir,
    initial: Option<Initial<'_>>,
) -> Result<Child, SpawnError> {
    let (name, args) = program.split_first().ok_or(SpawnError::NoWorkerCommand)?;
    let mut command = Command::new(name);
    command
        .args(args)
        // The held directory itself, not its name (see `Opened::proc_path`).
        .current_dir(workdir.dir.proc_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own: signals reach the worker and everything it
        // started, and a Ctrl-C at the runner's terminal does not.
        .process_group(0)
        // Last resort if the supervisor is dropped without stopping it
        // (runtime torn down); the group guard takes the rest of the group.
        .kill_on_drop(true);
    // The runner's own configuration (its API key under another name, its
    // roots, its limits) is not the worker's business.
    for var in crate::config::config_variables() {
        command.env_remove(var);
    }
    command
        .env(ENV_SESSION_ID, session_id)
        .env(ENV_API_KEY, settings.api_key.expose())
        .env(ENV_RELAY_URL, &settings.relay_url)
        .env(ENV_USAGE_CACHE_PATH, &settings.usage_cache_path);
    // Inherited values must not leak in: a respawned worker must see no
    // initial prompt even if the runner's own environment had one.
    for var in [
        ENV_WORKER_CWD,
        ENV_INITIAL_PROMPT,
        ENV_INITIAL_MODEL_PROVIDER,
        ENV_INITIAL_MODEL_ID,
    ] {
        command.env_remove(var);
    }
    if workdir.requested {
        command.env(ENV_WORKER_CWD, &workdir.path);
    }
    if let Some(initial) = initial {
        if let Some(prompt) = initial.prompt {
            command.env(ENV_INITIAL_PROMPT, prompt);
        }
        if let Some(model) = initial.model {
            command
                .env(ENV_INITIAL_MODEL_PROVIDER, &model.provider)
                .env(ENV_INITIAL_MODEL_ID, &model.id);
        }
    }
    command.spawn().map_err(|source| SpawnError::Spawn {
        program: name.clone(),
        source,
    })
}

/// One spawned worker: the process, its output readers, and a guard that
/// kills its process group if the worker is dropped while still running.
#[derive(Debug)]
struct Worker {
    child: Child,
    group: GroupGuard,
    readers: Vec<JoinHandle<()>>,
    spawned: Instant,
}

impl Worker {
    fn attach(mut child: Child, session_id: &str, outbox: &Outbox) -> Self {
        let pid = child.id().unwrap_or_default();
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(forward_stdout(
                BufReader::new(stdout),
                session_id.to_owned(),
                outbox.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(log_stderr(stderr, session_id.to_owned())));
        }
        Worker {
            child,
            group: GroupGuard {
                pgid: i32::try_from(pid).ok().map(Pid::from_raw),
                armed: true,
            },
            readers,
            spawned: Instant::now(),
        }
    }

    /// SIGTERM to the group. The worker and the rest of its group share the
    /// grace period to exit; whatever is still alive when it ends gets
    /// SIGKILL. Then [`Worker::finish`].
    async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.group.signal(Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        let status = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => {
                // The worker is gone; its children may still be cleaning up
                // after their SIGTERM. They get what is left of the grace.
                if let Some(pgid) = self.group.pgid {
                    let _ = tokio::time::timeout_at(deadline, group_exited(pgid)).await;
                }
                status
            }
            Err(_) => {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "worker outlived the grace period; sending SIGKILL"
                );
                self.group.signal(Signal::SIGKILL);
                self.child.wait().await
            }
        };
        self.finish().await;
        status.ok()
    }

    /// After the worker has been reaped: SIGKILL to what is left of its
    /// group (grandchildren that ignored SIGTERM, or were never told), then
    /// let the readers reach the end of the output.
    async fn finish(&mut self) {
        self.group.signal(Signal::SIGKILL);
        self.group.armed = false;
        for mut reader in self.readers.drain(..) {
            if tokio::time::timeout(READER_DRAIN, &mut reader)
                .await
                .is_err()
            {
                tracing::warn!("worker output still open after the worker ended; no longer read");
                reader.abort();
            }
        }
    }
}

/// How often [`group_exited`] looks at the process table.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// Returns once no live process is left in process group `pgid`. The
/// kernel offers no notification for a group whose leader is already
/// reaped, so this polls `/proc`; zombies count as gone (they only wait for
/// init to collect them). Without `/proc` it returns at once, and the
/// caller's SIGKILL follows immediately.
async fn group_exited(pgid: Pid) {
    while group_has_live_member(pgid) {
        tokio::time::sleep(GROUP_POLL).await;
    }
}

fn group_has_live_member(pgid: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| parse_stat_group(&stat))
                .is_some_and(|(state, group)| group == pgid.as_raw() && !matches!(state, 'Z' | 'X'))
    })
}

/// `(state, process group)` from `/proc/<pid>/stat`: `pid (comm) S ppid
/// pgrp …`, where `comm` may itself contain spaces and parentheses.
fn parse_stat_group(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Signals a worker's process group; on drop while armed, kills it.
#[derive(Debug)]
struct GroupGuard {
    pgid: Option<Pid>,
    armed: bool,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        let Some(pgid) = self.pgid else { return };
        match killpg(pgid, signal) {
            Ok(()) => tracing::debug!(
                pgid = pgid.as_raw(),
                signal = signal.as_str(),
                "signalled worker group"
            ),
            // The whole group is already gone.
            Err(Errno::ESRCH) => {}
            Err(err) => {
                tracing::warn!(pgid = pgid.as_raw(), signal = signal.as_str(), error = %err, "cannot signal worker group")
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// What a supervisor does after its worker ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterExit {
    Killed,
    Exited,
    Respawn,
}

async fn supervise(
    inner: Arc<Inner>,
    session_id: String,
    mut worker: Worker,
    stop: CancellationToken,
    workdir: WorkDir,
) {
    let mut quick_restarts = 0u32;
    loop {
        // `biased`: when a kill and the worker's exit race, the kill wins,
        // so a killed worker never produces `session_exited` or a respawn.
        let status = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            status = worker.child.wait() => Some(status),
        };
        let Some(status) = status else {
            worker.terminate(inner.settings.kill_grace).await;
            inner.finish_killed(&session_id);
            return;
        };
        worker.finish().await;
        let (exit_code, signal) = match &status {
            Ok(status) => describe_exit(*status),
            Err(err) => {
                tracing::error!(error = %err, "cannot wait for the worker");
                (None, None)
            }
        };

        let next = {
            let mut state = inner.lock();
            let killing = state.sessions.get(&session_id).is_some_and(|e| e.killing);
            if killing {
                state.sessions.remove(&session_id);
                AfterExit::Killed
            } else if exit_code == Some(RESTART_EXIT_CODE) && !state.closing {
                AfterExit::Respawn
            } else {
                state.sessions.remove(&session_id);
                AfterExit::Exited
            }
        };
        match next {
            AfterExit::Killed => {
                tracing::info!(session_id = %session_id, "session killed");
                inner.outbox.emit(SessionKilled { session_id });
                return;
            }
            AfterExit::Exited => {
                tracing::info!(session_id = %session_id, exit_code, signal, "worker exited");
                inner.outbox.emit(SessionExited {
                    session_id,
                    exit_code,
                    signal: signal.map(str::to_owned),
                });
                return;
            }
            AfterExit::Respawn => {}
        }

        if worker.spawned.elapsed() < QUICK_RESTART {
            quick_restarts += 1;
        } else {
            quick_restarts = 0;
        }
        if quick_restarts > 1 {
            tracing::warn!(
                pause_ms = RESTART_PAUSE.as_millis() as u64,
                "worker keeps asking for a restart; pausing"
            );
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    inner.finish_killed(&session_id);
                    return;
                }
                () = tokio::time::sleep(RESTART_PAUSE) => {}
            }
        }

        let program = inner.settings.worker_cmd.as_deref().unwrap_or_default();
        match spawn_worker(&inner.settings, program, &session_id, &workdir, None) {
            Ok(child) => {
                let pid = child.id().unwrap_or_default();
                if let Some(entry) = inner.lock().sessions.get_mut(&session_id) {
                    entry.pid = pid;
                    entry.started_at = now_ms();
                }
                tracing::info!(session_id = %session_id, pid, "worker respawned after exit code 43");
                // A kill that arrived meanwhile stops this worker at the top
                // of the loop; it must not be announced as ready.
                if !stop.is_cancelled() {
                    inner.outbox.emit(SessionReady {
                        session_id: session_id.clone(),
                    });
                }
                worker = Worker::attach(child, &session_id, &inner.outbox);
            }
            Err(err) => {
                inner.lock().sessions.remove(&session_id);
                tracing::error!(session_id = %session_id, error = %err, "cannot respawn worker");
                inner.outbox.emit(SessionError {
                    session_id,
                    message: err.to_string(),
                });
                return;
            }
        }
    }
}

/// The exit code, or the name of the signal that ended the process.
fn describe_exit(status: ExitStatus) -> (Option<i32>, Option<&'static str>) {
    let signal = status
        .signal()
        .map(|number| Signal::try_from(number).map_or("UNKNOWN", Signal::as_str));
    (status.code(), signal)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One line read by [`read_bounded_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The line is in the buffer (without its newline).
    Complete,
    /// The line was longer than the limit and was discarded.
    TooLong,
}

/// Reads one `\n`-terminated line (or the last, unterminated one) into
/// `line`, keeping at most `max` bytes in memory: a longer line is consumed
/// and discarded. `None` at the end of the input.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<Line>> {
    line.clear();
    let mut read_any = false;
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => None,
                (true, true) => Some(Line::TooLong),
                (true, false) => Some(Line::Complete),
            });
        }
        read_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let end = newline.unwrap_or(buf.len());
        if !too_long {
            if line.len() + end > max {
                too_long = true;
                line.clear();
                line.shrink_to(0);
            } else {
                line.extend_from_slice(&buf[..end]);
            }
        }
        let consumed = newline.map_or(end, |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            return Ok(Some(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            }));
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

async fn forward_stdout<R: AsyncBufRead + Unpin>(
    mut reader: R,
    session_id: String,
    outbox: Outbox,
) {
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(None) => return,
            Ok(Some(Line::TooLong)) => {
                tracing::warn!(session_id = %session_id, limit = MAX_LINE_BYTES, "worker stdout line too long; discarded");
            }
            Ok(Some(Line::Complete)) => {
                let text = strip_cr(&line);
                match serde_json::from_slice::<Value>(text) {
                    // Waits while the outbox is full: stdout is then not
                    // read, and the worker blocks on its full pipe.
                    Ok(event @ Value::Object(_)) => {
                        outbox
                            .emit_bulk(
                                RunnerSessionEvent {
                                    session_id: session_id.clone(),
                                    event,
                                },
                                text.len(),
                            )
                            .await
                    }
                    _ => tracing::info!(
                        session_id = %session_id,
                        line = %String::from_utf8_lossy(text),
                        "worker stdout"
                    ),
                }
            }
            Err(err) => {
                tracing::warn!(session_id = %session_id, error = %err, "cannot read worker stdout");
                return;
            }
        }
        shrink_after_long_line(&mut line);
    }
}

/// A line buffer that grew for a long line gives that memory back.
fn shrink_after_long_line(line: &mut Vec<u8>) {
    const KEEP: usize = 64 * 1024;
    if line.capacity() > KEEP {
        line.clear();
        line.shrink_to(KEEP);
    }
}

async fn log_stderr<R: AsyncRead + Unpin>(stderr: R, session_id: String) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        match read_bounded_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(None) => return,
            Ok(Some(Line::TooLong)) => {
                tracing::warn!(session_id = %session_id, limit = MAX_LINE_BYTES, "worker stderr line too long; discarded");
            }
            Ok(Some(Line::Complete)) => tracing::info!(
                session_id = %session_id,
                line = %String::from_utf8_lossy(strip_cr(&line)),
                "worker stderr"
            ),
            Err(err) => {
                tracing::warn!(session_id = %session_id, error = %err, "cannot read worker stderr");
                return;
            }
        }
        shrink_after_long_line(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use runner_protocol::RunnerEvent;
    use serde_json::json;
    use tokio::time::timeout;

    use super::*;
    use crate::outbox::OutboxReceiver;

    const WAIT: Duration = Duration::from_secs(15);

    struct Harness {
        manager: SessionManager,
        rx: OutboxReceiver,
        dir: tempfile::TempDir,
        root: PathBuf,
    }

    /// A temp dir holding `root/` (the only workspace root), a sibling
    /// `root-evil/`, and `records/` for the workers' notes.
    fn harness(worker: Option<Vec<String>>, grace: Duration) -> Harness {
        harness_in(|_| worker, grace)
    }

    /// [`harness`] with a worker command that may name the records dir.
    fn harness_in(worker: impl FnOnce(&Path) -> Option<Vec<String>>, grace: Duration) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let root = base.join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(base.join("root-evil")).unwrap();
        fs::create_dir_all(base.join("records")).unwrap();
        let settings = SessionSettings {
            worker_cmd: worker(&base.join("records")),
            roots: vec![root.clone()],
            default_cwd: root.clone(),
            kill_grace: grace,
            api_key: Secret::new("key-123"),
            relay_url: "http://127.0.0.1:9".into(),
            usage_cache_path: base.join("usage-cache.json"),
            max_sessions: 8,
        };
        let (outbox, rx) = Outbox::channel();
        Harness {
            manager: SessionManager::new(settings, outbox),
            rx,
            dir,
            root,
        }
    }

    /// A worker that is a real `/bin/sh` process running `script`.
    fn sh(script: &str) -> Option<Vec<String>> {
        Some(vec!["/bin/sh".into(), "-c".into(), script.into()])
    }

    fn new_session(id: &str, cwd: Option<&str>) -> NewSession {
        NewSession {
            session_id: id.into(),
            cwd: cwd.map(str::to_owned),
            prompt: None,
            model: None,
            skills: None,
        }
    }

    fn kill(id: &str) -> KillSession {
        KillSession {
            session_id: id.into(),
        }
    }

    impl Harness {
        fn records(&self) -> PathBuf {
            fs::canonicalize(self.dir.path()).unwrap().join("records")
        }

        async fn next(&mut self) -> RunnerEvent {
            timeout(WAIT, self.rx.recv())
                .await
                .expect("waiting for an outbox event")
                .expect("outbox open")
        }

        /// Stops everything and returns the events emitted meanwhile.
        async fn shutdown(mut self) -> Vec<RunnerEvent> {
            timeout(WAIT, self.manager.shutdown())
                .await
                .expect("waiting for shutdown");
            let mut rest = Vec::new();
            while let Ok(event) = self.rx.try_recv() {
                rest.push(event);
            }
            rest
        }
    }

    fn ready(id: &str) -> RunnerEvent {
        SessionReady {
            session_id: id.into(),
        }
        .into()
    }

    fn error(id: &str, message: &str) -> RunnerEvent {
        SessionError {
            session_id: id.into(),
            message: message.into(),
        }
        .into()
    }

    fn killed(id: &str) -> RunnerEvent {
        SessionKilled {
            session_id: id.into(),
        }
        .into()
    }

    fn session_event(id: &str, event: Value) -> RunnerEvent {
        RunnerSessionEvent {
            session_id: id.into(),
            event,
        }
        .into()
    }

    /// Whether `pid` is a live process. A zombie is dead: it only waits for
    /// its parent (for an orphan, init) to collect its status.
    fn alive(pid: i32) -> bool {
        if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
            return false;
        }
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    /// SIGKILL is delivered asynchronously: a process signalled a moment ago
    /// may still be on its way out. Waits (bounded) until `pid` is dead.
    async fn assert_gone(pid: i32) {
        let gone = timeout(Duration::from_secs(5), async {
            while alive(pid) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "process {pid} is still alive");
    }

    fn pid_from(event: &RunnerEvent, key: &str) -> i32 {
        match event {
            RunnerEvent::RunnerSessionEvent(e) => {
                i32::try_from(e.event[key].as_i64().expect("pid in event")).unwrap()
            }
            other => panic!("expected a session event with {key}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_session_id_is_refused() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(5));
        h.manager.new_session(new_session("", None)).await;
        assert_eq!(h.next().await, error("", messages::MISSING_SESSION_ID));
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn without_worker_command_the_error_says_how_to_configure_one() {
        let mut h = harness(None, Duration::from_secs(5));
        h.manager.new_session(new_session("s1", None)).await;
        match h.next().await {
            RunnerEvent::SessionError(e) => {
                assert_eq!(e.session_id, "s1");
                assert!(e.message.contains("PIZZAPI_WORKER_CMD"), "{}", e.message);
                assert!(e.message.contains("--worker-cmd"), "{}", e.message);
            }
            other => panic!("expected session_error, got {other:?}"),
        }
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn spawn_failure_is_a_session_error() {
        let mut h = harness(
            Some(vec!["/nonexistent/worker-binary".into()]),
            Duration::from_secs(5),
        );
        h.manager.new_session(new_session("s1", None)).await;
        match h.next().await {
            RunnerEvent::SessionError(e) => {
                assert_eq!(e.session_id, "s1");
                assert!(
                    e.message.contains("/nonexistent/worker-binary"),
                    "{}",
                    e.message
                );
            }
            other => panic!("expected session_error, got {other:?}"),
        }
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn a_running_session_id_is_refused() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(5));
        h.manager.new_session(new_session("s1", None)).await;
        assert_eq!(h.next().await, ready("s1"));
        h.manager.new_session(new_session("s1", None)).await;
        assert_eq!(h.next().await, error("s1", "Session already running: s1"));
        assert_eq!(h.manager.list().sessions, vec!["s1".to_owned()]);
        assert_eq!(h.shutdown().await, vec![killed("s1")]);
    }

    #[tokio::test]
    async fn concurrent_spawns_of_one_id_start_one_worker() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(5));
        let (first, second) = (h.manager.clone(), h.manager.clone());
        tokio::join!(
            first.new_session(new_session("dup", None)),
            second.new_session(new_session("dup", None)),
        );
        let mut events = vec![h.next().await, h.next().await];
        events.sort_by_key(|e| e.name());
        assert_eq!(
            events,
            vec![error("dup", "Session already running: dup"), ready("dup")]
        );
        assert_eq!(h.manager.heartbeat_sessions().len(), 1);
        assert_eq!(h.shutdown().await, vec![killed("dup")]);
    }

    #[tokio::test]
    async fn hostile_cwds_are_refused() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(5));
        let base = fs::canonicalize(h.dir.path()).unwrap();
        let root = h.root.clone();
        symlink(base.join("root-evil"), root.join("evil-link")).unwrap();
        symlink("/etc", root.join("etc-link")).unwrap();
        fs::write(root.join("file.txt"), "x").unwrap();

        let outside = [
            format!("{}/../root-evil", root.display()),
            format!("{}", base.join("root-evil").display()),
            format!("{}/evil-link", root.display()),
            format!("{}/etc-link", root.display()),
            format!("{}/evil-link/missing", root.display()),
            "../root-evil".to_owned(),
            "/".to_owned(),
            "/nonexistent-dir-outside".to_owned(),
        ];
        for (i, cwd) in outside.iter().enumerate() {
            let id = format!("s{i}");
            h.manager.new_session(new_session(&id, Some(cwd))).await;
            assert_eq!(
                h.next().await,
                error(
                    &id,
                    &format!("Requested cwd is outside allowed workspace root(s): {cwd}")
                ),
                "cwd {cwd}"
            );
        }

        h.manager
            .new_session(new_session("nul", Some("a\0b")))
            .await;
        assert_eq!(
            h.next().await,
            error(
                "nul",
                "Requested cwd cannot be used: a\0b: path contains a NUL byte"
            )
        );

        let missing = format!("{}/missing", root.display());
        h.manager
            .new_session(new_session("m", Some(&missing)))
            .await;
        assert_eq!(
            h.next().await,
            error("m", &format!("Requested cwd does not exist: {missing}"))
        );
        let file = format!("{}/file.txt", root.display());
        h.manager.new_session(new_session("f", Some(&file))).await;
        assert_eq!(
            h.next().await,
            error("f", &format!("Requested cwd is not a directory: {file}"))
        );
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn the_worker_runs_in_its_cwd_with_the_session_environment() {
        let script = r#"
            out="$RECORDS/$PIZZAPI_SESSION_ID"
            env > "$out.env"
            pwd -P > "$out.pwd"
            readlink /proc/$$/fd/0 > "$out.stdin"
            echo '{"type":"recorded"}'
            exec sleep 1000
        "#;
        let mut h = harness_in(
            |records| sh(&format!("RECORDS='{}'; {script}", records.display())),
            Duration::from_secs(5),
        );
        let records = h.records();
        let root = h.root.clone();
        symlink(root.join("sub"), root.join("sub-link")).unwrap();

        let mut req = new_session("env-1", Some("sub-link"));
        req.prompt = Some("hello there".into());
        req.model = Some(ModelRef {
            provider: "anthropic".into(),
            id: "claude".into(),
        });
        h.manager.new_session(req).await;
        assert_eq!(h.next().await, ready("env-1"));
        assert_eq!(
            h.next().await,
            session_event("env-1", json!({"type": "recorded"}))
        );

        let env = fs::read_to_string(records.join("env-1.env")).unwrap();
        let sub = root.join("sub");
        for expected in [
            "PIZZAPI_SESSION_ID=env-1".to_owned(),
            "PIZZAPI_API_KEY=key-123".to_owned(),
            "PIZZAPI_RELAY_URL=http://127.0.0.1:9".to_owned(),
            format!("PIZZAPI_WORKER_CWD={}", sub.display()),
            "PIZZAPI_WORKER_INITIAL_PROMPT=hello there".to_owned(),
            "PIZZAPI_WORKER_INITIAL_MODEL_PROVIDER=anthropic".to_owned(),
            "PIZZAPI_WORKER_INITIAL_MODEL_ID=claude".to_owned(),
            format!(
                "PIZZAPI_RUNNER_USAGE_CACHE_PATH={}",
                h.manager.inner.settings.usage_cache_path.display()
            ),
        ] {
            assert!(
                env.lines().any(|l| l == expected),
                "{expected} missing in\n{env}"
            );
        }
        assert_eq!(
            fs::read_to_string(records.join("env-1.pwd"))
                .unwrap()
                .trim(),
            sub.display().to_string()
        );
        assert_eq!(
            fs::read_to_string(records.join("env-1.stdin"))
                .unwrap()
                .trim(),
            "/dev/null"
        );

        // Its own process group, led by the worker.
        let heartbeat = h.manager.heartbeat_sessions();
        assert_eq!(heartbeat.len(), 1);
        assert_eq!(heartbeat[0].session_id, "env-1");
        assert!(heartbeat[0].started_at > 0);
        let pid = Pid::from_raw(i32::try_from(heartbeat[0].pid).unwrap());
        assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
        assert_ne!(nix::unistd::getpgid(None).unwrap(), pid);

        // Without a cwd: the default one, and no PIZZAPI_WORKER_CWD.
        h.manager.new_session(new_session("env-2", None)).await;
        assert_eq!(h.next().await, ready("env-2"));
        assert_eq!(
            h.next().await,
            session_event("env-2", json!({"type": "recorded"}))
        );
        let env = fs::read_to_string(records.join("env-2.env")).unwrap();
        assert!(!env.contains("PIZZAPI_WORKER_CWD="), "{env}");
        assert!(!env.contains("PIZZAPI_WORKER_INITIAL_PROMPT="), "{env}");
        assert_eq!(
            fs::read_to_string(records.join("env-2.pwd"))
                .unwrap()
                .trim(),
            root.display().to_string()
        );
        assert_eq!(
            h.manager.list().sessions,
            vec!["env-1".to_owned(), "env-2".to_owned()]
        );

        let mut rest = h.shutdown().await;
        rest.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(rest, vec![killed("env-1"), killed("env-2")]);
        assert_gone(pid.as_raw()).await;
    }

    #[tokio::test]
    async fn json_object_lines_become_events_and_long_lines_are_dropped() {
        let script = r#"
            printf '{"n":1}\nnot json\n[1,2]\n"text"\n{"n":2}\r\n'
            head -c 1200000 /dev/zero | tr '\0' 'x'
            printf '\n{"n":3}\n'
            echo 'to stderr' >&2
            printf '{"n":4}'
            exit 0
        "#;
        let mut h = harness(sh(script), Duration::from_secs(5));
        h.manager.new_session(new_session("out", None)).await;
        assert_eq!(h.next().await, ready("out"));
        for n in 1..=4 {
            assert_eq!(h.next().await, session_event("out", json!({ "n": n })));
        }
        // All output is forwarded before the exit is reported.
        assert_eq!(
            h.next().await,
            SessionExited {
                session_id: "out".into(),
                exit_code: Some(0),
                signal: None
            }
            .into()
        );
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn natural_exit_reports_code_or_signal_and_leaves_no_grandchild() {
        let mut h = harness(
            sh(r#"(trap '' TERM; exec sleep 1000) & echo "{\"gc\":$!}"; exit 3"#),
            Duration::from_secs(5),
        );
        h.manager.new_session(new_session("code", None)).await;
        assert_eq!(h.next().await, ready("code"));
        let grandchild = pid_from(&h.next().await, "gc");
        assert_eq!(
            h.next().await,
            SessionExited {
                session_id: "code".into(),
                exit_code: Some(3),
                signal: None
            }
            .into()
        );
        assert!(h.manager.list().sessions.is_empty());
        assert_gone(grandchild).await;
        assert_eq!(h.shutdown().await, vec![]);

        let mut h = harness(sh("kill -SEGV $$"), Duration::from_secs(5));
        h.manager.new_session(new_session("segv", None)).await;
        assert_eq!(h.next().await, ready("segv"));
        assert_eq!(
            h.next().await,
            SessionExited {
                session_id: "segv".into(),
                exit_code: None,
                signal: Some("SIGSEGV".into())
            }
            .into()
        );
        // A second kill for a gone session is unknown.
        h.manager.kill_session(kill("segv")).await;
        assert_eq!(h.next().await, error("segv", messages::SESSION_NOT_FOUND));
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn exit_43_respawns_without_the_initial_prompt_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let record = dir.path().join("second.env");
        let script = format!(
            r#"if [ -e '{marker}' ]; then env > '{record}'; echo '{{"spawn":2}}'; exec sleep 1000;
               else touch '{marker}'; echo '{{"spawn":1}}'; exit 43; fi"#,
            marker = marker.display(),
            record = record.display(),
        );
        let mut h = harness(sh(&script), Duration::from_secs(5));
        let mut req = new_session("r", Some("sub"));
        req.prompt = Some("first prompt".into());
        req.model = Some(ModelRef {
            provider: "p".into(),
            id: "m".into(),
        });
        h.manager.new_session(req).await;
        assert_eq!(h.next().await, ready("r"));
        assert_eq!(h.next().await, session_event("r", json!({"spawn": 1})));
        assert_eq!(h.next().await, ready("r"));
        assert_eq!(h.next().await, session_event("r", json!({"spawn": 2})));
        let env = fs::read_to_string(&record).unwrap();
        assert!(env.contains("PIZZAPI_SESSION_ID=r\n"), "{env}");
        assert!(env.contains("PIZZAPI_WORKER_CWD="), "{env}");
        for absent in [
            "PIZZAPI_WORKER_INITIAL_PROMPT=",
            "PIZZAPI_WORKER_INITIAL_MODEL_PROVIDER=",
            "PIZZAPI_WORKER_INITIAL_MODEL_ID=",
        ] {
            assert!(!env.contains(absent), "{absent} in\n{env}");
        }
        assert_eq!(h.manager.list().sessions, vec!["r".to_owned()]);

        h.manager.kill_session(kill("r")).await;
        assert_eq!(h.next().await, killed("r"));
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn a_kill_racing_with_respawns_does_not_resurrect_the_worker() {
        let mut h = harness(sh("exit 43"), Duration::from_secs(5));
        h.manager.new_session(new_session("loop", None)).await;
        assert_eq!(h.next().await, ready("loop"));
        h.manager.kill_session(kill("loop")).await;
        // Respawns announced before the kill was seen are fine; after the
        // kill, nothing but `session_killed`.
        loop {
            match h.next().await {
                event if event == ready("loop") => continue,
                event => {
                    assert_eq!(event, killed("loop"));
                    break;
                }
            }
        }
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.manager.heartbeat_sessions().is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn a_worker_ignoring_sigterm_is_killed_after_the_grace() {
        let grace = Duration::from_millis(300);
        let mut h = harness(
            sh(r#"trap '' TERM; echo "{\"pid\":$$}"; while :; do sleep 1; done"#),
            grace,
        );
        h.manager.new_session(new_session("stubborn", None)).await;
        assert_eq!(h.next().await, ready("stubborn"));
        let pid = pid_from(&h.next().await, "pid");
        let started = Instant::now();
        h.manager.kill_session(kill("stubborn")).await;
        assert_eq!(h.next().await, killed("stubborn"));
        assert!(
            started.elapsed() >= grace,
            "killed after {:?}, before the grace",
            started.elapsed()
        );
        assert!(!alive(pid), "the worker was reaped before session_killed");
        assert!(h.manager.list().sessions.is_empty());
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn a_cooperative_worker_is_killed_without_waiting_for_the_grace() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(30));
        h.manager.new_session(new_session("k", None)).await;
        assert_eq!(h.next().await, ready("k"));
        let started = Instant::now();
        h.manager.kill_session(kill("k")).await;
        assert_eq!(h.next().await, killed("k"));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn a_second_kill_gets_no_second_session_killed() {
        let mut h = harness(
            sh(r#"trap '' TERM; echo '{"up":1}'; while :; do sleep 1; done"#),
            Duration::from_millis(300),
        );
        h.manager.new_session(new_session("twice", None)).await;
        assert_eq!(h.next().await, ready("twice"));
        assert_eq!(h.next().await, session_event("twice", json!({"up": 1})));
        h.manager.kill_session(kill("twice")).await;
        h.manager.kill_session(kill("twice")).await;
        assert_eq!(h.next().await, killed("twice"));
        // After the session is gone, a kill is for an unknown session.
        h.manager.kill_session(kill("twice")).await;
        assert_eq!(h.next().await, error("twice", messages::SESSION_NOT_FOUND));
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn unknown_session_kill_is_an_error() {
        let mut h = harness(sh("exec sleep 1000"), Duration::from_secs(5));
        h.manager.kill_session(kill("nope")).await;
        assert_eq!(h.next().await, error("nope", "Session not found"));
        assert!(h.shutdown().await.is_empty());
    }

    /// A worker whose grandchild ignores SIGTERM. The grandchild reports
    /// both pids (the worker's `$$` is expanded by the worker) once its
    /// trap is set.
    const GRANDCHILD: &str =
        r#"sh -c 'trap "" TERM; echo "{\"gc\":$$,\"pid\":'$$'}"; exec sleep 1000' & wait"#;

    #[tokio::test]
    async fn kill_takes_grandchildren_that_ignore_sigterm() {
        let mut h = harness(sh(GRANDCHILD), Duration::from_millis(500));
        h.manager.new_session(new_session("gc", None)).await;
        assert_eq!(h.next().await, ready("gc"));
        let event = h.next().await;
        let (grandchild, pid) = (pid_from(&event, "gc"), pid_from(&event, "pid"));
        assert!(alive(grandchild));
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(grandchild))).unwrap(),
            Pid::from_raw(pid)
        );
        h.manager.kill_session(kill("gc")).await;
        assert_eq!(h.next().await, killed("gc"));
        assert_gone(pid).await;
        assert_gone(grandchild).await;
        assert!(h.shutdown().await.is_empty());
    }

    #[tokio::test]
    async fn grandchildren_get_sigterm_and_the_grace_to_use_it() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("grandchild-got-term");
        // The grandchild needs a moment after SIGTERM (it finishes its
        // `sleep 0.2`) before it notes the signal; the worker dies at once.
        // The grandchild announces itself only once its trap is set, so the
        // kill cannot overtake it.
        let script = format!(
            r#"sh -c 'trap "sleep 0.2; echo term > {flag}; exit 0" TERM; echo "{{\"gc\":$$}}"; while :; do sleep 0.05; done' & wait"#,
            flag = flag.display()
        );
        let mut h = harness(sh(&script), Duration::from_secs(10));
        h.manager.new_session(new_session("polite", None)).await;
        assert_eq!(h.next().await, ready("polite"));
        let grandchild = pid_from(&h.next().await, "gc");
        h.manager.kill_session(kill("polite")).await;
        assert_eq!(h.next().await, killed("polite"));
        assert_eq!(fs::read_to_string(&flag).unwrap(), "term\n");
        assert_gone(grandchild).await;
        assert!(h.shutdown().await.is_empty());
    }

    #[test]
    fn stat_lines_parse() {
        assert_eq!(
            parse_stat_group("123 (sh) S 1 123 123 0 -1"),
            Some(('S', 123))
        );
        assert_eq!(
            parse_stat_group("7 (a) b (c)) Z 1 99 99 0"),
            Some(('Z', 99))
        );
        assert_eq!(parse_stat_group("garbage"), None);
        assert!(!group_has_live_member(Pid::from_raw(i32::MAX)));
        let me = nix::unistd::getpgid(None).unwrap();
        assert!(group_has_live_member(me));
    }

    #[tokio::test]
    async fn shutdown_stops_every_worker_and_group() {
        let mut h = harness(sh(GRANDCHILD), Duration::from_millis(500));
        let mut pids = Vec::new();
        for id in ["a", "b"] {
            h.manager.new_session(new_session(id, None)).await;
            assert_eq!(h.next().await, ready(id));
            let event = h.next().await;
            pids.push(pid_from(&event, "gc"));
            pids.push(pid_from(&event, "pid"));
        }
        timeout(WAIT, h.manager.shutdown())
            .await
            .expect("waiting for shutdown");
        let mut rest = Vec::new();
        while let Ok(event) = h.rx.try_recv() {
            rest.push(event);
        }
        rest.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(rest, vec![killed("a"), killed("b")]);
        for pid in pids {
            assert_gone(pid).await;
        }
        assert!(h.manager.list().sessions.is_empty());

        // After shutdown, no new worker.
        h.manager.new_session(new_session("late", None)).await;
        assert_eq!(h.next().await, error("late", "The runner is shutting down"));
        assert!(h.manager.list().sessions.is_empty());
    }

    #[tokio::test]
    async fn bounded_line_reader() {
        let input: &[u8] = b"short\nxxxxxxxxxx\nend";
        let mut reader = BufReader::with_capacity(3, input);
        let mut line = Vec::new();
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 5).await.unwrap(),
            Some(Line::Complete)
        );
        assert_eq!(line, b"short");
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 5).await.unwrap(),
            Some(Line::TooLong)
        );
        assert!(line.is_empty());
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 5).await.unwrap(),
            Some(Line::Complete)
        );
        assert_eq!(line, b"end");
        assert_eq!(
            read_bounded_line(&mut reader, &mut line, 5).await.unwrap(),
            None
        );
    }
}
