//! Reading a request's view (`GET /v1/requests/{id}`): its row, its LLM totals, its attempts,
//! tasks and edges, and optionally its tasks' files.
//!
//! The statements are written once for both dialects. On SQLite they go to the connection's
//! thread as one multi-statement query (every `$1` binds the same id), so a whole view costs
//! one hand-off to that thread and back instead of one per statement: the hand-offs, not
//! SQLite's work, were most of a view's cost (a waited submit reads one per request,
//! BENCHMARKS.md). On Postgres they are sent one by one, as before.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::Either;
use weft_protocol::files::StoredFile;
use weft_protocol::rest::{AttemptView, EdgeView, LlmUsageView, RequestView, TaskView};
use weft_protocol::{
    AttemptId, AttemptStatus, DeviceName, EdgeKind, RequestId, RequestStatus, TaskId, TaskStatus,
};

use super::{Cols, Db, Store, ms, parse_opt, parse_status, turns_col, with_pool};
use crate::Error;

/// The view's statements, in the order their rows are read; each takes the request id as `$1`.
/// The last one, the files, is left out when they are not wanted.
const STATEMENTS: [&str; 6] = [
    "SELECT id, text, status, version, error, created_at_ms, updated_at_ms, turns \
     FROM requests WHERE id = $1",
    "SELECT COUNT(*) AS calls, CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, \
     CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS c FROM llm_calls WHERE request_id = $1",
    "SELECT id, task_id, device, status, started_at_ms, ended_at_ms, error, late_result, \
     turns_used FROM attempts WHERE request_id = $1 ORDER BY started_at_ms, id",
    "SELECT id, title, instruction, action, status, device, output, error, retry, max_turns \
     FROM tasks WHERE request_id = $1 ORDER BY position",
    "SELECT from_task, to_task, kind, condition FROM edges WHERE request_id = $1 ORDER BY rowid",
    "SELECT f.task_id, f.attempt_id, f.name, f.sha256, f.size FROM files f \
     LEFT JOIN tasks t ON t.request_id = f.request_id AND t.id = f.task_id \
     WHERE f.request_id = $1 ORDER BY t.position, f.task_id, f.name",
];

/// The statements joined for SQLite's one multi-statement query: with the files, and without.
fn sqlite_query(files: bool) -> &'static str {
    static WITH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static WITHOUT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let (cell, n) = if files {
        (&WITH, STATEMENTS.len())
    } else {
        (&WITHOUT, STATEMENTS.len() - 1)
    };
    cell.get_or_init(|| STATEMENTS[..n].join(";\n"))
}

impl Store {
    /// The full view of one request, or `None` if there is no such request.
    pub async fn request_view(&self, id: &RequestId) -> Result<Option<RequestView>, Error> {
        Ok(self.read_view(id, false).await?.map(|(view, _)| view))
    }

    /// [`Store::request_view`] and every file of the request's tasks (by task position, then
    /// name), read together.
    pub async fn request_view_and_files(
        &self,
        id: &RequestId,
    ) -> Result<Option<(RequestView, Vec<StoredFile>)>, Error> {
        self.read_view(id, true).await
    }

    async fn read_view(
        &self,
        id: &RequestId,
        files: bool,
    ) -> Result<Option<(RequestView, Vec<StoredFile>)>, Error> {
        let mut rows = ViewRows::default();
        match &self.db {
            Db::Sqlite { pool, .. } => {
                // sqlx 0.8 deprecates reading several statements' rows from one prepared query
                // (only its SQLite driver can); `raw_sql` would take no bind and be compiled
                // again on every call. Should it go, the Postgres path below works here too.
                #[allow(deprecated)]
                let mut results = sqlx::query(sqlite_query(files))
                    .bind(id.as_str())
                    .fetch_many(pool);
                // Each statement's rows are followed by its result (`Left`).
                let mut statement = 0;
                while let Some(item) = results.try_next().await? {
                    match item {
                        Either::Left(_) => statement += 1,
                        Either::Right(row) => rows.add(statement, &row)?,
                    }
                }
            }
            Db::Postgres { .. } => return self.read_view_each(id, files).await,
        }
        Ok(rows.finish())
    }

    /// The same read one statement at a time: on Postgres (and, in tests, on SQLite, to
    /// compare with the one query).
    async fn read_view_each(
        &self,
        id: &RequestId,
        files: bool,
    ) -> Result<Option<(RequestView, Vec<StoredFile>)>, Error> {
        let n = if files {
            STATEMENTS.len()
        } else {
            STATEMENTS.len() - 1
        };
        let mut rows = ViewRows::default();
        with_pool!(self, |pool| {
            for (statement, sql) in STATEMENTS[..n].iter().enumerate() {
                let got = sqlx::query(sql).bind(id.as_str()).fetch_all(pool).await?;
                for row in &got {
                    rows.add(statement, row)?;
                }
                // No request: the other statements would find nothing either.
                if statement == 0 && got.is_empty() {
                    break;
                }
            }
        });
        Ok(rows.finish())
    }
}

/// A view put together from the rows of [`STATEMENTS`], whichever dialect read them.
#[derive(Default)]
struct ViewRows {
    view: Option<RequestView>,
    attempts: HashMap<String, Vec<AttemptView>>,
    turns: HashMap<String, u32>,
    files: Vec<StoredFile>,
}

impl ViewRows {
    /// Takes one row of statement `statement` (its index in [`STATEMENTS`]).
    fn add(&mut self, statement: usize, r: &impl Cols) -> Result<(), Error> {
        match statement {
            0 => self.view = Some(request(r)?),
            1 => {
                if let Some(view) = &mut self.view {
                    view.llm = llm(r);
                }
            }
            2 => {
                let task = r.text("task_id");
                *self.turns.entry(task.clone()).or_default() += turns_col(r, "turns_used");
                self.attempts.entry(task).or_default().push(attempt(r)?);
            }
            3 => {
                let mut task = task(r)?;
                task.attempts = self.attempts.remove(task.id.as_str()).unwrap_or_default();
                task.turns_used = self.turns.get(task.id.as_str()).copied().unwrap_or(0);
                if let Some(view) = &mut self.view {
                    view.tasks.push(task);
                }
            }
            4 => {
                if let Some(view) = &mut self.view {
                    view.edges.push(edge(r)?);
                }
            }
            5 => self.files.push(file(r)),
            _ => {
                return Err(Error::Corrupt(format!(
                    "a request view read gave rows for statement {statement}"
                )));
            }
        }
        Ok(())
    }

    fn finish(self) -> Option<(RequestView, Vec<StoredFile>)> {
        self.view.map(|view| (view, self.files))
    }
}

fn request(r: &impl Cols) -> Result<RequestView, Error> {
    Ok(RequestView {
        id: RequestId(r.text("id")),
        text: r.text("text"),
        status: parse_status(RequestStatus::parse, r.text("status"), "request status")?,
        version: ms(r.int("version")),
        created_at_ms: ms(r.int("created_at_ms")),
        updated_at_ms: ms(r.int("updated_at_ms")),
        error: parse_opt(r.opt_text("error"), "request error")?,
        tasks: Vec::new(),
        edges: Vec::new(),
        turns: parse_opt(r.opt_text("turns"), "turns")?.unwrap_or_default(),
        llm: None,
    })
}

/// The LLM totals; `None` when the request made no call.
fn llm(r: &impl Cols) -> Option<LlmUsageView> {
    let calls = r.int("calls");
    (calls > 0).then(|| LlmUsageView {
        calls: u32::try_from(calls).unwrap_or(u32::MAX),
        prompt_tokens: u64::try_from(r.int("p")).unwrap_or(0),
        completion_tokens: u64::try_from(r.int("c")).unwrap_or(0),
    })
}

fn attempt(a: &impl Cols) -> Result<AttemptView, Error> {
    Ok(AttemptView {
        id: AttemptId(a.text("id")),
        device: DeviceName(a.text("device")),
        status: parse_status(AttemptStatus::parse, a.text("status"), "attempt status")?,
        started_at_ms: ms(a.int("started_at_ms")),
        ended_at_ms: a.opt_int("ended_at_ms").map(ms),
        error: parse_opt(a.opt_text("error"), "attempt error")?,
        late_result: parse_opt(a.opt_text("late_result"), "late result")?,
    })
}

/// A task without its attempts and turns used (the attempts' rows hold them).
fn task(t: &impl Cols) -> Result<TaskView, Error> {
    Ok(TaskView {
        id: TaskId(t.text("id")),
        title: t.text("title"),
        instruction: t.text("instruction"),
        action: parse_opt(t.opt_text("action"), "task action")?,
        device: t.opt_text("device").map(DeviceName),
        status: parse_status(TaskStatus::parse, t.text("status"), "task status")?,
        attempts: Vec::new(),
        output: parse_opt(t.opt_text("output"), "task output")?,
        error: parse_opt(t.opt_text("error"), "task error")?,
        retry: parse_opt(t.opt_text("retry"), "retry policy")?.unwrap_or_default(),
        max_turns: turns_col(t, "max_turns"),
        turns_used: 0,
        files: Vec::new(),
    })
}

fn edge(e: &impl Cols) -> Result<EdgeView, Error> {
    Ok(EdgeView {
        from: TaskId(e.text("from_task")),
        to: TaskId(e.text("to_task")),
        kind: parse_status(EdgeKind::parse, e.text("kind"), "edge kind")?,
        condition: parse_opt(e.opt_text("condition"), "edge condition")?,
    })
}

fn file(f: &impl Cols) -> StoredFile {
    StoredFile {
        task_id: TaskId(f.text("task_id")),
        attempt_id: AttemptId(f.text("attempt_id")),
        name: f.text("name"),
        sha256: f.text("sha256"),
        size: ms(f.int("size")),
    }
}

#[cfg(test)]
mod tests {
    use weft_protocol::rest::TurnsView;
    use weft_protocol::{ErrorInfo, FileRef, RetryPolicy};

    use super::*;
    use crate::engine::{Target, TaskRecord, TaskSched};
    use crate::store::{Op, testing};

    fn task(id: &str, position: u32, status: TaskStatus) -> Op {
        Op::InsertTask {
            request_id: "r1".into(),
            task: TaskRecord {
                id: id.into(),
                position,
                title: format!("task {id}"),
                instruction: "run it".into(),
                action: None,
                target: Target::Kind("laptop".into()),
                capabilities: vec![],
                status,
                retry: RetryPolicy::default(),
                sched: TaskSched::default(),
                max_turns: 3,
                output: None,
                files: Default::default(),
                produced: vec![],
            },
        }
    }

    fn attempt(id: &str, task: &str, at_ms: u64, status: AttemptStatus, turns: u32) -> [Op; 3] {
        [
            Op::InsertAttempt {
                id: id.into(),
                request_id: "r1".into(),
                task_id: task.into(),
                device: "l1".into(),
                at_ms,
                deadline_ms: at_ms + 1000,
                max_turns: 3,
            },
            Op::UpdateAttempt {
                id: id.into(),
                status,
                ended_at_ms: Some(at_ms + 5),
                error: (status == AttemptStatus::Failed)
                    .then(|| ErrorInfo::new("exit_status", "exit 1")),
            },
            Op::UpdateAttemptTurns {
                id: id.into(),
                max_turns: 3,
                turns_used: turns,
            },
        ]
    }

    /// SQLite's one multi-statement read gives what the statements give one by one, every part
    /// of the view included (a request's attempts in order under their tasks, turns used,
    /// edges, files, LLM totals); an unknown request is `None` either way.
    #[tokio::test]
    async fn a_view_read_at_once_is_the_view_read_statement_by_statement() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = testing::store(dir.path().join("t.db").to_str().unwrap()).await;
        let mut ops = vec![
            Op::InsertRequest {
                id: "r1".into(),
                text: "two tasks".into(),
                planner: "llm".into(),
                status: RequestStatus::Running,
                turns: TurnsView::default(),
                at_ms: 5,
            },
            task("t1", 0, TaskStatus::Succeeded),
            task("t2", 1, TaskStatus::Ready),
            Op::InsertEdge {
                request_id: "r1".into(),
                edge: EdgeView {
                    from: "t1".into(),
                    to: "t2".into(),
                    kind: EdgeKind::Success,
                    condition: None,
                },
            },
        ];
        ops.extend(attempt("a1", "t1", 10, AttemptStatus::Failed, 1));
        ops.extend(attempt("a2", "t1", 20, AttemptStatus::Succeeded, 2));
        ops.push(Op::InsertFiles {
            request_id: "r1".into(),
            task_id: "t1".into(),
            attempt_id: "a2".into(),
            files: vec![FileRef {
                name: "out.txt".into(),
                size: 3,
                sha256: "ab".repeat(32),
            }],
        });
        store.commit(&ops, &[]).await.unwrap();
        for tokens in [(7, 3), (11, 5)] {
            with_pool!(store, |pool| {
                sqlx::query(
                    "INSERT INTO llm_calls (request_id, purpose, round, attempt, model, request, \
                     prompt_tokens, completion_tokens, latency_ms, at_ms) \
                     VALUES ('r1', 'plan', 1, 1, 'm', '{}', $1, $2, 1, 1)",
                )
                .bind(tokens.0)
                .bind(tokens.1)
                .execute(pool)
                .await
                .unwrap();
            });
        }

        let r1 = RequestId::from("r1");
        let (view, files) = store.request_view_and_files(&r1).await.unwrap().unwrap();
        let each = store.read_view_each(&r1, true).await.unwrap().unwrap();
        assert_eq!((&view, &files), (&each.0, &each.1));
        assert_eq!(store.request_view(&r1).await.unwrap().as_ref(), Some(&view));

        let tasks: Vec<_> = view.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(tasks, ["t1", "t2"]);
        let attempts: Vec<_> = view.tasks[0]
            .attempts
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(attempts, ["a1", "a2"]);
        assert_eq!(
            view.tasks[0].attempts[0].error.as_ref().unwrap().code,
            "exit_status"
        );
        assert_eq!(view.tasks[0].turns_used, 3);
        assert!(view.tasks[1].attempts.is_empty());
        assert_eq!(view.edges.len(), 1);
        let llm = view.llm.unwrap();
        assert_eq!(
            (llm.calls, llm.prompt_tokens, llm.completion_tokens),
            (2, 18, 8)
        );
        assert_eq!(files.len(), 1);
        assert_eq!(
            (files[0].task_id.as_str(), files[0].name.as_str()),
            ("t1", "out.txt")
        );

        let nope = RequestId::from("nope");
        assert!(store.request_view_and_files(&nope).await.unwrap().is_none());
        assert!(store.read_view_each(&nope, true).await.unwrap().is_none());
    }
}
