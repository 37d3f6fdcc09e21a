//! Prepared repositories under a root: git must run nothing they define and
//! find nothing outside the roots.
//!
//! Every program a repository could make git run is the same script, which
//! leaves a marker `pwned-<vector>` beside the root and passes its input
//! through; after `git_status` and `git_diff` no marker may exist.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pizzapi_runner::git::GitService;
use runner_protocol::{FileResult, FileResultBody, GitDiff, GitStatus};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs git for the setup, with a fixed identity and no global config.
fn git(dir: &Path, args: &[&str]) {
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
}

/// A repository with `a.txt` and `b.txt` committed, in `dir`.
fn repo(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    fs::write(dir.join("a.txt"), "one\n").unwrap();
    fs::write(dir.join("b.txt"), "two\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first"]);
}

struct Setup {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    /// `<base>/mark.sh <vector>`: leaves `pwned-<vector>`, then `cat`.
    mark: String,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let root = base.join("root");
    fs::create_dir_all(&root).unwrap();
    let script = base.join("mark.sh");
    fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}/pwned-'\"$1\"\ncat\n", base.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    Setup {
        _tmp: tmp,
        mark: script.display().to_string(),
        base,
        root,
    }
}

impl Setup {
    fn service(&self) -> GitService {
        GitService::new(vec![self.root.clone()], TIMEOUT)
    }

    fn markers(&self) -> Vec<String> {
        let mut found: Vec<String> = fs::read_dir(&self.base)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("pwned-"))
            .collect();
        found.sort();
        found
    }
}

async fn status(service: &GitService, cwd: &Path) -> FileResult {
    service
        .status(GitStatus {
            request_id: Some("s".into()),
            cwd: cwd.display().to_string(),
        })
        .await
}

async fn diff(service: &GitService, cwd: &Path, path: &str, staged: bool) -> FileResult {
    service
        .diff(GitDiff {
            request_id: Some("d".into()),
            cwd: cwd.display().to_string(),
            path: path.into(),
            staged: Some(staged),
        })
        .await
}

fn failure(result: &FileResult) -> String {
    assert!(!result.ok, "expected a failure, got {result:?}");
    match &result.body {
        FileResultBody::Failure(f) => f.message.clone(),
        other => panic!("expected a failure body, got {other:?}"),
    }
}

#[tokio::test]
async fn drivers_hooks_fsmonitor_and_pager_of_the_repository_run_nothing() {
    let s = setup();
    let repo_dir = s.root.join("repo");
    repo(&repo_dir);
    let m = &s.mark;
    let config = [
        ("filter.evil.clean", format!("{m} clean")),
        ("filter.evil.smudge", format!("{m} smudge")),
        ("filter.evil.required", "true".to_owned()),
        ("filter.proc.process", format!("{m} process")),
        ("diff.evil.textconv", format!("{m} textconv")),
        ("diff.evil.command", format!("{m} diff-command")),
        ("diff.external", format!("{m} diff-external")),
        ("core.fsmonitor", format!("{m} fsmonitor")),
        ("core.pager", format!("{m} pager")),
        ("pager.diff", format!("{m} pager-diff")),
        ("pager.status", format!("{m} pager-status")),
    ];
    for (key, value) in &config {
        git(&repo_dir, &["config", key, value]);
    }
    // The attributes select the drivers from both places git reads.
    fs::write(
        repo_dir.join(".gitattributes"),
        "a.txt filter=evil diff=evil\n",
    )
    .unwrap();
    fs::write(
        repo_dir.join(".git/info/attributes"),
        "b.txt filter=proc diff=evil\n",
    )
    .unwrap();
    // Hooks, in the default place and through core.hooksPath.
    let hooks = s.root.join("hooks");
    fs::create_dir_all(&hooks).unwrap();
    for dir in [repo_dir.join(".git/hooks"), hooks.clone()] {
        for hook in ["post-index-change", "pre-commit", "reference-transaction"] {
            let path = dir.join(hook);
            fs::write(&path, format!("#!/bin/sh\n{m} hook-{hook}\n")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    git(
        &repo_dir,
        &["config", "core.hooksPath", &hooks.display().to_string()],
    );
    // Tracked files with changed content and dirty stat data: git must
    // look at the content, which is when it would run a clean filter.
    fs::write(repo_dir.join("a.txt"), "one\nchanged\n").unwrap();
    fs::write(repo_dir.join("b.txt"), "TWO\n").unwrap();
    let old = std::process::Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(repo_dir.join("b.txt"))
        .status()
        .unwrap();
    assert!(old.success());

    let service = s.service();
    let result = status(&service, &repo_dir).await;
    assert!(result.ok, "{result:?}");
    for (path, staged) in [("a.txt", false), ("b.txt", false), ("a.txt", true)] {
        let result = diff(&service, &repo_dir, path, staged).await;
        assert!(result.ok, "{path}: {result:?}");
    }
    assert_eq!(
        s.markers(),
        Vec::<String>::new(),
        "a repository setting ran a program"
    );
}

#[tokio::test]
async fn a_git_file_pointing_outside_is_refused() {
    let s = setup();
    let outside = s.base.join("outside-repo");
    repo(&outside);
    fs::write(outside.join("a.txt"), "outside change\n").unwrap();
    let checkout = s.root.join("checkout");
    fs::create_dir_all(&checkout).unwrap();
    fs::write(
        checkout.join(".git"),
        format!("gitdir: {}\n", outside.join(".git").display()),
    )
    .unwrap();
    let service = s.service();
    let message = failure(&status(&service, &checkout).await);
    assert!(
        message.starts_with("Git repository outside allowed roots"),
        "{message}"
    );
    let message = failure(&diff(&service, &checkout, "a.txt", false).await);
    assert!(
        message.starts_with("Git repository outside allowed roots"),
        "{message}"
    );
}

#[tokio::test]
async fn a_work_tree_outside_is_refused() {
    let s = setup();
    let outside = s.base.join("outside-tree");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret.txt"), "outside\n").unwrap();
    let repo_dir = s.root.join("repo");
    repo(&repo_dir);
    git(
        &repo_dir,
        &["config", "core.worktree", &outside.display().to_string()],
    );
    let service = s.service();
    let message = failure(&status(&service, &repo_dir).await);
    assert!(
        message.starts_with("Git repository outside allowed roots"),
        "{message}"
    );
    assert!(!message.contains("secret.txt"), "{message}");
}

#[tokio::test]
async fn a_root_inside_a_larger_repository_finds_no_repository() {
    let s = setup();
    let outer = s.base.join("outer");
    repo(&outer);
    fs::write(outer.join("a.txt"), "outer change\n").unwrap();
    fs::write(outer.join("b.txt"), "outer staged\n").unwrap();
    git(&outer, &["add", "b.txt"]);
    let root = outer.join("inner-root");
    fs::create_dir_all(root.join("sub")).unwrap();
    let service = GitService::new(vec![root.clone()], TIMEOUT);
    for cwd in [root.clone(), root.join("sub")] {
        let message = failure(&status(&service, &cwd).await);
        assert!(message.contains("not a git repository"), "{message}");
        assert!(!message.contains("outer staged"), "{message}");
        let message = failure(&diff(&service, &cwd, "../a.txt", false).await);
        assert!(
            message.contains("not a git repository") || message == "Path outside allowed roots",
            "{message}"
        );
    }
}

#[tokio::test]
async fn the_runners_own_git_variables_do_not_steer_git() {
    // GIT_DIR in the runner's environment would point git at a repository
    // outside the roots, GIT_CONFIG_PARAMETERS would define a filter. They
    // are set for a child test process only (setting them here would reach
    // the other tests of this file).
    let s = setup();
    let outside = s.base.join("outside-repo");
    repo(&outside);
    fs::write(outside.join("a.txt"), "outside change\n").unwrap();
    let repo_dir = s.root.join("repo");
    repo(&repo_dir);
    fs::write(repo_dir.join(".gitattributes"), "* filter=fromenv\n").unwrap();
    fs::write(repo_dir.join("b.txt"), "TWO\n").unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_with_git_variables", "--include-ignored"])
        .env("GIT_DIR", outside.join(".git"))
        .env(
            "GIT_CONFIG_PARAMETERS",
            format!("'filter.fromenv.clean'='{} env-clean'", s.mark),
        )
        .env("HOSTILE_GIT_CWD", &repo_dir)
        .env("HOSTILE_GIT_ROOT", &s.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.markers(), Vec::<String>::new());
}

/// Run by [`the_runners_own_git_variables_do_not_steer_git`] in a child
/// process whose environment has the runner's `GIT_*` variables set.
#[tokio::test]
#[ignore = "run by the_runners_own_git_variables_do_not_steer_git"]
async fn child_with_git_variables() {
    let cwd = PathBuf::from(std::env::var_os("HOSTILE_GIT_CWD").unwrap());
    let root = PathBuf::from(std::env::var_os("HOSTILE_GIT_ROOT").unwrap());
    assert!(std::env::var_os("GIT_DIR").is_some());
    let service = GitService::new(vec![root], TIMEOUT);
    let result = status(&service, &cwd).await;
    let FileResultBody::GitStatus(report) = result.body else {
        panic!("expected a status, got {result:?}");
    };
    let mut paths: Vec<&str> = report.changes.iter().map(|c| c.path.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, [".gitattributes", "b.txt"], "{report:?}");
}
