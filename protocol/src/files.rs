//! Files and git: listing, reading, `git status`, `git diff`, all confined to
//! the runner's workspace roots, answered by one `file_result` event whose
//! shape depends on the command.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DecodeError, decode_payload};
use crate::names;

/// How `read_file` returns the content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// Text (invalid UTF-8 sequences are replaced); default limit 256 KiB.
    #[default]
    Utf8,
    /// Base64 of the raw bytes; default limit 10 MiB.
    Base64,
}

impl FileEncoding {
    /// The default `maxBytes` for this encoding.
    pub fn default_max_bytes(self) -> u64 {
        match self {
            FileEncoding::Utf8 => 256 * 1024,
            FileEncoding::Base64 => 10 * 1024 * 1024,
        }
    }
}

/// `list_files` (S→R): list one directory.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ListFiles {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The base for a relative `path`.
    pub cwd: String,
    /// The directory to list (absolute, or relative to `cwd`).
    pub path: String,
}

/// `read_file` (S→R): read one file.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ReadFile {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The base for a relative `path`.
    pub cwd: String,
    /// The file to read (absolute, or relative to `cwd`).
    pub path: String,
    /// `utf8` (default) or `base64`.
    pub encoding: Option<FileEncoding>,
    /// Read at most this many bytes (default by encoding).
    pub max_bytes: Option<u64>,
}

/// `git_status` (S→R): the status of the working tree at `cwd`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// A directory inside the working tree.
    pub cwd: String,
}

/// `git_diff` (S→R): the diff of one path.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GitDiff {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// A directory inside the working tree.
    pub cwd: String,
    /// The path to diff, relative to `cwd`.
    pub path: String,
    /// Diff the index instead of the working tree.
    pub staged: Option<bool>,
}

/// One entry of a directory listing.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// The entry's file name.
    pub name: String,
    /// The entry's full path.
    pub path: String,
    /// Whether it is a directory (following a symlink).
    pub is_directory: bool,
    /// Whether the entry itself is a symlink.
    pub is_symlink: bool,
    /// Size in bytes, for files.
    pub size: Option<u64>,
}

/// The `list_files` shape of `file_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct FileListing {
    /// Directories first, then files; case-insensitive by name; dot-files
    /// hidden except `.gitignore` and `.env`.
    pub files: Vec<FileEntry>,
}

/// The `read_file` shape of `file_result`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct FileContent {
    /// The content, as text or base64.
    pub content: String,
    /// The encoding of `content` (absent means `utf8`).
    pub encoding: Option<FileEncoding>,
    /// The file's full size in bytes.
    pub size: u64,
    /// Whether `content` stops short of the file's end.
    pub truncated: bool,
}

/// One changed path in `git status`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GitChange {
    /// The two-letter porcelain status, e.g. ` M`, `A `, `??`, `R `.
    pub status: String,
    /// The path, relative to the repository's top level.
    pub path: String,
    /// The path before a rename or copy.
    pub original_path: Option<String>,
}

/// The `git_status` shape of `file_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GitStatusReport {
    /// The current branch (`HEAD` when detached).
    pub branch: String,
    /// The changed paths.
    pub changes: Vec<GitChange>,
    /// Commits ahead of the upstream.
    pub ahead: u32,
    /// Commits behind the upstream.
    pub behind: u32,
    /// The staged diff (`git diff --cached`), as text.
    pub diff_staged: String,
}

/// The `git_diff` shape of `file_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GitDiffReport {
    /// The unified diff.
    pub diff: String,
}

/// The failure shape of `file_result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct FileFailure {
    /// What went wrong, e.g. `Path outside allowed roots`.
    pub message: String,
}

/// The shapes `file_result` takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(untagged)]
pub enum FileResultBody {
    /// Reply to `list_files`.
    List(FileListing),
    /// Reply to `read_file`.
    Read(FileContent),
    /// Reply to `git_status`.
    GitStatus(GitStatusReport),
    /// Reply to `git_diff`.
    GitDiff(GitDiffReport),
    /// Any command failed.
    Failure(FileFailure),
}

/// `file_result` (R→S): the reply to `list_files`, `read_file`, `git_status`
/// and `git_diff`. On the wire it is one flat object: `requestId?`, `ok`,
/// and the fields of the body's shape. `ok` is `false` exactly for
/// [`FileResultBody::Failure`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileResult {
    /// The request's correlation id, when it carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The shape's fields.
    #[serde(flatten)]
    pub body: FileResultBody,
}

impl FileResult {
    /// Wraps a body; `ok` follows from its shape.
    pub fn new(request_id: Option<String>, body: FileResultBody) -> Self {
        let ok = !matches!(body, FileResultBody::Failure(_));
        FileResult {
            request_id,
            ok,
            body,
        }
    }

    /// A failure reply.
    pub fn failure(request_id: Option<String>, message: impl Into<String>) -> Self {
        Self::new(
            request_id,
            FileResultBody::Failure(FileFailure {
                message: message.into(),
            }),
        )
    }

    /// Decodes the flat wire object, choosing the shape by its keys:
    /// `ok: false` or only a `message` → failure; `files` → list;
    /// `content` → read; `branch`/`changes` → git status; `diff` → git diff.
    pub fn decode(value: Value) -> Result<Self, DecodeError> {
        const EVENT: &str = names::FILE_RESULT;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            request_id: Option<String>,
            ok: Option<bool>,
        }
        let head: Head = decode_payload(EVENT, value.clone())?;
        let mut object = match value {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        object.remove("requestId");
        object.remove("ok");
        let has = |key: &str| object.contains_key(key);
        let body_value = Value::Object(object.clone());
        let body = if head.ok == Some(false) || (head.ok.is_none() && has("message")) {
            FileResultBody::Failure(decode_payload(EVENT, body_value)?)
        } else if has("files") {
            FileResultBody::List(decode_payload(EVENT, body_value)?)
        } else if has("content") {
            FileResultBody::Read(decode_payload(EVENT, body_value)?)
        } else if has("branch") || has("changes") {
            FileResultBody::GitStatus(decode_payload(EVENT, body_value)?)
        } else if has("diff") {
            FileResultBody::GitDiff(decode_payload(EVENT, body_value)?)
        } else {
            return Err(DecodeError::Invalid {
                event: EVENT,
                reason: "none of the fields files, content, branch, diff or message is present"
                    .to_owned(),
            });
        };
        let ok = head
            .ok
            .unwrap_or(!matches!(body, FileResultBody::Failure(_)));
        Ok(FileResult {
            request_id: head.request_id,
            ok,
            body,
        })
    }
}

impl<'de> Deserialize<'de> for FileResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        FileResult::decode(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
impl proptest::arbitrary::Arbitrary for FileResult {
    type Parameters = ();
    type Strategy = proptest::strategy::BoxedStrategy<Self>;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::prelude::*;
        (any::<Option<String>>(), any::<FileResultBody>())
            .prop_map(|(request_id, body)| FileResult::new(request_id, body))
            .boxed()
    }
}
