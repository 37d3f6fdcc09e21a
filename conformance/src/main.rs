//! `runner-conformance`: runs the `/runner` conformance scenarios against a
//! runner command and prints a pass/fail table.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use conformance::driver::{self, DriverConfig, Outcome};
use conformance::level::Level;
use conformance::report;
use conformance::scenario::Scenario;

/// Runs the /runner protocol conformance scenarios against a runner.
///
/// Each scenario starts its own mock relay on a loopback port, launches the
/// runner command with a fresh HOME, workspace roots and state file, drives
/// it through the scenario's steps and checks every reply. Any runner
/// implementation can be tested: it only has to read the PIZZAPI_*
/// environment variables of the protocol reference.
///
/// Every scenario has a level, and the report counts each level apart:
///   contract        the protocol reference's rules (sections 1-9)
///   extension       the reference's "This project" rules and Extensions
///   hardening       what every runner executing network commands must do
///   pizzapi-runner  this workspace's runner's own choices
/// The exit status is 0 when every selected scenario passed, 1 when one
/// failed, 64 for a usage or set-up error.
#[derive(Debug, Parser)]
#[command(name = "runner-conformance", version)]
struct Args {
    /// The runner to test, as a command line (split like a shell would).
    /// Default: this workspace's `pizzapi-runner`, built if needed.
    #[arg(long, value_name = "CMD")]
    runner_cmd: Option<String>,

    /// The worker the runner spawns for sessions, as a command line.
    /// Default: this workspace's `fixture-worker`, built if needed.
    #[arg(long, value_name = "CMD")]
    worker_cmd: Option<String>,

    /// Run only scenarios whose name matches this glob (`*` and `?`),
    /// e.g. `skills-*`. Default: all.
    #[arg(long, value_name = "GLOB")]
    scenario: Option<String>,

    /// Run only these levels, comma-separated, e.g. `contract,extension`.
    /// Default: every level against this workspace's runner; every level
    /// but pizzapi-runner with --runner-cmd.
    #[arg(long, value_name = "LEVELS", value_parser = Levels::parse)]
    level: Option<Levels>,

    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,

    /// Run the relay on this loopback port instead of an ephemeral one (for
    /// watching a run with other tools); implies --jobs 1.
    #[arg(long, value_name = "N")]
    port: Option<u16>,

    /// Write a report: `.md` for a markdown table, `.json` for data, `.xml`
    /// for JUnit XML (one test suite per level) that CI systems read.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// How many scenarios run at once. Default: the number of CPUs.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,

    /// Print the runner's log (its stderr) of every failed scenario.
    #[arg(long)]
    show_logs: bool,

    /// Where the scenario files are. Default: the workspace's
    /// `fixtures/scenarios`.
    #[arg(long, value_name = "DIR")]
    scenarios: Option<PathBuf>,
}

/// The `--level` list. A newtype, because clap reads an `Option<Vec<_>>`
/// field as a repeated option rather than one value parsed into a list.
#[derive(Debug, Clone)]
struct Levels(Vec<Level>);

impl Levels {
    fn parse(text: &str) -> Result<Levels, conformance::level::UnknownLevel> {
        Level::parse_list(text).map(Levels)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("runner-conformance: {err:#}");
            ExitCode::from(64)
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    let dir = args
        .scenarios
        .clone()
        .unwrap_or_else(conformance::scenarios_dir);
    let mut scenarios = Scenario::load_dir(&dir).map_err(anyhow::Error::msg)?;
    if let Some(glob) = &args.scenario {
        scenarios.retain(|(_, s)| conformance::glob_match(glob, &s.name));
        if scenarios.is_empty() {
            bail!("no scenario matches {glob:?} (see --list)");
        }
    }
    let levels = args
        .level
        .clone()
        .map(|l| l.0)
        .unwrap_or_else(|| Level::defaults(args.runner_cmd.is_some()));
    scenarios.retain(|(_, s)| levels.contains(&s.level));
    if scenarios.is_empty() {
        bail!("no selected scenario has one of the levels {levels:?} (see --list)");
    }
    if args.list {
        for (_, s) in &scenarios {
            println!("{:<40} {:<15} {}", s.name, s.level, s.description);
        }
        return Ok(true);
    }
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let jobs = match (args.port, args.jobs) {
        (Some(_), Some(n)) if n > 1 => {
            bail!("--port serves one scenario at a time; drop --jobs {n}")
        }
        (Some(_), _) => 1,
        (None, _) => jobs,
    };
    if args.runner_cmd.is_none() || args.worker_cmd.is_none() {
        eprintln!(
            "using this workspace's pizzapi-runner and fixture-worker (built now if missing; the first build takes a few minutes)"
        );
    }
    let mut wanted = Vec::new();
    if args.runner_cmd.is_none() {
        wanted.push(("pizzapi-runner", "pizzapi-runner"));
    }
    if args.worker_cmd.is_none() {
        wanted.push(("fixture-worker", "fixture-worker"));
    }
    let mut built = conformance::workspace_binaries(&wanted)
        .map_err(anyhow::Error::msg)?
        .into_iter();
    let runner_cmd = match &args.runner_cmd {
        Some(cmd) => split(cmd, "--runner-cmd")?,
        None => vec![built.next().expect("one path per wanted binary")],
    };
    let worker_cmd = match &args.worker_cmd {
        Some(cmd) => split(cmd, "--worker-cmd")?,
        None => vec![built.next().expect("one path per wanted binary")],
    };
    let config = DriverConfig {
        runner_cmd,
        worker_cmd,
        port: args.port,
    };
    let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
    eprintln!(
        "running {} scenarios ({}), {jobs} at a time, against {}",
        scenarios.len(),
        names.join(", "),
        shell_words::join(&config.runner_cmd)
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(run_all(
        scenarios.into_iter().map(|(_, s)| s).collect(),
        config,
        jobs,
    ));
    let table = report::table(&outcomes);
    let summary = report::summary(&outcomes);
    println!("{table}");
    println!("{summary}");
    if args.show_logs {
        for o in outcomes.iter().filter(|o| !o.passed()) {
            eprintln!("--- runner log of {} ---\n{}", o.name, o.runner_log);
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    println!("{} passed, {failed} failed", outcomes.len() - failed);
    if let Some(path) = &args.report {
        write_report(path, &outcomes, &format!("{table}\n{summary}"))?;
    }
    Ok(failed == 0)
}

fn split(cmd: &str, flag: &str) -> anyhow::Result<Vec<String>> {
    let words = shell_words::split(cmd).with_context(|| format!("{flag} {cmd:?}"))?;
    if words.is_empty() {
        bail!("{flag} is empty");
    }
    Ok(words)
}

async fn run_all(scenarios: Vec<Scenario>, config: DriverConfig, jobs: usize) -> Vec<Outcome> {
    let config = Arc::new(config);
    let gate = Arc::new(tokio::sync::Semaphore::new(jobs));
    let total = scenarios.len();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, scenario) in scenarios.into_iter().enumerate() {
        let config = config.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _slot = gate
                .acquire_owned()
                .await
                .expect("the gate is never closed");
            (index, driver::run(&scenario, &config).await)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = (0..total).map(|_| None).collect();
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, outcome)) => {
                done += 1;
                eprintln!(
                    "[{done:>3}/{total}] {} {} ({:.1}s)",
                    if outcome.passed() { "pass" } else { "FAIL" },
                    outcome.name,
                    outcome.elapsed.as_secs_f64()
                );
                let _ = std::io::stderr().flush();
                outcomes[index] = Some(outcome);
            }
            Err(err) => eprintln!("a scenario task failed: {err}"),
        }
    }
    outcomes.into_iter().flatten().collect()
}

fn write_report(path: &Path, outcomes: &[Outcome], table: &str) -> anyhow::Result<()> {
    let text = match path.extension().and_then(|e| e.to_str()) {
        Some("md") => table.to_owned(),
        Some("json") => serde_json::to_string_pretty(&report::json(outcomes))? + "\n",
        Some("xml") => conformance::junit::junit(outcomes)?,
        _ => bail!("--report {}: use a .md, .json or .xml file", path.display()),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_takes_one_comma_separated_list() {
        let args = Args::try_parse_from(["runner-conformance", "--level", "extension,contract"])
            .expect("--level parses");
        assert_eq!(
            args.level.map(|l| l.0),
            Some(vec![Level::Contract, Level::Extension])
        );
        assert!(Args::try_parse_from(["runner-conformance", "--level", "strict"]).is_err());
    }
}
