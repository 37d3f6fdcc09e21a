//! The processes under measurement: relays (ours or Node's, both behind the
//! same stdio control lines) and runners (ours or Node's), and what `/proc`
//! says about them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The API key every benchmark uses.
pub const API_KEY: &str = "bench-key";

/// How long a relay or runner gets to start.
const START: Duration = Duration::from_secs(20);

/// What the harness starts, and from where.
#[derive(Debug, Clone)]
pub struct Programs {
    /// This binary (for `bench relay`).
    pub bench: PathBuf,
    /// Our runner.
    pub runner: PathBuf,
    /// The fixture worker our runner spawns.
    pub worker: PathBuf,
    /// `bench/js`, with its `node_modules`.
    pub js_dir: PathBuf,
}

/// Which relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// `mock-relay` (socketioxide), as `bench relay`.
    Ours,
    /// `bench/js/relay.js` (socket.io 4.8 on Node).
    Node,
}

impl RelayKind {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            RelayKind::Ours => "our relay",
            RelayKind::Node => "Node relay",
        }
    }
}

/// A relay process under control.
#[derive(Debug)]
pub struct Relay {
    /// Which one.
    pub kind: RelayKind,
    /// Its port.
    pub port: u16,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl Relay {
    /// Starts a relay on `port` (0: any free one) and waits until it listens.
    pub async fn start(kind: RelayKind, port: u16, programs: &Programs) -> anyhow::Result<Relay> {
        let mut command = match kind {
            RelayKind::Ours => {
                let mut c = Command::new(&programs.bench);
                c.arg("relay");
                c
            }
            RelayKind::Node => {
                let mut c = Command::new("node");
                c.arg(programs.js_dir.join("relay.js"));
                c
            }
        };
        command
            .args(["--port", &port.to_string(), "--api-key", API_KEY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", kind.label()))?;
        let stdin = child.stdin.take().context("relay stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("relay stdout")?).lines();
        let mut relay = Relay {
            kind,
            port: 0,
            child,
            stdin,
            stdout,
            next_id: 0,
        };
        let first = tokio::time::timeout(START, relay.stdout.next_line())
            .await
            .with_context(|| format!("{} did not start within {START:?}", kind.label()))??
            .with_context(|| format!("{} exited before listening", kind.label()))?;
        let first: Value = serde_json::from_str(&first)
            .with_context(|| format!("{}: unexpected first line {first:?}", kind.label()))?;
        relay.port = first["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("{}: no port in {first}", kind.label()))?;
        Ok(relay)
    }

    /// The URL runners connect to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends a control command and waits (bounded) for its reply.
    pub async fn call(&mut self, command: Value, timeout: Duration) -> anyhow::Result<Value> {
        let pending = self.call_start(command).await?;
        self.call_finish(pending, timeout).await
    }

    /// Sends a control command; [`call_finish`](Self::call_finish) waits
    /// for its reply.
    pub async fn call_start(&mut self, mut command: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        command["id"] = json!(self.next_id);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(command)
    }

    /// Waits (bounded) for the reply to a command sent by
    /// [`call_start`](Self::call_start).
    pub async fn call_finish(
        &mut self,
        command: Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let id = command["id"].clone();
        let label = self.kind.label();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.stdout.next_line())
                .await
                .with_context(|| format!("{label}: no reply to {command} within {timeout:?}"))??
                .with_context(|| format!("{label} exited while running {command}"))?;
            let reply: Value = serde_json::from_str(&line)
                .with_context(|| format!("{label}: not JSON: {line:?}"))?;
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                bail!("{label}: {command} failed: {error}");
            }
            return Ok(reply);
        }
    }

    /// Connected runners' ids, in registration order.
    pub async fn runners(&mut self) -> anyhow::Result<Vec<String>> {
        let reply = self.call(json!({"cmd": "runners"}), START).await?;
        Ok(reply["runners"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Samples (ns) from a command that returns `rttNs`.
    pub async fn samples(&mut self, command: Value, timeout: Duration) -> anyhow::Result<Vec<u64>> {
        let reply = self.call(command, timeout).await?;
        Ok(reply["rttNs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default())
    }

    /// Kills the process at once (SIGKILL), as a crash or a hard restart would.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// Asks it to quit, and kills it if it does not.
    pub async fn stop(mut self) {
        let _ = self
            .call(json!({"cmd": "quit"}), Duration::from_secs(5))
            .await;
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// Which runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerKind {
    /// `pizzapi-runner`.
    Ours,
    /// `bench/js/runner.js` (socket.io-client 4.8 on Node).
    Node,
}

impl RunnerKind {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            RunnerKind::Ours => "our runner",
            RunnerKind::Node => "Node runner",
        }
    }
}

/// A runner process connected (or connecting) to a relay.
#[derive(Debug)]
pub struct Runner {
    /// Which one.
    pub kind: RunnerKind,
    child: Child,
    home: tempfile::TempDir,
}

impl Runner {
    /// Starts a runner against `url`. Ours gets a fresh home, state file
    /// and workspace root, the fixture worker and its default heartbeat;
    /// Node's gets `runner_id` and the same heartbeat (10 s).
    pub fn start(
        kind: RunnerKind,
        url: &str,
        runner_id: &str,
        programs: &Programs,
    ) -> anyhow::Result<Runner> {
        let home = tempfile::Builder::new()
            .prefix("pizzapi-bench-")
            .tempdir()
            .context("cannot create a temporary home")?;
        let root = home.path().join("work");
        std::fs::create_dir_all(&root)?;
        let mut command = match kind {
            RunnerKind::Ours => {
                let mut c = Command::new(&programs.runner);
                c.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("HOME", home.path())
                    .env("RUST_LOG", "warn")
                    .env("PIZZAPI_RELAY_URL", url)
                    .env("PIZZAPI_API_KEY", API_KEY)
                    .env("PIZZAPI_RUNNER_NAME", "bench-runner")
                    .env("PIZZAPI_WORKSPACE_ROOTS", &root)
                    .env("PIZZAPI_WORKER_CMD", &programs.worker)
                    .env("PIZZAPI_RUNNER_STATE_PATH", home.path().join("runner.json"));
                c
            }
            RunnerKind::Node => {
                let mut c = Command::new("node");
                c.arg(programs.js_dir.join("runner.js")).args([
                    "--url",
                    url,
                    "--api-key",
                    API_KEY,
                    "--runner-id",
                    runner_id,
                    "--runner-secret",
                    "bench-secret",
                    "--heartbeat-ms",
                    "10000",
                ]);
                c
            }
        };
        let log = std::fs::File::create(home.path().join("runner.log"))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", kind.label()))?;
        Ok(Runner { kind, child, home })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// What it wrote to stderr so far (for error messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("runner.log")).unwrap_or_default()
    }

    /// Stops it with SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// Resident set size of a process, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib * 1024)
}

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let (_, rest) = stat.rsplit_once(')').context("malformed /proc/pid/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .context("malformed /proc/pid/stat")
    };
    let total = ticks(11)? + ticks(12)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(total * 1_000_000_000 / hz))
}

/// Installs `bench/js`'s pinned packages when they are missing.
pub fn ensure_node_modules(js_dir: &Path) -> anyhow::Result<()> {
    if js_dir.join("node_modules/socket.io/package.json").exists()
        && js_dir
            .join("node_modules/socket.io-client/package.json")
            .exists()
    {
        return Ok(());
    }
    eprintln!(
        "installing the JavaScript peers' packages (npm ci in {})",
        js_dir.display()
    );
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(js_dir)
        .status()
        .context("cannot run npm (Node.js and npm are needed for the JavaScript peers)")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", js_dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_of_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 1024 * 1024);
        let before = cpu_time(me).unwrap();
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time(me).unwrap() > before);
        assert!(rss(u32::MAX).is_err());
    }
}
