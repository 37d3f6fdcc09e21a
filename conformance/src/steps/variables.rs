//! Steps about placeholders: checking a value an earlier step captured or
//! read (`expect`'s `capture`, `read_json`, `read_worker`).

use serde::Deserialize;

use super::Invalid;
use crate::driver::Run;
use crate::template::UnknownPlaceholder;

/// Check a placeholder's value, e.g. `worker_env_PIZZAPI_SESSION_ID` after
/// `read_worker`: exactly one of `equals` (placeholders allowed), `matches`
/// (a regular expression the whole value must match), `absent = true` or
/// `cleared = true`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckVar {
    /// The placeholder's name, without braces.
    pub name: String,
    /// The value it must have.
    pub equals: Option<String>,
    /// A regular expression the whole value must match, e.g.
    /// `[0-9a-f]{64}`.
    pub matches: Option<String>,
    /// It must have no value.
    #[serde(default)]
    pub absent: bool,
    /// It must have no value or one that means none: `0`, an empty string,
    /// `null` or `false` (a field "cleared" in a JSON file, which a runner
    /// may remove or blank).
    #[serde(default)]
    pub cleared: bool,
}

/// Why a `check_var` step did not hold.
#[derive(Debug, thiserror::Error)]
pub enum VarError {
    /// A placeholder in `equals` has no value.
    #[error(transparent)]
    Placeholder(#[from] UnknownPlaceholder),
    /// `matches` is not a regular expression.
    #[error("matches: {0}")]
    Pattern(regex::Error),
    /// The value does not match the pattern.
    #[error("{{{name}}}: {value:?} does not match /{pattern}/")]
    NoMatch {
        /// The placeholder.
        name: String,
        /// Its value.
        value: String,
        /// The pattern.
        pattern: String,
    },
    /// There is no value to match against the pattern.
    #[error("{{{name}}}: expected a value matching /{pattern}/, but it has none")]
    NothingToMatch {
        /// The placeholder.
        name: String,
        /// The pattern.
        pattern: String,
    },
    /// The placeholder has a value but must have none.
    #[error("{{{name}}} should be absent, but is {value:?}")]
    NotAbsent {
        /// The placeholder.
        name: String,
        /// Its value.
        value: String,
    },
    /// The value is not one that means none.
    #[error("{{{name}}} should be cleared (absent, 0, \"\", null or false), but is {value:?}")]
    NotCleared {
        /// The placeholder.
        name: String,
        /// Its value.
        value: String,
    },
    /// The value is not the expected one.
    #[error("{{{name}}}: expected {expected:?}, found {value:?}")]
    NotEqual {
        /// The placeholder.
        name: String,
        /// The value it had to have.
        expected: String,
        /// Its value.
        value: String,
    },
    /// The placeholder has no value but must have one.
    #[error("{{{name}}}: expected {expected:?}, but it has no value")]
    NoValue {
        /// The placeholder.
        name: String,
        /// The value it had to have.
        expected: String,
    },
}

impl CheckVar {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        let given = usize::from(self.equals.is_some())
            + usize::from(self.matches.is_some())
            + usize::from(self.absent)
            + usize::from(self.cleared);
        if given != 1 {
            return Err(Invalid::new(
                "equals",
                "give exactly one of `equals`, `matches`, `absent = true` or `cleared = true`",
            ));
        }
        if let Some(pattern) = &self.matches {
            regex::Regex::new(pattern)
                .map_err(|e| Invalid::new("matches", format!("not a regular expression: {e}")))?;
        }
        Ok(())
    }

    pub(crate) fn run(&self, run: &mut Run) -> Result<(), VarError> {
        let name = &self.name;
        let actual = run.vars.get(name).map(str::to_owned);
        if let Some(pattern) = &self.matches {
            let whole =
                regex::Regex::new(&format!("^(?:{pattern})$")).map_err(VarError::Pattern)?;
            match actual {
                Some(value) if whole.is_match(&value) => {}
                Some(value) => {
                    return Err(VarError::NoMatch {
                        name: name.clone(),
                        value,
                        pattern: pattern.clone(),
                    });
                }
                None => {
                    return Err(VarError::NothingToMatch {
                        name: name.clone(),
                        pattern: pattern.clone(),
                    });
                }
            }
        } else if self.cleared {
            if let Some(value) =
                actual.filter(|v| !matches!(v.as_str(), "" | "0" | "null" | "false"))
            {
                return Err(VarError::NotCleared {
                    name: name.clone(),
                    value,
                });
            }
        } else if self.absent {
            if let Some(value) = actual {
                return Err(VarError::NotAbsent {
                    name: name.clone(),
                    value,
                });
            }
        } else if let Some(expected) = &self.equals {
            let expected = run.vars.fill(expected)?;
            match actual {
                Some(value) if value == expected => {}
                Some(value) => {
                    return Err(VarError::NotEqual {
                        name: name.clone(),
                        expected,
                        value,
                    });
                }
                None => {
                    return Err(VarError::NoValue {
                        name: name.clone(),
                        expected,
                    });
                }
            }
        }
        Ok(())
    }
}
