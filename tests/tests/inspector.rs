//! The mock relay's inspector page in a real browser: Debian's Chromium,
//! driven by the pinned playwright-core (`tests/js/inspector.js`), against
//! the `mock-relay` binary and a `pizzapi-runner` started the way a user
//! starts them. The page must show the runner, answer `list_skills`, spawn
//! and kill a session, run `echo $((6*7))` in a terminal, show a kick's
//! disconnect and the re-registration, and export a recording as a
//! scenario that then passes `runner-conformance` against the same runner.

mod runner_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use runner_support::{
    RunnerProcess, WAIT, command, conformance_binary, ensure_node_modules, js_dir,
    mock_relay_binary, runner_binary, worker_binary,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KEY: &str = "inspector-key";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser script (it bounds each of its waits by 20 s).
const BROWSER_WAIT: Duration = Duration::from_secs(300);
/// One conformance scenario run, build excluded.
const CONFORMANCE_WAIT: Duration = Duration::from_secs(120);

/// `target/`, where the screenshots go.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable under target/<profile>/deps")
        .to_path_buf()
}

/// The `mock-relay` binary, started on an ephemeral port.
struct Relay {
    _child: Child,
    url: String,
    log: PathBuf,
}

impl Relay {
    async fn start(dir: &Path) -> Relay {
        let log = dir.join("relay.log");
        let mut child = Command::new(mock_relay_binary())
            .args(["--port", "0", "--api-key", KEY, "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("relay log"))
            .kill_on_drop(true)
            .spawn()
            .expect("starting mock-relay");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let banner = tokio::time::timeout(WAIT, async {
            let mut banner = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let done = line.contains("PIZZAPI_RELAY_URL=");
                banner.push(line);
                if done {
                    break;
                }
            }
            banner
        })
        .await
        .expect("waiting for the relay's banner");
        let url = banner
            .iter()
            .find_map(|l| l.strip_prefix("mock-relay listening on "))
            .unwrap_or_else(|| panic!("no address in the banner: {banner:#?}"))
            .trim()
            .to_owned();
        let page = format!("inspector page      {url}/");
        assert!(
            banner.iter().any(|l| l.contains(&page)),
            "the banner does not show the inspector page's URL: {banner:#?}"
        );
        // Keep reading, so that a full pipe never stalls the relay.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Relay {
            _child: child,
            url,
            log,
        }
    }
}

fn start_runner(relay: &Relay, home: &Path, root: &Path) -> RunnerProcess {
    let mut cmd = command(home);
    cmd.env("PIZZAPI_RELAY_URL", &relay.url)
        .env("PIZZAPI_API_KEY", KEY)
        .env("PIZZAPI_WORKSPACE_ROOTS", root)
        .env("PIZZAPI_WORKER_CMD", worker_binary());
    RunnerProcess::spawn(cmd, &home.join("runner.log"))
}

/// The runner's secret, from its state file.
fn runner_secret(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join(".pizzapi/runner.json")).expect("state file");
    let state: Value = serde_json::from_str(&text).expect("state file is JSON");
    state["runnerSecret"]
        .as_str()
        .expect("runnerSecret in the state file")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_page_drives_a_runner_and_records_a_passing_scenario() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; .ci/run does)"
    );
    ensure_node_modules();
    // runner-conformance runs the runner and worker that sit beside it.
    let (runner_bin, _) = (runner_binary(), worker_binary());
    let conformance = conformance_binary();

    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    let relay = Relay::start(dir.path()).await;
    let runner = start_runner(&relay, &home, &root);

    let out = target_dir().join("inspector");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("target/inspector");
    let browser = Command::new("node")
        .arg(js_dir().join("inspector.js"))
        .arg(&relay.url)
        .arg(&out)
        .current_dir(js_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_WAIT, browser)
        .await
        .expect("the browser script did not finish")
        .expect("running node (Node.js is needed for this test)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no report from the browser script:\n{stdout}\n{stderr}"));
    assert_eq!(
        report["ok"],
        true,
        "the page failed: {}\n{stderr}\nrelay log:\n{}\nrunner log:\n{}",
        report["error"],
        std::fs::read_to_string(&relay.log).unwrap_or_default(),
        runner.log_text()
    );
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for wanted in [
        "runner appeared",
        "list_skills answered",
        "session spawned",
        "session killed",
        "recording exported",
        "terminal answered 42",
        "kick: disconnect and re-registration seen",
        "relay restarted with a countdown; the runner came back",
    ] {
        assert!(
            steps.contains(&wanted),
            "step {wanted:?} missing: {steps:?}"
        );
    }
    for step in report["steps"].as_array().unwrap() {
        if let Some(shot) = step["screenshot"].as_str() {
            let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
            assert!(size > 1000, "screenshot {shot} missing or empty");
        }
    }

    // The exported scenario: what was done, with the volatile parts left
    // out and no secret anywhere.
    let secret = runner_secret(&home);
    let scenario_path = PathBuf::from(report["scenario"].as_str().expect("scenario path"));
    let scenario = std::fs::read_to_string(&scenario_path).expect("exported scenario");
    for wanted in [
        "level = \"pizzapi-runner\"",
        "event = \"list_skills\"",
        "event = \"skills_list\"",
        "event = \"new_session\"",
        "event = \"session_ready\"",
        "event = \"kill_session\"",
        "event = \"session_killed\"",
        "cwd = \"{root}\"",
    ] {
        assert!(scenario.contains(wanted), "no {wanted} in:\n{scenario}");
    }
    assert!(
        !scenario.contains(&*root.to_string_lossy()),
        "a literal root path in:\n{scenario}"
    );
    assert!(
        !scenario.contains(&secret),
        "the runner's secret in the scenario"
    );
    let ndjson = std::fs::read_to_string(report["ndjson"].as_str().expect("ndjson path"))
        .expect("exported transcript");
    assert!(
        !ndjson.contains(&secret),
        "the runner's secret in the transcript"
    );
    let events: Vec<String> = ndjson
        .lines()
        .map(|l| {
            let record: Value = serde_json::from_str(l).expect("an NDJSON line is JSON");
            record["event"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(events.iter().any(|e| e == "list_skills"), "{events:?}");
    assert!(events.iter().any(|e| e == "session_killed"), "{events:?}");

    // The scenario passes against the runner it was recorded from.
    let conformance_run = Command::new(conformance)
        .arg("--scenarios")
        .arg(scenario_path.parent().expect("scenario dir"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let result = tokio::time::timeout(CONFORMANCE_WAIT, conformance_run)
        .await
        .expect("runner-conformance did not finish")
        .expect("running runner-conformance");
    let table = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success() && table.contains("1 passed, 0 failed"),
        "the recorded scenario does not pass against {}:\n{table}\n{}",
        runner_bin.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    drop(runner);
}
