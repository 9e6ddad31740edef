//! The OpenAPI document, generated from the handlers and wire types.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use weft_protocol::rest::{
    AttemptView, CreateDevice, DeviceCreated, DeviceRemoved, DeviceStatus, DeviceView, EdgeView,
    EditBatch, EditOp, ErrorBody, Event, EventKind, GraphSpec, LateResult, RequestView,
    SubmitRequest, TaskSpec, TaskView,
};
use weft_protocol::{
    Action, AttemptStatus, Condition, ConditionOp, ConditionSource, EdgeKind, ErrorInfo,
    RequestStatus, RetryPolicy, TaskOutput, TaskStatus,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "weft", description = "Multi-device agent task orchestrator"),
    paths(
        super::requests::submit,
        super::requests::list,
        super::requests::get_one,
        super::requests::events,
        super::requests::edit,
        super::requests::cancel,
        super::requests::cancel_task,
        super::devices::list,
        super::devices::add,
        super::devices::drain,
        super::devices::resume,
        super::devices::remove,
        super::devices::rotate,
    ),
    components(schemas(
        SubmitRequest, RequestView, TaskView, AttemptView, EdgeView, DeviceView, DeviceStatus,
        CreateDevice, DeviceCreated, DeviceRemoved, ErrorBody, ErrorInfo, Event, EventKind, Action, TaskOutput,
        TaskStatus, AttemptStatus, RequestStatus, EdgeKind, RetryPolicy, LateResult,
        EditBatch, EditOp, GraphSpec, TaskSpec, Condition, ConditionOp, ConditionSource,
        weft_protocol::wire::ResultStatus, weft_protocol::rest::LlmUsageView,
    )),
    modifiers(&BearerAuth)
)]
#[derive(Debug)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi().merge_from(crate::web::WebApiDoc::openapi()))
}
