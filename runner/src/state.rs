//! The state file: the runner's persistent identity and its single-instance
//! lock, in one JSON file (`{pid, startedAt, runnerId, runnerSecret}`, mode
//! 0600), as in section 8 of the protocol reference.
//!
//! * [`StateLock::acquire`] reads the file, refuses to start when the `pid`
//!   in it is a live `pizzapi-runner` ([`StateError::Held`]), takes over a
//!   dead or foreign pid (a stale lock), keeps the identity found in the file
//!   or creates one (`runnerId` a UUID v4, `runnerSecret` 32 random bytes as
//!   hex), and writes the file back with our pid.
//! * [`StateLock::release`] (also run on drop) removes only `pid` and
//!   `startedAt`; the identity stays for the next start.
//!
//! Every write goes to a temporary file in the same directory, is synced and
//! renamed over the state file, so a crash never leaves half a file. The
//! read-check-write of acquisition runs under an exclusive `flock` on the
//! directory, so two runners starting at the same moment cannot both win.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use rand::RngCore;
use runner_protocol::Secret;
use serde_json::{Map, Value};

use crate::small_file::{SmallFileError, read_small_file};

/// Exit code of a start refused because another runner holds the state file
/// (`EX_TEMPFAIL`).
pub const EXIT_LOCK_HELD: u8 = 75;

/// The largest state file read unless [`StateLock::acquire_limited`] says
/// otherwise (a real one is about 200 bytes).
pub const STATE_FILE_MAX_BYTES: u64 = 64 * 1024;

/// The name a runner process has (`/proc/<pid>/exe`).
const RUNNER_EXE: &str = "pizzapi-runner";

/// State files locked by this process: a pid equal to our own is only a live
/// lock when one of our own `StateLock`s holds the file (several runners can
/// live in one process, e.g. in tests).
static HELD_HERE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// The runner's persistent identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A UUID v4, generated once.
    pub runner_id: String,
    /// 32 random bytes as 64 hex characters, generated once.
    pub runner_secret: Secret,
}

impl Identity {
    /// A fresh identity.
    pub fn generate() -> Identity {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Identity {
            runner_id: uuid::Uuid::new_v4().to_string(),
            runner_secret: Secret::new(hex::encode(bytes)),
        }
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A live runner holds the file.
    #[error(
        "another pizzapi-runner (pid {pid}) is running with the state file {}; stop it first, or give this runner its own --state-path",
        path.display()
    )]
    Held {
        /// The live runner's pid.
        pid: u32,
        /// The state file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("state file {}: {source}", path.display())]
    Io {
        /// The file (or its directory).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but is not a usable state file.
    #[error(
        "state file {} is not valid: {reason}; repair it or move it away (a new identity is then created)",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// What a pid in the state file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PidStatus {
    /// No such process (or a zombie): a stale lock.
    Dead,
    /// A live `pizzapi-runner`: the lock is held.
    Runner,
    /// A live process that is something else (the pid was reused): stale.
    Foreign,
}

/// Looks at a pid. The real probe reads `/proc`; tests substitute their own.
pub(crate) trait PidProbe {
    fn probe(&self, pid: u32) -> PidStatus;
}

/// The probe of a running system: `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcProbe;

impl PidProbe for ProcProbe {
    fn probe(&self, pid: u32) -> PidStatus {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(stat) = fs::read_to_string(proc_dir.join("stat")) else {
            return PidStatus::Dead;
        };
        // `pid (comm) S ...`: comm may contain spaces and parentheses, the
        // state letter follows the last `)`.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X" | "x")) {
            return PidStatus::Dead;
        }
        if is_runner_program(&proc_dir) {
            PidStatus::Runner
        } else {
            PidStatus::Foreign
        }
    }
}

/// Whether the process behind `/proc/<pid>` runs a runner: its executable is
/// named `pizzapi-runner` or is the same program as this process.
fn is_runner_program(proc_dir: &Path) -> bool {
    let own = std::env::current_exe().ok().and_then(|p| file_name(&p));
    let names = |name: Option<String>| -> bool {
        name.is_some_and(|n| n == RUNNER_EXE || Some(&n) == own.as_ref())
    };
    if let Ok(exe) = fs::read_link(proc_dir.join("exe")) {
        return names(file_name(&exe));
    }
    // The exe link is unreadable (another user's process): fall back to argv[0].
    fs::read(proc_dir.join("cmdline"))
        .ok()
        .and_then(|cmd| {
            let argv0 = cmd.split(|b| *b == 0).next()?.to_vec();
            file_name(Path::new(&String::from_utf8_lossy(&argv0).into_owned()))
        })
        .is_some_and(|n| n == RUNNER_EXE)
}

/// A file name without the ` (deleted)` suffix Linux adds to the exe link of
/// a binary that was replaced while running (e.g. rebuilt).
fn file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    Some(name.strip_suffix(" (deleted)").unwrap_or(&name).to_owned())
}

/// The held state file. Dropping it releases the lock like [`StateLock::release`].
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    key: PathBuf,
    pid: u32,
    started_at: u64,
    identity: Identity,
    released: bool,
    max_bytes: u64,
}

impl StateLock {
    /// Takes the lock in the state file at `path` (creating the file and its
    /// directory when missing) and loads or creates the identity.
    pub fn acquire(path: &Path) -> Result<StateLock, StateError> {
        Self::acquire_limited(path, STATE_FILE_MAX_BYTES)
    }

    /// [`StateLock::acquire`], reading at most `max_bytes` of the file: a
    /// larger file, or one that is not a regular file (a FIFO, a device),
    /// is an error.
    pub fn acquire_limited(path: &Path, max_bytes: u64) -> Result<StateLock, StateError> {
        Self::acquire_inner(path, &ProcProbe, max_bytes)
    }

    #[cfg(test)]
    pub(crate) fn acquire_with(path: &Path, probe: &dyn PidProbe) -> Result<StateLock, StateError> {
        Self::acquire_inner(path, probe, STATE_FILE_MAX_BYTES)
    }

    fn acquire_inner(
        path: &Path,
        probe: &dyn PidProbe,
        max_bytes: u64,
    ) -> Result<StateLock, StateError> {
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| StateError::Io { path: p, source }
        };
        let dir = parent_dir(path);
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir))?;
        }
        let key = dir
            .canonicalize()
            .map_err(io(&dir))?
            .join(path.file_name().unwrap_or_default());
        let _dir_lock = lock_dir(&dir)?;

        let mut fields = read_fields(path, max_bytes)?;
        let own_pid = std::process::id();
        let mut held_here = HELD_HERE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pid) = fields.get("pid").and_then(Value::as_u64) {
            let pid = u32::try_from(pid).unwrap_or(u32::MAX);
            let held = if pid == own_pid {
                held_here.contains(&key)
            } else {
                probe.probe(pid) == PidStatus::Runner
            };
            if held {
                return Err(StateError::Held {
                    pid,
                    path: path.to_owned(),
                });
            }
            tracing::warn!(
                stale_pid = pid,
                path = %path.display(),
                "taking over a stale lock (that process is gone or is not a runner)"
            );
        }

        let identity = match (
            fields.get("runnerId").and_then(Value::as_str),
            fields.get("runnerSecret").and_then(Value::as_str),
        ) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Identity {
                runner_id: id.to_owned(),
                runner_secret: Secret::new(secret),
            },
            (None, None) => {
                let identity = Identity::generate();
                tracing::info!(runner_id = %identity.runner_id, path = %path.display(), "created a new runner identity");
                identity
            }
            _ => {
                return Err(StateError::Corrupt {
                    path: path.to_owned(),
                    reason: "runnerId and runnerSecret must both be non-empty strings".into(),
                });
            }
        };

        let started_at = now_ms();
        fields.insert("pid".into(), Value::from(own_pid));
        fields.insert("startedAt".into(), Value::from(started_at));
        fields.insert("runnerId".into(), Value::from(identity.runner_id.clone()));
        fields.insert(
            "runnerSecret".into(),
            Value::from(identity.runner_secret.expose()),
        );
        write_atomically(path, &fields)?;
        held_here.insert(key.clone());

        Ok(StateLock {
            path: path.to_owned(),
            key,
            pid: own_pid,
            started_at,
            identity,
            released: false,
            max_bytes,
        })
    }

    /// The runner's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock: removes `pid` and `startedAt` from the file when
    /// they are still ours, keeping everything else.
    pub fn release(mut self) -> Result<(), StateError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), StateError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        HELD_HERE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        let _dir_lock = lock_dir(&parent_dir(&self.path))?;
        let mut fields = read_fields(&self.path, self.max_bytes)?;
        let ours = fields.get("pid").and_then(Value::as_u64) == Some(u64::from(self.pid))
            && fields.get("startedAt").and_then(Value::as_u64) == Some(self.started_at);
        if !ours {
            tracing::warn!(path = %self.path.display(), "state file was taken over by another runner; leaving it alone");
            return Ok(());
        }
        fields.remove("pid");
        fields.remove("startedAt");
        write_atomically(&self.path, &fields)?;
        tracing::info!(path = %self.path.display(), "released the state file lock");
        Ok(())
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Err(err) = self.release_inner() {
            tracing::error!(error = %err, "could not release the state file lock");
        }
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn lock_dir(dir: &Path) -> Result<Flock<File>, StateError> {
    let file = File::open(dir).map_err(|source| StateError::Io {
        path: dir.to_owned(),
        source,
    })?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| StateError::Io {
        path: dir.to_owned(),
        source: std::io::Error::from(errno),
    })
}

/// The file's fields; an absent file is an empty object.
fn read_fields(path: &Path, max_bytes: u64) -> Result<Map<String, Value>, StateError> {
    let bytes = match read_small_file(path, max_bytes) {
        Ok(bytes) => bytes,
        Err(err) if err.is_not_found() => return Ok(Map::new()),
        Err(SmallFileError::Io(source)) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
        Err(err) => {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                reason: err.to_string(),
            });
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StateError::Corrupt {
            path: path.to_owned(),
            reason: "it is not a JSON object".into(),
        }),
        Err(err) => Err(StateError::Corrupt {
            path: path.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// Writes `fields` to a temporary file (mode 0600) beside `path`, syncs it
/// and renames it over `path`.
fn write_atomically(path: &Path, fields: &Map<String, Value>) -> Result<(), StateError> {
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| StateError::Io { path: p, source }
    };
    let mut text = serde_json::to_string_pretty(&Value::Object(fields.clone()))
        .expect("a JSON map always serializes");
    text.push('\n');
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    struct Says(PidStatus);
    impl PidProbe for Says {
        fn probe(&self, _: u32) -> PidStatus {
            self.0
        }
    }

    fn read(path: &Path) -> Map<String, Value> {
        read_fields(path, STATE_FILE_MAX_BYTES).unwrap()
    }

    #[test]
    fn creates_identity_mode_0600_and_clears_only_pid_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/runner.json");
        let lock = StateLock::acquire(&path).unwrap();
        let id = lock.identity().clone();
        assert!(uuid::Uuid::parse_str(&id.runner_id).is_ok());
        assert_eq!(
            uuid::Uuid::parse_str(&id.runner_id)
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(id.runner_secret.expose().len(), 64);
        assert!(hex::decode(id.runner_secret.expose()).is_ok());

        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let fields = read(&path);
        assert_eq!(fields["pid"], Value::from(std::process::id()));
        assert!(fields["startedAt"].as_u64().unwrap() > 1_600_000_000_000);
        assert_eq!(fields["runnerId"], Value::from(id.runner_id.clone()));

        lock.release().unwrap();
        let fields = read(&path);
        assert_eq!(
            fields.keys().cloned().collect::<Vec<_>>(),
            vec!["runnerId", "runnerSecret"]
        );
        assert_eq!(
            fields["runnerSecret"],
            Value::from(id.runner_secret.expose())
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["runner.json"]);
    }

    #[test]
    fn identity_survives_restarts_and_unknown_fields_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        let first = StateLock::acquire(&path).unwrap();
        let id = first.identity().clone();
        drop(first);
        let mut fields = read(&path);
        assert!(!fields.contains_key("pid"), "drop releases the lock");
        fields.insert("note".into(), Value::from("kept"));
        write_atomically(&path, &fields).unwrap();

        let second = StateLock::acquire(&path).unwrap();
        assert_eq!(second.identity(), &id);
        assert_eq!(read(&path)["note"], Value::from("kept"));
    }

    #[test]
    fn a_live_runner_refuses_with_pid_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        fs::write(
            &path,
            r#"{"pid": 4242, "startedAt": 1, "runnerId": "r", "runnerSecret": "s"}"#,
        )
        .unwrap();
        let err = StateLock::acquire_with(&path, &Says(PidStatus::Runner)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StateError::Held { pid: 4242, .. }));
        assert!(text.contains("pid 4242"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        // The holder's file is untouched.
        assert_eq!(read(&path)["pid"], Value::from(4242));
    }

    #[test]
    fn a_second_lock_in_the_same_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        let _first = StateLock::acquire(&path).unwrap();
        let err = StateLock::acquire(&path).unwrap_err();
        assert!(
            matches!(err, StateError::Held { pid, .. } if pid == std::process::id()),
            "{err}"
        );
    }

    #[test]
    fn our_own_pid_without_a_live_lock_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        let pid = std::process::id();
        fs::write(
            &path,
            format!(r#"{{"pid": {pid}, "startedAt": 1, "runnerId": "r", "runnerSecret": "s"}}"#),
        )
        .unwrap();
        let lock = StateLock::acquire(&path).unwrap();
        assert_eq!(lock.identity().runner_id, "r");
    }

    #[test]
    fn dead_and_foreign_pids_are_taken_over_by_the_real_probe() {
        // A dead pid: a child that has exited and been reaped.
        let mut child = Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert_eq!(ProcProbe.probe(dead), PidStatus::Dead);

        // A foreign pid: a live process that is not a runner.
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let foreign = sleeper.id();
        assert_eq!(ProcProbe.probe(foreign), PidStatus::Foreign);

        // This very process runs the same program as a runner built from
        // this crate (the test binary), so it counts as a runner.
        assert_eq!(ProcProbe.probe(std::process::id()), PidStatus::Runner);

        for pid in [dead, foreign] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("runner.json");
            fs::write(
                &path,
                format!(
                    r#"{{"pid": {pid}, "startedAt": 1, "runnerId": "id-{pid}", "runnerSecret": "s"}}"#
                ),
            )
            .unwrap();
            let lock = StateLock::acquire(&path).unwrap();
            assert_eq!(lock.identity().runner_id, format!("id-{pid}"));
            assert_eq!(read(&path)["pid"], Value::from(std::process::id()));
        }
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }

    #[test]
    fn release_leaves_a_file_taken_over_by_someone_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        let lock = StateLock::acquire(&path).unwrap();
        let mut fields = read(&path);
        fields.insert("pid".into(), Value::from(1));
        write_atomically(&path, &fields).unwrap();
        lock.release().unwrap();
        assert_eq!(read(&path)["pid"], Value::from(1));
    }

    #[test]
    fn corrupt_files_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        for text in ["{not json", "[1]", r#"{"runnerId": "only-id"}"#] {
            fs::write(&path, text).unwrap();
            let err = StateLock::acquire(&path).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{text}: {err}");
            assert!(err.to_string().contains("repair it"), "{err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn special_and_oversized_state_files_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let big = dir.path().join("big.json");
        fs::write(&big, format!("{{\"pad\": \"{}\"}}", "x".repeat(5000))).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (path, max) in [
                (fifo, STATE_FILE_MAX_BYTES),
                (zero, STATE_FILE_MAX_BYTES),
                (big, 1000),
            ] {
                let _ = tx.send(StateLock::acquire_limited(&path, max).map(|_| ()));
            }
        });
        for expected in [
            "not a regular file but a FIFO",
            "not a regular file but a character device",
            "larger than 1000 bytes",
        ] {
            let err = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("acquiring blocked ({expected})"))
                .unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn the_state_file_is_replaced_not_rewritten_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runner.json");
        fs::write(&path, "{}").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let before = fs::metadata(&path).unwrap().ino();
        let lock = StateLock::acquire(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), before, "a new file is renamed into place");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(lock);
    }
}
