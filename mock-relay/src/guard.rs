//! What keeps web pages out: every HTTP request (the control API and the
//! `/runner` Socket.IO endpoint alike) passes three checks before anything
//! else sees it.
//!
//! * **`Host`** must name this relay: a loopback name (`127.0.0.1`,
//!   `localhost`, `[::1]`, any port), the address it listens on when that is
//!   a specific one, or a name configured with
//!   [`RelayBuilder::allowed_host`](crate::RelayBuilder::allowed_host). A
//!   page that rebinds its own DNS name to 127.0.0.1 still sends its own
//!   name, and is refused.
//! * **`Origin`**, when a browser sends one, must be this relay's own
//!   origin (`http://<the Host header>`). A page elsewhere cannot drive it;
//!   a page the relay serves itself can. Runners and `curl` send none.
//! * A **body** of `POST`, `PUT` or `DELETE` must be `application/json`,
//!   the one type a page cannot send cross-origin without asking first.
//!
//! None of this needs a token, so a developer on loopback uses the relay as
//! before; the control token ([`RelayBuilder::control_token`](crate::RelayBuilder::control_token))
//! is for a relay on the network.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The names a request's `Host` may carry, besides loopback names.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostPolicy {
    /// Host names or addresses, lowercase, without a port.
    pub(crate) allowed: Vec<String>,
}

impl HostPolicy {
    /// The policy of a relay listening on `listen`, with `extra` names.
    pub(crate) fn new(listen: IpAddr, extra: &[String]) -> Self {
        let mut allowed: Vec<String> = extra
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if !listen.is_unspecified() && !listen.is_loopback() {
            allowed.push(match listen {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        HostPolicy { allowed }
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        is_loopback_name(&name) || self.allowed.contains(&name)
    }
}

/// The host part of a `Host` header value (`[::1]:80` → `[::1]`, `a:1` → `a`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a request was refused: the status and the message of the body.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: String) -> Refusal {
    (status, message)
}

/// The check of one request's headers; `Err` is the refusal.
pub(crate) fn check(
    policy: &HostPolicy,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !policy.allows(host) {
        return Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {host:?} is not this relay: use 127.0.0.1, localhost or [::1], or start the relay with --allowed-host {}",
                host_name(host)
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let same = origin
            .strip_prefix("http://")
            .is_some_and(|authority| authority.eq_ignore_ascii_case(host));
        if !same {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request from {origin:?} refused: only pages of this relay (http://{host}) may use it"
                ),
            ));
        }
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|len| len.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && matches!(*method, Method::POST | Method::PUT | Method::DELETE) {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a {method} body must be Content-Type: application/json, not {content_type:?}"
                ),
            ));
        }
    }
    Ok(())
}

/// The middleware: [`check`] before anything else.
pub(crate) async fn guard(
    State(policy): State<std::sync::Arc<HostPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    match check(&policy, req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => {
            tracing::warn!(%message, "HTTP request refused");
            (status, axum::Json(json!({ "error": message }))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn hosts() {
        let policy = HostPolicy::new("127.0.0.1".parse().unwrap(), &["relay.lan".to_owned()]);
        for ok in [
            "127.0.0.1:7492",
            "localhost",
            "LOCALHOST:1",
            "[::1]:7492",
            "127.1.2.3",
            "relay.lan:80",
        ] {
            assert!(policy.allows(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:7492",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:1",
            "127.0.0.1.nip.io",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        let on_lan = HostPolicy::new("192.168.1.5".parse().unwrap(), &[]);
        assert!(on_lan.allows("192.168.1.5:7492"));
        assert!(!HostPolicy::new("0.0.0.0".parse().unwrap(), &[]).allows("0.0.0.0"));
    }

    #[test]
    fn origins_and_bodies() {
        let policy = HostPolicy::default();
        let host = (header::HOST, "127.0.0.1:7492");
        let ok =
            |m: Method, h: &[(header::HeaderName, &str)]| check(&policy, &m, &headers(h)).is_ok();
        assert!(ok(Method::GET, std::slice::from_ref(&host)));
        assert!(ok(
            Method::GET,
            &[host.clone(), (header::ORIGIN, "http://127.0.0.1:7492")]
        ));
        assert!(!ok(
            Method::GET,
            &[host.clone(), (header::ORIGIN, "http://evil.example")]
        ));
        assert!(!ok(Method::GET, &[host.clone(), (header::ORIGIN, "null")]));
        assert!(!ok(
            Method::GET,
            &[host.clone(), (header::ORIGIN, "http://127.0.0.1:7493")]
        ));
        let json_body = [
            host.clone(),
            (header::CONTENT_LENGTH, "2"),
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
        ];
        assert!(ok(Method::POST, &json_body));
        let text_body = [
            host.clone(),
            (header::CONTENT_LENGTH, "2"),
            (header::CONTENT_TYPE, "text/plain"),
        ];
        assert!(!ok(Method::POST, &text_body));
        assert!(!ok(
            Method::PUT,
            &[host.clone(), (header::CONTENT_LENGTH, "2")]
        ));
        assert!(ok(
            Method::POST,
            &[host.clone(), (header::CONTENT_LENGTH, "0")]
        ));
        assert!(ok(Method::DELETE, std::slice::from_ref(&host)));
    }
}
