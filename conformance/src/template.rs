//! Placeholders in scenario strings, JSON subset matching, and captures.

use std::collections::BTreeMap;

use serde_json::Value;

/// Values for placeholders: `sandbox`, `root`, `home`, and captured names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

/// A placeholder that has no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placeholder {{{name}}} in {text:?} (known: {known})")]
pub struct UnknownPlaceholder {
    /// The placeholder's name.
    pub name: String,
    /// The string it stood in.
    pub text: String,
    /// The names that have values.
    pub known: String,
}

impl Vars {
    /// Sets a value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// Removes every value whose name matches.
    pub fn remove_where(&mut self, mut matches: impl FnMut(&str) -> bool) {
        self.values.retain(|name, _| !matches(name));
    }

    /// A value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Fills the placeholders of one string. `{name}` with `name` made of
    /// letters, digits, `_` and `-` is a placeholder; `{{name}}` stands for
    /// the literal text `{name}`; every other brace is kept as it is, so
    /// JSON in a string (`{"a": {"b": 1}}`) passes through untouched.
    pub fn fill(&self, text: &str) -> Result<String, UnknownPlaceholder> {
        let is_name = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(pos) = rest.find('{') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            // `{{name}}`: the literal `{name}`.
            if let Some(inner) = tail.strip_prefix("{{")
                && let Some(end) = inner.find("}}")
                && is_name(&inner[..end])
            {
                out.push('{');
                out.push_str(&inner[..end]);
                out.push('}');
                rest = &inner[end + 2..];
                continue;
            }
            // `{name}`: a placeholder.
            if let Some(end) = tail.find('}')
                && is_name(&tail[1..end])
            {
                let name = &tail[1..end];
                let value = self.get(name).ok_or_else(|| UnknownPlaceholder {
                    name: name.to_owned(),
                    text: text.to_owned(),
                    known: self.values.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
                out.push_str(value);
                rest = &tail[end + 1..];
                continue;
            }
            out.push('{');
            rest = &tail[1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Fills the placeholders of every string (and object key) in a JSON value.
    pub fn fill_json(&self, value: &Value) -> Result<Value, UnknownPlaceholder> {
        Ok(match value {
            Value::String(s) => Value::String(self.fill(s)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.fill_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((self.fill(k)?, self.fill_json(v)?)))
                    .collect::<Result<_, UnknownPlaceholder>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// Where an actual payload departs from the expected subset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {path}: expected {expected}, got {got}")]
pub struct Mismatch {
    /// The JSON path, e.g. `skills[0].name` (`.` for the whole value).
    pub path: String,
    /// The expected JSON.
    pub expected: String,
    /// The actual JSON (`(absent)` for a missing key).
    pub got: String,
}

/// Texts longer than this are cut in [`shown`].
const SHOWN_TEXT: usize = 200;

/// `value` as compact JSON for a failure message, with every string longer
/// than 200 characters cut to its start and its length (a 1 MiB file
/// content must not become a 1 MiB message).
pub fn shown(value: &Value) -> String {
    fn cut(value: &Value) -> Value {
        match value {
            Value::String(s) if s.chars().count() > SHOWN_TEXT => {
                let start: String = s.chars().take(SHOWN_TEXT).collect();
                Value::String(format!("{start}… ({} bytes)", s.len()))
            }
            Value::Array(items) => Value::Array(items.iter().map(cut).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), cut(v))).collect())
            }
            other => other.clone(),
        }
    }
    cut(value).to_string()
}

/// Whether `actual` contains `expected`: objects match when every expected
/// key matches (extra keys are fine), arrays when they have the same length
/// and match element-wise, anything else when equal.
pub fn subset(expected: &Value, actual: &Value) -> Result<(), Mismatch> {
    subset_at(expected, actual, "")
}

fn subset_at(expected: &Value, actual: &Value, path: &str) -> Result<(), Mismatch> {
    let here = || {
        if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }
    };
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, w) in want {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match have.get(key) {
                    Some(h) => subset_at(w, h, &sub)?,
                    None => {
                        return Err(Mismatch {
                            path: sub,
                            expected: shown(w),
                            got: "(absent)".to_owned(),
                        });
                    }
                }
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                subset_at(w, h, &format!("{}[{i}]", here().trim_start_matches('.')))?;
            }
            Ok(())
        }
        (w, h) if w == h => Ok(()),
        (w, h) => Err(Mismatch {
            path: here(),
            expected: shown(w),
            got: shown(h),
        }),
    }
}

/// Reads a field by a dotted path (`skills.0.name`) as a string: strings as
/// they are, other values as their JSON text.
pub fn field(value: &Value, path: &str) -> Option<String> {
    let mut at = value;
    for part in path.split('.') {
        at = match at {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(match at {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::default();
        v.set("root", "/tmp/s/root");
        v.set("sid", "abc");
        v
    }

    #[test]
    fn fills_placeholders() {
        let v = vars();
        assert_eq!(v.fill("{root}/x").unwrap(), "/tmp/s/root/x");
        assert_eq!(v.fill("id {sid}{sid}").unwrap(), "id abcabc");
        assert_eq!(v.fill("{{root}}").unwrap(), "{root}");
        assert_eq!(v.fill("{ not a name }").unwrap(), "{ not a name }");
        assert_eq!(v.fill("a } b { c").unwrap(), "a } b { c");
        assert_eq!(
            v.fill(r#"{"a": {"b": [{"c": "{sid}"}]}}"#).unwrap(),
            r#"{"a": {"b": [{"c": "abc"}]}}"#
        );
        assert_eq!(v.fill("}}}").unwrap(), "}}}");
        assert_eq!(v.fill("$(echo {root})").unwrap(), "$(echo /tmp/s/root)");
        let e = v.fill("{nope}").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown placeholder {nope} in "{nope}" (known: root, sid)"#
        );
        assert_eq!(
            v.fill_json(&json!({"cwd": "{root}", "n": 1, "a": ["{sid}"]}))
                .unwrap(),
            json!({"cwd": "/tmp/s/root", "n": 1, "a": ["abc"]})
        );
    }

    #[test]
    fn subset_matching() {
        let actual = json!({"ok": true, "skills": [{"name": "a", "x": 1}], "requestId": "r"});
        assert_eq!(subset(&json!({}), &actual), Ok(()));
        assert_eq!(
            subset(&json!({"ok": true, "skills": [{"name": "a"}]}), &actual),
            Ok(())
        );
        assert_eq!(
            subset(&json!({"ok": false}), &actual)
                .unwrap_err()
                .to_string(),
            "at ok: expected false, got true"
        );
        assert_eq!(
            subset(&json!({"message": "m"}), &actual).unwrap_err().got,
            "(absent)"
        );
        assert_eq!(
            subset(&json!({"skills": [{"name": "b"}]}), &actual)
                .unwrap_err()
                .path,
            "skills[0].name"
        );
        assert_eq!(
            subset(&json!({"skills": []}), &actual).unwrap_err().path,
            "skills"
        );
        assert_eq!(subset(&json!(5), &json!(5)), Ok(()));
    }

    #[test]
    fn fields_by_path() {
        let v = json!({"sessionId": "s", "skills": [{"name": "a"}], "n": 3});
        assert_eq!(field(&v, "sessionId").as_deref(), Some("s"));
        assert_eq!(field(&v, "skills.0.name").as_deref(), Some("a"));
        assert_eq!(field(&v, "n").as_deref(), Some("3"));
        assert_eq!(field(&v, "skills.1.name"), None);
    }

    #[test]
    fn failure_messages_cut_long_texts() {
        let long = "x".repeat(1000);
        let text = shown(&serde_json::json!({"content": long, "ok": true}));
        assert!(text.len() < 300, "{text}");
        assert!(text.contains("… (1000 bytes)"), "{text}");
        assert_eq!(
            shown(&serde_json::json!({"a": "short"})),
            r#"{"a":"short"}"#
        );
    }
}
