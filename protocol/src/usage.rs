//! Provider usage (extension): `get_usage` and `usage_data`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::UsageCache;

/// `get_usage` (S→R, extension): ask for the runner's usage cache.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GetUsage {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
}

/// `usage_data` (R→S, extension): the usage cache, on request and whenever
/// the cache file changes (then without `requestId`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct UsageData {
    /// The request's correlation id, when it carried one.
    pub request_id: Option<String>,
    /// The cache's content (empty providers when there is no cache).
    pub data: UsageCache,
}
