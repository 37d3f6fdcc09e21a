//! Git: `git_status` and `git_diff`, by running the `git` binary
//! (protocol reference section 6).
//!
//! Git runs with an argument vector, never through a shell, so paths with
//! shell metacharacters are plain data; paths come after `--`, so a path
//! starting with `-` is not an option. Each run has a timeout (the process
//! group is killed when it expires), never prompts
//! (`GIT_TERMINAL_PROMPT=0`) and takes no optional locks.
//!
//! A repository under a root is data, not code, and must not lead outside:
//!
//! * **Where.** The working directory is opened beneath the roots
//!   ([`crate::beneath`]) and git starts in that very directory (through
//!   the handle, not the name). `GIT_CEILING_DIRECTORIES` is the parent of
//!   the outermost root holding it, so git never looks for a repository
//!   above the roots. Before anything else, `git rev-parse` names the
//!   repository it found; its git directory, common directory and work
//!   tree must lie inside the roots (a `.git` file saying `gitdir:
//!   <outside>`, a `core.worktree` pointing out, a linked work tree of an
//!   outside repository are refused).
//! * **No programs.** No system or global configuration
//!   (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL=/dev/null`,
//!   `GIT_ATTR_NOSYSTEM`), and none of the runner's own `GIT_*` variables.
//!   Every filter driver the repository's configuration defines
//!   (`filter.<x>.clean`, `.smudge`, `.process`) is blanked for the run and
//!   made optional, so `.gitattributes` or `info/attributes` selecting it
//!   run nothing; likewise every diff driver's `textconv` and `command`
//!   (besides `--no-textconv` and `--no-ext-diff`). `core.fsmonitor` is
//!   off, hooks point to `/dev/null`, there is no pager (`--no-pager`,
//!   `core.pager=cat`), `diff.external` is blank, and submodules are not
//!   entered (`--ignore-submodules=all`: a submodule has a configuration of
//!   its own). The overrides go through `GIT_CONFIG_COUNT`, so no name
//!   needs quoting.
//!
//!   The drivers are listed by a `git config` run just before; a process
//!   that can rewrite the repository's configuration between that run and
//!   the next could add a driver in between. Git offers no switch that
//!   disables every filter at once. Such a process needs write access to
//!   the `.git` directory at that moment: one of the runner's own user
//!   (a worker) can run anything already, so only another user with write
//!   access to the repository gains from it (README, Security).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use runner_protocol::rules::{confine, is_inside};
use runner_protocol::{
    FileResult, FileResultBody, GitChange, GitDiff, GitDiffReport, GitStatus, GitStatusReport,
    messages,
};
use rustix::fs::OFlags;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::beneath::{self, Opened};
use crate::files::{FileError, join_in, open_in};

/// The most output of one git run the runner keeps by default; more is an
/// error.
pub const MAX_GIT_OUTPUT: u64 = 16 * 1024 * 1024;

/// The most of git's stderr kept for an error message.
const MAX_GIT_STDERR: u64 = 64 * 1024;

/// Settings that hold for every run, whatever the repository says.
const FIXED_CONFIG: [(&str, &str); 6] = [
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("diff.external", ""),
    ("diff.ignoreSubmodules", "all"),
    ("core.quotePath", "false"),
];

/// Why a git command failed. `Display` is the `file_result` message.
#[derive(Debug, thiserror::Error)]
enum GitError {
    #[error("{}", messages::MISSING_CWD)]
    MissingCwd,
    #[error("{}", messages::MISSING_CWD_OR_PATH)]
    MissingCwdOrPath,
    #[error(transparent)]
    Path(#[from] FileError),
    #[error("Git repository outside allowed roots: its {what} is {path}")]
    RepositoryOutside { what: &'static str, path: String },
    #[error("Cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("git timed out after {} ms and was killed", .0.as_millis())]
    Timeout(Duration),
    #[error("git output exceeds {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    Failed(String),
}

/// Where a command runs: the directory (held open) and the repository's
/// configuration overrides.
#[derive(Debug)]
struct Place {
    dir: Opened,
    ceiling: Option<PathBuf>,
    config: Vec<(String, String)>,
}

/// Runs `git status` and `git diff` inside the workspace roots. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct GitService {
    roots: Arc<Vec<PathBuf>>,
    timeout: Duration,
    /// The most output of one run.
    max_output: u64,
    /// The program and leading arguments standing for `git`.
    command: Arc<Vec<String>>,
}

impl GitService {
    /// A service confined to `roots` (already canonical; empty = unscoped)
    /// whose git runs are killed after `timeout`.
    pub fn new(roots: Vec<PathBuf>, timeout: Duration) -> Self {
        Self::with_command(roots, timeout, vec!["git".to_owned()])
    }

    /// A service that runs `command` (program and leading arguments) in
    /// place of `git`; tests use it to stand in a misbehaving git.
    fn with_command(roots: Vec<PathBuf>, timeout: Duration, command: Vec<String>) -> Self {
        GitService {
            roots: Arc::new(roots),
            timeout,
            max_output: MAX_GIT_OUTPUT,
            command: Arc::new(command),
        }
    }

    /// The same service with another output limit (bytes of one run's
    /// stdout; more is answered with an error).
    pub fn with_max_output(mut self, max_output: u64) -> Self {
        self.max_output = max_output;
        self
    }

    /// Handles `git_status`: branch, ahead/behind, the changed paths (from
    /// `git status --porcelain=v1 -z --branch`) and the staged diff.
    pub async fn status(&self, req: GitStatus) -> FileResult {
        let result = self.status_report(&req.cwd).await;
        reply(
            req.request_id,
            result.map(FileResultBody::GitStatus),
            "git_status",
        )
    }

    /// Handles `git_diff`: `git diff [--cached] -- <path>`.
    pub async fn diff(&self, req: GitDiff) -> FileResult {
        let result = self
            .diff_report(&req.cwd, &req.path, req.staged.unwrap_or(false))
            .await;
        reply(
            req.request_id,
            result.map(FileResultBody::GitDiff),
            "git_diff",
        )
    }

    async fn status_report(&self, cwd: &str) -> Result<GitStatusReport, GitError> {
        if cwd.is_empty() {
            return Err(GitError::MissingCwd);
        }
        let place = self.place(cwd).await?;
        let status = self
            .run(
                &place,
                &[
                    "status",
                    "--porcelain=v1",
                    "-z",
                    "--branch",
                    "--ignore-submodules=all",
                ],
            )
            .await?;
        let mut report = parse_status(&status);
        let staged = self
            .run(
                &place,
                &[
                    "diff",
                    "--cached",
                    "--no-ext-diff",
                    "--no-textconv",
                    "--no-color",
                    "--ignore-submodules=all",
                ],
            )
            .await?;
        report.diff_staged = String::from_utf8_lossy(&staged).into_owned();
        Ok(report)
    }

    async fn diff_report(
        &self,
        cwd: &str,
        path: &str,
        staged: bool,
    ) -> Result<GitDiffReport, GitError> {
        if cwd.is_empty() || path.is_empty() {
            return Err(GitError::MissingCwdOrPath);
        }
        let place = self.place(cwd).await?;
        let target = self.target(cwd, path).await?;
        let mut args = vec![
            "diff",
            "--no-ext-diff",
            "--no-textconv",
            "--no-color",
            "--ignore-submodules=all",
        ];
        if staged {
            args.push("--cached");
        }
        args.push("--");
        let target = target.to_string_lossy().into_owned();
        args.push(&target);
        let diff = self.run(&place, &args).await?;
        Ok(GitDiffReport {
            diff: String::from_utf8_lossy(&diff).into_owned(),
        })
    }

    /// Opens the working directory beneath the roots, then asks git which
    /// repository it finds there and lists its drivers to blank.
    async fn place(&self, cwd: &str) -> Result<Place, GitError> {
        let roots = Arc::clone(&self.roots);
        let cwd = cwd.to_owned();
        let dir = tokio::task::spawn_blocking(move || {
            open_in(&cwd, ".", &roots, OFlags::PATH | OFlags::DIRECTORY)
        })
        .await
        .map_err(|err| GitError::Failed(err.to_string()))??;
        let ceiling = self
            .roots
            .iter()
            .filter(|root| is_inside(&dir.path, root))
            .min_by_key(|root| root.as_os_str().len())
            .and_then(|root| root.parent())
            .map(Path::to_path_buf);
        let mut place = Place {
            dir,
            ceiling,
            config: Vec::new(),
        };
        let found = self
            .run(
                &place,
                &[
                    "rev-parse",
                    "--path-format=absolute",
                    "--git-dir",
                    "--git-common-dir",
                    "--show-toplevel",
                ],
            )
            .await?;
        let found = String::from_utf8_lossy(&found);
        let mut lines = found.lines();
        for what in ["git directory", "common directory", "work tree"] {
            let path = lines.next().unwrap_or_default();
            self.check_inside(what, path)?;
        }
        // Exit code 1 means no such key: nothing to blank.
        let drivers = self
            .run(
                &place,
                &[
                    "config",
                    "-z",
                    "--name-only",
                    "--get-regexp",
                    r"^(filter|diff)\.",
                ],
            )
            .await
            .unwrap_or_default();
        place.config = driver_overrides(&drivers);
        Ok(place)
    }

    /// Refuses a repository path that (symlinks resolved) lies outside the
    /// roots.
    fn check_inside(&self, what: &'static str, path: &str) -> Result<(), GitError> {
        if self.roots.is_empty() {
            return Ok(());
        }
        let outside = || GitError::RepositoryOutside {
            what,
            path: path.to_owned(),
        };
        if path.is_empty() {
            return Err(outside());
        }
        confine(Path::new(path), &self.roots, |p: &Path| {
            std::fs::canonicalize(p)
        })
        .map(drop)
        .map_err(|_| outside())
    }

    /// The diffed path, confined: the path itself when it exists, else its
    /// deepest existing ancestor followed by the missing rest (a deleted
    /// file is diffed too, and a missing part holds no symlink).
    async fn target(&self, cwd: &str, path: &str) -> Result<PathBuf, GitError> {
        let roots = Arc::clone(&self.roots);
        let (cwd, path) = (cwd.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || {
            let joined = join_in(&cwd, &path, &roots)?;
            let mut existing = joined.as_path();
            let mut missing = Vec::new();
            loop {
                match beneath::open(existing, &roots, OFlags::PATH) {
                    Ok(opened) => {
                        let mut target = opened.path;
                        target.extend(missing.iter().rev());
                        return Ok(target);
                    }
                    Err(beneath::BeneathError::Io(err))
                        if err.kind() == std::io::ErrorKind::NotFound =>
                    {
                        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name())
                        else {
                            return Err(FileError::Io(err));
                        };
                        missing.push(name);
                        existing = parent;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        })
        .await
        .map_err(|err| GitError::Failed(err.to_string()))?
        .map_err(GitError::from)
    }

    /// Runs git in the place; its stdout on success, its stderr as the
    /// error.
    async fn run(&self, place: &Place, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let (program, leading) = self
            .command
            .split_first()
            .ok_or_else(|| GitError::Failed("no git command".to_owned()))?;
        let mut command = Command::new(program);
        command
            .args(leading)
            .args(["--no-pager", "--no-optional-locks"]);
        command.args(args);
        // The runner's own GIT_* settings (GIT_DIR, GIT_CONFIG_PARAMETERS,
        // GIT_EXTERNAL_DIFF, ...) must not steer this run.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIT_") {
                command.env_remove(name);
            }
        }
        let config: Vec<(&str, &str)> = FIXED_CONFIG
            .iter()
            .copied()
            .chain(place.config.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .collect();
        command.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            command.env(format!("GIT_CONFIG_KEY_{i}"), key);
            command.env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        if let Some(ceiling) = &place.ceiling {
            command.env("GIT_CEILING_DIRECTORIES", ceiling);
        }
        let mut child = command
            .current_dir(place.dir.proc_path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so a timeout can kill git and whatever it
            // started (a credential helper, a pager, ...).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(GitError::Spawn)?;
        let pgid = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(Pid::from_raw);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let outcome = tokio::time::timeout(self.timeout, async {
            let (out, err) = tokio::join!(
                read_capped(stdout, self.max_output),
                read_capped(stderr, MAX_GIT_STDERR)
            );
            (out, err, child.wait().await)
        })
        .await;
        let dir = &place.dir.path;
        let Ok((out, err, status)) = outcome else {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            tracing::warn!(dir = %dir.display(), ?args, "git timed out");
            return Err(GitError::Timeout(self.timeout));
        };
        let (out, out_complete) = out;
        let status = status.map_err(GitError::Spawn)?;
        if !out_complete {
            return Err(GitError::TooLarge(self.max_output));
        }
        if status.success() {
            Ok(out)
        } else {
            let text = String::from_utf8_lossy(&err.0).trim().to_owned();
            Err(GitError::Failed(if text.is_empty() {
                format!("git exited with {status}")
            } else {
                text
            }))
        }
    }
}

/// The overrides that blank every driver named in `names` (the NUL-separated
/// output of `git config -z --name-only --get-regexp`): for
/// `filter.<x>.*` the clean, smudge and process commands (and `required`
/// off, so a blank one is no error), for `diff.<x>.*` textconv and command.
fn driver_overrides(names: &[u8]) -> Vec<(String, String)> {
    let mut drivers: Vec<(&str, String)> = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name);
        let Some((section, rest)) = name.split_once('.') else {
            continue;
        };
        // `<section>.<var>` without a subsection names no driver.
        let Some((driver, _var)) = rest.rsplit_once('.') else {
            continue;
        };
        let section = match section {
            "filter" => "filter",
            "diff" => "diff",
            _ => continue,
        };
        let entry = (section, driver.to_owned());
        if !drivers.contains(&entry) {
            drivers.push(entry);
        }
    }
    let mut overrides = Vec::new();
    for (section, driver) in drivers {
        let blank: &[(&str, &str)] = if section == "filter" {
            &[
                ("clean", ""),
                ("smudge", ""),
                ("process", ""),
                ("required", "false"),
            ]
        } else {
            &[("textconv", ""), ("command", "")]
        };
        for (var, value) in blank {
            overrides.push((format!("{section}.{driver}.{var}"), (*value).to_owned()));
        }
    }
    overrides
}

/// Reads a pipe up to `limit` bytes; the flag says whether the end was
/// reached within it. Past the limit the pipe is dropped, so the writer
/// gets EPIPE instead of blocking.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>, limit: u64) -> (Vec<u8>, bool) {
    let Some(pipe) = pipe else {
        return (Vec::new(), true);
    };
    let mut bytes = Vec::new();
    let mut limited = pipe.take(limit + 1);
    if let Err(err) = limited.read_to_end(&mut bytes).await {
        tracing::debug!(error = %err, "reading git output failed");
    }
    let complete = bytes.len() as u64 <= limit;
    bytes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    (bytes, complete)
}

fn reply(
    request_id: Option<String>,
    body: Result<FileResultBody, GitError>,
    command: &'static str,
) -> FileResult {
    match body {
        Ok(body) => FileResult::new(request_id, body),
        Err(err) => {
            tracing::debug!(command, error = %err, "git command failed");
            FileResult::failure(request_id, err.to_string())
        }
    }
}

/// Parses `git status --porcelain=v1 -z --branch`. `diff_staged` is left
/// empty.
fn parse_status(output: &[u8]) -> GitStatusReport {
    let mut report = GitStatusReport {
        branch: String::new(),
        changes: Vec::new(),
        ahead: 0,
        behind: 0,
        diff_staged: String::new(),
    };
    let mut fields = output
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(field) = fields.next() {
        if let Some(header) = field.strip_prefix("## ") {
            parse_branch(header, &mut report);
            continue;
        }
        if field.len() < 4 || !field.is_char_boundary(2) || !field.is_char_boundary(3) {
            tracing::debug!(field, "unexpected git status entry");
            continue;
        }
        let (status, path) = (&field[..2], &field[3..]);
        // With -z, a rename or copy is followed by its original path.
        let original_path = if status.contains('R') || status.contains('C') {
            fields.next()
        } else {
            None
        };
        report.changes.push(GitChange {
            status: status.to_owned(),
            path: path.to_owned(),
            original_path,
        });
    }
    report
}

/// `main...origin/main [ahead 1, behind 2]`, `No commits yet on main`,
/// `HEAD (no branch)`.
fn parse_branch(header: &str, report: &mut GitStatusReport) {
    if let Some(branch) = header
        .strip_prefix("No commits yet on ")
        .or_else(|| header.strip_prefix("Initial commit on "))
    {
        report.branch = branch.to_owned();
        return;
    }
    if header.starts_with("HEAD (no branch)") {
        report.branch = "HEAD".to_owned();
        return;
    }
    let (branch, rest) = match header.split_once("...") {
        Some((branch, rest)) => (branch, rest),
        None => header.split_once(' ').unwrap_or((header, "")),
    };
    report.branch = branch.to_owned();
    if let Some((_, counts)) = rest.split_once('[') {
        for part in counts.trim_end_matches(']').split(',') {
            let mut words = part.split_whitespace();
            match (words.next(), words.next().and_then(|n| n.parse().ok())) {
                (Some("ahead"), Some(n)) => report.ahead = n,
                (Some("behind"), Some(n)) => report.behind = n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(20);

    /// Runs git for the test's setup (an argument vector, as the service
    /// does), with a fixed identity and no global configuration.
    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    struct Setup {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        root: PathBuf,
        service: GitService,
    }

    /// `root/` is the only root; `root/repo` a repository with one commit
    /// on `main`.
    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        let repo = root.join("repo");
        fs::create_dir_all(&repo).unwrap();
        fs::create_dir_all(base.join("root-evil")).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        fs::write(repo.join("a.txt"), "one\n").unwrap();
        fs::write(repo.join("old.txt"), "rename me\n").unwrap();
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "first"]);
        Setup {
            _tmp: tmp,
            service: GitService::new(vec![root.clone()], TIMEOUT),
            base,
            root,
        }
    }

    fn status_req(cwd: &Path) -> GitStatus {
        GitStatus {
            request_id: Some("g1".into()),
            cwd: cwd.display().to_string(),
        }
    }

    fn diff_req(cwd: &Path, path: &str, staged: bool) -> GitDiff {
        GitDiff {
            request_id: Some("g2".into()),
            cwd: cwd.display().to_string(),
            path: path.into(),
            staged: Some(staged),
        }
    }

    fn failure(result: &FileResult) -> &str {
        assert!(!result.ok, "expected a failure, got {result:?}");
        match &result.body {
            FileResultBody::Failure(f) => &f.message,
            other => panic!("expected a failure body, got {other:?}"),
        }
    }

    fn status(result: FileResult) -> GitStatusReport {
        assert!(result.ok, "{result:?}");
        match result.body {
            FileResultBody::GitStatus(s) => s,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    fn diff(result: FileResult) -> String {
        assert!(result.ok, "{result:?}");
        match result.body {
            FileResultBody::GitDiff(d) => d.diff,
            other => panic!("expected a diff, got {other:?}"),
        }
    }

    fn change(status: &str, path: &str, original: Option<&str>) -> GitChange {
        GitChange {
            status: status.into(),
            path: path.into(),
            original_path: original.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn status_reports_branch_changes_and_staged_diff() {
        let s = setup();
        let repo = s.root.join("repo");
        fs::write(repo.join("a.txt"), "one\ntwo\n").unwrap();
        fs::write(repo.join("new.txt"), "staged\n").unwrap();
        fs::write(repo.join("untracked.txt"), "?\n").unwrap();
        git(&repo, &["add", "new.txt"]);
        git(&repo, &["mv", "old.txt", "renamed.txt"]);

        let result = s.service.status(status_req(&repo)).await;
        assert_eq!(result.request_id.as_deref(), Some("g1"));
        let report = status(result);
        assert_eq!(report.branch, "main");
        assert_eq!((report.ahead, report.behind), (0, 0));
        let mut changes = report.changes.clone();
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            changes,
            vec![
                change(" M", "a.txt", None),
                change("A ", "new.txt", None),
                change("R ", "renamed.txt", Some("old.txt")),
                change("??", "untracked.txt", None),
            ]
        );
        assert!(
            report.diff_staged.contains("+staged"),
            "{}",
            report.diff_staged
        );
        assert!(
            !report.diff_staged.contains("+two"),
            "{}",
            report.diff_staged
        );
    }

    #[tokio::test]
    async fn status_counts_ahead_and_behind() {
        let s = setup();
        let repo = s.root.join("repo");
        let clone = s.root.join("clone");
        git(&s.root, &["clone", "-q", repo.to_str().unwrap(), "clone"]);
        fs::write(clone.join("mine.txt"), "x\n").unwrap();
        git(&clone, &["add", "."]);
        git(&clone, &["commit", "-q", "-m", "mine"]);
        for n in 0..2 {
            fs::write(repo.join("theirs.txt"), format!("{n}\n")).unwrap();
            git(&repo, &["add", "."]);
            git(&repo, &["commit", "-q", "-m", "theirs"]);
        }
        git(&clone, &["fetch", "-q"]);
        let report = status(s.service.status(status_req(&clone)).await);
        assert_eq!(report.branch, "main");
        assert_eq!((report.ahead, report.behind), (1, 2));
        assert!(report.changes.is_empty());
        assert_eq!(report.diff_staged, "");
    }

    #[tokio::test]
    async fn not_a_repository_is_gits_error() {
        let s = setup();
        fs::create_dir_all(s.root.join("plain")).unwrap();
        let result = s.service.status(status_req(&s.root.join("plain"))).await;
        assert!(
            failure(&result).contains("not a git repository"),
            "{result:?}"
        );
        assert_eq!(result.request_id.as_deref(), Some("g1"));
    }

    #[tokio::test]
    async fn cwd_and_path_are_confined() {
        let s = setup();
        let evil = s.base.join("root-evil");
        git(&evil, &["init", "-q"]);
        symlink(&evil, s.root.join("evil-link")).unwrap();
        let repo = s.root.join("repo");
        for cwd in [
            evil.clone(),
            s.root.join("evil-link"),
            s.root.join("../root-evil"),
        ] {
            let result = s.service.status(status_req(&cwd)).await;
            assert_eq!(failure(&result), "Path outside allowed roots", "{cwd:?}");
            let result = s.service.diff(diff_req(&cwd, "x", false)).await;
            assert_eq!(failure(&result), "Path outside allowed roots", "{cwd:?}");
        }
        for path in ["../../root-evil/x", "/etc/passwd", "../evil-link/x"] {
            let result = s.service.diff(diff_req(&repo, path, false)).await;
            assert_eq!(failure(&result), "Path outside allowed roots", "{path}");
        }
        assert_eq!(
            failure(&s.service.status(status_req(Path::new(""))).await),
            "Missing cwd"
        );
        assert_eq!(
            failure(&s.service.diff(diff_req(&repo, "", false)).await),
            "Missing cwd or path"
        );
        assert_eq!(
            failure(
                &s.service
                    .diff(diff_req(Path::new(""), "a.txt", false))
                    .await
            ),
            "Missing cwd or path"
        );
    }

    #[tokio::test]
    async fn diff_of_one_path_working_tree_and_staged() {
        let s = setup();
        let repo = s.root.join("repo");
        fs::write(repo.join("a.txt"), "one\nworking\n").unwrap();
        fs::write(repo.join("old.txt"), "rename me\nstaged\n").unwrap();
        git(&repo, &["add", "old.txt"]);
        let working = diff(s.service.diff(diff_req(&repo, "a.txt", false)).await);
        assert!(working.contains("+working"), "{working}");
        assert!(!working.contains("+staged"), "{working}");
        let staged = diff(s.service.diff(diff_req(&repo, "old.txt", true)).await);
        assert!(staged.contains("+staged"), "{staged}");
        let nothing = diff(s.service.diff(diff_req(&repo, "old.txt", false)).await);
        assert_eq!(nothing, "");
    }

    #[tokio::test]
    async fn shell_metacharacters_in_paths_are_plain_data() {
        let s = setup();
        let repo = s.root.join("repo");
        let hostile = [
            "$(touch pwned)",
            "; touch pwned",
            "`touch pwned`",
            "a b 'c' \"d\"",
            "-rf",
            "--output=pwned",
            "| touch pwned &",
        ];
        for name in hostile {
            fs::write(repo.join(name), "before\n").unwrap();
        }
        git(&repo, &["add", "--", "."]);
        git(&repo, &["commit", "-q", "-m", "hostile names"]);
        for name in hostile {
            fs::write(repo.join(name), "before\nafter\n").unwrap();
            let text = diff(s.service.diff(diff_req(&repo, name, false)).await);
            assert!(text.contains("+after"), "{name}: {text}");
            // Git quotes a name with `"` in diff headers, escaping the quotes.
            assert!(text.contains(&name.replace('"', "\\\"")), "{name}: {text}");
            git(&repo, &["add", "--", name]);
            let text = diff(s.service.diff(diff_req(&repo, name, true)).await);
            assert!(text.contains("+after"), "{name}: {text}");
        }
        let report = status(s.service.status(status_req(&repo)).await);
        let mut paths: Vec<&str> = report.changes.iter().map(|c| c.path.as_str()).collect();
        paths.sort_unstable();
        let mut expected = hostile.to_vec();
        expected.sort_unstable();
        assert_eq!(paths, expected);
        for dir in [&s.base, &s.root, &repo] {
            assert!(!dir.join("pwned").exists(), "pwned in {dir:?}");
        }
        assert!(std::env::current_dir().map_or(true, |d| !d.join("pwned").exists()));
    }

    #[tokio::test]
    async fn repository_settings_cannot_run_programs() {
        let s = setup();
        let repo = s.root.join("repo");
        let marker = s.base.join("ran");
        let script = s.base.join("hook.sh");
        fs::write(
            &script,
            format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
        )
        .unwrap();
        let mut perms = fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(&script, perms).unwrap();
        let script = script.to_str().unwrap();
        git(&repo, &["config", "core.fsmonitor", script]);
        git(&repo, &["config", "diff.external", script]);
        fs::write(repo.join("a.txt"), "changed\n").unwrap();
        status(s.service.status(status_req(&repo)).await);
        diff(s.service.diff(diff_req(&repo, "a.txt", false)).await);
        assert!(!marker.exists(), "a repository setting ran a program");
    }

    #[tokio::test]
    async fn a_hanging_git_is_killed_at_the_timeout() {
        let s = setup();
        let repo = s.root.join("repo");
        // A "git" that hangs, with a grandchild in its group: `sh -c 'sleep
        // 1000 & echo $! > pidfile; wait' git <git's arguments>`.
        let pidfile = s.base.join("sleep.pid");
        let service = GitService::with_command(
            vec![s.root.clone()],
            Duration::from_millis(300),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("sleep 1000 & echo $! > '{}'; wait", pidfile.display()),
                "git".into(),
            ],
        );
        let result = service.status(status_req(&repo)).await;
        assert_eq!(
            failure(&result),
            "git timed out after 300 ms and was killed"
        );
        let pid: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is asynchronous; the sleeper must be gone (or a zombie
        // waiting for init) within a bounded time.
        let gone = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let state = fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim().chars().next()));
                if matches!(state, None | Some(Some('Z' | 'X'))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(gone.is_ok(), "git's group outlived the timeout");
    }

    #[tokio::test]
    async fn endless_output_is_cut_off() {
        let s = setup();
        // `yes` prints its arguments forever.
        let service = GitService::with_command(
            vec![s.root.clone()],
            TIMEOUT,
            vec!["yes".into(), "--".into()],
        );
        let result = service.status(status_req(&s.root.join("repo"))).await;
        assert_eq!(
            failure(&result),
            format!("git output exceeds {MAX_GIT_OUTPUT} bytes")
        );
    }

    #[test]
    fn branch_headers() {
        let cases = [
            ("main...origin/main [ahead 3, behind 4]", ("main", 3, 4)),
            ("main...origin/main [behind 1]", ("main", 0, 1)),
            ("feature/x...up/feature/x", ("feature/x", 0, 0)),
            ("main", ("main", 0, 0)),
            ("No commits yet on trunk", ("trunk", 0, 0)),
            ("HEAD (no branch)", ("HEAD", 0, 0)),
            ("main...origin/main [gone]", ("main", 0, 0)),
        ];
        for (header, (branch, ahead, behind)) in cases {
            let report = parse_status(format!("## {header}\0").as_bytes());
            assert_eq!(
                (report.branch.as_str(), report.ahead, report.behind),
                (branch, ahead, behind),
                "{header}"
            );
        }
        let report = parse_status(b"## main\0R  new name\0old name\0 M x\0?? y\0");
        assert_eq!(
            report.changes,
            vec![
                change("R ", "new name", Some("old name")),
                change(" M", "x", None),
                change("??", "y", None),
            ]
        );
    }
}
