//! Wiring: store + engine + router on an already-bound listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use weft_planner::Planner;

use crate::api::{self, AppState};
use crate::engine::Engine;
use crate::store::Store;
use crate::ws::ConnSettings;
use crate::{Error, ServeOptions, token};

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub api_token: String,
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
    let planner: Arc<dyn Planner> = opts.planner.build()?;
    let store = Store::open(&opts.db).await?;
    let (engine, engine_join) =
        Engine::start(store.clone(), opts.clone(), shutdown.clone()).await?;
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
        web: crate::web::Web::default(),
    };
    let app = api::router(state);
    tracing::info!(%addr, db = %opts.db, "weft orchestrator listening");
    let grace = opts.shutdown_grace;
    let join = tokio::spawn(async move {
        // Small frames (assign, ack) must not wait behind Nagle + delayed ACK (~40 ms each).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // HTTP stays up while the engine drains, so agents can still deliver results.
        let http_stop = CancellationToken::new();
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(http_stop.clone().cancelled_owned())
            .into_future();
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            res = &mut serve => {
                // The listener failed on its own: stop everything.
                shutdown.cancel();
                res?;
            }
            _ = shutdown.cancelled() => {}
        }
        // The engine drains for at most `grace`, then drops every connection's queue.
        if tokio::time::timeout(grace + Duration::from_secs(1), engine_join)
            .await
            .is_err()
        {
            tracing::warn!("the engine did not stop within the grace period");
        }
        http_stop.cancel();
        if tokio::time::timeout(grace, &mut serve).await.is_err() {
            tracing::warn!("connections still open after the grace period; closing them");
        }
        store.close().await;
        tracing::info!("weft orchestrator stopped");
        Ok(())
    });
    Ok(Running {
        addr,
        api_token,
        join,
    })
}
