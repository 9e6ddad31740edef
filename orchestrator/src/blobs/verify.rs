//! The reader every blob is served through: it hashes what passes and holds back the read that
//! would complete a blob whose content does not hash to its name.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::{BlobId, BlobInfo, Error};

/// Reads `inner`, expected to hold exactly the bytes of `blob`. The read that reaches
/// `blob.size` bytes is checked against `blob.sha256` before it is returned: on a mismatch it
/// returns [`Error::Corrupt`] (inside an `io::Error`) and none of that read's bytes, so a
/// reader never receives the whole of a corrupt blob. Fewer bytes than `blob.size` before the
/// end, or more, are [`Error::Corrupt`] too. After an error every read fails again.
#[derive(Debug)]
pub struct Verifying<R> {
    inner: R,
    blob: BlobInfo,
    hasher: Sha256,
    read: u64,
    verified: bool,
    failed: Option<String>,
    on_verified: Option<OnVerified>,
}

/// What [`Verifying::on_verified`] runs.
struct OnVerified(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for OnVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnVerified")
    }
}

impl<R> Verifying<R> {
    pub fn new(inner: R, blob: BlobInfo) -> Self {
        Self {
            inner,
            blob,
            hasher: Sha256::new(),
            read: 0,
            verified: false,
            failed: None,
            on_verified: None,
        }
    }

    /// Runs `f` once all of the blob has been read and found to hash to its name (not if the
    /// reader is dropped before, nor on a mismatch).
    pub fn on_verified(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_verified = Some(OnVerified(Box::new(f)));
        self
    }

    fn fail(&mut self, detail: String) -> io::Error {
        self.failed = Some(detail.clone());
        Error::Corrupt {
            id: self.blob.sha256.clone(),
            detail,
        }
        .into_io()
    }

    /// Checks the hash once `blob.size` bytes have been read.
    fn check(&mut self) -> Result<(), String> {
        let got = BlobId::of_digest(&std::mem::take(&mut self.hasher).finalize());
        if got == self.blob.sha256 {
            self.verified = true;
            if let Some(OnVerified(f)) = self.on_verified.take() {
                f();
            }
            Ok(())
        } else {
            Err(format!("its content hashes to {got}"))
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verifying<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(detail) = &this.failed {
            let detail = detail.clone();
            return Poll::Ready(Err(this.fail(detail)));
        }
        let before = buf.filled().len();
        let room = buf.remaining();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        if n == 0 {
            if room == 0 || this.verified {
                return Poll::Ready(Ok(()));
            }
            // The end, with nothing read yet for an empty blob, or too soon.
            let outcome = if this.read == this.blob.size {
                this.check()
            } else {
                Err(format!(
                    "it ends after {} bytes; it should have {}",
                    this.read, this.blob.size
                ))
            };
            return Poll::Ready(outcome.map_err(|d| this.fail(d)));
        }
        if this.verified || this.read + n > this.blob.size {
            buf.set_filled(before);
            let detail = format!("it is longer than {} bytes", this.blob.size);
            return Poll::Ready(Err(this.fail(detail)));
        }
        this.hasher.update(&buf.filled()[before..]);
        this.read += n;
        if this.read == this.blob.size
            && let Err(detail) = this.check()
        {
            buf.set_filled(before);
            return Poll::Ready(Err(this.fail(detail)));
        }
        Poll::Ready(Ok(()))
    }
}
