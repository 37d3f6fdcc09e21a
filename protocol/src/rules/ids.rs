/// The longest id (`requestId`, `sessionId`, `terminalId`) a runner takes,
/// in bytes. The relay makes UUIDs (36 bytes); this leaves room for any
/// other scheme and still keeps ids out of the way of logs, thread names and
/// file names.
pub const MAX_ID_BYTES: usize = 256;

/// The payload fields that hold ids, in the order they are checked.
pub const ID_FIELDS: [&str; 3] = ["requestId", "sessionId", "terminalId"];

/// Why an id was refused. `Display` names the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id holds a NUL byte (it cannot be an argument, a name or a path).
    #[error("Invalid {field}: it contains a NUL byte")]
    Nul {
        /// The payload field.
        field: &'static str,
    },
    /// The id holds a control character (terminal escapes, line breaks).
    #[error("Invalid {field}: it contains the control character U+{code:04X}")]
    Control {
        /// The payload field.
        field: &'static str,
        /// The character's code point.
        code: u32,
    },
    /// The id is longer than [`MAX_ID_BYTES`].
    #[error("Invalid {field}: it is {len} bytes long, more than {MAX_ID_BYTES}")]
    TooLong {
        /// The payload field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
}

/// Checks one id: no NUL byte, no control character, at most
/// [`MAX_ID_BYTES`] bytes. An empty id passes (each command has its own
/// "Missing …" answer for it).
///
/// ```
/// use runner_protocol::rules::validate_id;
/// assert!(validate_id("terminalId", "3f2a-t1").is_ok());
/// assert!(validate_id("terminalId", "a\0b").is_err());
/// ```
pub fn validate_id(field: &'static str, id: &str) -> Result<(), IdError> {
    if id.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong {
            field,
            len: id.len(),
        });
    }
    match id.chars().find(|c| c.is_control()) {
        Some('\0') => Err(IdError::Nul { field }),
        Some(c) => Err(IdError::Control {
            field,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

/// Checks every id field of a raw payload that is a string
/// ([`ID_FIELDS`]); the first bad one is the error.
pub fn validate_ids(payload: &serde_json::Value) -> Result<(), IdError> {
    for field in ID_FIELDS {
        if let Some(id) = payload.get(field).and_then(serde_json::Value::as_str) {
            validate_id(field, id)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn usable_ids_pass() {
        for id in [
            "",
            "t1",
            "3f2a9c1e-0000-4000-8000-000000000000",
            "ünïcode ✓ with spaces",
            &"x".repeat(MAX_ID_BYTES),
        ] {
            assert_eq!(validate_id("sessionId", id), Ok(()), "{id:?}");
        }
    }

    #[test]
    fn unusable_ids_are_refused_naming_the_field() {
        let cases = [
            ("a\0b", "Invalid terminalId: it contains a NUL byte"),
            (
                "a\u{1b}[31m",
                "Invalid terminalId: it contains the control character U+001B",
            ),
            (
                "line\nbreak",
                "Invalid terminalId: it contains the control character U+000A",
            ),
            (
                "del\u{7f}",
                "Invalid terminalId: it contains the control character U+007F",
            ),
            (
                "c1\u{85}",
                "Invalid terminalId: it contains the control character U+0085",
            ),
        ];
        for (id, message) in cases {
            let err = validate_id("terminalId", id).unwrap_err();
            assert_eq!(err.to_string(), message, "{id:?}");
        }
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            validate_id("requestId", &long).unwrap_err().to_string(),
            format!("Invalid requestId: it is 257 bytes long, more than {MAX_ID_BYTES}")
        );
    }

    #[test]
    fn payloads_are_checked_field_by_field() {
        assert_eq!(validate_ids(&json!({"requestId": "r", "x": "\0"})), Ok(()));
        assert_eq!(validate_ids(&json!({"sessionId": 5})), Ok(()));
        assert_eq!(
            validate_ids(&json!({"requestId": "r", "sessionId": "s\0"})),
            Err(IdError::Nul { field: "sessionId" })
        );
        assert_eq!(validate_ids(&json!("not an object")), Ok(()));
    }
}
