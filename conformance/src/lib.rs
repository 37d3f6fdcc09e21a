//! Conformance scenarios for `/runner` runners.
//!
//! A scenario ([`scenario::Scenario`]) sets up a sandbox and scripts what a
//! relay sends and expects; the [`driver`] runs it against any runner
//! *process* through the mock relay and returns the relay's transcript;
//! [`normalize`] turns a transcript into stable text for snapshots. The
//! crate never links runner code into its verdicts, so it judges other
//! runner implementations as well as ours.
//!
//! Modules:
//!
//! * [`level`] — what a scenario's verdict stands on: the contract, our
//!   extensions, hardening, or this workspace's runner's own choices;
//! * [`scenario`] — the scenario model (its sandbox and its list of
//!   [`steps::Step`]) and its TOML form, with errors that point at the file,
//!   line and field; the workspace's scenario files are built in
//!   ([`scenario::EMBEDDED`]), so an installed `runner-conformance` carries
//!   them;
//! * [`template`] — placeholders (`{root}`, captured ids), JSON subset
//!   matching and captures;
//! * [`normalize`] — transcript → text: numbered id placeholders, secrets,
//!   clocks and sandbox paths replaced, canonical order for bursts;
//! * [`report`] — the table of a run, grouped by level, and its per-level
//!   summary; [`junit`] — the same run as JUnit XML for CI systems;
//! * [`steps`] — the steps a scenario runs, one module per family (wire,
//!   faults, process, files, variables): each step's fields, what loading
//!   checks about it, and how it runs;
//! * [`driver`] — runs one scenario against a runner process through an
//!   embedded mock relay: the sandbox, the run's state lent to each step,
//!   and the teardown.

#![warn(missing_docs)]

pub mod driver;
pub mod junit;
pub mod level;
pub mod normalize;
pub mod report;
pub mod scenario;
pub mod steps;
pub mod template;

use std::path::PathBuf;

/// The workspace's root directory (where `fixtures/` is).
pub fn workspace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The workspace's scenario files: `fixtures/scenarios/`.
pub fn scenarios_dir() -> PathBuf {
    workspace_dir().join("fixtures").join("scenarios")
}

/// The directory of the running executable when it was built in this
/// workspace: a profile directory (`debug`, `release`) of a cargo target
/// directory, the workspace's sources still in place. `None` for an
/// installed or copied executable, which cannot build the workspace's
/// binaries. Test executables count as their profile's (`deps/` is left).
pub fn workspace_profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?.to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    // Cargo keeps its fingerprints in every profile directory it builds.
    let in_target = dir.join(".fingerprint").is_dir();
    let sources = workspace_dir().join("Cargo.toml").is_file();
    (in_target && sources).then_some(dir)
}

/// Why this workspace's binaries could not be found or built.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The running executable is not in a target directory of this
    /// workspace (it was installed or copied elsewhere).
    #[error(
        "this executable is not in a target directory of its workspace ({}), so it cannot build the workspace's binaries",
        workspace_dir().display()
    )]
    OutsideWorkspace,
    /// cargo could not be run.
    #[error("cannot run cargo: {0}")]
    Cargo(std::io::Error),
    /// cargo ran but the binaries are still missing.
    #[error("building {} failed ({status}); build them with `cargo build`", .binaries.join(" and "))]
    Build {
        /// The binaries that were to be built.
        binaries: Vec<String>,
        /// How cargo exited.
        status: std::process::ExitStatus,
    },
}

/// The environment variable that makes [`workspace_binaries`] build every
/// wanted binary, not only the missing ones.
pub const REBUILD_VAR: &str = "CONFORMANCE_REBUILD";

/// Binaries of this workspace in the target directory of the running
/// executable (same profile, see [`workspace_profile_dir`]), as
/// `(package, binary)` pairs; the missing ones are built with one cargo
/// call.
///
/// A binary that exists is used as it is, even when its sources changed
/// since. With [`REBUILD_VAR`] set (to anything), every wanted binary goes
/// through cargo (a no-op when it is up to date), so a test of another
/// package always judges the current source.
pub fn workspace_binaries(wanted: &[(&str, &str)]) -> Result<Vec<String>, WorkspaceError> {
    let dir = workspace_profile_dir().ok_or(WorkspaceError::OutsideWorkspace)?;
    let rebuild = std::env::var_os(REBUILD_VAR).is_some();
    let missing: Vec<&(&str, &str)> = wanted
        .iter()
        .filter(|(_, bin)| rebuild || !dir.join(bin).exists())
        .collect();
    if !missing.is_empty() {
        let mut cargo =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--quiet"]);
        for (package, bin) in &missing {
            cargo.args(["-p", package, "--bin", bin]);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        if let Some(target) = dir.parent() {
            cargo.env("CARGO_TARGET_DIR", target);
        }
        let status = cargo
            .current_dir(workspace_dir())
            .status()
            .map_err(WorkspaceError::Cargo)?;
        if !status.success() || missing.iter().any(|(_, bin)| !dir.join(bin).exists()) {
            return Err(WorkspaceError::Build {
                binaries: missing.iter().map(|(_, bin)| (*bin).to_owned()).collect(),
                status,
            });
        }
    }
    Ok(wanted
        .iter()
        .map(|(_, bin)| dir.join(bin).display().to_string())
        .collect())
}

/// Whether `name` matches a glob of `*` (any run) and `?` (any one character).
pub fn glob_match(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match (g.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&g[1..], n) || (!n.is_empty() && go(g, &n[1..])),
            (Some(b'?'), Some(_)) => go(&g[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&g[1..], &n[1..]),
            _ => false,
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn globs() {
        assert!(super::glob_match("skills-*", "skills-create"));
        assert!(super::glob_match("*", "x"));
        assert!(super::glob_match("a?c", "abc"));
        assert!(!super::glob_match("skills-*", "spawn-ok"));
        assert!(!super::glob_match("a?c", "ac"));
    }
}
