//! The `pizzapi-runner` binary as a process against the mock relay:
//! registration, commands under load, reconnection, the lock, restart,
//! signals, refusals and exit codes.

mod runner_support;

use std::path::Path;
use std::time::Duration;

use mock_relay::{MockRelay, RecordDirection, RelayHandle};
use nix::sys::signal::Signal;
use runner_protocol::{Ping, Restart, ServerEvent};
use runner_support::{RunnerProcess, WAIT, command};
use serde_json::{Value, json};

const KEY: &str = "e2e-key";

async fn relay() -> RelayHandle {
    MockRelay::builder()
        .api_key(KEY)
        .start()
        .await
        .expect("starting the mock relay")
}

/// A runner for `relay` in `home`, configured through the environment.
fn runner(relay: &RelayHandle, home: &Path, key: &str) -> RunnerProcess {
    let mut cmd = command(home);
    cmd.env("PIZZAPI_RELAY_URL", relay.url())
        .env("PIZZAPI_API_KEY", key)
        .env("PIZZAPI_HEARTBEAT_INTERVAL_MS", "300");
    RunnerProcess::spawn(cmd, &home.join("runner.log"))
}

fn state(home: &Path) -> Value {
    let text = std::fs::read_to_string(home.join(".pizzapi/runner.json")).expect("state file");
    serde_json::from_str(&text).expect("state file is JSON")
}

fn count_in(relay: &RelayHandle, since: u64, runner_id: &str, event: &str) -> usize {
    relay
        .transcript_since(since, Some(runner_id))
        .iter()
        .filter(|r| r.direction == RecordDirection::In && r.event == event)
        .count()
}

async fn expect_in(relay: &RelayHandle, since: u64, event: &'static str) -> mock_relay::Record {
    relay
        .expect(
            since,
            move |r| r.direction == RecordDirection::In && r.event == event,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("waiting for {event}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_once_beats_and_answers_two_hundred_concurrent_pings() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path(), KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    assert_eq!(json!(info.runner_id), state(home.path())["runnerId"]);
    assert_eq!(state(home.path())["pid"], json!(proc.pid()));

    // Two waves of 100 requests in flight at once: the mock relay's
    // per-socket send buffer (socketioxide's default, 128 packets) is the
    // limit of one burst, not the runner.
    let mark = relay.mark();
    for _wave in 0..2 {
        let pings =
            (0..100).map(|_| relay.request(&info.runner_id, ServerEvent::Ping(Ping {}), WAIT));
        for reply in futures_util::future::join_all(pings).await {
            let reply = reply.unwrap_or_else(|e| panic!("ping: {e}\nlog:\n{}", proc.log_text()));
            assert_eq!(reply.name(), "pong");
        }
    }
    let hb = expect_in(&relay, mark, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(count_in(&relay, mark, &info.runner_id, "pong"), 200);
    assert_eq!(count_in(&relay, 0, &info.runner_id, "register_runner"), 1);

    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
    let state = state(home.path());
    assert!(
        state.get("pid").is_none() && state.get("startedAt").is_none(),
        "{state}"
    );
    assert_eq!(json!(info.runner_id), state["runnerId"]);
    let log = proc.log_text();
    assert!(
        log.contains("register_runner sent") && log.contains("runner stopped"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_kick_and_after_a_relay_restart() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path(), KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let mark = relay.mark();
    relay.kick(&id, None).await.expect("kick");
    let again = expect_in(&relay, mark, "register_runner").await;
    expect_in(&relay, again.seq, "runner_heartbeat").await;
    assert_eq!(count_in(&relay, mark, &id, "register_runner"), 1);
    // A kick is a server-side disconnect (the namespace DISCONNECT), and the
    // runner came back by rebuilding its client, not through the library's
    // reconnection after a lost transport.
    let log = proc.log_text();
    assert!(
        log.contains("the relay closed the connection")
            && !log.contains("lost the connection to the relay"),
        "log:\n{log}"
    );

    let mark = relay.mark();
    relay
        .restart(Duration::from_secs(2), false)
        .await
        .expect("relay restart");
    let again = expect_in(&relay, mark, "register_runner").await;
    let hb = expect_in(&relay, again.seq, "runner_heartbeat").await;
    expect_in(&relay, hb.seq + 1, "runner_heartbeat").await;
    assert_eq!(count_in(&relay, mark, &id, "register_runner"), 1);

    proc.signal(Signal::SIGINT);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_exits_42() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path(), KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    relay
        .send(&id, ServerEvent::Restart(Restart {}))
        .await
        .unwrap();
    assert_eq!(proc.wait().await, 42, "log:\n{}", proc.log_text());
    assert!(state(home.path()).get("pid").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_exits_75_naming_the_holder() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut first = runner(&relay, home.path(), KEY);
    relay.wait_for_runner(WAIT).await.expect("registration");

    let second_log = home.path().join("second.log");
    let mut cmd = command(home.path());
    cmd.env("PIZZAPI_RELAY_URL", relay.url())
        .env("PIZZAPI_API_KEY", KEY);
    let mut second = RunnerProcess::spawn(cmd, &second_log);
    assert_eq!(second.wait().await, 75);
    let log = second.log_text();
    let path = home.path().join(".pizzapi/runner.json");
    assert!(log.contains(&format!("pid {}", first.pid())), "{log}");
    assert!(log.contains(&path.display().to_string()), "{log}");
    // The holder is untouched.
    assert_eq!(state(home.path())["pid"], json!(first.pid()));

    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lock_is_taken_over() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    // A pid that is certainly not a runner: this test process.
    std::fs::create_dir_all(home.path().join(".pizzapi")).unwrap();
    std::fs::write(
        home.path().join(".pizzapi/runner.json"),
        json!({"pid": std::process::id(), "startedAt": 1, "runnerId": "kept-id", "runnerSecret": "ab".repeat(32)})
            .to_string(),
    )
    .unwrap();
    let mut proc = runner(&relay, home.path(), KEY);
    let info = relay.wait_for_runner(WAIT).await.expect("registration");
    assert_eq!(info.runner_id, "kept-id");
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_exits_77_without_retrying() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path(), "not-the-key");
    // Well below the 45 s after which a refused client would retry.
    assert_eq!(proc.wait().await, 77, "log:\n{}", proc.log_text());
    let log = proc.log_text();
    assert!(log.contains("unauthorized"), "{log}");
    let refusals = relay
        .transcript()
        .iter()
        .filter(|r| r.event == "handshake_refused")
        .count();
    assert_eq!(refusals, 1);
    assert!(state(home.path()).get("pid").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_mismatch_exits_77_with_the_relays_message() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut first = runner(&relay, home.path(), KEY);
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join(".pizzapi")).unwrap();
    std::fs::write(
        other.path().join(".pizzapi/runner.json"),
        json!({"runnerId": id, "runnerSecret": "00".repeat(32)}).to_string(),
    )
    .unwrap();
    let mut impostor = runner(&relay, other.path(), KEY);
    assert_eq!(impostor.wait().await, 77, "log:\n{}", impostor.log_text());
    let log = impostor.log_text();
    assert!(
        log.contains(&format!("secret mismatch for runner {id}")),
        "{log}"
    );

    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_exit_64_saying_what_to_fix() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no-such-dir");
    // (environment, arguments, what the message must mention)
    type Case<'a> = (Vec<(&'a str, String)>, Vec<String>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec![], vec![], "PIZZAPI_API_KEY"),
        (
            vec![("PIZZAPI_API_KEY", "k".into())],
            vec!["--workspace-root".into(), missing.display().to_string()],
            "no-such-dir",
        ),
        (
            vec![
                ("PIZZAPI_API_KEY", "k".into()),
                ("PIZZAPI_RELAY_URL", "ftp://relay".into()),
            ],
            vec![],
            "PIZZAPI_RELAY_URL",
        ),
        (
            vec![
                ("PIZZAPI_API_KEY", "k".into()),
                ("PIZZAPI_HEARTBEAT_INTERVAL_MS", "often".into()),
            ],
            vec![],
            "heartbeat-interval-ms",
        ),
        (
            vec![("PIZZAPI_API_KEY", "k".into())],
            vec!["--no-such-flag".into()],
            "--no-such-flag",
        ),
    ];
    for (i, (env, args, expected)) in cases.into_iter().enumerate() {
        let mut cmd = command(home.path());
        cmd.envs(env).args(&args);
        let mut proc = RunnerProcess::spawn(cmd, &home.path().join(format!("bad-{i}.log")));
        assert_eq!(proc.wait().await, 64, "case {i}: {}", proc.log_text());
        let log = proc.log_text();
        assert!(log.contains(expected), "case {i}: {log}");
    }
    assert!(
        !home.path().join(".pizzapi/runner.json").exists(),
        "no state file for a refused configuration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_win_over_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let root_env = tempfile::tempdir().unwrap();
    let root_flag = tempfile::tempdir().unwrap();
    let print = |args: &[&str], name: &str| {
        let mut cmd = command(home.path());
        cmd.env("PIZZAPI_API_KEY", "env-key")
            .env("PIZZAPI_RUNNER_NAME", "env-name")
            .env("PIZZAPI_WORKSPACE_ROOTS", root_env.path())
            .env("PIZZAPI_HEARTBEAT_INTERVAL_MS", "1234")
            .arg("--print-config")
            .args(args);
        RunnerProcess::spawn(cmd, &home.path().join(format!("{name}.log")))
    };
    let mut from_env = print(&[], "env");
    assert_eq!(from_env.wait().await, 0);
    let text = from_env.log_text();
    assert!(text.contains("\"name\": \"env-name\""), "{text}");
    assert!(text.contains("\"heartbeat-interval-ms\": 1234"), "{text}");
    assert!(
        text.contains(
            &root_env
                .path()
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ),
        "{text}"
    );
    assert!(
        !text.contains("env-key"),
        "the key is never printed: {text}"
    );

    let root = root_flag.path().display().to_string();
    let mut from_flags = print(
        &[
            "--name",
            "flag-name",
            "--workspace-root",
            &root,
            "--heartbeat-interval-ms",
            "4321",
        ],
        "flags",
    );
    assert_eq!(from_flags.wait().await, 0);
    let text = from_flags.log_text();
    assert!(text.contains("\"name\": \"flag-name\""), "{text}");
    assert!(text.contains("\"heartbeat-interval-ms\": 4321"), "{text}");
    assert!(
        text.contains(
            &root_flag
                .path()
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ) && !text.contains(
            &root_env
                .path()
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        ),
        "{text}"
    );

    let mut help = command(home.path());
    help.arg("--help");
    let mut help = RunnerProcess::spawn(help, &home.path().join("help.log"));
    assert_eq!(help.wait().await, 0);
    let text = help.log_text();
    for needle in [
        "PIZZAPI_API_KEY",
        "PIZZAPI_WORKSPACE_ROOTS",
        "Exit codes",
        "--state-path",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_worker_and_its_group() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let records = home.path().join("records");
    std::fs::create_dir(&records).unwrap();
    let mut cmd = command(home.path());
    cmd.env("PIZZAPI_RELAY_URL", relay.url())
        .env("PIZZAPI_API_KEY", KEY)
        .env("PIZZAPI_WORKER_CMD", runner_support::worker_binary())
        .env("PIZZAPI_KILL_GRACE_MS", "300")
        // A worker that ignores SIGTERM and has a child of its own.
        .env("FIXTURE_IGNORE_SIGTERM", "1")
        .env("FIXTURE_GRANDCHILD", "1")
        .env("FIXTURE_RECORD_DIR", &records)
        .env("FIXTURE_EVENTS", r#"[{"type": "recorded"}]"#);
    let mut proc = RunnerProcess::spawn(cmd, &home.path().join("runner.log"));
    let id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let mut pids = Vec::new();
    for session in ["s1", "s2"] {
        let reply = relay
            .request(
                &id,
                ServerEvent::NewSession(runner_protocol::NewSession {
                    session_id: session.into(),
                    cwd: None,
                    prompt: None,
                    model: None,
                    skills: None,
                }),
                WAIT,
            )
            .await
            .expect("session_ready");
        assert_eq!(reply.name(), "session_ready", "{reply:?}");
    }
    // A worker writes its record before it prints its events.
    for session in ["s1", "s2"] {
        relay
            .expect(
                0,
                |r| {
                    r.direction == RecordDirection::In
                        && r.event == "runner_session_event"
                        && r.payload["sessionId"] == session
                },
                WAIT,
            )
            .await
            .expect("the worker's event");
        let path = records.join(format!("{session}.json"));
        let record: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("worker record"))
                .expect("worker record is JSON");
        pids.push(record["pid"].as_u64().unwrap() as u32);
        pids.push(record["grandchildPid"].as_u64().unwrap() as u32);
    }
    assert!(pids.iter().all(|pid| runner_support::is_alive(*pid)));

    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
    for pid in pids {
        assert!(
            !runner_support::is_alive(pid),
            "process {pid} outlived the runner"
        );
    }
    assert!(state(home.path()).get("pid").is_none());
}
