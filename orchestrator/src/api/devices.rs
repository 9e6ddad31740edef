//! `/v1/devices`: register, list, drain, remove devices and rotate their tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use weft_protocol::rest::{CreateDevice, DeviceCreated, DeviceRemoved, DeviceView, ErrorBody};

use crate::ApiError;
use crate::http::{ApiJson, AppState};

/// Registered devices with their connection status and load.
#[utoipa::path(get, path = "/v1/devices",
    operation_id = "list_devices",
    responses((status = 200, body = Vec<DeviceView>)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<DeviceView>>, ApiError> {
    if state.role == crate::replica::Role::Standby {
        // From what the leader wrote (docs/replicas.md).
        let live = state.leader.get().is_some();
        return Ok(Json(state.store.device_views(live).await?));
    }
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

/// Remove a device. Its token is refused from now on (`refused: device_removed`); a live
/// connection is told so and closed; the attempts it held end `lost` and their tasks are placed
/// again (or fail, as their retry policy says).
#[utoipa::path(delete, path = "/v1/devices/{name}",
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceRemoved), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceRemoved>, ApiError> {
    Ok(Json(state.engine.remove_device(name.into()).await?))
}

/// Give a device a new token, shown this once. The old token is refused from now on
/// (`refused: token_rotated`); a connection made with it is told so and closed, and the
/// attempts the device held are placed again. The device's owner enrolls it again with the
/// new token.
#[utoipa::path(post, path = "/v1/devices/{name}/rotate",
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceCreated), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeviceCreated>, ApiError> {
    Ok(Json(state.engine.rotate_token(name.into()).await?))
}
