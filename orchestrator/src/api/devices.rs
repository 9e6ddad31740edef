//! `/v1/devices`: register and list devices.

use axum::Json;
use axum::extract::State;
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
