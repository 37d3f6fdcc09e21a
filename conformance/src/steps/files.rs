//! Steps about the sandbox's files: checking what the runner wrote (or
//! must not have touched), tampering with files between runs, and reading
//! values out of JSON files for later steps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::Invalid;
use crate::driver::Run;
use crate::template::{UnknownPlaceholder, field};

/// Check the file system.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFs {
    /// The path (placeholders allowed).
    pub path: String,
    /// Whether it must exist.
    pub exists: Option<bool>,
    /// The content it must have.
    pub content: Option<String>,
    /// The permission bits it must have, in octal (`"0600"`).
    pub mode: Option<String>,
}

/// Read a JSON file and store some of its fields as placeholders:
/// placeholder name → field path, as in `expect`'s `capture`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadJson {
    /// The path (placeholders allowed).
    pub path: String,
    /// Placeholder name → field path (`runnerSecret`, `a.0.b`).
    pub capture: BTreeMap<String, String>,
    /// A field the file lacks leaves its placeholder without a value
    /// (for `check_var … absent = true`) instead of failing the step.
    #[serde(default)]
    pub optional: bool,
}

/// Write a file (e.g. to tamper with the runner's state between runs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFs {
    /// The path (placeholders allowed).
    pub path: String,
    /// The content (placeholders allowed).
    pub content: String,
    /// Write the content this many times over (for large files).
    pub repeat: Option<usize>,
}

/// Why a file step did not hold.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A placeholder in the step has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// The path exists when it must not, or the other way round.
    #[error("{} {}", .path.display(), if *.found { "exists" } else { "does not exist" })]
    Existence {
        /// The path.
        path: PathBuf,
        /// Whether it was found.
        found: bool,
    },
    /// Reading, writing or inspecting the path failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file's content is not the expected one.
    #[error("{}: expected {expected:?}, found {actual:?}", .path.display())]
    Content {
        /// The path.
        path: PathBuf,
        /// The content it had to have.
        expected: String,
        /// The content it has.
        actual: String,
    },
    /// The file's permission bits are not the expected ones.
    #[error("{}: expected mode {expected:04o}, found {actual:04o}", .path.display())]
    Mode {
        /// The path.
        path: PathBuf,
        /// The bits it had to have.
        expected: u32,
        /// The bits it has.
        actual: u32,
    },
    /// The file is not JSON.
    #[error("{} is not JSON: {source}", .path.display())]
    NotJson {
        /// The path.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// A captured field is not in the file.
    #[error("{} has no field {key}: {text}", .path.display())]
    NoField {
        /// The path.
        path: PathBuf,
        /// The field path.
        key: String,
        /// The file's text.
        text: String,
    },
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Permission bits written in octal (`"0600"`, `"600"`).
pub fn parse_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777)
}

impl CheckFs {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        match &self.mode {
            Some(mode) if parse_mode(mode).is_none() => Err(Invalid::new(
                "mode",
                format!("{mode:?} is not an octal permission such as \"0600\""),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn run(&self, run: &mut Run) -> Result<(), FileError> {
        let path = PathBuf::from(run.vars.fill(&self.path)?);
        let found = std::fs::symlink_metadata(&path).is_ok();
        if let Some(exists) = self.exists
            && exists != found
        {
            return Err(FileError::Existence { path, found });
        }
        if let Some(content) = &self.content {
            let actual = std::fs::read_to_string(&path).map_err(io(&path))?;
            if actual != *content {
                return Err(FileError::Content {
                    path,
                    expected: content.clone(),
                    actual,
                });
            }
        }
        if let Some(expected) = self.mode.as_deref().and_then(parse_mode) {
            use std::os::unix::fs::PermissionsExt as _;
            let actual = std::fs::symlink_metadata(&path)
                .map_err(io(&path))?
                .permissions()
                .mode()
                & 0o7777;
            if actual != expected {
                return Err(FileError::Mode {
                    path,
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }
}

impl ReadJson {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), FileError> {
        let path = PathBuf::from(run.vars.fill(&self.path)?);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let json: Value = serde_json::from_str(&text).map_err(|source| FileError::NotJson {
            path: path.clone(),
            source,
        })?;
        for (name, key) in &self.capture {
            match field(&json, key) {
                Some(value) => run.vars.set(name.clone(), value),
                None if self.optional => run.vars.remove_where(|n| n == name),
                None => {
                    return Err(FileError::NoField {
                        path: path.clone(),
                        key: key.clone(),
                        text: text.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl WriteFs {
    pub(crate) fn run(&self, run: &mut Run) -> Result<(), FileError> {
        let path = PathBuf::from(run.vars.fill(&self.path)?);
        let content = run
            .vars
            .fill(&self.content)?
            .repeat(self.repeat.unwrap_or(1));
        std::fs::write(&path, content).map_err(io(&path))
    }
}
