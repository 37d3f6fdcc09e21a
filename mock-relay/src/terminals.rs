//! What the relay keeps of each terminal: the bytes it printed (the most
//! recent ones, up to a cap) and its exit code once it ended.

use std::collections::VecDeque;

use serde::Serialize;

/// How many bytes of output the relay keeps per terminal by default (16 MiB).
pub const DEFAULT_TERMINAL_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// A terminal's output as seen by the relay, as `GET
/// /api/runners/{id}/terminals/{terminalId}/output` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalOutput {
    /// The terminal's id.
    pub terminal_id: String,
    /// The kept bytes, decoded as UTF-8 (invalid sequences replaced).
    pub output: String,
    /// How many bytes arrived in all (kept and dropped).
    pub bytes: u64,
    /// How many of the oldest bytes were dropped to stay within the cap.
    pub dropped_bytes: u64,
    /// The shell's exit code, once `terminal_exit` arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// One terminal's buffer.
#[derive(Debug, Default)]
pub(crate) struct TerminalBuffer {
    kept: VecDeque<u8>,
    bytes: u64,
    dropped: u64,
    exit_code: Option<i32>,
}

impl TerminalBuffer {
    /// Appends `data`, dropping the oldest bytes beyond `cap`.
    pub(crate) fn push(&mut self, data: &[u8], cap: usize) {
        self.bytes = self.bytes.saturating_add(data.len() as u64);
        let data = if data.len() > cap {
            let skip = data.len() - cap;
            self.dropped = self.dropped.saturating_add(skip as u64);
            &data[skip..]
        } else {
            data
        };
        let over = (self.kept.len() + data.len()).saturating_sub(cap);
        if over > 0 {
            self.kept.drain(..over);
            self.dropped = self.dropped.saturating_add(over as u64);
        }
        self.kept.extend(data);
    }

    pub(crate) fn set_exit(&mut self, code: i32) {
        self.exit_code = Some(code);
    }

    pub(crate) fn snapshot(&self, terminal_id: &str) -> TerminalOutput {
        let (a, b) = self.kept.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        TerminalOutput {
            terminal_id: terminal_id.to_owned(),
            output: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: self.bytes,
            dropped_bytes: self.dropped,
            exit_code: self.exit_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes_and_counts_the_dropped_ones() {
        let mut t = TerminalBuffer::default();
        t.push(b"abc", 5);
        t.push(b"def", 5);
        let s = t.snapshot("t");
        assert_eq!(
            (s.output.as_str(), s.bytes, s.dropped_bytes),
            ("bcdef", 6, 1)
        );
        t.push(b"0123456789", 5);
        let s = t.snapshot("t");
        assert_eq!(
            (s.output.as_str(), s.bytes, s.dropped_bytes),
            ("56789", 16, 11)
        );
        assert_eq!(s.exit_code, None);
        t.set_exit(-1);
        assert_eq!(t.snapshot("t").exit_code, Some(-1));
    }
}
