//! B8: `ServerEvent::decode` and `ServerEvent::payload()` per event kind,
//! on the fixture payloads (`fixtures/payloads/<event>.json`).
//!
//! `cargo bench -p runner-protocol` (add `-- decode/new_session` to pick one).

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use runner_protocol::ServerEvent;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/payloads")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn events(c: &mut Criterion) {
    let mut decode = c.benchmark_group("decode");
    for name in ServerEvent::NAMES {
        let value = fixture(name);
        decode.bench_function(*name, |b| {
            b.iter_batched(
                || value.clone(),
                |v| ServerEvent::decode(black_box(name), v),
                BatchSize::SmallInput,
            );
        });
    }
    decode.finish();

    let mut payload = c.benchmark_group("payload");
    for name in ServerEvent::NAMES {
        let event = ServerEvent::decode(name, fixture(name))
            .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
        payload.bench_function(*name, |b| b.iter(|| black_box(&event).payload()));
    }
    payload.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
