//! The page's files, embedded at build time.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;

/// (file name, content type, content) of every asset under `/inspector/`.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("assets/app.css")),
    ("main.js", JS, include_str!("assets/main.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("util.js", JS, include_str!("assets/util.js")),
    ("schema.js", JS, include_str!("assets/schema.js")),
    ("correlate.js", JS, include_str!("assets/correlate.js")),
    ("runners.js", JS, include_str!("assets/runners.js")),
    ("traffic.js", JS, include_str!("assets/traffic.js")),
    ("send.js", JS, include_str!("assets/send.js")),
    ("terminal.js", JS, include_str!("assets/terminal.js")),
    ("screen.js", JS, include_str!("assets/screen.js")),
    ("faults.js", JS, include_str!("assets/faults.js")),
    ("record.js", JS, include_str!("assets/record.js")),
    ("toml.js", JS, include_str!("assets/toml.js")),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const INDEX: &str = include_str!("assets/index.html");

/// Nothing the page loads comes from elsewhere, and it runs no inline code.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

fn respond(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    respond("text/html; charset=utf-8", INDEX)
}

pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => respond(content_type, body),
        None => ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no inspector asset {file:?}"),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|(name, _, _)| *name).collect();
        let sources = ASSETS.iter().map(|(_, _, body)| *body).chain([INDEX]);
        let mut imports = 0;
        for source in sources {
            for part in source.split("./").skip(1) {
                let Some(end) = part.find(".js\"").or_else(|| part.find(".js'")) else {
                    continue;
                };
                let name = format!("{}.js", &part[..end]);
                if name.contains(['/', ' ', '\n']) {
                    continue;
                }
                imports += 1;
                assert!(
                    served.contains(&name.as_str()),
                    "{name} is imported but not served"
                );
            }
        }
        assert!(imports > 5, "found only {imports} imports");
        assert!(INDEX.contains("/inspector/main.js"));
        assert!(INDEX.contains("/inspector/app.css"));
    }
}
