//! The REST API's routes and handlers: requests (`/v1/requests…`) and devices
//! (`/v1/devices…`). Mounted by `crate::http::router` behind the `Host` check and the
//! API-token middleware; the handlers hold only the shared [`AppState`]'s handles.

pub(crate) mod devices;
pub(crate) mod requests;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::http::AppState;

/// The REST API's routes, each needing the API token (the caller adds the middleware).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/requests", get(requests::list).post(requests::submit))
        .route("/v1/requests/{id}", get(requests::get_one))
        .route("/v1/requests/{id}/events", get(requests::events))
        .route("/v1/requests/{id}/edits", post(requests::edit))
        .route("/v1/requests/{id}/cancel", post(requests::cancel))
        .route(
            "/v1/requests/{id}/tasks/{task_id}/cancel",
            post(requests::cancel_task),
        )
        .route(
            "/v1/requests/{id}/tasks/{task_id}",
            delete(requests::delete_task),
        )
        .route("/v1/devices", get(devices::list).post(devices::add))
        .route("/v1/devices/{name}/drain", post(devices::drain))
        .route("/v1/devices/{name}/resume", post(devices::resume))
        .route("/v1/devices/{name}", delete(devices::remove))
        .route("/v1/devices/{name}/rotate", post(devices::rotate))
}
