//! Wiring: store + engine + router on an already-bound listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use weft_planner::Planner;

use crate::engine::{self, Clock, Engine};
use crate::http::{self, AppState};
use crate::replica::{self, LeaderUrl, Role};
use crate::store::{Renewal, SqliteLock, Store};
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

/// What a replica needs to lead, or to stand by: everything of the server but the engine.
#[derive(Clone)]
struct Parts {
    opts: ServeOptions,
    store: Store,
    planner: Arc<dyn Planner>,
    blobs: Arc<dyn crate::blobs::BlobStore>,
    api_token_hash: Arc<str>,
    allowed_hosts: Arc<[String]>,
    conns: Arc<listen::ConnLimiter>,
    auth_limiter: Arc<listen::AuthLimiter>,
    tls: Option<Arc<listen::tls::ServerTls>>,
    leader: LeaderUrl,
    /// The server's counters: the listener's, the engine's (once it runs), `/metrics`.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Parts {
    fn state(&self, engine: engine::Handle, role: Role, shutdown: &CancellationToken) -> AppState {
        AppState {
            engine,
            store: self.store.clone(),
            planner: self.planner.clone(),
            api_token_hash: self.api_token_hash.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            conn: ConnSettings {
                hello_timeout: self.opts.hello_timeout,
                heartbeat_interval: self.opts.heartbeat_interval,
            },
            shutdown: shutdown.clone(),
            web: crate::web::Web::new(self.store.clone(), self.tls.is_some()),
            auth_limiter: self.auth_limiter.clone(),
            conns: self.conns.clone(),
            tls: self.tls.clone(),
            insecure_plaintext: self.opts.insecure_plaintext,
            blobs: self.blobs.clone(),
            max_upload_bytes: self.opts.max_upload_bytes,
            role,
            leader: self.leader.clone(),
        }
    }

    /// Starts the engine (which resumes every unfinished request from the store, as after a
    /// restart) and what runs beside it; returns a leader's router and the engine's task.
    async fn lead(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(Router, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        let (engine, engine_join) = Engine::start_with(
            self.store.clone(),
            engine_options(&self.opts),
            Clock::wall(),
            self.metrics.clone(),
            shutdown.clone(),
        )
        .await?;
        // Revisions (LLM planner only) run beside the engine, never inside its loop.
        let _reviser = crate::reviser::spawn(
            engine.clone(),
            self.store.clone(),
            self.planner.clone(),
            crate::reviser::ReviserOptions {
                max_rounds: self.opts.planner.revise_rounds(),
                defaults: crate::engine::TaskDefaults {
                    retry: self.opts.retry.clone(),
                    max_turns: self.opts.max_turns,
                },
            },
            shutdown.clone(),
        );
        // Retention sweeps beside the engine too.
        let _retention = crate::retention::spawn(
            engine.clone(),
            self.store.clone(),
            self.blobs.clone(),
            self.opts.retention.clone(),
            shutdown.clone(),
        );
        let router = http::router(self.state(engine, Role::Leader, shutdown));
        Ok((router, engine_join))
    }

    /// A standby's router: reads from the store, event streams from the journal (followed
    /// until `shutdown`), everything else sent to the leader (`replica::gate`).
    fn stand_by(&self, shutdown: &CancellationToken) -> Router {
        let (engine, hub) = engine::Handle::detached(Clock::wall(), self.metrics.clone());
        tokio::spawn(replica::follow_journal(
            self.store.clone(),
            hub,
            shutdown.clone(),
        ));
        let state = self.state(engine, Role::Standby, shutdown);
        http::router(state.clone())
            .layer(axum::middleware::from_fn_with_state(state, replica::gate))
    }
}

/// The router serving now: a standby's until this replica takes the lead, then a leader's.
/// Connections keep the router they were handed (an event stream opened on the standby goes
/// on following the journal).
#[derive(Clone)]
struct Switch(Arc<std::sync::RwLock<Router>>);

impl Switch {
    fn router(&self) -> Router {
        Router::new().fallback_service(tower::service_fn({
            let current = self.0.clone();
            move |req: axum::extract::Request| {
                let router = current.read().map(|r| r.clone()).ok();
                async move {
                    match router {
                        Some(router) => router.oneshot(req).await,
                        None => Ok(axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                    }
                }
            }
        }))
    }

    fn set(&self, router: Router) {
        if let Ok(mut r) = self.0.write() {
            *r = router;
        }
    }
}

/// Why a replica stopped on its own (deposed, its lease lost, a takeover that failed), and the
/// engine it runs, for the server's task.
#[derive(Default)]
struct Lead {
    engine: Option<tokio::task::JoinHandle<Result<(), Error>>>,
    /// The epoch held, to give the lease up at a clean shutdown.
    epoch: Option<u64>,
    stopped: Option<Error>,
}

type SharedLead = Arc<tokio::sync::Mutex<Lead>>;

/// Starts the server on `listener` and returns once it accepts connections. Cancel `shutdown`
/// to stop it; then await `join`.
///
/// On Postgres the server is a replica (docs/replicas.md): it leads if it takes the lease at
/// start, else it stands by and tries again every `opts.replica.renew_every`. On SQLite it
/// leads, and a second server on the same file is refused ([`SqliteLock`]).
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
    opts.replica.validate().map_err(Error::Config)?;
    let planner: Arc<dyn Planner> = opts.planner.build()?;
    let sqlite_lock = SqliteLock::take(&opts.db)?;
    let store = Store::open(&opts.db).await?;
    let blobs = crate::blobs::LocalBlobs::in_data_dir(&opts.data_dir)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot open the blob store in {}: {e}",
                opts.data_dir.display()
            ))
        })?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let conns = listen::ConnLimiter::new(
        listen::ConnCaps::new(opts.max_connections, opts.max_connections_per_address),
        metrics.clone(),
    );
    let caps = conns.caps();
    let parts = Parts {
        store: store.clone(),
        planner,
        blobs: Arc::new(blobs),
        api_token_hash: token::hash(&api_token).into(),
        allowed_hosts: opts.host_allowlist(addr).into(),
        auth_limiter: Arc::new(listen::AuthLimiter::new(
            opts.auth_limit.clone(),
            metrics.clone(),
        )),
        conns: conns.clone(),
        tls: tls.clone(),
        leader: LeaderUrl::default(),
        metrics: metrics.clone(),
        opts: opts.clone(),
    };
    // Replicas share the lead through the lease; SQLite leads alone.
    let lease = if store.dialect() == "postgres" {
        Some(Lease::new(&opts, addr, tls.is_some())?)
    } else {
        None
    };
    let epoch = match &lease {
        Some(lease) => lease.try_take(&store).await?,
        None => None,
    };
    let lead: SharedLead = Arc::default();
    let role = if lease.is_none() || epoch.is_some() {
        Role::Leader
    } else {
        Role::Standby
    };
    let switch = match role {
        Role::Leader => {
            if let Some(epoch) = epoch {
                store.fence(epoch);
                tracing::info!(epoch, "this replica leads");
            }
            let (router, engine_join) = parts.lead(&shutdown).await?;
            let mut l = lead.lock().await;
            l.engine = Some(engine_join);
            l.epoch = epoch;
            Switch(Arc::new(std::sync::RwLock::new(router)))
        }
        Role::Standby => {
            tracing::info!("another replica leads; this one stands by");
            Switch(Arc::new(std::sync::RwLock::new(parts.stand_by(&shutdown))))
        }
    };
    if let Some(lease) = lease {
        tokio::spawn(lease.run(
            parts.clone(),
            switch.clone(),
            lead.clone(),
            shutdown.clone(),
        ));
    }
    let app = switch.router();
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
    tracing::info!(%addr, db = %crate::store::redact(&opts.db), tls = tls.is_some(),
        role = role.as_str(), max_connections = caps.max, per_address = caps.per_address,
        agent_reserve = caps.agent_reserve, "weft orchestrator listening");
    let grace = opts.shutdown_grace;
    let join = tokio::spawn(async move {
        // Held until the server has stopped: no second process on this SQLite file meanwhile.
        let _sqlite_lock = sqlite_lock;
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
        let mut lead = lead.lock().await;
        if let Some(why) = lead.stopped.take() {
            // Deposed (or the lease lost): nothing more may be applied, and the fence refuses
            // it anyway. Stop at once, without waiting for the engine to drain.
            http_stop.cancel();
            store.close().await;
            return Err(why);
        }
        // The engine drains for at most `grace`, then drops every connection's queue.
        let stopped = match lead.engine.take() {
            None => Ok(()),
            Some(engine_join) => {
                match tokio::time::timeout(grace + Duration::from_secs(1), engine_join).await {
                    Ok(Ok(stopped)) => stopped,
                    Ok(Err(_)) => Ok(()),
                    Err(_) => {
                        tracing::warn!("the engine did not stop within the grace period");
                        Ok(())
                    }
                }
            }
        };
        // A commit refused by the fence: say so, not as a failed write.
        let stopped = stopped.map_err(|e| match e {
            Error::FailStop(inner) if matches!(*inner, Error::Deposed { .. }) => *inner,
            e => e,
        });
        // A commit that failed otherwise while another replica took over (this one was paused
        // past its lease, and the database ended the transaction it was paused in): deposed
        // too, which is why; a failed write is only what it looked like from here.
        let stopped = match (stopped, lead.epoch) {
            (Err(Error::FailStop(inner)), Some(held)) => {
                match tokio::time::timeout(Duration::from_secs(1), store.leader()).await {
                    Ok(Ok(Some(row))) if row.epoch > held => Err(Error::Deposed {
                        held,
                        current: row.epoch,
                    }),
                    _ => Err(Error::FailStop(inner)),
                }
            }
            (stopped, _) => stopped,
        };
        // The engine has stopped (drained, or after a failed commit) and commits nothing
        // more: hand the lead on at once rather than a lease later. Not when deposed.
        if !matches!(stopped, Err(Error::Deposed { .. }))
            && let Some(epoch) = lead.epoch
        {
            match tokio::time::timeout(Duration::from_secs(1), store.resign(epoch)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e,
                    "cannot give up the lease; a standby takes over when it runs out"),
                Err(_) => tracing::warn!(
                    "the database did not answer; a standby takes over when the lease runs out"
                ),
            }
        }
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

/// This replica's claim to the lead: who it is and where clients reach it.
struct Lease {
    holder: String,
    url: String,
    opts: replica::Options,
}

impl Lease {
    fn new(opts: &ServeOptions, addr: SocketAddr, tls: bool) -> Result<Self, Error> {
        let url = match &opts.replica.advertise_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None if addr.ip().is_unspecified() => {
                return Err(Error::Config(format!(
                    "listening on {addr} on Postgres: give --advertise-url, the URL standbys \
                     send clients and agents to while this replica leads"
                )));
            }
            None => format!("{}://{addr}", if tls { "https" } else { "http" }),
        };
        Ok(Self {
            holder: uuid::Uuid::new_v4().simple().to_string(),
            url,
            opts: opts.replica.clone(),
        })
    }

    /// Takes the lease if nobody holds a live one; waits at most one lease.
    async fn try_take(&self, store: &Store) -> Result<Option<u64>, Error> {
        tokio::time::timeout(
            self.opts.ttl,
            store.try_lead(&self.holder, &self.url, self.opts.ttl),
        )
        .await
        .unwrap_or(Ok(None))
    }

    /// [`Parts::lead`] for a replica that just took the lease with `epoch`, renewing it every
    /// `renew_every` meanwhile: resuming a large store may take longer than a lease. Deposed
    /// meanwhile (the lease taken after all), the takeover stops there.
    async fn lead_renewing(
        &self,
        parts: &Parts,
        epoch: u64,
        shutdown: &CancellationToken,
    ) -> Result<(Router, tokio::task::JoinHandle<Result<(), Error>>), Error> {
        let leading = parts.lead(shutdown);
        let mut leading = std::pin::pin!(leading);
        loop {
            tokio::select! {
                led = &mut leading => return led,
                () = tokio::time::sleep(self.opts.renew_every) => {
                    let renewed = tokio::time::timeout(
                        self.opts.renew_every,
                        parts.store.renew(epoch, self.opts.ttl),
                    )
                    .await;
                    if let Ok(Ok(Renewal::Taken { current })) = renewed {
                        return Err(Error::Deposed { held: epoch, current });
                    }
                }
            }
        }
    }

    /// The replica's loop until `shutdown`: a standby tries to take the lease every
    /// `renew_every` (and notes where the leader is meanwhile) and, once it has it, takes
    /// over; a leader renews it every `renew_every` and stops the server when it finds it
    /// taken or cannot renew it for a whole lease.
    async fn run(
        self,
        parts: Parts,
        switch: Switch,
        lead: SharedLead,
        shutdown: CancellationToken,
    ) {
        let store = parts.store.clone();
        let mut epoch = lead.lock().await.epoch;
        // When the lease held runs out at the latest, in this process's clock: it was renewed
        // no earlier than the renewal was sent.
        let mut holds_until = tokio::time::Instant::now() + self.opts.ttl;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
            next = tokio::time::Instant::now() + self.opts.renew_every;
            match epoch {
                Some(held) => {
                    let sent = tokio::time::Instant::now();
                    let renewed =
                        tokio::time::timeout(self.opts.ttl, store.renew(held, self.opts.ttl)).await;
                    let why = match renewed {
                        Ok(Ok(Renewal::Renewed)) => {
                            holds_until = sent + self.opts.ttl;
                            continue;
                        }
                        Ok(Ok(Renewal::Taken { current })) => Error::Deposed { held, current },
                        Ok(Err(e)) if tokio::time::Instant::now() >= holds_until => {
                            Error::LeaseLost(e.to_string())
                        }
                        Err(_) if tokio::time::Instant::now() >= holds_until => {
                            Error::LeaseLost("the database did not answer".into())
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot renew the lease; trying again");
                            continue;
                        }
                        Err(_) => continue,
                    };
                    tracing::error!(error = %why, "this replica no longer leads; stopping");
                    lead.lock().await.stopped = Some(why);
                    shutdown.cancel();
                    return;
                }
                None => match self.try_take(&store).await {
                    Ok(Some(new)) => {
                        holds_until = tokio::time::Instant::now() + self.opts.ttl;
                        store.fence(new);
                        tracing::info!(epoch = new, "took the lead; resuming from the store");
                        match self.lead_renewing(&parts, new, &shutdown).await {
                            Ok((router, engine_join)) => {
                                let mut l = lead.lock().await;
                                l.engine = Some(engine_join);
                                l.epoch = Some(new);
                                switch.set(router);
                                epoch = Some(new);
                                tracing::info!(epoch = new, "this replica leads");
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "the takeover failed; stopping");
                                lead.lock().await.stopped = Some(e);
                                shutdown.cancel();
                                return;
                            }
                        }
                    }
                    Ok(None) => match store.leader().await {
                        Ok(row) => {
                            // Try again just after the lease runs out, if that is sooner.
                            if let Some(left) = row.as_ref().and_then(|r| r.expires_in) {
                                next = next.min(
                                    tokio::time::Instant::now() + left + Duration::from_millis(2),
                                );
                            }
                            parts.leader.set(row.filter(|r| r.live).map(|r| r.url));
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the lease"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot try to take the lease"),
                },
            }
        }
    }
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
