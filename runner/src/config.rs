//! The runner's configuration: command-line flags with environment-variable
//! fallbacks (flags win), checked once at start-up.
//!
//! [`Args`] is what clap parses; [`Config::from_args`] validates it into a
//! [`Config`]: the relay URL is normalized, the workspace roots are
//! canonicalized (a missing root is an error), defaults under `$HOME` are
//! filled in. Every [`ConfigError`] says what to change; the binary exits
//! with [`EXIT_CONFIG`] on one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use runner_protocol::Secret;
use runner_protocol::rules::{RelayUrlError, normalize_relay_url};

use crate::connection::ReconnectPolicy;

/// Exit code of a start with a bad configuration (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// The default relay URL.
pub const DEFAULT_RELAY_URL: &str = "ws://localhost:7492";

/// The command line of `pizzapi-runner`. Every flag falls back to an
/// environment variable; a flag given on the command line wins.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pizzapi-runner",
    version,
    about = "The PizzaPi runner daemon: connects to a relay and runs agent sessions on this machine.",
    long_about = "The PizzaPi runner daemon.\n\n\
It connects to a PizzaPi relay over Socket.IO (namespace /runner), registers this machine \
under a stable identity, and then does what the relay asks: spawn and stop agent worker \
processes (sessions), manage skills, list and read files and report git status inside the \
workspace roots, and report provider usage.\n\n\
Every option can also be set through the environment variable shown next to it; a flag on \
the command line wins over the variable. The only required setting is the API key.\n\n\
Exit codes: 0 stopped by SIGINT/SIGTERM, 42 restart requested by the relay, 64 bad \
configuration, 75 another runner holds the state file, 77 the relay refused the API key or \
the runner's identity.",
    after_help = "Example:\n  PIZZAPI_API_KEY=... pizzapi-runner --relay-url wss://relay.example --workspace-root ~/code"
)]
pub struct Args {
    /// URL of the relay (ws://, wss://, http:// or https://).
    #[arg(long, env = "PIZZAPI_RELAY_URL", default_value = DEFAULT_RELAY_URL, value_name = "URL")]
    pub relay_url: String,

    /// API key the relay knows you by. Required. Also read from
    /// PIZZAPI_RUNNER_API_KEY when PIZZAPI_API_KEY is not set.
    #[arg(long, env = "PIZZAPI_API_KEY", hide_env_values = true, value_parser = parse_secret, value_name = "KEY")]
    pub api_key: Option<Secret>,

    /// Name shown for this runner in the relay [default: the host name].
    #[arg(long, env = "PIZZAPI_RUNNER_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// Workspace root the relay may use (sessions, files, git, terminals).
    /// Repeat the flag or separate roots with commas. Each must be an
    /// existing directory. Also read from PIZZAPI_WORKSPACE_ROOT (one root)
    /// when PIZZAPI_WORKSPACE_ROOTS is not set. A setting that is present but
    /// names no directory ("", ",", " , ") is an error, never "unscoped".
    /// [default: none, i.e. unscoped: the relay may use any path; a warning
    /// says so at start]
    #[arg(
        long = "workspace-root",
        env = "PIZZAPI_WORKSPACE_ROOTS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub workspace_roots: Vec<String>,

    /// State file holding the runner's identity and its single-instance lock
    /// [default: $HOME/.pizzapi/runner.json].
    #[arg(long, env = "PIZZAPI_RUNNER_STATE_PATH", value_name = "FILE")]
    pub state_path: Option<PathBuf>,

    /// Command that starts a session worker, split like a shell would
    /// (e.g. "node /opt/pizzapi/worker.js"). [default: none; sessions are
    /// refused until it is set]
    #[arg(long, env = "PIZZAPI_WORKER_CMD", value_name = "COMMAND")]
    pub worker_cmd: Option<String>,

    /// How long a stopped worker gets between SIGTERM and SIGKILL, in milliseconds.
    #[arg(
        long,
        env = "PIZZAPI_KILL_GRACE_MS",
        default_value_t = 5000,
        value_name = "MS"
    )]
    pub kill_grace_ms: u64,

    /// The most terminals (shells in pseudo-terminals) open at once; more
    /// are refused with a terminal_error.
    #[arg(
        long,
        env = "PIZZAPI_MAX_TERMINALS",
        default_value_t = 16,
        value_name = "N"
    )]
    pub max_terminals: usize,

    /// Directory of the skills [default: $HOME/.pizzapi/skills].
    #[arg(long, env = "PIZZAPI_SKILLS_DIR", value_name = "DIR")]
    pub skills_dir: Option<PathBuf>,

    /// Interval of the runner_heartbeat sent to the relay while connected, in
    /// milliseconds (at least 1).
    #[arg(
        long,
        env = "PIZZAPI_HEARTBEAT_INTERVAL_MS",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub heartbeat_interval_ms: u64,

    /// Provider-usage cache reported by usage_data
    /// [default: $HOME/.pizzapi/usage-cache.json].
    #[arg(long, env = "PIZZAPI_USAGE_CACHE_PATH", value_name = "FILE")]
    pub usage_cache_path: Option<PathBuf>,

    /// Time limit of one git command (git_status, git_diff), in milliseconds.
    #[arg(
        long,
        env = "PIZZAPI_GIT_TIMEOUT_MS",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub git_timeout_ms: u64,

    /// The most output of one git command (git_status, git_diff) the runner
    /// keeps; more is answered with an error naming the limit, never a cut
    /// diff.
    #[arg(
        long,
        env = "PIZZAPI_GIT_OUTPUT_MAX_BYTES",
        default_value_t = crate::git::MAX_GIT_OUTPUT,
        value_name = "BYTES"
    )]
    pub git_output_max_bytes: u64,

    /// The most sessions (worker processes) running at once; more are
    /// refused with a session_error naming the limit.
    #[arg(
        long,
        env = "PIZZAPI_MAX_SESSIONS",
        default_value_t = 32,
        value_name = "N"
    )]
    pub max_sessions: usize,

    /// The most commands from the relay being handled at once; more are
    /// answered with the command's error reply naming the limit (or, for a
    /// command without one, logged and dropped).
    #[arg(
        long,
        env = "PIZZAPI_MAX_COMMANDS_IN_FLIGHT",
        default_value_t = 256,
        value_name = "N"
    )]
    pub max_commands_in_flight: usize,

    /// Bytes of terminal input waiting for one shell to read them; input
    /// beyond it is refused with a terminal_error.
    #[arg(
        long,
        env = "PIZZAPI_TERMINAL_INPUT_MAX_BYTES",
        default_value_t = 1024 * 1024,
        value_name = "BYTES"
    )]
    pub terminal_input_max_bytes: usize,

    /// Bytes of worker events and terminal output waiting for the relay
    /// connection. When it is full the runner stops reading the workers'
    /// stdout and the terminals' output until the relay has taken some: a
    /// slow relay slows the producers down instead of growing the runner.
    #[arg(
        long,
        env = "PIZZAPI_OUTBOX_MAX_BYTES",
        default_value_t = 1024 * 1024,
        value_name = "BYTES"
    )]
    pub outbox_max_bytes: usize,

    /// Bytes of events kept while the relay is unreachable (sent after the
    /// next registration); the oldest are dropped beyond it, with a log line.
    #[arg(
        long,
        env = "PIZZAPI_BACKLOG_MAX_BYTES",
        default_value_t = 8 * 1024 * 1024,
        value_name = "BYTES"
    )]
    pub backlog_max_bytes: usize,

    /// The largest usage cache the runner reads; a larger one, or one that
    /// is not a regular file, is reported as no usage (with a log line).
    #[arg(
        long,
        env = "PIZZAPI_USAGE_CACHE_MAX_BYTES",
        default_value_t = crate::usage::USAGE_CACHE_MAX_BYTES,
        value_name = "BYTES"
    )]
    pub usage_cache_max_bytes: u64,

    /// The largest state file the runner reads at start; a larger one, or
    /// one that is not a regular file, stops the start (exit 64).
    #[arg(
        long,
        env = "PIZZAPI_STATE_FILE_MAX_BYTES",
        default_value_t = crate::state::STATE_FILE_MAX_BYTES,
        value_name = "BYTES"
    )]
    pub state_file_max_bytes: u64,

    /// Print the effective configuration as JSON (the API key as ***, the
    /// relay URL without user:password) and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn parse_secret(value: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(value))
}

/// A configuration that cannot be used; the message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No API key anywhere.
    #[error(
        "no API key: pass --api-key or set PIZZAPI_API_KEY (or PIZZAPI_RUNNER_API_KEY) to the key the relay gave you"
    )]
    MissingApiKey,
    /// The relay URL is unusable.
    #[error("bad relay URL (--relay-url / PIZZAPI_RELAY_URL): {0}")]
    RelayUrl(#[from] RelayUrlError),
    /// A workspace root does not exist or cannot be resolved.
    #[error(
        "workspace root {path:?} cannot be used: {source}; create it or fix --workspace-root / PIZZAPI_WORKSPACE_ROOTS"
    )]
    Root {
        /// The root as given.
        path: String,
        /// Why it could not be resolved.
        source: std::io::Error,
    },
    /// A workspace root is not a directory.
    #[error(
        "workspace root {path:?} is not a directory; fix --workspace-root / PIZZAPI_WORKSPACE_ROOTS"
    )]
    RootNotDirectory {
        /// The root as given.
        path: String,
    },
    /// A default path needs `$HOME`, which is not set.
    #[error("HOME is not set, so there is no default for {what}; set HOME or pass {flag}")]
    NoHome {
        /// The setting that needs a default.
        what: &'static str,
        /// The flag that sets it explicitly.
        flag: &'static str,
    },
    /// The worker command is empty or cannot be split.
    #[error("bad worker command (--worker-cmd / PIZZAPI_WORKER_CMD) {command:?}: {reason}")]
    WorkerCmd {
        /// The command as given.
        command: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration that must be positive is zero.
    #[error("{flag} must be at least 1 ms")]
    ZeroDuration {
        /// The flag (and variable) at fault.
        flag: &'static str,
    },
    /// The name is empty.
    #[error("the runner name (--name / PIZZAPI_RUNNER_NAME) must not be empty")]
    EmptyName,
    /// The terminal limit is zero.
    #[error("--max-terminals / PIZZAPI_MAX_TERMINALS must be at least 1")]
    ZeroTerminals,
    /// The roots setting is present but names no directory.
    #[error(
        "{setting} is set but names no directory ({value:?}); give at least one workspace root, or leave it unset for an unscoped runner"
    )]
    BlankRoots {
        /// The flag or variable at fault.
        setting: &'static str,
        /// Its value as given.
        value: String,
    },
    /// A limit that must be positive is zero.
    #[error("{flag} must be at least 1")]
    ZeroLimit {
        /// The flag (and variable) at fault.
        flag: &'static str,
    },
}

/// The validated configuration of one runner.
#[derive(Debug, Clone)]
pub struct Config {
    /// The relay URL, normalized to `http(s)://host[:port][/path]`.
    pub relay_url: String,
    /// The API key sent in the handshake.
    pub api_key: Secret,
    /// The runner's display name.
    pub name: String,
    /// The workspace roots, canonicalized; empty means unscoped.
    pub roots: Vec<PathBuf>,
    /// The state file (identity + lock).
    pub state_path: PathBuf,
    /// The worker command line, when configured.
    pub worker_cmd: Option<Vec<String>>,
    /// SIGTERM → SIGKILL grace period for workers.
    pub kill_grace: Duration,
    /// The most terminals open at once.
    pub max_terminals: usize,
    /// The most sessions running at once.
    pub max_sessions: usize,
    /// The most commands handled at once.
    pub max_commands_in_flight: usize,
    /// Bytes of input waiting for one terminal's shell.
    pub terminal_input_max_bytes: usize,
    /// Bytes of bulk data (worker events, terminal output) waiting for the connection.
    pub outbox_max_bytes: usize,
    /// Bytes of events kept while disconnected.
    pub backlog_max_bytes: usize,
    /// The largest usage cache read.
    pub usage_cache_max_bytes: u64,
    /// The largest state file read.
    pub state_file_max_bytes: u64,
    /// The skills directory.
    pub skills_dir: PathBuf,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// The provider-usage cache file.
    pub usage_cache_path: PathBuf,
    /// How often the usage cache file is checked for changes.
    pub usage_poll_interval: Duration,
    /// Time limit of one git command.
    pub git_timeout: Duration,
    /// The most output of one git command.
    pub git_output_max_bytes: u64,
    /// Where a session without `cwd` starts: the first root, else `$HOME`,
    /// else the current directory.
    pub default_cwd: PathBuf,
    /// The Socket.IO client's reconnection settings.
    pub reconnect: ReconnectPolicy,
    /// How long shutdown waits for in-flight commands before giving up on them.
    pub shutdown_grace: Duration,
}

impl Config {
    /// The effective configuration as JSON, keyed by the command-line
    /// flags' names, for `--print-config`: the API key is `***` and the
    /// relay URL has no `user:password`, so the output can be shared.
    pub fn printable(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_millis() as u64;
        let path = |p: &Path| p.display().to_string();
        serde_json::json!({
            "relay-url": runner_protocol::rules::redact_userinfo(&self.relay_url),
            "api-key": "***",
            "name": self.name,
            "workspace-roots": self.roots.iter().map(|r| path(r)).collect::<Vec<_>>(),
            "state-path": path(&self.state_path),
            "worker-cmd": self.worker_cmd,
            "kill-grace-ms": ms(self.kill_grace),
            "max-terminals": self.max_terminals,
            "max-sessions": self.max_sessions,
            "max-commands-in-flight": self.max_commands_in_flight,
            "terminal-input-max-bytes": self.terminal_input_max_bytes,
            "outbox-max-bytes": self.outbox_max_bytes,
            "backlog-max-bytes": self.backlog_max_bytes,
            "usage-cache-max-bytes": self.usage_cache_max_bytes,
            "state-file-max-bytes": self.state_file_max_bytes,
            "skills-dir": path(&self.skills_dir),
            "heartbeat-interval-ms": ms(self.heartbeat_interval),
            "usage-cache-path": path(&self.usage_cache_path),
            "git-timeout-ms": ms(self.git_timeout),
            "git-output-max-bytes": self.git_output_max_bytes,
            "default-cwd": path(&self.default_cwd),
        })
    }

    /// Validates parsed arguments. `env` looks up environment variables
    /// that clap does not handle itself (the secondary names
    /// `PIZZAPI_RUNNER_API_KEY` and `PIZZAPI_WORKSPACE_ROOT`, and `HOME`);
    /// the binary passes `std::env::var`.
    pub fn from_args(
        args: Args,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let nonempty = |key: &str| env(key).filter(|v| !v.trim().is_empty());

        let relay_url = normalize_relay_url(&args.relay_url)?;

        let api_key = args
            .api_key
            .filter(|k| !k.expose().trim().is_empty())
            .or_else(|| nonempty("PIZZAPI_RUNNER_API_KEY").map(Secret::new))
            .ok_or(ConfigError::MissingApiKey)?;

        let name = match args.name {
            Some(name) if name.trim().is_empty() => return Err(ConfigError::EmptyName),
            Some(name) => name.trim().to_owned(),
            None => host_name(env),
        };

        let mut raw_roots: Vec<String> = args
            .workspace_roots
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        // Present but blank fails closed. clap may drop an empty variable,
        // so presence is also looked up directly.
        if raw_roots.is_empty() {
            let blank = if !args.workspace_roots.is_empty() {
                Some((
                    "--workspace-root / PIZZAPI_WORKSPACE_ROOTS",
                    args.workspace_roots.join(","),
                ))
            } else if let Some(value) = env("PIZZAPI_WORKSPACE_ROOTS") {
                Some(("PIZZAPI_WORKSPACE_ROOTS", value))
            } else {
                match env("PIZZAPI_WORKSPACE_ROOT") {
                    Some(value) if value.trim().is_empty() => {
                        Some(("PIZZAPI_WORKSPACE_ROOT", value))
                    }
                    Some(value) => {
                        raw_roots.push(value.trim().to_owned());
                        None
                    }
                    None => None,
                }
            };
            if let Some((setting, value)) = blank {
                return Err(ConfigError::BlankRoots { setting, value });
            }
        }
        let home = nonempty("HOME").map(PathBuf::from);
        let mut roots = Vec::with_capacity(raw_roots.len());
        for raw in raw_roots {
            let expanded = expand_tilde(&raw, home.as_deref());
            let canonical =
                std::fs::canonicalize(&expanded).map_err(|source| ConfigError::Root {
                    path: raw.clone(),
                    source,
                })?;
            if !canonical.is_dir() {
                return Err(ConfigError::RootNotDirectory { path: raw });
            }
            if !roots.contains(&canonical) {
                roots.push(canonical);
            }
        }

        let under_home = |explicit: Option<PathBuf>,
                          rel: &str,
                          what: &'static str,
                          flag: &'static str|
         -> Result<PathBuf, ConfigError> {
            match explicit {
                Some(path) => Ok(expand_tilde_path(&path, home.as_deref())),
                None => home
                    .as_ref()
                    .map(|h| h.join(".pizzapi").join(rel))
                    .ok_or(ConfigError::NoHome { what, flag }),
            }
        };
        let state_path = under_home(
            args.state_path,
            "runner.json",
            "the state file",
            "--state-path",
        )?;
        let skills_dir = under_home(
            args.skills_dir,
            "skills",
            "the skills directory",
            "--skills-dir",
        )?;
        let usage_cache_path = under_home(
            args.usage_cache_path,
            "usage-cache.json",
            "the usage cache",
            "--usage-cache-path",
        )?;

        let worker_cmd = match args.worker_cmd {
            None => None,
            Some(command) if command.trim().is_empty() => None,
            Some(command) => {
                let words = shell_words::split(&command).map_err(|err| ConfigError::WorkerCmd {
                    command: command.clone(),
                    reason: err.to_string(),
                })?;
                if words.is_empty() {
                    return Err(ConfigError::WorkerCmd {
                        command,
                        reason: "it names no program".into(),
                    });
                }
                Some(words)
            }
        };

        let positive = |ms: u64, flag: &'static str| {
            if ms == 0 {
                Err(ConfigError::ZeroDuration { flag })
            } else {
                Ok(Duration::from_millis(ms))
            }
        };
        let heartbeat_interval = positive(
            args.heartbeat_interval_ms,
            "--heartbeat-interval-ms / PIZZAPI_HEARTBEAT_INTERVAL_MS",
        )?;
        let git_timeout = positive(
            args.git_timeout_ms,
            "--git-timeout-ms / PIZZAPI_GIT_TIMEOUT_MS",
        )?;

        if args.max_terminals == 0 {
            return Err(ConfigError::ZeroTerminals);
        }
        let max_terminals = args.max_terminals;
        let at_least_one = |n: u64, flag: &'static str| {
            if n == 0 {
                Err(ConfigError::ZeroLimit { flag })
            } else {
                Ok(())
            }
        };
        for (n, flag) in [
            (
                args.max_sessions as u64,
                "--max-sessions / PIZZAPI_MAX_SESSIONS",
            ),
            (
                args.max_commands_in_flight as u64,
                "--max-commands-in-flight / PIZZAPI_MAX_COMMANDS_IN_FLIGHT",
            ),
            (
                args.terminal_input_max_bytes as u64,
                "--terminal-input-max-bytes / PIZZAPI_TERMINAL_INPUT_MAX_BYTES",
            ),
            (
                args.outbox_max_bytes as u64,
                "--outbox-max-bytes / PIZZAPI_OUTBOX_MAX_BYTES",
            ),
            (
                args.backlog_max_bytes as u64,
                "--backlog-max-bytes / PIZZAPI_BACKLOG_MAX_BYTES",
            ),
            (
                args.usage_cache_max_bytes,
                "--usage-cache-max-bytes / PIZZAPI_USAGE_CACHE_MAX_BYTES",
            ),
            (
                args.state_file_max_bytes,
                "--state-file-max-bytes / PIZZAPI_STATE_FILE_MAX_BYTES",
            ),
            (
                args.git_output_max_bytes,
                "--git-output-max-bytes / PIZZAPI_GIT_OUTPUT_MAX_BYTES",
            ),
        ] {
            at_least_one(n, flag)?;
        }

        let default_cwd = roots
            .first()
            .cloned()
            .or_else(|| home.clone())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("/"));

        Ok(Config {
            relay_url,
            api_key,
            name,
            roots,
            state_path,
            worker_cmd,
            kill_grace: Duration::from_millis(args.kill_grace_ms),
            max_terminals,
            max_sessions: args.max_sessions,
            max_commands_in_flight: args.max_commands_in_flight,
            terminal_input_max_bytes: args.terminal_input_max_bytes,
            outbox_max_bytes: args.outbox_max_bytes,
            backlog_max_bytes: args.backlog_max_bytes,
            usage_cache_max_bytes: args.usage_cache_max_bytes,
            state_file_max_bytes: args.state_file_max_bytes,
            skills_dir,
            heartbeat_interval,
            usage_cache_path,
            usage_poll_interval: Duration::from_secs(2),
            git_timeout,
            git_output_max_bytes: args.git_output_max_bytes,
            default_cwd,
            reconnect: ReconnectPolicy::default(),
            shutdown_grace: Duration::from_secs(5),
        })
    }
}

/// The environment variables that configure the runner: every `env` of
/// [`Args`] and the secondary names read by [`Config::from_args`]. They are
/// the runner's own business; no shell and no worker inherits them.
pub fn config_variables() -> &'static [String] {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(collect_config_variables)
}

fn collect_config_variables() -> Vec<String> {
    let command = <Args as clap::CommandFactory>::command();
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .chain(
            ["PIZZAPI_RUNNER_API_KEY", "PIZZAPI_WORKSPACE_ROOT"]
                .into_iter()
                .map(str::to_owned),
        )
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `~` and `~/…` are expanded with `HOME` (a shell would have done it for a
/// flag, not for an environment variable).
fn expand_tilde(raw: &str, home: Option<&Path>) -> PathBuf {
    match (raw.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_owned(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(raw),
    }
}

fn expand_tilde_path(path: &Path, home: Option<&Path>) -> PathBuf {
    match path.to_str() {
        Some(s) => expand_tilde(s, home),
        None => path.to_owned(),
    }
}

/// The host name, from the kernel, else `$HOSTNAME`, else a fixed word.
fn host_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| env("HOSTNAME").filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "pizzapi-runner".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Parses a command line against a fake environment. clap reads its
    /// `env` fallbacks from the process environment, which tests must not
    /// change; so the fallbacks clap owns are checked through the binary in
    /// `tests/tests/runner_config.rs`, and here every variable clap reads is
    /// expected to be unset (flags are given explicitly).
    fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut full = vec!["pizzapi-runner"];
        full.extend_from_slice(argv);
        let args = Args::try_parse_from(full).expect("arguments parse");
        Config::from_args(args, &|k| env.get(k).cloned())
    }

    #[test]
    fn the_printed_configuration_holds_no_secret() {
        let cfg = config(
            &[
                "--relay-url",
                "https://me:hunter2@relay.example/",
                "--api-key",
                "key-that-must-not-show",
            ],
            &[("HOME", "/home/u")],
        )
        .unwrap();
        let printed = cfg.printable();
        let text = printed.to_string();
        assert_eq!(printed["relay-url"], "https://***@relay.example");
        assert_eq!(printed["api-key"], "***");
        assert!(
            !text.contains("hunter2") && !text.contains("key-that-must-not-show"),
            "{text}"
        );
    }

    #[test]
    fn flags_fill_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let cfg = config(
            &[
                "--relay-url",
                "wss://relay.example/",
                "--api-key",
                "k1",
                "--name",
                " box ",
                "--workspace-root",
                root.to_str().unwrap(),
                "--state-path",
                "/s/runner.json",
                "--worker-cmd",
                "node '/opt/my worker.js' --flag",
                "--kill-grace-ms",
                "250",
                "--skills-dir",
                "/sk",
                "--heartbeat-interval-ms",
                "1500",
                "--usage-cache-path",
                "/u.json",
                "--git-timeout-ms",
                "700",
            ],
            &[("HOME", "/home/x")],
        )
        .unwrap();
        assert_eq!(cfg.relay_url, "https://relay.example");
        assert_eq!(cfg.api_key.expose(), "k1");
        assert_eq!(cfg.name, "box");
        assert_eq!(cfg.roots, vec![root.canonicalize().unwrap()]);
        assert_eq!(cfg.default_cwd, root.canonicalize().unwrap());
        assert_eq!(cfg.state_path, PathBuf::from("/s/runner.json"));
        assert_eq!(
            cfg.worker_cmd,
            Some(vec![
                "node".to_owned(),
                "/opt/my worker.js".to_owned(),
                "--flag".to_owned()
            ])
        );
        assert_eq!(cfg.kill_grace, Duration::from_millis(250));
        assert_eq!(cfg.skills_dir, PathBuf::from("/sk"));
        assert_eq!(cfg.heartbeat_interval, Duration::from_millis(1500));
        assert_eq!(cfg.usage_cache_path, PathBuf::from("/u.json"));
        assert_eq!(cfg.git_timeout, Duration::from_millis(700));
    }

    #[test]
    fn defaults_live_under_home() {
        let cfg = config(&["--api-key", "k"], &[("HOME", "/home/x")]).unwrap();
        assert_eq!(cfg.relay_url, "http://localhost:7492");
        assert_eq!(
            cfg.state_path,
            PathBuf::from("/home/x/.pizzapi/runner.json")
        );
        assert_eq!(cfg.skills_dir, PathBuf::from("/home/x/.pizzapi/skills"));
        assert_eq!(
            cfg.usage_cache_path,
            PathBuf::from("/home/x/.pizzapi/usage-cache.json")
        );
        assert_eq!(cfg.heartbeat_interval, Duration::from_secs(10));
        assert_eq!(cfg.kill_grace, Duration::from_secs(5));
        assert!(cfg.roots.is_empty());
        assert_eq!(cfg.default_cwd, PathBuf::from("/home/x"));
        assert_eq!(cfg.worker_cmd, None);
        assert!(!cfg.name.is_empty());
    }

    #[test]
    fn secondary_variables_are_fallbacks_only() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            &[],
            &[
                ("HOME", "/h"),
                ("PIZZAPI_RUNNER_API_KEY", "runner-key"),
                ("PIZZAPI_WORKSPACE_ROOT", dir.path().to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.api_key.expose(), "runner-key");
        assert_eq!(cfg.roots, vec![dir.path().canonicalize().unwrap()]);

        let other = tempfile::tempdir().unwrap();
        let cfg = config(
            &[
                "--api-key",
                "flag-key",
                "--workspace-root",
                other.path().to_str().unwrap(),
            ],
            &[
                ("HOME", "/h"),
                ("PIZZAPI_RUNNER_API_KEY", "runner-key"),
                ("PIZZAPI_WORKSPACE_ROOT", dir.path().to_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.api_key.expose(), "flag-key");
        assert_eq!(cfg.roots, vec![other.path().canonicalize().unwrap()]);
    }

    #[test]
    fn comma_separated_roots_are_split_trimmed_and_deduplicated() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let list = format!(
            "{}, {},,{}",
            a.path().display(),
            b.path().display(),
            a.path().display()
        );
        let cfg = config(
            &["--api-key", "k", "--workspace-root", &list],
            &[("HOME", "/h")],
        )
        .unwrap();
        assert_eq!(
            cfg.roots,
            vec![
                a.path().canonicalize().unwrap(),
                b.path().canonicalize().unwrap()
            ]
        );
    }

    #[test]
    fn bad_configurations_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let missing = dir.path().join("missing");
        // (arguments, environment, what the message must mention)
        type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![],
                vec![("HOME", "/h")],
                "pass --api-key or set PIZZAPI_API_KEY",
            ),
            (
                vec!["--api-key", "  "],
                vec![("HOME", "/h")],
                "pass --api-key or set PIZZAPI_API_KEY",
            ),
            (
                vec!["--api-key", "k", "--relay-url", "ftp://x"],
                vec![("HOME", "/h")],
                "scheme \"ftp\" is not supported",
            ),
            (
                vec!["--api-key", "k", "--relay-url", "localhost:7492"],
                vec![("HOME", "/h")],
                "has no scheme",
            ),
            (
                vec![
                    "--api-key",
                    "k",
                    "--workspace-root",
                    missing.to_str().unwrap(),
                ],
                vec![("HOME", "/h")],
                "create it or fix --workspace-root",
            ),
            (
                vec!["--api-key", "k", "--workspace-root", file.to_str().unwrap()],
                vec![("HOME", "/h")],
                "is not a directory",
            ),
            (
                vec!["--api-key", "k"],
                vec![],
                "HOME is not set, so there is no default for the state file",
            ),
            (
                vec!["--api-key", "k", "--worker-cmd", "node 'unterminated"],
                vec![("HOME", "/h")],
                "bad worker command",
            ),
            (
                vec!["--api-key", "k", "--heartbeat-interval-ms", "0"],
                vec![("HOME", "/h")],
                "--heartbeat-interval-ms / PIZZAPI_HEARTBEAT_INTERVAL_MS must be at least 1 ms",
            ),
            (
                vec!["--api-key", "k", "--name", " "],
                vec![("HOME", "/h")],
                "must not be empty",
            ),
        ];
        for (argv, env, expected) in cases {
            let err = config(&argv, &env).expect_err("configuration must be refused");
            let text = err.to_string();
            assert!(text.contains(expected), "{argv:?}: {text}");
        }
    }

    #[test]
    fn a_blank_roots_setting_fails_closed() {
        for blank in ["", ",", " , ", "  "] {
            let err = config(
                &["--api-key", "k", "--workspace-root", blank],
                &[("HOME", "/h")],
            )
            .expect_err("blank roots must be refused");
            assert!(
                matches!(err, ConfigError::BlankRoots { .. }),
                "{blank:?}: {err}"
            );
            assert!(err.to_string().contains("names no directory"), "{err}");
            // The same through the variables (looked up directly, whatever
            // clap made of an empty value).
            for var in ["PIZZAPI_WORKSPACE_ROOTS", "PIZZAPI_WORKSPACE_ROOT"] {
                let err = config(&["--api-key", "k"], &[("HOME", "/h"), (var, blank)])
                    .expect_err("blank roots must be refused");
                assert!(err.to_string().contains(var), "{var}={blank:?}: {err}");
            }
        }
        // Not set at all: unscoped.
        let cfg = config(&["--api-key", "k"], &[("HOME", "/h")]).unwrap();
        assert!(cfg.roots.is_empty());
    }

    #[test]
    fn zero_limits_are_refused() {
        for flag in [
            "--max-sessions",
            "--max-commands-in-flight",
            "--terminal-input-max-bytes",
            "--outbox-max-bytes",
            "--backlog-max-bytes",
            "--usage-cache-max-bytes",
            "--state-file-max-bytes",
        ] {
            let err = config(&["--api-key", "k", flag, "0"], &[("HOME", "/h")])
                .expect_err("a zero limit must be refused");
            assert!(err.to_string().contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn config_variables_are_every_setting() {
        let vars = config_variables();
        for var in [
            "PIZZAPI_API_KEY",
            "PIZZAPI_RUNNER_API_KEY",
            "PIZZAPI_RELAY_URL",
            "PIZZAPI_WORKSPACE_ROOTS",
            "PIZZAPI_WORKSPACE_ROOT",
            "PIZZAPI_WORKER_CMD",
            "PIZZAPI_RUNNER_STATE_PATH",
            "PIZZAPI_MAX_SESSIONS",
        ] {
            assert!(vars.iter().any(|v| v == var), "{var} missing from {vars:?}");
        }
        assert!(vars.iter().all(|v| v.starts_with("PIZZAPI_")), "{vars:?}");
    }

    #[test]
    fn tilde_expands_with_home() {
        let cfg = config(
            &["--api-key", "k", "--state-path", "~/state.json"],
            &[("HOME", "/home/y")],
        )
        .unwrap();
        assert_eq!(cfg.state_path, PathBuf::from("/home/y/state.json"));
    }

    #[test]
    fn debug_hides_the_api_key() {
        let cfg = config(&["--api-key", "sekrit-123"], &[("HOME", "/h")]).unwrap();
        assert!(!format!("{cfg:?}").contains("sekrit-123"));
        let args = Args::try_parse_from(["pizzapi-runner", "--api-key", "sekrit-123"]).unwrap();
        assert!(!format!("{args:?}").contains("sekrit-123"));
    }

    #[test]
    fn help_names_every_variable() {
        let help = <Args as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for var in [
            "PIZZAPI_RELAY_URL",
            "PIZZAPI_API_KEY",
            "PIZZAPI_RUNNER_API_KEY",
            "PIZZAPI_RUNNER_NAME",
            "PIZZAPI_WORKSPACE_ROOTS",
            "PIZZAPI_WORKSPACE_ROOT",
            "PIZZAPI_RUNNER_STATE_PATH",
            "PIZZAPI_WORKER_CMD",
            "PIZZAPI_KILL_GRACE_MS",
            "PIZZAPI_SKILLS_DIR",
            "PIZZAPI_HEARTBEAT_INTERVAL_MS",
            "PIZZAPI_USAGE_CACHE_PATH",
        ] {
            assert!(help.contains(var), "--help does not mention {var}");
        }
    }
}
