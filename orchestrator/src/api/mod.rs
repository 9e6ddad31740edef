//! The REST API's routes and handlers: requests (`/v1/requests…`), their files
//! (`/v1/requests/{id}/files…`) and devices (`/v1/devices…`), mounted by
//! `crate::http::router` behind the `Host` check and the API-token middleware; and the file
//! routes of agents ([`device_routes`]), which authenticate with the device token instead.
//! The handlers hold only the shared [`AppState`]'s handles.

pub(crate) mod devices;
pub(crate) mod files;
pub(crate) mod requests;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};

use crate::http::AppState;

/// The REST API's routes, each needing the API token (the caller adds the middleware).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/requests", get(requests::list).post(requests::submit))
        .route("/v1/requests/{id}", get(requests::get_one))
        .route("/v1/requests/{id}/events", get(requests::events))
        .route("/v1/requests/{id}/edits", post(requests::edit))
        .route("/v1/requests/{id}/cancel", post(requests::cancel))
        .route("/v1/requests/{id}/files", get(files::list))
        .route("/v1/requests/{id}/files/{sha256}", get(files::download))
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

/// The routes agents move files with, each authenticated by the device token (not behind
/// the API-token middleware). Uploads stream into the blob store, which enforces
/// `--max-upload-bytes` itself, so the router's body limit is lifted for that route alone.
pub fn device_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/attempts/{attempt}/files/{*name}",
            put(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/blobs/{sha256}", get(files::fetch_blob))
}
