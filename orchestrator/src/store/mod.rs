//! The durable store: a SQLite file (or `sqlite::memory:`), or a Postgres database, through
//! sqlx (docs/postgres.md).
//!
//! The two dialects share their statements wherever they can: reads are written once, with
//! `$1`-style placeholders (which sqlx's SQLite driver numbers as Postgres does), and compiled
//! once per dialect by [`with_pool!`]. Where they differ — the commit (one multi-statement
//! query on SQLite, a transaction of single statements on Postgres), `INSERT OR REPLACE`, the
//! pragmas and the checkpoint task — each dialect has its own code path.
//!
//! Architecture invariant: only the engine writes. Every write is a [`Batch`] of row changes plus
//! the journal events that describe them, committed in one transaction, so the journal and the
//! state it describes can never disagree. REST views read from here.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use weft_protocol::rest::{EdgeView, Event, RequestView};
use weft_protocol::{
    AttemptId, AttemptStatus, DeviceName, EdgeKind, ErrorInfo, RequestId, TaskId, TaskStatus,
};

use crate::Error;
use crate::engine::{
    DeviceRecord, LiveAttempt, LiveRequest, Target, TaskFiles, TaskRecord, TaskSched,
};

mod files;
mod lease;
mod llm_log;
mod retention;
#[cfg(test)]
pub(crate) mod testing;
mod view;
mod web_sessions;
mod write;

pub use lease::{EVENTS_CHANNEL, LeaderRow, Renewal, SqliteLock};
pub use llm_log::StoredCall;
pub use retention::RetentionView;
pub use write::{Batch, Op};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Runs `$body` with `$pool` bound to the store's pool, whichever dialect it is. The body is
/// compiled once per dialect, so its statements must be valid on both, and what it does with
/// rows must work for `SqliteRow` and `PgRow` alike (`Row::get`, or the [`Cols`] helpers).
///
/// Written like a closure, `with_pool!(self, |pool| { … })`, so that rustfmt formats the body.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { pool: $pool, .. } => $body,
            $crate::store::Db::Postgres { pool: $pool } => $body,
        }
    };
    ($store:expr, $pool:ident => $body:expr) => {
        with_pool!($store, |$pool| $body)
    };
}
pub(crate) use with_pool;

/// Where a task may run, as the `target` column holds it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum TargetRow {
    Device(DeviceName),
    Kind(String),
    Any,
}

impl From<&Target> for TargetRow {
    fn from(t: &Target) -> Self {
        match t {
            Target::Device(d) => TargetRow::Device(d.clone()),
            Target::Kind(k) => TargetRow::Kind(k.clone()),
            Target::Any => TargetRow::Any,
        }
    }
}

impl From<TargetRow> for Target {
    fn from(t: TargetRow) -> Self {
        match t {
            TargetRow::Device(d) => Target::Device(d),
            TargetRow::Kind(k) => Target::Kind(k),
            TargetRow::Any => Target::Any,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// The fencing epoch every commit checks inside its transaction (Postgres; 0: none, as in
    /// the unit tests and on SQLite). Set once by [`Store::fence`] when this process leads.
    fence: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The database behind a [`Store`], in its dialect.
#[derive(Debug, Clone)]
enum Db {
    Sqlite {
        pool: SqlitePool,
        /// The one connection commits go through (a file database): its page cache stays
        /// warm, where pool connections taking turns would each find theirs stale after every
        /// commit made by another. `None` after `close`, and for an in-memory database (which
        /// exists once per connection: commits use the pool's only connection).
        writer: Option<std::sync::Arc<tokio::sync::Mutex<Option<sqlx::SqliteConnection>>>>,
    },
    Postgres {
        pool: PgPool,
    },
}

/// The columns the row helpers read, for the rows of either dialect.
trait Cols {
    fn text(&self, col: &str) -> String;
    fn opt_text(&self, col: &str) -> Option<String>;
    fn int(&self, col: &str) -> i64;
    fn opt_int(&self, col: &str) -> Option<i64>;
}

macro_rules! impl_cols {
    ($($row:ty),*) => {$(
        impl Cols for $row {
            fn text(&self, col: &str) -> String {
                self.get(col)
            }
            fn opt_text(&self, col: &str) -> Option<String> {
                self.get(col)
            }
            fn int(&self, col: &str) -> i64 {
                self.get(col)
            }
            fn opt_int(&self, col: &str) -> Option<i64> {
                self.get(col)
            }
        }
    )*};
}
impl_cols!(sqlx::sqlite::SqliteRow, sqlx::postgres::PgRow);

/// Whether `url` names a Postgres database (`postgres://…` or `postgresql://…`).
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let end = url[authority..]
        .find(['/', '?'])
        .map_or(url.len(), |i| authority + i);
    match url[authority..end].rfind('@') {
        Some(at) => match url[authority..authority + at].find(':') {
            Some(colon) => format!(
                "{}***{}",
                &url[..authority + colon + 1],
                &url[authority + at..]
            ),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// How long a Postgres connection may take to open (tried again while refused): at start,
/// and when the pool replaces a connection that broke. A database gone for longer fails the
/// statement that waited, and a failed commit stops the server (fail-stop).
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a Postgres session may sit inside a transaction without sending anything before
/// the server ends it. A commit's statements follow each other at once, so only a process
/// that stopped between two of them (SIGSTOP, a paused VM) meets it; its transaction then
/// releases the lease row's lock, and its next statement fails (fail-stop).
const PG_IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

fn from_json<T: DeserializeOwned>(s: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// A task's declared files as the `tasks.files` column keeps them: `{"outputs": [...],
/// "inputs": [...]}`, or NULL when it declares none.
fn files_json(files: &TaskFiles) -> Option<String> {
    (!files.is_empty()).then(|| {
        to_json(&FilesRow {
            outputs: files.outputs.clone(),
            inputs: files.inputs.clone(),
        })
    })
}

/// The JSON form of [`TaskFiles`] in the `tasks.files` column.
#[derive(Serialize, Deserialize, Default)]
struct FilesRow {
    #[serde(default)]
    outputs: Vec<String>,
    #[serde(default)]
    inputs: Vec<String>,
}

fn opt_json<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().map(to_json)
}

fn parse_opt<T: DeserializeOwned>(s: Option<String>, what: &str) -> Result<Option<T>, Error> {
    s.map(|s| from_json(&s, what)).transpose()
}

fn parse_status<T>(parse: fn(&str) -> Option<T>, s: String, what: &str) -> Result<T, Error> {
    parse(&s).ok_or_else(|| Error::Corrupt(format!("{what} `{s}`")))
}

fn is_busy(attempt: &impl Cols) -> bool {
    attempt
        .opt_text("error")
        .and_then(|e| serde_json::from_str::<ErrorInfo>(&e).ok())
        .is_some_and(|e| e.code == "busy")
}

fn task_record(t: &impl Cols) -> Result<TaskRecord, Error> {
    Ok(TaskRecord {
        id: TaskId(t.text("id")),
        position: u32::try_from(t.int("position")).unwrap_or(u32::MAX),
        title: t.text("title"),
        instruction: t.text("instruction"),
        action: parse_opt(t.opt_text("action"), "task action")?,
        target: from_json::<TargetRow>(&t.text("target"), "task target")?.into(),
        capabilities: from_json(&t.text("capabilities"), "task capabilities")?,
        status: parse_status(TaskStatus::parse, t.text("status"), "task status")?,
        retry: parse_opt(t.opt_text("retry"), "retry policy")?.unwrap_or_default(),
        sched: TaskSched {
            not_before_ms: t.opt_int("not_before_ms").map(ms).unwrap_or(0),
            first_ready_ms: t.opt_int("first_ready_ms").map(ms),
            avoid: t.opt_text("avoid_device").map(DeviceName),
            cancel_requested: t.int("cancel_requested") != 0,
        },
        max_turns: turns_col(t, "max_turns"),
        output: parse_opt(t.opt_text("output"), "task output")?,
        files: {
            let f: FilesRow = parse_opt(t.opt_text("files"), "task files")?.unwrap_or_default();
            TaskFiles {
                outputs: f.outputs,
                inputs: f.inputs,
            }
        },
        produced: Vec::new(),
    })
}

/// A journal event from its row (`seq`, `request_id`, `at_ms`, `body`).
fn event(r: &impl Cols) -> Result<Event, Error> {
    Ok(Event {
        seq: ms(r.int("seq")),
        request_id: RequestId(r.text("request_id")),
        at_ms: ms(r.int("at_ms")),
        kind: from_json(&r.text("body"), "event")?,
    })
}

fn turns_col(row: &impl Cols, col: &str) -> u32 {
    u32::try_from(row.int(col)).unwrap_or(0)
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the WAL back into the database file every [`CHECKPOINT_EVERY`], on a connection of
/// its own, without blocking the writer (`PASSIVE`), until the pool closes.
async fn checkpoints(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "WAL checkpoint failed; trying again later");
        }
    }
}

fn ms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn db_ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens the database at `url` and runs its dialect's migrations.
    ///
    /// `postgres://…` (or `postgresql://…`) opens Postgres; anything else is SQLite, created if
    /// needed: `sqlite://path`, `sqlite:path`, a plain file path, or `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Self, Error> {
        if is_postgres(url) {
            Self::open_postgres(url).await
        } else {
            Self::open_sqlite(url).await
        }
    }

    async fn open_postgres(url: &str) -> Result<Self, Error> {
        let shown = redact(url);
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("bad database URL {shown}: {e}")))?
            // A transaction left open by a process that stopped (SIGSTOP, a paused VM) would
            // hold the lease row's lock and keep a standby from taking over: Postgres ends it.
            .options([(
                "idle_in_transaction_session_timeout",
                format!("{}ms", PG_IDLE_IN_TRANSACTION.as_millis()),
            )]);
        let pool = match PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(PG_CONNECT_TIMEOUT)
            .idle_timeout(None)
            .connect_with(opts.clone())
            .await
        {
            Ok(pool) => pool,
            Err(e) => {
                // The pool only says that it timed out; one more attempt says why.
                let why = match sqlx::ConnectOptions::connect(&opts).await {
                    Err(why) => why.to_string(),
                    Ok(_) => e.to_string(),
                };
                return Err(Error::Config(format!(
                    "cannot reach the database {shown} (tried for {} s): {why}",
                    PG_CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        PG_MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::Config(format!("cannot migrate the database {shown}: {e}")))?;
        Ok(Self {
            db: Db::Postgres { pool },
            fence: Default::default(),
        })
    }

    async fn open_sqlite(url: &str) -> Result<Self, Error> {
        let memory = url.contains(":memory:");
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let opts = SqliteConnectOptions::from_str(&url)
            .map_err(|e| Error::Config(format!("bad database URL {url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            // WAL + NORMAL: a commit survives a crash of the process (kill -9); only an OS
            // crash or power loss can drop the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Checkpoints run in the background (see `checkpoints`), not inside the commit
            // that happens to fill the WAL: that one would take milliseconds longer.
            .pragma("wal_autocheckpoint", if memory { "1000" } else { "0" });
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists once per connection: keep exactly one.
            .max_connections(if memory { 1 } else { 4 })
            .min_connections(if memory { 1 } else { 0 })
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every use would be one more hand-off to the connection's thread
            // per query; a local SQLite file has no link to go stale.
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&pool).await.map_err(sqlx::Error::from)?;
        let writer = if memory {
            None
        } else {
            tokio::spawn(checkpoints(pool.clone()));
            let conn = sqlx::ConnectOptions::connect(&opts).await?;
            Some(std::sync::Arc::new(tokio::sync::Mutex::new(Some(conn))))
        };
        Ok(Self {
            db: Db::Sqlite { pool, writer },
            fence: Default::default(),
        })
    }

    /// Which dialect this store speaks: `sqlite` or `postgres`.
    pub fn dialect(&self) -> &'static str {
        match self.db {
            Db::Sqlite { .. } => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite { pool, writer } => {
                if let Some(writer) = writer
                    && let Some(conn) = writer.lock().await.take()
                {
                    let _ = sqlx::Connection::close(conn).await;
                }
                pool.close().await;
            }
            Db::Postgres { pool } => pool.close().await,
        }
    }

    pub async fn load_devices(&self) -> Result<Vec<DeviceRecord>, Error> {
        with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT name, kind, token_hash, platform, capabilities, max_concurrency, \
             created_at_ms, last_seen_ms, draining, os_version, tools, retired_token_hash, \
             removed_at_ms FROM devices ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    Ok(DeviceRecord {
                        name: DeviceName(r.get("name")),
                        kind: r.get("kind"),
                        token_hash: r.get("token_hash"),
                        platform: r.get("platform"),
                        capabilities: from_json(r.get::<&str, _>("capabilities"), "capabilities")?,
                        os_version: r.get("os_version"),
                        tools: from_json(r.get::<&str, _>("tools"), "tools")?,
                        max_concurrency: u32::try_from(r.get::<i64, _>("max_concurrency"))
                            .unwrap_or(1),
                        created_at_ms: ms(r.get("created_at_ms")),
                        last_seen_ms: r.get::<Option<i64>, _>("last_seen_ms").map(ms),
                        draining: r.get::<i64, _>("draining") != 0,
                        retired_token_hash: r.get("retired_token_hash"),
                        removed_at_ms: r.get::<Option<i64>, _>("removed_at_ms").map(ms),
                    })
                })
                .collect()
        })
    }

    /// Every request that has not finished, with what is needed to resume it.
    pub async fn load_live(&self) -> Result<Vec<LiveRequest>, Error> {
        with_pool!(self, |pool| {
            let ids = sqlx::query(
                "SELECT id, version, cancel_requested, turns FROM requests \
             WHERE status IN ('planning', 'running') ORDER BY created_at_ms, id",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for r in ids {
                let id = RequestId(r.get("id"));
                let version = ms(r.get("version"));
                let cancel_requested = r.get::<i64, _>("cancel_requested") != 0;
                let turns = parse_opt(r.get("turns"), "turns")?.unwrap_or_default();
                let tasks = sqlx::query(
                "SELECT id, position, title, instruction, action, target, capabilities, status, \
                 retry, not_before_ms, first_ready_ms, avoid_device, cancel_requested, max_turns, \
                 output, files FROM tasks \
                 WHERE request_id = $1 ORDER BY position",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|t| task_record(&t))
            .collect::<Result<Vec<_>, Error>>()?;
                let mut produced = self.produced_files(&id).await?;
                let tasks = tasks
                    .into_iter()
                    .map(|mut t| {
                        t.produced = produced.remove(&t.id).unwrap_or_default();
                        t
                    })
                    .collect();
                let edges = self.edges(&id).await?;
                let mut in_flight = Vec::new();
                let mut attempts_used = std::collections::HashMap::new();
                let attempts = sqlx::query(
                    "SELECT id, task_id, device, status, deadline_ms, error, max_turns, turns_used \
                 FROM attempts \
                 WHERE request_id = $1 ORDER BY started_at_ms, id",
                )
                .bind(id.as_str())
                .fetch_all(pool)
                .await?;
                for a in attempts {
                    let task_id = TaskId(a.get("task_id"));
                    let status = parse_status(AttemptStatus::parse, a.get("status"), "attempt")?;
                    // A refusal because the device was full does not use up an attempt.
                    if status != AttemptStatus::Rejected || !is_busy(&a) {
                        *attempts_used.entry(task_id.clone()).or_insert(0) += 1;
                    }
                    if !status.is_terminal() {
                        in_flight.push(LiveAttempt {
                            id: AttemptId(a.get("id")),
                            task_id,
                            device: DeviceName(a.get("device")),
                            status,
                            deadline_ms: ms(a.get("deadline_ms")),
                            max_turns: turns_col(&a, "max_turns"),
                            turns_used: turns_col(&a, "turns_used"),
                        });
                    }
                }
                out.push(LiveRequest {
                    id,
                    version,
                    turns,
                    cancel_requested,
                    tasks,
                    edges,
                    in_flight,
                    attempts_used,
                });
            }
            Ok(out)
        })
    }

    async fn edges(&self, id: &RequestId) -> Result<Vec<EdgeView>, Error> {
        with_pool!(self, |pool| {
            sqlx::query(
            "SELECT from_task, to_task, kind, condition FROM edges WHERE request_id = $1 ORDER BY rowid",
        )
        .bind(id.as_str())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|e| {
            Ok(EdgeView {
                from: TaskId(e.get("from_task")),
                to: TaskId(e.get("to_task")),
                kind: parse_status(EdgeKind::parse, e.get("kind"), "edge kind")?,
                condition: parse_opt(e.get("condition"), "edge condition")?,
            })
        })
        .collect()
        })
    }

    /// Journal events of one request with `seq > after`, in order.
    pub async fn events_after(
        &self,
        request_id: &RequestId,
        after: u64,
    ) -> Result<Vec<Event>, Error> {
        with_pool!(self, |pool| {
            sqlx::query(
                "SELECT seq, request_id, at_ms, body FROM events WHERE request_id = $1 AND \
                 seq > $2 ORDER BY seq",
            )
            .bind(request_id.as_str())
            .bind(db_ms(after))
            .fetch_all(pool)
            .await?
            .iter()
            .map(event)
            .collect()
        })
    }

    /// The planner that made a request (`rules`, `llm`, `given`), if the request exists.
    pub async fn planner_of(&self, id: &RequestId) -> Result<Option<String>, Error> {
        with_pool!(self, |pool| {
            let r = sqlx::query("SELECT planner FROM requests WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(r.map(|r| r.get("planner")))
        })
    }

    /// The device an attempt was dispatched to, if the attempt exists.
    pub async fn attempt_device(&self, id: &AttemptId) -> Result<Option<DeviceName>, Error> {
        with_pool!(self, |pool| {
            let row = sqlx::query("SELECT device FROM attempts WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| DeviceName(r.get("device"))))
        })
    }

    pub async fn request_exists(&self, id: &RequestId) -> Result<bool, Error> {
        with_pool!(self, |pool| {
            let row = sqlx::query("SELECT 1 FROM requests WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        })
    }

    /// The most recent requests, newest first.
    pub async fn list_requests(&self, limit: u32) -> Result<Vec<RequestView>, Error> {
        with_pool!(self, |pool| {
            let ids = sqlx::query(
                "SELECT id FROM requests ORDER BY created_at_ms DESC, id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(ids.len());
            for r in ids {
                if let Some(v) = self.request_view(&RequestId(r.get("id"))).await? {
                    out.push(v);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::{RequestStatus, RetryPolicy};

    use super::*;
    use weft_protocol::rest::{EventKind, TurnsView};

    #[tokio::test]
    async fn batch_commits_rows_and_journal_together() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = testing::store(dir.path().join("t.db").to_str().unwrap()).await;
        let rid = RequestId::from("r1");
        let mut b = Batch::default();
        b.op(Op::InsertRequest {
            id: rid.clone(),
            text: "hi".into(),
            planner: "rules".into(),
            status: RequestStatus::Running,
            turns: TurnsView::default(),
            at_ms: 5,
        });
        b.op(Op::InsertTask {
            request_id: rid.clone(),
            task: TaskRecord {
                id: "t1".into(),
                position: 0,
                title: "x".into(),
                instruction: "x".into(),
                action: None,
                target: Target::Kind("laptop".into()),
                capabilities: vec![],
                status: TaskStatus::Ready,
                retry: RetryPolicy::default(),
                sched: TaskSched::default(),
                max_turns: 1,
                output: None,
                files: Default::default(),
                produced: vec![],
            },
        });
        b.event(
            &rid,
            EventKind::RequestStatus {
                status: RequestStatus::Running,
                error: None,
            },
        );
        let evs = numbered(b.events, 1, 5);
        store.commit(&b.ops, &evs).await.unwrap();
        assert_eq!(store.last_seq().await.unwrap(), 1);
        let view = store.request_view(&rid).await.unwrap().unwrap();
        assert_eq!(view.tasks.len(), 1);
        // Values read from the JSON rows keep their SQL types (Postgres's columns have one type).
        if let Db::Sqlite { pool, .. } = &store.db {
            let types: (String, String, String, String) = sqlx::query_as(
                "SELECT typeof(position), typeof(max_turns), typeof(status), \
                 typeof(first_ready_ms) FROM tasks",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            assert_eq!(
                types,
                (
                    "integer".into(),
                    "integer".into(),
                    "text".into(),
                    "null".into()
                )
            );
        }
        assert_eq!(view.tasks[0].status, TaskStatus::Ready);
        assert_eq!(store.events_after(&rid, 0).await.unwrap(), evs);

        // A failing batch leaves nothing behind: inserting the same request twice.
        let mut b = Batch::default();
        b.event(
            &rid,
            EventKind::RequestStatus {
                status: RequestStatus::Failed,
                error: None,
            },
        );
        b.op(Op::InsertRequest {
            id: rid.clone(),
            text: "dup".into(),
            planner: "rules".into(),
            status: RequestStatus::Running,
            turns: TurnsView::default(),
            at_ms: 6,
        });
        let evs = numbered(b.events, 2, 6);
        assert!(store.commit(&b.ops, &evs).await.is_err());
        assert_eq!(store.events_after(&rid, 0).await.unwrap().len(), 1);
        assert_eq!(store.last_seq().await.unwrap(), 1);
    }

    fn numbered(events: Vec<(RequestId, EventKind)>, first: u64, at_ms: u64) -> Vec<Event> {
        (first..)
            .zip(events)
            .map(|(seq, (request_id, kind))| Event {
                seq,
                request_id,
                at_ms,
                kind,
            })
            .collect()
    }

    /// A failed commit is rolled back on its connection: the next commit (on the same, only
    /// connection of an in-memory store) is not caught in it.
    #[tokio::test]
    async fn a_failed_commit_leaves_the_connection_usable() {
        let (store, _db) = testing::store("sqlite::memory:").await;
        let insert = |text: &str| Op::InsertRequest {
            id: RequestId::from("r1"),
            text: text.into(),
            planner: "rules".into(),
            status: RequestStatus::Running,
            turns: TurnsView::default(),
            at_ms: 1,
        };
        let event = |seq| Event {
            seq,
            request_id: RequestId::from("r1"),
            at_ms: 1,
            kind: EventKind::RequestStatus {
                status: RequestStatus::Running,
                error: None,
            },
        };
        store.commit(&[insert("a")], &[event(1)]).await.unwrap();
        let dup = store.commit(&[insert("b")], &[event(2)]).await;
        assert!(dup.is_err());
        store.commit(&[], &[event(2)]).await.unwrap();
        let seqs: Vec<u64> = store
            .events_after(&RequestId::from("r1"), 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!(
            store
                .request_view(&"r1".into())
                .await
                .unwrap()
                .unwrap()
                .text,
            "a"
        );
    }

    /// With automatic checkpoints off, the background task copies committed pages into the
    /// database file.
    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let events: Vec<Event> = (1..=500)
            .map(|seq| Event {
                seq,
                request_id: RequestId::from("r1"),
                at_ms: 1,
                kind: EventKind::GraphEdited {
                    version: seq,
                    ops: vec![],
                },
            })
            .collect();
        store.commit(&[], &events).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() <= before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the database file never grew"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.close().await;
    }

    /// A database that cannot be reached at start is an error naming it, without its password.
    #[tokio::test]
    async fn an_unreachable_postgres_is_named_without_its_password() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://weft:s3cret@127.0.0.1:{port}/weft");
        let e = Store::open(&url).await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("postgres://weft:***@127.0.0.1:{port}/weft")),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn the_dialect_follows_the_url() {
        assert!(is_postgres("postgres://h/db"));
        assert!(is_postgres("postgresql://u:p@h:5432/db"));
        assert!(!is_postgres("weft.db"));
        assert!(!is_postgres("sqlite://postgres.db"));
    }

    #[tokio::test]
    async fn memory_database_works() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        assert!(store.load_devices().await.unwrap().is_empty());
    }
}
