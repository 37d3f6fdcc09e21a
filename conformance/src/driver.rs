//! Runs one scenario against a runner *process* through an embedded mock
//! relay and returns what happened.
//!
//! The driver builds the sandbox (a temporary directory holding the
//! runner's `HOME`, its workspace roots and the scenario's files), starts a
//! relay on an ephemeral loopback port, launches the runner command with
//! the environment of the protocol reference pointing at both, runs the
//! steps, and tears everything down: the runner gets SIGTERM (then
//! SIGKILL), and every worker process the fixture worker recorded must be
//! gone afterwards.
//!
//! `expect` looks at what arrived since the last *action* step (emit,
//! fault, signal, start), skipping records an earlier `expect` already
//! matched, so two expects after one emit may match in either arrival
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mock_relay::{MockRelay, Record, RecordDirection, RelayHandle};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runner_protocol::ServerEvent;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::level::Level;
use crate::normalize::{Entry, Flow, Normalizer};
use crate::scenario::{RunnerSignal, Scenario, Step};
use crate::template::{Vars, field, subset};

/// The API key the driver's relay accepts.
pub const API_KEY: &str = "conformance-key";
const DEFAULT_EXPECT: Duration = Duration::from_secs(5);
const DEFAULT_EXIT: Duration = Duration::from_secs(10);
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
    pub fn workspace() -> Result<DriverConfig, String> {
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
    /// What was expected and what happened instead.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {}: {}", step + 1, self.message),
            None => f.write_str(&self.message),
        }
    }
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
        Err(message) => {
            return Outcome {
                name: scenario.name.clone(),
                level: scenario.level,
                failure: Some(Failure {
                    step: None,
                    message,
                }),
                transcript: Vec::new(),
                normalized: String::new(),
                elapsed: started.elapsed(),
                runner_log: String::new(),
            };
        }
    };
    let mut failure = run.steps(scenario).await.err();
    // What happens while the driver stops the runner is not the scenario's.
    let end = run.relay.mark();
    if let Err(message) = run.tear_down().await
        && failure.is_none()
    {
        failure = Some(Failure {
            step: None,
            message,
        });
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

struct Run {
    sandbox: tempfile::TempDir,
    home: PathBuf,
    roots: Vec<PathBuf>,
    record_dir: PathBuf,
    relay: RelayHandle,
    config: DriverConfig,
    env: BTreeMap<String, String>,
    runners: Vec<Child>,
    logs: Vec<PathBuf>,
    vars: Vars,
    runner_id: Option<String>,
    /// Records before this sequence number are not looked at by `expect`.
    action_mark: u64,
    /// Records already matched by an `expect`.
    consumed: BTreeSet<u64>,
    /// Sequence ranges whose order is not meaningful (bursts).
    unordered: Vec<Range<u64>>,
    open_burst: Option<u64>,
}

impl Run {
    async fn set_up(scenario: &Scenario, config: &DriverConfig) -> Result<Run, String> {
        let sandbox = tempfile::Builder::new()
            .prefix("conformance-")
            .tempdir()
            .map_err(|e| format!("cannot create the sandbox: {e}"))?;
        let base = sandbox
            .path()
            .canonicalize()
            .map_err(|e| format!("sandbox: {e}"))?;
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
        let relay = builder
            .start()
            .await
            .map_err(|e| format!("cannot start the relay: {e}"))?;
        vars.set("relay_url", relay.url());
        vars.set("api_key", API_KEY);
        let env = runner_env(scenario, config, &relay, &home, &roots, &record_dir, &base)?;
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
            action_mark: 0,
            consumed: BTreeSet::new(),
            unordered: Vec::new(),
            open_burst: None,
        };
        run.start_runner(scenario.wait_registered).await?;
        Ok(run)
    }

    async fn start_runner(&mut self, wait_registered: bool) -> Result<(), String> {
        let (program, args) = self
            .config
            .runner_cmd
            .split_first()
            .ok_or("the runner command is empty")?;
        let log = self
            .sandbox
            .path()
            .join(format!("runner-{}.log", self.runners.len() + 1));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mark = self.relay.mark();
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the runner {program:?}: {e}"))?;
        self.runners.push(child);
        self.logs.push(log);
        self.action_mark = mark;
        if wait_registered {
            let record = self
                .relay
                .expect(mark, |r| r.event == "register_runner", REGISTER_WAIT)
                .await
                .map_err(|e| format!("the runner did not register: {e}\n{}", self.logs()))?;
            if let Some(id) = record.runner_id.clone() {
                self.vars.set("runner_id", id.clone());
                self.runner_id = Some(id);
            }
            self.relay
                .expect(mark, |r| r.event == "runner_registered", REGISTER_WAIT)
                .await
                .map_err(|e| format!("the relay did not confirm the registration: {e}"))?;
        }
        Ok(())
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n--- next runner ---\n")
    }

    fn runner_id(&self) -> Result<String, String> {
        self.runner_id
            .clone()
            .or_else(|| self.relay.runners().first().map(|r| r.runner_id.clone()))
            .ok_or_else(|| "no runner has registered".to_owned())
    }

    fn latest(&mut self) -> Result<&mut Child, String> {
        self.runners
            .last_mut()
            .ok_or_else(|| "no runner was started".to_owned())
    }

    async fn steps(&mut self, scenario: &Scenario) -> Result<(), Failure> {
        for (i, step) in scenario.steps.iter().enumerate() {
            let is_expect = matches!(step, Step::Expect { .. });
            self.step(step).await.map_err(|message| Failure {
                step: Some(i),
                message,
            })?;
            // A burst stays open until the expects that follow it are done.
            if !is_expect
                && !matches!(step, Step::Emit { count, burst, .. } if *count > 1 || *burst)
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

    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let fill = |vars: &Vars, v: &Value| vars.fill_json(v).map_err(|e| e.to_string());
        match step {
            Step::Emit {
                event,
                payload,
                raw,
                count,
                burst,
            } => {
                let runner = self.runner_id()?;
                let payload = fill(&self.vars, payload)?;
                let mark = self.relay.mark();
                if (*count > 1 || *burst) && self.open_burst.is_none() {
                    self.open_burst = Some(mark);
                }
                self.action_mark = mark;
                for copy in 1..=*count {
                    let payload = if *count > 1 {
                        numbered(&payload, copy)
                    } else {
                        payload.clone()
                    };
                    if *raw {
                        self.relay.send_raw(&runner, event, payload).await
                    } else {
                        let typed =
                            ServerEvent::decode(event, payload).map_err(|e| e.to_string())?;
                        self.relay.send(&runner, typed).await
                    }
                    .map_err(|e| format!("cannot send {event}: {e}"))?;
                }
            }
            Step::Expect {
                event,
                matches,
                count,
                timeout_ms,
                capture,
            } => {
                let want = fill(&self.vars, matches)?;
                let timeout = timeout_ms.map_or(DEFAULT_EXPECT, Duration::from_millis);
                let deadline = tokio::time::Instant::now() + timeout;
                for n in 1..=*count {
                    let consumed = self.consumed.clone();
                    let found = self
                        .relay
                        .expect(
                            self.action_mark,
                            |r| {
                                r.event == *event
                                    && !consumed.contains(&r.seq)
                                    && subset(&want, &r.payload).is_ok()
                            },
                            deadline.saturating_duration_since(tokio::time::Instant::now()),
                        )
                        .await
                        .map_err(|_| self.explain_missing(event, &want, n, *count, timeout))?;
                    self.consumed.insert(found.seq);
                    for (name, path) in capture {
                        let value = field(&found.payload, path).ok_or_else(|| {
                            format!(
                                "capture {name}: {event} has no field {path}: {}",
                                found.payload
                            )
                        })?;
                        self.vars.set(name.clone(), value);
                    }
                }
            }
            Step::ExpectOutput {
                terminal,
                contains,
                timeout_ms,
            } => {
                let terminal = self.vars.fill(terminal).map_err(|e| e.to_string())?;
                let needle = self.vars.fill(contains).map_err(|e| e.to_string())?;
                let timeout = timeout_ms.map_or(DEFAULT_EXPECT, Duration::from_millis);
                let relay = self.relay.clone();
                let found = poll(timeout, || {
                    let output = terminal_output(&relay.transcript_since(0, None), &terminal);
                    output.contains(&needle).then_some(())
                })
                .await;
                if found.is_none() {
                    let output = terminal_output(&self.relay.transcript_since(0, None), &terminal);
                    let tail: String = output
                        .chars()
                        .rev()
                        .take(300)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    return Err(format!(
                        "terminal {terminal} did not print {needle:?} within {timeout:?}; its output ends with {tail:?}"
                    ));
                }
            }
            Step::ExpectNone {
                event,
                matches,
                for_ms,
            } => {
                let want = fill(&self.vars, matches)?;
                // Watching for an absence is waiting by definition.
                tokio::time::sleep(Duration::from_millis(*for_ms)).await;
                if let Some(r) = self
                    .relay
                    .transcript_since(self.action_mark, None)
                    .into_iter()
                    .find(|r| {
                        r.event == *event
                            && !self.consumed.contains(&r.seq)
                            && subset(&want, &r.payload).is_ok()
                    })
                {
                    return Err(format!(
                        "expected no {event} matching {want}, got {}",
                        r.payload
                    ));
                }
            }
            Step::ExpectExit {
                code,
                nonzero,
                timeout_ms,
            } => {
                let timeout = timeout_ms.map_or(DEFAULT_EXIT, Duration::from_millis);
                let child = self.latest()?;
                let status = tokio::time::timeout(timeout, child.wait())
                    .await
                    .map_err(|_| format!("the runner did not exit within {timeout:?}"))?
                    .map_err(|e| format!("waiting for the runner: {e}"))?;
                let (held, wanted) = match code {
                    Some(code) => (status.code() == Some(*code), format!("exit code {code}")),
                    None => (*nonzero && !status.success(), "a non-zero exit".to_owned()),
                };
                if !held {
                    return Err(format!("expected {wanted}, got {status}\n{}", self.logs()));
                }
                self.settle_disconnect().await;
            }
            Step::StartRunner { wait_registered } => self.start_runner(*wait_registered).await?,
            Step::Kick { error } => {
                let runner = self.runner_id()?;
                self.action_mark = self.relay.mark();
                let error = match error {
                    Some(text) => Some(self.vars.fill(text).map_err(|e| e.to_string())?),
                    None => None,
                };
                self.relay
                    .kick(&runner, error)
                    .await
                    .map_err(|e| format!("kick: {e}"))?;
            }
            Step::DropConnection {} => {
                let runner = self.runner_id()?;
                self.action_mark = self.relay.mark();
                self.relay
                    .drop_connection(&runner)
                    .map_err(|e| format!("drop_connection: {e}"))?;
            }
            Step::Refuse { count, message } => {
                self.action_mark = self.relay.mark();
                self.relay.refuse_handshakes(*count, message.clone());
            }
            Step::RestartRelay {
                down_ms,
                keep_state,
            } => {
                self.action_mark = self.relay.mark();
                self.relay
                    .restart(Duration::from_millis(*down_ms), *keep_state)
                    .await
                    .map_err(|e| format!("restart: {e}"))?;
            }
            Step::Delay { ms } => self.relay.delay_outgoing(Duration::from_millis(*ms)),
            Step::Drop { count } => self.relay.drop_outgoing(*count),
            Step::Signal { signal } => {
                let pid = self.latest()?.id().ok_or("the runner has already exited")?;
                let signal = match signal {
                    RunnerSignal::Term => Signal::SIGTERM,
                    RunnerSignal::Int => Signal::SIGINT,
                    RunnerSignal::Kill => Signal::SIGKILL,
                };
                self.action_mark = self.relay.mark();
                kill(Pid::from_raw(pid as i32), signal).map_err(|e| format!("signal: {e}"))?;
            }
            Step::Wait { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Step::CheckFs {
                path,
                exists,
                content,
                mode,
            } => {
                let path = PathBuf::from(self.vars.fill(path).map_err(|e| e.to_string())?);
                let found = std::fs::symlink_metadata(&path).is_ok();
                if let Some(exists) = exists
                    && *exists != found
                {
                    return Err(format!(
                        "{} {}",
                        path.display(),
                        if found { "exists" } else { "does not exist" }
                    ));
                }
                if let Some(content) = content {
                    let actual = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    if actual != *content {
                        return Err(format!(
                            "{}: expected {content:?}, found {actual:?}",
                            path.display()
                        ));
                    }
                }
                if let Some(wanted) = mode.as_deref().and_then(crate::scenario::parse_mode) {
                    use std::os::unix::fs::PermissionsExt as _;
                    let actual = std::fs::symlink_metadata(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?
                        .permissions()
                        .mode()
                        & 0o7777;
                    if actual != wanted {
                        return Err(format!(
                            "{}: expected mode {wanted:04o}, found {actual:04o}",
                            path.display()
                        ));
                    }
                }
            }
            Step::ReadJson { path, capture } => {
                let path = PathBuf::from(self.vars.fill(path).map_err(|e| e.to_string())?);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let json: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
                for (name, key) in capture {
                    let value = field(&json, key)
                        .ok_or_else(|| format!("{} has no field {key}: {text}", path.display()))?;
                    self.vars.set(name.clone(), value);
                }
            }
            Step::WriteFs { path, content } => {
                let path = PathBuf::from(self.vars.fill(path).map_err(|e| e.to_string())?);
                let content = self.vars.fill(content).map_err(|e| e.to_string())?;
                std::fs::write(&path, content).map_err(|e| format!("{}: {e}", path.display()))?;
            }
            Step::ReadWorker {
                session,
                timeout_ms,
                alive,
            } => {
                let session = self.vars.fill(session).map_err(|e| e.to_string())?;
                let path = self.record_dir.join(format!("{session}.json"));
                let timeout = timeout_ms.map_or(DEFAULT_EXPECT, Duration::from_millis);
                let live = |record: &Value| {
                    record
                        .get("pid")
                        .and_then(Value::as_i64)
                        .and_then(|pid| i32::try_from(pid).ok())
                        .is_some_and(is_alive)
                };
                let record = poll(timeout, || {
                    std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                        .filter(|record| !*alive || live(record))
                })
                .await
                .ok_or_else(|| {
                    let which = if *alive { "live worker's " } else { "" };
                    format!("no {which}record {} within {timeout:?}", path.display())
                })?;
                self.vars.remove_where(|name| {
                    name.starts_with("worker_env_")
                        || ["worker_pid", "grandchild_pid", "worker_cwd"].contains(&name)
                });
                for (name, key) in [
                    ("worker_pid", "pid"),
                    ("grandchild_pid", "grandchildPid"),
                    ("worker_cwd", "cwd"),
                ] {
                    if let Some(value) = field(&record, key).filter(|v| v != "null") {
                        self.vars.set(name, value);
                    }
                }
                if let Some(env) = record.get("env").and_then(Value::as_object) {
                    for (k, v) in env {
                        self.vars
                            .set(format!("worker_env_{k}"), v.as_str().unwrap_or_default());
                    }
                }
            }
            Step::CheckVar {
                name,
                equals,
                matches,
                absent,
            } => {
                let actual = self.vars.get(name);
                if let Some(pattern) = matches {
                    let whole = regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map_err(|e| format!("matches: {e}"))?;
                    match actual {
                        Some(value) if whole.is_match(value) => {}
                        Some(value) => {
                            return Err(format!(
                                "{{{name}}}: {value:?} does not match /{pattern}/"
                            ));
                        }
                        None => {
                            return Err(format!(
                                "{{{name}}}: expected a value matching /{pattern}/, but it has none"
                            ));
                        }
                    }
                } else if *absent {
                    if let Some(value) = actual {
                        return Err(format!("{{{name}}} should be absent, but is {value:?}"));
                    }
                } else if let Some(expected) = equals {
                    let expected = self.vars.fill(expected).map_err(|e| e.to_string())?;
                    match actual {
                        Some(value) if value == expected => {}
                        Some(value) => {
                            return Err(format!(
                                "{{{name}}}: expected {expected:?}, found {value:?}"
                            ));
                        }
                        None => {
                            return Err(format!(
                                "{{{name}}}: expected {expected:?}, but it has no value"
                            ));
                        }
                    }
                }
            }
            Step::CheckProcess {
                pid,
                alive,
                timeout_ms,
            } => {
                let text = self.vars.fill(pid).map_err(|e| e.to_string())?;
                let pid: i32 = text.parse().map_err(|_| format!("{text:?} is not a pid"))?;
                let timeout = timeout_ms.map_or(DEFAULT_EXPECT, Duration::from_millis);
                let reached = poll(timeout, || (is_alive(pid) == *alive).then_some(())).await;
                if reached.is_none() {
                    return Err(format!(
                        "process {pid} is {} after {timeout:?}",
                        if *alive { "gone" } else { "still alive" }
                    ));
                }
            }
        }
        Ok(())
    }

    /// After the runner exited: waits until the relay has noticed every
    /// socket close (a moment later; much later on a loaded machine), so
    /// the transcript holds everything the runner sent before it went,
    /// whatever the timing. Bounded; nothing to wait for when no socket is
    /// open.
    async fn settle_disconnect(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let records = self.relay.transcript_since(0, None);
            let count = |name: &str| records.iter().filter(|r| r.event == name).count();
            if count("connect") <= count("disconnect") || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Says what arrived instead of an expected event.
    fn explain_missing(
        &self,
        event: &str,
        want: &Value,
        n: u32,
        count: u32,
        timeout: Duration,
    ) -> String {
        let since = self.relay.transcript_since(self.action_mark, None);
        let same: Vec<&Record> = since.iter().filter(|r| r.event == event).collect();
        let closest = same
            .iter()
            .filter(|r| !self.consumed.contains(&r.seq))
            .filter_map(|r| subset(want, &r.payload).err().map(|m| (r, m)))
            .next();
        let mut message = format!("expected {event} matching {want}");
        if count > 1 {
            message.push_str(&format!(" ({n} of {count})"));
        }
        message.push_str(&format!(" within {timeout:?}"));
        match closest {
            Some((r, mismatch)) => message.push_str(&format!("; got {} ({mismatch})", r.payload)),
            None if same.is_empty() => message.push_str(&format!("; no {event} arrived")),
            None => {
                message.push_str("; every matching event was already taken by an earlier expect")
            }
        }
        message
    }

    async fn tear_down(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for child in &mut self.runners {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                if tokio::time::timeout(TEARDOWN_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    problems.push(format!(
                        "runner {pid} ignored SIGTERM for {TEARDOWN_GRACE:?}"
                    ));
                    let _ = child.kill().await;
                }
            }
        }
        // Every worker (and grandchild) the fixture worker recorded must be
        // gone once the runner is: no orphans.
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
                        problems.push(format!("orphan process {pid} ({key}) outlived the runner"));
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
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

/// Everything a terminal printed so far, decoded.
fn terminal_output(records: &[Record], terminal: &str) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    for r in records {
        if r.event == "terminal_data"
            && r.payload.get("terminalId").and_then(Value::as_str) == Some(terminal)
            && let Some(data) = r.payload.get("data").and_then(Value::as_str)
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(data)
        {
            bytes.extend(decoded);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Copy `copy` of a burst payload: its ids get `-copy` appended.
fn numbered(payload: &Value, copy: u32) -> Value {
    let mut payload = payload.clone();
    if let Value::Object(map) = &mut payload {
        for key in ["requestId", "sessionId", "terminalId"] {
            if let Some(Value::String(id)) = map.get_mut(key) {
                id.push_str(&format!("-{copy}"));
            }
        }
    }
    payload
}

/// Calls `check` until it gives a value or `timeout` passes.
async fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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
) -> Result<(), String> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        format!("sandbox: {what} {}: {e}", path.display())
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
        let content = vars.fill(content).map_err(|e| e.to_string())?;
        std::fs::write(&path, content).map_err(|e| io("write", &path, e))?;
    }
    for (link, target) in &sandbox.symlinks {
        let link = base.join(link);
        let target = vars.fill(target).map_err(|e| e.to_string())?;
        std::os::unix::fs::symlink(&target, &link).map_err(|e| io("symlink", &link, e))?;
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
                .map_err(|e| format!("sandbox: git {args:?}: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "sandbox: git {args:?} in {} failed: {status}",
                    dir.display()
                ));
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
) -> Result<BTreeMap<String, String>, String> {
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
    if worker.grandchild {
        env.insert("FIXTURE_GRANDCHILD".to_owned(), "1".to_owned());
    }
    if !worker.events.is_empty() {
        env.insert(
            "FIXTURE_EVENTS".to_owned(),
            Value::Array(worker.events.clone()).to_string(),
        );
    }
    for (k, v) in &scenario.sandbox.env {
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}
