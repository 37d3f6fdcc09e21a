//! `GET /api/events`: the transcript and the registry, live, as
//! Server-Sent Events.
//!
//! The stream starts with a `runners` event, then sends every record from
//! `since` on as a `record` event (`id:` is its sequence number), in pages
//! of at most [`PAGE`] records so that a long backlog never sits in memory
//! twice, and a fresh `runners` event after each page that may have changed
//! the registry. Secrets are masked before anything leaves the relay.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream::{self, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::api::{ApiError, AppState};
use crate::{RecordDirection, RelayHandle};

/// At most this many records per read of the transcript.
const PAGE: usize = 500;

/// How often an idle stream sends a comment, so that proxies and the
/// browser keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    since: Option<u64>,
}

struct Cursor {
    relay: RelayHandle,
    latest: watch::Receiver<u64>,
    from: u64,
    started: bool,
}

pub(super) async fn events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    let cursor = Cursor {
        latest: state.relay.shared.recorder.subscribe(),
        relay: state.relay,
        from: query.since.unwrap_or(0),
        started: false,
    };
    let pages = stream::unfold(cursor, |mut cursor| async move {
        let events = next_page(&mut cursor).await?;
        Some((stream::iter(events.into_iter().map(Ok)), cursor))
    });
    Ok(Sse::new(pages.flatten()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The next events to send, waiting for new records when there are none;
/// `None` once the relay is gone.
async fn next_page(cursor: &mut Cursor) -> Option<Vec<Event>> {
    if !cursor.started {
        cursor.started = true;
        return Some(vec![runners_event(&cursor.relay)]);
    }
    loop {
        // Marked seen before reading, so a record pushed meanwhile wakes us.
        cursor.latest.borrow_and_update();
        let records = cursor.relay.shared.recorder.page(cursor.from, PAGE);
        if records.is_empty() {
            cursor.latest.changed().await.ok()?;
            continue;
        }
        let mut events = Vec::with_capacity(records.len() + 1);
        let mut registry_changed = false;
        for record in records {
            cursor.from = cursor.from.max(record.seq + 1);
            registry_changed |= changes_registry(&record.direction, &record.event);
            let record = record.masked();
            let event = Event::default()
                .event("record")
                .id(record.seq.to_string())
                .json_data(&record);
            match event {
                Ok(event) => events.push(event),
                Err(err) => tracing::warn!(seq = record.seq, %err, "record not sent to the page"),
            }
        }
        if registry_changed {
            events.push(runners_event(&cursor.relay));
        }
        return Some(events);
    }
}

/// Whether a record may have changed what the registry shows.
fn changes_registry(direction: &RecordDirection, event: &str) -> bool {
    *direction == RecordDirection::Connection
        || !matches!(
            event,
            "terminal_data" | "terminal_input" | "runner_session_event"
        )
}

fn runners_event(relay: &RelayHandle) -> Event {
    let runners = json!(relay.runners());
    Event::default()
        .event("runners")
        .json_data(runners)
        .unwrap_or_else(|_| Event::default().event("runners").data("[]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_output_does_not_resend_the_registry() {
        assert!(!changes_registry(&RecordDirection::In, "terminal_data"));
        assert!(!changes_registry(&RecordDirection::Out, "terminal_input"));
        assert!(changes_registry(&RecordDirection::In, "runner_heartbeat"));
        assert!(changes_registry(&RecordDirection::Connection, "disconnect"));
    }
}
