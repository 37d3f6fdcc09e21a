//! Check-then-use races: while a thread swaps a directory inside the root
//! for a symlink to an outside canary directory (an atomic exchange, in a
//! loop), `read_file` and `list_files` through that directory must never
//! return the canary, and no worker or shell started there may run in it
//! (the `pizzapi-runner` binary against a mock relay). Bounded in tries and
//! in time.

mod fixture;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pizzapi_runner::files::FileService;
use runner_protocol::{FileResultBody, ListFiles, ReadFile, ServerEvent};
use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Tries per operation; enough for the old check-then-open code to leak
/// many times over (it leaked in 386 of 4000 operations).
const TRIES: usize = 2000;
/// The whole test stops here even if the tries are not done.
const TIME_LIMIT: Duration = Duration::from_secs(60);

struct Race {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    swapper: Option<std::thread::JoinHandle<()>>,
}

impl Race {
    /// `root/dir/f.txt` says `inside`; `canary/f.txt` says `CANARY` and
    /// `canary/only-outside.txt` exists. A thread keeps exchanging
    /// `root/dir` with `root/swap`, a symlink to `canary`.
    fn start() -> Race {
        let tmp = tempfile::tempdir().unwrap();
        let mut race = Race::start_in(&fs::canonicalize(tmp.path()).unwrap());
        race._tmp = Some(tmp);
        race
    }

    /// The same in `base` (its `root` may exist already).
    fn start_in(base: &Path) -> Race {
        let root = base.join("root");
        fs::create_dir_all(root.join("dir")).unwrap();
        fs::write(root.join("dir/f.txt"), "inside").unwrap();
        let canary = base.join("canary");
        fs::create_dir_all(&canary).unwrap();
        fs::write(canary.join("f.txt"), "CANARY").unwrap();
        fs::write(canary.join("only-outside.txt"), "CANARY").unwrap();
        symlink(&canary, root.join("swap")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let swapper = {
            let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
            let (a, b) = (root.join("dir"), root.join("swap"));
            let deadline = Instant::now() + TIME_LIMIT;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE).unwrap();
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        Race {
            _tmp: None,
            root,
            stop,
            swaps,
            swapper: Some(swapper),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.swapper.take().unwrap().join().unwrap();
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn cwd(root: &Path) -> String {
    root.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_directory_for_a_symlink_never_leaks_the_canary() {
    let race = Race::start();
    let service = FileService::new(vec![race.root.clone()]);
    let deadline = Instant::now() + TIME_LIMIT;
    let (mut reads, mut lists, mut inside) = (0, 0, 0);
    let mut leaks = Vec::new();
    for i in 0..TRIES {
        if Instant::now() >= deadline {
            break;
        }
        let read = service
            .read_file(ReadFile {
                request_id: Some(format!("r{i}")),
                cwd: cwd(&race.root),
                path: "dir/f.txt".into(),
                encoding: None,
                max_bytes: None,
            })
            .await;
        reads += 1;
        if let FileResultBody::Read(content) = &read.body {
            if content.content.contains("CANARY") {
                leaks.push(format!("read_file returned the canary (try {i})"));
            } else {
                inside += 1;
            }
        }
        let list = service
            .list_files(ListFiles {
                request_id: Some(format!("l{i}")),
                cwd: cwd(&race.root),
                path: "dir".into(),
            })
            .await;
        lists += 1;
        if let FileResultBody::List(listing) = &list.body
            && listing.files.iter().any(|f| f.name == "only-outside.txt")
        {
            leaks.push(format!("list_files listed the canary (try {i})"));
        }
    }
    let swaps = race.finish();
    eprintln!(
        "{reads} reads ({inside} of the inside file), {lists} listings, {swaps} swaps, {} leaks",
        leaks.len()
    );
    assert!(swaps > 0, "the swapper never ran");
    assert!(reads >= 100, "too few tries in the time limit: {reads}");
    // The race is real: some reads do land on the directory.
    assert!(inside > 0, "no read ever found the inside file");
    assert!(
        leaks.is_empty(),
        "{} leaks: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );
}

/// The canary directory of a race started in `base`.
fn canary_of(root: &Path) -> String {
    root.parent().unwrap().join("canary").display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_session_cwd_never_starts_a_worker_in_the_canary() {
    let relay = fixture::relay().await;
    // The worker prints its physical working directory as one JSON line
    // (forwarded as runner_session_event) and exits.
    let worker = shell_words::join(["/bin/sh", "-c", r#"printf '{"cwd":"%s"}\n' "$(pwd -P)""#]);
    let runner = fixture::RunnerProcess::start(
        &relay.url(),
        &[
            ("PIZZAPI_WORKER_CMD", worker),
            ("PIZZAPI_MAX_SESSIONS", "1000".to_owned()),
        ],
    );
    let runner_id = fixture::registered(&relay, &runner).await;
    let race = Race::start_in(runner.root.parent().unwrap());
    let canary = canary_of(&race.root);
    let deadline = Instant::now() + TIME_LIMIT;
    let (mut spawns, mut started, mut leaks) = (0, 0, Vec::new());
    for i in 0..TRIES / 10 {
        if Instant::now() >= deadline {
            break;
        }
        let session_id = format!("s{i}");
        let mark = relay.mark();
        let command = ServerEvent::decode(
            "new_session",
            serde_json::json!({"sessionId": session_id, "cwd": race.root.join("dir")}),
        )
        .unwrap();
        let reply = relay
            .request(&runner_id, command, fixture::WAIT)
            .await
            .unwrap_or_else(|e| panic!("new_session: {e}\nlog:\n{}", runner.log_text()));
        spawns += 1;
        if reply.name() != "session_ready" {
            continue;
        }
        started += 1;
        let id = session_id.clone();
        let event = relay
            .expect(
                mark,
                move |r| {
                    r.event == "runner_session_event"
                        && r.payload["sessionId"] == serde_json::json!(id)
                },
                fixture::WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("the worker's cwd: {e}\nlog:\n{}", runner.log_text()));
        let cwd = event.payload["event"]["cwd"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if cwd.starts_with(&canary) {
            leaks.push(format!("{session_id} ran in {cwd}"));
        }
    }
    let swaps = race.finish();
    eprintln!(
        "{spawns} spawns ({started} started), {swaps} swaps, {} leaks",
        leaks.len()
    );
    assert!(swaps > 0, "the swapper never ran");
    assert!(started > 0, "no spawn ever found the directory");
    assert!(
        leaks.is_empty(),
        "{} leaks: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_a_terminal_cwd_never_starts_a_shell_in_the_canary() {
    use base64::Engine as _;
    let relay = fixture::relay().await;
    let runner = fixture::RunnerProcess::start(
        &relay.url(),
        &[("PIZZAPI_MAX_TERMINALS", "1000".to_owned())],
    );
    let runner_id = fixture::registered(&relay, &runner).await;
    let race = Race::start_in(runner.root.parent().unwrap());
    let canary = canary_of(&race.root);
    let b64 = base64::engine::general_purpose::STANDARD;
    let deadline = Instant::now() + TIME_LIMIT;
    let (mut opens, mut started, mut leaks) = (0, 0, Vec::new());
    for i in 0..TRIES / 20 {
        if Instant::now() >= deadline {
            break;
        }
        let terminal_id = format!("t{i}");
        let mark = relay.mark();
        let command = ServerEvent::decode(
            "new_terminal",
            serde_json::json!({"terminalId": terminal_id, "cwd": race.root.join("dir"), "shell": "/bin/sh"}),
        )
        .unwrap();
        let reply = relay
            .request(&runner_id, command, fixture::WAIT)
            .await
            .unwrap_or_else(|e| panic!("new_terminal: {e}\nlog:\n{}", runner.log_text()));
        opens += 1;
        if reply.name() != "terminal_ready" {
            continue;
        }
        started += 1;
        relay
            .send_raw(
                &runner_id,
                "terminal_input",
                serde_json::json!({"terminalId": terminal_id, "data": b64.encode("pwd -P; exit\n")}),
            )
            .await
            .unwrap();
        let id = terminal_id.clone();
        relay
            .expect(
                mark,
                move |r| {
                    r.event == "terminal_exit" && r.payload["terminalId"] == serde_json::json!(id)
                },
                fixture::WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("the shell's exit: {e}\nlog:\n{}", runner.log_text()));
        let output: Vec<u8> = relay
            .transcript_since(mark, Some(&runner_id))
            .iter()
            .filter(|r| {
                r.event == "terminal_data"
                    && r.payload["terminalId"] == serde_json::json!(terminal_id)
            })
            .filter_map(|r| r.payload["data"].as_str().and_then(|d| b64.decode(d).ok()))
            .flatten()
            .collect();
        if String::from_utf8_lossy(&output).contains(&canary) {
            leaks.push(format!("{terminal_id} ran in the canary"));
        }
    }
    let swaps = race.finish();
    eprintln!(
        "{opens} terminals ({started} started), {swaps} swaps, {} leaks",
        leaks.len()
    );
    assert!(swaps > 0, "the swapper never ran");
    assert!(started > 0, "no terminal ever found the directory");
    assert!(
        leaks.is_empty(),
        "{} leaks: {:?}",
        leaks.len(),
        &leaks[..leaks.len().min(5)]
    );
}
