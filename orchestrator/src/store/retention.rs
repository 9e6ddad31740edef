//! What retention (`crate::retention`) reads before it deletes blobs: which blobs a request
//! still refers to, which only requests that ended before the cutoff do, and since when
//! attempts that have not ended have been running. Read in one transaction, so that a result
//! committed meanwhile (its files and its attempt's end go in one commit) is seen whole or
//! not at all.

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;
use weft_protocol::files::StoredFile;
use weft_protocol::{AttemptId, RequestId, RequestStatus, TaskId};

use super::{Store, ms, with_pool};
use crate::Error;

/// The store's side of a retention sweep.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionView {
    /// When the earliest attempt that has not ended started (ms since the epoch): a blob
    /// stored since then may be an output whose result is not committed yet.
    pub oldest_live_attempt_ms: Option<u64>,
    /// Blobs a request refers to that has not ended or ended at or after the cutoff.
    pub kept: HashSet<String>,
    /// The files of requests that ended before the cutoff, by blob.
    pub expired: BTreeMap<String, Vec<(RequestId, StoredFile)>>,
}

impl Store {
    /// What a sweep needs, for requests that ended before `ended_before_ms`.
    pub async fn retention_view(&self, ended_before_ms: u64) -> Result<RetentionView, Error> {
        let (oldest, rows) = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let oldest: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(started_at_ms) FROM attempts \
                 WHERE status IN ('dispatched', 'running')",
            )
            .fetch_one(&mut *tx)
            .await?;
            let rows = sqlx::query(
                "SELECT f.request_id, f.task_id, f.attempt_id, f.name, f.sha256, f.size, \
                 r.status, r.updated_at_ms FROM files f JOIN requests r ON r.id = f.request_id",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                let status: String = r.get("status");
                let ended = RequestStatus::parse(&status).is_some_and(|s| s.is_terminal());
                let expired = ended && ms(r.get("updated_at_ms")) < ended_before_ms;
                let file = StoredFile {
                    task_id: TaskId(r.get("task_id")),
                    attempt_id: AttemptId(r.get("attempt_id")),
                    name: r.get("name"),
                    sha256: r.get("sha256"),
                    size: ms(r.get("size")),
                };
                (RequestId(r.get("request_id")), file, expired)
            })
            .collect::<Vec<_>>();
            tx.commit().await?;
            (oldest, rows)
        });
        let mut view = RetentionView {
            oldest_live_attempt_ms: oldest.map(ms),
            ..RetentionView::default()
        };
        for (request, file, expired) in rows {
            if expired {
                view.expired
                    .entry(file.sha256.clone())
                    .or_default()
                    .push((request, file));
            } else {
                view.kept.insert(file.sha256);
            }
        }
        view.expired.retain(|sha256, _| !view.kept.contains(sha256));
        Ok(view)
    }
}
