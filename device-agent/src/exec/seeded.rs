//! Seeded file bytes: the same bytes for the same `(seed, device, path, size)` on every machine
//! and every run, so a benchmark can move files of several megabytes between simulated devices
//! and check their SHA-256 on arrival without storing them anywhere (docs/sim.md).
//!
//! The bytes are a counter-based SplitMix64 stream keyed by the seed, the device's name and the
//! path, framed by the magic bytes of the path's extension so that a file looks like what its
//! name says: a `.jpg` starts `FF D8 FF` and ends `FF D9`, a `.pdf` starts `%PDF-` and ends
//! `%%EOF`, a `.zip` / `.xlsx` / `.docx` / `.pptx` starts `PK\x03\x04` and ends with an end of
//! central directory record, a `.png` starts with its signature and ends with `IEND`. Anything
//! else is the stream alone. Only the frame is a real format: the body between is noise, which
//! is never valid UTF-8 in practice (a `.jpg`'s first byte never is).
//!
//! A photo's size (`photo.take`) is drawn from the same key, 2 to 4 MiB; a file placed by a
//! benchmark states its own size.
//!
//! [`Bytes`] streams the bytes (it is a [`std::io::Read`]), [`Bytes::to_vec`] collects them, and
//! [`sha256_hex`] hashes them without holding them.

use std::io::Read;

use sha2::{Digest, Sha256};

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The smallest photo `photo.take` writes.
pub const PHOTO_MIN: u64 = 2 * MIB;

/// The largest photo `photo.take` writes.
pub const PHOTO_MAX: u64 = 4 * MIB;

/// The largest seeded file a benchmark may place (a sanity bound, not a format limit).
pub const MAX_SIZE: u64 = 64 * MIB;

/// FNV-1a, 64 bits: the same on every machine and Rust version.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// What the bytes of `path` on `device` are drawn from under `seed`.
fn key(seed: u64, device: &str, path: &str) -> u64 {
    mix(seed ^ fnv(format!("{device}\n{path}").as_bytes()))
}

/// The size of the photo `photo.take` writes at `path` on `device` under `seed`: 2 to 4 MiB.
pub fn photo_size(seed: u64, device: &str, path: &str) -> u64 {
    let draw = mix(key(seed, device, path) ^ 0x7068_6f74_6f5f_737a);
    PHOTO_MIN + draw % (PHOTO_MAX - PHOTO_MIN + 1)
}

/// The magic bytes a file called `path` starts and ends with.
fn frame(path: &str) -> (&'static [u8], &'static [u8]) {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        // SOI, then a JFIF APP0 segment; EOI.
        "jpg" | "jpeg" => (
            &[
                0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00,
                0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
            ],
            &[0xFF, 0xD9],
        ),
        "png" => (
            &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
            &[
                0x00, 0x00, 0x00, 0x00, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82,
            ],
        ),
        "pdf" => (b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n", b"\n%%EOF\n"),
        // A local file header; an (empty) end of central directory record.
        "zip" | "xlsx" | "docx" | "pptx" => (
            b"PK\x03\x04",
            b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        ),
        _ => (b"", b""),
    }
}

/// The bytes of a seeded file, streamed: `size` bytes, the same for the same
/// `(seed, device, path, size)`.
#[derive(Debug, Clone)]
pub struct Bytes {
    key: u64,
    size: u64,
    head: &'static [u8],
    tail: &'static [u8],
    /// How many bytes were read so far.
    pos: u64,
}

impl Bytes {
    /// The `size` bytes of the file `path` on `device` under `seed`.
    pub fn new(seed: u64, device: &str, path: &str, size: u64) -> Self {
        let (head, tail) = frame(path);
        Self {
            key: key(seed, device, path),
            size,
            head,
            tail,
            pos: 0,
        }
    }

    /// The photo `photo.take` writes at `path` on `device` under `seed` ([`photo_size`] bytes).
    pub fn photo(seed: u64, device: &str, path: &str) -> Self {
        Self::new(seed, device, path, photo_size(seed, device, path))
    }

    /// How many bytes the file has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Every byte, in memory.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        let mut from_start = Self { pos: 0, ..*self };
        // Reading from memory cannot fail.
        let _ = from_start.read_to_end(&mut all);
        all
    }

    /// The SHA-256 of every byte, as 64 lowercase hex digits; the bytes are never held whole.
    pub fn sha256_hex(&self) -> String {
        let mut from_start = Self { pos: 0, ..*self };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_start.fill(&mut buf);
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hex::encode(hasher.finalize())
    }

    /// The 8 noise bytes of word `n` of the body.
    fn word(&self, n: u64) -> [u8; 8] {
        mix(self
            .key
            .wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN)))
        .to_le_bytes()
    }

    /// Writes the next bytes into `out`; answers how many (0 at the end).
    fn fill(&mut self, out: &mut [u8]) -> usize {
        let head = (self.head.len() as u64).min(self.size);
        let tail_at = self.size.saturating_sub(self.tail.len() as u64).max(head);
        let mut written = 0;
        while written < out.len() && self.pos < self.size {
            let pos = self.pos;
            let n = if pos < head {
                let part = &self.head[pos as usize..head as usize];
                let n = part.len().min(out.len() - written);
                out[written..written + n].copy_from_slice(&part[..n]);
                n
            } else if pos < tail_at {
                // Body byte k is byte k % 8 of word k / 8.
                let k = pos - head;
                let word = self.word(k / 8);
                let off = (k % 8) as usize;
                let left = usize::try_from(tail_at - pos).unwrap_or(usize::MAX);
                let n = (8 - off).min(out.len() - written).min(left);
                out[written..written + n].copy_from_slice(&word[off..off + n]);
                n
            } else {
                let at = (pos - tail_at) as usize;
                let part = &self.tail[at..(self.size - tail_at) as usize];
                let n = part.len().min(out.len() - written);
                out[written..written + n].copy_from_slice(&part[..n]);
                n
            };
            written += n;
            self.pos += n as u64;
        }
        written
    }
}

impl Read for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.fill(buf))
    }
}

/// The SHA-256 (64 lowercase hex digits) of the `size` bytes of the seeded file `path` on
/// `device` under `seed`.
pub fn sha256_hex(seed: u64, device: &str, path: &str, size: u64) -> String {
    Bytes::new(seed, device, path, size).sha256_hex()
}

/// The SHA-256 of the photo `photo.take` writes at `path` on `device` under `seed`.
pub fn photo_sha256_hex(seed: u64, device: &str, path: &str) -> String {
    Bytes::photo(seed, device, path).sha256_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_gives_the_same_bytes_and_another_key_others() {
        let a = Bytes::new(1, "android-phone", "DCIM/a.jpg", 100_000).to_vec();
        assert_eq!(a.len(), 100_000);
        assert_eq!(
            a,
            Bytes::new(1, "android-phone", "DCIM/a.jpg", 100_000).to_vec()
        );
        for other in [
            Bytes::new(2, "android-phone", "DCIM/a.jpg", 100_000),
            Bytes::new(1, "mac-laptop", "DCIM/a.jpg", 100_000),
            Bytes::new(1, "android-phone", "DCIM/b.jpg", 100_000),
        ] {
            let b = other.to_vec();
            // The same frame, another body.
            assert_eq!((&a[..20], &a[a.len() - 2..]), (&b[..20], &b[b.len() - 2..]));
            assert_ne!(a[20..a.len() - 2], b[20..b.len() - 2]);
        }
        // A longer file of the same key starts with the same body.
        let longer = Bytes::new(1, "android-phone", "DCIM/a.jpg", 200_000).to_vec();
        assert_eq!(a[..a.len() - 2], longer[..a.len() - 2]);
    }

    #[test]
    fn files_look_like_their_names() {
        let bytes = |path: &str| Bytes::new(7, "mac-laptop", path, 4096).to_vec();
        let jpg = bytes("DCIM/x.JPG");
        assert_eq!(
            (&jpg[..3], &jpg[4094..]),
            (&[0xFF, 0xD8, 0xFF][..], &[0xFF, 0xD9][..])
        );
        let pdf = bytes("docs/a.pdf");
        assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF\n"));
        let xlsx = bytes("finance/budget.xlsx");
        assert!(xlsx.starts_with(b"PK\x03\x04") && xlsx[4096 - 22..].starts_with(b"PK\x05\x06"));
        let png = bytes("design/logo.png");
        assert!(png.starts_with(b"\x89PNG") && png.ends_with(b"IEND\xAE\x42\x60\x82"));
        let bin = bytes("firmware/image.bin");
        assert_eq!(bin.len(), 4096);
        for b in [&jpg, &pdf, &xlsx, &png, &bin] {
            assert!(std::str::from_utf8(b).is_err(), "noise is not text");
        }
        // Smaller than the frame: its first bytes.
        assert_eq!(Bytes::new(7, "m", "a.jpg", 3).to_vec(), [0xFF, 0xD8, 0xFF]);
        assert_eq!(Bytes::new(7, "m", "a.jpg", 0).to_vec(), Vec::<u8>::new());
    }

    #[test]
    fn streamed_in_any_chunks_the_bytes_are_the_same() {
        let whole = Bytes::new(3, "edge-box", "a.zip", 10_007).to_vec();
        for chunk in [1, 3, 8, 13, 4096, 20_000] {
            let mut r = Bytes::new(3, "edge-box", "a.zip", 10_007);
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn the_hash_is_the_hash_of_the_bytes() {
        let b = Bytes::new(1, "windows-laptop", "docs/a.pdf", 300_001);
        assert_eq!(b.sha256_hex(), hex::encode(Sha256::digest(b.to_vec())));
        assert_eq!(
            sha256_hex(1, "windows-laptop", "docs/a.pdf", 300_001),
            b.sha256_hex()
        );
        assert_ne!(
            sha256_hex(1, "windows-laptop", "docs/a.pdf", 300_000),
            b.sha256_hex()
        );
    }

    #[test]
    fn photos_are_two_to_four_mebibytes_and_fast() {
        let mut sizes = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let s = photo_size(seed, "android-phone", "DCIM/x.jpg");
            assert!((PHOTO_MIN..=PHOTO_MAX).contains(&s), "{s}");
            sizes.insert(s);
        }
        assert!(sizes.len() > 40, "sizes vary with the seed");
        let started = std::time::Instant::now();
        let photo = Bytes::photo(1, "android-phone", "DCIM/x.jpg").to_vec();
        assert_eq!(
            photo.len() as u64,
            photo_size(1, "android-phone", "DCIM/x.jpg")
        );
        // Milliseconds in a release build; a generous bound for an unoptimised one.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            photo_sha256_hex(1, "android-phone", "DCIM/x.jpg"),
            hex::encode(Sha256::digest(&photo))
        );
    }
}
