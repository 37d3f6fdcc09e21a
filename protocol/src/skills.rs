//! Skills: the markdown files under the runner's skills directory.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::RunnerSkill;

/// `list_skills` (S→R): ask for the skills.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct ListSkills {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
}

/// `create_skill` (S→R): write `<name>/SKILL.md`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct CreateSkill {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The skill's name; validated by [`crate::rules::validate_skill_name`].
    pub name: String,
    /// The skill's markdown.
    pub content: String,
}

/// `update_skill` (S→R): replace a skill's markdown.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct UpdateSkill {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The skill's name.
    pub name: String,
    /// The skill's new markdown.
    pub content: String,
}

/// `delete_skill` (S→R): remove a skill.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct DeleteSkill {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The skill's name.
    pub name: String,
}

/// `get_skill` (S→R): read one skill's markdown.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct GetSkill {
    /// Correlation id, echoed in the reply.
    pub request_id: Option<String>,
    /// The skill's name.
    pub name: String,
}

/// `skills_list` (R→S): the skills, on request or unsolicited after a change.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SkillsList {
    /// The skills, sorted by name.
    pub skills: Vec<RunnerSkill>,
    /// The request's correlation id, when it carried one.
    pub request_id: Option<String>,
}

/// `skill_result` (R→S): the outcome of `create`/`update`/`delete`/`get_skill`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "camelCase")]
pub struct SkillResult {
    /// The request's correlation id, when it carried one.
    pub request_id: Option<String>,
    /// Whether the command succeeded.
    pub ok: bool,
    /// Why it failed (or, for a delete of a missing skill, `Skill not found`).
    pub message: Option<String>,
    /// The skills after the command (create, update, delete).
    pub skills: Option<Vec<RunnerSkill>>,
    /// The skill's markdown (get).
    pub content: Option<String>,
    /// The skill's name (get).
    pub name: Option<String>,
}

impl SkillResult {
    /// A failure reply.
    pub fn failure(request_id: Option<String>, message: impl Into<String>) -> Self {
        SkillResult {
            request_id,
            ok: false,
            message: Some(message.into()),
            ..Default::default()
        }
    }
}
