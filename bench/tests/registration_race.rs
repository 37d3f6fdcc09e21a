//! socketioxide sends a namespace's `CONNECT` packet before it marks the
//! socket connected, and refuses to emit on a socket not yet marked. A
//! client that registers the moment it sees `CONNECT` can therefore have
//! its `register_runner` handled (on another worker thread) while the
//! socket is still unmarked, and the relay's `runner_registered` would be
//! lost. The mock relay waits for the mark; here, many bare clients
//! register as fast as they can and every one must be answered.

use std::time::Duration;

use bench::load::{Behaviour, Clients};
use bench::peers::{Programs, Relay, RelayKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fast_registration_is_answered() {
    let programs = Programs {
        bench: env!("CARGO_BIN_EXE_bench").into(),
        runner: "unused".into(),
        worker: "unused".into(),
        js_dir: "unused".into(),
    };
    let relay = Relay::start(RelayKind::Ours, 0, &programs).await.unwrap();
    // Busy threads make the relay's threads lose the CPU at arbitrary
    // points, as on a loaded machine, which is when the window opens.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && std::time::Instant::now() < deadline
                {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for round in 0..4 {
        let clients = Clients::connect(
            relay.port,
            500,
            128,
            Behaviour::Answer,
            &format!("race-{round}"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        clients.abort();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    relay.stop().await;
}
