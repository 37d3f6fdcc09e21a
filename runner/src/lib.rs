//! The PizzaPi runner daemon.
//!
//! A runner connects to a relay over Socket.IO (namespace `/runner`),
//! registers this machine under a stable identity, and does what the relay
//! asks: spawn and stop worker processes (sessions), manage skills, list and
//! read files and report git status inside the workspace roots, open
//! terminals (shells in pseudo-terminals), and report provider usage. The wire contract is the `runner-protocol` crate.
//!
//! [`run`] is the whole daemon; the `pizzapi-runner` binary parses the
//! command line into a [`config::Config`], installs the signal handlers and
//! calls it. Tests call it in-process the same way.
//!
//! # Modules
//!
//! * [`config`] — flags with environment fallbacks, validated into a `Config`.
//! * [`state`] — the state file: identity and single-instance lock.
//! * [`connection`] — the Socket.IO client (the only module that knows the
//!   client library), reconnection, registration, the writer of the outbox.
//! * [`dispatch`] — decodes incoming events and runs each command in its own
//!   task; undecodable payloads get the command's error reply.
//! * [`outbox`] — the channel through which everything reaches the relay.
//! * [`sessions`], [`skills`], [`files`], [`git`], [`terminals`] — the
//!   handlers, one per concern.
//! * [`beneath`] — opening paths beneath the roots' directory handles, so
//!   that no path is checked by name and then used by name.
//! * [`heartbeat`], [`usage`] — `runner_heartbeat` and `usage_data`.
//! * [`small_file`] — reading a file the runner does not control, bounded.
//!
//! # Bounds
//!
//! Every queue and count has a limit, each a setting ([`config::Args`]):
//! sessions, terminals, commands in flight, terminal input bytes per shell,
//! bulk bytes waiting for the connection (which holds back the workers'
//! stdout and the terminals' output), bytes kept while disconnected, and
//! the sizes of the usage cache and the state file.
//!
//! # Shutdown
//!
//! There is one shutdown path ([`ShutdownHandle`]): SIGINT/SIGTERM (the
//! `shutdown` future given to [`run`]), the relay's `restart`, and a refusal
//! by the relay all trigger it. It stops accepting commands, waits briefly
//! for the ones in flight, stops every worker (with its process group) and
//! every terminal (with its whole session),
//! sends what is left, disconnects, and releases the lock. The
//! [`ExitReason`] says which way it ended and gives the exit code.
#![warn(missing_docs)]

pub mod beneath;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod files;
pub mod git;
pub mod heartbeat;
pub mod outbox;
pub mod sessions;
pub mod skills;
pub mod small_file;
pub mod state;
pub mod terminals;
pub mod usage;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use runner_protocol::{HandshakeAuth, RegisterRunner, messages};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, EXIT_CONFIG};
use crate::connection::Connection;
use crate::dispatch::{Dispatcher, Services};
use crate::heartbeat::Heartbeat;
use crate::outbox::Outbox;
use crate::sessions::{SessionManager, SessionSettings};
use crate::skills::SkillStore;
use crate::state::{EXIT_LOCK_HELD, StateError, StateLock};
use crate::terminals::{TerminalManager, TerminalSettings};
use crate::usage::UsageSource;

/// Exit code of a runner the relay refused (bad API key, identity mismatch).
pub const EXIT_REFUSED: u8 = 77;

/// Why the daemon stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// SIGINT or SIGTERM (or the caller's shutdown future).
    Signal,
    /// The relay sent `restart`.
    Restart,
    /// The relay refused the handshake or the registration.
    Refused {
        /// The relay's message.
        message: String,
    },
}

impl ExitReason {
    /// The process exit code: 0, 42 or 77.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExitReason::Signal => 0,
            ExitReason::Restart => messages::EXIT_RESTART as u8,
            ExitReason::Refused { .. } => EXIT_REFUSED,
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Signal => f.write_str("stopped by a signal"),
            ExitReason::Restart => f.write_str("restart requested by the relay"),
            ExitReason::Refused { message } => write!(f, "refused by the relay: {message}"),
        }
    }
}

/// The daemon's one shutdown path: the first trigger wins and records why.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    token: CancellationToken,
    reason: Arc<OnceLock<ExitReason>>,
}

impl ShutdownHandle {
    /// A handle not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the shutdown for `reason`, unless it has already started.
    pub fn trigger(&self, reason: ExitReason) {
        if self.reason.set(reason).is_ok() {
            self.token.cancel();
        }
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits for the shutdown to start.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Why the shutdown started.
    pub fn reason(&self) -> Option<&ExitReason> {
        self.reason.get()
    }
}

/// Why the daemon could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Another runner holds the state file.
    #[error(transparent)]
    LockHeld(StateError),
    /// The state file cannot be used.
    #[error(transparent)]
    State(StateError),
    /// The relay URL cannot be turned into a namespace URL.
    #[error("bad relay URL: {0}")]
    RelayUrl(#[from] runner_protocol::rules::RelayUrlError),
}

impl RunError {
    /// The process exit code: 75 for a held lock, 64 otherwise (something
    /// in the configuration or the state file to fix).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::LockHeld(_) => EXIT_LOCK_HELD,
            RunError::State(_) | RunError::RelayUrl(_) => EXIT_CONFIG,
        }
    }
}

impl From<StateError> for RunError {
    fn from(err: StateError) -> Self {
        match err {
            StateError::Held { .. } => RunError::LockHeld(err),
            other => RunError::State(other),
        }
    }
}

/// Runs the daemon until `shutdown` completes, the relay sends `restart`, or
/// the relay refuses the runner; then shuts down (workers stopped, lock
/// released, disconnected) and says why.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<ExitReason, RunError> {
    runner_protocol::rules::namespace_url(&config.relay_url)?;
    let lock = StateLock::acquire_limited(&config.state_path, config.state_file_max_bytes)?;
    let identity = lock.identity().clone();
    let span = tracing::info_span!("runner", runner_id = %identity.runner_id);
    async move {
        tracing::info!(
            name = %config.name,
            state = %lock.path().display(),
            roots = ?config.roots,
            relay_url = %runner_protocol::rules::redact_userinfo(&config.relay_url),
            "runner starting"
        );
        if config.roots.is_empty() {
            tracing::warn!(
                "no workspace roots: the relay may use any path on this machine \
                 (set PIZZAPI_WORKSPACE_ROOTS or --workspace-root to confine it)"
            );
        }
        let control = ShutdownHandle::new();
        let (outbox, outbox_rx) = Outbox::with_credit(config.outbox_max_bytes);

        let sessions = SessionManager::new(
            SessionSettings {
                worker_cmd: config.worker_cmd.clone(),
                roots: config.roots.clone(),
                default_cwd: config.default_cwd.clone(),
                kill_grace: config.kill_grace,
                api_key: config.api_key.clone(),
                relay_url: config.relay_url.clone(),
                usage_cache_path: config.usage_cache_path.clone(),
                max_sessions: config.max_sessions,
            },
            outbox.clone(),
        );
        let terminals = {
            let mut settings =
                TerminalSettings::new(config.roots.clone(), config.default_cwd.clone());
            settings.max_terminals = config.max_terminals;
            settings.input_max_bytes = config.terminal_input_max_bytes;
            TerminalManager::new(settings, outbox.clone())
        };
        let skills = SkillStore::new(config.skills_dir.clone());
        let usage = UsageSource::new(config.usage_cache_path.clone())
            .with_max_bytes(config.usage_cache_max_bytes);
        let services = Services {
            sessions: sessions.clone(),
            skills: skills.clone(),
            files: files::FileService::new(config.roots.clone()),
            git: git::GitService::new(config.roots.clone(), config.git_timeout)
                .with_max_output(config.git_output_max_bytes),
            terminals: terminals.clone(),
            usage: usage.clone(),
            control: control.clone(),
        };
        let dispatcher = Arc::new(
            Dispatcher::new(Arc::new(services), outbox.clone())
                .with_max_in_flight(config.max_commands_in_flight),
        );

        let usage_stop = CancellationToken::new();
        let usage_watcher = tokio::spawn(
            usage
                .watch(
                    config.usage_poll_interval,
                    outbox.clone(),
                    usage_stop.clone(),
                )
                .await
                .in_current_span(),
        );

        let registration = {
            let skills = skills.clone();
            let base = RegisterRunner {
                name: Some(config.name.clone()),
                roots: Some(
                    config
                        .roots
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect(),
                ),
                runner_id: Some(identity.runner_id.clone()),
                runner_secret: Some(identity.runner_secret.clone()),
                skills: None,
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                platform: Some(std::env::consts::OS.to_owned()),
            };
            Arc::new(move || {
                let skills = skills.clone();
                let base = base.clone();
                Box::pin(async move {
                    RegisterRunner {
                        skills: Some(skills.list().await),
                        ..base
                    }
                }) as futures_util::future::BoxFuture<'static, RegisterRunner>
            })
        };
        let heartbeat = {
            let sessions = sessions.clone();
            let terminals = terminals.clone();
            Heartbeat::new(
                identity.runner_id.clone(),
                config.heartbeat_interval,
                Arc::new(move || sessions.heartbeat_sessions()),
            )
            .with_terminals(Arc::new(move || terminals.ids()))
        };
        let connection = Connection {
            relay_url: config.relay_url.clone(),
            auth: HandshakeAuth {
                api_key: config.api_key.clone(),
                runner_id: identity.runner_id.clone(),
                runner_secret: identity.runner_secret.clone(),
            },
            reconnect: config.reconnect,
            registration,
            heartbeat,
            dispatcher: Arc::clone(&dispatcher),
            outbox: outbox.clone(),
            control: control.clone(),
            backlog_max_bytes: config.backlog_max_bytes,
        };
        let close = CancellationToken::new();
        let connection_task =
            tokio::spawn(connection.run(outbox_rx, close.clone()).in_current_span());

        tokio::select! {
            _ = shutdown => control.trigger(ExitReason::Signal),
            _ = control.triggered() => {}
        }
        let reason = control.reason().cloned().unwrap_or(ExitReason::Signal);
        tracing::info!(reason = %reason, "shutting down");

        dispatcher.stop_accepting();
        if !dispatcher.drain(config.shutdown_grace).await {
            tracing::warn!(
                in_flight = dispatcher.in_flight(),
                "commands still running at shutdown are abandoned"
            );
        }
        sessions.shutdown().await;
        terminals.shutdown().await;
        tracing::info!("all workers and terminals stopped");
        usage_stop.cancel();
        let _ = usage_watcher.await;

        close.cancel();
        if tokio::time::timeout(Duration::from_secs(10), connection_task)
            .await
            .is_err()
        {
            tracing::warn!("the connection did not close in time");
        }
        if let Err(err) = lock.release() {
            tracing::error!(error = %err, "could not release the state file");
        }
        tracing::info!(exit_code = reason.exit_code(), reason = %reason, "runner stopped");
        Ok(reason)
    }
    .instrument(span)
    .await
}
