//! Runs one scenario against a runner *process* through an embedded mock
//! relay and returns what happened.
//!
//! The driver builds the sandbox (a temporary directory holding the
//! runner's `HOME`, its workspace roots and the scenario's files), starts a
//! relay on an ephemeral loopback port, launches the runner command in the
//! first workspace root with the environment of the protocol reference
//! pointing at both, runs the steps (each family's module in
//! [`crate::steps`] says how), and tears everything down: the runner gets
//! SIGTERM (then SIGKILL). In `hardening` and `pizzapi-runner` scenarios
//! every worker process the fixture worker recorded must be gone afterwards
//! too; the reference does not say what becomes of workers when a runner
//! stops, so `contract` and `extension` verdicts do not depend on it.
//!
//! The runner starts in the first root because the reference leaves the
//! working directory of a `cwd`-less `new_session` or `new_terminal` open:
//! a runner that uses its own working directory gets one inside the roots,
//! as it would if a user started it in their workspace.
//!
//! The state of a run ([`Run`]: placeholders, the relay, the marks of what
//! `expect` looks at, the runner processes) lives here and is lent to each
//! step.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mock_relay::{MockRelay, Record, RecordDirection, RelayError, RelayHandle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::level::Level;
use crate::normalize::{Entry, Flow, Normalizer};
use crate::scenario::Scenario;
use crate::steps::{Step, StepError};
use crate::template::{UnknownPlaceholder, Vars};

/// The API key the driver's relay accepts.
pub const API_KEY: &str = "conformance-key";
/// How long a step waits for what it expects unless it says otherwise.
pub(crate) const DEFAULT_EXPECT: Duration = Duration::from_secs(5);
const REGISTER_WAIT: Duration = Duration::from_secs(10);
const TEARDOWN_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
const SETTLE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The runner command, program first.
    pub runner_cmd: Vec<String>,
    /// The worker command the runner is told to spawn for sessions.
    pub worker_cmd: Vec<String>,
    /// The relay's port; `None` for an ephemeral one. A fixed port serves
    /// one scenario at a time.
    pub port: Option<u16>,
}

impl DriverConfig {
    /// This workspace's `pizzapi-runner` and `fixture-worker` (built when
    /// missing), on an ephemeral port.
    pub fn workspace() -> Result<DriverConfig, crate::WorkspaceError> {
        let mut paths = crate::workspace_binaries(&[
            ("pizzapi-runner", "pizzapi-runner"),
            ("fixture-worker", "fixture-worker"),
        ])?
        .into_iter();
        let mut next = || vec![paths.next().expect("one path per binary")];
        Ok(DriverConfig {
            runner_cmd: next(),
            worker_cmd: next(),
            port: None,
        })
    }
}

/// Why a scenario failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The 0-based index of the failing step (`None`: set-up or teardown).
    pub step: Option<usize>,
    /// What was expected and what happened instead (the text of a
    /// [`SetUpError`], [`StepError`] or [`TeardownError`]).
    pub message: String,
}

impl Failure {
    fn new(step: Option<usize>, error: &dyn std::error::Error) -> Failure {
        Failure {
            step,
            message: error.to_string(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {}: {}", step + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a scenario's sandbox, relay or first runner could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    /// The temporary directory could not be created.
    #[error("cannot create the sandbox: {0}")]
    CreateSandbox(std::io::Error),
    /// The temporary directory's real path could not be found.
    #[error("sandbox: {0}")]
    ResolveSandbox(std::io::Error),
    /// A directory, file or symlink of the sandbox could not be made.
    #[error("sandbox: {what} {}: {source}", .path.display())]
    Sandbox {
        /// What was being done (`create`, `write`, `symlink`).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A placeholder in a sandbox file or symlink has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// `git` could not be run to make a sandbox repository.
    #[error("sandbox: git {args:?}: {source}")]
    RunGit {
        /// git's arguments.
        args: Vec<&'static str>,
        /// Why it could not run.
        source: std::io::Error,
    },
    /// `git` failed to make a sandbox repository.
    #[error("sandbox: git {args:?} in {} failed: {status}", .dir.display())]
    Git {
        /// git's arguments.
        args: Vec<&'static str>,
        /// The repository's directory.
        dir: PathBuf,
        /// How git exited.
        status: ExitStatus,
    },
    /// The relay could not start.
    #[error("cannot start the relay: {0}")]
    Relay(RelayError),
    /// The runner could not be started.
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Why the runner could not be started (at set-up or by `start_runner`).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runner command has no program.
    #[error("the runner command is empty")]
    EmptyCommand,
    /// The runner's log file could not be created.
    #[error("{}: {source}", .path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The runner's program could not be started.
    #[error("cannot start the runner {program:?}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The runner did not register in time.
    #[error("the runner did not register: {source}\n{log}")]
    NotRegistered {
        /// What the relay saw (a timeout).
        source: RelayError,
        /// The runners' logs.
        log: String,
    },
    /// The relay did not confirm the runner's registration in time.
    #[error("the relay did not confirm the registration: {0}")]
    NotConfirmed(RelayError),
}

/// A step needs a runner that is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RunnerError {
    /// No runner has registered with the relay.
    #[error("no runner has registered")]
    NotRegistered,
    /// No runner process was started.
    #[error("no runner was started")]
    NotStarted,
    /// The latest runner process has exited already.
    #[error("the runner has already exited")]
    Exited,
}

/// What went wrong while the driver stopped everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TeardownError {
    /// Every problem, in the order found (at least one).
    pub problems: Vec<TeardownProblem>,
}

/// One thing that went wrong while the driver stopped everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeardownProblem {
    /// The runner did not stop on SIGTERM (it was killed).
    #[error("runner {pid} ignored SIGTERM for {grace:?}")]
    IgnoredSigterm {
        /// The runner's pid.
        pid: u32,
        /// How long it was given.
        grace: Duration,
    },
    /// A worker (or its child) was still alive after the runner was gone
    /// (it was killed).
    #[error("orphan process {pid} ({key}) outlived the runner")]
    Orphan {
        /// The process.
        pid: i32,
        /// Which field of the worker's record named it (`pid`,
        /// `grandchildPid`).
        key: &'static str,
    },
}

/// The result of one scenario run.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// The scenario's level.
    pub level: Level,
    /// `None` when every step held.
    pub failure: Option<Failure>,
    /// The relay's transcript.
    pub transcript: Vec<Record>,
    /// The transcript as stable text (see [`crate::normalize`]).
    pub normalized: String,
    /// How long the run took.
    pub elapsed: Duration,
    /// The runner's stderr (its log), for failure reports.
    pub runner_log: String,
}

impl Outcome {
    /// Whether every step held.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The last `lines` lines of the normalized transcript.
    pub fn transcript_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.normalized.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs one scenario from start to finish.
pub async fn run(scenario: &Scenario, config: &DriverConfig) -> Outcome {
    let started = Instant::now();
    let mut run = match Run::set_up(scenario, config).await {
        Ok(run) => run,
        Err(error) => {
            return Outcome {
                name: scenario.name.clone(),
                level: scenario.level,
                failure: Some(Failure::new(None, &error)),
                transcript: Vec::new(),
                normalized: String::new(),
                elapsed: started.elapsed(),
                runner_log: String::new(),
            };
        }
    };
    let mut failure = run
        .steps(scenario)
        .await
        .err()
        .map(|(i, error)| Failure::new(Some(i), &error));
    // What happens while the driver stops the runner is not the scenario's.
    let end = run.relay.mark();
    if let Err(error) = run.tear_down().await
        && failure.is_none()
    {
        failure = Some(Failure::new(None, &error));
    }
    let mut transcript = run.relay.transcript();
    transcript.retain(|r| r.seq < end);
    let normalized = run.normalize(&transcript);
    let runner_log = run.logs();
    run.relay.clone().shutdown().await;
    Outcome {
        name: scenario.name.clone(),
        level: scenario.level,
        failure,
        transcript,
        normalized,
        elapsed: started.elapsed(),
        runner_log,
    }
}

/// The state of one scenario run, lent to each step.
pub(crate) struct Run {
    sandbox: tempfile::TempDir,
    home: PathBuf,
    roots: Vec<PathBuf>,
    /// Where the fixture worker writes a record per session.
    pub(crate) record_dir: PathBuf,
    /// The relay the runner talks to.
    pub(crate) relay: RelayHandle,
    config: DriverConfig,
    env: BTreeMap<String, String>,
    runners: Vec<Child>,
    logs: Vec<PathBuf>,
    /// Placeholder values.
    pub(crate) vars: Vars,
    runner_id: Option<String>,
    /// The scenario's level (what the teardown judges).
    level: Level,
    /// Records before this sequence number are not looked at by `expect`.
    pub(crate) action_mark: u64,
    /// Records already matched by an `expect`.
    pub(crate) consumed: BTreeSet<u64>,
    /// Sequence ranges whose order is not meaningful (bursts).
    unordered: Vec<Range<u64>>,
    /// Where the burst being sent or answered started.
    pub(crate) open_burst: Option<u64>,
}

impl Run {
    async fn set_up(scenario: &Scenario, config: &DriverConfig) -> Result<Run, SetUpError> {
        let sandbox = tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir()
            .map_err(SetUpError::CreateSandbox)?;
        let base = sandbox
            .path()
            .canonicalize()
            .map_err(SetUpError::ResolveSandbox)?;
        let home = base.join("home");
        let record_dir = base.join(".worker-records");
        let roots: Vec<PathBuf> = scenario
            .sandbox
            .roots
            .iter()
            .map(|r| base.join(r))
            .collect();
        let mut vars = Vars::default();
        vars.set("sandbox", base.display().to_string());
        vars.set("home", home.display().to_string());
        vars.set("root", roots[0].display().to_string());
        build_sandbox(scenario, &base, &home, &roots, &record_dir, &vars)?;

        let mut builder = MockRelay::builder().api_key(API_KEY);
        if let Some(port) = config.port {
            builder = builder.port(port);
        }
        let relay = builder.start().await.map_err(SetUpError::Relay)?;
        vars.set("relay_url", relay.url());
        vars.set("api_key", API_KEY);
        let mut env = runner_env(scenario, config, &relay, &home, &roots, &record_dir, &base);
        for (k, v) in &scenario.sandbox.env {
            env.insert(k.clone(), vars.fill(v)?);
        }
        let mut run = Run {
            sandbox,
            home,
            roots,
            record_dir,
            relay,
            config: config.clone(),
            env,
            runners: Vec::new(),
            logs: Vec::new(),
            vars,
            runner_id: None,
            level: scenario.level,
            action_mark: 0,
            consumed: BTreeSet::new(),
            unordered: Vec::new(),
            open_burst: None,
        };
        run.start_runner(scenario.wait_registered).await?;
        Ok(run)
    }

    /// Starts a runner process (the first, or another one with the same
    /// home) and, when asked, waits for its registration.
    pub(crate) async fn start_runner(&mut self, wait_registered: bool) -> Result<(), StartError> {
        let (program, args) = self
            .config
            .runner_cmd
            .split_first()
            .ok_or(StartError::EmptyCommand)?;
        let log = self
            .sandbox
            .path()
            .join(format!("runner-{}.log", self.runners.len() + 1));
        let log_file = std::fs::File::create(&log).map_err(|source| StartError::Log {
            path: log.clone(),
            source,
        })?;
        let mark = self.relay.mark();
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.roots[0])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| StartError::Spawn {
                program: program.clone(),
                source,
            })?;
        self.runners.push(child);
        self.logs.push(log);
        self.action_mark = mark;
        if wait_registered {
            let record = self
                .relay
                .expect(mark, |r| r.event == "register_runner", REGISTER_WAIT)
                .await
                .map_err(|source| StartError::NotRegistered {
                    source,
                    log: self.logs(),
                })?;
            if let Some(id) = record.runner_id.clone() {
                self.vars.set("runner_id", id.clone());
                self.runner_id = Some(id);
            }
            self.relay
                .expect(mark, |r| r.event == "runner_registered", REGISTER_WAIT)
                .await
                .map_err(StartError::NotConfirmed)?;
        }
        Ok(())
    }

    /// Every runner's log so far, in start order.
    pub(crate) fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- next runner ---\n")
    }

    /// The id of the runner the relay talks to.
    pub(crate) fn runner_id(&self) -> Result<String, RunnerError> {
        self.runner_id
            .clone()
            .or_else(|| self.relay.runners().first().map(|r| r.runner_id.clone()))
            .ok_or(RunnerError::NotRegistered)
    }

    /// The runner process started last.
    pub(crate) fn latest(&mut self) -> Result<&mut Child, RunnerError> {
        self.runners.last_mut().ok_or(RunnerError::NotStarted)
    }

    /// Runs the steps in order; on failure, the failing step's index and why.
    async fn steps(&mut self, scenario: &Scenario) -> Result<(), (usize, StepError)> {
        for (i, step) in scenario.steps.iter().enumerate() {
            step.run(self).await.map_err(|error| (i, error))?;
            // A burst stays open until the expects that follow it are done.
            if !matches!(step, Step::Expect(_))
                && !step.is_burst()
                && let Some(start) = self.open_burst.take()
            {
                self.unordered.push(start..self.relay.mark());
            }
        }
        if let Some(start) = self.open_burst.take() {
            self.unordered.push(start..self.relay.mark());
        }
        Ok(())
    }

    /// After the runner exited: waits until the relay has noticed every
    /// socket close (a moment later; much later on a loaded machine), so
    /// the transcript holds everything the runner sent before it went,
    /// whatever the timing. Bounded; nothing to wait for when no socket is
    /// open.
    pub(crate) async fn settle_disconnect(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let counts = self.relay.counts();
            let count = |name: &str| counts.get(name).copied().unwrap_or(0);
            if count("connect") <= count("disconnect") || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn tear_down(&mut self) -> Result<(), TeardownError> {
        let mut problems = Vec::new();
        for child in &mut self.runners {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if tokio::time::timeout(TEARDOWN_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    problems.push(TeardownProblem::IgnoredSigterm {
                        pid,
                        grace: TEARDOWN_GRACE,
                    });
                    let _ = child.kill().await;
                }
            }
        }
        // Every worker (and grandchild) the fixture worker recorded must be
        // gone once the runner is, where the level judges it; whatever is
        // left is killed either way.
        let records = std::fs::read_dir(&self.record_dir)
            .into_iter()
            .flatten()
            .flatten();
        for entry in records {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Ok(record) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            for key in ["pid", "grandchildPid"] {
                if let Some(pid) = record.get(key).and_then(Value::as_i64) {
                    let pid = pid as i32;
                    if poll(Duration::from_secs(2), || (!is_alive(pid)).then_some(()))
                        .await
                        .is_none()
                    {
                        if self.level.judges_orphans() {
                            problems.push(TeardownProblem::Orphan { pid, key });
                        }
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TeardownError { problems })
        }
    }

    fn normalize(&self, transcript: &[Record]) -> String {
        let mut normalizer = Normalizer::new().path(&self.home, "<home>");
        for (i, root) in self.roots.iter().enumerate() {
            let name = if i == 0 {
                "<root>".to_owned()
            } else {
                format!("<root-{}>", i + 1)
            };
            normalizer = normalizer.path(root, &name);
        }
        normalizer = normalizer.path(self.sandbox.path(), "<sandbox>");
        let entries: Vec<Entry> = transcript
            .iter()
            .map(|r| Entry {
                flow: match r.direction {
                    RecordDirection::In => Flow::FromRunner,
                    RecordDirection::Out => Flow::ToRunner,
                    RecordDirection::Connection => Flow::Connection,
                },
                event: r.event.clone(),
                payload: r.payload.clone(),
            })
            .collect();
        let index_of = |seq: u64| {
            transcript
                .iter()
                .position(|r| r.seq >= seq)
                .unwrap_or(transcript.len())
        };
        let spans: Vec<Range<usize>> = self
            .unordered
            .iter()
            .map(|r| index_of(r.start)..index_of(r.end))
            .collect();
        normalizer.transcript(&entries, &spans)
    }
}

/// Calls `check` until it gives a value or `timeout` passes.
pub(crate) async fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn build_sandbox(
    scenario: &Scenario,
    base: &Path,
    home: &Path,
    roots: &[PathBuf],
    record_dir: &Path,
    vars: &Vars,
) -> Result<(), SetUpError> {
    let io = |what: &'static str, path: &Path, source: std::io::Error| SetUpError::Sandbox {
        what,
        path: path.to_path_buf(),
        source,
    };
    let sandbox = &scenario.sandbox;
    let skills_dir = home.join(".pizzapi").join("skills");
    for dir in [
        home.to_path_buf(),
        record_dir.to_path_buf(),
        skills_dir.clone(),
    ]
    .iter()
    .chain(roots)
    .chain(
        sandbox
            .dirs
            .iter()
            .map(|d| base.join(d))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    for (path, content) in &sandbox.files {
        let path = base.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        let content = vars.fill(content)?;
        std::fs::write(&path, content).map_err(|e| io("write", &path, e))?;
    }
    for (link, target) in &sandbox.symlinks {
        let link = base.join(link);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
        }
        let target = vars.fill(target)?;
        std::os::unix::fs::symlink(&target, &link).map_err(|e| io("symlink", &link, e))?;
    }
    for fifo in &sandbox.fifos {
        let fifo = base.join(fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| io("mkfifo", &fifo, e.into()))?;
    }
    for (name, content) in &sandbox.skills {
        let dir = skills_dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        std::fs::write(dir.join("SKILL.md"), content).map_err(|e| io("write", &dir, e))?;
    }
    if let Some(cache) = &sandbox.usage_cache {
        let path = home.join(".pizzapi").join("usage-cache.json");
        std::fs::write(&path, cache.to_string()).map_err(|e| io("write", &path, e))?;
    }
    for repo in &sandbox.git {
        let dir = base.join(repo);
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=Conformance",
                "-c",
                "user.email=conformance@localhost",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "initial",
            ],
        ] {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(&dir)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", home)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|source| SetUpError::RunGit {
                    args: args.to_vec(),
                    source,
                })?;
            if !status.success() {
                return Err(SetUpError::Git {
                    args: args.to_vec(),
                    dir,
                    status,
                });
            }
        }
    }
    Ok(())
}

fn runner_env(
    scenario: &Scenario,
    config: &DriverConfig,
    relay: &RelayHandle,
    home: &Path,
    roots: &[PathBuf],
    record_dir: &Path,
    base: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_owned(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    env.insert("HOME".to_owned(), home.display().to_string());
    if let Ok(level) = std::env::var("RUST_LOG") {
        env.insert("RUST_LOG".to_owned(), level);
    }
    env.insert("PIZZAPI_RELAY_URL".to_owned(), relay.url());
    env.insert("PIZZAPI_API_KEY".to_owned(), API_KEY.to_owned());
    env.insert(
        "PIZZAPI_RUNNER_NAME".to_owned(),
        "conformance-runner".to_owned(),
    );
    let roots: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    env.insert("PIZZAPI_WORKSPACE_ROOTS".to_owned(), roots.join(","));
    env.insert(
        "PIZZAPI_RUNNER_STATE_PATH".to_owned(),
        home.join(".pizzapi")
            .join("runner.json")
            .display()
            .to_string(),
    );
    env.insert(
        "PIZZAPI_WORKER_CMD".to_owned(),
        shell_words::join(&config.worker_cmd),
    );
    env.insert(
        "FIXTURE_RECORD_DIR".to_owned(),
        record_dir.display().to_string(),
    );
    let worker = &scenario.sandbox.worker;
    if let Some(code) = worker.exit_code {
        env.insert("FIXTURE_EXIT_CODE".to_owned(), code.to_string());
    }
    if let Some(ms) = worker.delay_ms {
        env.insert("FIXTURE_DELAY_MS".to_owned(), ms.to_string());
    }
    if worker.exit_43_once {
        env.insert(
            "FIXTURE_EXIT_43_ONCE".to_owned(),
            base.join(".worker-restarted").display().to_string(),
        );
    }
    if worker.ignore_sigterm {
        env.insert("FIXTURE_IGNORE_SIGTERM".to_owned(), "1".to_owned());
    }
    if worker.grandchild || worker.grandchild_cleanup_ms.is_some() {
        env.insert("FIXTURE_GRANDCHILD".to_owned(), "1".to_owned());
    }
    if let Some(bytes) = worker.large_event_bytes {
        env.insert("FIXTURE_LARGE_EVENT_BYTES".to_owned(), bytes.to_string());
    }
    if let Some(ms) = worker.grandchild_cleanup_ms {
        env.insert("FIXTURE_GRANDCHILD_CLEANUP_MS".to_owned(), ms.to_string());
    }
    if !worker.events.is_empty() {
        env.insert(
            "FIXTURE_EVENTS".to_owned(),
            Value::Array(worker.events.clone()).to_string(),
        );
    }
    env
}
