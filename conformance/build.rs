//! Builds the scenario files into the crate, so that an installed
//! `runner-conformance` carries them: writes `$OUT_DIR/scenarios.rs`, a
//! table of `(file name, include_str!(file))` for every
//! `fixtures/scenarios/*.toml`, sorted by name. Cargo runs this again when a
//! file is added to or removed from the directory; `include_str!` tracks
//! each file's content.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("..").join("fixtures").join("scenarios");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the scenarios in {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut table = String::from("&[\n");
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{} is not a UTF-8 name", path.display()));
        let absolute = path
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let absolute = absolute
            .to_str()
            .unwrap_or_else(|| panic!("{} is not a UTF-8 path", absolute.display()));
        writeln!(table, "    ({name:?}, include_str!({absolute:?})),")
            .expect("writing to a String");
    }
    table.push_str("]\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    write(&out.join("scenarios.rs"), &table);
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
