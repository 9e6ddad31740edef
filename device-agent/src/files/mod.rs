//! Files that travel between devices (issue 17), the agent's half: which files a task's
//! declared outputs name ([`collect_outputs`]), sending one to the orchestrator ([`upload`])
//! and fetching one a task takes as input ([`download`]). Each streams: no file is ever read
//! whole into memory.
//!
//! The agent uses them through [`link::Link`]: before an attempt runs it fetches the inputs
//! its `assign` names, after it succeeds it sends its declared outputs, before the result
//! (`docs/artifacts.md`).
//!
//! Architecture invariant: a downloaded file appears under its final name only once all of
//! it has arrived with its size and SHA-256; otherwise nothing is left behind.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_protocol::{ErrorInfo, FileRef};

use crate::policy::{Denied, FilesPolicy, Glob};

pub mod link;

/// How much is read, sent and written at a time.
const CHUNK: usize = 256 * 1024;

/// Most files the outputs of one task may name, globs expanded.
pub const MAX_OUTPUT_FILES: usize = 1000;

/// Largest answer read from the orchestrator besides a file (a `FileRef`, an error body).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An output file found in the workdir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// As other tasks will see it: relative to the workdir, `/` between directories.
    pub name: String,
    /// Where it is, symlinks resolved (inside the workdir).
    pub path: PathBuf,
    pub size: u64,
}

/// Why collecting, sending or fetching a file failed; each with its stable code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Denied(Denied),
    /// A name that leaves the workdir, or a file that does (through a symlink).
    #[error("{0}")]
    Outside(String),
    #[error("{0}")]
    InvalidPattern(String),
    /// A declared output that is not there.
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Upload(String),
    #[error("{0}")]
    Download(String),
    /// A download that did not arrive with its size and SHA-256 (it was deleted).
    #[error("{0}")]
    Corrupt(String),
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(_) => crate::policy::POLICY_DENIED,
            Self::Outside(_) => "path_outside_workdir",
            Self::InvalidPattern(_) => "invalid_action",
            Self::Missing(_) => "output_missing",
            Self::Io { .. } => "io_error",
            Self::Upload(_) => "upload_failed",
            Self::Download(_) => "download_failed",
            Self::Corrupt(_) => "download_corrupt",
        }
    }

    /// The error an attempt ends with.
    pub fn info(&self) -> ErrorInfo {
        match self {
            Self::Denied(d) => d.error(),
            _ => ErrorInfo::new(self.code(), self.to_string()),
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// The files `patterns` name in `workdir`, in the order declared (each once), each checked
/// against the owner's `limits`.
///
/// A pattern is a relative path whose last part may be a glob (`*`, `?`; a leading `.` is
/// matched only by a pattern that starts with one): `photo.jpg`, `*.log`, `build/*.apk`.
/// Every name must exist (`output_missing`) and every glob match at least one regular file;
/// directories a glob matches are left out. After symlinks are resolved every file must still
/// be inside the workdir (`path_outside_workdir`). A file over `limits.max_upload_bytes` is
/// `policy_denied`.
pub fn collect_outputs(
    workdir: &Path,
    patterns: &[String],
    limits: &FilesPolicy,
) -> Result<Vec<LocalFile>, Error> {
    let root = std::fs::canonicalize(workdir)
        .map_err(Error::io(format!("the workdir {}", workdir.display())))?;
    let mut out: Vec<LocalFile> = Vec::new();
    for pattern in patterns {
        check_pattern(pattern)?;
        let (dir, last) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let names = if last.contains(['*', '?']) {
            let names = matching(&root, dir, last)?;
            if names.is_empty() {
                return Err(Error::Missing(format!(
                    "no file matches the declared output `{pattern}`"
                )));
            }
            names
        } else {
            vec![pattern.clone()]
        };
        for name in names {
            if out.iter().any(|f| f.name == name) {
                continue;
            }
            let file = resolve(&root, &name)?;
            limits
                .check_upload(&file.name, file.size)
                .map_err(Error::Denied)?;
            out.push(file);
            if out.len() > MAX_OUTPUT_FILES {
                return Err(Error::InvalidPattern(format!(
                    "the declared outputs name more than {MAX_OUTPUT_FILES} files"
                )));
            }
        }
    }
    Ok(out)
}

fn check_pattern(pattern: &str) -> Result<(), Error> {
    let escapes = pattern.starts_with('/') || pattern.split('/').any(|p| p == "..");
    weft_protocol::files::check_file_pattern(pattern).map_err(|e| {
        if escapes {
            Error::Outside(format!("the declared output {e}"))
        } else {
            Error::InvalidPattern(format!("the declared output {e}"))
        }
    })
}

/// The names (`dir/entry`) of the entries of `root/dir` that `glob` matches, sorted; not
/// directories.
fn matching(root: &Path, dir: &str, glob: &str) -> Result<Vec<String>, Error> {
    let glob_ = Glob::new(glob);
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("the directory `{dir}`"))(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("the directory `{dir}`")))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not UTF-8: no name another device could be given
        };
        if (name.starts_with('.') && !glob.starts_with('.')) || !glob_.matches(&name) {
            continue;
        }
        // Follows a symlink: where it leads is checked by `resolve`.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        names.push(if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        });
    }
    names.sort();
    Ok(names)
}

/// The file `name` in `root`, symlinks resolved: it must be a regular file inside `root`.
fn resolve(root: &Path, name: &str) -> Result<LocalFile, Error> {
    let path = match std::fs::canonicalize(root.join(name)) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::Missing(format!(
                "the declared output `{name}` is not in the workdir"
            )));
        }
        Err(e) => return Err(Error::io(format!("the output `{name}`"))(e)),
    };
    if !path.starts_with(root) {
        return Err(Error::Outside(format!(
            "the declared output `{name}` leads outside the workdir (to {})",
            path.display()
        )));
    }
    let meta = std::fs::metadata(&path).map_err(Error::io(format!("the output `{name}`")))?;
    if !meta.is_file() {
        return Err(Error::InvalidPattern(format!(
            "the declared output `{name}` is not a file"
        )));
    }
    Ok(LocalFile {
        name: name.to_owned(),
        path,
        size: meta.len(),
    })
}

/// What has been sent so far: bytes and their hash.
#[derive(Debug, Default)]
struct Sent {
    hasher: Sha256,
    bytes: u64,
}

/// Sends `file` to `url` (`PUT`, the device token as Bearer, `content-length` its size),
/// hashing it as it goes, and answers the [`FileRef`] the orchestrator stored it as, once that
/// matches what was sent. The orchestrator answers `2xx` with the `FileRef` as JSON, or an
/// error body (`{"error": {"code", "message"}}`). Every failure is `upload_failed`, retryable.
///
/// At most `file.size` bytes are read: a file that grew since it was collected is cut there,
/// and then does not hash to what the orchestrator stored.
pub async fn upload(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    file: &LocalFile,
) -> Result<FileRef, Error> {
    let f = tokio::fs::File::open(&file.path)
        .await
        .map_err(Error::io(format!("the output `{}`", file.name)))?;
    let sent = Arc::new(Mutex::new(Sent::default()));
    let tally = Arc::clone(&sent);
    let body =
        tokio_util::io::ReaderStream::with_capacity(f.take(file.size), CHUNK).map(move |chunk| {
            if let Ok(bytes) = &chunk
                && let Ok(mut s) = tally.lock()
            {
                s.hasher.update(bytes);
                s.bytes += bytes.len() as u64;
            }
            chunk
        });
    let failed = |what: String| Error::Upload(format!("sending `{}`: {what}", file.name));
    let mut answer = client
        .put(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_LENGTH, file.size)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let status = answer.status();
    let text = read_answer(&mut answer).await.map_err(failed)?;
    if !status.is_success() {
        return Err(failed(refusal(status, &text)));
    }
    let stored: FileRef = serde_json::from_str(&text).map_err(|e| {
        failed(format!(
            "the orchestrator's answer is not a file reference: {e}"
        ))
    })?;
    let ours = {
        let s = sent.lock().map_err(|_| failed("a poisoned lock".into()))?;
        FileRef {
            name: file.name.clone(),
            size: s.bytes,
            sha256: hex::encode(s.hasher.clone().finalize()),
        }
    };
    if ours.size != file.size {
        return Err(failed(format!(
            "{} bytes were read; the file had {} when it was collected",
            ours.size, file.size
        )));
    }
    if stored != ours {
        return Err(failed(format!(
            "the orchestrator stored {} bytes with SHA-256 {} as `{}`; {} bytes with SHA-256 {} \
             were sent",
            stored.size, stored.sha256, stored.name, ours.size, ours.sha256
        )));
    }
    Ok(ours)
}

/// Fetches `expected` from `url` (`GET`, the device token as Bearer) into
/// `inputs_dir/<expected.name>`, and answers that path. The bytes stream into a temporary file
/// beside it (`.<name>.<random>.part`), hashed as they come; only if all `expected.size` bytes
/// arrived and they hash to `expected.sha256` is it fsynced and renamed to its name.
/// Otherwise it is deleted and the error is `download_corrupt`; a failed connection or an
/// error answer is `download_failed`. Both are retryable.
///
/// `inputs_dir` is the caller's to choose inside the workdir; `expected.name` cannot leave it
/// (a `FileRef`'s name is relative, without `..`, checked here again).
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    expected: &FileRef,
    inputs_dir: &Path,
) -> Result<PathBuf, Error> {
    expected.validate().map_err(Error::Outside)?;
    let dest = inputs_dir.join(&expected.name);
    let dir = dest.parent().unwrap_or(inputs_dir).to_path_buf();
    let base = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let failed = |what: String| Error::Download(format!("fetching `{}`: {what}", expected.name));
    let corrupt = |what: String| {
        Error::Corrupt(format!(
            "`{}` did not arrive whole ({what}); it was deleted",
            expected.name
        ))
    };
    let mut answer = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let status = answer.status();
    if !status.is_success() {
        let text = read_answer(&mut answer).await.unwrap_or_default();
        return Err(failed(refusal(status, &text)));
    }
    if let Some(len) = answer.content_length()
        && len != expected.size
    {
        return Err(corrupt(format!(
            "the orchestrator sends {len} bytes, not {}",
            expected.size
        )));
    }
    let io_err = || Error::io(format!("writing the input `{}`", expected.name));
    tokio::fs::create_dir_all(&dir).await.map_err(io_err())?;
    let tmp = TempFile::new(dir.join(format!(".{base}.{:016x}.part", rand::random::<u64>())));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp.path())
        .await
        .map_err(io_err())?;
    let mut behind = WriteBehind::new(&file).await.map_err(io_err())?;
    let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
    let mut hasher = Sha256::new();
    let mut got: u64 = 0;
    while let Some(chunk) = answer.chunk().await.map_err(|e| failed(error_chain(&e)))? {
        got += chunk.len() as u64;
        if got > expected.size {
            return Err(corrupt(format!("more than {} bytes", expected.size)));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io_err())?;
        behind.wrote(got);
    }
    if got != expected.size {
        return Err(corrupt(format!("{got} of {} bytes", expected.size)));
    }
    let sha256 = hex::encode(hasher.finalize());
    if sha256 != expected.sha256 {
        return Err(corrupt(format!("its content hashes to {sha256}")));
    }
    file.flush().await.map_err(io_err())?;
    file.get_ref().sync_all().await.map_err(io_err())?;
    drop(file);
    tokio::fs::rename(tmp.path(), &dest)
        .await
        .map_err(io_err())?;
    tmp.disarm();
    sync_dir(&dir).await.map_err(io_err())?;
    Ok(dest)
}

/// Up to [`MAX_ANSWER_BYTES`] of an answer's body, as text.
async fn read_answer(answer: &mut reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| error_chain(&e))? {
        let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room < chunk.len() {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// An error answer, with its code and message when it is the orchestrator's error body.
fn refusal(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        error: ErrorInfo,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) => format!(
            "the orchestrator answered {status}: {}: {}",
            b.error.code, b.error.message
        ),
        Err(_) => format!("the orchestrator answered {status}"),
    }
}

/// An error with its causes (reqwest's own message is rarely enough).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Makes a rename or a creation in `dir` durable. (The orchestrator's blob store uses it too.)
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    tokio::fs::File::open(dir).await?.sync_all().await?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How many bytes [`WriteBehind`] lets a file gain between two syncs.
const SYNC_EVERY: u64 = 32 * 1024 * 1024;

/// Has the disk take a file's bytes while more are still being written, so that the fsync
/// that ends the write waits only for the last of them instead of all of them (for a large
/// file on this project's machine, about 0.45 s per GiB). Every [`SYNC_EVERY`] bytes written,
/// a blocking thread syncs what the file holds so far (`fdatasync`, on a handle of its own),
/// one sync at a time. Its errors are left to that final fsync, which the writer still does.
/// (The orchestrator's blob store uses it too.)
#[derive(Debug)]
pub struct WriteBehind {
    file: Arc<std::fs::File>,
    synced_at: u64,
    running: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl WriteBehind {
    /// Syncs behind the writes to `file`.
    pub async fn new(file: &tokio::fs::File) -> io::Result<Self> {
        let file = Arc::new(file.try_clone().await?.into_std().await);
        Ok(Self {
            file,
            synced_at: 0,
            running: None,
        })
    }

    /// `written` bytes have been written to the file so far: starts a sync if the file gained
    /// [`SYNC_EVERY`] bytes since the last one and that one is over.
    pub fn wrote(&mut self, written: u64) {
        if written < self.synced_at + SYNC_EVERY
            || self.running.as_ref().is_some_and(|r| !r.is_finished())
        {
            return;
        }
        self.synced_at = written;
        let file = Arc::clone(&self.file);
        self.running = Some(tokio::task::spawn_blocking(move || file.sync_data()));
    }
}

/// A temporary file's path: the file is removed when this is dropped, unless it was
/// [`disarm`](Self::disarm)ed (after its rename). So a write that fails, or whose future is
/// dropped half-way (a cancelled attempt, a client gone), leaves nothing behind. (The
/// orchestrator's blob store uses it too.)
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(path: PathBuf) -> Self {
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Keeps the file (it has been renamed away).
    pub fn disarm(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty()
            && let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.0.display(), error = %e, "cannot remove a temporary file");
        }
    }
}

#[cfg(test)]
mod tests;
