//! Terminals of the real `pizzapi-runner` binary through the mock relay:
//! a command's output, 10 MiB of output complete and in order in few
//! events, and no process left behind after a kill or the runner's SIGTERM.

mod runner_support;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mock_relay::{MockRelay, RecordDirection, RelayHandle, TerminalOutput};
use nix::sys::signal::Signal;
use runner_protocol::{KillTerminal, NewTerminal, RunnerEvent, ServerEvent, TerminalInput};
use runner_support::{RunnerProcess, WAIT, command};

const KEY: &str = "e2e-key";
/// How long spawned shell processes may take to disappear.
const GONE_WITHIN: Duration = Duration::from_secs(5);

async fn relay() -> RelayHandle {
    MockRelay::builder()
        .api_key(KEY)
        .start()
        .await
        .expect("starting the mock relay")
}

fn runner(relay: &RelayHandle, home: &Path) -> RunnerProcess {
    let mut cmd = command(home);
    cmd.env("PIZZAPI_RELAY_URL", relay.url())
        .env("PIZZAPI_API_KEY", KEY);
    RunnerProcess::spawn(cmd, &home.join("runner.log"))
}

/// Opens a `/bin/sh` terminal and returns its id.
async fn open(relay: &RelayHandle, runner_id: &str, proc: &RunnerProcess) -> String {
    let terminal_id = format!("t-{}", relay.mark());
    let event = ServerEvent::NewTerminal(NewTerminal {
        terminal_id: terminal_id.clone(),
        cwd: None,
        shell: Some("/bin/sh".into()),
        cols: Some(200),
        rows: Some(50),
    });
    match relay.request(runner_id, event, WAIT).await {
        Ok(RunnerEvent::TerminalReady(_)) => terminal_id,
        other => panic!("opening a terminal: {other:?}\nlog:\n{}", proc.log_text()),
    }
}

async fn type_line(relay: &RelayHandle, runner_id: &str, terminal_id: &str, line: &str) {
    let event = ServerEvent::TerminalInput(TerminalInput {
        terminal_id: terminal_id.to_owned(),
        data: BASE64.encode(format!("{line}\n")),
    });
    relay.send(runner_id, event).await.expect("sending input");
}

/// Waits until the terminal's output satisfies `done`, re-checking whenever
/// the relay records more output.
async fn wait_output(
    relay: &RelayHandle,
    runner_id: &str,
    terminal_id: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> TerminalOutput {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mark = relay.mark();
        let output = relay
            .terminal_output(runner_id, terminal_id)
            .expect("a known runner")
            .expect("a known terminal");
        if done(&output.output) {
            return output;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let more = relay
            .expect(
                mark,
                |r| {
                    r.direction == RecordDirection::In
                        && (r.event == "terminal_data" || r.event == "terminal_exit")
                },
                left,
            )
            .await;
        if more.is_err() {
            let tail: String = output.output.chars().rev().take(2000).collect();
            let tail: String = tail.chars().rev().collect();
            panic!(
                "timed out waiting for terminal output; {} bytes, ending with {tail:?}",
                output.bytes
            );
        }
    }
}

/// The number after `label` in `text` (e.g. `pid=123`), skipping the
/// echoed command line where no digits follow.
fn number_after(text: &str, label: &str) -> Option<u32> {
    text.match_indices(label).find_map(|(at, _)| {
        let rest = &text[at + label.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Starts a shell with a background `sleep` and returns both pids.
async fn shell_with_child(relay: &RelayHandle, runner_id: &str, terminal_id: &str) -> [u32; 2] {
    type_line(
        relay,
        runner_id,
        terminal_id,
        "echo pid=$$; sleep 600 & echo bg=$!",
    )
    .await;
    let output = wait_output(relay, runner_id, terminal_id, WAIT, |o| {
        number_after(o, "pid=").is_some() && number_after(o, "bg=").is_some()
    })
    .await;
    let pids = [
        number_after(&output.output, "pid=").expect("the shell's pid"),
        number_after(&output.output, "bg=").expect("the background job's pid"),
    ];
    for pid in pids {
        assert!(runner_support::is_alive(pid), "{pid} is not running");
    }
    pids
}

/// Waits (bounded) until none of `pids` is alive; zombies count as gone.
async fn assert_gone(pids: [u32; 2], after: &str) {
    let deadline = tokio::time::Instant::now() + GONE_WITHIN;
    while pids.iter().any(|pid| runner_support::is_alive(*pid)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes {pids:?} outlived {after}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_prints_its_result() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path());
    let runner_id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    let tid = open(&relay, &runner_id, &proc).await;
    type_line(&relay, &runner_id, &tid, "echo $((6*7))").await;
    let output = wait_output(&relay, &runner_id, &tid, WAIT, |o| o.contains("42")).await;
    assert_eq!(output.dropped_bytes, 0);
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_of_output_arrive_complete_in_order_and_in_few_events() {
    const LAST: u32 = 1_300_000;
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path());
    let runner_id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;
    let tid = open(&relay, &runner_id, &proc).await;
    let mark = relay.mark();
    type_line(
        &relay,
        &runner_id,
        &tid,
        &format!("stty -echo; echo; seq 1 {LAST}; echo END-$((1+1))"),
    )
    .await;
    let output = wait_output(&relay, &runner_id, &tid, WAIT * 2, |o| o.contains("END-2")).await;
    assert_eq!(output.dropped_bytes, 0);
    assert!(output.bytes > 10_000_000, "{} bytes", output.bytes);

    let numbers: Vec<u32> = output
        .output
        .split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
        .map(|line| line.parse().expect("a number"))
        .collect();
    assert_eq!(numbers.len(), LAST as usize, "every line arrived");
    assert!(
        numbers.iter().copied().eq(1..=LAST),
        "the lines arrived in order"
    );
    let end = output.output.find("END-2").expect("END-2");
    let last = output
        .output
        .rfind(&format!("\n{LAST}\r"))
        .expect("the last line");
    assert!(last < end, "END-2 came after the numbers");

    let events = relay
        .transcript_since(mark, Some(&runner_id))
        .iter()
        .filter(|r| r.direction == RecordDirection::In && r.event == "terminal_data")
        .count() as u64;
    assert!(
        events < output.bytes / 8192,
        "{events} terminal_data events for {} bytes",
        output.bytes
    );
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_shell_outlives_a_kill_or_the_runner() {
    let relay = relay().await;
    let home = tempfile::tempdir().unwrap();
    let mut proc = runner(&relay, home.path());
    let runner_id = relay
        .wait_for_runner(WAIT)
        .await
        .expect("registration")
        .runner_id;

    let killed = open(&relay, &runner_id, &proc).await;
    let pids = shell_with_child(&relay, &runner_id, &killed).await;
    let kill = ServerEvent::KillTerminal(KillTerminal {
        terminal_id: killed.clone(),
    });
    match relay.request(&runner_id, kill, WAIT).await {
        Ok(RunnerEvent::TerminalExit(exit)) => assert_eq!(exit.exit_code, -1),
        other => panic!("killing the terminal: {other:?}\nlog:\n{}", proc.log_text()),
    }
    assert_gone(pids, "kill_terminal").await;
    let output = relay
        .terminal_output(&runner_id, &killed)
        .expect("a known runner")
        .expect("a known terminal");
    assert_eq!(output.exit_code, Some(-1));

    let open_at_exit = open(&relay, &runner_id, &proc).await;
    let pids = shell_with_child(&relay, &runner_id, &open_at_exit).await;
    proc.signal(Signal::SIGTERM);
    assert_eq!(proc.wait().await, 0, "log:\n{}", proc.log_text());
    assert_gone(pids, "the runner's SIGTERM").await;
}
