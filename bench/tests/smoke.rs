//! The quick run produces every figure, B1–B8, with numbers in it. Only
//! that: how fast anything is belongs to the full run, never to a test.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0)
}

#[test]
fn quick_run_produces_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let markdown = dir.path().join("bench.md");
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--quick", "--no-build", "--json"])
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .output()
        .expect("cannot run bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench --quick failed:\n{stderr}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["mode"], "quick");
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let rows = report["rows"].as_array().unwrap();
    let ids: BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8"],
        "{stderr}"
    );
    for row in rows {
        assert!(!row["result"].as_str().unwrap().is_empty(), "{row}");
        assert!(!row["data"].is_null(), "{row}");
    }
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    let data = |id: &str| &row(id)["data"];

    // Measured pairs carry real samples, and the peers were measured too.
    for pair in [
        "ourRelayOurRunner",
        "ourRelayNodeRunner",
        "nodeRelayOurRunner",
    ] {
        assert!(positive(&data("B1")[pair]["p50Ns"]), "B1 {pair}");
    }
    for r in rows.iter().filter(|r| r["id"] == "B2") {
        for side in ["ourRelayPerSecond", "nodeRelayPerSecond"] {
            assert!(
                r["data"][side].as_array().unwrap().iter().all(positive),
                "{r}"
            );
        }
    }
    for side in ["ourRelay", "nodeRelay"] {
        assert!(positive(&data("B3")[side]["registeredNs"]), "B3 {side}");
        assert_eq!(data("B3")[side]["missing"], 0, "B3 {side}");
    }
    for side in ["ourRunner", "nodeRunner"] {
        assert!(positive(&data("B4")[side]["rss"]), "B4 {side}");
    }
    assert!(positive(&data("B5")["onOurRelay"]["p50Ns"]));
    assert!(positive(&data("B5")["onNodeRelay"]["p50Ns"]));
    assert!(positive(&data("B6")["summary"]["p50Ns"]));
    assert!(positive(&data("B7")["seconds"]));
    assert_eq!(
        data("B8").as_object().unwrap().len(),
        runner_protocol::ServerEvent::NAMES.len()
    );

    // The table is what was printed and written.
    let table = std::fs::read_to_string(&markdown).unwrap();
    assert!(table.contains("| id | figure |"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| B")).count(),
        rows.len()
    );
}
