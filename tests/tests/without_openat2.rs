//! On a kernel without `openat2(2)` (Linux before 5.6) the runner refuses
//! every path inside the roots with a message saying why, instead of
//! opening it the racy way. The kernel here has `openat2`; the runner runs
//! under a seccomp filter that makes it fail with `ENOSYS`
//! (`tests/py/without-openat2.py`).

mod runner_support;

use mock_relay::MockRelay;
use nix::sys::signal::Signal;
use runner_protocol::ServerEvent;
use runner_support::{RunnerProcess, WAIT, command_through, runner_binary};
use serde_json::{Value, json};
use tokio::process::Command;

const KEY: &str = "no-openat2-key";
const UNSUPPORTED: &str = "This kernel lacks openat2 (Linux 5.6 or later is needed); \
                           paths inside the workspace roots cannot be opened safely, so none are";

fn event(name: &str, payload: Value) -> ServerEvent {
    ServerEvent::decode(name, payload).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_openat2_paths_are_refused_not_opened_the_racy_way() {
    let relay = MockRelay::builder().api_key(KEY).start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::write(root_path.join("a.txt"), "inside").unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/without-openat2.py");
    let mut wrapper = Command::new("python3");
    wrapper.arg(script).arg(runner_binary());
    let mut cmd = command_through(wrapper, home.path());
    cmd.env("PIZZAPI_RELAY_URL", relay.url())
        .env("PIZZAPI_API_KEY", KEY)
        .env("PIZZAPI_WORKSPACE_ROOTS", &root_path)
        .env("PIZZAPI_WORKER_CMD", "/bin/true");
    let mut proc = RunnerProcess::spawn(cmd, &home.path().join("runner.log"));
    let info = relay
        .wait_for_runner(WAIT)
        .await
        .unwrap_or_else(|e| panic!("registration: {e}\nlog:\n{}", proc.log_text()));
    let root_text = root_path.display().to_string();
    let file = root_path.join("a.txt").display().to_string();

    let commands = [
        event(
            "read_file",
            json!({"cwd": root_text, "path": file, "requestId": "r1"}),
        ),
        event(
            "list_files",
            json!({"cwd": root_text, "path": root_text, "requestId": "l1"}),
        ),
        event("git_status", json!({"cwd": root_text, "requestId": "g1"})),
        event("new_session", json!({"sessionId": "s1", "cwd": root_text})),
        event(
            "new_terminal",
            json!({"terminalId": "t1", "cwd": root_text}),
        ),
    ];
    for command in commands {
        let name = command.name();
        let reply = relay
            .request(&info.runner_id, command, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\nlog:\n{}", proc.log_text()));
        let payload = reply.payload();
        // Spawns and terminals name the cwd first.
        assert!(
            payload["message"]
                .as_str()
                .is_some_and(|m| m.ends_with(UNSUPPORTED)),
            "{name} got {} {payload}",
            reply.name()
        );
        assert_ne!(payload["ok"], json!(true), "{name}: {payload}");
    }

    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
    relay.shutdown().await;
}
