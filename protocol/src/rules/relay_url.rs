use crate::names;

/// Why a relay URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    /// The URL is empty.
    #[error("relay URL is empty")]
    Empty,
    /// The URL has no `scheme://`.
    #[error("relay URL {0:?} has no scheme; use ws://, wss://, http:// or https://")]
    MissingScheme(String),
    /// The scheme is not one of ws, wss, http, https.
    #[error("relay URL scheme {scheme:?} is not supported; use ws://, wss://, http:// or https://")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// Nothing follows `scheme://`.
    #[error("relay URL {0:?} has no host")]
    MissingHost(String),
    /// The URL contains white space, a query or a fragment.
    #[error("relay URL {0:?} must not contain white space, a query or a fragment")]
    Malformed(String),
}

/// Normalizes a relay URL for a Socket.IO client: `ws://` → `http://`,
/// `wss://` → `https://` (schemes are case-insensitive), `http(s)://` kept,
/// trailing slashes removed. Anything else is an error.
///
/// ```
/// use runner_protocol::rules::normalize_relay_url;
/// assert_eq!(normalize_relay_url("ws://localhost:7492/").unwrap(), "http://localhost:7492");
/// assert_eq!(normalize_relay_url("wss://relay.example").unwrap(), "https://relay.example");
/// assert!(normalize_relay_url("ftp://relay.example").is_err());
/// ```
pub fn normalize_relay_url(url: &str) -> Result<String, RelayUrlError> {
    let trimmed = url.trim();
    // Errors quote the URL: never with its password.
    let shown = redact_userinfo(trimmed);
    let url = trimmed;
    if url.is_empty() {
        return Err(RelayUrlError::Empty);
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c == '?' || c == '#')
    {
        return Err(RelayUrlError::Malformed(shown.into_owned()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(RelayUrlError::MissingScheme(shown.into_owned()));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => {
            return Err(RelayUrlError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
    };
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(RelayUrlError::MissingHost(shown.into_owned()));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// A URL fit for a log or an error message: the user information of its
/// authority (`user:password@`) becomes `***@`. Anything that is not a
/// `scheme://authority` URL is returned unchanged.
///
/// ```
/// use runner_protocol::rules::redact_userinfo;
/// assert_eq!(redact_userinfo("https://me:pw@relay.example/x"), "https://***@relay.example/x");
/// assert_eq!(redact_userinfo("http://127.0.0.1:7492"), "http://127.0.0.1:7492");
/// ```
pub fn redact_userinfo(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]).into(),
        None => url.into(),
    }
}

/// The URL of the `/runner` namespace on a relay: the normalized relay URL
/// followed by `/runner`.
pub fn namespace_url(url: &str) -> Result<String, RelayUrlError> {
    Ok(format!("{}{}", normalize_relay_url(url)?, names::NAMESPACE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok: &[(&str, &str)] = &[
            ("ws://localhost:7492", "http://localhost:7492"),
            ("ws://localhost:7492/", "http://localhost:7492"),
            ("wss://relay.example", "https://relay.example"),
            ("WSS://relay.example//", "https://relay.example"),
            ("http://127.0.0.1:1", "http://127.0.0.1:1"),
            ("https://relay.example/base/", "https://relay.example/base"),
            ("  http://[::1]:7492  ", "http://[::1]:7492"),
        ];
        for (input, expected) in ok {
            assert_eq!(
                normalize_relay_url(input).as_deref(),
                Ok(*expected),
                "input {input:?}"
            );
        }
        let bad: &[(&str, RelayUrlError)] = &[
            ("", RelayUrlError::Empty),
            ("   ", RelayUrlError::Empty),
            (
                "localhost:7492",
                RelayUrlError::MissingScheme("localhost:7492".into()),
            ),
            (
                "ftp://x",
                RelayUrlError::UnsupportedScheme {
                    scheme: "ftp".into(),
                },
            ),
            (
                "file:///etc/passwd",
                RelayUrlError::UnsupportedScheme {
                    scheme: "file".into(),
                },
            ),
            ("ws://", RelayUrlError::MissingHost("ws://".into())),
            (
                "http:///path",
                RelayUrlError::MissingHost("http:///path".into()),
            ),
            (
                "http://:80",
                RelayUrlError::MissingHost("http://:80".into()),
            ),
            ("http://a b", RelayUrlError::Malformed("http://a b".into())),
            (
                "http://x/?a=1",
                RelayUrlError::Malformed("http://x/?a=1".into()),
            ),
        ];
        for (input, expected) in bad {
            assert_eq!(
                normalize_relay_url(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn namespace() {
        assert_eq!(
            namespace_url("ws://127.0.0.1:9/").unwrap(),
            "http://127.0.0.1:9/runner"
        );
    }

    #[test]
    fn userinfo_never_shows() {
        for (url, shown) in [
            (
                "https://me:pw@relay.example/x",
                "https://***@relay.example/x",
            ),
            ("ws://token@127.0.0.1:9", "ws://***@127.0.0.1:9"),
            ("http://a:b@c@host/p@q", "http://***@host/p@q"),
            ("http://host/p@q", "http://host/p@q"),
            ("no scheme@x", "no scheme@x"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url}");
        }
        let err = normalize_relay_url("http://me:secret@a b").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn errors_say_what_to_use() {
        let err = normalize_relay_url("ftp://x").unwrap_err().to_string();
        assert!(err.contains("ws://, wss://, http:// or https://"), "{err}");
    }
}
