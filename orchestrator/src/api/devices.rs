//! `/v1/devices`: register and list devices.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use weft_protocol::rest::{CreateDevice, DeviceCreated, DeviceView, ErrorBody};

use super::{ApiJson, AppState};
use crate::ApiError;

/// Registered devices with their connection status and load.
#[utoipa::path(get, path = "/v1/devices",
    responses((status = 200, body = Vec<DeviceView>)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(state.engine.devices().await?))
}

/// Register a device. The answer holds its token, shown this once; only a hash is stored.
#[utoipa::path(post, path = "/v1/devices", request_body = CreateDevice,
    responses((status = 201, body = DeviceCreated),
              (status = 400, body = ErrorBody),
              (status = 409, description = "Name taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateDevice>,
) -> Result<(StatusCode, Json<DeviceCreated>), ApiError> {
    let created = state.engine.add_device(body.name, body.kind).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Drain a device: it takes no new work; attempts it is running finish.
#[utoipa::path(post, path = "/v1/devices/{name}/drain",
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn drain(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(state.engine.set_draining(name.into(), true).await?))
}

/// Take a drained device back into service.
#[utoipa::path(post, path = "/v1/devices/{name}/resume",
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(state.engine.set_draining(name.into(), false).await?))
}
