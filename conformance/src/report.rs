//! What a run of the suite reports: a markdown table grouped by level, a
//! per-level summary, and the same as JSON.

use std::fmt::Write as _;

use crate::driver::Outcome;
use crate::level::Level;

/// Passed, failed and total scenarios of one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// The level.
    pub level: Level,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
}

impl Tally {
    /// How many ran.
    pub fn total(&self) -> usize {
        self.passed + self.failed
    }
}

/// The tally of each level that ran, in level order.
pub fn tallies(outcomes: &[Outcome]) -> Vec<Tally> {
    Level::ALL
        .into_iter()
        .filter_map(|level| {
            let of_level: Vec<&Outcome> = outcomes.iter().filter(|o| o.level == level).collect();
            let passed = of_level.iter().filter(|o| o.passed()).count();
            (!of_level.is_empty()).then_some(Tally {
                level,
                passed,
                failed: of_level.len() - passed,
            })
        })
        .collect()
}

/// The per-level summary as a markdown table, with a total row.
pub fn summary(outcomes: &[Outcome]) -> String {
    let mut out =
        String::from("| level | passed | failed | total | a pass means |\n|---|---|---|---|---|\n");
    for t in tallies(outcomes) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            t.level,
            t.passed,
            t.failed,
            t.total(),
            t.level.promise()
        );
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(
        out,
        "| **all** | {} | {failed} | {} | |",
        outcomes.len() - failed,
        outcomes.len()
    );
    out
}

/// One row per scenario, grouped by level, with the first difference of
/// each failure and the end of its transcript.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| level | scenario | result | time | first difference |\n|---|---|---|---|---|\n",
    );
    for level in Level::ALL {
        for o in outcomes.iter().filter(|o| o.level == level) {
            let diff = match &o.failure {
                None => String::new(),
                Some(f) => {
                    let tail = o.transcript_tail(6);
                    let mut text = f.to_string();
                    if !tail.is_empty() {
                        text.push_str(" — transcript tail: ");
                        text.push_str(&tail.replace('\n', " ⏎ "));
                    }
                    text.replace('|', "\\|").replace('\n', " ")
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}s | {} |",
                o.level,
                o.name,
                if o.passed() { "pass" } else { "**FAIL**" },
                o.elapsed.as_secs_f64(),
                diff
            );
        }
    }
    out
}

/// The run as JSON: the per-level tallies and one object per scenario.
pub fn json(outcomes: &[Outcome]) -> serde_json::Value {
    let levels: Vec<serde_json::Value> = tallies(outcomes)
        .iter()
        .map(|t| {
            serde_json::json!({
                "level": t.level.as_str(),
                "passed": t.passed,
                "failed": t.failed,
                "total": t.total(),
            })
        })
        .collect();
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "level": o.level.as_str(),
                "passed": o.passed(),
                "elapsedMs": u64::try_from(o.elapsed.as_millis()).unwrap_or(u64::MAX),
                "failure": o.failure.as_ref().map(|f| f.to_string()),
                "transcriptTail": o.failure.as_ref().map(|_| o.transcript_tail(20)),
            })
        })
        .collect();
    serde_json::json!({ "levels": levels, "scenarios": scenarios })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::Failure;

    fn outcome(name: &str, level: Level, passed: bool) -> Outcome {
        Outcome {
            name: name.to_owned(),
            level,
            failure: (!passed).then(|| Failure {
                step: Some(0),
                message: "expected pong | within 5s".to_owned(),
            }),
            transcript: Vec::new(),
            normalized: String::new(),
            elapsed: Duration::from_millis(1500),
            runner_log: String::new(),
        }
    }

    #[test]
    fn tallies_and_tables_group_by_level() {
        let outcomes = vec![
            outcome("b", Level::Hardening, false),
            outcome("a", Level::Contract, true),
            outcome("c", Level::Contract, false),
        ];
        assert_eq!(
            tallies(&outcomes),
            vec![
                Tally {
                    level: Level::Contract,
                    passed: 1,
                    failed: 1
                },
                Tally {
                    level: Level::Hardening,
                    passed: 0,
                    failed: 1
                },
            ]
        );
        let table = table(&outcomes);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(rows[0].starts_with("| contract | a | pass |"), "{table}");
        assert!(
            rows[1].starts_with("| contract | c | **FAIL** |"),
            "{table}"
        );
        assert!(rows[2].starts_with("| hardening | b |"), "{table}");
        assert!(rows[1].contains("expected pong \\| within"), "{table}");
        let summary = summary(&outcomes);
        assert!(summary.contains("| contract | 1 | 1 | 2 |"), "{summary}");
        assert!(summary.contains("| **all** | 1 | 2 | 3 |"), "{summary}");
        assert!(!summary.contains("| extension |"), "{summary}");
        let json = json(&outcomes);
        assert_eq!(json["levels"][1]["level"], "hardening");
        assert_eq!(json["scenarios"][0]["level"], "hardening");
        assert_eq!(json["scenarios"][2]["passed"], false);
    }
}
