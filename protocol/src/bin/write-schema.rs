//! Writes the JSON Schema of every `/runner` payload to a directory
//! (default: the workspace's `fixtures/schema/`), removing stale files.
//!
//! Usage: `cargo run -p runner-protocol --bin write-schema [DIR]`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/schema"));
    match write(&dir) {
        Ok(count) => {
            println!(
                "wrote {count} schemas to {}",
                dir.canonicalize().unwrap_or(dir.clone()).display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("write-schema: {}: {err}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let schemas = runner_protocol::schema::all_schemas();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let stale = path.extension().is_some_and(|e| e == "json")
            && !schemas
                .iter()
                .any(|(stem, _)| path.file_stem().is_some_and(|s| s == stem.as_str()));
        if stale {
            std::fs::remove_file(&path)?;
        }
    }
    for (stem, schema) in &schemas {
        std::fs::write(
            dir.join(format!("{stem}.json")),
            runner_protocol::schema::render(schema),
        )?;
    }
    Ok(schemas.len())
}
