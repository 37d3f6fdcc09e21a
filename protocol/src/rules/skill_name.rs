use crate::messages;

/// Why a skill name was refused. `Display` gives the original daemon's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkillNameError {
    /// The name is empty after trimming.
    #[error("{}", messages::MISSING_SKILL_NAME)]
    Missing,
    /// The name is not lowercase letters, digits and inner hyphens.
    #[error("{}", messages::INVALID_SKILL_NAME)]
    Invalid,
}

/// Validates a skill name and returns it trimmed.
///
/// A valid name matches `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$` after trimming:
/// it can never contain `/`, `.` or `\`, so it is always one plain path
/// component under the skills directory. Every skill operation must call
/// this — the original validated only create and update, so a
/// `delete_skill` of `../x` deleted outside the skills directory.
pub fn validate_skill_name(name: &str) -> Result<&str, SkillNameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(SkillNameError::Missing);
    }
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge_ok = |b: u8| b != b'-';
    if bytes.iter().all(allowed) && edge_ok(bytes[0]) && edge_ok(bytes[bytes.len() - 1]) {
        Ok(name)
    } else {
        Err(SkillNameError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, SkillNameError>)] = &[
            ("a", Ok("a")),
            ("a-b1", Ok("a-b1")),
            ("0", Ok("0")),
            ("code-review", Ok("code-review")),
            ("  padded  ", Ok("padded")),
            ("a--b", Ok("a--b")),
            ("", Err(SkillNameError::Missing)),
            ("   ", Err(SkillNameError::Missing)),
            ("\t\n", Err(SkillNameError::Missing)),
            ("Bad_Name", Err(SkillNameError::Invalid)),
            ("UPPER", Err(SkillNameError::Invalid)),
            ("../x", Err(SkillNameError::Invalid)),
            ("..", Err(SkillNameError::Invalid)),
            (".", Err(SkillNameError::Invalid)),
            ("a/b", Err(SkillNameError::Invalid)),
            ("a\\b", Err(SkillNameError::Invalid)),
            ("/etc", Err(SkillNameError::Invalid)),
            ("-x", Err(SkillNameError::Invalid)),
            ("x-", Err(SkillNameError::Invalid)),
            ("-", Err(SkillNameError::Invalid)),
            ("a b", Err(SkillNameError::Invalid)),
            ("a.md", Err(SkillNameError::Invalid)),
            ("a\0b", Err(SkillNameError::Invalid)),
            ("é", Err(SkillNameError::Invalid)),
            ("a;rm -rf", Err(SkillNameError::Invalid)),
            ("$(id)", Err(SkillNameError::Invalid)),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_skill_name(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn messages_are_the_originals() {
        assert_eq!(SkillNameError::Missing.to_string(), "Missing skill name");
        assert_eq!(
            SkillNameError::Invalid.to_string(),
            "Invalid skill name: must be lowercase letters, numbers, and hyphens only"
        );
    }
}
