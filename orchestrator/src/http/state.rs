//! What every handler shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use weft_planner::Planner;

use crate::blobs::BlobStore;
use crate::engine::Handle;
use crate::listen::tls::ServerTls;
use crate::listen::{AuthLimiter, ConnLimiter};
use crate::store::Store;
use crate::web::Web;
use crate::ws::ConnSettings;

/// Shared state of every handler. Holds handles only; the engine owns the live state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Handle,
    pub store: Store,
    pub planner: Arc<dyn Planner>,
    pub api_token_hash: Arc<str>,
    pub allowed_hosts: Arc<[String]>,
    pub conn: ConnSettings,
    pub shutdown: CancellationToken,
    /// The web view's sessions and layout cache.
    pub web: Web,
    /// Failed authentications per address.
    pub auth_limiter: Arc<AuthLimiter>,
    /// Open connections (for `/metrics`).
    pub conns: Arc<ConnLimiter>,
    /// The listener's TLS, if on.
    pub tls: Option<Arc<ServerTls>>,
    /// Plain text on a non-loopback address (`--insecure-plaintext`).
    pub insecure_plaintext: bool,
    /// Where the files that travel between devices are stored.
    pub blobs: Arc<dyn BlobStore>,
    /// The largest file a device may upload (`--max-upload-bytes`).
    pub max_upload_bytes: u64,
    /// Whether this process leads (runs the engine) or is a standby (docs/replicas.md).
    pub role: crate::replica::Role,
    /// On a standby: where the leader is, as last read from the lease.
    pub leader: crate::replica::LeaderUrl,
}
