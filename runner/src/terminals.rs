//! Terminals: shells in real pseudo-terminals, driven by `new_terminal`,
//! `terminal_input`, `terminal_resize`, `kill_terminal` and `list_terminals`.
//!
//! Each terminal has three parts that never block the async runtime:
//!
//! * a **reader thread** that reads the PTY in chunks and hands them to the
//!   pump through a small bounded channel — when the pump (and so the relay
//!   connection) falls behind, the reader blocks, the kernel's PTY buffer
//!   fills and the shell's writes block: output is throttled, never
//!   buffered without bound;
//! * a **pump task** that coalesces chunks into one `terminal_data` event per
//!   burst (at most [`TerminalSettings::coalesce`] after the burst's first
//!   byte, or once [`TerminalSettings::max_chunk`] bytes are pending), then
//!   waits for the shell and emits `terminal_exit` after the last data;
//! * a **writer thread** fed by a queue bounded in bytes
//!   ([`TerminalSettings::input_max_bytes`]) and in writes, so a shell that
//!   does not read its input cannot stall the handler that received
//!   `terminal_input`, nor make the runner hold its input.
//!
//! The shell inherits the runner's environment without the runner's own
//! configuration ([`crate::config::config_variables`]: no API key, no
//! roots), with `TERM` set.
//!
//! The shell is a session leader (the PTY library calls `setsid`), so
//! killing a terminal kills every process of that session: the shell, its
//! foreground job and any background jobs it started.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getsid};
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use runner_protocol::rules::normalize_path;
use runner_protocol::terminal::{DEFAULT_COLS, DEFAULT_ROWS};
use runner_protocol::{
    KillTerminal, NewTerminal, TerminalData, TerminalError, TerminalExit, TerminalInput,
    TerminalReady, TerminalResize, TerminalsList, messages,
};
use rustix::fs::OFlags;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::beneath::{self, BeneathError, Opened};
use crate::outbox::Outbox;

/// How terminals are opened and paced.
#[derive(Debug, Clone)]
pub struct TerminalSettings {
    /// Canonical workspace roots; empty means unscoped.
    pub roots: Vec<PathBuf>,
    /// The working directory when `new_terminal` names none (first root, else `$HOME`).
    pub default_cwd: PathBuf,
    /// The shell when `new_terminal` names none (`$SHELL`, else `/bin/sh`).
    pub default_shell: String,
    /// The most terminals open at once.
    pub max_terminals: usize,
    /// The longest a burst of output waits before it is sent.
    pub coalesce: Duration,
    /// The most output bytes gathered into one `terminal_data` event.
    pub max_chunk: usize,
    /// Bytes of input waiting for one shell to read them.
    pub input_max_bytes: usize,
}

impl TerminalSettings {
    /// Defaults: 16 terminals, 16 ms / 32 KiB coalescing, 1 MiB of input.
    pub fn new(roots: Vec<PathBuf>, default_cwd: PathBuf) -> Self {
        let default_shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned());
        TerminalSettings {
            roots,
            default_cwd,
            default_shell,
            max_terminals: 16,
            coalesce: Duration::from_millis(16),
            max_chunk: 32 * 1024,
            input_max_bytes: 1024 * 1024,
        }
    }
}

/// Counters of one terminal's output path.
#[derive(Debug, Default)]
pub struct TerminalStats {
    /// PTY reads that returned data.
    pub reads: AtomicU64,
    /// Bytes read from the PTY.
    pub bytes: AtomicU64,
    /// `terminal_data` events emitted.
    pub events: AtomicU64,
}

/// Chunks in flight between a reader thread and its pump.
const READER_QUEUE: usize = 4;
/// Input writes queued for one terminal before input is refused (besides
/// the byte bound of [`TerminalSettings::input_max_bytes`]).
const INPUT_QUEUE: usize = 256;
/// How long a killed session may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

struct Terminal {
    master: Mutex<Box<dyn MasterPty + Send>>,
    input: std::sync::mpsc::SyncSender<Vec<u8>>,
    /// Bytes queued for the writer thread and not yet written.
    input_queued: Arc<std::sync::atomic::AtomicUsize>,
    pid: u32,
    killed: Arc<AtomicBool>,
    stats: Arc<TerminalStats>,
}

struct Inner {
    settings: TerminalSettings,
    outbox: Outbox,
    terminals: Mutex<HashMap<String, Arc<Terminal>>>,
    tasks: TaskTracker,
}

/// The runner's open terminals.
#[derive(Clone)]
pub struct TerminalManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TerminalManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalManager")
            .field("terminals", &self.ids())
            .finish()
    }
}

/// Why a terminal could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{}", messages::MISSING_TERMINAL_ID)]
    MissingId,
    #[error("{}", messages::TERMINAL_ALREADY_EXISTS)]
    Exists,
    #[error("Too many terminals (limit {0})")]
    TooMany(usize),
    #[error("{}", messages::terminal_cwd_outside_roots(.0))]
    OutsideRoots(String),
    #[error("cwd {cwd} is not usable: {reason}")]
    BadCwd { cwd: String, reason: String },
    #[error("Invalid terminal size {cols}x{rows}: both must be at least 1")]
    BadSize { cols: u16, rows: u16 },
    #[error("Failed to start {shell}: {reason}")]
    Spawn { shell: String, reason: String },
}

impl TerminalManager {
    /// A manager with no terminals open.
    pub fn new(settings: TerminalSettings, outbox: Outbox) -> Self {
        TerminalManager {
            inner: Arc::new(Inner {
                settings,
                outbox,
                terminals: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
            }),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Terminal>>> {
        // A poisoned map only means a panic happened while it was held; the
        // map itself is still consistent (every update is one insert/remove).
        self.inner
            .terminals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<Terminal>> {
        self.map().get(id).cloned()
    }

    fn error(&self, terminal_id: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(terminal_id, %message, "terminal command refused");
        self.inner.outbox.emit(TerminalError {
            terminal_id: terminal_id.to_owned(),
            message,
        });
    }

    /// The open terminals' ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.map().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Reply to `list_terminals`.
    pub fn list(&self) -> TerminalsList {
        TerminalsList {
            terminals: self.ids(),
        }
    }

    /// Output counters of an open terminal.
    pub fn stats(&self, terminal_id: &str) -> Option<Arc<TerminalStats>> {
        self.get(terminal_id).map(|t| t.stats.clone())
    }

    /// The shell's process id of an open terminal (for tests).
    #[cfg(test)]
    pub fn pid(&self, terminal_id: &str) -> Option<u32> {
        self.get(terminal_id).map(|t| t.pid)
    }

    /// Handles `new_terminal`: replies `terminal_ready` or `terminal_error`.
    pub async fn new_terminal(&self, req: NewTerminal) {
        let id = req.terminal_id.clone();
        let this = self.clone();
        let opened = tokio::task::spawn_blocking(move || this.open(req)).await;
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(err)) => self.error(&id, err.to_string()),
            Err(join) => self.error(&id, format!("Failed to open terminal: {join}")),
        }
    }

    fn open(&self, req: NewTerminal) -> Result<(), OpenError> {
        let settings = &self.inner.settings;
        let id = req.terminal_id.trim().to_owned();
        if id.is_empty() {
            return Err(OpenError::MissingId);
        }
        let cols = req.cols.unwrap_or(DEFAULT_COLS);
        let rows = req.rows.unwrap_or(DEFAULT_ROWS);
        if cols == 0 || rows == 0 {
            return Err(OpenError::BadSize { cols, rows });
        }
        // The shell starts in the directory opened here, through its handle
        // (see `Opened::proc_path`): a name swapped for a symlink after the
        // check cannot move it elsewhere.
        let dir = match req.cwd.as_deref().filter(|c| !c.is_empty()) {
            Some(cwd) => resolve_cwd(cwd, &settings.roots)?,
            None => open_default_cwd(&settings.default_cwd)?,
        };
        let cwd = dir.path.clone();
        let shell = req
            .shell
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| settings.default_shell.clone());

        // Reserve the id before the slow part, so that two concurrent opens of
        // one id cannot both succeed. The placeholder is replaced below.
        {
            let map = self.map();
            if map.contains_key(&id) {
                return Err(OpenError::Exists);
            }
            if map.len() >= settings.max_terminals {
                return Err(OpenError::TooMany(settings.max_terminals));
            }
        }

        let spawn_err = |reason: String| OpenError::Spawn {
            shell: shell.clone(),
            reason,
        };
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| spawn_err(e.to_string()))?;
        let mut cmd = CommandBuilder::new(&shell);
        cmd.cwd(dir.proc_path());
        for var in crate::config::config_variables() {
            cmd.env_remove(var);
        }
        cmd.env("TERM", "xterm-256color");
        let mut child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| spawn_err(e.to_string()))?;
        // The slave end belongs to the shell now; keeping it open here would
        // keep the reader from seeing end-of-file when the shell exits.
        drop(pair.slave);
        let pid = child.process_id().unwrap_or(0);
        let reader = pair.master.try_clone_reader();
        let writer = pair.master.take_writer();
        let (reader, mut writer) = match (reader, writer) {
            (Ok(r), Ok(w)) => (r, w),
            (Err(e), _) | (_, Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e.to_string()));
            }
        };

        let (input_tx, input_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(INPUT_QUEUE);
        let input_queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let terminal = Arc::new(Terminal {
            master: Mutex::new(pair.master),
            input: input_tx,
            input_queued: input_queued.clone(),
            pid,
            killed: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(TerminalStats::default()),
        });
        {
            let mut map = self.map();
            if map.contains_key(&id) || map.len() >= settings.max_terminals {
                drop(map);
                kill_session(pid);
                let _ = child.wait();
                return Err(if self.get(&id).is_some() {
                    OpenError::Exists
                } else {
                    OpenError::TooMany(settings.max_terminals)
                });
            }
            map.insert(id.clone(), terminal.clone());
        }
        tracing::info!(terminal_id = %id, pid, shell = %shell, cwd = %cwd.display(), cols, rows, "terminal opened");
        self.inner.outbox.emit(TerminalReady {
            terminal_id: id.clone(),
        });

        // Thread names carry no id: an id is the relay's text, and a thread
        // name must not hold a NUL byte.
        std::thread::Builder::new()
            .name("pty-writer".to_owned())
            .spawn(move || {
                for bytes in input_rx {
                    let written = writer.write_all(&bytes).and_then(|_| writer.flush());
                    input_queued.fetch_sub(bytes.len(), Ordering::SeqCst);
                    if written.is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| spawn_err(e.to_string()))?;

        let (chunk_tx, chunk_rx) = mpsc::channel::<Vec<u8>>(READER_QUEUE);
        let stats = terminal.stats.clone();
        std::thread::Builder::new()
            .name("pty-reader".to_owned())
            .spawn(move || read_pty(reader, chunk_tx, &stats))
            .map_err(|e| spawn_err(e.to_string()))?;

        let this = self.clone();
        let handle = tokio::runtime::Handle::current();
        let task = async move {
            this.pump(&id, chunk_rx, &terminal).await;
            let status = tokio::task::spawn_blocking(move || child.wait()).await;
            let killed = terminal.killed.load(Ordering::SeqCst);
            let exit_code = match status {
                _ if killed => -1,
                Ok(Ok(status)) => i32::try_from(status.exit_code()).unwrap_or(-1),
                Ok(Err(_)) | Err(_) => -1,
            };
            // A shell that exited by itself may leave background jobs behind.
            kill_session(terminal.pid);
            this.remove_if_same(&id, &terminal);
            tracing::info!(terminal_id = %id, exit_code, killed, "terminal exited");
            this.inner.outbox.emit(TerminalExit {
                terminal_id: id,
                exit_code,
            });
        };
        handle.spawn(self.inner.tasks.track_future(task));
        Ok(())
    }

    /// Coalesces output into `terminal_data` events until the PTY closes.
    async fn pump(&self, id: &str, mut chunks: mpsc::Receiver<Vec<u8>>, terminal: &Terminal) {
        let settings = &self.inner.settings;
        while let Some(first) = chunks.recv().await {
            let mut batch = first;
            let deadline = tokio::time::Instant::now() + settings.coalesce;
            while batch.len() < settings.max_chunk {
                match tokio::time::timeout_at(deadline, chunks.recv()).await {
                    Ok(Some(more)) => batch.extend_from_slice(&more),
                    Ok(None) | Err(_) => break,
                }
            }
            terminal.stats.events.fetch_add(1, Ordering::Relaxed);
            let bytes = batch.len();
            let event = TerminalData {
                terminal_id: id.to_owned(),
                data: BASE64.encode(&batch),
            };
            // Waits while the connection is behind: the reader thread then
            // blocks on its full queue, and the shell on its full PTY.
            self.inner.outbox.emit_bulk(event, bytes).await;
        }
    }

    fn remove_if_same(&self, id: &str, terminal: &Arc<Terminal>) {
        let mut map = self.map();
        if map.get(id).is_some_and(|t| Arc::ptr_eq(t, terminal)) {
            map.remove(id);
        }
    }

    /// Handles `terminal_input`: base64 bytes written to the PTY.
    pub async fn input(&self, req: TerminalInput) {
        let Some(terminal) = self.get(&req.terminal_id) else {
            return self.error(&req.terminal_id, messages::TERMINAL_NOT_FOUND);
        };
        let bytes = match BASE64.decode(req.data.as_bytes()) {
            Ok(bytes) => bytes,
            Err(err) => {
                return self.error(
                    &req.terminal_id,
                    format!("Invalid terminal input: data is not valid base64 ({err})"),
                );
            }
        };
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        let limit = self.inner.settings.input_max_bytes;
        // Reserve the bytes first, so that concurrent inputs cannot overshoot.
        let queued = terminal.input_queued.fetch_add(len, Ordering::SeqCst);
        if queued + len > limit {
            terminal.input_queued.fetch_sub(len, Ordering::SeqCst);
            drop(bytes);
            return self.error(
                &req.terminal_id,
                format!(
                    "Terminal input refused: {queued} bytes are waiting for the shell to read them and {len} more would pass the limit of {limit} (--terminal-input-max-bytes / PIZZAPI_TERMINAL_INPUT_MAX_BYTES)"
                ),
            );
        }
        match terminal.input.try_send(bytes) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                terminal.input_queued.fetch_sub(len, Ordering::SeqCst);
                self.error(
                    &req.terminal_id,
                    format!("Terminal input refused: {INPUT_QUEUE} writes are waiting for the shell to read them"),
                )
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                terminal.input_queued.fetch_sub(len, Ordering::SeqCst);
                self.error(
                    &req.terminal_id,
                    "Terminal input refused: the shell has exited",
                )
            }
        }
    }

    /// Handles `terminal_resize`.
    pub async fn resize(&self, req: TerminalResize) {
        let Some(terminal) = self.get(&req.terminal_id) else {
            return self.error(&req.terminal_id, messages::TERMINAL_NOT_FOUND);
        };
        if req.cols == 0 || req.rows == 0 {
            let err = OpenError::BadSize {
                cols: req.cols,
                rows: req.rows,
            };
            return self.error(&req.terminal_id, err.to_string());
        }
        let size = PtySize {
            rows: req.rows,
            cols: req.cols,
            pixel_width: 0,
            pixel_height: 0,
        };
        let result = terminal
            .master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resize(size);
        match result {
            Ok(()) => {
                tracing::debug!(terminal_id = %req.terminal_id, cols = req.cols, rows = req.rows, "terminal resized")
            }
            Err(err) => self.error(&req.terminal_id, format!("Resize failed: {err}")),
        }
    }

    /// Handles `kill_terminal`: the shell's whole session is killed and
    /// `terminal_exit {exitCode: -1}` follows once it is gone.
    pub async fn kill(&self, req: KillTerminal) {
        let Some(terminal) = self.map().remove(&req.terminal_id) else {
            return self.error(&req.terminal_id, messages::TERMINAL_NOT_FOUND);
        };
        tracing::info!(terminal_id = %req.terminal_id, pid = terminal.pid, "killing terminal");
        terminal.killed.store(true, Ordering::SeqCst);
        let pid = terminal.pid;
        let _ = tokio::task::spawn_blocking(move || kill_session(pid)).await;
    }

    /// Kills every terminal and waits until each has reported its exit.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Terminal>> = self.map().drain().map(|(_, t)| t).collect();
        for terminal in &all {
            terminal.killed.store(true, Ordering::SeqCst);
            let pid = terminal.pid;
            let _ = tokio::task::spawn_blocking(move || kill_session(pid)).await;
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }
}

/// Opens a requested cwd beneath the roots.
fn resolve_cwd(cwd: &str, roots: &[PathBuf]) -> Result<Opened, OpenError> {
    let bad = |reason: String| OpenError::BadCwd {
        cwd: cwd.to_owned(),
        reason,
    };
    let path = normalize_path(cwd).map_err(|err| bad(err.to_string()))?;
    match beneath::open(&path, roots, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(opened) => Ok(opened),
        Err(BeneathError::Outside) => Err(OpenError::OutsideRoots(cwd.to_owned())),
        Err(BeneathError::Io(err))
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Err(bad("not an existing directory".to_owned()))
        }
        Err(err) => Err(bad(err.to_string())),
    }
}

/// Opens the default cwd (configuration, not confined).
fn open_default_cwd(path: &Path) -> Result<Opened, OpenError> {
    beneath::open(path, &[], OFlags::PATH | OFlags::DIRECTORY).map_err(|err| OpenError::BadCwd {
        cwd: path.display().to_string(),
        reason: err.to_string(),
    })
}

/// Reads the PTY until end-of-file (or `EIO`, which is how Linux reports
/// that the other side closed), handing chunks to the pump.
fn read_pty(mut reader: Box<dyn Read + Send>, tx: mpsc::Sender<Vec<u8>>, stats: &TerminalStats) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                stats.reads.fetch_add(1, Ordering::Relaxed);
                stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
                // Blocks while the pump is behind: that is the back-pressure.
                if tx.blocking_send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// Kills every process of the session led by `sid` (the shell, its jobs and
/// their children), then waits a bounded time for them to disappear.
fn kill_session(sid: u32) {
    let Ok(raw) = i32::try_from(sid) else { return };
    if raw <= 1 {
        return;
    }
    let leader = Pid::from_raw(raw);
    let _ = killpg(leader, Signal::SIGHUP);
    let _ = killpg(leader, Signal::SIGKILL);
    let deadline = std::time::Instant::now() + KILL_WAIT;
    loop {
        let members = session_members(leader);
        for pid in &members {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        if members.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Live processes (not zombies) whose session id is `sid`.
fn session_members(sid: Pid) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .map(Pid::from_raw)
        .filter(|pid| getsid(Some(*pid)) == Ok(sid) && !is_zombie(*pid))
        .collect()
}

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use runner_protocol::RunnerEvent;

    use super::*;
    use crate::outbox::OutboxReceiver;

    const WAIT: Duration = Duration::from_secs(15);
    /// How often a test polls /proc for a process state it cannot await.
    const POLL: Duration = Duration::from_millis(20);

    struct Harness {
        manager: TerminalManager,
        rx: OutboxReceiver,
        root: tempfile::TempDir,
        /// Decoded output per terminal, gathered while waiting.
        output: HashMap<String, Vec<u8>>,
        data_events: HashMap<String, usize>,
    }

    impl Harness {
        fn new() -> Self {
            Self::with(|_| {})
        }

        fn with(tune: impl FnOnce(&mut TerminalSettings)) -> Self {
            let root = tempfile::tempdir().unwrap();
            let canonical = root.path().canonicalize().unwrap();
            let mut settings = TerminalSettings::new(vec![canonical.clone()], canonical);
            settings.default_shell = "/bin/sh".to_owned();
            tune(&mut settings);
            let (outbox, rx) = Outbox::channel();
            Harness {
                manager: TerminalManager::new(settings, outbox),
                rx,
                root,
                output: HashMap::new(),
                data_events: HashMap::new(),
            }
        }

        fn root(&self) -> PathBuf {
            self.root.path().canonicalize().unwrap()
        }

        /// Waits for the first event matching `pred`, recording output on the way.
        async fn until(
            &mut self,
            what: &str,
            mut pred: impl FnMut(&RunnerEvent) -> bool,
        ) -> RunnerEvent {
            let fut = async {
                loop {
                    let ev = self.rx.recv().await.expect("outbox open");
                    if let RunnerEvent::TerminalData(d) = &ev {
                        let bytes = BASE64.decode(&d.data).expect("runner sends valid base64");
                        self.output
                            .entry(d.terminal_id.clone())
                            .or_default()
                            .extend(bytes);
                        *self.data_events.entry(d.terminal_id.clone()).or_default() += 1;
                    }
                    if pred(&ev) {
                        return ev;
                    }
                }
            };
            tokio::time::timeout(WAIT, fut)
                .await
                .unwrap_or_else(|_| panic!("waiting for {what}"))
        }

        async fn open(&mut self, id: &str) {
            self.manager
                .new_terminal(NewTerminal {
                    terminal_id: id.into(),
                    cwd: None,
                    shell: None,
                    cols: None,
                    rows: None,
                })
                .await;
            let id2 = id.to_owned();
            let ev = self
                .until("terminal_ready", |ev| {
                    matches!(ev, RunnerEvent::TerminalReady(r) if r.terminal_id == id2)
                        || matches!(ev, RunnerEvent::TerminalError(_))
                })
                .await;
            assert!(matches!(ev, RunnerEvent::TerminalReady(_)), "{ev:?}");
        }

        async fn type_text(&self, id: &str, text: &str) {
            self.manager
                .input(TerminalInput {
                    terminal_id: id.into(),
                    data: BASE64.encode(text),
                })
                .await;
        }

        /// Waits until the terminal's output contains `needle`, scanning only
        /// what arrived since the last look (the output may be megabytes).
        async fn until_output(&mut self, id: &str, needle: &str) {
            let id_owned = id.to_owned();
            let mut scanned: usize = 0;
            let fut = async {
                loop {
                    let out = self
                        .output
                        .get(&id_owned)
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let from = scanned.saturating_sub(needle.len());
                    if out.len() >= needle.len()
                        && out[from..]
                            .windows(needle.len())
                            .any(|w| w == needle.as_bytes())
                    {
                        return;
                    }
                    scanned = out.len();
                    self.until("output", |ev| matches!(ev, RunnerEvent::TerminalData(d) if d.terminal_id == id_owned))
                        .await;
                }
            };
            tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| {
                panic!("waiting for {needle:?} in {id}; got {:?}", self.text(id))
            });
        }

        fn text(&self, id: &str) -> String {
            String::from_utf8_lossy(self.output.get(id).map(Vec::as_slice).unwrap_or_default())
                .into_owned()
        }

        async fn exit_code(&mut self, id: &str) -> i32 {
            let id = id.to_owned();
            match self
                .until(
                    "terminal_exit",
                    |ev| matches!(ev, RunnerEvent::TerminalExit(e) if e.terminal_id == id),
                )
                .await
            {
                RunnerEvent::TerminalExit(e) => e.exit_code,
                _ => unreachable!(),
            }
        }

        async fn error_for(&mut self, id: &str) -> String {
            let id = id.to_owned();
            match self
                .until(
                    "terminal_error",
                    |ev| matches!(ev, RunnerEvent::TerminalError(e) if e.terminal_id == id),
                )
                .await
            {
                RunnerEvent::TerminalError(e) => e.message,
                _ => unreachable!(),
            }
        }
    }

    fn alive(pid: i32) -> bool {
        kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(Pid::from_raw(pid))
    }

    #[tokio::test]
    async fn arithmetic_round_trip() {
        let mut h = Harness::new();
        h.open("t1").await;
        h.type_text("t1", "echo $((6*7))\n").await;
        h.until_output("t1", "42\r\n").await;
        assert_eq!(h.manager.list().terminals, vec!["t1".to_owned()]);
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn runs_in_the_requested_cwd_and_default_cwd() {
        let mut h = Harness::new();
        let sub = h.root().join("sub dir");
        std::fs::create_dir(&sub).unwrap();
        h.manager
            .new_terminal(NewTerminal {
                terminal_id: "c".into(),
                cwd: Some(sub.to_string_lossy().into_owned()),
                shell: Some("/bin/sh".into()),
                cols: None,
                rows: None,
            })
            .await;
        h.type_text("c", "pwd\n").await;
        h.until_output("c", &format!("{}\r\n", sub.display())).await;
        h.open("d").await;
        h.type_text("d", "pwd\n").await;
        h.until_output("d", &format!("{}\r\n", h.root().display()))
            .await;
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn resize_is_seen_by_stty() {
        let mut h = Harness::new();
        h.open("r").await;
        h.type_text("r", "stty size\n").await;
        h.until_output("r", "24 80").await;
        h.manager
            .resize(TerminalResize {
                terminal_id: "r".into(),
                cols: 100,
                rows: 40,
            })
            .await;
        h.type_text("r", "stty size\n").await;
        h.until_output("r", "40 100").await;
        h.manager
            .resize(TerminalResize {
                terminal_id: "r".into(),
                cols: 0,
                rows: 40,
            })
            .await;
        assert!(
            h.error_for("r")
                .await
                .contains("Invalid terminal size 0x40")
        );
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn ctrl_c_interrupts_a_foreground_sleep() {
        let mut h = Harness::new();
        h.open("i").await;
        h.type_text("i", "sleep 600; echo after-$((9*9))\n").await;
        // Wait until the sleep really runs before interrupting it.
        let pid = h.manager.pid("i").unwrap() as i32;
        let started = tokio::time::timeout(WAIT, async {
            loop {
                if session_members(Pid::from_raw(pid)).len() > 1 {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        started.expect("waiting for sleep to start");
        h.type_text("i", "\x03").await;
        h.type_text("i", "echo interrupted-$((1+1))\n").await;
        h.until_output("i", "interrupted-2\r\n").await;
        assert!(
            !h.text("i").contains("after-81"),
            "the sleep was not interrupted"
        );
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn exit_code_of_the_shell() {
        let mut h = Harness::new();
        h.open("e").await;
        h.type_text("e", "exit 7\n").await;
        assert_eq!(h.exit_code("e").await, 7);
        assert!(h.manager.list().terminals.is_empty());
    }

    #[tokio::test]
    async fn kill_leaves_no_process_of_the_session() {
        let mut h = Harness::new();
        h.open("k").await;
        // The typed line is echoed with a quote after the marker; the output is not.
        h.type_text("k", "sleep 600 & echo \"bg=$!=gb\"\n").await;
        h.until_output("k", "=gb\r\n").await;
        let text = h.text("k");
        let bg: i32 = text
            .rsplit("bg=")
            .next()
            .and_then(|rest| rest.split("=gb").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no background pid in {text:?}"));
        let shell = h.manager.pid("k").unwrap() as i32;
        assert!(alive(bg) && alive(shell));
        h.manager
            .kill(KillTerminal {
                terminal_id: "k".into(),
            })
            .await;
        assert_eq!(h.exit_code("k").await, -1);
        assert!(!alive(shell), "shell {shell} survived");
        assert!(!alive(bg), "background job {bg} survived");
        // A second kill finds nothing.
        h.manager
            .kill(KillTerminal {
                terminal_id: "k".into(),
            })
            .await;
        assert_eq!(h.error_for("k").await, "Terminal not found");
    }

    #[tokio::test]
    async fn shutdown_leaves_no_shell() {
        let mut h = Harness::new();
        h.open("s1").await;
        h.open("s2").await;
        let pids = [
            h.manager.pid("s1").unwrap() as i32,
            h.manager.pid("s2").unwrap() as i32,
        ];
        h.manager.shutdown().await;
        for pid in pids {
            assert!(!alive(pid), "shell {pid} survived shutdown");
        }
        assert_eq!(h.exit_code("s1").await, -1);
        assert!(h.manager.list().terminals.is_empty());
    }

    #[tokio::test]
    async fn unknown_ids_are_refused() {
        let mut h = Harness::new();
        h.manager
            .input(TerminalInput {
                terminal_id: "nope".into(),
                data: BASE64.encode("x"),
            })
            .await;
        assert_eq!(h.error_for("nope").await, "Terminal not found");
        h.manager
            .resize(TerminalResize {
                terminal_id: "nope".into(),
                cols: 1,
                rows: 1,
            })
            .await;
        assert_eq!(h.error_for("nope").await, "Terminal not found");
        h.manager
            .kill(KillTerminal {
                terminal_id: "nope".into(),
            })
            .await;
        assert_eq!(h.error_for("nope").await, "Terminal not found");
    }

    #[tokio::test]
    async fn open_is_checked() {
        let mut h = Harness::new();
        let outside = tempfile::tempdir().unwrap();
        let evil = PathBuf::from(format!("{}-evil", h.root().display()));
        std::fs::create_dir_all(&evil).unwrap();
        std::os::unix::fs::symlink(outside.path(), h.root().join("link")).unwrap();
        let cases = [
            (" ", None, "Missing terminalId"),
            (
                "o1",
                Some(outside.path().to_string_lossy().into_owned()),
                "cwd outside allowed roots: ",
            ),
            (
                "o2",
                Some(format!("{}/../", h.root().display())),
                "cwd outside allowed roots: ",
            ),
            (
                "o3",
                Some(evil.to_string_lossy().into_owned()),
                "cwd outside allowed roots: ",
            ),
            (
                "o4",
                Some(format!("{}/link", h.root().display())),
                "cwd outside allowed roots: ",
            ),
            (
                "o5",
                Some(format!("{}/missing", h.root().display())),
                "is not usable",
            ),
            ("o6", Some("relative/dir".to_owned()), "is not usable"),
        ];
        for (id, cwd, expected) in cases {
            h.manager
                .new_terminal(NewTerminal {
                    terminal_id: id.into(),
                    cwd: cwd.clone(),
                    shell: None,
                    cols: None,
                    rows: None,
                })
                .await;
            let message = h.error_for(id).await;
            assert!(message.contains(expected), "{id} {cwd:?}: {message}");
        }
        std::fs::remove_dir_all(&evil).unwrap();
        h.open("dup").await;
        h.manager
            .new_terminal(NewTerminal {
                terminal_id: "dup".into(),
                cwd: None,
                shell: None,
                cols: None,
                rows: None,
            })
            .await;
        assert_eq!(h.error_for("dup").await, "Terminal already exists");
        h.manager
            .new_terminal(NewTerminal {
                terminal_id: "noshell".into(),
                cwd: None,
                shell: Some("/nonexistent/shell".into()),
                cols: None,
                rows: None,
            })
            .await;
        assert!(h.error_for("noshell").await.contains("/nonexistent/shell"));
        assert_eq!(h.manager.list().terminals, vec!["dup".to_owned()]);
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn invalid_base64_keeps_the_terminal() {
        let mut h = Harness::new();
        h.open("b").await;
        h.manager
            .input(TerminalInput {
                terminal_id: "b".into(),
                data: "%%% not base64".into(),
            })
            .await;
        let message = h.error_for("b").await;
        assert!(
            message.starts_with("Invalid terminal input: data is not valid base64"),
            "{message}"
        );
        h.type_text("b", "echo still-$((2+3))\n").await;
        h.until_output("b", "still-5\r\n").await;
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn input_is_bounded_in_bytes_not_messages() {
        // A shell that never reads: its PTY fills, then the writer thread
        // blocks, then the queue holds what is left of the budget.
        let mut h = Harness::with(|s| s.input_max_bytes = 64 * 1024);
        let script = h.root().join("deaf.sh");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        h.manager
            .new_terminal(NewTerminal {
                terminal_id: "deaf".into(),
                cwd: None,
                shell: Some(script.display().to_string()),
                cols: None,
                rows: None,
            })
            .await;
        h.until("terminal_ready", |ev| {
            matches!(ev, RunnerEvent::TerminalReady(_))
        })
        .await;
        // Eight messages of 16 KiB: far fewer than the 256 writes the queue
        // takes, but twice the byte budget.
        let chunk = "x".repeat(16 * 1024);
        for _ in 0..8 {
            h.type_text("deaf", &chunk).await;
        }
        let message = h.error_for("deaf").await;
        assert!(
            message.starts_with("Terminal input refused")
                && message.contains("limit of 65536")
                && message.contains("PIZZAPI_TERMINAL_INPUT_MAX_BYTES"),
            "{message}"
        );
        let terminal = h.manager.get("deaf").expect("still open");
        let queued = terminal.input_queued.load(Ordering::SeqCst);
        assert!(queued <= 64 * 1024, "{queued} bytes queued");
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn the_terminal_limit_holds() {
        let mut h = Harness::with(|s| s.max_terminals = 2);
        h.open("a").await;
        h.open("b").await;
        h.manager
            .new_terminal(NewTerminal {
                terminal_id: "c".into(),
                cwd: None,
                shell: None,
                cols: None,
                rows: None,
            })
            .await;
        assert_eq!(h.error_for("c").await, "Too many terminals (limit 2)");
        h.manager
            .kill(KillTerminal {
                terminal_id: "a".into(),
            })
            .await;
        assert_eq!(h.exit_code("a").await, -1);
        h.open("c").await;
        h.manager.shutdown().await;
    }

    #[tokio::test]
    async fn ten_mib_arrive_complete_in_order_and_coalesced() {
        let mut h = Harness::new();
        h.open("big").await;
        // 1,300,000 numbered lines: just over 10 MiB once the PTY turns \n into \r\n.
        // The bare `echo` ends the prompt's line, so every number has its own.
        h.type_text("big", "stty -echo; echo; seq 1 1300000; exit 3\n")
            .await;
        assert_eq!(h.exit_code("big").await, 3);
        let text = h.text("big");
        let numbers: Vec<&str> = text
            .split("\r\n")
            .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            .collect();
        if numbers.len() != 1_300_000 {
            let first_bad = numbers
                .iter()
                .enumerate()
                .find(|(i, n)| n.parse::<usize>().unwrap() != i + 1);
            let head: String = text.chars().take(200).collect();
            let tail: String = text
                .chars()
                .rev()
                .take(200)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!(
                "lines lost or garbled: {} lines; first bad {first_bad:?}; head {head:?}; tail {tail:?}",
                numbers.len()
            );
        }
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(
                n.parse::<usize>().unwrap(),
                i + 1,
                "out of order at line {i}"
            );
        }
        let bytes = h.output["big"].len();
        assert!(bytes >= 10 * 1024 * 1024, "only {bytes} bytes");
        let events = h.data_events["big"];
        // One event per read would be hundreds of thousands of small events;
        // coalescing makes each event carry many reads.
        let average = bytes / events;
        assert!(
            average >= 8 * 1024,
            "{events} events for {bytes} bytes: {average} bytes each"
        );
    }

    #[tokio::test]
    async fn a_fast_producer_is_throttled_while_nobody_drains() {
        let mut h = Harness::new();
        h.open("y").await;
        h.type_text("y", "yes\n").await;
        let stats = h.manager.stats("y").unwrap();
        // Nobody drains the outbox now. Reading must stop once the outbox's
        // bulk credit, the reader queue and one batch are full.
        let bound = (crate::outbox::BULK_CREDIT + (READER_QUEUE + 3) * 32 * 1024) as u64;
        let settled = tokio::time::timeout(WAIT, async {
            let mut last = u64::MAX;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = stats.bytes.load(Ordering::Relaxed);
                if now == last {
                    return now;
                }
                last = now;
            }
        })
        .await
        .expect("waiting for the terminal's output to stall");
        assert!(
            settled > 0 && settled <= bound,
            "read {settled} bytes, bound {bound}"
        );
        // Draining lets it flow again.
        let target = settled + 4 * 1024 * 1024;
        tokio::time::timeout(WAIT, async {
            while stats.bytes.load(Ordering::Relaxed) < target {
                let _ = h.rx.recv().await;
            }
        })
        .await
        .expect("waiting for output to resume");
        h.manager.shutdown().await;
    }
}
