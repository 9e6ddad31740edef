//! Replicas on one Postgres (issue 16 part 2, docs/replicas.md): the leader's lease, the
//! fencing epoch every commit checks, the journal as standbys follow it — and, on SQLite, the
//! file lock that keeps a second process off the file.
//!
//! The lease is one row (`leader`): its epoch, its holder and the URL clients are sent to, and
//! when it runs out, in the database's clock (`clock_timestamp()`), so no replica's clock
//! decides. Taking it over raises the epoch. Every commit of a leader first reads the epoch
//! `FOR SHARE` inside its transaction and is refused if it is no longer its own; a takeover's
//! `UPDATE` of the row waits for a commit holding that lock, so no commit of a deposed leader
//! can land after the takeover.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;
use weft_protocol::rest::{DeviceStatus, DeviceView, Event};

use super::{Db, Store, db_ms, is_postgres, ms};
use crate::Error;

/// The channel a leader notifies after each commit that journaled events; standbys `LISTEN`.
pub const EVENTS_CHANNEL: &str = "weft_events";

/// Now, in the database's clock, in ms since the Unix epoch.
const NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The lease row as a standby reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    pub epoch: u64,
    pub holder: String,
    pub url: String,
    /// Whether it has not run out yet (in the database's clock).
    pub live: bool,
    /// How long until it runs out, while it is live.
    pub expires_in: Option<Duration>,
}

/// What renewing the lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Another replica took over: the epoch is now this.
    Taken {
        current: u64,
    },
}

impl Store {
    fn pg(&self) -> Result<&sqlx::PgPool, Error> {
        match &self.db {
            Db::Postgres { pool } => Ok(pool),
            Db::Sqlite { .. } => Err(Error::Config(
                "replicas need Postgres: a SQLite file serves one process".into(),
            )),
        }
    }

    /// Takes the lease if nobody holds a live one, raising the epoch; returns the new epoch, or
    /// `None` while another replica's lease is live.
    pub async fn try_lead(
        &self,
        holder: &str,
        url: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, Error> {
        let epoch: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO leader (id, epoch, holder, url, expires_at_ms) \
             VALUES (1, 1, $1, $2, {NOW_MS} + $3) \
             ON CONFLICT (id) DO UPDATE SET epoch = leader.epoch + 1, holder = EXCLUDED.holder, \
             url = EXCLUDED.url, expires_at_ms = EXCLUDED.expires_at_ms \
             WHERE leader.expires_at_ms < {NOW_MS} RETURNING epoch"
        ))
        .bind(holder)
        .bind(url)
        .bind(ttl_ms(ttl))
        .fetch_optional(self.pg()?)
        .await?;
        Ok(epoch.map(ms))
    }

    /// Extends the lease held with `epoch` by `ttl` from now, unless another replica took it.
    pub async fn renew(&self, epoch: u64, ttl: Duration) -> Result<Renewal, Error> {
        let pool = self.pg()?;
        let renewed: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE leader SET expires_at_ms = {NOW_MS} + $2 WHERE id = 1 AND epoch = $1 \
             RETURNING epoch"
        ))
        .bind(db_ms(epoch))
        .bind(ttl_ms(ttl))
        .fetch_optional(pool)
        .await?;
        if renewed.is_some() {
            return Ok(Renewal::Renewed);
        }
        let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM leader WHERE id = 1")
            .fetch_optional(pool)
            .await?;
        Ok(Renewal::Taken {
            current: current.map_or(0, ms),
        })
    }

    /// Lets the lease held with `epoch` run out now (a clean shutdown), so that a standby
    /// takes over at its next try instead of a lease later.
    pub async fn resign(&self, epoch: u64) -> Result<(), Error> {
        sqlx::query("UPDATE leader SET expires_at_ms = 0 WHERE id = 1 AND epoch = $1")
            .bind(db_ms(epoch))
            .execute(self.pg()?)
            .await?;
        Ok(())
    }

    /// The lease row, if any replica ever led.
    pub async fn leader(&self) -> Result<Option<LeaderRow>, Error> {
        let row = sqlx::query(&format!(
            "SELECT epoch, holder, url, expires_at_ms >= {NOW_MS} AS live, \
             expires_at_ms - {NOW_MS} AS left_ms FROM leader WHERE id = 1"
        ))
        .fetch_optional(self.pg()?)
        .await?;
        Ok(row.map(|r| LeaderRow {
            epoch: ms(r.get("epoch")),
            holder: r.get("holder"),
            url: r.get("url"),
            live: r.get("live"),
            expires_in: u64::try_from(r.get::<i64, _>("left_ms"))
                .ok()
                .map(Duration::from_millis),
        }))
    }

    /// From now on every commit checks, inside its transaction, that the lease's epoch is
    /// still `epoch`, and is refused ([`Error::Deposed`]) if not. Postgres only.
    pub fn fence(&self, epoch: u64) {
        self.fence.store(epoch, Ordering::SeqCst);
    }

    /// The epoch commits are checked against (0: none).
    pub fn fenced(&self) -> u64 {
        self.fence.load(Ordering::SeqCst)
    }

    /// The journal's events after `after`, every request's, in order, at most `limit`.
    pub async fn events_since(&self, after: u64, limit: u32) -> Result<Vec<Event>, Error> {
        super::with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT seq, request_id, at_ms, body FROM events WHERE seq > $1 ORDER BY seq \
                 LIMIT $2",
            )
            .bind(db_ms(after))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(super::event).collect()
        })
    }

    /// The registered devices as a standby shows them, from what the leader wrote: online
    /// while their connection to the leader is (`online_since_ms`) and `leader_live`, with
    /// the attempts they run (dispatched or running) and when the leader last wrote that
    /// they were seen. The leader's own view also has the heartbeat times in its memory.
    pub async fn device_views(&self, leader_live: bool) -> Result<Vec<DeviceView>, Error> {
        let (online, running): (HashSet<String>, HashMap<String, i64>) =
            super::with_pool!(self, |pool| {
                let online = sqlx::query_scalar(
                    "SELECT name FROM devices WHERE online_since_ms IS NOT NULL",
                )
                .fetch_all(pool)
                .await?;
                let running = sqlx::query(
                    "SELECT device, COUNT(*) AS n FROM attempts \
                     WHERE status IN ('dispatched', 'running') GROUP BY device",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| (r.get("device"), r.get("n")))
                .collect();
                (online.into_iter().collect(), running)
            });
        let devices = self.load_devices().await?;
        Ok(devices
            .into_iter()
            .filter(|d| d.removed_at_ms.is_none())
            .map(|d| {
                let name = d.name.as_str();
                DeviceView {
                    status: match (leader_live && online.contains(name), d.draining) {
                        (false, _) => DeviceStatus::Offline,
                        (true, false) => DeviceStatus::Online,
                        (true, true) => DeviceStatus::Draining,
                    },
                    running: running
                        .get(name)
                        .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX)),
                    kind: d.kind,
                    platform: d.platform,
                    os_version: d.os_version,
                    capabilities: d.capabilities,
                    tools: d.tools,
                    max_concurrency: d.max_concurrency,
                    last_seen_ms: d.last_seen_ms,
                    name: d.name,
                }
            })
            .collect())
    }

    /// A connection listening on [`EVENTS_CHANNEL`] (Postgres; `None` on SQLite).
    pub async fn listen_events(&self) -> Result<Option<sqlx::postgres::PgListener>, Error> {
        match &self.db {
            Db::Postgres { pool } => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(EVENTS_CHANNEL).await?;
                Ok(Some(l))
            }
            Db::Sqlite { .. } => Ok(None),
        }
    }
}

/// Inside a leader's commit transaction, before anything is written: reads the lease's epoch
/// and holds it (`FOR SHARE`, so a takeover's `UPDATE` waits for this commit to end), and
/// refuses the commit if another replica took over. With `notify`, the same statement queues
/// the notification standbys follow the journal by (sent only if the transaction commits).
pub(super) async fn check_fence(
    tx: &mut sqlx::PgConnection,
    epoch: u64,
    notify: bool,
) -> Result<(), Error> {
    let sql = if notify {
        "SELECT leader.epoch FROM leader, (SELECT pg_notify('weft_events', '')) AS n \
         WHERE leader.id = 1 FOR SHARE OF leader"
    } else {
        "SELECT epoch FROM leader WHERE id = 1 FOR SHARE"
    };
    let current: Option<i64> = sqlx::query_scalar(sql).fetch_optional(tx).await?;
    let current = current.map_or(0, ms);
    if current == epoch {
        Ok(())
    } else {
        Err(Error::Deposed {
            held: epoch,
            current,
        })
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

/// An exclusive lock on `<database file>.lock`, held while a `weft serve` runs on a SQLite
/// file: a SQLite file serves one process (its engine numbers the journal and owns every
/// live request), so a second one is refused at start, naming the first one's pid. The
/// kernel releases the lock when the process ends, however it ends (`kill -9` included), so
/// a restart never waits.
#[derive(Debug)]
pub struct SqliteLock {
    _file: std::fs::File,
}

impl SqliteLock {
    /// Takes the lock for the database at `url`; `None` for Postgres and in-memory databases.
    pub fn take(url: &str) -> Result<Option<Self>, Error> {
        if is_postgres(url) || url.contains(":memory:") {
            return Ok(None);
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        let lock_path = format!("{path}.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::Config(format!("cannot open the lock file {lock_path}: {e}")))?;
        match file.try_lock() {
            Ok(()) => {
                // The pid, for the message a second process shows.
                let _ = file.set_len(0);
                let _ = write!(file, "{}", std::process::id());
                Ok(Some(Self { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.rewind();
                let _ = file.read_to_string(&mut pid);
                Err(Error::Config(format!(
                    "the SQLite database {path} is in use by another `weft serve` (pid {}): a \
                     SQLite file serves one process; run replicas on Postgres \
                     (--db postgres://…, docs/replicas.md)",
                    pid.trim()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::Config(format!("cannot lock {lock_path}: {e}")))
            }
        }
    }
}
