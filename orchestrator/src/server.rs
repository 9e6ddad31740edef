//! Wiring: store + engine + router on an already-bound listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_planner::Planner;

use crate::engine::{self, Clock, Engine};
use crate::http::{self, AppState};
use crate::store::Store;
use crate::ws::ConnSettings;
use crate::{Error, ServeOptions, listen, token};

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub api_token: String,
    /// The listener's TLS (to read its certificate again, or show its fingerprint).
    pub tls: Option<Arc<listen::tls::ServerTls>>,
    /// Ends when the server has shut down (after `shutdown` is cancelled).
    pub join: tokio::task::JoinHandle<Result<(), Error>>,
}

/// Starts the server on `listener` and returns once it accepts connections. Cancel `shutdown`
/// to stop it; then await `join`.
pub async fn start(
    listener: TcpListener,
    opts: ServeOptions,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    let addr = listener.local_addr()?;
    let api_token = match &opts.api_token {
        Some(t) if !t.trim().is_empty() => t.trim().to_owned(),
        Some(_) => return Err(Error::Config("the API token is empty".into())),
        None => token::load_or_create_api_token(&opts.data_dir).map_err(|e| {
            Error::Config(format!(
                "cannot read or create the API token in {}: {e}",
                opts.data_dir.display()
            ))
        })?,
    };
    let tls = opts
        .tls
        .clone()
        .map(listen::tls::ServerTls::load)
        .transpose()?;
    let planner: Arc<dyn Planner> = opts.planner.build()?;
    let store = Store::open(&opts.db).await?;
    let blobs = crate::blobs::LocalBlobs::in_data_dir(&opts.data_dir)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot open the blob store in {}: {e}",
                opts.data_dir.display()
            ))
        })?;
    let (engine, engine_join) = Engine::start(
        store.clone(),
        engine_options(&opts),
        Clock::wall(),
        shutdown.clone(),
    )
    .await?;
    // Revisions (LLM planner only) run beside the engine, never inside its loop.
    let _reviser = crate::reviser::spawn(
        engine.clone(),
        store.clone(),
        planner.clone(),
        crate::reviser::ReviserOptions {
            max_rounds: opts.planner.revise_rounds(),
            defaults: crate::engine::TaskDefaults {
                retry: opts.retry.clone(),
                max_turns: opts.max_turns,
            },
        },
        shutdown.clone(),
    );
    let blobs: Arc<dyn crate::blobs::BlobStore> = Arc::new(blobs);
    // Retention sweeps beside the engine too.
    let _retention = crate::retention::spawn(
        engine.clone(),
        store.clone(),
        blobs.clone(),
        opts.retention.clone(),
        shutdown.clone(),
    );
    let metrics = engine.metrics.clone();
    let conns = listen::ConnLimiter::new(
        listen::ConnCaps::new(opts.max_connections, opts.max_connections_per_address),
        metrics.clone(),
    );
    let caps = conns.caps();
    let allowed: Vec<String> = opts.host_allowlist(addr);
    let state = AppState {
        engine,
        store: store.clone(),
        planner,
        api_token_hash: token::hash(&api_token).into(),
        allowed_hosts: allowed.into(),
        conn: ConnSettings {
            hello_timeout: opts.hello_timeout,
            heartbeat_interval: opts.heartbeat_interval,
        },
        shutdown: shutdown.clone(),
        web: crate::web::Web::new(tls.is_some()),
        auth_limiter: Arc::new(listen::AuthLimiter::new(
            opts.auth_limit.clone(),
            metrics.clone(),
        )),
        conns: conns.clone(),
        tls: tls.clone(),
        insecure_plaintext: opts.insecure_plaintext,
        blobs,
        max_upload_bytes: opts.max_upload_bytes,
    };
    let app = http::router(state);
    let listen = listen::Listen {
        conns,
        header_timeout: opts.header_timeout,
        metrics,
        tls: tls.as_ref().map(|t| t.config()),
    };
    if let Some(t) = &tls {
        tracing::info!(fingerprint = %t.fingerprint(), "TLS on; devices pin this certificate");
    }
    if opts.insecure_plaintext {
        tracing::warn!(%addr, "--insecure-plaintext: API and device tokens cross the network in plain text");
    }
    tracing::info!(%addr, db = %opts.db, tls = tls.is_some(), max_connections = caps.max,
        per_address = caps.per_address, agent_reserve = caps.agent_reserve,
        "weft orchestrator listening");
    let grace = opts.shutdown_grace;
    let join = tokio::spawn(async move {
        // HTTP stays up while the engine drains, so agents can still deliver results.
        let http_stop = CancellationToken::new();
        let serve = listen::serve(listener, app, listen, http_stop.clone());
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            () = &mut serve => {
                // The listener stopped on its own: stop everything.
                shutdown.cancel();
            }
            _ = shutdown.cancelled() => {}
        }
        // The engine drains for at most `grace`, then drops every connection's queue.
        let stopped = match tokio::time::timeout(grace + Duration::from_secs(1), engine_join).await
        {
            Ok(Ok(stopped)) => stopped,
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                tracing::warn!("the engine did not stop within the grace period");
                Ok(())
            }
        };
        http_stop.cancel();
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing them");
        }
        store.close().await;
        tracing::info!("weft orchestrator stopped");
        // A failed commit stopped it: the process exits non-zero, saying why.
        stopped
    });
    Ok(Running {
        addr,
        api_token,
        tls,
        join,
    })
}

/// What of `opts` the engine needs.
fn engine_options(opts: &ServeOptions) -> engine::Options {
    engine::Options {
        heartbeat_interval: opts.heartbeat_interval,
        attempt_timeout: opts.attempt_timeout,
        queue_timeout: opts.queue_timeout,
        task_timeout: opts.task_timeout,
        retry: opts.retry.clone(),
        turn_budget: opts.turn_budget,
        max_turns: opts.max_turns,
        lost_grace: opts.lost_grace,
        tick: opts.tick,
        shutdown_grace: opts.shutdown_grace,
    }
}
