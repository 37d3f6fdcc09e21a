//! Check-then-use races: while a thread swaps a directory inside the root
//! for a symlink to an outside canary directory (an atomic exchange, in a
//! loop), `read_file` and `list_files` through that directory must never
//! return the canary. Bounded in tries and in time.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pizzapi_runner::files::FileService;
use runner_protocol::{FileResultBody, ListFiles, ReadFile};
use rustix::fs::{CWD, RenameFlags, renameat_with};

/// Tries per operation; enough for the old check-then-open code to leak
/// many times over (it leaked in 386 of 4000 operations).
const TRIES: usize = 2000;
/// The whole test stops here even if the tries are not done.
const TIME_LIMIT: Duration = Duration::from_secs(60);

struct Race {
    _tmp: tempfile::TempDir,
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
        let base = fs::canonicalize(tmp.path()).unwrap();
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
            _tmp: tmp,
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
