//! Files: `list_files` and `read_file`, confined to the workspace roots
//! (protocol reference section 6).
//!
//! Every path goes through the same steps: `cwd` is confined to the roots
//! itself, `path` is joined to it ([`join_path`]) and normalized lexically,
//! and the result is opened beneath the root it lies in
//! ([`crate::beneath`]): the kernel resolves `..` and symlinks and refuses
//! any step out of the root, and the operation then reads or lists through
//! the handle it opened, never by name again. A symlink inside a root that
//! points outside can be listed as an entry of its directory, but reading
//! or listing through it is refused.
//!
//! Reads are bounded: at most `maxBytes` (default by encoding, never more
//! than [`MAX_READ_BYTES`]) are read into memory; `size` is the file's full
//! size and `truncated` says whether the content stops short of it. Only a
//! regular file is read, and it is opened non-blocking, so a FIFO or a
//! device put in its place cannot hold a request.

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use runner_protocol::rules::{ConfineError, confine, join_path, normalize_path};
use runner_protocol::{
    FileContent, FileEncoding, FileEntry, FileListing, FileResult, FileResultBody, ListFiles,
    ReadFile, messages,
};
use rustix::fs::{AtFlags, Dir, FileType, OFlags, fstat, statat};
use rustix::io::Errno;

use crate::beneath::{self, BeneathError, Opened};

/// The largest `maxBytes` honoured; a larger request is read up to this.
pub const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// Dot-files that listings show anyway.
const VISIBLE_DOT_FILES: [&str; 2] = [".gitignore", ".env"];

/// Why a file command failed. `Display` is the `file_result` message.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// The command has no `path`.
    #[error("{}", messages::MISSING_PATH)]
    MissingPath,
    /// A relative `path` came without `cwd`.
    #[error("{}", messages::MISSING_CWD)]
    MissingCwd,
    /// The path is unusable or outside the roots.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// Opening beneath the roots failed (outside, no `openat2`, the OS).
    #[error(transparent)]
    Beneath(#[from] BeneathError),
    /// The OS refused (its error text).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// `read_file` of something that is not a regular file (a FIFO, a device).
    #[error("Not a regular file")]
    NotRegular,
    /// The blocking task failed.
    #[error("File operation failed: {0}")]
    Task(String),
}

impl From<Errno> for FileError {
    fn from(errno: Errno) -> Self {
        FileError::Io(errno.into())
    }
}

/// The absolute path that `path` (relative to `cwd` when relative) names:
/// `cwd` confined to the roots, the join normalized lexically. Nothing is
/// opened; [`open_in`] opens it. Blocking.
pub(crate) fn join_in(cwd: &str, path: &str, roots: &[PathBuf]) -> Result<PathBuf, FileError> {
    if path.is_empty() {
        return Err(FileError::MissingPath);
    }
    let base = if cwd.is_empty() {
        if !path.starts_with('/') {
            return Err(FileError::MissingCwd);
        }
        None
    } else {
        // Only decides the base of the join: what is opened in the end is
        // opened beneath a root whatever this check saw.
        let cwd = normalize_path(cwd).map_err(ConfineError::from)?;
        Some(confine(&cwd, roots, |p: &Path| fs::canonicalize(p))?)
    };
    Ok(match &base {
        Some(base) => join_path(&base.to_string_lossy(), path),
        None => normalize_path(path),
    }
    .map_err(ConfineError::from)?)
}

/// Opens what `path` (relative to `cwd`) names beneath the roots with
/// `flags`. Blocking.
pub(crate) fn open_in(
    cwd: &str,
    path: &str,
    roots: &[PathBuf],
    flags: OFlags,
) -> Result<Opened, FileError> {
    let joined = join_in(cwd, path, roots)?;
    Ok(beneath::open(&joined, roots, flags)?)
}

/// Lists and reads files inside the workspace roots. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FileService {
    roots: Arc<Vec<PathBuf>>,
}

impl FileService {
    /// A service confined to `roots` (already canonical; empty = unscoped).
    pub fn new(roots: Vec<PathBuf>) -> Self {
        FileService {
            roots: Arc::new(roots),
        }
    }

    /// Handles `list_files`: the directory's entries, directories first,
    /// then files, case-insensitively by name; dot-files hidden except
    /// `.gitignore` and `.env`.
    pub async fn list_files(&self, req: ListFiles) -> FileResult {
        let request_id = req.request_id.clone();
        let roots = Arc::clone(&self.roots);
        let outcome = run_blocking(move || list_dir(&req.cwd, &req.path, &roots)).await;
        reply(request_id, outcome.map(FileResultBody::List), "list_files")
    }

    /// Handles `read_file`: at most `maxBytes` of the file, as text (invalid
    /// UTF-8 replaced) or base64, with the full size and whether it was
    /// truncated.
    pub async fn read_file(&self, req: ReadFile) -> FileResult {
        let request_id = req.request_id.clone();
        let roots = Arc::clone(&self.roots);
        let outcome = run_blocking(move || read_bounded(&req, &roots)).await;
        reply(request_id, outcome.map(FileResultBody::Read), "read_file")
    }
}

async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| FileError::Task(err.to_string()))?
}

fn reply(
    request_id: Option<String>,
    body: Result<FileResultBody, FileError>,
    command: &'static str,
) -> FileResult {
    match body {
        Ok(body) => FileResult::new(request_id, body),
        Err(err) => {
            tracing::debug!(command, error = %err, "file command failed");
            FileResult::failure(request_id, err.to_string())
        }
    }
}

fn list_dir(cwd: &str, path: &str, roots: &[PathBuf]) -> Result<FileListing, FileError> {
    let dir = open_in(
        cwd,
        path,
        roots,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
    )?;
    let mut files = Vec::new();
    for entry in Dir::read_from(&dir.fd)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            tracing::debug!(dir = %dir.path.display(), "skipping a file name that is not UTF-8");
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        if name.starts_with('.') && !VISIBLE_DOT_FILES.contains(&name) {
            continue;
        }
        if let Some(entry) = describe(&dir, name, roots) {
            files.push(entry);
        }
    }
    files.sort_by(compare_entries);
    Ok(FileListing { files })
}

/// One listing entry, looked at through the directory's handle; `None` when
/// it vanished meanwhile.
fn describe(dir: &Opened, name: &str, roots: &[PathBuf]) -> Option<FileEntry> {
    let own = statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let entry_path = dir.path.join(name);
    let is_symlink = FileType::from_raw_mode(own.st_mode) == FileType::Symlink;
    let (is_directory, size) = if is_symlink {
        // Following the link: a dangling one is neither a directory nor
        // has a size. The size of its target is shown only when the target
        // lies inside the roots: a listing must not disclose files
        // elsewhere.
        let is_directory = statat(&dir.fd, name, AtFlags::empty())
            .is_ok_and(|t| FileType::from_raw_mode(t.st_mode) == FileType::Directory);
        let size = beneath::open(&entry_path, roots, OFlags::PATH)
            .ok()
            .and_then(|target| regular_size(&target.fd));
        (is_directory, size)
    } else {
        let kind = FileType::from_raw_mode(own.st_mode);
        let size = (kind == FileType::RegularFile).then(|| own.st_size.unsigned_abs());
        (kind == FileType::Directory, size)
    };
    Some(FileEntry {
        name: name.to_owned(),
        path: entry_path.display().to_string(),
        is_directory,
        is_symlink,
        size,
    })
}

fn regular_size(fd: &OwnedFd) -> Option<u64> {
    let stat = fstat(fd).ok()?;
    (FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile)
        .then(|| stat.st_size.unsigned_abs())
}

fn compare_entries(a: &FileEntry, b: &FileEntry) -> Ordering {
    b.is_directory
        .cmp(&a.is_directory)
        .then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
        .then_with(|| a.name.cmp(&b.name))
}

fn read_bounded(req: &ReadFile, roots: &[PathBuf]) -> Result<FileContent, FileError> {
    let encoding = req.encoding.unwrap_or_default();
    let limit = req
        .max_bytes
        .unwrap_or_else(|| encoding.default_max_bytes())
        .min(MAX_READ_BYTES);
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer forever; O_NOCTTY: a terminal device must not become ours.
    // What was opened is then checked, not what was looked at before: only
    // a regular file is read.
    let opened = open_in(
        &req.cwd,
        &req.path,
        roots,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )?;
    let stat = fstat(&opened.fd)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(Errno::ISDIR.into()),
        _ => return Err(FileError::NotRegular),
    }
    let size = stat.st_size.unsigned_abs();
    let mut bytes = Vec::with_capacity(usize::try_from(limit.min(size)).unwrap_or(0));
    fs::File::from(opened.fd)
        .take(limit)
        .read_to_end(&mut bytes)?;
    let truncated = (bytes.len() as u64) < size;
    let content = match encoding {
        FileEncoding::Utf8 => String::from_utf8_lossy(&bytes).into_owned(),
        FileEncoding::Base64 => BASE64.encode(&bytes),
    };
    Ok(FileContent {
        content,
        encoding: Some(encoding),
        size,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    /// `root/` (the only root) with a few files, a sibling `root-evil/`, and
    /// `outside/` holding a secret.
    struct Setup {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        root: PathBuf,
        service: FileService,
    }

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::create_dir_all(base.join("root-evil")).unwrap();
        fs::write(base.join("root-evil/secret.txt"), "evil secret").unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink(base.join("outside"), root.join("dir-link")).unwrap();
        symlink(base.join("outside/passwd"), root.join("passwd-link")).unwrap();
        symlink(root.join("src"), root.join("inner-link")).unwrap();
        Setup {
            _tmp: tmp,
            service: FileService::new(vec![root.clone()]),
            base,
            root,
        }
    }

    fn list_req(cwd: &Path, path: &str) -> ListFiles {
        ListFiles {
            request_id: Some("r1".into()),
            cwd: cwd.display().to_string(),
            path: path.into(),
        }
    }

    fn read_req(cwd: &Path, path: &str) -> ReadFile {
        ReadFile {
            request_id: Some("r2".into()),
            cwd: cwd.display().to_string(),
            path: path.into(),
            encoding: None,
            max_bytes: None,
        }
    }

    fn failure(result: &FileResult) -> &str {
        assert!(!result.ok, "expected a failure, got {result:?}");
        match &result.body {
            FileResultBody::Failure(f) => &f.message,
            other => panic!("expected a failure body, got {other:?}"),
        }
    }

    fn listing(result: FileResult) -> Vec<FileEntry> {
        assert!(result.ok, "{result:?}");
        match result.body {
            FileResultBody::List(l) => l.files,
            other => panic!("expected a listing, got {other:?}"),
        }
    }

    fn content(result: FileResult) -> FileContent {
        assert!(result.ok, "{result:?}");
        match result.body {
            FileResultBody::Read(c) => c,
            other => panic!("expected content, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn listing_orders_directories_first_and_hides_dot_files() {
        let s = setup();
        for file in [
            "b.txt",
            "A.txt",
            "c.md",
            ".hidden",
            ".gitignore",
            ".env",
            ".envrc",
        ] {
            fs::write(s.root.join(file), "12345").unwrap();
        }
        fs::create_dir_all(s.root.join("Zdir")).unwrap();
        fs::create_dir_all(s.root.join("adir")).unwrap();
        fs::create_dir_all(s.root.join(".git")).unwrap();
        let result = s.service.list_files(list_req(&s.root, ".")).await;
        assert_eq!(result.request_id.as_deref(), Some("r1"));
        let files = listing(result);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "adir",
                "dir-link",
                "inner-link",
                "src",
                "Zdir",
                ".env",
                ".gitignore",
                "A.txt",
                "b.txt",
                "c.md",
                "passwd-link",
            ]
        );
        let entry = |n: &str| files.iter().find(|f| f.name == n).unwrap();
        assert_eq!(
            *entry("A.txt"),
            FileEntry {
                name: "A.txt".into(),
                path: s.root.join("A.txt").display().to_string(),
                is_directory: false,
                is_symlink: false,
                size: Some(5),
            }
        );
        assert!(entry("src").is_directory && !entry("src").is_symlink);
        assert_eq!(entry("src").size, None);
        // Links are listed (following them for isDirectory) …
        assert!(entry("dir-link").is_directory && entry("dir-link").is_symlink);
        assert!(entry("inner-link").is_directory && entry("inner-link").is_symlink);
        assert!(!entry("passwd-link").is_directory && entry("passwd-link").is_symlink);
        // … without disclosing the size of a file outside the roots.
        assert_eq!(entry("passwd-link").size, None);
    }

    #[tokio::test]
    async fn paths_escaping_the_roots_are_refused() {
        let s = setup();
        let evil = s.base.join("root-evil");
        let hostile_lists = [
            (s.root.clone(), "dir-link".to_owned()),
            (s.root.clone(), "..".to_owned()),
            (s.root.clone(), "../root-evil".to_owned()),
            (s.root.clone(), evil.display().to_string()),
            (s.root.clone(), "src/../../outside".to_owned()),
            (s.root.clone(), "/".to_owned()),
            (s.root.join("dir-link"), ".".to_owned()),
            (evil.clone(), ".".to_owned()),
            (evil.clone(), s.root.display().to_string()),
        ];
        for (cwd, path) in &hostile_lists {
            let result = s.service.list_files(list_req(cwd, path)).await;
            assert_eq!(
                failure(&result),
                "Path outside allowed roots",
                "list {cwd:?} {path:?}"
            );
            assert_eq!(result.request_id.as_deref(), Some("r1"));
        }
        let hostile_reads = [
            (s.root.clone(), "passwd-link".to_owned()),
            (s.root.clone(), "dir-link/passwd".to_owned()),
            (s.root.clone(), "../outside/passwd".to_owned()),
            (s.root.clone(), "../root-evil/secret.txt".to_owned()),
            (
                s.root.clone(),
                evil.join("secret.txt").display().to_string(),
            ),
            (s.root.clone(), "/etc/passwd".to_owned()),
            (evil.clone(), "secret.txt".to_owned()),
            // A path that exists only below an escaping link.
            (s.root.clone(), "dir-link/missing/deeper".to_owned()),
        ];
        for (cwd, path) in &hostile_reads {
            let result = s.service.read_file(read_req(cwd, path)).await;
            assert_eq!(
                failure(&result),
                "Path outside allowed roots",
                "read {cwd:?} {path:?}"
            );
        }
        // A link that stays inside the roots works.
        fs::write(s.root.join("src/main.rs"), "fn main() {}").unwrap();
        let read = content(
            s.service
                .read_file(read_req(&s.root, "inner-link/main.rs"))
                .await,
        );
        assert_eq!(read.content, "fn main() {}");
        let files = listing(s.service.list_files(list_req(&s.root, "inner-link")).await);
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].path,
            s.root.join("src/main.rs").display().to_string()
        );
    }

    #[tokio::test]
    async fn missing_fields_and_os_errors() {
        let s = setup();
        assert_eq!(
            failure(&s.service.list_files(list_req(&s.root, "")).await),
            "Missing path"
        );
        assert_eq!(
            failure(&s.service.read_file(read_req(&s.root, "")).await),
            "Missing path"
        );
        assert_eq!(
            failure(&s.service.read_file(read_req(Path::new(""), "x.txt")).await),
            "Missing cwd"
        );
        // An absolute path needs no cwd.
        fs::write(s.root.join("abs.txt"), "abs").unwrap();
        let abs = s.root.join("abs.txt").display().to_string();
        assert_eq!(
            content(s.service.read_file(read_req(Path::new(""), &abs)).await).content,
            "abs"
        );
        let missing = s.service.read_file(read_req(&s.root, "missing.txt")).await;
        assert!(
            failure(&missing).contains("No such file or directory"),
            "{missing:?}"
        );
        let dir = s.service.read_file(read_req(&s.root, "src")).await;
        assert!(failure(&dir).contains("Is a directory"), "{dir:?}");
        let not_dir = s.service.list_files(list_req(&s.root, "abs.txt")).await;
        assert!(failure(&not_dir).contains("Not a directory"), "{not_dir:?}");
        // Paths no OS call accepts, and a relative cwd.
        let nul = s.service.read_file(read_req(&s.root, "a\0b")).await;
        assert_eq!(failure(&nul), "path contains a NUL byte");
        let relative = s.service.list_files(list_req(Path::new("rel"), "x")).await;
        assert_eq!(failure(&relative), "path \"rel\" is not absolute");
        // A FIFO would block a reader until a writer comes: refused at once.
        nix::unistd::mkfifo(&s.root.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let fifo = s.service.read_file(read_req(&s.root, "pipe")).await;
        assert_eq!(failure(&fifo), "Not a regular file");
    }

    #[tokio::test]
    async fn reads_are_bounded_and_report_the_full_size() {
        let s = setup();
        let big = "é".repeat(200 * 1024); // 400 KiB of UTF-8
        fs::write(s.root.join("big.txt"), &big).unwrap();
        let read = content(s.service.read_file(read_req(&s.root, "big.txt")).await);
        assert!(read.truncated);
        assert_eq!(read.size, 400 * 1024);
        assert_eq!(read.content, "é".repeat(128 * 1024));
        assert_eq!(read.encoding, Some(FileEncoding::Utf8));

        let mut req = read_req(&s.root, "big.txt");
        req.max_bytes = Some(3);
        let read = content(s.service.read_file(req).await);
        assert!(read.truncated);
        // The cut through a two-byte character is replaced, not an error.
        assert_eq!(read.content, "é\u{FFFD}");

        fs::write(s.root.join("small.txt"), "hello\n").unwrap();
        let read = content(s.service.read_file(read_req(&s.root, "small.txt")).await);
        assert_eq!(
            read,
            FileContent {
                content: "hello\n".into(),
                encoding: Some(FileEncoding::Utf8),
                size: 6,
                truncated: false,
            }
        );
        let mut req = read_req(&s.root, "small.txt");
        req.max_bytes = Some(6);
        assert!(!content(s.service.read_file(req).await).truncated);
    }

    #[tokio::test]
    async fn base64_returns_the_raw_bytes() {
        let s = setup();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        fs::write(s.root.join("blob.bin"), &bytes).unwrap();
        let mut req = read_req(&s.root, "blob.bin");
        req.encoding = Some(FileEncoding::Base64);
        let read = content(s.service.read_file(req.clone()).await);
        assert_eq!(read.encoding, Some(FileEncoding::Base64));
        assert_eq!(BASE64.decode(&read.content).unwrap(), bytes);
        assert_eq!(read.size, 1000);
        assert!(!read.truncated);

        req.max_bytes = Some(10);
        let read = content(s.service.read_file(req).await);
        assert_eq!(BASE64.decode(&read.content).unwrap(), &bytes[..10]);
        assert!(read.truncated);
        assert_eq!(read.size, 1000);
    }

    #[tokio::test]
    async fn without_roots_everything_is_reachable() {
        let s = setup();
        let service = FileService::new(vec![]);
        let read = content(service.read_file(read_req(&s.root, "passwd-link")).await);
        assert!(read.content.starts_with("root:x:0:0"));
    }
}
