//! The log of every request's calls to an LLM (table `llm_calls`, migration 0005): what was
//! asked, what came back, tokens and latency. Appended by the submit handler (planning) and the
//! reviser (revisions); read for the `llm` totals of `GET /v1/requests/{id}` and by the reviser
//! (revision rounds used).
//!
//! Architecture invariant: an audit log, not live state: the engine neither writes nor reads
//! it, and a failure to write it never fails a request. It holds request and response bodies
//! only, never headers, so never the API key.

use serde_json::Value;
use sqlx::Row;
use weft_planner::llm::{LlmCall, Purpose};
use weft_protocol::{ErrorInfo, RequestId};

use super::{Store, db_ms, ms, with_pool};
use crate::Error;

/// One stored call.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCall {
    pub request_id: Option<RequestId>,
    pub purpose: String,
    pub round: u32,
    pub attempt: u32,
    pub model: String,
    pub request: Value,
    pub response: Option<Value>,
    pub error: Option<ErrorInfo>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub latency_ms: u64,
    pub at_ms: u64,
}

impl Store {
    /// Appends `calls`, for `request` (`None`: the planning failed and no request exists).
    /// Logs and carries on if the database refuses: the log must never fail a request.
    pub async fn record_llm_calls(&self, request: Option<&RequestId>, calls: Vec<LlmCall>) {
        if calls.is_empty() {
            return;
        }
        if let Err(e) = self.insert_llm_calls(request, &calls).await {
            tracing::warn!(error = %e, request = ?request, "cannot record LLM calls");
        }
    }

    async fn insert_llm_calls(
        &self,
        request: Option<&RequestId>,
        calls: &[LlmCall],
    ) -> Result<(), Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for c in calls {
                let error = c
                    .error
                    .as_ref()
                    .map(|(code, message)| ErrorInfo::new(code.clone(), message.clone()));
                sqlx::query(
                    "INSERT INTO llm_calls (request_id, purpose, round, attempt, model, request, \
             response, error, prompt_tokens, completion_tokens, latency_ms, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(request.map(RequestId::as_str))
                .bind(c.purpose.as_str())
                .bind(i64::from(c.round))
                .bind(i64::from(c.attempt))
                .bind(&c.model)
                .bind(c.request.to_string())
                .bind(c.response.as_ref().map(Value::to_string))
                .bind(error.map(|e| serde_json::to_string(&e).unwrap_or_default()))
                .bind(c.prompt_tokens.map(db_ms))
                .bind(c.completion_tokens.map(db_ms))
                .bind(db_ms(c.latency_ms))
                .bind(db_ms(c.at_ms))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The highest revision round a request has used (0: none yet).
    pub async fn revision_rounds_used(&self, id: &RequestId) -> Result<u32, Error> {
        with_pool!(self, |pool| {
            let r = sqlx::query(
        "SELECT COALESCE(MAX(round), 0) AS n FROM llm_calls WHERE request_id = $1 AND purpose = $2",
    )
    .bind(id.as_str())
    .bind(Purpose::Revise.as_str())
    .fetch_one(pool)
    .await?;
            Ok(u32::try_from(r.get::<i64, _>("n")).unwrap_or(u32::MAX))
        })
    }

    /// Every call for `request` (`None`: the calls of plannings that created no request), oldest
    /// first.
    pub async fn llm_calls(&self, request: Option<&RequestId>) -> Result<Vec<StoredCall>, Error> {
        with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT request_id, purpose, round, attempt, model, request, response, error, \
         prompt_tokens, completion_tokens, latency_ms, at_ms FROM llm_calls \
         WHERE request_id IS NOT DISTINCT FROM $1 ORDER BY id",
            )
            .bind(request.map(RequestId::as_str))
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|r| {
                    let json = |col: &str| -> Result<Option<Value>, Error> {
                        r.get::<Option<String>, _>(col)
                            .map(|s| {
                                serde_json::from_str(&s)
                                    .map_err(|e| Error::Corrupt(format!("llm_calls.{col}: {e}")))
                            })
                            .transpose()
                    };
                    let error = json("error")?
                        .map(serde_json::from_value::<ErrorInfo>)
                        .transpose()
                        .map_err(|e| Error::Corrupt(format!("llm_calls.error: {e}")))?;
                    Ok(StoredCall {
                        request_id: r.get::<Option<String>, _>("request_id").map(RequestId),
                        purpose: r.get("purpose"),
                        round: u32::try_from(r.get::<i64, _>("round")).unwrap_or(0),
                        attempt: u32::try_from(r.get::<i64, _>("attempt")).unwrap_or(0),
                        model: r.get("model"),
                        request: json("request")?.unwrap_or(Value::Null),
                        response: json("response")?,
                        error,
                        prompt_tokens: r.get::<Option<i64>, _>("prompt_tokens").map(ms),
                        completion_tokens: r.get::<Option<i64>, _>("completion_tokens").map(ms),
                        latency_ms: ms(r.get("latency_ms")),
                        at_ms: ms(r.get("at_ms")),
                    })
                })
                .collect()
        })
    }
}
