//! Blob storage: the bytes of the files that travel between devices (issue 17), stored once
//! each under the SHA-256 of their content.
//!
//! [`BlobStore`] is the trait the rest of the orchestrator will hold (`Arc<dyn BlobStore>`);
//! [`LocalBlobs`] is the default, a directory in the data dir (`<data>/blobs/ab/cdef…`).
//! Nothing here knows of requests, attempts or HTTP: which blob a task produced and how long it
//! is kept belong to the engine and the store (`docs/artifacts.md` says what is built and what
//! is left).
//!
//! Architecture invariant: a blob is visible under its name only once all of it is stored and
//! its content hashes to that name; a blob whose bytes do not hash to its name is reported
//! ([`Error::Corrupt`]), and its last bytes are never handed out.

use std::fmt;
use std::io;
use std::pin::Pin;

use futures_util::future::BoxFuture;
use tokio::io::AsyncRead;

mod local;
mod verify;

pub use local::LocalBlobs;
pub use verify::Verifying;

/// A blob's name: the SHA-256 of its content, 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId(String);

impl BlobId {
    /// Takes `s` if it is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if weft_protocol::files::valid_sha256(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::InvalidName(s.chars().take(80).collect()))
        }
    }

    /// The name of `digest`, a finished SHA-256.
    pub(crate) fn of_digest(digest: &[u8]) -> Self {
        Self(hex::encode(digest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BlobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// A stored blob: its name and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    pub sha256: BlobId,
    pub size: u64,
}

/// What a [`BlobStore::put`] takes: the most bytes it stores, and what the sender declared the
/// content to be, if it did (checked once all of it has arrived).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutLimits {
    /// More than this many bytes is [`Error::TooLarge`], found as soon as the body passes it.
    pub max_bytes: u64,
    pub expect_size: Option<u64>,
    pub expect_sha256: Option<BlobId>,
}

impl PutLimits {
    /// At most `max_bytes`, nothing declared.
    pub fn max(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            expect_size: None,
            expect_sha256: None,
        }
    }
}

/// A blob's bytes, read as they are verified: see [`Verifying`] and [`Verify`].
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

/// Whether [`BlobStore::open`]'s reader hashes what it reads.
///
/// Which side guarantees what (docs/artifacts.md, "Who verifies what"): the orchestrator names
/// a blob by the SHA-256 it computed while storing it; an agent hashes every file it downloads
/// and uses it only if it matches, so an agent never uses a corrupt blob whatever the
/// orchestrator served. A client (a browser, `curl`) checks nothing: what it fetches is always
/// verified while served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Hash every byte served; the read that would complete a blob that does not hash to its
    /// name fails instead ([`Verifying`]). For callers that do not check what they receive.
    Always,
    /// Skip hashing a blob the store verified itself and can tell has not been changed since
    /// (for [`LocalBlobs`]: the same file, size, modification and change times as when it was
    /// verified); any other blob is verified as with [`Verify::Always`]. For callers that
    /// verify what they receive (agents). What it cannot see: bytes that rotted on the disk
    /// with no change to the file's metadata.
    UnlessSealed,
}

/// Where blobs live. Every method is async and streams: no implementation may hold a whole
/// blob in memory.
///
/// The contract, for every implementation:
/// - `put` reads `body` to its end while hashing it, and stores it under its SHA-256. Until
///   the body has ended, fit `limits` and been made durable, nothing is visible under that
///   name; a put that fails or is dropped half-way leaves nothing behind (no partial blob, no
///   temporary object that outlives the store's next start). A blob already stored under the
///   name is kept (deduplication).
/// - `open` is given the size its caller expects (from its own records) and refuses a blob of
///   another size. With [`Verify::Always`] the reader it returns hashes what it reads and
///   fails with [`Error::Corrupt`] (inside the `io::Error`, see [`Error::from_read`]) instead
///   of returning the last bytes of a blob that does not hash to its name. With
///   [`Verify::UnlessSealed`] it may skip hashing a blob it has itself verified (at its put,
///   or at a whole verified read) and can tell has not changed since; any other blob is
///   verified as with `Always`.
/// - Disk or quota full is [`Error::DiskFull`], never a panic.
///
/// **An S3-compatible store** (the `object_store` crate, for several orchestrators sharing
/// blobs; not a dependency yet) plugs in as one more implementation holding an
/// `Arc<dyn ObjectStore>` and a key prefix: `put` spools the body while hashing it to a
/// temporary key (`tmp/<uuid>`, a multipart upload: an object is visible only once complete),
/// then copies it server-side to `blobs/<sha256>` (`copy_if_not_exists`, which is the
/// deduplication) and deletes the temporary key; a lifecycle rule on `tmp/` removes what a
/// crash left. `open` is a `get` whose byte stream goes through the same [`Verifying`]
/// reader, `stat` a `head`, `delete` a `delete`, `list` a `list` of the prefix. The engine and
/// the HTTP routes see only this trait, so nothing else changes. `object_store` has no
/// conditional delete, so such a store keeps when each blob was last stored, and the lock
/// that makes [`BlobStore::delete_if_stored_before`] atomic with puts, in the database the
/// replicas share (ARCHITECTURE.md, "Blobs shared by replicas").
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Stores the whole of `body`; answers its name and size.
    fn put<'a>(
        &'a self,
        body: &'a mut (dyn AsyncRead + Send + Unpin),
        limits: PutLimits,
    ) -> BoxFuture<'a, Result<BlobInfo, Error>>;

    /// Opens `blob` for reading: [`Error::NotFound`] if it is not stored, [`Error::Corrupt`]
    /// if its size is not `blob.size`; `verify` says whether the reader hashes what it reads.
    fn open<'a>(
        &'a self,
        blob: &'a BlobInfo,
        verify: Verify,
    ) -> BoxFuture<'a, Result<BlobReader, Error>>;

    /// The stored blob of that name, if there is one (its content is not read).
    fn stat<'a>(&'a self, id: &'a BlobId) -> BoxFuture<'a, Result<Option<BlobInfo>, Error>>;

    /// Deletes a blob; whether there was one.
    fn delete<'a>(&'a self, id: &'a BlobId) -> BoxFuture<'a, Result<bool, Error>>;

    /// Every stored blob, in no given order.
    fn list(&self) -> BoxFuture<'_, Result<Vec<BlobInfo>, Error>>;

    /// Deletes blob `id` unless it was last stored at or after `before_ms` (ms since the
    /// epoch, by the wall clock). A put that finds the blob already stored counts as storing
    /// it again. Atomic with respect to puts: once a put of `id` has answered, this keeps the
    /// blob (it was stored just now); a put that ends after this deleted it stores it anew.
    /// Retention (`crate::retention`) deletes only through this.
    ///
    /// The default keeps every blob: an implementation that cannot make the check and the
    /// deletion atomic must not delete.
    fn delete_if_stored_before<'a>(
        &'a self,
        id: &'a BlobId,
        before_ms: u64,
    ) -> BoxFuture<'a, Result<Removal, Error>> {
        let _ = (id, before_ms);
        Box::pin(async { Ok(Removal::Kept { stored_at_ms: 0 }) })
    }
}

/// What [`BlobStore::delete_if_stored_before`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Stored at `stored_at_ms` (ms since the epoch), not before the time given: kept.
    Kept {
        stored_at_ms: u64,
    },
    /// There was no such blob.
    Missing,
}

/// Why a blob operation failed; each with a stable code (`crate::codes`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a blob name (64 lowercase hex digits)")]
    InvalidName(String),
    #[error("no blob {0}")]
    NotFound(BlobId),
    #[error("the file is larger than {limit} bytes, the most this store takes")]
    TooLarge { limit: u64 },
    /// The body was not what its sender declared (size or SHA-256).
    #[error("the file received is {got}; the sender declared {declared}")]
    Mismatch { got: String, declared: String },
    /// A stored blob whose size or content does not match its name: never served. The caller
    /// should delete it, so that the next upload of that content stores it again.
    #[error("blob {id} is corrupt: {detail}")]
    Corrupt { id: BlobId, detail: String },
    #[error("the blob store's disk is full")]
    DiskFull,
    /// Reading the body failed (the sender went away, the connection broke).
    #[error("the file could not be read to its end: {0}")]
    Body(#[source] io::Error),
    #[error("blob store I/O: {0}")]
    Io(#[source] io::Error),
}

impl Error {
    /// The stable code a client sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid_blob_name",
            Self::NotFound(_) => "blob_not_found",
            Self::TooLarge { .. } => "blob_too_large",
            Self::Mismatch { .. } => "blob_mismatch",
            Self::Corrupt { .. } => "blob_corrupt",
            Self::DiskFull => "disk_full",
            Self::Body(_) => "invalid_body",
            Self::Io(_) => "internal",
        }
    }

    /// The error a [`BlobReader`] read failed with: the [`Error`] it carries
    /// ([`Error::Corrupt`]) or, for any other, what [`Error::from`] makes of it.
    pub fn from_read(e: io::Error) -> Self {
        e.into()
    }

    /// An `io::Error` carrying `self`, for an `AsyncRead` to fail with.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

impl From<io::Error> for Error {
    /// The store's own I/O: a full disk or quota is [`Error::DiskFull`]; an `io::Error` that
    /// carries an [`Error`] gives it back.
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => return Self::DiskFull,
            _ => {}
        }
        if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            match e.into_inner().map(|inner| inner.downcast::<Error>()) {
                Some(Ok(blob)) => return *blob,
                _ => unreachable!("an io::Error carrying a blob Error, checked just above"),
            }
        }
        Self::Io(e)
    }
}

#[cfg(test)]
mod tests;
