//! The figures B1–B8. Each returns its table rows; a peer is always
//! measured in the same run, alternating with ours.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::load::{Behaviour, Clients};
use crate::peers::{Programs, Relay, RelayKind, Runner, RunnerKind, cpu_time, rss};
use crate::report::Row;
use crate::stats::{Summary, bytes, median, nanos, ns, rate};

/// How long a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Seconds in all: every figure produced, none of them precise.
    Quick,
    /// The sizes the targets are stated for.
    Full,
    /// Full, and B7 for the whole 20 minutes.
    Soak,
}

impl Mode {
    fn pick<T>(self, quick: T, full: T) -> T {
        if self == Mode::Quick { quick } else { full }
    }
}

const REGISTER: Duration = Duration::from_secs(30);

fn summary(samples: &[u64]) -> anyhow::Result<Summary> {
    Summary::of(samples).context("no samples")
}

fn ratio(ours: f64, peer: f64) -> Option<f64> {
    (peer > 0.0).then(|| ours / peer)
}

/// Starts our runner or Node's against a relay and returns it with the id
/// it registered under.
async fn attach(
    kind: RunnerKind,
    relay: &mut Relay,
    name: &str,
    programs: &Programs,
) -> anyhow::Result<(Runner, String)> {
    let before = relay.runners().await?;
    let runner = Runner::start(kind, &relay.url(), name, programs)?;
    let deadline = Instant::now() + REGISTER;
    loop {
        let now = relay.runners().await?;
        if let Some(id) = now.iter().find(|id| !before.contains(id)) {
            return Ok((runner, id.clone()));
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} did not register with {} within {REGISTER:?}; its log:\n{}",
                kind.label(),
                relay.kind.label(),
                runner.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// B1: `ping`→`pong`, sequential, three pairs alternating in rounds.
pub async fn b1(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let (total, round) = mode.pick((600, 200), (10_000, 1_000));
    let mut ours = Relay::start(RelayKind::Ours, 0, programs).await?;
    let mut node = Relay::start(RelayKind::Node, 0, programs).await?;
    let (r1, id1) = attach(RunnerKind::Ours, &mut ours, "b1-ours", programs).await?;
    let (r2, id2) = attach(RunnerKind::Node, &mut ours, "b1-node", programs).await?;
    let (r3, id3) = attach(RunnerKind::Ours, &mut node, "b1-ours", programs).await?;
    // The floor: a bare client that answers from its read loop, so what is
    // left of a runner's round trip above it is the runner's own share.
    let bare = Clients::connect(ours.port, 1, 1, Behaviour::Answer, "b1-bare", REGISTER).await?;
    let id4 = "b1-bare-0";
    let timeout = Duration::from_secs(120);
    let ping = |id: &str, count: usize| json!({"cmd": "ping", "runnerId": id, "count": count, "timeoutMs": 5000});
    // Warm-up (JIT, allocator, connection buffers), not counted.
    ours.samples(ping(&id1, round / 2), timeout).await?;
    ours.samples(ping(&id2, round / 2), timeout).await?;
    node.samples(ping(&id3, round / 2), timeout).await?;
    ours.samples(ping(id4, round / 2), timeout).await?;
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..total / round {
        a.extend(ours.samples(ping(&id1, round), timeout).await?);
        b.extend(ours.samples(ping(&id2, round), timeout).await?);
        c.extend(node.samples(ping(&id3, round), timeout).await?);
        d.extend(ours.samples(ping(id4, round), timeout).await?);
    }
    for r in [r1, r2, r3] {
        r.stop().await;
    }
    bare.close().await?;
    ours.stop().await;
    node.stop().await;

    let (sa, sb, sc, sd) = (summary(&a)?, summary(&b)?, summary(&c)?, summary(&d)?);
    let setup = format!("{total} sequential per pair, pairs alternating in rounds of {round}");
    let mut row = Row::new(
        "B1",
        "`ping`→`pong` round trip: our relay × our runner",
        &setup,
    );
    row.result = sa.text();
    row.peer = format!("our relay × Node runner: {}", sb.text());
    row.ratio = ratio(sa.p50_ns as f64, sb.p50_ns as f64);
    row.target = "p50 ≤ 150 µs; ≤ 0.5× Node runner".into();
    row.met = Some(sa.p50_ns <= 150_000 && row.ratio.is_some_and(|r| r <= 0.5));
    row.data = json!({
        "ourRelayOurRunner": sa,
        "ourRelayNodeRunner": sb,
        "nodeRelayOurRunner": sc,
        "ourRelayBareClient": sd,
    });
    let mut row2 = Row::new(
        "B1",
        "`ping`→`pong` round trip: Node relay × our runner",
        &setup,
    );
    row2.result = sc.text();
    row2.peer = format!("our relay × our runner: {}", sa.text());
    row2.ratio = ratio(sc.p50_ns as f64, sa.p50_ns as f64);
    row2.data = json!({"nodeRelayOurRunner": sc});
    let mut row3 = Row::new(
        "B1",
        "`ping`→`pong` round trip: our relay × bare WebSocket client (the floor: relay and loopback)",
        &setup,
    );
    row3.result = sd.text();
    row3.peer = format!(
        "above it: our runner +{}, Node runner +{} (p50)",
        ns(sa.p50_ns.saturating_sub(sd.p50_ns)),
        ns(sb.p50_ns.saturating_sub(sd.p50_ns))
    );
    row3.data = json!({"ourRelayBareClient": sd});
    Ok(vec![row, row2, row3])
}

/// One B2 window: `clients` streaming into a fresh relay; events/s the
/// relay recorded, on the relay's own clock.
async fn stream_window(
    kind: RelayKind,
    clients: usize,
    window: Duration,
    programs: &Programs,
) -> anyhow::Result<(f64, f64)> {
    let mut relay = Relay::start(kind, 0, programs).await?;
    let load = Clients::connect(relay.port, clients, 64, Behaviour::Stream, "b2", REGISTER).await?;
    let command = json!({
        "cmd": "window",
        "delayMs": u64::try_from(window.as_millis() / 5).unwrap_or(0),
        "windowMs": u64::try_from(window.as_millis()).unwrap_or(0),
    });
    let reply = relay.call_start(command).await?;
    load.start_streaming();
    // The relay's CPU over (about) the same window: how many cores it used.
    tokio::time::sleep(window / 5).await;
    let (c0, t0) = (cpu_time(relay.pid())?, Instant::now());
    tokio::time::sleep(window).await;
    let cores = (cpu_time(relay.pid())? - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let reply = relay
        .call_finish(reply, window * 3 + Duration::from_secs(30))
        .await?;
    // Neither side has anything left to say: a backlog of events is still
    // in the socket buffers, and draining it would only cost time.
    relay.kill().await?;
    load.abort();
    let (events, elapsed) = (
        reply["events"].as_u64().unwrap_or(0),
        reply["elapsedNs"].as_u64().unwrap_or(0),
    );
    anyhow::ensure!(
        events > 0 && elapsed > 0,
        "{}: no events recorded",
        kind.label()
    );
    Ok((events as f64 / (elapsed as f64 / 1e9), cores))
}

/// B2: `runner_session_event` streams from 1 and 100 clients.
pub async fn b2(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let (rounds, window) = mode.pick((1, Duration::from_millis(500)), (2, Duration::from_secs(5)));
    let mut rows = Vec::new();
    for clients in [1usize, 100] {
        let (mut ours, mut node) = (Vec::new(), Vec::new());
        let (mut ours_cores, mut node_cores) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (rate, cores) = stream_window(RelayKind::Ours, clients, window, programs).await?;
            ours.push(rate);
            ours_cores.push(cores);
            let (rate, cores) = stream_window(RelayKind::Node, clients, window, programs).await?;
            node.push(rate);
            node_cores.push(cores);
        }
        let (o, n) = (median(&ours), median(&node));
        let (oc, nc) = (median(&ours_cores), median(&node_cores));
        let mut row = Row::new(
            "B2",
            format!("`runner_session_event`s recorded by the relay, from {clients} runner(s)"),
            format!(
                "{rounds} × {:.1} s per relay, alternating; bare WebSocket clients in the harness sending as fast as the socket takes (they share the cores)",
                window.as_secs_f64()
            ),
        );
        let per_cpu = |rate: f64, cores: f64| if cores > 0.0 { rate / cores } else { 0.0 };
        row.result = format!(
            "our relay: {} on {oc:.2} cores ({} per CPU-second)",
            rate(o),
            rate(per_cpu(o, oc)).trim_end_matches("/s")
        );
        row.peer = format!(
            "Node relay: {} on {nc:.2} cores ({} per CPU-second)",
            rate(n),
            rate(per_cpu(n, nc)).trim_end_matches("/s")
        );
        row.ratio = ratio(o, n);
        row.target = "≥ 2× Node relay".into();
        row.met = row.ratio.map(|r| r >= 2.0);
        row.data = json!({
            "clients": clients,
            "ourRelayPerSecond": ours,
            "nodeRelayPerSecond": node,
            "ourRelayCores": ours_cores,
            "nodeRelayCores": node_cores,
        });
        rows.push(row);
    }
    Ok(rows)
}

/// One B3 pass against one relay.
async fn connections(kind: RelayKind, n: usize, programs: &Programs) -> anyhow::Result<Value> {
    let mut relay = Relay::start(kind, 0, programs).await?;
    // One runner first, so that what is lazily set up on the first
    // connection is not charged to the thousand.
    let warm = Clients::connect(relay.port, 1, 1, Behaviour::Answer, "b3-warm", REGISTER).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss(relay.pid())?;
    let load = Clients::connect(relay.port, n, 64, Behaviour::Answer, "b3", REGISTER).await?;
    let registered = load.all_registered;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(relay.pid())?;
    let reply = relay
        .call(
            json!({"cmd": "pingAll", "timeoutMs": 10_000}),
            Duration::from_secs(30),
        )
        .await?;
    let rtt: Vec<u64> = reply["rttNs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let missing = reply["missing"].as_u64().unwrap_or(0);
    load.close().await?;
    warm.close().await?;
    relay.stop().await;
    let per_connection = after.saturating_sub(before) / n as u64;
    Ok(json!({
        "registeredNs": nanos(registered),
        "rssBefore": before,
        "rssAfter": after,
        "rssPerConnection": per_connection,
        "pingAll": Summary::of(&rtt),
        "missing": missing,
    }))
}

/// B3: many concurrent runner connections.
pub async fn b3(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let n = mode.pick(100, 1_000);
    let ours = connections(RelayKind::Ours, n, programs).await?;
    let node = connections(RelayKind::Node, n, programs).await?;
    let describe = |v: &Value| {
        format!(
            "all registered in {}; {} per connection; `ping` to all: p99 {}{}",
            ns(v["registeredNs"].as_u64().unwrap_or(0)),
            bytes(v["rssPerConnection"].as_u64().unwrap_or(0)),
            ns(v["pingAll"]["p99Ns"].as_u64().unwrap_or(0)),
            match v["missing"].as_u64() {
                Some(0) | None => String::new(),
                Some(m) => format!(", {m} unanswered"),
            }
        )
    };
    let mut row = Row::new(
        "B3",
        format!("{n} concurrent runner connections"),
        "bare WebSocket clients, 64 handshakes in flight; RSS of the relay process after − before",
    );
    row.result = format!("our relay: {}", describe(&ours));
    row.peer = format!("Node relay: {}", describe(&node));
    let per = |v: &Value| v["rssPerConnection"].as_u64().unwrap_or(0) as f64;
    row.ratio = ratio(per(&ours), per(&node));
    row.target = "all registered ≤ 3 s; ≤ 30 KiB/connection".into();
    row.met = Some(
        ours["registeredNs"].as_u64().unwrap_or(u64::MAX) <= 3_000_000_000
            && ours["rssPerConnection"].as_u64().unwrap_or(u64::MAX) <= 30 * 1024
            && ours["missing"] == json!(0),
    );
    row.note = Some("ratio: memory per connection".into());
    row.data = json!({"connections": n, "ourRelay": ours, "nodeRelay": node});
    Ok(vec![row])
}

/// B4: idle runners, side by side on one relay.
pub async fn b4(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let idle = mode.pick(Duration::from_secs(3), Duration::from_secs(60));
    let mut relay = Relay::start(RelayKind::Ours, 0, programs).await?;
    let (ours, _) = attach(RunnerKind::Ours, &mut relay, "b4-ours", programs).await?;
    let (node, _) = attach(RunnerKind::Node, &mut relay, "b4-node", programs).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0o, c0n) = (cpu_time(ours.pid())?, cpu_time(node.pid())?);
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let (c1o, c1n) = (cpu_time(ours.pid())?, cpu_time(node.pid())?);
    let elapsed = t0.elapsed().as_secs_f64();
    let (rss_o, rss_n) = (rss(ours.pid())?, rss(node.pid())?);
    ours.stop().await;
    node.stop().await;
    relay.stop().await;
    let pct = |a: Duration, b: Duration| (b - a).as_secs_f64() / elapsed * 100.0;
    let (cpu_o, cpu_n) = (pct(c0o, c1o), pct(c0n, c1n));
    let mut row = Row::new(
        "B4",
        "idle runner: RSS and CPU",
        format!(
            "{:.0} s registered and idle, default heartbeat (10 s), both at once",
            idle.as_secs_f64()
        ),
    );
    row.result = format!("our runner: RSS {}, CPU {cpu_o:.3} %", bytes(rss_o));
    row.peer = format!("Node runner: RSS {}, CPU {cpu_n:.3} %", bytes(rss_n));
    row.ratio = ratio(rss_o as f64, rss_n as f64);
    row.target = "RSS ≤ 8 MiB; CPU ≤ 0.1 %".into();
    row.met = Some(rss_o <= 8 * 1024 * 1024 && cpu_o <= 0.1);
    row.note = Some("ratio: RSS".into());
    row.data = json!({
        "seconds": elapsed,
        "ourRunner": {"rss": rss_o, "cpuPercent": cpu_o},
        "nodeRunner": {"rss": rss_n, "cpuPercent": cpu_n},
    });
    Ok(vec![row])
}

/// Kills a relay, starts the same kind on the same port, and times until
/// the runner is registered again.
async fn restart_once(
    relay: Relay,
    runner_id: &str,
    programs: &Programs,
) -> anyhow::Result<(Relay, u64)> {
    let (kind, port) = (relay.kind, relay.port);
    let t0 = Instant::now();
    relay.kill().await?;
    let mut relay = Relay::start(kind, port, programs).await?;
    relay
        .call(
            json!({"cmd": "waitRunner", "runnerId": runner_id, "timeoutMs": 60_000}),
            Duration::from_secs(70),
        )
        .await?;
    Ok((relay, nanos(t0.elapsed())))
}

/// B5: relay restarts; our runner on both relays, alternating.
pub async fn b5(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let restarts = mode.pick(2, 20);
    let mut ours = Relay::start(RelayKind::Ours, 0, programs).await?;
    let mut node = Relay::start(RelayKind::Node, 0, programs).await?;
    let (r1, id1) = attach(RunnerKind::Ours, &mut ours, "b5", programs).await?;
    let (r2, id2) = attach(RunnerKind::Ours, &mut node, "b5", programs).await?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..restarts {
        let (relay, t) = restart_once(ours, &id1, programs).await?;
        ours = relay;
        a.push(t);
        let (relay, t) = restart_once(node, &id2, programs).await?;
        node = relay;
        b.push(t);
    }
    r1.stop().await;
    r2.stop().await;
    ours.stop().await;
    node.stop().await;
    let (sa, sb) = (summary(&a)?, summary(&b)?);
    let mut row = Row::new(
        "B5",
        "relay killed and restarted on its port → our runner registered again",
        format!("{restarts} restarts per relay, alternating; the client library's default delays"),
    );
    row.result = format!("on our relay: {}", sa.text());
    row.peer = format!("on Node relay: {}", sb.text());
    row.ratio = ratio(sa.p50_ns as f64, sb.p50_ns as f64);
    row.target = "p50 ≤ 1.5 s".into();
    row.met = Some(sa.p50_ns <= 1_500_000_000 && sb.p50_ns <= 1_500_000_000);
    row.data = json!({"onOurRelay": sa, "onNodeRelay": sb, "samplesOurRelayNs": a, "samplesNodeRelayNs": b});
    Ok(vec![row])
}

/// B6: `new_session` → `session_ready` with the fixture worker.
pub async fn b6(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let count = mode.pick(20, 200);
    let mut relay = Relay::start(RelayKind::Ours, 0, programs).await?;
    let (runner, id) = attach(RunnerKind::Ours, &mut relay, "b6", programs).await?;
    let spawn =
        |count: usize| json!({"cmd": "spawn", "runnerId": id, "count": count, "timeoutMs": 10_000});
    relay.samples(spawn(5), Duration::from_secs(60)).await?;
    let samples = relay
        .samples(spawn(count), Duration::from_secs(300))
        .await?;
    runner.stop().await;
    relay.stop().await;
    let s = summary(&samples)?;
    let mut row = Row::new(
        "B6",
        "`new_session` → `session_ready`, our runner on our relay",
        format!("{count} sequential, fixture worker; each session killed before the next"),
    );
    row.result = s.text();
    row.target = "p50 ≤ 5 ms".into();
    row.met = Some(s.p50_ns <= 5_000_000);
    row.data = json!({"summary": s});
    Ok(vec![row])
}

/// B7: CPU our runner uses while its relay is down.
pub async fn b7(mode: Mode, programs: &Programs) -> anyhow::Result<Vec<Row>> {
    let down = match mode {
        Mode::Quick => Duration::from_secs(3),
        Mode::Full => Duration::from_secs(60),
        Mode::Soak => Duration::from_secs(20 * 60),
    };
    let mut relay = Relay::start(RelayKind::Ours, 0, programs).await?;
    let (runner, _) = attach(RunnerKind::Ours, &mut relay, "b7", programs).await?;
    relay.kill().await?;
    let c0 = cpu_time(runner.pid())?;
    let t0 = Instant::now();
    tokio::time::sleep(down).await;
    let used = cpu_time(runner.pid())? - c0;
    let elapsed = t0.elapsed();
    let alive = rss(runner.pid()).is_ok();
    runner.stop().await;
    anyhow::ensure!(alive, "the runner exited while its relay was down");
    let per_20_min = used.as_secs_f64() * 1200.0 / elapsed.as_secs_f64();
    let mut row = Row::new(
        "B7",
        "relay down: CPU our runner uses",
        format!("{:.0} s down", elapsed.as_secs_f64()),
    );
    row.result = if mode == Mode::Soak {
        format!("{:.2} s CPU in 20 min", used.as_secs_f64())
    } else {
        format!(
            "{:.3} s CPU in {:.0} s (≈ {per_20_min:.2} s per 20 min)",
            used.as_secs_f64(),
            elapsed.as_secs_f64()
        )
    };
    row.target = "≤ 2 s CPU in 20 min".into();
    if mode == Mode::Soak {
        row.met = Some(used.as_secs_f64() <= 2.0);
    } else {
        row.note = Some(format!(
            "on pace: {} (20 min needs --soak)",
            if per_20_min <= 2.0 { "yes" } else { "no" }
        ));
    }
    row.data = json!({"seconds": elapsed.as_secs_f64(), "cpuSeconds": used.as_secs_f64(), "per20MinSeconds": per_20_min});
    Ok(vec![row])
}

/// Nanoseconds per call of `f` over `inputs` (each consumed once), the
/// best of a few repetitions.
fn per_op<T>(make: impl Fn() -> Vec<T>, mut f: impl FnMut(T), reps: usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..reps {
        let inputs = make();
        let n = inputs.len() as f64;
        let t0 = Instant::now();
        for input in inputs {
            f(input);
        }
        best = best.min(t0.elapsed().as_nanos() as f64 / n);
    }
    best
}

/// B8: `ServerEvent::decode` and `payload()` per event kind, on the
/// fixture payloads (`cargo bench -p runner-protocol` has the criterion
/// version with confidence intervals).
pub fn b8(mode: Mode, fixtures: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    use runner_protocol::ServerEvent;
    let (batch, reps) = mode.pick((200, 3), (5_000, 7));
    let mut kinds = serde_json::Map::new();
    let (mut decode_all, mut payload_all) = (Vec::new(), Vec::new());
    for name in ServerEvent::NAMES {
        let path = fixtures.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        let value: Value =
            serde_json::from_str(&text).with_context(|| path.display().to_string())?;
        let event = ServerEvent::decode(name, value.clone())
            .with_context(|| format!("fixture {}", path.display()))?;
        let decode = per_op(
            || vec![value.clone(); batch],
            |v| {
                std::hint::black_box(ServerEvent::decode(name, v).is_ok());
            },
            reps,
        );
        let payload = per_op(
            || vec![(); batch],
            |()| {
                std::hint::black_box(event.payload());
            },
            reps,
        );
        decode_all.push(decode);
        payload_all.push(payload);
        kinds.insert(
            (*name).to_owned(),
            json!({"decodeNs": decode, "payloadNs": payload}),
        );
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("median {:.0} ns (range {lo:.0}–{hi:.0})", median(v))
    };
    let mut row = Row::new(
        "B8",
        format!(
            "`ServerEvent::decode` / `payload()`, {} event kinds",
            ServerEvent::NAMES.len()
        ),
        format!("fixture payloads, best of {reps} batches of {batch}; per kind in the JSON"),
    );
    row.result = format!(
        "decode: {}; payload(): {}",
        range(&decode_all),
        range(&payload_all)
    );
    row.data = Value::Object(kinds);
    Ok(vec![row])
}
