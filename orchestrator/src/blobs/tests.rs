use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use super::*;

fn sha(bytes: &[u8]) -> BlobId {
    BlobId::of_digest(&Sha256::digest(bytes))
}

async fn store() -> (tempfile::TempDir, LocalBlobs) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobs::in_data_dir(dir.path()).await.unwrap();
    (dir, blobs)
}

async fn put(blobs: &LocalBlobs, bytes: &[u8], limits: PutLimits) -> Result<BlobInfo, Error> {
    let mut body = bytes;
    blobs.put(&mut body, limits).await
}

async fn read_all(blobs: &LocalBlobs, blob: &BlobInfo) -> Result<Vec<u8>, (Error, usize)> {
    read_with(blobs, blob, Verify::Always).await
}

async fn read_with(
    blobs: &LocalBlobs,
    blob: &BlobInfo,
    verify: Verify,
) -> Result<Vec<u8>, (Error, usize)> {
    let mut reader = blobs.open(blob, verify).await.map_err(|e| (e, 0))?;
    let mut out = Vec::new();
    match reader.read_to_end(&mut out).await {
        Ok(_) => Ok(out),
        Err(e) => Err((Error::from_read(e), out.len())),
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_blob_is_stored_under_its_sha256_and_read_back() {
    let (_dir, blobs) = store().await;
    let info = put(&blobs, b"hello", PutLimits::max(100)).await.unwrap();
    assert_eq!(
        info.sha256.as_str(),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(info.size, 5);
    assert_eq!(
        blobs.path(&info.sha256),
        blobs
            .root()
            .join("2c/f24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    );
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
    assert_eq!(read_all(&blobs, &info).await.unwrap(), b"hello");
    assert_eq!(blobs.stat(&info.sha256).await.unwrap(), Some(info.clone()));
    assert_eq!(blobs.list().await.unwrap(), std::slice::from_ref(&info));

    assert!(blobs.delete(&info.sha256).await.unwrap());
    assert!(!blobs.delete(&info.sha256).await.unwrap());
    assert_eq!(blobs.stat(&info.sha256).await.unwrap(), None);
    let (e, _) = read_all(&blobs, &info).await.unwrap_err();
    assert_eq!(e.code(), "blob_not_found", "{e}");
    assert!(blobs.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_empty_blob_is_a_blob() {
    let (_dir, blobs) = store().await;
    let info = put(&blobs, b"", PutLimits::max(0)).await.unwrap();
    assert_eq!(info.sha256, sha(b""));
    assert_eq!(read_all(&blobs, &info).await.unwrap(), b"");
}

#[tokio::test]
async fn the_same_content_is_stored_once_and_the_first_copy_kept() {
    let (_dir, blobs) = store().await;
    let a = put(&blobs, b"same", PutLimits::max(100)).await.unwrap();
    let before = std::fs::metadata(blobs.path(&a.sha256)).unwrap();
    let (b, c) = tokio::join!(
        put(&blobs, b"same", PutLimits::max(100)),
        put(&blobs, b"same", PutLimits::max(100))
    );
    assert_eq!((b.unwrap(), c.unwrap()), (a.clone(), a.clone()));
    let after = std::fs::metadata(blobs.path(&a.sha256)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "the stored file was replaced");
    }
    // Stored again, as far as retention goes.
    assert!(after.modified().unwrap() >= before.modified().unwrap());
    assert_eq!(blobs.list().await.unwrap(), [a]);
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_leaves_nothing() {
    let (_dir, blobs) = store().await;
    let e = put(&blobs, &[7; 11], PutLimits::max(10)).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 10 }), "{e}");
    assert_eq!(e.code(), "blob_too_large");
    assert!(blobs.list().await.unwrap().is_empty());
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
    // Exactly the limit is taken.
    put(&blobs, &[7; 10], PutLimits::max(10)).await.unwrap();
}

#[tokio::test]
async fn a_body_that_is_not_what_was_declared_is_refused() {
    let (_dir, blobs) = store().await;
    let declared = |size, sha256| PutLimits {
        max_bytes: 100,
        expect_size: size,
        expect_sha256: sha256,
    };
    let e = put(&blobs, b"abc", declared(Some(4), None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "blob_mismatch", "{e}");
    let e = put(&blobs, b"abcde", declared(Some(4), None))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the file received is more than 4 bytes; the sender declared 4 bytes"
    );
    let e = put(&blobs, b"abc", declared(Some(3), Some(sha(b"abd"))))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("declared 3 bytes with SHA-256"),
        "{e}"
    );
    assert!(blobs.list().await.unwrap().is_empty());
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
    let ok = put(&blobs, b"abc", declared(Some(3), Some(sha(b"abc"))))
        .await
        .unwrap();
    assert_eq!(ok.sha256, sha(b"abc"));
}

/// A body that gives some bytes, then fails: the sender went away.
struct Broken(usize);

impl AsyncRead for Broken {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.0 == 0 {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        let n = self.0.min(buf.remaining());
        buf.put_slice(&vec![1; n]);
        self.0 -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_broken_body_leaves_nothing() {
    let (_dir, blobs) = store().await;
    let e = blobs
        .put(&mut Broken(1000), PutLimits::max(1 << 20))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Body(_)), "{e}");
    assert_eq!(e.code(), "invalid_body");
    assert!(blobs.list().await.unwrap().is_empty());
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_put_dropped_half_way_leaves_nothing() {
    let (_dir, blobs) = store().await;
    let (mut tx, mut rx) = tokio::io::duplex(1024);
    tx.write_all(b"the first part").await.unwrap();
    let tmp = blobs.root().join("tmp");
    {
        let put = blobs.put(&mut rx, PutLimits::max(1 << 20));
        tokio::pin!(put);
        // Run the put until its temporary file exists; the body never ends.
        let started = async {
            while files_in(&tmp).is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            r = &mut put => panic!("the put ended: {r:?}"),
            () = started => {}
        }
    }
    assert!(files_in(&tmp).is_empty());
    assert!(blobs.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn what_a_crash_left_in_tmp_is_removed_at_open() {
    let (dir, blobs) = store().await;
    std::fs::write(blobs.root().join("tmp/x.part"), b"half").unwrap();
    let kept = put(&blobs, b"kept", PutLimits::max(10)).await.unwrap();
    let blobs = LocalBlobs::in_data_dir(dir.path()).await.unwrap();
    assert!(files_in(&blobs.root().join("tmp")).is_empty());
    assert_eq!(blobs.list().await.unwrap(), [kept]);
}

#[tokio::test]
async fn a_blob_whose_bytes_changed_is_never_served_whole() {
    let (_dir, blobs) = store().await;
    let info = put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    std::fs::write(blobs.path(&info.sha256), b"hellO world").unwrap();
    let (e, served) = read_all(&blobs, &info).await.unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert_eq!(e.code(), "blob_corrupt");
    assert!(e.to_string().contains("hashes to"), "{e}");
    assert!(served < 11, "the whole corrupt blob was served");
}

/// A blob is sealed once this store saw all of it hash to its name (its put, a whole verified
/// read), for as long as its file is the one it verified; only a sealed blob is served
/// unhashed, to callers that verify what they receive (`Verify::UnlessSealed`).
#[tokio::test]
async fn a_blob_is_served_unhashed_only_while_its_file_is_the_one_verified() {
    let (dir, blobs) = store().await;
    let info = put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    let id = &info.sha256;
    let path = blobs.path(id);
    assert!(blobs.is_sealed(id).await.unwrap(), "sealed by its put");
    let unless_sealed = |blobs: &LocalBlobs| {
        let (blobs, info) = (blobs.clone(), info.clone());
        async move { read_with(&blobs, &info, Verify::UnlessSealed).await }
    };
    assert_eq!(unless_sealed(&blobs).await.unwrap(), b"hello world");

    // Another file of the same size renamed in its place: verified, so never served whole.
    let other = path.with_extension("other");
    std::fs::write(&other, b"hellO world").unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert!(!blobs.is_sealed(id).await.unwrap());
    let (e, served) = unless_sealed(&blobs).await.unwrap_err();
    assert_eq!(e.code(), "blob_corrupt", "{e}");
    assert!(served < 11, "the whole corrupt blob was served");

    // The right bytes written back in place: verified while read whole, then sealed again.
    std::fs::write(&path, b"hello world").unwrap();
    assert!(!blobs.is_sealed(id).await.unwrap());
    assert_eq!(unless_sealed(&blobs).await.unwrap(), b"hello world");
    assert!(
        blobs.is_sealed(id).await.unwrap(),
        "sealed by a verified read"
    );
    // A read that stops half-way seals nothing; a touch breaks the seal.
    stored_ago(&blobs, id, std::time::Duration::from_secs(3600));
    assert!(!blobs.is_sealed(id).await.unwrap());
    let mut half = blobs.open(&info, Verify::UnlessSealed).await.unwrap();
    let mut five = [0u8; 5];
    half.read_exact(&mut five).await.unwrap();
    drop(half);
    assert!(!blobs.is_sealed(id).await.unwrap());

    // A put of the same content keeps a seal it had (its touch is the store's own), and
    // does not make one it did not have: that put did not read the stored bytes.
    put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    assert!(!blobs.is_sealed(id).await.unwrap());
    read_all(&blobs, &info).await.unwrap();
    assert!(blobs.is_sealed(id).await.unwrap());
    put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    assert!(blobs.is_sealed(id).await.unwrap());

    // A store opened again knows of no seal: it verifies each blob once first.
    let again = LocalBlobs::in_data_dir(dir.path()).await.unwrap();
    assert!(!again.is_sealed(id).await.unwrap());
    assert_eq!(unless_sealed(&again).await.unwrap(), b"hello world");
    assert!(again.is_sealed(id).await.unwrap());
}

#[tokio::test]
async fn a_blob_of_the_wrong_size_is_refused_at_open_and_replaced_by_the_next_put() {
    let (_dir, blobs) = store().await;
    let info = put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    std::fs::write(blobs.path(&info.sha256), b"hello").unwrap();
    let (e, _) = read_all(&blobs, &info).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "blob {} is corrupt: it is 5 bytes; it should have 11",
            info.sha256
        )
    );
    put(&blobs, b"hello world", PutLimits::max(100))
        .await
        .unwrap();
    assert_eq!(read_all(&blobs, &info).await.unwrap(), b"hello world");
}

/// The verifying reader, one byte at a time and with too few or too many bytes.
#[tokio::test]
async fn the_verifying_reader_checks_length_and_hash() {
    async fn read(bytes: &[u8], blob: &BlobInfo, chunk: usize) -> Result<Vec<u8>, String> {
        let mut r = Verifying::new(bytes, blob.clone());
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match r.read(&mut buf).await {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return Err(Error::from_read(e).to_string()),
            }
        }
    }
    let blob = BlobInfo {
        sha256: sha(b"abcdef"),
        size: 6,
    };
    assert_eq!(read(b"abcdef", &blob, 1).await.unwrap(), b"abcdef");
    assert_eq!(read(b"abcdef", &blob, 4).await.unwrap(), b"abcdef");
    let e = read(b"abcde", &blob, 4).await.unwrap_err();
    assert!(
        e.ends_with("it ends after 5 bytes; it should have 6"),
        "{e}"
    );
    let e = read(b"abcdefg", &blob, 1).await.unwrap_err();
    assert!(e.ends_with("it is longer than 6 bytes"), "{e}");
    let e = read(b"abcdeX", &blob, 1).await.unwrap_err();
    assert!(e.contains("hashes to"), "{e}");
    let empty = BlobInfo {
        sha256: sha(b""),
        size: 0,
    };
    assert_eq!(read(b"", &empty, 8).await.unwrap(), b"");
    let e = read(b"", &blob, 8).await.unwrap_err();
    assert!(
        e.ends_with("it ends after 0 bytes; it should have 6"),
        "{e}"
    );
}

#[test]
fn names_are_64_lowercase_hex_digits() {
    let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    assert_eq!(BlobId::parse(good).unwrap().as_str(), good);
    for bad in [
        "",
        &good[1..],
        &good.to_uppercase(),
        &format!("{good}0"),
        "../../../../etc/passwd",
        &format!("{}/", &good[1..]),
    ] {
        let e = BlobId::parse(bad).unwrap_err();
        assert_eq!(e.code(), "invalid_blob_name", "{bad}");
    }
}

#[tokio::test]
async fn list_leaves_out_what_is_not_a_blob() {
    let (_dir, blobs) = store().await;
    let info = put(&blobs, b"x", PutLimits::max(10)).await.unwrap();
    std::fs::write(blobs.root().join("README"), b"").unwrap();
    std::fs::create_dir_all(blobs.root().join("zz")).unwrap();
    std::fs::write(blobs.root().join("zz/not-hex"), b"").unwrap();
    assert_eq!(blobs.list().await.unwrap(), [info]);
}

/// A real ENOSPC (a write to `/dev/full`) is `DiskFull`.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_its_own_error() {
    use std::io::Write;
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .write_all(&[0; 4096])
        .and_then(|()| Err::<(), _>(io::Error::other("/dev/full took the write")))
        .unwrap_err();
    let e = Error::from(e);
    assert!(matches!(e, Error::DiskFull), "{e}");
    assert_eq!(e.code(), "disk_full");
    // A reader's own error comes back as itself; any other as I/O.
    let corrupt = Error::Corrupt {
        id: sha(b""),
        detail: "x".into(),
    };
    assert!(matches!(
        Error::from_read(corrupt.into_io()),
        Error::Corrupt { .. }
    ));
    assert_eq!(
        Error::from(io::Error::from(io::ErrorKind::PermissionDenied)).code(),
        "internal"
    );
}

/// A body of `len` bytes made as it is read, never held whole.
struct Generated {
    left: u64,
    next: u8,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let start = self.next;
        let bytes: Vec<u8> = (0..n).map(|i| start.wrapping_add(i as u8)).collect();
        buf.put_slice(&bytes);
        self.next = start.wrapping_add(n as u8);
        self.left -= n as u64;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_large_blob_streams_through() {
    const LEN: u64 = 16 << 20;
    let (_dir, blobs) = store().await;
    let mut expected = Sha256::new();
    tokio::io::copy(
        &mut Generated { left: LEN, next: 0 },
        &mut HashSink(&mut expected),
    )
    .await
    .unwrap();
    let expected = BlobId::of_digest(&expected.finalize());
    let info = blobs
        .put(&mut Generated { left: LEN, next: 0 }, PutLimits::max(LEN))
        .await
        .unwrap();
    assert_eq!(info.sha256, expected);
    assert_eq!(info.size, LEN);
    let mut reader = blobs.open(&info, Verify::Always).await.unwrap();
    let mut back = Sha256::new();
    let n = tokio::io::copy(&mut reader, &mut HashSink(&mut back))
        .await
        .unwrap();
    assert_eq!(n, LEN);
    assert_eq!(BlobId::of_digest(&back.finalize()), expected);
}

/// A writer that only hashes.
struct HashSink<'a>(&'a mut Sha256);

impl tokio::io::AsyncWrite for HashSink<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.update(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Sets when `id` was last stored to `ago` before now.
fn stored_ago(blobs: &LocalBlobs, id: &BlobId, ago: std::time::Duration) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(blobs.path(id))
        .unwrap();
    file.set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

fn now_ms() -> u64 {
    crate::now_ms()
}

/// Retention deletes a blob only if it was last stored before the time it gives; a put that
/// finds the blob already stored counts as storing it again.
#[tokio::test]
async fn a_blob_is_deleted_only_if_stored_before_the_time_given() {
    let day = std::time::Duration::from_secs(86_400);
    let (_dir, blobs) = store().await;
    let a = put(&blobs, b"kept a while", PutLimits::max(100))
        .await
        .unwrap();
    let stored = now_ms();
    assert!(matches!(
        blobs.delete_if_stored_before(&a.sha256, stored - 60_000).await.unwrap(),
        Removal::Kept { stored_at_ms } if stored_at_ms + 60_000 > stored
    ));

    stored_ago(&blobs, &a.sha256, day);
    let sweep_from = now_ms();
    // Uploaded again (another request, the same bytes): stored again now, so kept.
    put(&blobs, b"kept a while", PutLimits::max(100))
        .await
        .unwrap();
    assert!(matches!(
        blobs
            .delete_if_stored_before(&a.sha256, sweep_from - 1_000)
            .await
            .unwrap(),
        Removal::Kept { .. }
    ));
    assert_eq!(read_all(&blobs, &a).await.unwrap(), b"kept a while");

    stored_ago(&blobs, &a.sha256, day);
    assert_eq!(
        blobs
            .delete_if_stored_before(&a.sha256, now_ms())
            .await
            .unwrap(),
        Removal::Deleted
    );
    assert!(matches!(
        blobs.open(&a, Verify::Always).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        blobs
            .delete_if_stored_before(&a.sha256, now_ms())
            .await
            .unwrap(),
        Removal::Missing
    );
    // The next upload of that content stores it again.
    put(&blobs, b"kept a while", PutLimits::max(100))
        .await
        .unwrap();
    assert_eq!(read_all(&blobs, &a).await.unwrap(), b"kept a while");
}

/// Puts of a blob racing deletions of it: every put that answered leaves the blob readable
/// for a deletion that began before it, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deletion_never_removes_a_blob_a_put_just_answered_for() {
    let (_dir, blobs) = store().await;
    let blobs = std::sync::Arc::new(blobs);
    for round in 0..50 {
        let bytes = format!("raced {round}").into_bytes();
        let first = put(&blobs, &bytes, PutLimits::max(100)).await.unwrap();
        stored_ago(&blobs, &first.sha256, std::time::Duration::from_secs(3600));
        let deadline = now_ms() - 1_000;
        let (b, id) = (blobs.clone(), first.sha256.clone());
        let deleting = tokio::spawn(async move { b.delete_if_stored_before(&id, deadline).await });
        let stored = put(&blobs, &bytes, PutLimits::max(100)).await.unwrap();
        let removal = deleting.await.unwrap().unwrap();
        // Whichever ran first, the blob the put answered for is there.
        assert_eq!(
            read_all(&blobs, &stored).await.unwrap(),
            bytes,
            "round {round}: {removal:?}"
        );
    }
}
