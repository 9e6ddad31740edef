//! Retention of the files that travel between devices (issue 17, docs/artifacts.md): a blob is
//! kept while a request that refers to it has not ended, and for `--artifact-retention`
//! (7 days by default) after the last such request ended; then a periodic sweep deletes it.
//! It runs beside the engine, never inside its loop.
//!
//! Blobs are counted over requests: the same content produced by two requests is one blob,
//! and it goes only when neither refers to it within retention (the `files` table, read by
//! [`Store::retention_view`]). A sweep:
//! 1. reads, in one transaction, which blobs requests still refer to, the files of requests
//!    that ended before the cutoff, and when the oldest attempt that has not ended started;
//! 2. asks the engine to journal the deletion (`files_deleted`, one event per request whose
//!    files go): the engine leaves out any blob a request live in its memory refers to, and
//!    answers once the events are committed;
//! 3. deletes each journaled blob, and each blob no request refers to at all (outputs of
//!    attempts that failed), through [`BlobStore::delete_if_stored_before`] with the time of
//!    the oldest attempt still running (less a slack for coarse file times): a blob stored
//!    since may be the output of an attempt whose result is not committed yet, and a put and
//!    that deletion take turns, so a blob a put has answered for is never deleted under it.
//!
//! Why nothing a live request refers to is deleted: a blob enters a request either through a
//! result already committed when the sweep reads (then step 1 keeps it), or through an upload
//! by an attempt that was running when the sweep read (then it was stored after that attempt
//! started, and step 3 keeps it), or by an attempt that started after the sweep read (stored
//! after the sweep began, kept likewise). A crash between step 2 and step 3 leaves a blob
//! whose deletion is journaled: the next sweep deletes it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::blobs::{BlobId, BlobStore, Removal};
use crate::engine::Handle;
use crate::store::Store;

/// How long a blob is kept after the last request that refers to it ended, unless
/// `--artifact-retention` says.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Slack for comparing when a blob was stored (its file's time, which the kernel keeps
/// coarsely) with when an attempt started (the engine's clock).
pub const DEFAULT_SLACK: Duration = Duration::from_secs(60);

/// How a sweep runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long blobs outlive the last request that refers to them.
    pub retention: Duration,
    /// Between two sweeps.
    pub every: Duration,
    /// See [`DEFAULT_SLACK`].
    pub slack: Duration,
}

impl Options {
    /// Sweeps every quarter of `retention`, at least every second and at most every hour.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            every: (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600)),
            slack: DEFAULT_SLACK,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Blobs deleted.
    pub deleted: usize,
    /// Blobs whose deletion was journaled (`files_deleted` events), of those.
    pub journaled: usize,
    /// Blobs no request refers to within retention but stored too recently to go.
    pub recent: usize,
}

/// Starts the periodic sweep; it stops when `shutdown` is cancelled.
pub fn spawn(
    engine: Handle,
    store: Store,
    blobs: Arc<dyn BlobStore>,
    opts: Options,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(opts.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match sweep(&engine, &store, blobs.as_ref(), &opts).await {
                Ok(s) if s == Swept::default() => {}
                Ok(s) => tracing::info!(
                    deleted = s.deleted,
                    journaled = s.journaled,
                    recent = s.recent,
                    "retention sweep"
                ),
                Err(Error::EngineGone) => break,
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; tried again later"),
            }
        }
    })
}

/// One sweep (see the module's documentation).
pub async fn sweep(
    engine: &Handle,
    store: &Store,
    blobs: &dyn BlobStore,
    opts: &Options,
) -> Result<Swept, Error> {
    let now = engine.clock().now_ms();
    let view = store
        .retention_view(now.saturating_sub(millis(opts.retention)))
        .await?;
    let stored_before = view
        .oldest_live_attempt_ms
        .map_or(now, |t| t.min(now))
        .saturating_sub(millis(opts.slack));
    let mut expired = BTreeMap::new();
    let mut orphans = Vec::new();
    for blob in blobs.list().await.map_err(blob_error)? {
        let sha256 = blob.sha256.as_str();
        if view.kept.contains(sha256) {
            continue;
        }
        match view.expired.get(sha256) {
            Some(files) => {
                expired.insert(sha256.to_owned(), files.clone());
            }
            None => orphans.push(blob.sha256),
        }
    }
    let journaled = if expired.is_empty() {
        Vec::new()
    } else {
        engine.files_deleted(expired).await?
    };
    let mut swept = Swept {
        journaled: journaled.len(),
        ..Swept::default()
    };
    let journaled = journaled.iter().filter_map(|s| BlobId::parse(s).ok());
    for id in journaled.chain(orphans) {
        match blobs
            .delete_if_stored_before(&id, stored_before)
            .await
            .map_err(blob_error)?
        {
            Removal::Deleted => {
                tracing::debug!(blob = %id, "retention: deleted");
                swept.deleted += 1;
            }
            Removal::Kept { .. } => swept.recent += 1,
            Removal::Missing => {}
        }
    }
    Ok(swept)
}

fn blob_error(e: crate::blobs::Error) -> Error {
    Error::Io(std::io::Error::other(format!("blob store: {e}")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Reads a duration written as numbers with units, as `7d`, `12h`, `1h30m`, `90s` or
/// `500ms` (units `d`, `h`, `m`, `s`, `ms`; a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("an empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: expected a number before each unit"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            u => {
                return Err(format!(
                    "`{text}`: unknown unit `{u}` (use d, h, m, s or ms)"
                ));
            }
        };
        total = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| format!("`{text}` is too long"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_flags_say() {
        let ok = [
            ("7d", 7 * 86_400_000),
            ("12h", 12 * 3_600_000),
            ("1h30m", 5_400_000),
            ("90s", 90_000),
            ("90", 90_000),
            ("500ms", 500),
            ("1m500ms", 60_500),
            ("0s", 0),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_duration(text).map(millis), Ok(ms), "{text}");
        }
        for bad in ["", "d", "7w", "1.5h", "-1s", "h7", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sweeps_run_often_enough_for_short_retentions() {
        assert_eq!(
            Options::new(DEFAULT_RETENTION).every,
            Duration::from_secs(3600)
        );
        assert_eq!(
            Options::new(Duration::from_secs(2)).every,
            Duration::from_secs(1)
        );
        assert_eq!(
            Options::new(Duration::from_secs(60)).every,
            Duration::from_secs(15)
        );
    }
}
