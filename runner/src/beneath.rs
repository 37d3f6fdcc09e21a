//! Opening paths beneath the workspace roots without a check-then-use race.
//!
//! A path is never checked by name and then used by name again: a local
//! process that swaps a directory for a symlink between the two steps would
//! win. Instead every path is opened *from a directory handle of the root*
//! with `openat2(2)` and `RESOLVE_BENEATH`, so the kernel itself refuses any
//! step (`..`, a symlink) that would leave the root while it resolves the
//! path, and the operation then works on the handle it got: reading and
//! listing through it, spawning a child in it (see [`Opened::proc_path`]).
//!
//! `RESOLVE_BENEATH` refuses every absolute symlink, even one pointing to
//! another place inside the roots. When the kernel says a path leaves the
//! root (`EXDEV`), the components are walked one by one (never following a
//! link) to find the link that did it; its target is joined to the rest of
//! the path and the result is opened again, from the handle of the root it
//! lies in, at most [`MAX_LINKS`] times. The walk only decides *which* path
//! to try next: whatever is opened in the end is opened beneath a root, so a
//! link swapped in meanwhile can at worst make the request fail.
//!
//! The roots themselves are configuration (canonical directories whose
//! parents are not part of the workspace); each is opened by its path with
//! `O_NOFOLLOW` for each request.
//!
//! Where the kernel lacks `openat2` (Linux before 5.6, `ENOSYS`), access is
//! refused with [`BeneathError::Unsupported`]: there is no racy fallback.
//!
//! The system calls come from [`rustix`]: safe wrappers over the raw
//! syscalls, so this module needs no `unsafe` (the workspace denies it), and
//! it is already in the dependency tree. `pathrs` was the other candidate; it
//! resolves symlinks with `chroot` semantics (an absolute link is taken
//! relative to the root, naming a different file than the one the user
//! sees), and it silently emulates `openat2` in user space on old kernels,
//! where this module must refuse instead.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use runner_protocol::messages;
use runner_protocol::rules::is_inside;
use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags, fstat, openat, openat2, readlinkat};
use rustix::io::Errno;

/// The most symlinks followed by hand while resolving one path (the
/// kernel's own limit is 40 too).
pub const MAX_LINKS: usize = 40;

/// How often `openat2` is retried when it reports `EAGAIN` (a rename
/// somewhere on the system raced with the resolution).
const MAX_RETRIES: usize = 16;

/// Why a path could not be opened beneath the roots.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// The path, with its `..` and symlinks resolved, leaves every root.
    #[error("{}", messages::PATH_OUTSIDE_ROOTS)]
    Outside,
    /// The kernel has no `openat2`.
    #[error(
        "This kernel lacks openat2 (Linux 5.6 or later is needed); \
         paths inside the workspace roots cannot be opened safely, so none are"
    )]
    Unsupported,
    /// The OS refused (its error text).
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for BeneathError {
    fn from(errno: Errno) -> Self {
        if errno == Errno::NOSYS {
            BeneathError::Unsupported
        } else {
            BeneathError::Io(errno.into())
        }
    }
}

/// A file or directory opened beneath a root.
#[derive(Debug)]
pub struct Opened {
    /// The handle.
    pub fd: OwnedFd,
    /// Where it is, symlinks resolved (what the kernel names the handle).
    pub path: PathBuf,
}

impl Opened {
    /// `/proc/self/fd/<n>`: a name for exactly this directory, for a child's
    /// working directory. The child changes into it between fork and exec,
    /// when it still holds a copy of the handle (even a close-on-exec one),
    /// and `/proc/self` is then the child: it lands in the opened directory
    /// whatever has been renamed or swapped since. Keep `self` alive until
    /// the child is spawned.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Opens `path` (absolute) with `flags` (close-on-exec is added) beneath
/// one of `roots` (canonical; empty means unscoped: opened as is).
/// Blocking.
pub fn open(path: &Path, roots: &[PathBuf], flags: OFlags) -> Result<Opened, BeneathError> {
    let flags = flags | OFlags::CLOEXEC;
    let mut path = lexical(path)?;
    for _ in 0..=MAX_LINKS {
        if roots.is_empty() {
            let fd = openat(CWD, &path, flags, Mode::empty())?;
            return named(fd);
        }
        // The innermost root holding the path: `..` is resolved against it.
        let root = roots
            .iter()
            .filter(|root| is_inside(&path, root))
            .max_by_key(|root| root.as_os_str().len())
            .ok_or(BeneathError::Outside)?;
        let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let root_fd = openat(
            CWD,
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match open_beneath(&root_fd, rel, flags) {
            Ok(fd) => return named(fd),
            Err(Errno::XDEV) => path = escaping_link(&root_fd, root, rel)?,
            Err(errno) => return Err(errno.into()),
        }
    }
    Err(BeneathError::Io(Errno::LOOP.into()))
}

/// `openat2(dir, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`,
/// retried on `EAGAIN`.
fn open_beneath(dir: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut result = Err(Errno::AGAIN);
    for _ in 0..MAX_RETRIES {
        result = openat2(dir, rel, flags, Mode::empty(), resolve);
        if !matches!(result, Err(Errno::AGAIN)) {
            break;
        }
    }
    result
}

/// Finds the first symlink on `rel` below `root` and returns the path it
/// stands for: its target (relative to the link's directory) followed by
/// the rest of `rel`, normalized. No link at all means the tree changed
/// under us: refused.
fn escaping_link(root_fd: &OwnedFd, root: &Path, rel: &Path) -> Result<PathBuf, BeneathError> {
    let components: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect();
    let mut walked = root.to_path_buf();
    let mut dir = root_fd.try_clone()?;
    for (i, name) in components.iter().enumerate() {
        let fd = openat(
            &dir,
            *name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if FileType::from_raw_mode(fstat(&fd)?.st_mode) == FileType::Symlink {
            // An O_PATH handle of the link itself: readlinkat reads it.
            let target = readlinkat(&fd, "", Vec::new())?;
            let mut next = walked.join(OsStr::from_bytes(target.as_bytes()));
            next.extend(&components[i + 1..]);
            return lexical(&next);
        }
        walked.push(name);
        dir = fd;
    }
    Err(BeneathError::Outside)
}

/// Normalizes an absolute path lexically: `.` goes, `..` removes the
/// previous component (never above `/`). Unlike
/// [`runner_protocol::rules::normalize_path`] it takes any bytes, as a link
/// target may hold.
fn lexical(path: &Path) -> Result<PathBuf, BeneathError> {
    if !path.is_absolute() {
        return Err(BeneathError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {path:?} is not absolute"),
        )));
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// Pairs a handle with the path the kernel gives it.
fn named(fd: OwnedFd) -> Result<Opened, BeneathError> {
    let path =
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).map_err(|err| {
            BeneathError::Io(io::Error::new(
                err.kind(),
                format!("cannot name an opened path through /proc (is it mounted?): {err}"),
            ))
        })?;
    Ok(Opened { fd, path })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    struct Setup {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        root: PathBuf,
    }

    /// `root/` (the root) with `src/main.rs`, an absolute and a relative
    /// link inside, and links out of it to `outside/secret.txt`.
    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let root = base.join("root");
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret.txt"), "secret").unwrap();
        symlink(root.join("src"), root.join("abs-inner")).unwrap();
        symlink("src", root.join("rel-inner")).unwrap();
        symlink("abs-inner/../src/main.rs", root.join("chain")).unwrap();
        symlink(base.join("outside"), root.join("abs-out")).unwrap();
        symlink("../outside", root.join("rel-out")).unwrap();
        symlink("src/../../outside/secret.txt", root.join("file-out")).unwrap();
        Setup {
            _tmp: tmp,
            base,
            root,
        }
    }

    fn read(opened: Opened) -> String {
        let mut text = String::new();
        fs::File::from(opened.fd).read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn links_inside_the_roots_are_followed() {
        let s = setup();
        let roots = [s.root.clone()];
        for path in [
            "src/main.rs",
            "abs-inner/main.rs",
            "rel-inner/main.rs",
            "chain",
        ] {
            let opened = open(&s.root.join(path), &roots, OFlags::RDONLY).unwrap();
            assert_eq!(opened.path, s.root.join("src/main.rs"), "{path}");
            assert_eq!(read(opened), "fn main() {}", "{path}");
        }
        let dir = open(&s.root, &roots, OFlags::PATH | OFlags::DIRECTORY).unwrap();
        assert_eq!(dir.path, s.root);
    }

    #[test]
    fn every_way_out_is_refused() {
        let s = setup();
        let roots = [s.root.clone()];
        for path in [
            "abs-out/secret.txt",
            "rel-out/secret.txt",
            "file-out",
            "abs-out",
            "abs-out/missing/deeper",
            "src/../../outside/secret.txt",
        ] {
            let err = open(&s.root.join(path), &roots, OFlags::RDONLY).unwrap_err();
            assert!(matches!(err, BeneathError::Outside), "{path}: {err:?}");
        }
        let err = open(&s.base.join("outside/secret.txt"), &roots, OFlags::RDONLY).unwrap_err();
        assert!(matches!(err, BeneathError::Outside), "{err:?}");
    }

    #[test]
    fn a_link_into_another_root_is_followed() {
        let s = setup();
        let roots = [s.root.clone(), s.base.join("outside")];
        let opened = open(&s.root.join("rel-out/secret.txt"), &roots, OFlags::RDONLY).unwrap();
        assert_eq!(opened.path, s.base.join("outside/secret.txt"));
        assert_eq!(read(opened), "secret");
    }

    #[test]
    fn a_link_loop_ends() {
        let s = setup();
        symlink("loop-b", s.root.join("loop-a")).unwrap();
        symlink(s.root.join("loop-a"), s.root.join("loop-b")).unwrap();
        let err = open(
            &s.root.join("loop-a"),
            std::slice::from_ref(&s.root),
            OFlags::RDONLY,
        )
        .unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[test]
    fn a_child_started_in_the_handle_stays_there_when_the_name_is_swapped() {
        let s = setup();
        let held = open(
            &s.root.join("src"),
            std::slice::from_ref(&s.root),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .unwrap();
        // The name now leads outside; the handle still holds `src`.
        fs::rename(s.root.join("src"), s.root.join("moved")).unwrap();
        symlink(s.base.join("outside"), s.root.join("src")).unwrap();
        let out = std::process::Command::new("pwd")
            .arg("-P")
            .current_dir(held.proc_path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            s.root.join("moved").display().to_string()
        );
    }
}
