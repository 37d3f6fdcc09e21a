//! `bench`: measures the relay and the runner against the reference
//! JavaScript stack and prints one markdown table (and writes it as JSON).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bench::figures::{self, Mode};
use bench::peers::{Programs, ensure_node_modules};
use bench::report::{Machine, Report, utc_now};
use clap::{Parser, Subcommand};

/// Benchmarks the mock relay and the runner, side by side with socket.io /
/// socket.io-client 4.8 on Node, on this machine, in one run.
///
/// Figures (each peer measured in the same run, alternating with ours):
///
///   B1  ping→pong round trip (relay × runner pairs)
///   B2  runner_session_event streams into the relay, events/s
///   B3  1,000 concurrent runner connections: registration time, relay memory
///   B4  idle runner: RSS and CPU
///   B5  relay restart → runner registered again
///   B6  new_session → session_ready with the fixture worker
///   B7  CPU the runner uses while its relay is down
///   B8  ServerEvent::decode / payload() per event kind
///
/// Everything runs on 127.0.0.1. Node.js is needed; the JavaScript peers'
/// packages (bench/js, pinned by its package-lock.json) are installed with
/// `npm ci` when missing. The runner and fixture worker are built in this
/// binary's profile when it runs under cargo.
#[derive(Debug, Parser)]
#[command(name = "bench", version, verbatim_doc_comment)]
struct Args {
    /// A few seconds in all: every figure produced, none precise (CI's smoke
    /// test).
    #[arg(long, conflicts_with = "soak")]
    quick: bool,

    /// Full run, with B7 over the whole 20 minutes (about 27 minutes in all).
    #[arg(long)]
    soak: bool,

    /// Only these figures, e.g. `B1,B6`.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,

    /// Where to write the JSON. Default: target/bench/latest.json in the
    /// workspace.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Also write the markdown table to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,

    /// Do not build the runner and fixture worker, use what is built (they
    /// are still built when missing).
    #[arg(long)]
    no_build: bool,

    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run the mock relay as a process controlled over stdin/stdout, the
    /// peer of bench/js/relay.js (used by the harness itself).
    Relay {
        /// Loopback port (0: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The API key runners must present.
        #[arg(long, default_value = bench::peers::API_KEY)]
        api_key: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.command {
        Some(Sub::Relay { port, api_key }) => {
            runtime.block_on(bench::relay_host::run(port, api_key))
        }
        None => runtime.block_on(run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds (when running under cargo) and finds the runner and worker.
fn programs(no_build: bool) -> anyhow::Result<Programs> {
    let workspace = conformance::workspace_dir();
    let bench = std::env::current_exe().context("cannot find this executable")?;
    let wanted = [
        ("pizzapi-runner", "pizzapi-runner"),
        ("fixture-worker", "fixture-worker"),
    ];
    if !no_build && std::env::var_os("CARGO").is_some() {
        let release = bench.parent().is_some_and(|d| d.ends_with("release"));
        let mut cargo = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_default());
        cargo
            .args(["build", "--quiet", "--locked"])
            .current_dir(&workspace);
        for (package, bin) in wanted {
            cargo.args(["-p", package, "--bin", bin]);
        }
        if release {
            cargo.arg("--release");
        }
        if let Some(target) = bench.parent().and_then(|d| d.parent()) {
            cargo.env("CARGO_TARGET_DIR", target);
        }
        let status = cargo.status().context("cannot run cargo")?;
        anyhow::ensure!(
            status.success(),
            "building the runner and fixture worker failed: {status}"
        );
    }
    let found = conformance::workspace_binaries(&wanted).map_err(anyhow::Error::msg)?;
    let js_dir = workspace.join("bench").join("js");
    ensure_node_modules(&js_dir)?;
    Ok(Programs {
        bench,
        runner: PathBuf::from(&found[0]),
        worker: PathBuf::from(&found[1]),
        js_dir,
    })
}

async fn run(args: &Args) -> anyhow::Result<()> {
    raise_fd_limit();
    let mode = if args.quick {
        Mode::Quick
    } else if args.soak {
        Mode::Soak
    } else {
        Mode::Full
    };
    let wanted =
        |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    let known = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"];
    if let Some(bad) = args
        .only
        .iter()
        .find(|o| !known.iter().any(|k| k.eq_ignore_ascii_case(o)))
    {
        anyhow::bail!(
            "--only: unknown figure {bad:?} (known: {})",
            known.join(", ")
        );
    }
    let programs = programs(args.no_build)?;
    let workspace = conformance::workspace_dir();
    let mut report = Report {
        date: utc_now(),
        mode: format!("{mode:?}").to_lowercase(),
        machine: Machine::detect(&workspace, &programs.js_dir),
        rows: Vec::new(),
    };
    let started = Instant::now();
    for id in known.into_iter().filter(|id| wanted(id)) {
        eprintln!("[{:>5.1}s] {id} …", started.elapsed().as_secs_f64());
        let rows = match id {
            "B1" => figures::b1(mode, &programs).await,
            "B2" => figures::b2(mode, &programs).await,
            "B3" => figures::b3(mode, &programs).await,
            "B4" => figures::b4(mode, &programs).await,
            "B5" => figures::b5(mode, &programs).await,
            "B6" => figures::b6(mode, &programs).await,
            "B7" => figures::b7(mode, &programs).await,
            _ => figures::b8(mode, &workspace.join("fixtures").join("payloads")),
        }
        .with_context(|| format!("{id} failed"))?;
        for row in &rows {
            eprintln!("         {}: {}", row.what, row.result);
        }
        report.rows.extend(rows);
    }
    eprintln!("[{:>5.1}s] done", started.elapsed().as_secs_f64());
    let markdown = report.markdown();
    println!("{markdown}");
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| workspace.join("target").join("bench").join("latest.json"));
    if let Some(dir) = json_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| json_path.display().to_string())?;
    eprintln!("JSON written to {}", json_path.display());
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// A thousand connections on each side need more descriptors than some
/// default soft limits allow; the children inherit the raised limit.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65_536);
        if soft < want
            && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard)
        {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}
