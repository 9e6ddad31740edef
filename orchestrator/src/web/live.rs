//! Live streams (Server-Sent Events) for the web view: device changes, and the events of
//! every request as they happen.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use weft_protocol::rest::{DeviceView, Event};

use crate::ApiError;
use crate::engine::Handle;
use crate::http::AppState;

fn json_event(name: &'static str, data: &impl serde::Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .data(serde_json::to_string(data).unwrap_or_default())
}

struct DeviceFeed {
    engine: Handle,
    pending: VecDeque<SseEvent>,
    live: broadcast::Receiver<DeviceView>,
}

impl DeviceFeed {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(ev);
            }
            match self.live.recv().await {
                Ok(d) => return Some(json_event("device", &d)),
                Err(RecvError::Lagged(_)) => {
                    // Missed changes: send the whole list again.
                    let all = self.engine.devices().await.ok()?;
                    self.pending.push_back(json_event("devices", &all));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// Server-Sent Events about devices: first `devices` (every device's view, as in
/// `GET /v1/devices`), then a `device` event with a device's new view each time it connects,
/// disconnects, is drained or resumed, is registered, or starts or ends an attempt. A
/// subscriber that falls behind gets a fresh `devices` list.
#[utoipa::path(get, path = "/v1/devices/events",
    responses((status = 200, description = "text/event-stream of `devices` (DeviceView list) and `device` (DeviceView) events")),
    security(("bearer" = [])))]
pub async fn device_events(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Subscribe first, then read the list: nothing can fall in between.
    let live = state.engine.subscribe_devices();
    let all = state.engine.devices().await?;
    let feed = DeviceFeed {
        engine: state.engine.clone(),
        pending: VecDeque::from([json_event("devices", &all)]),
        live,
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        let ev = f.next().await?;
        Some((Ok(ev), f))
    });
    let stream = stream.take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Server-Sent Events of every request, live only (no journal replay): each event as in
/// `GET /v1/requests/{id}/events`. A subscriber that falls behind gets a `lagged` event and
/// should re-read `GET /v1/requests`.
#[utoipa::path(get, path = "/v1/events",
    responses((status = 200, description = "text/event-stream of Event, and `lagged`")),
    security(("bearer" = [])))]
pub async fn all_events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let live = state.engine.subscribe();
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        let ev = match live.recv().await {
            Ok(ev) => to_sse(&ev),
            Err(RecvError::Lagged(n)) => json_event("lagged", &serde_json::json!({"missed": n})),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(ev), live))
    });
    let stream = stream.take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn to_sse(ev: &Event) -> SseEvent {
    SseEvent::default()
        .id(ev.seq.to_string())
        .event(ev.kind.name())
        .data(serde_json::to_string(ev).unwrap_or_default())
}
