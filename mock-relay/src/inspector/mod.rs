//! The inspector: a live page at `/` that shows the connected runners and
//! the traffic, sends any event and shows its reply, opens terminals,
//! injects faults, and turns a recorded stretch of traffic into a scenario.
//!
//! The page is plain HTML, CSS and JavaScript from `assets/`, embedded in
//! the binary; nothing is built or fetched from the network. It talks to
//! the relay through the REST control API only, with same-origin `fetch`
//! and JSON bodies, plus two routes of its own under `/api`:
//!
//! | route | gives |
//! |---|---|
//! | `GET /api/events?since=N` | Server-Sent Events: `record` (one transcript record, secrets masked, from `seq >= N`), `runners` (the registry, after every change) |
//! | `GET /api/protocol` | every event's direction and JSON Schema, and a fixture payload for each event the relay sends |
//!
//! Both sit behind the control API's token check like every `/api` route.

mod assets;
mod events;
mod protocol;

use axum::Router;
use axum::routing::get;

use crate::api::AppState;

/// The page and its assets (no token: they hold no data).
pub(crate) fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(assets::index))
        .route("/inspector/{file}", get(assets::asset))
}

/// The page's data routes, nested under `/api` with the control API.
pub(crate) fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events::events))
        .route("/protocol", get(protocol::protocol))
}
