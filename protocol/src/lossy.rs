//! Event packets whose JSON text does not decode into a [`Value`].
//!
//! JavaScript strings are UTF-16 and may hold a lone surrogate; a stock
//! socket.io server sends one as the escape `"\ud800"` without complaint.
//! Such text is valid JSON syntax but names no Unicode scalar value, so
//! `serde_json` (and every Rust string) refuses it. To answer such a command
//! anyway (its error reply needs its ids), [`event_lossy`] decodes the
//! packet with every lone surrogate replaced by U+FFFD.

use std::borrow::Cow;

use serde_json::Value;

/// `text` with every `\uXXXX` escape of a lone UTF-16 surrogate replaced by
/// `\uFFFD`; surrogate pairs and every other escape are kept as they are.
pub fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_unit(bytes, i) else {
            // Another escape (`\"`, `\\`, …): keep it, and do not read its
            // second character as the start of one.
            i += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => {
                match escape_unit(bytes, i + 6) {
                    Some(0xDC00..=0xDFFF) => {
                        // A pair: keep both halves.
                        i += 12;
                        continue;
                    }
                    _ => true,
                }
            }
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..i]);
            out.push_str("\\uFFFD");
            copied = i + 6;
        }
        i += 6;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The UTF-16 code unit of the `\uXXXX` escape starting at `at`, if one
/// starts there.
fn escape_unit(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&escape[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

/// The event name and first argument of a Socket.IO event packet's data
/// (`["name", payload, …]`), decoded with lone surrogates replaced. `None`
/// when even that is not an array starting with a string; the payload is
/// `null` when the packet has no argument.
pub fn event_lossy(data: &str) -> Option<(String, Value)> {
    let Value::Array(mut items) = serde_json::from_str(&replace_lone_surrogates(data)).ok()? else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    let Value::String(name) = items.remove(0) else {
        return None;
    };
    let payload = if items.is_empty() {
        Value::Null
    } else {
        items.swap_remove(0)
    };
    Some((name, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let cases = [
            (r#""\ud800""#, "\u{FFFD}"),
            (r#""a\uDFFFb""#, "a\u{FFFD}b"),
            (r#""\ud800\ud800""#, "\u{FFFD}\u{FFFD}"),
            (r#""\udc00\ud800""#, "\u{FFFD}\u{FFFD}"),
            (r#""\ud83d\ude00""#, "😀"),
            (r#""\ud83d\u0041""#, "\u{FFFD}A"),
            (r#""x\ud800""#, "x\u{FFFD}"),
        ];
        for (text, expected) in cases {
            assert!(serde_json::from_str::<Value>(text).is_err() || text.contains("ude00"));
            let fixed = replace_lone_surrogates(text);
            let value: Value =
                serde_json::from_str(&fixed).unwrap_or_else(|e| panic!("{text} → {fixed}: {e}"));
            assert_eq!(value, json!(expected), "{text}");
        }
    }

    #[test]
    fn other_escapes_are_left_alone() {
        for text in [
            r#""plain""#,
            r#""\\ud800""#,
            r#""\\\"\n\u0041""#,
            r#""é \u00e9""#,
            r#""\ud83d\ude00""#,
            "\"\\",
        ] {
            assert!(
                matches!(replace_lone_surrogates(text), Cow::Borrowed(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn event_name_and_payload() {
        assert_eq!(
            event_lossy(r#"["get_skill",{"requestId":"r1","name":"\ud800"}]"#),
            Some((
                "get_skill".to_owned(),
                json!({"requestId": "r1", "name": "\u{FFFD}"})
            ))
        );
        assert_eq!(
            event_lossy(r#"["ping"]"#),
            Some(("ping".to_owned(), Value::Null))
        );
        assert_eq!(event_lossy(r#"[1,{}]"#), None);
        assert_eq!(event_lossy(r#"[]"#), None);
        assert_eq!(event_lossy(r#"{"a":1}"#), None);
        assert_eq!(event_lossy("not json"), None);
    }
}
