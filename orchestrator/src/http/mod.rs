//! The HTTP surface, assembled: the shared [`AppState`], the [`router`] that mounts the REST
//! API (`crate::api`), the web view (`crate::web`) and the agent WebSocket route on one axum
//! router, and the layers every route passes through ([`auth`]: the `Host` check and the
//! API-token middleware). `api` and `web` each bring their routes and handlers; neither
//! imports the other.
//!
//! Every route checks the `Host` header against the server's own addresses (DNS rebinding);
//! every route except `/healthz`, the agent endpoint (which authenticates with its device
//! token in the `hello`), the agents' file routes (the device token as Bearer,
//! `crate::api::device_routes`) and the web view's page routes needs
//! `Authorization: Bearer <api token>`, or the web view's session cookie (with CSRF checks on
//! state-changing calls, see `crate::web::session`).

mod auth;
mod extract;
mod openapi;
mod router;
mod state;

pub(crate) use auth::rate_limited;
pub use extract::{ApiJson, ApiQuery};
pub use openapi::ApiDoc;
pub use router::router;
pub use state::AppState;

/// Largest accepted REST body, in bytes.
pub const BODY_LIMIT: usize = 1024 * 1024;
