//! Writes: row changes ([`Op`]) and the journal events that describe them, committed in one
//! transaction by [`Store::commit`].
//!
//! Every statement is a round trip to sqlx's SQLite thread (a hand-off between threads), so a
//! commit is executed in as few statements as it can be: the ops are cut into segments at the
//! rare *barrier* ops whose effect depends on where they stand (deletes, a task's new
//! definition, a graph version, a late result, device rows); inside a segment, the frequent row
//! inserts and updates commute unless they touch the same row, so several updates of one row
//! are first folded into one and then each kind becomes one multi-row statement (inserts
//! parents first). The outcome equals applying the ops one at a time, in order — a test below
//! checks exactly that.
//!
//! On SQLite the whole commit is one multi-statement query. Postgres prepares one command per
//! query, so there the same statements run one by one inside a transaction ([`Statements`]):
//! one round trip per statement, paid once per group commit rather than once per op.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use sqlx::{Encode, Postgres, QueryBuilder, Sqlite, Type};
use weft_protocol::rest::{EdgeView, Event, EventKind, LateResult, TurnsView};
use weft_protocol::wire::ResultStatus;
use weft_protocol::{
    AttemptId, AttemptStatus, DeviceName, ErrorInfo, FileRef, RequestId, RequestStatus, TaskId,
    TaskOutput, TaskStatus,
};

use super::{Db, DeviceRecord, Store, TargetRow, db_ms, files_json, opt_json, to_json, with_pool};
use crate::Error;
use crate::engine::{TaskRecord, TaskSched};

/// Rows per multi-row statement (SQLite allows 32,766 bound values in one statement; the widest
/// row here binds 15).
const ROWS_PER_STATEMENT: usize = 256;

/// One row change inside a [`Batch`].
#[derive(Debug, Clone)]
pub enum Op {
    InsertRequest {
        id: RequestId,
        text: String,
        planner: String,
        status: RequestStatus,
        turns: TurnsView,
        at_ms: u64,
    },
    /// The request's turn pool changed.
    UpdateTurns {
        id: RequestId,
        turns: TurnsView,
    },
    UpdateAttemptTurns {
        id: AttemptId,
        max_turns: u32,
        turns_used: u32,
    },
    InsertTask {
        request_id: RequestId,
        task: TaskRecord,
    },
    InsertEdge {
        request_id: RequestId,
        edge: EdgeView,
    },
    UpdateTask {
        request_id: RequestId,
        task_id: TaskId,
        status: TaskStatus,
        device: Option<DeviceName>,
        output: Option<TaskOutput>,
        error: Option<ErrorInfo>,
    },
    UpdateTaskSched {
        request_id: RequestId,
        task_id: TaskId,
        sched: TaskSched,
    },
    RecordLateResult {
        id: AttemptId,
        result: LateResult,
    },
    /// The files a task's succeeding attempt produced (with its result).
    InsertFiles {
        request_id: RequestId,
        task_id: TaskId,
        attempt_id: AttemptId,
        files: Vec<FileRef>,
    },
    /// A task's definition changed (an edit).
    UpdateTaskDef {
        request_id: RequestId,
        task: TaskRecord,
    },
    DeleteTask {
        request_id: RequestId,
        task_id: TaskId,
    },
    DeleteEdge {
        request_id: RequestId,
        from: TaskId,
        to: TaskId,
    },
    /// The graph moved to `version` (an accepted edit batch).
    SetVersion {
        id: RequestId,
        version: u64,
    },
    /// A cancel of the whole request was asked for.
    CancelRequested {
        id: RequestId,
    },
    InsertAttempt {
        id: AttemptId,
        request_id: RequestId,
        task_id: TaskId,
        device: DeviceName,
        at_ms: u64,
        deadline_ms: u64,
        max_turns: u32,
    },
    UpdateAttempt {
        id: AttemptId,
        status: AttemptStatus,
        ended_at_ms: Option<u64>,
        error: Option<ErrorInfo>,
    },
    UpdateRequest {
        id: RequestId,
        status: RequestStatus,
        error: Option<ErrorInfo>,
        at_ms: u64,
    },
    /// A device was registered (replacing the tombstone of a removed one of that name).
    InsertDevice(DeviceRecord),
    /// The device was removed; its row stays as a tombstone.
    RemoveDevice {
        name: DeviceName,
        at_ms: u64,
    },
    /// The device has a new token; the old one is kept (hashed) to be refused by name.
    RotateDeviceToken {
        name: DeviceName,
        token_hash: String,
        retired_token_hash: String,
        at_ms: u64,
    },
    /// The profile a device stated in its hello.
    UpdateDeviceProfile(DeviceRecord),
    SetDraining {
        name: DeviceName,
        draining: bool,
    },
    /// The device was last heard from at `at_ms`, and has no connection now.
    TouchDevice {
        name: DeviceName,
        at_ms: u64,
    },
    /// No device has a connection (a leader starting: connections are made to it afresh).
    DevicesOffline,
}

/// Row changes and the events that journal them, as the engine builds them; the engine gives
/// the events their journal positions and commits them with [`Store::commit`].
#[derive(Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub events: Vec<(RequestId, EventKind)>,
}

impl Batch {
    pub fn op(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn event(&mut self, request: &RequestId, kind: EventKind) {
        self.events.push((request.clone(), kind));
    }
}

/// Commits with at most this many row changes and events keep their compiled query.
const CACHED_ROWS: usize = 64;

impl Store {
    /// The journal position of the last event written (0 for an empty journal). The engine
    /// numbers new events from here: it is the only writer.
    pub async fn last_seq(&self) -> Result<u64, Error> {
        let seq: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MAX(seq) FROM events")
                .fetch_one(pool)
                .await?
        });
        Ok(seq.map_or(0, super::ms))
    }

    /// Commits row changes and their journal events (numbered by the caller) atomically.
    ///
    /// On SQLite the whole transaction — `BEGIN IMMEDIATE`, every statement, `COMMIT` — is sent
    /// as one multi-statement query: one hand-off to sqlx's SQLite thread per commit. On
    /// Postgres the same statements run one by one in a transaction.
    pub async fn commit(&self, ops: &[Op], events: &[Event]) -> Result<(), Error> {
        if ops.is_empty() && events.is_empty() {
            return Ok(());
        }
        let mut qb = match &self.db {
            Db::Sqlite { .. } => Statements::Sqlite(QueryBuilder::new("BEGIN IMMEDIATE;\n")),
            Db::Postgres { .. } => Statements::Postgres {
                current: QueryBuilder::new(""),
                done: Vec::new(),
            },
        };
        let mut segment = Segment::default();
        for op in ops {
            if !segment.add(op) {
                segment.push_into(&mut qb);
                segment = Segment::default();
                push_barrier(&mut qb, op);
            }
        }
        segment.push_into(&mut qb);
        push_values(
            &mut qb,
            "INSERT INTO events (seq, request_id, at_ms, body) ",
            "",
            events,
            |row, e| {
                row.push_bind(db_ms(e.seq))
                    .push_bind(e.request_id.as_str())
                    .push_bind(db_ms(e.at_ms))
                    .push_bind(to_json(&e.kind));
            },
        );
        let cached = ops.len() + events.len() <= CACHED_ROWS;
        match (&self.db, qb) {
            (Db::Sqlite { pool, writer }, Statements::Sqlite(mut qb)) => {
                qb.push("COMMIT;");
                match writer {
                    Some(writer) => {
                        let mut conn = writer.lock().await;
                        let conn = conn.as_mut().ok_or(Error::EngineGone)?;
                        run(conn, qb, cached).await
                    }
                    None => run(&mut *pool.acquire().await?, qb, cached).await,
                }
            }
            (Db::Postgres { pool }, Statements::Postgres { done, .. }) => {
                let fence = self.fenced();
                run_postgres(
                    pool,
                    done,
                    cached,
                    (fence > 0).then_some(fence),
                    !events.is_empty(),
                )
                .await
            }
            _ => unreachable!("statements are built in the store's dialect"),
        }
    }
}

/// A value both dialects can bind.
trait Bind<'a>: 'a + Encode<'a, Sqlite> + Type<Sqlite> + Encode<'a, Postgres> + Type<Postgres> {}

impl<'a, T> Bind<'a> for T where
    T: 'a + Encode<'a, Sqlite> + Type<Sqlite> + Encode<'a, Postgres> + Type<Postgres>
{
}

/// A commit's statements as they are written, in the store's dialect: on SQLite one
/// multi-statement query, on Postgres one query per statement (Postgres prepares exactly one
/// command per query).
enum Statements<'a> {
    Sqlite(QueryBuilder<'a, Sqlite>),
    Postgres {
        current: QueryBuilder<'a, Postgres>,
        done: Vec<QueryBuilder<'a, Postgres>>,
    },
}

impl<'a> Statements<'a> {
    fn push(&mut self, sql: &str) -> &mut Self {
        match self {
            Self::Sqlite(qb) => {
                qb.push(sql);
            }
            Self::Postgres { current, .. } => {
                current.push(sql);
            }
        }
        self
    }

    fn push_bind(&mut self, v: impl Bind<'a>) -> &mut Self {
        match self {
            Self::Sqlite(qb) => {
                qb.push_bind(v);
            }
            Self::Postgres { current, .. } => {
                current.push_bind(v);
            }
        }
        self
    }

    /// Ends the statement being written.
    fn end(&mut self) {
        match self {
            Self::Sqlite(qb) => {
                qb.push(";\n");
            }
            Self::Postgres { current, done } => {
                if !current.sql().is_empty() {
                    done.push(std::mem::replace(current, QueryBuilder::new("")));
                }
            }
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// `VALUES (…), (…)`: one parenthesised tuple per row, its values written by `bind`.
    fn values<T>(
        &mut self,
        rows: impl IntoIterator<Item = T>,
        mut bind: impl FnMut(&mut Tuple<'_, 'a>, T),
    ) {
        self.push("VALUES ");
        for (i, v) in rows.into_iter().enumerate() {
            self.push(if i == 0 { "(" } else { ", (" });
            bind(
                &mut Tuple {
                    sql: self,
                    first: true,
                },
                v,
            );
            self.push(")");
        }
    }
}

/// The values of one row of a `VALUES` list, separated by commas.
struct Tuple<'s, 'a> {
    sql: &'s mut Statements<'a>,
    first: bool,
}

impl<'a> Tuple<'_, 'a> {
    fn push_bind(&mut self, v: impl Bind<'a>) -> &mut Self {
        if !std::mem::take(&mut self.first) {
            self.sql.push(", ");
        }
        self.sql.push_bind(v);
        self
    }
}

/// Runs one commit's statements in a Postgres transaction; a failure rolls it back (the
/// transaction is dropped unfinished, which sqlx rolls back before the connection is used
/// again). With a `fence`, the transaction first checks that the lease's epoch is still that
/// one (and, with `notify`, tells the standbys that the journal grew), else writes nothing.
async fn run_postgres(
    pool: &sqlx::PgPool,
    statements: Vec<QueryBuilder<'_, Postgres>>,
    cached: bool,
    fence: Option<u64>,
    notify: bool,
) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    if let Some(epoch) = fence {
        super::lease::check_fence(&mut tx, epoch, notify).await?;
    }
    for mut qb in statements {
        qb.build().persistent(cached).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Runs one commit's query; if a statement fails, undoes what ran of the transaction before
/// the connection is used again (after a failed `BEGIN` there is nothing to undo).
///
/// A small query (at most [`CACHED_ROWS`] rows and events) is kept compiled in the connection's
/// statement cache (LRU, 100 entries): commits of the same shape — the same kinds and numbers of
/// rows, as in every hop of a chain or every lone result — recur and then run without being
/// compiled again. A large one is rarely seen twice and its compiled program is large: with
/// every query kept, the orchestrator's RSS after a fan-out run was 158 MiB, not 105. (Statements
/// reading their rows from one JSON parameter would always repeat, but extracting every column
/// from JSON cost SQLite more than compiling does; BENCHMARKS.md.)
async fn run(
    conn: &mut sqlx::SqliteConnection,
    mut qb: QueryBuilder<'_, Sqlite>,
    cached: bool,
) -> Result<(), Error> {
    if let Err(e) = qb.build().persistent(cached).execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e.into());
    }
    Ok(())
}

/// Ops with distinct rows, keyed by row, in first-seen order; a later op on a row already
/// present is folded into it.
struct Folded<K, V> {
    index: HashMap<K, usize>,
    rows: Vec<V>,
}

impl<K, V> Default for Folded<K, V> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            rows: Vec::new(),
        }
    }
}

impl<K: Hash + Eq, V> Folded<K, V> {
    fn add(&mut self, key: K, v: V, fold: impl FnOnce(&mut V, V)) {
        match self.index.entry(key) {
            Entry::Occupied(e) => fold(&mut self.rows[*e.get()], v),
            Entry::Vacant(e) => {
                e.insert(self.rows.len());
                self.rows.push(v);
            }
        }
    }

    /// A later op replaces the earlier one (it sets the same columns).
    fn replace(&mut self, key: K, v: V) {
        self.add(key, v, |a, b| *a = b);
    }
}

/// A task's new status; a later one keeps the earlier device and output unless it sets them
/// (the columns are `COALESCE`d).
struct TaskStatusRow<'a> {
    request_id: &'a RequestId,
    task_id: &'a TaskId,
    status: TaskStatus,
    device: Option<&'a DeviceName>,
    output: Option<&'a TaskOutput>,
    error: Option<&'a ErrorInfo>,
}

type TaskKey<'a> = (&'a RequestId, &'a TaskId);

/// The commuting ops between two barriers, grouped per kind.
#[derive(Default)]
struct Segment<'a> {
    requests: Vec<&'a Op>,
    tasks: Vec<(&'a RequestId, &'a TaskRecord)>,
    edges: Vec<(&'a RequestId, &'a EdgeView)>,
    attempts: Vec<&'a Op>,
    task_status: Folded<TaskKey<'a>, TaskStatusRow<'a>>,
    task_sched: Folded<TaskKey<'a>, (TaskKey<'a>, &'a TaskSched)>,
    attempt_status: Folded<&'a AttemptId, &'a Op>,
    attempt_turns: Folded<&'a AttemptId, &'a Op>,
    request_turns: Folded<&'a RequestId, (&'a RequestId, &'a TurnsView)>,
    request_status: Folded<&'a RequestId, &'a Op>,
}

impl<'a> Segment<'a> {
    /// Takes `op` into the segment; `false` if it is a barrier.
    fn add(&mut self, op: &'a Op) -> bool {
        match op {
            Op::InsertRequest { .. } => self.requests.push(op),
            Op::InsertTask { request_id, task } => self.tasks.push((request_id, task)),
            Op::InsertEdge { request_id, edge } => self.edges.push((request_id, edge)),
            Op::InsertAttempt { .. } => self.attempts.push(op),
            Op::UpdateTask {
                request_id,
                task_id,
                status,
                device,
                output,
                error,
            } => self.task_status.add(
                (request_id, task_id),
                TaskStatusRow {
                    request_id,
                    task_id,
                    status: *status,
                    device: device.as_ref(),
                    output: output.as_ref(),
                    error: error.as_ref(),
                },
                |a, b| {
                    a.status = b.status;
                    a.device = b.device.or(a.device);
                    a.output = b.output.or(a.output);
                    a.error = b.error;
                },
            ),
            Op::UpdateTaskSched {
                request_id,
                task_id,
                sched,
            } => self
                .task_sched
                .replace((request_id, task_id), ((request_id, task_id), sched)),
            Op::UpdateAttempt { id, .. } => self.attempt_status.replace(id, op),
            Op::UpdateAttemptTurns { id, .. } => self.attempt_turns.replace(id, op),
            Op::UpdateTurns { id, turns } => self.request_turns.replace(id, (id, turns)),
            Op::UpdateRequest { id, .. } => self.request_status.replace(id, op),
            _ => return false,
        }
        true
    }

    /// Writes the segment: parents before children, then the updates (which touch distinct
    /// columns or distinct rows, so their order does not matter).
    fn push_into(&self, qb: &mut Statements<'a>) {
        push_values(
            qb,
            "INSERT INTO requests (id, text, status, planner, version, created_at_ms, \
             updated_at_ms, turns) ",
            "",
            &self.requests,
            |row, op| {
                if let Op::InsertRequest {
                    id,
                    text,
                    planner,
                    status,
                    turns,
                    at_ms,
                } = op
                {
                    row.push_bind(id.as_str())
                        .push_bind(text.as_str())
                        .push_bind(status.as_str())
                        .push_bind(planner.as_str())
                        .push_bind(1_i64)
                        .push_bind(db_ms(*at_ms))
                        .push_bind(db_ms(*at_ms))
                        .push_bind(to_json(turns));
                }
            },
        );
        push_values(
            qb,
            "INSERT INTO tasks (request_id, id, position, title, instruction, action, target, \
             capabilities, status, retry, not_before_ms, first_ready_ms, avoid_device, \
             max_turns, files) ",
            "",
            &self.tasks,
            |row, (request_id, task)| {
                row.push_bind(request_id.as_str())
                    .push_bind(task.id.as_str())
                    .push_bind(i64::from(task.position))
                    .push_bind(task.title.as_str())
                    .push_bind(task.instruction.as_str())
                    .push_bind(opt_json(&task.action))
                    .push_bind(to_json(&TargetRow::from(&task.target)))
                    .push_bind(to_json(&task.capabilities))
                    .push_bind(task.status.as_str())
                    .push_bind(to_json(&task.retry))
                    .push_bind(db_ms(task.sched.not_before_ms))
                    .push_bind(task.sched.first_ready_ms.map(db_ms))
                    .push_bind(task.sched.avoid.as_ref().map(DeviceName::as_str))
                    .push_bind(i64::from(task.max_turns))
                    .push_bind(files_json(&task.files));
            },
        );
        push_values(
            qb,
            "INSERT INTO edges (request_id, from_task, to_task, kind, condition) ",
            "",
            &self.edges,
            |row, (request_id, edge)| {
                row.push_bind(request_id.as_str())
                    .push_bind(edge.from.as_str())
                    .push_bind(edge.to.as_str())
                    .push_bind(edge.kind.as_str())
                    .push_bind(opt_json(&edge.condition));
            },
        );
        push_values(
            qb,
            "INSERT INTO attempts (id, request_id, task_id, device, status, started_at_ms, \
             deadline_ms, max_turns) ",
            "",
            &self.attempts,
            |row, op| {
                if let Op::InsertAttempt {
                    id,
                    request_id,
                    task_id,
                    device,
                    at_ms,
                    deadline_ms,
                    max_turns,
                } = op
                {
                    row.push_bind(id.as_str())
                        .push_bind(request_id.as_str())
                        .push_bind(task_id.as_str())
                        .push_bind(device.as_str())
                        .push_bind(AttemptStatus::Dispatched.as_str())
                        .push_bind(db_ms(*at_ms))
                        .push_bind(db_ms(*deadline_ms))
                        .push_bind(i64::from(*max_turns));
                }
            },
        );
        push_values(
            qb,
            "UPDATE tasks SET status = v.column3, device = COALESCE(v.column4, tasks.device), \
             output = COALESCE(v.column5, tasks.output), error = v.column6 FROM (",
            ") AS v WHERE tasks.request_id = v.column1 AND tasks.id = v.column2",
            &self.task_status.rows,
            |row, t| {
                row.push_bind(t.request_id.as_str())
                    .push_bind(t.task_id.as_str())
                    .push_bind(t.status.as_str())
                    .push_bind(t.device.map(DeviceName::as_str))
                    .push_bind(t.output.map(to_json))
                    .push_bind(t.error.map(to_json));
            },
        );
        push_values(
            qb,
            "UPDATE tasks SET not_before_ms = v.column3, first_ready_ms = v.column4, \
             avoid_device = v.column5, cancel_requested = v.column6 FROM (",
            ") AS v WHERE tasks.request_id = v.column1 AND tasks.id = v.column2",
            &self.task_sched.rows,
            |row, ((request_id, task_id), sched)| {
                row.push_bind(request_id.as_str())
                    .push_bind(task_id.as_str())
                    .push_bind(db_ms(sched.not_before_ms))
                    .push_bind(sched.first_ready_ms.map(db_ms))
                    .push_bind(sched.avoid.as_ref().map(DeviceName::as_str))
                    .push_bind(i64::from(sched.cancel_requested));
            },
        );
        push_values(
            qb,
            "UPDATE attempts SET status = v.column2, ended_at_ms = v.column3, error = v.column4 \
             FROM (",
            ") AS v WHERE attempts.id = v.column1",
            &self.attempt_status.rows,
            |row, op| {
                if let Op::UpdateAttempt {
                    id,
                    status,
                    ended_at_ms,
                    error,
                } = op
                {
                    row.push_bind(id.as_str())
                        .push_bind(status.as_str())
                        .push_bind(ended_at_ms.map(db_ms))
                        .push_bind(opt_json(error));
                }
            },
        );
        push_values(
            qb,
            "UPDATE attempts SET max_turns = v.column2, turns_used = v.column3 FROM (",
            ") AS v WHERE attempts.id = v.column1",
            &self.attempt_turns.rows,
            |row, op| {
                if let Op::UpdateAttemptTurns {
                    id,
                    max_turns,
                    turns_used,
                } = op
                {
                    row.push_bind(id.as_str())
                        .push_bind(i64::from(*max_turns))
                        .push_bind(i64::from(*turns_used));
                }
            },
        );
        push_values(
            qb,
            "UPDATE requests SET turns = v.column2 FROM (",
            ") AS v WHERE requests.id = v.column1",
            &self.request_turns.rows,
            |row, (id, turns)| {
                row.push_bind(id.as_str()).push_bind(to_json(turns));
            },
        );
        push_values(
            qb,
            "UPDATE requests SET status = v.column2, error = v.column3, updated_at_ms = v.column4 \
             FROM (",
            ") AS v WHERE requests.id = v.column1",
            &self.request_status.rows,
            |row, op| {
                if let Op::UpdateRequest {
                    id,
                    status,
                    error,
                    at_ms,
                } = op
                {
                    row.push_bind(id.as_str())
                        .push_bind(status.as_str())
                        .push_bind(opt_json(error))
                        .push_bind(db_ms(*at_ms));
                }
            },
        );
    }
}

/// Adds `head VALUES (…), (…) tail;` over `rows`, [`ROWS_PER_STATEMENT`] at a time.
fn push_values<'a, 'r, T>(
    qb: &mut Statements<'a>,
    head: &str,
    tail: &str,
    rows: &'r [T],
    mut bind: impl FnMut(&mut Tuple<'_, 'a>, &'r T),
) {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        qb.push(head);
        qb.values(chunk, &mut bind);
        qb.push(tail);
        qb.end();
    }
}

/// The ops that are written one at a time, where they stand.
fn push_barrier<'a>(qb: &mut Statements<'a>, op: &'a Op) {
    match op {
        Op::InsertFiles {
            request_id,
            task_id,
            attempt_id,
            files,
        } => {
            // Rare (a success that declared outputs), so written where it stands; a task
            // succeeds once, but a second copy would replace the first rather than fail.
            qb.push(if qb.is_postgres() {
                "INSERT INTO files (request_id, task_id, attempt_id, name, sha256, size) "
            } else {
                "INSERT OR REPLACE INTO files (request_id, task_id, attempt_id, name, sha256, size) "
            });
            qb.values(files, |row, f| {
                row.push_bind(request_id.as_str())
                    .push_bind(task_id.as_str())
                    .push_bind(attempt_id.as_str())
                    .push_bind(f.name.as_str())
                    .push_bind(f.sha256.as_str())
                    .push_bind(i64::try_from(f.size).unwrap_or(i64::MAX));
            });
            if qb.is_postgres() {
                qb.push(
                    " ON CONFLICT (request_id, task_id, name) DO UPDATE SET \
                     attempt_id = EXCLUDED.attempt_id, sha256 = EXCLUDED.sha256, \
                     size = EXCLUDED.size",
                );
            }
        }
        Op::UpdateTaskDef { request_id, task } => {
            qb.push("UPDATE tasks SET title = ")
                .push_bind(task.title.as_str())
                .push(", instruction = ")
                .push_bind(task.instruction.as_str())
                .push(", action = ")
                .push_bind(opt_json(&task.action))
                .push(", target = ")
                .push_bind(to_json(&TargetRow::from(&task.target)))
                .push(", capabilities = ")
                .push_bind(to_json(&task.capabilities))
                .push(", retry = ")
                .push_bind(to_json(&task.retry))
                .push(", max_turns = ")
                .push_bind(i64::from(task.max_turns))
                .push(", files = ")
                .push_bind(files_json(&task.files))
                .push(" WHERE request_id = ")
                .push_bind(request_id.as_str())
                .push(" AND id = ")
                .push_bind(task.id.as_str());
        }
        Op::DeleteTask {
            request_id,
            task_id,
        } => {
            qb.push("DELETE FROM edges WHERE request_id = ")
                .push_bind(request_id.as_str())
                .push(" AND (from_task = ")
                .push_bind(task_id.as_str())
                .push(" OR to_task = ")
                .push_bind(task_id.as_str())
                .push(")")
                .end();
            qb.push("DELETE FROM tasks WHERE request_id = ")
                .push_bind(request_id.as_str())
                .push(" AND id = ")
                .push_bind(task_id.as_str());
        }
        Op::DeleteEdge {
            request_id,
            from,
            to,
        } => {
            qb.push("DELETE FROM edges WHERE request_id = ")
                .push_bind(request_id.as_str())
                .push(" AND from_task = ")
                .push_bind(from.as_str())
                .push(" AND to_task = ")
                .push_bind(to.as_str());
        }
        Op::SetVersion { id, version } => {
            qb.push("UPDATE requests SET version = ")
                .push_bind(db_ms(*version))
                .push(" WHERE id = ")
                .push_bind(id.as_str());
        }
        Op::CancelRequested { id } => {
            qb.push("UPDATE requests SET cancel_requested = 1 WHERE id = ")
                .push_bind(id.as_str());
        }
        Op::RecordLateResult { id, result } => {
            // Only the first late copy is kept, and only on an attempt the result did not end:
            // one that timed out or was lost, or (for anything but the confirmation) one that
            // a cancel ended.
            let ended_without_it = if result.status == ResultStatus::Cancelled {
                "('timed_out', 'lost')"
            } else {
                "('timed_out', 'lost', 'cancelled')"
            };
            qb.push("UPDATE attempts SET late_result = ")
                .push_bind(to_json(result))
                .push(" WHERE id = ")
                .push_bind(id.as_str())
                .push(" AND late_result IS NULL AND status IN ")
                .push(ended_without_it);
        }
        Op::InsertDevice(d) => {
            // REPLACE deletes the tombstone of a removed device of that name, so every column
            // not listed goes back to its default; Postgres does the same in two statements.
            if qb.is_postgres() {
                qb.push("DELETE FROM devices WHERE name = ")
                    .push_bind(d.name.as_str())
                    .end();
                qb.push("INSERT INTO devices ");
            } else {
                qb.push("INSERT OR REPLACE INTO devices ");
            }
            qb.push(
                "(name, kind, token_hash, platform, capabilities, max_concurrency, \
                 created_at_ms) ",
            );
            qb.values([d], |row, d| {
                row.push_bind(d.name.as_str())
                    .push_bind(d.kind.as_str())
                    .push_bind(d.token_hash.as_str())
                    .push_bind(d.platform.as_deref())
                    .push_bind(to_json(&d.capabilities))
                    .push_bind(i64::from(d.max_concurrency))
                    .push_bind(db_ms(d.created_at_ms));
            });
        }
        Op::UpdateDeviceProfile(d) => {
            qb.push("UPDATE devices SET platform = ")
                .push_bind(d.platform.as_deref())
                .push(", capabilities = ")
                .push_bind(to_json(&d.capabilities))
                .push(", max_concurrency = ")
                .push_bind(i64::from(d.max_concurrency))
                .push(", last_seen_ms = ")
                .push_bind(d.last_seen_ms.map(db_ms))
                .push(", os_version = ")
                .push_bind(d.os_version.as_deref())
                .push(", tools = ")
                .push_bind(to_json(&d.tools))
                // Written at the hello: the device is connected since then.
                .push(", online_since_ms = ")
                .push_bind(d.last_seen_ms.map(db_ms))
                .push(" WHERE name = ")
                .push_bind(d.name.as_str());
        }
        Op::SetDraining { name, draining } => {
            qb.push("UPDATE devices SET draining = ")
                .push_bind(i64::from(*draining))
                .push(" WHERE name = ")
                .push_bind(name.as_str());
        }
        Op::RemoveDevice { name, at_ms } => {
            qb.push("UPDATE devices SET removed_at_ms = ")
                .push_bind(db_ms(*at_ms))
                .push(" WHERE name = ")
                .push_bind(name.as_str());
        }
        Op::RotateDeviceToken {
            name,
            token_hash,
            retired_token_hash,
            at_ms,
        } => {
            qb.push("UPDATE devices SET token_hash = ")
                .push_bind(token_hash.as_str())
                .push(", retired_token_hash = ")
                .push_bind(retired_token_hash.as_str())
                .push(", token_rotated_at_ms = ")
                .push_bind(db_ms(*at_ms))
                .push(" WHERE name = ")
                .push_bind(name.as_str());
        }
        Op::TouchDevice { name, at_ms } => {
            qb.push("UPDATE devices SET online_since_ms = NULL, last_seen_ms = ")
                .push_bind(db_ms(*at_ms))
                .push(" WHERE name = ")
                .push_bind(name.as_str());
        }
        Op::DevicesOffline => {
            qb.push("UPDATE devices SET online_since_ms = NULL WHERE online_since_ms IS NOT NULL");
        }
        // Taken by `Segment::add`; they never reach here.
        Op::InsertRequest { .. }
        | Op::InsertTask { .. }
        | Op::InsertEdge { .. }
        | Op::InsertAttempt { .. }
        | Op::UpdateTask { .. }
        | Op::UpdateTaskSched { .. }
        | Op::UpdateAttempt { .. }
        | Op::UpdateAttemptTurns { .. }
        | Op::UpdateTurns { .. }
        | Op::UpdateRequest { .. } => return,
    }
    qb.end();
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sqlx::Row;
    use weft_protocol::wire::ResultStatus;
    use weft_protocol::{EdgeKind, RetryPolicy};

    use super::*;
    use crate::engine::Target;

    const REQUESTS: [&str; 2] = ["r0", "r1"];
    const TASKS: [&str; 3] = ["t0", "t1", "t2"];

    fn task(id: &str, position: u32) -> TaskRecord {
        TaskRecord {
            id: TaskId::from(id),
            position,
            title: id.into(),
            instruction: "run \"true\"".into(),
            action: None,
            target: Target::Any,
            capabilities: vec![],
            status: TaskStatus::Pending,
            retry: RetryPolicy::default(),
            sched: TaskSched::default(),
            max_turns: 1,
            output: None,
            files: Default::default(),
            produced: vec![],
        }
    }

    /// Requests, their tasks, an edge each and one attempt per task.
    fn setup() -> Vec<Op> {
        let mut ops = Vec::new();
        for r in REQUESTS {
            ops.push(Op::InsertRequest {
                id: r.into(),
                text: "x".into(),
                planner: "rules".into(),
                status: RequestStatus::Running,
                turns: TurnsView::default(),
                at_ms: 1,
            });
            for (i, t) in TASKS.iter().enumerate() {
                ops.push(Op::InsertTask {
                    request_id: r.into(),
                    task: task(t, u32::try_from(i).unwrap()),
                });
                ops.push(Op::InsertAttempt {
                    id: AttemptId(format!("{r}-{t}-a")),
                    request_id: r.into(),
                    task_id: TaskId::from(*t),
                    device: DeviceName("d".into()),
                    at_ms: 1,
                    deadline_ms: 10,
                    max_turns: 1,
                });
            }
            ops.push(Op::InsertEdge {
                request_id: r.into(),
                edge: EdgeView {
                    from: "t0".into(),
                    to: "t1".into(),
                    kind: EdgeKind::Success,
                    condition: None,
                },
            });
        }
        ops
    }

    fn out(n: u8) -> TaskOutput {
        TaskOutput {
            summary: format!("out {n}"),
            data: serde_json::Value::Null,
        }
    }

    fn status(n: u8) -> TaskStatus {
        [
            TaskStatus::Ready,
            TaskStatus::Dispatched,
            TaskStatus::Running,
            TaskStatus::Succeeded,
            TaskStatus::Failed,
        ][usize::from(n % 5)]
    }

    fn attempt_status(n: u8) -> AttemptStatus {
        [
            AttemptStatus::Running,
            AttemptStatus::Succeeded,
            AttemptStatus::TimedOut,
            AttemptStatus::Lost,
        ][usize::from(n % 4)]
    }

    /// One op on the rows of `setup`, from a few random numbers.
    fn op((kind, r, t, n, flags): (u8, usize, usize, u8, u8)) -> Op {
        let request_id = RequestId::from(REQUESTS[r % 2]);
        let task_id = TaskId::from(TASKS[t % 3]);
        let attempt = AttemptId(format!("{}-{}-a", REQUESTS[r % 2], TASKS[t % 3]));
        let some = |bit: u8| flags & (1 << bit) != 0;
        match kind % 12 {
            0 | 1 => Op::UpdateTask {
                request_id,
                task_id,
                status: status(n),
                device: some(0).then(|| DeviceName(format!("d{n}"))),
                output: some(1).then(|| out(n)),
                error: some(2).then(|| ErrorInfo::new("e", format!("{n}"))),
            },
            2 => Op::UpdateTaskSched {
                request_id,
                task_id,
                sched: TaskSched {
                    not_before_ms: u64::from(n),
                    first_ready_ms: some(0).then_some(u64::from(n)),
                    avoid: some(1).then(|| DeviceName("d".into())),
                    cancel_requested: some(2),
                },
            },
            3 | 4 => Op::UpdateAttempt {
                id: attempt,
                status: attempt_status(n),
                ended_at_ms: some(0).then_some(u64::from(n)),
                error: some(1).then(|| ErrorInfo::new("e", "x")),
            },
            5 => Op::UpdateAttemptTurns {
                id: attempt,
                max_turns: u32::from(n),
                turns_used: u32::from(flags),
            },
            6 => Op::UpdateTurns {
                id: request_id,
                turns: TurnsView {
                    budget: u32::from(n),
                    ..TurnsView::default()
                },
            },
            7 => Op::UpdateRequest {
                id: request_id,
                status: [RequestStatus::Succeeded, RequestStatus::Failed][usize::from(n % 2)],
                error: some(0).then(|| ErrorInfo::new("e", "x")),
                at_ms: u64::from(n),
            },
            8 => Op::RecordLateResult {
                id: attempt,
                result: LateResult {
                    status: ResultStatus::Succeeded,
                    output: out(n),
                    error: None,
                    at_ms: u64::from(n),
                },
            },
            9 => Op::SetVersion {
                id: request_id,
                version: u64::from(n),
            },
            10 => Op::DeleteTask {
                request_id,
                task_id,
            },
            _ => Op::InsertAttempt {
                id: AttemptId(format!("{request_id}-{task_id}-{n}-{flags}")),
                request_id,
                task_id,
                device: DeviceName("d2".into()),
                at_ms: u64::from(n),
                deadline_ms: 99,
                max_turns: 2,
            },
        }
    }

    /// Every row of the tables a commit writes, as text.
    async fn dump(store: &Store) -> Vec<String> {
        let mut rows = Vec::new();
        for q in [
            "SELECT * FROM requests ORDER BY id",
            "SELECT * FROM tasks ORDER BY request_id, id",
            "SELECT * FROM edges ORDER BY request_id, from_task, to_task",
            "SELECT * FROM attempts ORDER BY id",
            "SELECT * FROM events ORDER BY seq",
        ] {
            with_pool!(store, |pool| {
                for r in sqlx::query(q).fetch_all(pool).await.unwrap() {
                    let cols: Vec<String> = (0..r.len())
                        .map(|i| {
                            r.try_get::<Option<String>, _>(i)
                                .map(|v| format!("{v:?}"))
                                .or_else(|_| {
                                    r.try_get::<Option<i64>, _>(i).map(|v| format!("{v:?}"))
                                })
                                .unwrap_or_else(|e| format!("?{e}"))
                        })
                        .collect();
                    rows.push(format!("{q}: {}", cols.join("|")));
                }
            });
        }
        rows
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if crate::store::testing::postgres() { 12 } else { 48 }))]

        /// Committing many ops at once (folded and grouped) leaves the same rows as committing
        /// them one at a time.
        #[test]
        fn one_commit_equals_ops_one_at_a_time(
            raw in prop::collection::vec((any::<u8>(), 0..2usize, 0..3usize, any::<u8>(), any::<u8>()), 1..40)
        ) {
            let ops: Vec<Op> = raw.into_iter().map(op).collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (grouped, single) = rt.block_on(async {
                let (a, _a) = crate::store::testing::store("sqlite::memory:").await;
                let (b, _b) = crate::store::testing::store("sqlite::memory:").await;
                let setup = setup();
                let event = |seq| Event {
                    seq,
                    request_id: "r0".into(),
                    at_ms: seq,
                    kind: EventKind::GraphEdited { version: seq, ops: vec![] },
                };
                a.commit(&setup, &[]).await.unwrap();
                b.commit(&setup, &[]).await.unwrap();
                let events: Vec<Event> = (1..=ops.len() as u64).map(event).collect();
                a.commit(&ops, &events).await.unwrap();
                for (op, ev) in ops.iter().zip(&events) {
                    b.commit(std::slice::from_ref(op), std::slice::from_ref(ev)).await.unwrap();
                }
                (dump(&a).await, dump(&b).await)
            });
            prop_assert_eq!(grouped, single);
        }
    }
}
