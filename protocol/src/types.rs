//! Types shared by several events, and the handshake `auth` object.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret string (API key, runner secret). Its `Debug` and `Display` print
/// `***`, so it never ends up in a log by accident; [`Secret::expose`] gives
/// the value where it is really needed.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
impl proptest::arbitrary::Arbitrary for Secret {
    type Parameters = ();
    type Strategy = proptest::strategy::Map<
        proptest::string::RegexGeneratorStrategy<String>,
        fn(String) -> Secret,
    >;
    fn arbitrary_with(_: ()) -> Self::Strategy {
        use proptest::strategy::Strategy;
        proptest::string::string_regex("[0-9a-f]{0,64}")
            .expect("valid regex")
            .prop_map(Secret)
    }
}

/// The Socket.IO handshake `auth` object a runner sends when it connects.
/// The relay checks `apiKey` in its connect middleware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct HandshakeAuth {
    /// The user's API key.
    pub api_key: Secret,
    /// The runner's stable identity (a UUID, generated once and persisted).
    pub runner_id: String,
    /// 32 random bytes as 64 hex characters, generated once and persisted.
    pub runner_secret: Secret,
}

/// A skill as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct RunnerSkill {
    /// The skill's name (see [`crate::rules::validate_skill_name`]).
    pub name: String,
    /// The `description:` line of the skill's front matter; empty when absent.
    pub description: String,
    /// Where the skill lives on the runner's disk.
    pub file_path: String,
}

/// A model, as `provider` + `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ModelRef {
    /// The model provider, e.g. `anthropic`.
    pub provider: String,
    /// The model id within that provider.
    pub id: String,
}

/// The runner's provider-usage cache (`~/.pizzapi/usage-cache.json`), as
/// carried by `usage_data`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct UsageCache {
    /// When the data was fetched, in ms since the epoch; absent when never.
    pub fetched_at: Option<u64>,
    /// Usage per provider name.
    #[serde(default)]
    #[cfg_attr(
        test,
        proptest(strategy = "crate::arb::small_map(proptest::arbitrary::any::<ProviderUsage>())")
    )]
    pub providers: BTreeMap<String, ProviderUsage>,
}

/// One provider's usage windows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ProviderUsage {
    /// The rate-limit windows (e.g. "5h", "7d").
    #[serde(default)]
    pub windows: Vec<UsageWindow>,
}

/// One rate-limit window of a provider. Field names are as in the cache file
/// (`resets_at` is snake_case on the wire).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct UsageWindow {
    /// The window's label, e.g. `5h`.
    pub label: String,
    /// How much of the window is used, as reported by the provider (0–100).
    #[cfg_attr(test, proptest(strategy = "0.0f64..=100.0"))]
    pub utilization: f64,
    /// When the window resets (an RFC 3339 time), when known.
    pub resets_at: Option<String>,
}
