//! Skills: the markdown files under the runner's skills directory
//! (normally `~/.pizzapi/skills`), protocol reference section 5.
//!
//! A skill is `<name>.md` or `<name>/SKILL.md`; when both exist the
//! directory form wins (it is what create and update write). Its description
//! is the `description:` line of the front matter.
//!
//! Every operation validates the name with
//! [`validate_skill_name`] first, so a name is always one plain path
//! component below the skills directory. Every operation works relative
//! to a handle of the skills directory (`openat`, `mkdirat`, `renameat`,
//! `unlinkat`), one component at a time with `O_NOFOLLOW`, so no name is
//! checked and then used again: symbolic links inside the skills directory
//! are never followed (they are not listed, not read, not written through
//! and not deleted), even one swapped in during an operation. Files are
//! opened non-blocking and read only when regular, so a FIFO or a device in
//! a skill's place cannot hold a request.
//!
//! Decisions where the original was silent or unsafe:
//!
//! * `create_skill` of an existing skill replaces its markdown (as the
//!   original did); `update_skill` of a missing skill creates it. Both write
//!   `<name>/SKILL.md` atomically (temporary file in the same directory,
//!   then rename).
//! * `delete_skill` removes both forms of the skill (`<name>.md` and the
//!   `<name>/` directory) and answers `Skill not found` when neither exists.
//! * Content larger than [`MAX_SKILL_BYTES`] is refused on write and on read.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runner_protocol::rules::{SkillNameError, validate_skill_name};
use runner_protocol::{
    CreateSkill, DeleteSkill, GetSkill, ListSkills, RunnerSkill, SkillResult, SkillsList,
    UpdateSkill, messages,
};
use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Mode, OFlags, fstat, mkdirat, openat, renameat, statat, unlinkat,
};
use rustix::io::Errno;

/// The largest skill markdown the runner writes or reads, in bytes.
pub const MAX_SKILL_BYTES: usize = 1024 * 1024;

const SKILL_FILE: &str = "SKILL.md";

/// Why a skill operation failed. `Display` is the `skill_result` message.
#[derive(Debug, thiserror::Error)]
enum SkillError {
    #[error(transparent)]
    Name(#[from] SkillNameError),
    #[error("{}", messages::SKILL_NOT_FOUND)]
    NotFound,
    #[error("Skill content too large: {size} bytes (limit {MAX_SKILL_BYTES})")]
    TooLarge { size: u64 },
    #[error("Skill path {0} is a symbolic link; refusing to use it")]
    Symlink(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("Skill operation failed: {0}")]
    Task(String),
}

impl SkillError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SkillError {
        let path = path.display().to_string();
        move |source| SkillError::Io {
            action,
            path,
            source,
        }
    }
}

/// The skills directory and the operations on it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SkillStore {
    dir: Arc<PathBuf>,
}

impl SkillStore {
    /// A store for the skills under `dir` (which need not exist yet).
    pub fn new(dir: PathBuf) -> Self {
        SkillStore { dir: Arc::new(dir) }
    }

    /// The skills directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The skills, sorted by name (for `register_runner` and `skills_list`).
    /// A missing directory has no skills; unreadable entries are skipped
    /// with a warning.
    pub async fn list(&self) -> Vec<RunnerSkill> {
        let dir = Arc::clone(&self.dir);
        match tokio::task::spawn_blocking(move || list_skills(&dir)).await {
            Ok(skills) => skills,
            Err(err) => {
                tracing::error!(error = %err, "listing skills failed");
                Vec::new()
            }
        }
    }

    /// Handles `list_skills`.
    pub async fn list_skills(&self, req: ListSkills) -> SkillsList {
        SkillsList {
            skills: self.list().await,
            request_id: req.request_id,
        }
    }

    /// Handles `create_skill`: writes `<name>/SKILL.md`, replacing an
    /// existing skill's markdown.
    pub async fn create(&self, req: CreateSkill) -> SkillResult {
        self.write(req.request_id, req.name, req.content, "create_skill")
            .await
    }

    /// Handles `update_skill`: like [`SkillStore::create`]; a missing skill
    /// is created.
    pub async fn update(&self, req: UpdateSkill) -> SkillResult {
        self.write(req.request_id, req.name, req.content, "update_skill")
            .await
    }

    /// Handles `delete_skill`: removes `<name>.md` and `<name>/`. A missing
    /// skill gets `{ok: false, message: "Skill not found", skills}`.
    pub async fn delete(&self, req: DeleteSkill) -> SkillResult {
        let request_id = req.request_id;
        let dir = Arc::clone(&self.dir);
        let outcome = self
            .blocking(move || {
                let name = validate_skill_name(&req.name)?.to_owned();
                let deleted = delete_skill(&dir, &name);
                Ok((deleted, list_skills(&dir)))
            })
            .await;
        match outcome {
            Ok((Ok(()), skills)) => SkillResult {
                request_id,
                ok: true,
                skills: Some(skills),
                ..Default::default()
            },
            Ok((Err(err), skills)) => {
                tracing::warn!(error = %err, "delete_skill failed");
                SkillResult {
                    skills: Some(skills),
                    ..SkillResult::failure(request_id, err.to_string())
                }
            }
            Err(err) => fail(request_id, "delete_skill", &err),
        }
    }

    /// Handles `get_skill`: `{ok: true, name, content}` or `Skill not found`.
    pub async fn get(&self, req: GetSkill) -> SkillResult {
        let request_id = req.request_id;
        let dir = Arc::clone(&self.dir);
        let outcome = self
            .blocking(move || {
                let name = validate_skill_name(&req.name)?.to_owned();
                let content = read_skill(&dir, &name)?;
                Ok((name, content))
            })
            .await;
        match outcome {
            Ok((name, content)) => SkillResult {
                request_id,
                ok: true,
                name: Some(name),
                content: Some(content),
                ..Default::default()
            },
            Err(err) => fail(request_id, "get_skill", &err),
        }
    }

    async fn write(
        &self,
        request_id: Option<String>,
        name: String,
        content: String,
        command: &'static str,
    ) -> SkillResult {
        let dir = Arc::clone(&self.dir);
        let outcome = self
            .blocking(move || {
                let name = validate_skill_name(&name)?;
                write_skill(&dir, name, content.as_bytes())?;
                tracing::info!(skill = name, command, "skill written");
                Ok(list_skills(&dir))
            })
            .await;
        match outcome {
            Ok(skills) => SkillResult {
                request_id,
                ok: true,
                skills: Some(skills),
                ..Default::default()
            },
            Err(err) => fail(request_id, command, &err),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, SkillError> + Send + 'static,
    ) -> Result<T, SkillError> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|err| SkillError::Task(err.to_string()))?
    }
}

fn fail(request_id: Option<String>, command: &'static str, err: &SkillError) -> SkillResult {
    tracing::warn!(command, error = %err, "skill command failed");
    SkillResult::failure(request_id, err.to_string())
}

/// Opens `name` in `dir` without following a symlink; `None` when it does
/// not exist or is a symlink.
fn open_in_dir(dir: &OwnedFd, name: &str, flags: OFlags) -> io::Result<Option<OwnedFd>> {
    match openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// A regular file `name` in `dir`, opened for reading (non-blocking).
fn open_regular(dir: &OwnedFd, name: &str) -> Option<fs::File> {
    let fd = open_in_dir(
        dir,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    )
    .ok()
    .flatten()?;
    let stat = fstat(&fd).ok()?;
    (FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile).then(|| fs::File::from(fd))
}

/// The skills directory's handle; `None` when it does not exist.
fn open_skills_dir(dir: &Path) -> io::Result<Option<OwnedFd>> {
    match openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// The skill file of `name`, opened, when it exists as a regular file in a
/// real directory: `<name>/SKILL.md` first, then `<name>.md`. The path is
/// for display.
fn skill_file(dir_fd: &OwnedFd, dir: &Path, name: &str) -> Option<(fs::File, PathBuf)> {
    if let Ok(Some(nested)) = open_in_dir(dir_fd, name, OFlags::RDONLY | OFlags::DIRECTORY)
        && let Some(file) = open_regular(&nested, SKILL_FILE)
    {
        return Some((file, dir.join(name).join(SKILL_FILE)));
    }
    let flat = format!("{name}.md");
    let file = open_regular(dir_fd, &flat)?;
    Some((file, dir.join(flat)))
}

fn list_skills(dir: &Path) -> Vec<RunnerSkill> {
    let listed = open_skills_dir(dir).and_then(|fd| {
        let Some(fd) = fd else {
            return Ok(None);
        };
        let names: Vec<String> = Dir::read_from(&fd)?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let file_name = entry.file_name().to_str().ok()?;
                let name = file_name.strip_suffix(".md").unwrap_or(file_name);
                // Only names that are valid as given (not merely after
                // trimming) are skills.
                (validate_skill_name(name) == Ok(name)).then(|| name.to_owned())
            })
            .collect();
        Ok(Some((fd, names)))
    });
    let (fd, mut names) = match listed {
        Ok(Some(listed)) => listed,
        Ok(None) => return Vec::new(),
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "cannot read the skills directory");
            return Vec::new();
        }
    };
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (file, path) = skill_file(&fd, dir, &name)?;
            let description = match read_bounded(file, &path) {
                Ok(content) => front_matter_description(&content),
                Err(err) => {
                    tracing::warn!(skill = %name, error = %err, "cannot read skill");
                    return None;
                }
            };
            Some(RunnerSkill {
                name,
                description,
                file_path: path.display().to_string(),
            })
        })
        .collect()
}

/// The `description:` line between the first two `---` lines, with
/// surrounding quotes removed; empty when absent.
fn front_matter_description(content: &str) -> String {
    let mut lines = content.lines().skip_while(|line| line.trim() != "---");
    if lines.next().is_none() {
        return String::new();
    }
    for line in lines {
        let line = line.trim();
        if line == "---" {
            break;
        }
        if let Some(value) = line.strip_prefix("description:") {
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
                .unwrap_or(value);
            return unquoted.to_owned();
        }
    }
    String::new()
}

/// Reads an opened skill file, refusing one larger than
/// [`MAX_SKILL_BYTES`] without reading more than that into memory.
fn read_bounded(file: fs::File, path: &Path) -> Result<String, SkillError> {
    let size = file.metadata().map(|m| m.len());
    let mut bytes = Vec::new();
    file.take(MAX_SKILL_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(SkillError::io("Cannot read skill", path))?;
    if bytes.len() > MAX_SKILL_BYTES {
        return Err(SkillError::TooLarge {
            size: size.unwrap_or(bytes.len() as u64),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_skill(dir: &Path, name: &str) -> Result<String, SkillError> {
    let fd = open_skills_dir(dir)
        .map_err(SkillError::io("Cannot read", dir))?
        .ok_or(SkillError::NotFound)?;
    let (file, path) = skill_file(&fd, dir, name).ok_or(SkillError::NotFound)?;
    read_bounded(file, &path)
}

fn write_skill(dir: &Path, name: &str, content: &[u8]) -> Result<(), SkillError> {
    if content.len() > MAX_SKILL_BYTES {
        return Err(SkillError::TooLarge {
            size: content.len() as u64,
        });
    }
    fs::create_dir_all(dir).map_err(SkillError::io("Cannot create", dir))?;
    let dir_fd = open_skills_dir(dir)
        .map_err(SkillError::io("Cannot open", dir))?
        .ok_or_else(|| SkillError::io("Cannot open", dir)(Errno::NOENT.into()))?;
    let skill_dir = dir.join(name);
    match mkdirat(&dir_fd, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(errno) => return Err(SkillError::io("Cannot create", &skill_dir)(errno.into())),
    }
    let nested = match openat(
        &dir_fd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // O_NOFOLLOW | O_DIRECTORY on a link fails with ELOOP or ENOTDIR.
        Err(Errno::LOOP | Errno::NOTDIR)
            if statat(&dir_fd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
        {
            return Err(SkillError::Symlink(skill_dir.display().to_string()));
        }
        Err(errno) => return Err(SkillError::io("Cannot create", &skill_dir)(errno.into())),
    };
    let target = skill_dir.join(SKILL_FILE);
    match statat(&nested, SKILL_FILE, AtFlags::SYMLINK_NOFOLLOW) {
        // renameat() would replace the link, not write through it, but a
        // link there was not made by us: leave it to its owner.
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
            return Err(SkillError::Symlink(target.display().to_string()));
        }
        Ok(_) | Err(Errno::NOENT) => {}
        Err(errno) => return Err(SkillError::io("Cannot inspect", &target)(errno.into())),
    }
    // A temporary file beside the target, then an atomic rename: readers
    // see the old or the new content, never half of it.
    let temp = format!(".SKILL.md.{:016x}.tmp", rand::random::<u64>());
    let temp_path = skill_dir.join(&temp);
    let fd = openat(
        &nested,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|errno| {
        SkillError::io("Cannot create a temporary file in", &skill_dir)(errno.into())
    })?;
    let mut file = fs::File::from(fd);
    let written = file
        .write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(SkillError::io("Cannot write", &temp_path))
        .and_then(|()| {
            renameat(&nested, temp.as_str(), &nested, SKILL_FILE)
                .map_err(|errno| SkillError::io("Cannot write", &target)(errno.into()))
        });
    if written.is_err() {
        let _ = unlinkat(&nested, temp.as_str(), AtFlags::empty());
    }
    written
}

/// The deepest directory tree [`remove_tree`] descends.
const MAX_DELETE_DEPTH: usize = 64;

/// Removes the directory `name` in `parent` with everything below it,
/// through handles: a symlink anywhere is removed itself, never followed.
fn remove_tree(parent: &OwnedFd, name: &CStr, depth: usize) -> io::Result<()> {
    if depth > MAX_DELETE_DEPTH {
        return Err(io::Error::other(format!(
            "directory tree deeper than {MAX_DELETE_DEPTH} levels"
        )));
    }
    let fd = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut entries = Vec::new();
    for entry in Dir::read_from(&fd)? {
        let entry = entry?;
        let entry_name = entry.file_name();
        if entry_name != c"." && entry_name != c".." {
            entries.push(entry_name.to_owned());
        }
    }
    for entry in entries {
        let stat = statat(&fd, entry.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            remove_tree(&fd, &entry, depth + 1)?;
        } else {
            unlinkat(&fd, entry.as_c_str(), AtFlags::empty())?;
        }
    }
    unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

fn delete_skill(dir: &Path, name: &str) -> Result<(), SkillError> {
    let Some(dir_fd) = open_skills_dir(dir).map_err(SkillError::io("Cannot read", dir))? else {
        return Err(SkillError::NotFound);
    };
    let kind = |entry: &str| {
        statat(&dir_fd, entry, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|stat| FileType::from_raw_mode(stat.st_mode))
    };
    let mut found = false;
    let flat = format!("{name}.md");
    if kind(&flat) == Some(FileType::RegularFile) {
        // unlinkat never follows: had a link been swapped in meanwhile, the
        // link would go, not its target.
        unlinkat(&dir_fd, flat.as_str(), AtFlags::empty())
            .map_err(|errno| SkillError::io("Cannot delete", &dir.join(&flat))(errno.into()))?;
        found = true;
    }
    if kind(name) == Some(FileType::Directory) {
        let c_name = CString::new(name).map_err(|_| SkillError::NotFound)?;
        remove_tree(&dir_fd, &c_name, 0)
            .map_err(SkillError::io("Cannot delete", &dir.join(name)))?;
        found = true;
    }
    if found {
        tracing::info!(skill = name, "skill deleted");
        Ok(())
    } else {
        Err(SkillError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A temp dir with `skills/` (the store) and, beside it, canaries that
    /// hostile names aim at: `canary.md`, `canary/SKILL.md`, `outside/`.
    struct Setup {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        store: SkillStore,
    }

    const CANARY: &str = "canary: must survive";

    fn setup() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir_all(base.join("skills")).unwrap();
        fs::write(base.join("canary.md"), CANARY).unwrap();
        fs::create_dir_all(base.join("canary")).unwrap();
        fs::write(base.join("canary/SKILL.md"), CANARY).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/SKILL.md"), CANARY).unwrap();
        Setup {
            store: SkillStore::new(base.join("skills")),
            base,
            _tmp: tmp,
        }
    }

    impl Setup {
        fn skills(&self) -> PathBuf {
            self.base.join("skills")
        }

        fn assert_canaries(&self) {
            for file in ["canary.md", "canary/SKILL.md", "outside/SKILL.md"] {
                assert_eq!(
                    fs::read_to_string(self.base.join(file)).unwrap(),
                    CANARY,
                    "{file} was touched"
                );
            }
        }
    }

    fn rid() -> Option<String> {
        Some("req-1".into())
    }

    fn names(skills: &[RunnerSkill]) -> Vec<&str> {
        skills.iter().map(|s| s.name.as_str()).collect()
    }

    #[tokio::test]
    async fn a_missing_directory_has_no_skills() {
        let store = SkillStore::new(PathBuf::from("/nonexistent/skills-dir"));
        assert!(store.list().await.is_empty());
        let reply = store.list_skills(ListSkills { request_id: rid() }).await;
        assert_eq!(
            reply,
            SkillsList {
                skills: vec![],
                request_id: rid()
            }
        );
    }

    #[tokio::test]
    async fn list_reads_both_forms_sorted_with_descriptions() {
        let s = setup();
        let dir = s.skills();
        fs::write(
            dir.join("zeta.md"),
            "---\nname: zeta\ndescription: \"Quoted desc\"\n---\nbody\n",
        )
        .unwrap();
        fs::create_dir_all(dir.join("alpha")).unwrap();
        fs::write(
            dir.join("alpha/SKILL.md"),
            "---\ndescription: 'single quoted'\n---\n# Alpha\n",
        )
        .unwrap();
        fs::write(
            dir.join("mid.md"),
            "# no front matter\ndescription: not it\n",
        )
        .unwrap();
        fs::write(
            dir.join("plain-2.md"),
            "---\ndescription: plain text\n---\n",
        )
        .unwrap();
        fs::write(
            dir.join("late.md"),
            "---\ntitle: x\n---\ndescription: too late\n",
        )
        .unwrap();
        // Not skills: invalid names, other extensions, a dir without SKILL.md.
        fs::write(dir.join("Bad_Name.md"), "---\ndescription: x\n---\n").unwrap();
        fs::write(dir.join("-x.md"), "x").unwrap();
        fs::write(dir.join(".hidden.md"), "x").unwrap();
        fs::write(dir.join("notes.txt"), "x").unwrap();
        fs::create_dir_all(dir.join("empty-dir")).unwrap();
        fs::create_dir_all(dir.join("Upper")).unwrap();
        fs::write(dir.join("Upper/SKILL.md"), "x").unwrap();
        // Both forms: the directory wins.
        fs::write(dir.join("both.md"), "---\ndescription: flat\n---\n").unwrap();
        fs::create_dir_all(dir.join("both")).unwrap();
        fs::write(dir.join("both/SKILL.md"), "---\ndescription: nested\n---\n").unwrap();

        let skills = s.store.list().await;
        assert_eq!(
            names(&skills),
            ["alpha", "both", "late", "mid", "plain-2", "zeta"]
        );
        let by_name = |n: &str| skills.iter().find(|s| s.name == n).unwrap();
        assert_eq!(by_name("zeta").description, "Quoted desc");
        assert_eq!(by_name("alpha").description, "single quoted");
        assert_eq!(by_name("plain-2").description, "plain text");
        assert_eq!(by_name("mid").description, "");
        assert_eq!(by_name("late").description, "");
        assert_eq!(by_name("both").description, "nested");
        assert_eq!(
            by_name("alpha").file_path,
            dir.join("alpha/SKILL.md").display().to_string()
        );
        assert_eq!(
            by_name("zeta").file_path,
            dir.join("zeta.md").display().to_string()
        );
    }

    #[tokio::test]
    async fn create_get_update_delete_round_trip() {
        let s = setup();
        let reply = s
            .store
            .create(CreateSkill {
                request_id: rid(),
                name: "  code-review ".into(),
                content: "---\ndescription: Reviews code\n---\nv1\n".into(),
            })
            .await;
        assert!(reply.ok, "{reply:?}");
        assert_eq!(reply.request_id, rid());
        let skills = reply.skills.unwrap();
        assert_eq!(names(&skills), ["code-review"]);
        assert_eq!(skills[0].description, "Reviews code");
        let file = s.skills().join("code-review/SKILL.md");
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "---\ndescription: Reviews code\n---\nv1\n"
        );
        // Atomic write: nothing but SKILL.md is left in the directory.
        let left: Vec<_> = fs::read_dir(s.skills().join("code-review"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["SKILL.md"]);

        // Creating an existing skill replaces it.
        let reply = s
            .store
            .create(CreateSkill {
                request_id: None,
                name: "code-review".into(),
                content: "v2".into(),
            })
            .await;
        assert!(reply.ok);
        assert_eq!(fs::read_to_string(&file).unwrap(), "v2");

        let reply = s
            .store
            .update(UpdateSkill {
                request_id: rid(),
                name: "code-review".into(),
                content: "v3".into(),
            })
            .await;
        assert!(reply.ok);
        let got = s
            .store
            .get(GetSkill {
                request_id: rid(),
                name: "code-review".into(),
            })
            .await;
        assert_eq!(
            got,
            SkillResult {
                request_id: rid(),
                ok: true,
                name: Some("code-review".into()),
                content: Some("v3".into()),
                ..Default::default()
            }
        );

        // Updating a missing skill creates it.
        let reply = s
            .store
            .update(UpdateSkill {
                request_id: rid(),
                name: "fresh".into(),
                content: "new".into(),
            })
            .await;
        assert!(reply.ok);
        assert_eq!(names(&reply.skills.unwrap()), ["code-review", "fresh"]);

        let reply = s
            .store
            .delete(DeleteSkill {
                request_id: rid(),
                name: "code-review".into(),
            })
            .await;
        assert!(reply.ok, "{reply:?}");
        assert_eq!(reply.request_id, rid());
        assert_eq!(names(&reply.skills.unwrap()), ["fresh"]);
        assert!(!s.skills().join("code-review").exists());

        // A flat skill is deleted too.
        fs::write(s.skills().join("flat.md"), "x").unwrap();
        let reply = s
            .store
            .delete(DeleteSkill {
                request_id: None,
                name: "flat".into(),
            })
            .await;
        assert!(reply.ok);
        assert!(!s.skills().join("flat.md").exists());
        s.assert_canaries();
    }

    #[tokio::test]
    async fn missing_skills_are_not_found() {
        let s = setup();
        let reply = s
            .store
            .delete(DeleteSkill {
                request_id: rid(),
                name: "ghost".into(),
            })
            .await;
        assert_eq!(
            reply,
            SkillResult {
                request_id: rid(),
                ok: false,
                message: Some("Skill not found".into()),
                skills: Some(vec![]),
                ..Default::default()
            }
        );
        let reply = s
            .store
            .get(GetSkill {
                request_id: rid(),
                name: "ghost".into(),
            })
            .await;
        assert_eq!(reply, SkillResult::failure(rid(), "Skill not found"));
    }

    #[tokio::test]
    async fn hostile_names_are_refused_by_every_operation() {
        let s = setup();
        let invalid = [
            "../canary",
            "..",
            ".",
            "../canary.md",
            "a/b",
            "canary/../../canary",
            "/etc",
            "-x",
            "x-",
            "Bad_Name",
            "../outside",
            "a\0b",
        ];
        for name in invalid.iter().copied().chain(["", "   "]) {
            let expected = if name.trim().is_empty() {
                messages::MISSING_SKILL_NAME
            } else {
                messages::INVALID_SKILL_NAME
            };
            let replies = [
                s.store
                    .create(CreateSkill {
                        request_id: rid(),
                        name: name.into(),
                        content: "pwned".into(),
                    })
                    .await,
                s.store
                    .update(UpdateSkill {
                        request_id: rid(),
                        name: name.into(),
                        content: "pwned".into(),
                    })
                    .await,
                s.store
                    .delete(DeleteSkill {
                        request_id: rid(),
                        name: name.into(),
                    })
                    .await,
                s.store
                    .get(GetSkill {
                        request_id: rid(),
                        name: name.into(),
                    })
                    .await,
            ];
            for reply in replies {
                assert!(!reply.ok, "{name:?}: {reply:?}");
                assert_eq!(reply.message.as_deref(), Some(expected), "{name:?}");
                assert_eq!(reply.request_id, rid());
                assert_eq!(reply.content, None, "{name:?} leaked content");
            }
            s.assert_canaries();
        }
        assert_eq!(fs::read_dir(s.skills()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn symlinks_in_the_skills_dir_are_never_followed() {
        let s = setup();
        let dir = s.skills();
        symlink(s.base.join("outside"), dir.join("evil")).unwrap();
        symlink(s.base.join("canary.md"), dir.join("evil-file.md")).unwrap();
        fs::create_dir_all(dir.join("inner")).unwrap();
        symlink(s.base.join("canary.md"), dir.join("inner/SKILL.md")).unwrap();

        assert!(s.store.list().await.is_empty());
        for name in ["evil", "evil-file", "inner"] {
            let got = s
                .store
                .get(GetSkill {
                    request_id: None,
                    name: name.into(),
                })
                .await;
            assert_eq!(got, SkillResult::failure(None, "Skill not found"), "{name}");
        }
        let reply = s
            .store
            .create(CreateSkill {
                request_id: None,
                name: "evil".into(),
                content: "pwned".into(),
            })
            .await;
        assert!(!reply.ok);
        assert!(reply.message.unwrap().contains("symbolic link"));
        let reply = s
            .store
            .update(UpdateSkill {
                request_id: None,
                name: "inner".into(),
                content: "pwned".into(),
            })
            .await;
        assert!(!reply.ok);
        for name in ["evil", "evil-file"] {
            let reply = s
                .store
                .delete(DeleteSkill {
                    request_id: None,
                    name: name.into(),
                })
                .await;
            assert_eq!(reply.message.as_deref(), Some("Skill not found"), "{name}");
        }
        s.assert_canaries();
        assert!(dir.join("evil").symlink_metadata().is_ok());
        assert!(dir.join("evil-file.md").symlink_metadata().is_ok());

        // Deleting a real skill directory that holds a link to the outside
        // removes the link, never its target.
        fs::create_dir_all(dir.join("real")).unwrap();
        fs::write(dir.join("real/SKILL.md"), "x").unwrap();
        symlink(s.base.join("outside"), dir.join("real/escape")).unwrap();
        let reply = s
            .store
            .delete(DeleteSkill {
                request_id: None,
                name: "real".into(),
            })
            .await;
        assert!(reply.ok);
        assert!(!dir.join("real").exists());
        s.assert_canaries();
    }

    #[tokio::test]
    async fn a_fifo_in_a_skills_place_does_not_hold_a_request() {
        let s = setup();
        let dir = s.skills();
        fs::create_dir_all(dir.join("piped")).unwrap();
        let mode = nix::sys::stat::Mode::S_IRWXU;
        nix::unistd::mkfifo(&dir.join("flat.md"), mode).unwrap();
        nix::unistd::mkfifo(&dir.join("piped/SKILL.md"), mode).unwrap();
        let bounded = std::time::Duration::from_secs(10);
        let listed = tokio::time::timeout(bounded, s.store.list())
            .await
            .expect("listing skills hung on a FIFO");
        assert!(listed.is_empty(), "{listed:?}");
        for name in ["flat", "piped"] {
            let got = tokio::time::timeout(
                bounded,
                s.store.get(GetSkill {
                    request_id: None,
                    name: name.into(),
                }),
            )
            .await
            .expect("get_skill hung on a FIFO");
            assert_eq!(got, SkillResult::failure(None, "Skill not found"), "{name}");
        }
    }

    #[tokio::test]
    async fn oversized_content_is_refused() {
        let s = setup();
        let reply = s
            .store
            .create(CreateSkill {
                request_id: rid(),
                name: "big".into(),
                content: "x".repeat(MAX_SKILL_BYTES + 1),
            })
            .await;
        assert!(!reply.ok);
        assert_eq!(
            reply.message.as_deref(),
            Some(
                format!(
                    "Skill content too large: {} bytes (limit {MAX_SKILL_BYTES})",
                    MAX_SKILL_BYTES + 1
                )
                .as_str()
            )
        );
        assert!(!s.skills().join("big").exists());

        fs::create_dir_all(s.skills().join("huge")).unwrap();
        fs::write(
            s.skills().join("huge/SKILL.md"),
            "y".repeat(MAX_SKILL_BYTES + 10),
        )
        .unwrap();
        let got = s
            .store
            .get(GetSkill {
                request_id: None,
                name: "huge".into(),
            })
            .await;
        assert!(!got.ok);
        assert!(got.message.unwrap().contains("too large"));
        // Exactly the limit is fine.
        let reply = s
            .store
            .create(CreateSkill {
                request_id: None,
                name: "edge".into(),
                content: "z".repeat(MAX_SKILL_BYTES),
            })
            .await;
        assert!(reply.ok);
    }

    #[test]
    fn description_parsing() {
        let cases = [
            ("---\ndescription: a\n---\n", "a"),
            ("---\r\ndescription:   \"b c\"  \r\n---\r\n", "b c"),
            ("---\ndescription: 'q'\n---\n", "q"),
            ("---\ndescription: \"unbalanced\n---\n", "\"unbalanced"),
            ("---\nname: x\n---\n", ""),
            ("no front matter", ""),
            ("", ""),
            ("---\ndescription:\n---\n", ""),
        ];
        for (content, expected) in cases {
            assert_eq!(front_matter_description(content), expected, "{content:?}");
        }
    }
}
