//! `/v1/requests`: submit, list, get, and stream events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;
use weft_protocol::RequestId;
use weft_protocol::TaskId;
use weft_protocol::files::{StoredFile, TaskFile};
use weft_protocol::rest::{
    EditBatch, ErrorBody, Event, EventKind, MAX_REQUEST_TEXT_BYTES, MAX_SUBMIT_WAIT_SECS,
    RequestView, SubmitRequest,
};

use crate::ApiError;
use crate::engine::Planned;
use crate::http::{ApiJson, ApiQuery, AppState};
use crate::store::Store;

/// Plans `text` with the server's planner and checks the plan. LLM calls go to `calls`.
async fn plan(
    state: &AppState,
    text: &str,
    calls: &weft_planner::CallLog,
) -> Result<weft_planner::Plan, ApiError> {
    let devices = state.engine.planner_devices().await?;
    let plan = state
        .planner
        .plan(weft_planner::PlanInput {
            text,
            devices: &devices,
            calls,
        })
        .await?;
    plan.validate(&weft_planner::Limits::default())?;
    Ok(plan)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Answer when the request has ended (`201` with its final view), or once this many
    /// seconds have passed since the call arrived (`202` with the view as it is then, still
    /// running). 0 to 300. Without it the answer comes as soon as the request is created.
    #[param(minimum = 0, maximum = 300)]
    wait: Option<u64>,
}

/// Submit a request: it is planned into a graph and starts running. With `?wait=S`, the
/// answer waits until the request has ended, or `S` seconds at most.
#[utoipa::path(post, path = "/v1/requests", request_body = SubmitRequest,
    params(SubmitQuery),
    responses(
        (status = 201, description = "Planned and running; with `?wait=`: the request has ended (succeeded, failed or cancelled) and this is its final view", body = RequestView),
        (status = 202, description = "With `?wait=`: the wait ran out (or the server began shutting down) before the request ended; the view as it is now, still running: follow it with `GET /v1/requests/{id}` or its events", body = RequestView),
        (status = 400, description = "Malformed body or empty text; `invalid_query`: `wait` is not a whole number of seconds from 0 to 300, or another parameter was given", body = ErrorBody),
        (status = 413, description = "Text or plan too large", body = ErrorBody),
        (status = 422, description = "Not plannable, or names an unknown device; `plan_invalid`: the LLM planner's plan was still invalid after its repair rounds; `plan_refused`: the LLM planner refused the request (destructive, or a device that is not there)", body = ErrorBody),
        (status = 502, description = "The LLM planner's endpoint failed: `llm_unreachable`, `llm_http_error`, `llm_bad_response`, `llm_cassette_miss`", body = ErrorBody),
        (status = 504, description = "`llm_timeout`: the LLM planner's endpoint did not answer in time", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SubmitQuery>,
    ApiJson(body): ApiJson<SubmitRequest>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    // The wait counts from the call's arrival: planning is part of it.
    let until = match q.wait {
        Some(s) if s > MAX_SUBMIT_WAIT_SECS => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "wait is {s}; it must be a whole number of seconds from 0 to {MAX_SUBMIT_WAIT_SECS}"
                ),
            ));
        }
        Some(s) => Some(tokio::time::Instant::now() + Duration::from_secs(s)),
        None => None,
    };
    let text = body.text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "empty_request",
            "the request text is empty",
        ));
    }
    if text.len() > MAX_REQUEST_TEXT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "the request text is {} bytes; the limit is {MAX_REQUEST_TEXT_BYTES}",
                text.len()
            ),
        ));
    }
    // The LLM calls made while planning are stored whatever happens: with the request if one
    // is created, else without one.
    let calls = weft_planner::CallLog::default();
    let (planner, planned) = match body.graph {
        Some(graph) => ("given", Planned::Given(graph)),
        None => match plan(&state, text, &calls).await {
            Ok(plan) => (state.planner.name(), Planned::Plan(plan)),
            Err(e) => {
                state.store.record_llm_calls(None, calls.take()).await;
                return Err(e);
            }
        },
    };
    let (text, budget) = (text.to_owned(), body.turn_budget);
    let created = match until {
        None => state
            .engine
            .create(text, planner, planned, budget)
            .await
            .map(|view| (view, None)),
        Some(_) => state
            .engine
            .create_followed(text, planner, planned, budget)
            .await
            .map(|(view, events)| (view, Some(events))),
    };
    let (view, events) = match created {
        Ok(created) => created,
        Err(e) => {
            state.store.record_llm_calls(None, calls.take()).await;
            return Err(e.into());
        }
    };
    let calls = calls.take();
    let recorded = !calls.is_empty();
    if recorded {
        state.store.record_llm_calls(Some(&view.id), calls).await;
    }
    if let (Some(until), Some(mut events)) = (until, events) {
        let ended = tokio::select! {
            () = ended(&mut events) => true,
            () = tokio::time::sleep_until(until) => false,
            () = state.shutdown.cancelled() => false,
        };
        drop(events);
        let view = self::view(&state, &view.id).await?;
        tracing::debug!(request = %view.id, ended, status = view.status.as_str(), "waited submit answered");
        let status = if view.status.is_terminal() {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        return Ok((status, Json(view)));
    }
    if !recorded {
        return Ok((StatusCode::CREATED, Json(view)));
    }
    // With LLM calls, the view carries their token totals: read it back once they are stored.
    let view = state.store.request_view(&view.id).await?.ok_or_else(|| {
        ApiError::from(crate::Error::Corrupt(format!(
            "request {} vanished",
            view.id
        )))
    })?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Returns once `events` has carried the request's final status. Its channel closes only after
/// that (or if the hub dropped it, when the store's view tells).
async fn ended(events: &mut crate::engine::RequestEvents) {
    loop {
        match events.recv().await {
            Ok(ev) => {
                if let EventKind::RequestStatus { status, .. } = &ev.kind
                    && status.is_terminal()
                {
                    return;
                }
            }
            // The final status is the request's last event: a lagging subscriber still gets it.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The request as `GET /v1/requests/{id}` shows it: with each task's files, read with it.
async fn view(state: &AppState, id: &RequestId) -> Result<RequestView, ApiError> {
    let (mut view, files) = state
        .store
        .request_view_and_files(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    with_files(state, &mut view, files).await;
    Ok(view)
}

/// Lists under each task of `view` the files it produced, with their download path while
/// their bytes are stored (retention deletes them `--artifact-retention` after the request).
async fn with_files(state: &AppState, view: &mut RequestView, files: Vec<StoredFile>) {
    for f in files {
        let stored = match crate::blobs::BlobId::parse(&f.sha256) {
            Ok(blob) => state.blobs.stat(&blob).await.ok().flatten().is_some(),
            Err(_) => false,
        };
        if let Some(task) = view.tasks.iter_mut().find(|t| t.id == f.task_id) {
            task.files.push(TaskFile {
                url: stored.then(|| TaskFile::url(&view.id, &f.sha256)),
                name: f.name,
                size: f.size,
                sha256: f.sha256,
            });
        }
    }
}

/// Edit a running request's graph: a batch of ops applied atomically, or not at all.
#[utoipa::path(post, path = "/v1/requests/{id}/edits", request_body = EditBatch,
    params(("id" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "Applied; the graph's version went up by one", body = RequestView),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`version_conflict` (stale expected_version), `request_finished`, `request_cancelling`", body = ErrorBody),
        (status = 422, description = "An op was refused (the message names it); nothing was applied", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(batch): ApiJson<EditBatch>,
) -> Result<Json<RequestView>, ApiError> {
    let id = RequestId(id);
    state.engine.edit(id.clone(), batch).await?;
    Ok(Json(view(&state, &id).await?))
}

/// Cancel a request: tasks that have not started are cancelled at once, running ones are
/// told to stop; the request ends `cancelled`.
#[utoipa::path(post, path = "/v1/requests/{id}/cancel",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 202, body = RequestView), (status = 404, body = ErrorBody),
              (status = 409, description = "`request_finished`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let id = RequestId(id);
    state.engine.cancel(id.clone(), None).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&state, &id).await?)))
}

/// Cancel one task (also `DELETE /v1/requests/{id}/tasks/{task_id}`): downstream tasks that
/// needed it to succeed are skipped.
#[utoipa::path(post, path = "/v1/requests/{id}/tasks/{task_id}/cancel",
    operation_id = "cancel_task",
    params(("id" = String, Path, description = "Request id"),
           ("task_id" = String, Path, description = "Task id")),
    responses((status = 202, body = RequestView), (status = 404, body = ErrorBody),
              (status = 409, description = "`task_finished`, `request_finished`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel_task(
    State(state): State<AppState>,
    Path((id, task)): Path<(String, String)>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let id = RequestId(id);
    state.engine.cancel(id.clone(), Some(TaskId(task))).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&state, &id).await?)))
}

/// Cancel one task, as `POST /v1/requests/{id}/tasks/{task_id}/cancel` does.
#[utoipa::path(delete, path = "/v1/requests/{id}/tasks/{task_id}",
    operation_id = "delete_task",
    params(("id" = String, Path, description = "Request id"),
           ("task_id" = String, Path, description = "Task id")),
    responses((status = 202, body = RequestView), (status = 404, body = ErrorBody),
              (status = 409, description = "`task_finished`, `request_finished`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_task(
    state: State<AppState>,
    path: Path<(String, String)>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    cancel_task(state, path).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The most recent requests, newest first (`?limit=N`, 1 to 500, default 50).
#[utoipa::path(get, path = "/v1/requests",
    operation_id = "list_requests",
    params(ListQuery),
    responses((status = 200, body = Vec<RequestView>),
              (status = 400, description = "`invalid_query`: `limit` is not a number from 1 to 500, or another parameter was given", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit is {limit}; it must be from 1 to 500"),
        ));
    }
    Ok(Json(state.store.list_requests(limit).await?))
}

fn not_found(id: &RequestId) -> ApiError {
    ApiError::not_found("request_not_found", format!("no request with id {id}"))
}

/// One request with its graph, tasks, attempts and outputs.
#[utoipa::path(get, path = "/v1/requests/{id}",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(view(&state, &RequestId(id)).await?))
}

/// Server-Sent Events of every state change of a request, from its start. The stream ends
/// after the request's final status (and the events the journal holds after it: retention's
/// `files_deleted`).
#[utoipa::path(get, path = "/v1/requests/{id}/events",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, description = "text/event-stream of Event", body = Event),
              (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let id = RequestId(id);
    // Subscribe first, then read the journal: nothing can fall in between.
    let live = state.engine.subscribe_request(&id);
    let past = state.store.events_after(&id, 0).await?;
    // Every request's journal starts with its creation.
    if past.is_empty() && !state.store.request_exists(&id).await? {
        return Err(not_found(&id));
    }
    let feed = Feed {
        store: state.store.clone(),
        id,
        past: past.into_iter().map(Arc::new).collect(),
        live,
        last: 0,
        done: false,
    };
    let shutdown = state.shutdown.clone();
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        let ev = f.next().await?;
        Some((Ok(to_sse(&ev)), f))
    });
    let stream = futures_util::StreamExt::take_until(stream, shutdown.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn to_sse(ev: &Event) -> SseEvent {
    SseEvent::default()
        .id(ev.seq.to_string())
        .event(ev.kind.name())
        .data(serde_json::to_string(ev).unwrap_or_default())
}

/// The journal of one request followed by its live events, without gaps or repeats.
struct Feed {
    store: Store,
    id: RequestId,
    past: VecDeque<Arc<Event>>,
    live: crate::engine::RequestEvents,
    last: u64,
    done: bool,
}

impl Feed {
    /// After the final status only what the journal already holds is sent (retention's
    /// `files_deleted`, for a request that ended long ago); then the stream ends.
    async fn next(&mut self) -> Option<Arc<Event>> {
        loop {
            let ev = match self.past.pop_front() {
                Some(ev) => ev,
                None if self.done => return None,
                None => match self.live.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(
                            missed = n,
                            "event subscriber lagged; re-reading the journal"
                        );
                        self.past = self
                            .store
                            .events_after(&self.id, self.last)
                            .await
                            .ok()?
                            .into_iter()
                            .map(Arc::new)
                            .collect();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if ev.request_id != self.id || ev.seq <= self.last {
                continue;
            }
            self.last = ev.seq;
            if let EventKind::RequestStatus { status, .. } = &ev.kind
                && status.is_terminal()
            {
                self.done = true;
            }
            return Some(ev);
        }
    }
}
