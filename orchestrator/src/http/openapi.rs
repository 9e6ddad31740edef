//! The OpenAPI document, generated from the handlers and wire types.
//!
//! Each handler's `#[utoipa::path]` lists the answers of its own; [`CommonAnswers`] adds those
//! the layers around every handler give (the Host check, the API-token middleware, the JSON
//! body extractor, a standby replica's gate), so that no route can forget one. `tests/it/contract.rs` runs schemathesis
//! against the served document.

use std::sync::LazyLock;

use axum::Json;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder, Schema};
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
        crate::api::requests::submit,
        crate::api::requests::list,
        crate::api::requests::get_one,
        crate::api::requests::events,
        crate::api::requests::edit,
        crate::api::requests::cancel,
        crate::api::requests::cancel_task,
        crate::api::requests::delete_task,
        crate::api::files::list,
        crate::api::files::download,
        crate::api::files::upload,
        crate::api::files::fetch_blob,
        crate::api::devices::list,
        crate::api::devices::add,
        crate::api::devices::drain,
        crate::api::devices::resume,
        crate::api::devices::remove,
        crate::api::devices::rotate,
        super::router::healthz,
        super::router::metrics,
        serve,
    ),
    components(schemas(
        SubmitRequest, RequestView, TaskView, AttemptView, EdgeView, DeviceView, DeviceStatus,
        CreateDevice, DeviceCreated, DeviceRemoved, ErrorBody, ErrorInfo, Event, EventKind, Action, TaskOutput,
        TaskStatus, AttemptStatus, RequestStatus, EdgeKind, RetryPolicy, LateResult,
        EditBatch, EditOp, GraphSpec, TaskSpec, Condition, ConditionOp, ConditionSource,
        weft_protocol::wire::ResultStatus, weft_protocol::rest::LlmUsageView,
        weft_protocol::FileRef, weft_protocol::FilesSpec, weft_protocol::files::StoredFile,
        weft_protocol::files::RequestFiles, weft_protocol::files::TaskFile,
        super::router::Health, super::router::HealthTls,
    )),
    modifiers(&BearerAuth, &ClosedVariants)
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
        // The agents' file routes: a device token, not the API token.
        components.add_security_scheme(
            "device",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// utoipa writes `additionalProperties: false` for a struct under `deny_unknown_fields` but not
/// for the variants of such an enum; these inbound enums refuse unknown fields in every variant.
#[derive(Debug)]
struct ClosedVariants;

impl Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["Action", "EditOp"] {
            let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) else {
                continue;
            };
            for variant in &mut one_of.items {
                if let RefOr::T(Schema::Object(object)) = variant {
                    object.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// The answers the layers around the handlers give, added to every operation they apply to:
/// `421` to every route (the Host check); `401` and `429` to every route that needs the API
/// token (the middleware, and its limit on failed authentications), `403` to those of them
/// that change state (a browser session's CSRF and Origin checks); `400`, `408`, `413` and
/// `415` to every route that takes a JSON body ([`super::ApiJson`]). A status the handler
/// documents itself keeps the handler's description.
#[derive(Debug)]
struct CommonAnswers;

/// One shared answer: its status, its name under `components/responses`, what it means.
const COMMON: [(&str, &str, &str); 8] = [
    (
        "400",
        "BadRequest",
        "`invalid_json`: the body is not the JSON the route takes; `invalid_body`",
    ),
    (
        "401",
        "Unauthorized",
        "`missing_api_token`, `bad_api_token`, `session_expired`",
    ),
    (
        "403",
        "Forbidden",
        "A browser session's call without its CSRF token or from another origin",
    ),
    (
        "408",
        "BodyTimeout",
        "`body_timeout`: the body did not arrive in time",
    ),
    (
        "413",
        "BodyTooLarge",
        "`body_too_large`: the body is larger than 1 MiB",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "`unsupported_media_type`: the body is not sent as `application/json`",
    ),
    (
        "421",
        "MisdirectedRequest",
        "`host_not_allowed`: a `Host` this server does not answer to",
    ),
    (
        "429",
        "RateLimited",
        "`rate_limited`: too many failed authentications from this address; wait `Retry-After` seconds",
    ),
];

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description) in COMMON {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(error_answer(status, description)));
        }
        components
            .responses
            .insert("SentToLeader".to_owned(), RefOr::T(sent_to_leader()));
        components.responses.insert(
            "NoLeader".to_owned(),
            RefOr::T(error_answer(
                "503",
                "`no_leader`: a standby replica, while no replica leads (a takeover); try again \
                 after `Retry-After` seconds",
            )),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            use axum::http::Method;
            let ops = [
                (&mut item.get, Method::GET),
                (&mut item.post, Method::POST),
                (&mut item.put, Method::PUT),
                (&mut item.patch, Method::PATCH),
                (&mut item.delete, Method::DELETE),
            ];
            for (op, method) in ops {
                if let Some(op) = op {
                    add_common(op, method != Method::GET);
                    if !crate::replica::serves_on_standby(&method, path) {
                        add_standby(op);
                    }
                }
            }
        }
    }
}

/// What a standby replica answers on a route only the leader serves (docs/replicas.md).
fn add_standby(op: &mut Operation) {
    for (status, name) in [("307", "SentToLeader"), ("503", "NoLeader")] {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
    }
}

/// A standby's `307`: the same call, to the leader.
fn sent_to_leader() -> Response {
    let url = Schema::Object(ObjectBuilder::new().schema_type(Type::String).build());
    ResponseBuilder::new()
        .description(
            "A standby replica (docs/replicas.md): send the same call to `Location`, the \
             leader's URL with this path, if it is one of the servers you were given",
        )
        .header("Location", Header::new(url))
        .build()
}

fn add_common(op: &mut Operation, changes_state: bool) {
    let protected = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let takes_json = op.request_body.is_some();
    for (status, name, _) in COMMON {
        let applies = match status {
            "421" => true,
            "401" | "429" => protected,
            "403" => protected && changes_state,
            _ => takes_json,
        };
        if applies {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
        }
    }
}

fn error_answer(status: &str, description: &str) -> Response {
    let body = Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))));
    let answer = ResponseBuilder::new()
        .description(description)
        .content("application/json", body);
    if status == "429" || status == "503" {
        let seconds = Schema::Object(ObjectBuilder::new().schema_type(Type::Integer).build());
        return answer.header("Retry-After", Header::new(seconds)).build();
    }
    answer.build()
}

/// OpenAPI links: where the ids a created request or device answers with can be used next, so
/// that a client (and schemathesis's stateful phase) can follow them. Written into the JSON
/// document: utoipa 5.5's `Link` serializes `operation_id` in snake case, which no reader takes.
type LinkSet = (
    &'static str,
    &'static [(&'static str, &'static [(&'static str, &'static str)])],
);

const REQUEST_ID: (&str, &str) = ("id", "$response.body#/id");
const FIRST_TASK: (&str, &str) = ("task_id", "$response.body#/tasks/0/id");
const DEVICE_NAME: (&str, &str) = ("name", "$response.body#/name");

/// From the `201` of a `POST` (a JSON pointer to it) to (operation, its parameters).
const LINKS: [LinkSet; 2] = [
    (
        "/paths/~1v1~1requests/post/responses/201",
        &[
            ("get_one", &[REQUEST_ID]),
            ("graph_layout", &[REQUEST_ID]),
            ("edit", &[REQUEST_ID]),
            ("cancel", &[REQUEST_ID]),
            ("cancel_task", &[REQUEST_ID, FIRST_TASK]),
            ("delete_task", &[REQUEST_ID, FIRST_TASK]),
        ],
    ),
    (
        "/paths/~1v1~1devices/post/responses/201",
        &[
            ("drain", &[DEVICE_NAME]),
            ("resume", &[DEVICE_NAME]),
            ("rotate", &[DEVICE_NAME]),
            ("remove", &[DEVICE_NAME]),
        ],
    ),
];

fn add_links(doc: &mut serde_json::Value) {
    for (answer, targets) in LINKS {
        let Some(answer) = doc.pointer_mut(answer).and_then(|a| a.as_object_mut()) else {
            continue;
        };
        let links = targets
            .iter()
            .map(|(operation, params)| {
                let params: serde_json::Map<_, _> = params
                    .iter()
                    .map(|(name, at)| ((*name).to_owned(), serde_json::json!(at)))
                    .collect();
                let link = serde_json::json!({"operationId": operation, "parameters": params});
                ((*operation).to_owned(), link)
            })
            .collect();
        answer.insert("links".to_owned(), serde_json::Value::Object(links));
    }
}

/// The whole document: the REST API and the web view's API routes.
pub fn document() -> &'static serde_json::Value {
    static DOC: LazyLock<serde_json::Value> = LazyLock::new(|| {
        let mut doc = ApiDoc::openapi().merge_from(crate::web::WebApiDoc::openapi());
        CommonAnswers.modify(&mut doc);
        let mut doc = serde_json::to_value(doc).unwrap_or_default();
        add_links(&mut doc);
        doc
    });
    &DOC
}

/// This document.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", body = Object)),
    security(("bearer" = [])))]
pub async fn serve() -> Json<&'static serde_json::Value> {
    Json(document())
}
