//! Files between devices over HTTP (docs/artifacts.md). Agents, with their device token:
//! `PUT /v1/attempts/{attempt}/files/{name}` stores an output of an attempt the device holds
//! (streamed into the blob store, the router's body limit lifted for this route only, the
//! size capped by `--max-upload-bytes`), `GET /v1/blobs/{sha256}` fetches a blob an input of
//! one of its live attempts names. Clients, with the API token: `GET /v1/requests/{id}/files`
//! lists a request's files, `GET /v1/requests/{id}/files/{sha256}` fetches one.
//!
//! A blob is served to a client through the store's verifying reader: one whose bytes no
//! longer hash to its name breaks off before its last bytes (the connection is cut, so no
//! client takes it whole) and is deleted, so that the next upload of that content stores it
//! again. An agent hashes what it downloads and uses it only if it matches, so a blob the
//! store verified itself and that has not changed since is served to agents without hashing it
//! again ([`Verify::UnlessSealed`]); any other is verified as for a client.

use std::io;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, TryStreamExt};
use weft_protocol::files::{RequestFiles, check_file_name};
use weft_protocol::rest::ErrorBody;
use weft_protocol::{AttemptId, FileRef, RequestId};

use crate::ApiError;
use crate::blobs::{self, BlobId, BlobInfo, PutLimits, Verify};
use crate::engine::{FileGrant, FileWant};
use crate::http::{AppState, rate_limited};
use crate::listen::Peer;

/// How much of a blob is read and sent at a time.
const CHUNK: usize = 256 * 1024;

/// An upload that sends nothing for this long is cut off (`invalid_body`): the limit is on
/// silence, not on the whole transfer, so a large file on a slow link still arrives.
const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// Stores one output file of an attempt the calling device holds (its device token as
/// Bearer). The body is the file's bytes; `content-length`, when sent, must be its size.
/// Answers the stored file's reference (its SHA-256 is its name in the blob store).
#[utoipa::path(put, path = "/v1/attempts/{attempt}/files/{name}",
    params(
        ("attempt" = String, Path, description = "The attempt the file is an output of"),
        ("name" = String, Path, description = "The file's name relative to the task's workdir (`/` between directories)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = FileRef),
        (status = 400, description = "`invalid_file_name`, or `invalid_body`: the body broke off or stopped arriving", body = ErrorBody),
        (status = 401, description = "`bad_device_token`: not the token of a registered device", body = ErrorBody),
        (status = 403, description = "`not_your_attempt`: the attempt is held by another device", body = ErrorBody),
        (status = 409, description = "`attempt_not_live`: the attempt has ended, or never was", body = ErrorBody),
        (status = 413, description = "`blob_too_large`: larger than --max-upload-bytes; nothing was stored", body = ErrorBody),
        (status = 422, description = "`blob_mismatch`: not the size `content-length` declared; nothing was stored", body = ErrorBody),
        (status = 507, description = "`disk_full`: the orchestrator's disk is full; nothing was stored", body = ErrorBody),
    ),
    security(("device" = [])))]
///
/// An upload refused before its body was read to the end (`401`, `403`, `409`, `413`, `507`…)
/// answers `Connection: close`, as every such answer does (`crate::listen::unread`).
pub async fn upload(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Path((attempt, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let attempt = AttemptId(attempt);
    let grant = device_access(&state, peer, &headers, FileWant::Upload(attempt.clone())).await?;
    check_file_name(&name)
        .map_err(|e| ApiError::bad_request("invalid_file_name", e).into_response())?;
    let expect_size = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let limits = PutLimits {
        max_bytes: state.max_upload_bytes,
        expect_size,
        expect_sha256: None,
    };
    let mut reader = tokio_util::io::StreamReader::new(idle_limited(body));
    let stored = state
        .blobs
        .put(&mut reader, limits)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    tracing::info!(device = %grant.device, request = %grant.request, task = %grant.task,
        attempt = %attempt, file = %name, size = stored.size, sha256 = %stored.sha256, "file stored");
    let file = FileRef {
        name,
        size: stored.size,
        sha256: stored.sha256.to_string(),
    };
    Ok((StatusCode::CREATED, Json(file)).into_response())
}

/// Fetches a stored file an input of one of the calling device's live attempts names (its
/// device token as Bearer).
#[utoipa::path(get, path = "/v1/blobs/{sha256}",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The file's SHA-256: 64 lowercase hex digits")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`invalid_blob_name`", body = ErrorBody),
        (status = 401, description = "`bad_device_token`: not the token of a registered device", body = ErrorBody),
        (status = 403, description = "`blob_not_assigned`: no live attempt of this device takes it", body = ErrorBody),
        (status = 404, description = "`blob_not_found`", body = ErrorBody),
        (status = 500, description = "`blob_corrupt`: the stored bytes no longer match; it was deleted", body = ErrorBody),
    ),
    security(("device" = [])))]
pub async fn fetch_blob(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let grant = device_access(&state, peer, &headers, FileWant::Download(sha256.clone())).await?;
    let id = BlobId::parse(&sha256).map_err(|e| ApiError::from(e).into_response())?;
    let size = grant.size.unwrap_or_default();
    serve(&state, id, size, Verify::UnlessSealed)
        .await
        .map_err(IntoResponse::into_response)
}

/// Every file a request's tasks produced.
#[utoipa::path(get, path = "/v1/requests/{id}/files",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestFiles), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RequestFiles>, ApiError> {
    let id = RequestId(id);
    let files = state.store.request_files(&id).await?.ok_or_else(|| {
        ApiError::not_found("request_not_found", format!("no request with id {id}"))
    })?;
    Ok(Json(RequestFiles {
        request_id: id,
        files,
    }))
}

/// One file of a request, by its SHA-256 (as `GET /v1/requests/{id}/files` lists it).
#[utoipa::path(get, path = "/v1/requests/{id}/files/{sha256}",
    params(
        ("id" = String, Path, description = "Request id"),
        ("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The file's SHA-256: 64 lowercase hex digits"),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "`invalid_blob_name`", body = ErrorBody),
        (status = 404, description = "`file_not_found`: not a file of this request; `blob_not_found`", body = ErrorBody),
        (status = 500, description = "`blob_corrupt`: the stored bytes no longer match; it was deleted", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Path((id, sha256)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = RequestId(id);
    let blob = BlobId::parse(&sha256)?;
    let size = state
        .store
        .request_blob(&id, blob.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "file_not_found",
                format!("request {id} has no file with SHA-256 {blob}"),
            )
        })?;
    serve(&state, blob, size, Verify::Always).await
}

/// The device whose token the call carries, if it may do `want`; the answer to send
/// otherwise. Failed authentications count against the caller's address, as the API token's
/// do.
async fn device_access(
    state: &AppState,
    peer: Option<axum::Extension<Peer>>,
    headers: &HeaderMap,
    want: FileWant,
) -> Result<FileGrant, Response> {
    let ip = peer.map(|p| p.0.addr.ip());
    if let Some(ip) = ip
        && let Err(wait) = state.auth_limiter.check(ip)
    {
        return Err(rate_limited(wait));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    match state.engine.file_access(token.to_owned(), want).await {
        Ok(grant) => Ok(grant),
        Err(e) => {
            if matches!(e, crate::engine::Error::BadDeviceToken)
                && let Some(ip) = ip
            {
                state.auth_limiter.failed(ip);
            }
            Err(ApiError::from(e).into_response())
        }
    }
}

/// `blob`'s bytes as the answer, streamed through the store's reader (`verify`: see
/// [`Verify`]). A blob found corrupt (at open, or at its last read) is deleted.
async fn serve(
    state: &AppState,
    blob: BlobId,
    size: u64,
    verify: Verify,
) -> Result<Response, ApiError> {
    let info = BlobInfo {
        sha256: blob.clone(),
        size,
    };
    let reader = match state.blobs.open(&info, verify).await {
        Ok(r) => r,
        Err(e) => {
            if matches!(e, blobs::Error::Corrupt { .. }) {
                forget_corrupt(state, &blob).await;
            }
            return Err(e.into());
        }
    };
    let store = state.blobs.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, CHUNK).map(move |chunk| {
        if let Err(e) = &chunk
            && e.get_ref()
                .and_then(|inner| inner.downcast_ref::<blobs::Error>())
                .is_some_and(|b| matches!(b, blobs::Error::Corrupt { .. }))
        {
            tracing::error!(blob = %blob, "a blob failed verification while served; the answer was cut off and the blob is deleted");
            let (store, blob) = (store.clone(), blob.clone());
            tokio::spawn(async move {
                if let Err(e) = store.delete(&blob).await {
                    tracing::warn!(blob = %blob, error = %e, "could not delete a corrupt blob");
                }
            });
        }
        chunk
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(Body::from_stream(stream))
        .map_err(|e| {
            tracing::error!(error = %e, "building a file answer");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; see the server log",
            )
        })
}

async fn forget_corrupt(state: &AppState, blob: &BlobId) {
    tracing::error!(blob = %blob, "a stored blob is corrupt; it is deleted and not served");
    if let Err(e) = state.blobs.delete(blob).await {
        tracing::warn!(blob = %blob, error = %e, "could not delete a corrupt blob");
    }
}

/// The request body as a byte stream that fails once nothing has arrived for
/// [`UPLOAD_IDLE`].
fn idle_limited(body: Body) -> impl Stream<Item = io::Result<axum::body::Bytes>> + Send + Unpin {
    let chunks = body.into_data_stream().map_err(io::Error::other);
    Box::pin(futures_util::stream::unfold(
        Some(chunks),
        |chunks| async move {
            let mut chunks = chunks?;
            match tokio::time::timeout(UPLOAD_IDLE, chunks.next()).await {
                Ok(Some(item)) => Some((item, Some(chunks))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("nothing arrived for {} s", UPLOAD_IDLE.as_secs()),
                    )),
                    None,
                )),
            }
        },
    ))
}
