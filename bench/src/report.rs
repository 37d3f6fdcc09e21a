//! The table: one row per measured pair, with its peer from the same run,
//! the target and whether it is met; the machine and versions it ran on.

use std::path::Path;
use std::process::Command;

use serde::Serialize;
use serde_json::Value;

/// One measured figure (a figure with several pairs has several rows).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// `B1` … `B8`.
    pub id: &'static str,
    /// What was measured, and on which pair.
    pub what: String,
    /// How: counts, durations, clients.
    pub setup: String,
    /// Ours, as printed.
    pub result: String,
    /// The peer measured in the same run, as printed (`—` when none).
    pub peer: String,
    /// Ours ÷ peer (lower is better for times and memory, higher for rates).
    pub ratio: Option<f64>,
    /// The goal, as the issue states it.
    pub target: String,
    /// Whether the goal is met (`None`: a figure only reported, or one this
    /// mode cannot judge).
    pub met: Option<bool>,
    /// What needs saying beside `met` (shown in that column).
    pub note: Option<String>,
    /// The raw numbers.
    pub data: Value,
}

impl Row {
    /// A row with no peer, no target and no data yet.
    pub fn new(id: &'static str, what: impl Into<String>, setup: impl Into<String>) -> Row {
        Row {
            id,
            what: what.into(),
            setup: setup.into(),
            result: String::new(),
            peer: "—".to_owned(),
            ratio: None,
            target: "report".to_owned(),
            met: None,
            note: None,
            data: Value::Null,
        }
    }
}

/// Where and with what the figures were taken.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// `/proc/cpuinfo`'s model name.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// `rustc -V`.
    pub rustc: String,
    /// `node -v`.
    pub node: String,
    /// Versions of the Socket.IO implementations on both sides.
    pub libraries: Vec<(String, String)>,
}

impl Machine {
    /// Reads the machine and the versions in use.
    pub fn detect(workspace: &Path, js_dir: &Path) -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let mut libraries = Vec::new();
        for name in ["socket.io", "socket.io-client"] {
            let version = std::fs::read_to_string(
                js_dir.join("node_modules").join(name).join("package.json"),
            )
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
            libraries.push((name.to_owned(), version));
        }
        let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
        for name in ["socketioxide", "rust_socketio", "tokio"] {
            libraries.push((
                name.to_owned(),
                locked_version(&lock, name).unwrap_or_else(|| "?".to_owned()),
            ));
        }
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            rustc: version_of("rustc", "-V"),
            node: version_of("node", "-v"),
            libraries,
        }
    }

    /// One line for the top of the table.
    pub fn line(&self) -> String {
        let libs: Vec<String> = self
            .libraries
            .iter()
            .map(|(n, v)| format!("{n} {v}"))
            .collect();
        format!(
            "{} cores, {}; Linux {}; {}; Node {}; {}",
            self.cores,
            self.cpu,
            self.kernel,
            self.rustc,
            self.node,
            libs.join(", ")
        )
    }
}

/// The first version of a package in a `Cargo.lock`.
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let header = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == header {
            return lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_owned());
        }
    }
    None
}

fn version_of(program: &str, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| format!("{program}: not found"))
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// UTC date and time the run started (`YYYY-MM-DD HH:MM`).
    pub date: String,
    /// `quick`, `full` or `soak`.
    pub mode: String,
    /// The machine.
    pub machine: Machine,
    /// The rows, in figure order.
    pub rows: Vec<Row>,
}

impl Report {
    /// The markdown table, with the machine above it.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} ({} mode) on {}\n\n| id | figure | setup | ours | peer, same run | ratio | target | met |\n|---|---|---|---|---|---|---|---|\n",
            self.date,
            self.mode,
            self.machine.line()
        );
        for row in &self.rows {
            let ratio = row
                .ratio
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            let met = match (row.met, &row.note) {
                (Some(true), None) => "yes".to_owned(),
                (Some(false), None) => "**no**".to_owned(),
                (Some(true), Some(note)) => format!("yes ({note})"),
                (Some(false), Some(note)) => format!("**no** ({note})"),
                (None, Some(note)) => note.clone(),
                (None, None) => "—".to_owned(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.id,
                cell(&row.what),
                cell(&row.setup),
                cell(&row.result),
                cell(&row.peer),
                ratio,
                cell(&row.target),
                cell(&met)
            ));
        }
        out
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Today's UTC date and time as `YYYY-MM-DD HH:MM`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
    }

    #[test]
    fn lock_versions() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.48.0\"\n";
        assert_eq!(locked_version(lock, "tokio").as_deref(), Some("1.48.0"));
        assert_eq!(locked_version(lock, "toki"), None);
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut row = Row::new("B1", "a | b", "s");
        row.result = "r".into();
        row.met = Some(false);
        let report = Report {
            date: "d".into(),
            mode: "quick".into(),
            machine: Machine {
                cores: 2,
                cpu: "cpu".into(),
                kernel: "k".into(),
                rustc: "rustc".into(),
                node: "v20".into(),
                libraries: vec![],
            },
            rows: vec![row],
        };
        let md = report.markdown();
        assert!(
            md.contains("| B1 | a \\| b | s | r | — | — | report | **no** |"),
            "{md}"
        );
    }
}
