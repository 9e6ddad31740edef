//! The `files` table (migration 0008): the files each task's succeeding attempt produced,
//! written by the engine with the result (`Op::InsertFiles`, in the same commit), read back to
//! resume a request, to list a request's files (`GET /v1/requests/{id}/files`) and to check
//! that a blob a client asks for belongs to the request it names.

use std::collections::HashMap;

use sqlx::Row;
use weft_protocol::files::StoredFile;
use weft_protocol::{AttemptId, FileRef, RequestId, TaskId};

use super::{Store, ms, with_pool};
use crate::Error;

impl Store {
    /// Every file of `request`'s tasks, by task position and then name; `None` when there is no
    /// such request.
    pub async fn request_files(
        &self,
        request: &RequestId,
    ) -> Result<Option<Vec<StoredFile>>, Error> {
        with_pool!(self, |pool| {
            if !self.request_exists(request).await? {
                return Ok(None);
            }
            let rows = sqlx::query(
                "SELECT f.task_id, f.attempt_id, f.name, f.sha256, f.size FROM files f \
             LEFT JOIN tasks t ON t.request_id = f.request_id AND t.id = f.task_id \
             WHERE f.request_id = $1 ORDER BY t.position, f.task_id, f.name",
            )
            .bind(request.as_str())
            .fetch_all(pool)
            .await?;
            Ok(Some(
                rows.iter()
                    .map(|r| StoredFile {
                        task_id: TaskId(r.get("task_id")),
                        attempt_id: AttemptId(r.get("attempt_id")),
                        name: r.get("name"),
                        sha256: r.get("sha256"),
                        size: ms(r.get("size")),
                    })
                    .collect(),
            ))
        })
    }

    /// The size of blob `sha256` if one of `request`'s tasks produced it.
    pub async fn request_blob(
        &self,
        request: &RequestId,
        sha256: &str,
    ) -> Result<Option<u64>, Error> {
        with_pool!(self, |pool| {
            let size: Option<i64> = sqlx::query_scalar(
                "SELECT size FROM files WHERE request_id = $1 AND sha256 = $2 LIMIT 1",
            )
            .bind(request.as_str())
            .bind(sha256)
            .fetch_optional(pool)
            .await?;
            Ok(size.map(ms))
        })
    }

    /// The files each task of `request` produced, for resuming it.
    pub(super) async fn produced_files(
        &self,
        request: &RequestId,
    ) -> Result<HashMap<TaskId, Vec<FileRef>>, Error> {
        with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT task_id, name, sha256, size FROM files WHERE request_id = $1 \
             ORDER BY task_id, name",
            )
            .bind(request.as_str())
            .fetch_all(pool)
            .await?;
            let mut out: HashMap<TaskId, Vec<FileRef>> = HashMap::new();
            for r in rows {
                out.entry(TaskId(r.get("task_id")))
                    .or_default()
                    .push(FileRef {
                        name: r.get("name"),
                        sha256: r.get("sha256"),
                        size: ms(r.get("size")),
                    });
            }
            Ok(out)
        })
    }
}
