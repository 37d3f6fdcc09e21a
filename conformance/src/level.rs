//! Levels: what a scenario's verdict stands on.
//!
//! Every scenario declares one level, and a verdict asserts what its level
//! promises and no more:
//!
//! * [`Level::Contract`]: the rules of the protocol reference, sections 1–9
//!   (not its "This project" rules). A runner that follows the reference
//!   passes every one. Such a scenario asserts only what the reference
//!   fixes: "exits non-zero" where the reference says the runner stops, the
//!   original's messages where the reference quotes them.
//! * [`Level::Extension`]: the reference's "This project" rules and its
//!   Extensions table (heartbeat, usage, `session_exited`, one reply per
//!   request, error replies for payloads that do not decode).
//! * [`Level::Hardening`]: what no contract says but every runner that
//!   executes commands from the network must do: no escape from the roots by
//!   any path, hostile names refused on every operation, malformed payloads
//!   answered, floods bounded, no orphan processes, a reconnect after a kick,
//!   a private state file.
//! * [`Level::PizzapiRunner`]: this workspace's own choices (its exit codes,
//!   its settings, relative paths joined to `cwd`, strict base64, retries
//!   after a refusal). Another runner may choose otherwise and still be
//!   right; a recording of one runner's behaviour is at this level too.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// What a scenario's verdict stands on (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// The protocol reference's rules.
    Contract,
    /// The reference's "This project" rules and Extensions.
    Extension,
    /// What every runner executing network commands must do.
    Hardening,
    /// This workspace's runner's own choices.
    PizzapiRunner,
}

impl Level {
    /// Every level, in report order.
    pub const ALL: [Level; 4] = [
        Level::Contract,
        Level::Extension,
        Level::Hardening,
        Level::PizzapiRunner,
    ];

    /// The levels run by default: all of them against this workspace's
    /// runner, all but [`Level::PizzapiRunner`] against another runner.
    pub fn defaults(foreign_runner: bool) -> Vec<Level> {
        Level::ALL
            .into_iter()
            .filter(|l| !foreign_runner || *l != Level::PizzapiRunner)
            .collect()
    }

    /// The level's name as written in scenario files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Contract => "contract",
            Level::Extension => "extension",
            Level::Hardening => "hardening",
            Level::PizzapiRunner => "pizzapi-runner",
        }
    }

    /// Whether a scenario at this level fails when a worker or its
    /// grandchild outlives the runner. The reference does not say what
    /// becomes of workers when a runner stops (PizzaPi's own runners leave
    /// them), so only `hardening` and `pizzapi-runner` verdicts stand on it.
    pub fn judges_orphans(self) -> bool {
        matches!(self, Level::Hardening | Level::PizzapiRunner)
    }

    /// What a pass at this level promises, in one line.
    pub fn promise(self) -> &'static str {
        match self {
            Level::Contract => "the protocol reference's rules (sections 1–9)",
            Level::Extension => "the reference's \"This project\" rules and Extensions",
            Level::Hardening => "what every runner executing network commands must do",
            Level::PizzapiRunner => "this workspace's runner's own choices",
        }
    }

    /// Parses a comma-separated list such as `contract,extension`.
    pub fn parse_list(text: &str) -> Result<Vec<Level>, UnknownLevel> {
        let mut levels = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let level = part.parse()?;
            if !levels.contains(&level) {
                levels.push(level);
            }
        }
        if levels.is_empty() {
            return Err(UnknownLevel(text.to_owned()));
        }
        levels.sort();
        Ok(levels)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is none of [`Level::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?}: use contract, extension, hardening or pizzapi-runner")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Level, UnknownLevel> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for level in Level::ALL {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
            let toml: Level = serde_json::from_value(serde_json::json!(level.as_str())).unwrap();
            assert_eq!(toml, level);
        }
    }

    #[test]
    fn lists_parse_sorted_and_deduplicated() {
        assert_eq!(
            Level::parse_list("extension, contract,extension"),
            Ok(vec![Level::Contract, Level::Extension])
        );
        assert!(Level::parse_list("contract,strict").is_err());
        assert!(Level::parse_list(" , ").is_err());
    }

    #[test]
    fn a_foreign_runner_is_not_judged_by_our_choices() {
        assert!(!Level::defaults(true).contains(&Level::PizzapiRunner));
        assert_eq!(Level::defaults(false), Level::ALL.to_vec());
    }
}
