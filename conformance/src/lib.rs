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
//! * [`scenario`] — the scenario model and its TOML form, with errors that
//!   point at the file, line and field;
//! * [`template`] — placeholders (`{root}`, captured ids), JSON subset
//!   matching and captures;
//! * [`normalize`] — transcript → text: numbered id placeholders, secrets,
//!   clocks and sandbox paths replaced, canonical order for bursts;
//! * [`report`] — the table of a run, grouped by level, and its per-level
//!   summary; [`junit`] — the same run as JUnit XML for CI systems;
//! * [`driver`] — runs one scenario against a runner process through an
//!   embedded mock relay.

#![warn(missing_docs)]

pub mod driver;
pub mod junit;
pub mod level;
pub mod normalize;
pub mod report;
pub mod scenario;
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

/// The environment variable that makes [`workspace_binaries`] build every
/// wanted binary, not only the missing ones.
pub const REBUILD_VAR: &str = "CONFORMANCE_REBUILD";

/// Binaries of this workspace in the target directory of the running
/// executable (same profile), as `(package, binary)` pairs; the missing ones
/// are built with one cargo call. Test executables live one level deeper
/// (`target/debug/deps/`).
///
/// A binary that exists is used as it is, even when its sources changed
/// since. With [`REBUILD_VAR`] set (to anything), every wanted binary goes
/// through cargo (a no-op when it is up to date), so a test of another
/// package always judges the current source.
pub fn workspace_binaries(wanted: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("this executable has no directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
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
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        let names: Vec<&str> = missing.iter().map(|(_, bin)| *bin).collect();
        if !status.success() || missing.iter().any(|(_, bin)| !dir.join(bin).exists()) {
            return Err(format!(
                "building {} failed ({status}); build them with `cargo build`",
                names.join(" and ")
            ));
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
