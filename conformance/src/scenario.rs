//! The scenario model: what a scenario sets up and the steps it runs.
//!
//! A scenario is data. It is written as a TOML file in
//! `fixtures/scenarios/` and parses into [`Scenario`]; Rust tests build the
//! same values in code. A file looks like this:
//!
//! ```toml
//! name = "spawn-cwd-outside-roots"
//! level = "contract"
//! description = "A new_session whose cwd lies outside the roots is refused."
//!
//! [sandbox]
//! dirs = ["outside"]
//!
//! [[steps]]
//! do = "emit"
//! event = "new_session"
//! payload = { sessionId = "s1", cwd = "{sandbox}/outside" }
//!
//! [[steps]]
//! do = "expect"
//! event = "session_error"
//! match = { sessionId = "s1", message = "Requested cwd is outside allowed workspace root(s): {sandbox}/outside" }
//! ```
//!
//! Strings in payloads, matches and paths may use placeholders: `{sandbox}`
//! (the scenario's temporary directory), `{root}` (the first workspace
//! root), `{home}` (the runner's `HOME`), `{relay_url}` and `{api_key}`
//! (what the runner was given), and any name captured by an earlier
//! `expect` or `read_worker` step. `{{name}}` stands for the literal text `{name}`;
//! any other brace is kept as written, so JSON content needs no escaping.
//!
//! `do` names the step; its other keys are the fields of that step's type,
//! documented in [`crate::steps`] (one module per family of steps).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub use crate::level::Level;
pub use crate::steps::Step;

/// Events the relay records about connections rather than messages.
pub const CONNECTION_EVENTS: &[&str] = &[
    "handshake_accepted",
    "handshake_refused",
    "connect",
    "disconnect",
];

/// The scenario files built into this crate when it was compiled (every
/// `fixtures/scenarios/*.toml`), as `(file name, text)`, sorted by name.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));

/// Where the [`EMBEDDED`] files come from, relative to the workspace: the
/// directory their errors name.
pub const EMBEDDED_DIR: &str = "fixtures/scenarios";

/// One scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// A short, unique, kebab-case name.
    pub name: String,
    /// What the scenario shows, in a sentence or two.
    pub description: String,
    /// What its verdict stands on (see [`crate::level`]).
    pub level: Level,
    /// What exists before the runner starts.
    pub sandbox: Sandbox,
    /// Whether the driver waits for the runner to register before the
    /// first step (default true; false for scenarios about refused starts).
    pub wait_registered: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// The file's top level; steps are decoded one by one afterwards, so that
/// an error inside a step can name its field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    description: String,
    level: Level,
    #[serde(default)]
    sandbox: Sandbox,
    #[serde(default = "crate::steps::yes")]
    wait_registered: bool,
    #[serde(default)]
    steps: Vec<toml::Table>,
}

/// The files, directories, repositories and settings a scenario starts with.
/// Every path is relative to the scenario's temporary directory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Directories given to the runner as workspace roots (created).
    #[serde(default = "default_roots")]
    pub roots: Vec<String>,
    /// Further directories to create.
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Files to create, path → content.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Symlinks to create, link path → target (used as written, after placeholders).
    #[serde(default)]
    pub symlinks: BTreeMap<String, String>,
    /// Named pipes (FIFOs) to create: a path that blocks whoever opens it
    /// for reading until a writer comes, which none ever does.
    #[serde(default)]
    pub fifos: Vec<String>,
    /// Directories to turn into git repositories with one commit of their files.
    #[serde(default)]
    pub git: Vec<String>,
    /// Skills in the runner's skills directory, name → `SKILL.md` content.
    #[serde(default)]
    pub skills: BTreeMap<String, String>,
    /// The runner's usage cache file content, when it has one.
    #[serde(default)]
    pub usage_cache: Option<Value>,
    /// How the fixture worker behaves when the runner spawns it.
    #[serde(default)]
    pub worker: WorkerBehaviour,
    /// Extra environment variables for the runner (placeholders allowed).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_roots() -> Vec<String> {
    vec!["root".to_owned()]
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            roots: default_roots(),
            dirs: Vec::new(),
            files: BTreeMap::new(),
            symlinks: BTreeMap::new(),
            fifos: Vec::new(),
            git: Vec::new(),
            skills: BTreeMap::new(),
            usage_cache: None,
            worker: WorkerBehaviour::default(),
            env: BTreeMap::new(),
        }
    }
}

/// The fixture worker's behaviour, passed to it as environment variables.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerBehaviour {
    /// Exit with this code (after `delay_ms`); absent: stay until killed.
    pub exit_code: Option<i32>,
    /// Wait this long before exiting.
    pub delay_ms: Option<u64>,
    /// Exit with 43 (restart me) the first time only.
    #[serde(default)]
    pub exit_43_once: bool,
    /// Ignore SIGTERM, so only SIGKILL stops it.
    #[serde(default)]
    pub ignore_sigterm: bool,
    /// Spawn a grandchild process that sleeps.
    #[serde(default)]
    pub grandchild: bool,
    /// Spawn a grandchild (implies `grandchild`) that takes this many
    /// milliseconds to clean up after SIGTERM, then writes
    /// `{sandbox}/.worker-records/<sessionId>.cleaned` and exits.
    pub grandchild_cleanup_ms: Option<u64>,
    /// Print these JSON values, one per stdout line, at start.
    #[serde(default)]
    pub events: Vec<Value>,
    /// Print first one event line of about this many bytes:
    /// `{"type":"large","bytes":<n>,"data":"xx…"}`.
    pub large_event_bytes: Option<usize>,
}

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ScenarioError {
    /// The file (or the origin name given to [`Scenario::from_toml`]).
    pub file: String,
    /// The 1-based line (0 when unknown).
    pub line: usize,
    /// The field's path, e.g. `steps[2].event`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Scenario {
    /// Parses and checks a scenario. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let error = |line: usize, field: String, message: String| ScenarioError {
            file: origin.to_owned(),
            line,
            field,
            message,
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            error(line, "(syntax)".to_owned(), e.message().trim().to_owned())
        })?;
        let raw: RawScenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| line_of(text, s.start))
                .or_else(|| line_of_path(text, &field))
                .unwrap_or(0);
            error(line, field, inner.message().trim().to_owned())
        })?;
        let mut steps = Vec::with_capacity(raw.steps.len());
        for (i, mut table) in raw.steps.into_iter().enumerate() {
            let at_field = |field: &str| {
                let path = format!("steps[{i}].{field}");
                (line_of_path(text, &path).unwrap_or(0), path)
            };
            let action = match table.remove("do") {
                Some(toml::Value::String(action)) => action,
                Some(other) => {
                    let (line, path) = at_field("do");
                    return Err(error(
                        line,
                        path,
                        format!("must be a string, not {}", other.type_str()),
                    ));
                }
                None => {
                    let (line, path) = at_field("do");
                    return Err(error(
                        line,
                        path,
                        "missing field `do` (the step's action)".to_owned(),
                    ));
                }
            };
            // TOML has no null: `payload_json` writes an emit's payload as
            // JSON text instead.
            let payload_json = match table.remove("payload_json") {
                None => None,
                Some(toml::Value::String(text)) if action == "emit" => {
                    let (line, path) = at_field("payload_json");
                    if table.contains_key("payload") {
                        return Err(error(
                            line,
                            path,
                            "give `payload` or `payload_json`, not both".to_owned(),
                        ));
                    }
                    let value: Value = serde_json::from_str(&text)
                        .map_err(|e| error(line, path, format!("not JSON: {e}")))?;
                    Some(value)
                }
                Some(_) => {
                    let (line, path) = at_field("payload_json");
                    return Err(error(
                        line,
                        path,
                        "only an emit takes `payload_json`, as a string of JSON text".to_owned(),
                    ));
                }
            };
            let mut tagged = toml::Table::new();
            tagged.insert(action, toml::Value::Table(table));
            let mut step: Step = serde_path_to_error::deserialize(toml::Value::Table(tagged))
                .map_err(|e| {
                    // The path starts with the variant (`expect.timeout_ms`);
                    // an unknown variant has only that segment.
                    let path = e.path().to_string();
                    let field = match path.split_once('.') {
                        Some((_, f)) if !f.is_empty() => f.to_owned(),
                        _ => "do".to_owned(),
                    };
                    let (line, path) = at_field(&field);
                    error(line, path, e.into_inner().message().trim().to_owned())
                })?;
            if let (Some(value), Step::Emit(emit)) = (payload_json, &mut step) {
                emit.payload = value;
            }
            steps.push(step);
        }
        let scenario = Scenario {
            name: raw.name,
            description: raw.description,
            level: raw.level,
            sandbox: raw.sandbox,
            wait_registered: raw.wait_registered,
            steps,
        };
        scenario.check().map_err(|(field, message)| {
            error(line_of_path(text, &field).unwrap_or(0), field, message)
        })?;
        Ok(scenario)
    }

    /// Reads and parses one scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: origin.clone(),
            line: 0,
            field: "(file)".to_owned(),
            message: e.to_string(),
        })?;
        Scenario::from_toml(&text, &origin)
    }

    /// Reads every `*.toml` file of a directory, sorted by file name. Fails
    /// on the first bad file, on duplicate names, and on an empty directory.
    pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
        let dir_error = |message: String| ScenarioError {
            file: dir.display().to_string(),
            line: 0,
            field: "(directory)".to_owned(),
            message,
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| dir_error(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(dir_error("no scenario files (*.toml) found".to_owned()));
        }
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| ScenarioError {
                file: path.display().to_string(),
                line: 0,
                field: "(file)".to_owned(),
                message: e.to_string(),
            })?;
            files.push((path, text));
        }
        Scenario::load_all(files)
    }

    /// The scenarios built into this crate ([`EMBEDDED`]), named
    /// `fixtures/scenarios/<file>` in errors, with the same checks as
    /// [`load_dir`](Scenario::load_dir).
    pub fn load_embedded() -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
        let files = EMBEDDED
            .iter()
            .map(|(name, text)| {
                let path = Path::new(EMBEDDED_DIR).join(name);
                (path, (*text).to_owned())
            })
            .collect();
        Scenario::load_all(files)
    }

    /// Parses files already read, in the order given; refuses duplicate
    /// names and an empty set.
    fn load_all(files: Vec<(PathBuf, String)>) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
        if files.is_empty() {
            return Err(ScenarioError {
                file: EMBEDDED_DIR.to_owned(),
                line: 0,
                field: "(directory)".to_owned(),
                message: "no scenario files (*.toml) found".to_owned(),
            });
        }
        let mut seen = BTreeMap::new();
        let mut out = Vec::with_capacity(files.len());
        for (path, text) in files {
            let scenario = Scenario::from_toml(&text, &path.display().to_string())?;
            if let Some(other) = seen.insert(scenario.name.clone(), path.clone()) {
                return Err(ScenarioError {
                    file: path.display().to_string(),
                    line: line_of_path(&text, "name").unwrap_or(0),
                    field: "name".to_owned(),
                    message: format!(
                        "{:?} is also the name of {}",
                        scenario.name,
                        other.display()
                    ),
                });
            }
            out.push((path, scenario));
        }
        Ok(out)
    }

    /// Checks what the types cannot: names, event names, payloads of typed
    /// emits, capture paths. Returns the field path and the message.
    fn check(&self) -> Result<(), (String, String)> {
        let kebab = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !kebab {
            return Err((
                "name".to_owned(),
                format!(
                    "{:?} must be lowercase letters, digits and hyphens",
                    self.name
                ),
            ));
        }
        if self.sandbox.roots.is_empty() {
            return Err((
                "sandbox.roots".to_owned(),
                "at least one root is needed".to_owned(),
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            step.check()
                .map_err(|e| (format!("steps[{i}].{}", e.field), e.message))?;
        }
        Ok(())
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// The line where a field path such as `steps[2].event` is written: the
/// N-th `[[steps]]` header, then the first line after it that sets the key.
fn line_of_path(text: &str, path: &str) -> Option<usize> {
    let mut parts = path.split('.');
    let head = parts.next()?;
    let key = parts.next();
    let (table, index) = match head.split_once('[') {
        Some((table, rest)) => (table, rest.trim_end_matches(']').parse::<usize>().ok()?),
        None => {
            return text
                .lines()
                .position(|l| {
                    l.trim_start().starts_with(&format!("{head} "))
                        || l.trim_start().starts_with(&format!("{head}="))
                })
                .map(|i| i + 1);
        }
    };
    let header = format!("[[{table}]]");
    let start = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(index)?
        .0;
    let Some(key) = key else {
        return Some(start + 1);
    };
    text.lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|(i, _)| i + 1)
        .or(Some(start + 1))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::steps::process::{RunnerSignal, SendSignal};
    use crate::steps::wire::{Emit, Expect};

    const GOOD: &str = r#"
name = "spawn-ok"
level = "contract"
description = "Spawn works."

[sandbox]
dirs = ["root/src"]
files = { "root/a.txt" = "hello" }
worker = { exit_43_once = true, events = [{ type = "hello" }] }

[[steps]]
do = "emit"
event = "new_session"
payload = { sessionId = "s1", cwd = "{root}/src" }

[[steps]]
do = "expect"
event = "session_ready"
match = { sessionId = "s1" }
capture = { sid = "sessionId" }

[[steps]]
do = "expect_none"
event = "session_error"
for_ms = 200

[[steps]]
do = "emit"
event = "kill_session"
payload = { sessionId = 5 }
raw = true

[[steps]]
do = "signal"
signal = "SIGTERM"

[[steps]]
do = "expect_exit"
code = 0
"#;

    #[test]
    fn parses_a_full_scenario() {
        let s = Scenario::from_toml(GOOD, "good.toml").unwrap();
        assert_eq!(s.name, "spawn-ok");
        assert_eq!(s.level, Level::Contract);
        assert_eq!(s.sandbox.roots, vec!["root"]);
        assert!(s.sandbox.worker.exit_43_once);
        assert_eq!(s.steps.len(), 6);
        assert_eq!(
            s.steps[0],
            Step::Emit(Emit {
                event: "new_session".into(),
                payload: json!({"sessionId": "s1", "cwd": "{root}/src"}),
                raw: false,
                count: 1,
                burst: false,
            })
        );
        assert!(
            matches!(&s.steps[1], Step::Expect(Expect { capture, count: 1, .. }) if capture["sid"] == "sessionId")
        );
        assert_eq!(
            s.steps[4],
            Step::Signal(SendSignal {
                signal: RunnerSignal::Term
            })
        );
    }

    fn err(text: &str) -> ScenarioError {
        Scenario::from_toml(text, "bad.toml").unwrap_err()
    }

    #[test]
    fn errors_point_at_file_line_and_field() {
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n\n[[steps]]\ndo = \"emitt\"\n",
        );
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("bad.toml", 6, "steps[0].do")
        );
        assert!(e.message.contains("unknown variant `emitt`"), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"wait\"\nms = 1\n[[steps]]\ndo = \"expect\"\nevent = \"session_ready\"\ntimeout_ms = \"soon\"\n",
        );
        assert_eq!(e.field, "steps[1].timeout_ms");
        assert_eq!(e.line, 10, "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"new_sesion\"\n",
        );
        assert_eq!((e.line, e.field.as_str()), (6, "steps[0].event"));
        assert!(e.message.contains("not a server→runner event"), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"new_session\"\npayload = { cwd = \"/\" }\n",
        );
        assert_eq!((e.line, e.field.as_str()), (7, "steps[0].payload"));
        assert!(e.message.contains(r#"missing field "sessionId""#), "{e}");

        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"expect\"\nevent = \"pong\"\nmatchs = {}\n",
        );
        assert!(e.message.contains("unknown field `matchs`"), "{e}");

        for both_or_neither in ["equals = \"s1\"\nabsent = true\n", ""] {
            let e = err(&format!(
                "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_var\"\nname = \"worker_env_PIZZAPI_SESSION_ID\"\n{both_or_neither}"
            ));
            assert_eq!(e.field, "steps[0].equals", "{e}");
            assert!(e.message.contains("exactly one of `equals`"), "{e}");
        }
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_var\"\nname = \"v\"\nmatches = \"[a-\"\n",
        );
        assert_eq!(e.field, "steps[0].matches", "{e}");
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"check_fs\"\npath = \"p\"\nmode = \"rw\"\n",
        );
        assert_eq!(e.field, "steps[0].mode", "{e}");
        let e = err(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"ping\"\nraw = true\npayload_json = \"{nope\"\n",
        );
        assert_eq!(
            (e.line, e.field.as_str()),
            (8, "steps[0].payload_json"),
            "{e}"
        );
        let null = Scenario::from_toml(
            "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"emit\"\nevent = \"ping\"\nraw = true\npayload_json = \"null\"\n",
            "null.toml",
        )
        .unwrap();
        assert!(matches!(
            &null.steps[0],
            Step::Emit(Emit {
                payload: Value::Null,
                ..
            })
        ));

        let e = err("name = \"Bad Name\"\nlevel = \"contract\"\ndescription = \"d\"\n");
        assert_eq!((e.line, e.field.as_str()), (1, "name"));

        let e = err("name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]\n");
        assert_eq!((e.line, e.field.as_str()), (4, "(syntax)"));

        let e = err("name = \"x\"\nlevel = \"contract\"\n");
        assert!(e.message.contains("missing field `description`"), "{e}");

        let e = err("name = \"x\"\ndescription = \"d\"\n");
        assert!(e.message.contains("missing field `level`"), "{e}");
        let e = err("name = \"x\"\nlevel = \"strict\"\ndescription = \"d\"\n");
        assert_eq!((e.line, e.field.as_str()), (2, "level"), "{e}");
        assert!(e.message.contains("unknown variant `strict`"), "{e}");

        for both_or_neither in ["code = 1\nnonzero = true\n", ""] {
            let e = err(&format!(
                "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"expect_exit\"\n{both_or_neither}"
            ));
            assert_eq!(e.field, "steps[0].code", "{e}");
            assert!(e.message.contains("exactly one of `code`"), "{e}");
        }
        assert_eq!(e.to_string().split(':').next(), Some("bad.toml"));
    }

    #[test]
    fn embedded_scenarios_are_the_directory_s() {
        let embedded = Scenario::load_embedded().unwrap();
        let dir = Scenario::load_dir(&crate::scenarios_dir()).unwrap();
        assert_eq!(embedded.len(), dir.len());
        for ((embedded_path, embedded), (dir_path, from_dir)) in embedded.iter().zip(&dir) {
            assert_eq!(embedded_path.file_name(), dir_path.file_name());
            assert!(
                embedded_path.starts_with(EMBEDDED_DIR),
                "{}",
                embedded_path.display()
            );
            assert_eq!(embedded, from_dir);
        }
    }

    #[test]
    fn built_in_and_directory_files_fail_alike() {
        let bad = "name = \"x\"\nlevel = \"contract\"\ndescription = \"d\"\n[[steps]]\ndo = \"expect\"\nevent = \"pong\"\ntimeout_ms = \"soon\"\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.toml"), bad).unwrap();
        let from_dir = Scenario::load_dir(dir.path()).unwrap_err();
        let built_in = Scenario::load_all(vec![(
            Path::new(EMBEDDED_DIR).join("x.toml"),
            bad.to_owned(),
        )])
        .unwrap_err();
        assert_eq!(built_in.file, "fixtures/scenarios/x.toml");
        assert!(from_dir.file.ends_with("/x.toml"), "{from_dir}");
        assert_eq!(
            (built_in.line, &built_in.field, &built_in.message),
            (from_dir.line, &from_dir.field, &from_dir.message)
        );
        assert_eq!(
            (built_in.line, built_in.field.as_str()),
            (7, "steps[0].timeout_ms")
        );
    }

    #[test]
    fn load_dir_refuses_empty_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let e = Scenario::load_dir(dir.path()).unwrap_err();
        assert!(e.message.contains("no scenario files"), "{e}");
        std::fs::write(
            dir.path().join("a.toml"),
            "name = \"same\"\nlevel = \"contract\"\ndescription = \"d\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.toml"),
            "name = \"same\"\nlevel = \"contract\"\ndescription = \"d\"\n",
        )
        .unwrap();
        let e = Scenario::load_dir(dir.path()).unwrap_err();
        assert!(
            e.file.ends_with("b.toml") && e.message.contains("also the name of"),
            "{e}"
        );
    }
}
