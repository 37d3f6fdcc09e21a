use std::io;
use std::path::{Component, Path, PathBuf};

use crate::messages;

/// Why a path string cannot be checked at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path is relative where an absolute one is needed.
    #[error("path {0:?} is not absolute")]
    Relative(String),
    /// The path contains a NUL byte (no OS call accepts it).
    #[error("path contains a NUL byte")]
    ContainsNul,
}

/// Why [`confine`] refused a path.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The path string itself is unusable.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Resolving symlinks failed (the OS error text).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// After resolving `..` and symlinks, the path lies outside every root.
    #[error("{}", messages::PATH_OUTSIDE_ROOTS)]
    OutsideRoots,
}

/// Normalizes an absolute path lexically: repeated and trailing slashes and
/// `.` disappear, `..` removes the previous component (never going above
/// `/`). No file system access, so symlinks are *not* resolved — see
/// [`resolve_symlinks`] and [`confine`].
pub fn normalize_path(path: &str) -> Result<PathBuf, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.contains('\0') {
        return Err(PathError::ContainsNul);
    }
    if !path.starts_with('/') {
        return Err(PathError::Relative(path.to_owned()));
    }
    let mut out = PathBuf::from("/");
    for component in Path::new(path).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    Ok(out)
}

/// Resolves `path` against `cwd` (when relative) and normalizes the result
/// lexically. An absolute `path` ignores `cwd`.
pub fn join_path(cwd: &str, path: &str) -> Result<PathBuf, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return normalize_path(path);
    }
    if path.contains('\0') {
        return Err(PathError::ContainsNul);
    }
    let base = normalize_path(cwd)?;
    normalize_path(&format!("{}/{path}", base.display()))
}

/// Whether a normalized absolute `path` equals `root` or lies below it.
/// The comparison is by whole components, so `/work/root-evil` is not inside
/// `/work/root`.
pub fn is_inside(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

/// Whether `path` lies inside any of `roots`, after lexical normalization of
/// both. No roots means unscoped: everything is inside.
pub fn is_inside_roots<R: AsRef<str>>(path: &str, roots: &[R]) -> Result<bool, PathError> {
    let path = normalize_path(path)?;
    if roots.is_empty() {
        return Ok(true);
    }
    for root in roots {
        if is_inside(&path, &normalize_path(root.as_ref())?) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Resolves every symlink in a normalized absolute path with the caller's
/// `canonicalize` (normally [`std::fs::canonicalize`]). A path that does not
/// exist (yet) resolves its deepest existing ancestor and keeps the rest as
/// is: the missing part cannot contain a symlink.
pub fn resolve_symlinks(
    path: &Path,
    mut canonicalize: impl FnMut(&Path) -> io::Result<PathBuf>,
) -> io::Result<PathBuf> {
    let missing = |err: &io::Error| {
        matches!(
            err.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        )
    };
    match canonicalize(path) {
        Ok(resolved) => return Ok(resolved),
        Err(err) if missing(&err) => {}
        Err(err) => return Err(err),
    }
    for ancestor in path.ancestors().skip(1) {
        match canonicalize(ancestor) {
            Ok(resolved) => {
                let rest = path
                    .strip_prefix(ancestor)
                    .expect("an ancestor is a prefix of its path");
                return Ok(resolved.join(rest));
            }
            Err(err) if missing(&err) => continue,
            Err(err) => return Err(err),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no ancestor of {} exists", path.display()),
    ))
}

/// The whole check a runner makes before touching a path: normalize `path`
/// lexically, resolve its symlinks with `canonicalize`, and require the
/// result to lie inside one of `roots`, which must already be canonical
/// (canonicalize them once, at start-up). Returns the resolved path: use
/// *that* for the operation, so that what was checked is what is opened.
/// No roots means unscoped (the path is still resolved).
pub fn confine(
    path: &Path,
    roots: &[PathBuf],
    canonicalize: impl FnMut(&Path) -> io::Result<PathBuf>,
) -> Result<PathBuf, ConfineError> {
    let text = path.to_str().ok_or(ConfineError::OutsideRoots)?;
    let normalized = normalize_path(text)?;
    let resolved = resolve_symlinks(&normalized, canonicalize)?;
    if roots.is_empty() || roots.iter().any(|root| is_inside(&resolved, root)) {
        Ok(resolved)
    } else {
        Err(ConfineError::OutsideRoots)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[test]
    fn normalize_table() {
        let ok: &[(&str, &str)] = &[
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("//a//b//", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a"),
            ("/a/../..", "/"),
            ("/../../etc", "/etc"),
            ("/root/../etc", "/etc"),
            ("/root//x/..", "/root"),
        ];
        for (input, expected) in ok {
            assert_eq!(
                normalize_path(input),
                Ok(PathBuf::from(expected)),
                "input {input:?}"
            );
        }
        assert_eq!(normalize_path(""), Err(PathError::Empty));
        assert_eq!(
            normalize_path("a/b"),
            Err(PathError::Relative("a/b".into()))
        );
        assert_eq!(
            normalize_path("../x"),
            Err(PathError::Relative("../x".into()))
        );
        assert_eq!(normalize_path("/a\0b"), Err(PathError::ContainsNul));
    }

    #[test]
    fn inside_roots_table() {
        let roots = ["/work/root"];
        let cases: &[(&str, Result<bool, PathError>)] = &[
            ("/work/root", Ok(true)),
            ("/work/root/", Ok(true)),
            ("/work/root/src/main.rs", Ok(true)),
            ("/work/root//x/..", Ok(true)),
            ("/work/root/a/../b", Ok(true)),
            ("/work/root/../etc", Ok(false)),
            ("/work/root/../root-evil", Ok(false)),
            ("/work/root-evil", Ok(false)),
            ("/work/root-evil/x", Ok(false)),
            ("/work/rootx", Ok(false)),
            ("/work", Ok(false)),
            ("/", Ok(false)),
            ("/etc/passwd", Ok(false)),
            ("/work/root/../../etc/passwd", Ok(false)),
            ("", Err(PathError::Empty)),
            ("work/root", Err(PathError::Relative("work/root".into()))),
            ("./x", Err(PathError::Relative("./x".into()))),
        ];
        for (input, expected) in cases {
            assert_eq!(is_inside_roots(input, &roots), *expected, "input {input:?}");
        }
    }

    #[test]
    fn roots_with_trailing_slashes_and_several_roots() {
        let roots = ["/a/", "/b//c/"];
        assert_eq!(is_inside_roots("/a/x", &roots), Ok(true));
        assert_eq!(is_inside_roots("/b/c", &roots), Ok(true));
        assert_eq!(is_inside_roots("/b", &roots), Ok(false));
        assert_eq!(is_inside_roots("/ab", &roots), Ok(false));
    }

    #[test]
    fn no_roots_is_unscoped() {
        let none: [&str; 0] = [];
        assert_eq!(is_inside_roots("/etc", &none), Ok(true));
        assert_eq!(is_inside_roots("", &none), Err(PathError::Empty));
    }

    #[test]
    fn join_table() {
        assert_eq!(join_path("/r", "x/y"), Ok(PathBuf::from("/r/x/y")));
        assert_eq!(join_path("/r", "../etc"), Ok(PathBuf::from("/etc")));
        assert_eq!(join_path("/r", "/abs"), Ok(PathBuf::from("/abs")));
        assert_eq!(join_path("/r/", "."), Ok(PathBuf::from("/r")));
        assert_eq!(join_path("/r", ""), Err(PathError::Empty));
        assert_eq!(
            join_path("rel", "x"),
            Err(PathError::Relative("rel".into()))
        );
        assert_eq!(join_path("/r", "a\0"), Err(PathError::ContainsNul));
    }

    /// A file system of directories and symlinks (absolute targets), with a
    /// `canonicalize` that behaves like the OS's.
    struct FakeFs {
        dirs: BTreeSet<PathBuf>,
        links: BTreeMap<PathBuf, PathBuf>,
    }

    impl FakeFs {
        fn new(dirs: &[&str], links: &[(&str, &str)]) -> Self {
            FakeFs {
                dirs: dirs.iter().map(PathBuf::from).collect(),
                links: links.iter().map(|(a, b)| (a.into(), b.into())).collect(),
            }
        }

        fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
            let mut out = PathBuf::from("/");
            for component in path.components() {
                match component {
                    Component::RootDir => {}
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(part) => {
                        let next = out.join(part);
                        if let Some(target) = self.links.get(&next) {
                            out = target.clone();
                        } else if self.dirs.contains(&next) {
                            out = next;
                        } else {
                            return Err(io::ErrorKind::NotFound.into());
                        }
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn confine_follows_symlinks_and_allows_missing_tails() {
        let fs = FakeFs::new(
            &[
                "/work",
                "/work/root",
                "/work/root/src",
                "/etc",
                "/work/root-evil",
            ],
            &[
                ("/work/root/escape", "/etc"),
                ("/work/root/inner", "/work/root/src"),
                ("/work/root/evil", "/work/root-evil"),
            ],
        );
        let roots = vec![PathBuf::from("/work/root")];
        let check = |p: &str| confine(Path::new(p), &roots, |q| fs.canonicalize(q));

        assert_eq!(
            check("/work/root/src").unwrap(),
            PathBuf::from("/work/root/src")
        );
        assert_eq!(
            check("/work/root/inner").unwrap(),
            PathBuf::from("/work/root/src")
        );
        assert_eq!(
            check("/work/root/new/file.txt").unwrap(),
            PathBuf::from("/work/root/new/file.txt")
        );
        for hostile in [
            "/work/root/escape",
            "/work/root/escape/passwd",
            "/work/root/escape/missing/deeper",
            "/work/root/evil",
            "/work/root/../etc",
            "/work/root-evil",
        ] {
            assert!(
                matches!(check(hostile), Err(ConfineError::OutsideRoots)),
                "{hostile} must be outside"
            );
        }
        assert!(matches!(
            check(""),
            Err(ConfineError::Path(PathError::Empty))
        ));
        assert!(matches!(
            check("rel"),
            Err(ConfineError::Path(PathError::Relative(_)))
        ));
        assert_eq!(
            ConfineError::OutsideRoots.to_string(),
            "Path outside allowed roots"
        );
    }

    #[test]
    fn confine_passes_other_os_errors_through() {
        let roots = vec![PathBuf::from("/r")];
        let err = confine(Path::new("/r/x"), &roots, |_| {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        })
        .unwrap_err();
        assert!(matches!(err, ConfineError::Io(e) if e.kind() == io::ErrorKind::PermissionDenied));
    }

    #[test]
    fn confine_without_roots_still_resolves() {
        let fs = FakeFs::new(&["/etc"], &[("/link", "/etc")]);
        assert_eq!(
            confine(Path::new("/link"), &[], |q| fs.canonicalize(q)).unwrap(),
            PathBuf::from("/etc")
        );
    }
}
