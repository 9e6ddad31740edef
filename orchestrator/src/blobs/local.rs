//! [`LocalBlobs`]: blobs as files in a directory, `<root>/ab/cdef…` (the first two hex digits
//! of the name, then the other 62), written through `<root>/tmp/`.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::fs;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use weft_agent::files::{TempFile, WriteBehind, sync_dir};

use super::{
    BlobId, BlobInfo, BlobReader, BlobStore, Error, PutLimits, Removal, Verify, Verifying,
};

/// How much of a body is read and written at a time.
const CHUNK: usize = 256 * 1024;

/// Where puts write before their content is known; on the same filesystem as the blobs, so
/// the final rename is atomic.
const TMP: &str = "tmp";

/// Most blobs [`Seals`] remembers; past it, one is forgotten for each new one (and is verified
/// again the next time it is served).
const MAX_SEALS: usize = 65_536;

/// The default [`BlobStore`]: a directory, normally `<data dir>/blobs`.
///
/// A put streams the body into `tmp/<uuid>.part` while hashing it (a [`CHUNK`] at a time,
/// synced behind the writes: [`WriteBehind`]), fsyncs it, and only then renames it to its
/// name and fsyncs the directory; a put that fails or is dropped removes its temporary file,
/// and [`LocalBlobs::open`] removes whatever a crash left in `tmp/`. One process uses a
/// directory at a time.
///
/// When a blob was last stored is its file's modification time: a put that finds the blob
/// already there sets it to now. The end of a put (that check, the rename) and
/// [`BlobStore::delete_if_stored_before`] take turns on one lock, so a deletion never removes
/// a blob a put has just answered for.
///
/// A blob is *sealed* once this store has seen all of its bytes hash to its name: when its put
/// stored it, or when a reader verified it whole. The seal is the file's identity and times as
/// they were then ([`Seal`]), kept in memory (a restarted store has none: it verifies each
/// blob the first time it serves it). [`Verify::UnlessSealed`] serves a blob whose file still
/// matches its seal without hashing it again: a change through the filesystem (a write in
/// place, a replacement) changes the change time, which nobody can set. (On a kernel without
/// multigrain timestamps, Linux before 6.13, a write within the same clock tick as the put
/// would go unseen; the agent's own check still refuses such a blob.)
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
    gate: Arc<tokio::sync::Mutex<()>>,
    seals: Arc<Seals>,
}

/// A blob file's identity and times when its content was verified: any write to it, a
/// truncation, a `touch`, or another file renamed in its place, changes one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seal {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seal {
    /// The seal of a file of `meta` (none where the platform does not give the change time).
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(Self {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }
}

/// The blobs known to be intact, by name: see [`LocalBlobs`].
#[derive(Debug, Default)]
struct Seals(Mutex<HashMap<BlobId, Seal>>);

impl Seals {
    fn set(&self, id: &BlobId, meta: &std::fs::Metadata) {
        let Some(seal) = Seal::of(meta) else { return };
        let Ok(mut seals) = self.0.lock() else { return };
        if seals.len() >= MAX_SEALS
            && !seals.contains_key(id)
            && let Some(old) = seals.keys().next().cloned()
        {
            seals.remove(&old);
        }
        seals.insert(id.clone(), seal);
    }

    fn forget(&self, id: &BlobId) {
        if let Ok(mut seals) = self.0.lock() {
            seals.remove(id);
        }
    }

    /// Whether `id` was verified as a file of exactly `meta`.
    fn holds(&self, id: &BlobId, meta: &std::fs::Metadata) -> bool {
        let Some(now) = Seal::of(meta) else {
            return false;
        };
        self.0
            .lock()
            .is_ok_and(|seals| seals.get(id).is_some_and(|s| *s == now))
    }
}

impl LocalBlobs {
    /// The store in `root` (created if missing), with the temporary files a crash left there
    /// removed.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        let tmp = root.join(TMP);
        fs::create_dir_all(&tmp).await?;
        let mut left = fs::read_dir(&tmp).await?;
        while let Some(entry) = left.next_entry().await? {
            tracing::info!(file = %entry.path().display(), "removing a partial blob a crash left");
            fs::remove_file(entry.path()).await?;
        }
        Ok(Self {
            root,
            gate: Arc::default(),
            seals: Arc::default(),
        })
    }

    /// The store in `<data_dir>/blobs`.
    pub async fn in_data_dir(data_dir: &Path) -> Result<Self, Error> {
        Self::open(data_dir.join("blobs")).await
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `blob` is sealed: verified by this store, and its file unchanged since. (What
    /// [`Verify::UnlessSealed`] goes by.)
    pub async fn is_sealed(&self, id: &BlobId) -> Result<bool, Error> {
        match fs::metadata(self.path(id)).await {
            Ok(meta) => Ok(self.seals.holds(id, &meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the blob `id` lives.
    pub fn path(&self, id: &BlobId) -> PathBuf {
        let (dir, rest) = id.as_str().split_at(2);
        self.root.join(dir).join(rest)
    }

    async fn put_inner(
        &self,
        body: &mut (dyn AsyncRead + Send + Unpin),
        limits: PutLimits,
    ) -> Result<BlobInfo, Error> {
        let tmp = TempFile::new(
            self.root
                .join(TMP)
                .join(format!("{}.part", uuid::Uuid::new_v4())),
        );
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp.path())
            .await?;
        // A body arrives in the pieces its sender sent (often a few KiB): written a CHUNK at
        // a time instead.
        let mut behind = WriteBehind::new(&file).await?;
        let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = body.read(&mut buf).await.map_err(Error::Body)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > limits.max_bytes {
                return Err(Error::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            if let Some(declared) = limits.expect_size.filter(|d| size > *d) {
                return Err(Error::Mismatch {
                    got: format!("more than {declared} bytes"),
                    declared: format!("{declared} bytes"),
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).await?;
            behind.wrote(size);
        }
        file.flush().await?;
        file.get_ref().sync_all().await?;
        drop(file);
        let info = BlobInfo {
            sha256: BlobId::of_digest(&hasher.finalize()),
            size,
        };
        check_declared(&info, &limits)?;
        let path = self.path(&info.sha256);
        let dir = path.parent().unwrap_or(&self.root);
        // From here to the answer, no deletion runs (see `delete_if_stored_before`).
        let _gate = self.gate.lock().await;
        match fs::metadata(&path).await {
            // Already stored (deduplication): stored again now, as far as retention goes (its
            // seal, if it had one, follows the touch). One of another size is damaged:
            // replaced below.
            Ok(m) if m.len() == size => {
                let sealed = self.seals.holds(&info.sha256, &m);
                touch(&path).await?;
                match fs::metadata(&path).await {
                    Ok(m) if sealed => self.seals.set(&info.sha256, &m),
                    _ => self.seals.forget(&info.sha256),
                }
                return Ok(info);
            }
            Ok(_) => {
                tracing::warn!(blob = %info.sha256, "replacing a stored blob of the wrong size")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let new_dir = fs::metadata(dir).await.is_err();
        fs::create_dir_all(dir).await?;
        fs::rename(tmp.path(), &path).await?;
        tmp.disarm();
        // Just hashed to its name; the rename changed its change time, so sealed after it.
        self.seals.set(&info.sha256, &fs::metadata(&path).await?);
        sync_dir(dir).await?;
        if new_dir {
            sync_dir(&self.root).await?;
        }
        Ok(info)
    }
}

/// Sets `path`'s modification time (when its blob was last stored) to now.
async fn touch(path: &Path) -> Result<(), Error> {
    let file = fs::OpenOptions::new().write(true).open(path).await?;
    file.into_std().await.set_modified(SystemTime::now())?;
    Ok(())
}

/// When the file of `meta` was last written or touched, in ms since the epoch.
fn stored_at_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The declared size and hash, if any, against what arrived.
fn check_declared(info: &BlobInfo, limits: &PutLimits) -> Result<(), Error> {
    let size_ok = limits.expect_size.is_none_or(|s| s == info.size);
    let hash_ok = limits
        .expect_sha256
        .as_ref()
        .is_none_or(|h| *h == info.sha256);
    if size_ok && hash_ok {
        return Ok(());
    }
    let declared = [
        limits.expect_size.map(|s| format!("{s} bytes")),
        limits
            .expect_sha256
            .as_ref()
            .map(|h| format!("SHA-256 {h}")),
    ];
    Err(Error::Mismatch {
        got: format!("{} bytes with SHA-256 {}", info.size, info.sha256),
        declared: declared
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" with "),
    })
}

impl BlobStore for LocalBlobs {
    fn put<'a>(
        &'a self,
        body: &'a mut (dyn AsyncRead + Send + Unpin),
        limits: PutLimits,
    ) -> BoxFuture<'a, Result<BlobInfo, Error>> {
        Box::pin(self.put_inner(body, limits))
    }

    fn open<'a>(
        &'a self,
        blob: &'a BlobInfo,
        verify: Verify,
    ) -> BoxFuture<'a, Result<BlobReader, Error>> {
        Box::pin(async move {
            let file = match fs::File::open(self.path(&blob.sha256)).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::NotFound(blob.sha256.clone()));
                }
                Err(e) => return Err(e.into()),
            };
            // The file read from is the one whose metadata the seal is checked against.
            let meta = file.metadata().await?;
            if meta.len() != blob.size {
                return Err(Error::Corrupt {
                    id: blob.sha256.clone(),
                    detail: format!("it is {} bytes; it should have {}", meta.len(), blob.size),
                });
            }
            if verify == Verify::UnlessSealed && self.seals.holds(&blob.sha256, &meta) {
                let reader: BlobReader = Box::pin(file.take(blob.size));
                return Ok(reader);
            }
            let (seals, id) = (Arc::clone(&self.seals), blob.sha256.clone());
            let verifying =
                Verifying::new(file, blob.clone()).on_verified(move || seals.set(&id, &meta));
            let reader: BlobReader = Box::pin(verifying);
            Ok(reader)
        })
    }

    fn stat<'a>(&'a self, id: &'a BlobId) -> BoxFuture<'a, Result<Option<BlobInfo>, Error>> {
        Box::pin(async move {
            match fs::metadata(self.path(id)).await {
                Ok(m) => Ok(Some(BlobInfo {
                    sha256: id.clone(),
                    size: m.len(),
                })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete<'a>(&'a self, id: &'a BlobId) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async move {
            self.seals.forget(id);
            match fs::remove_file(self.path(id)).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete_if_stored_before<'a>(
        &'a self,
        id: &'a BlobId,
        before_ms: u64,
    ) -> BoxFuture<'a, Result<Removal, Error>> {
        Box::pin(async move {
            let path = self.path(id);
            let _gate = self.gate.lock().await;
            let meta = match fs::metadata(&path).await {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
                Err(e) => return Err(e.into()),
            };
            let stored_at_ms = stored_at_ms(&meta);
            if stored_at_ms >= before_ms {
                return Ok(Removal::Kept { stored_at_ms });
            }
            self.seals.forget(id);
            match fs::remove_file(&path).await {
                Ok(()) => Ok(Removal::Deleted),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Missing),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, Error>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut dirs = fs::read_dir(&self.root).await?;
            while let Some(dir) = dirs.next_entry().await? {
                let prefix = dir.file_name().to_string_lossy().into_owned();
                if prefix.len() != 2 || !dir.file_type().await?.is_dir() {
                    continue; // `tmp/`, or not ours
                }
                let mut files = fs::read_dir(dir.path()).await?;
                while let Some(f) = files.next_entry().await? {
                    let name = format!("{prefix}{}", f.file_name().to_string_lossy());
                    match BlobId::parse(&name) {
                        Ok(id) => out.push(BlobInfo {
                            sha256: id,
                            size: f.metadata().await?.len(),
                        }),
                        Err(_) => {
                            tracing::warn!(file = %f.path().display(), "not a blob; left alone")
                        }
                    }
                }
            }
            Ok(out)
        })
    }
}
