//! Decoding errors. Every message names the event and, where there is one,
//! the field that was wrong, e.g. `new_session: missing field "sessionId"`.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why an event payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The event name is not part of the protocol (in this direction).
    #[error("unknown event {name:?}")]
    UnknownEvent {
        /// The name that was received.
        name: String,
    },
    /// The payload is not a JSON object (nor null, which counts as `{}`).
    #[error("{event}: payload must be a JSON object, got {found}")]
    NotAnObject {
        /// The event whose payload was wrong.
        event: &'static str,
        /// What was found instead ("a string", "an array", ...).
        found: &'static str,
    },
    /// A required field is absent.
    #[error("{event}: missing field \"{field}\"")]
    MissingField {
        /// The event whose payload was wrong.
        event: &'static str,
        /// The field's wire path, e.g. `sessionId` or `model.provider`.
        field: String,
    },
    /// A field is present but has the wrong type or value.
    #[error("{event}: field \"{field}\": {reason}")]
    InvalidField {
        /// The event whose payload was wrong.
        event: &'static str,
        /// The field's wire path, e.g. `cwd` or `skills[1].name`.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The payload as a whole is wrong in a way no single field explains.
    #[error("{event}: {reason}")]
    Invalid {
        /// The event whose payload was wrong.
        event: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The wire path of the offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::MissingField { field, .. } | DecodeError::InvalidField { field, .. } => {
                Some(field)
            }
            _ => None,
        }
    }

    /// The event the error is about, when the name was known.
    pub fn event(&self) -> Option<&'static str> {
        match self {
            DecodeError::UnknownEvent { .. } => None,
            DecodeError::NotAnObject { event, .. }
            | DecodeError::MissingField { event, .. }
            | DecodeError::InvalidField { event, .. }
            | DecodeError::Invalid { event, .. } => Some(event),
        }
    }
}

/// A short English description of a JSON value's type, for messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Decodes one payload, tracking the path of the field that fails.
///
/// `null` counts as `{}` (an event emitted without an argument), so that a
/// missing required field is reported by name rather than as a type error.
pub(crate) fn decode_payload<T: DeserializeOwned>(
    event: &'static str,
    value: Value,
) -> Result<T, DecodeError> {
    let value = match value {
        Value::Null => Value::Object(Default::default()),
        Value::Object(_) => value,
        other => {
            return Err(DecodeError::NotAnObject {
                event,
                found: json_type_name(&other),
            });
        }
    };
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.inner().to_string();
        let at_root = path == "." || path.is_empty();
        if let Some(name) = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let field = if at_root {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            DecodeError::MissingField { event, field }
        } else if at_root {
            DecodeError::Invalid { event, reason }
        } else {
            DecodeError::InvalidField {
                event,
                field: path,
                reason,
            }
        }
    })
}
