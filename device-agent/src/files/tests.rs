use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use weft_protocol::FileRef;

use super::*;

// Collecting outputs.

/// A workdir: `photo.jpg` (3 bytes), `big.bin` (20), `build/` with `app.apk` (5), `lib.apk`
/// (4), `notes.txt` (2), `.hidden.apk` (1) and the directories `sub/` and `dir.apk/`; on unix
/// `in.lnk` → `photo.jpg` and `out.lnk` → a file outside.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("work");
    std::fs::create_dir_all(w.join("build/sub")).unwrap();
    std::fs::create_dir_all(w.join("build/dir.apk")).unwrap();
    for (name, len) in [
        ("photo.jpg", 3),
        ("big.bin", 20),
        ("build/app.apk", 5),
        ("build/lib.apk", 4),
        ("build/notes.txt", 2),
        ("build/.hidden.apk", 1),
        ("build/sub/deep.apk", 1),
    ] {
        std::fs::write(w.join(name), vec![b'x'; len]).unwrap();
    }
    std::fs::write(tmp.path().join("secret"), b"outside").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("photo.jpg", w.join("in.lnk")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), w.join("out.lnk")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), w.join("up")).unwrap();
    }
    (tmp, w)
}

/// What `patterns` collect (at most 10 bytes a file): `name size` lines, or `code: message`.
fn collect(w: &Path, patterns: &[&str]) -> String {
    let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    let limits = FilesPolicy {
        max_upload_bytes: 10,
    };
    match collect_outputs(w, &patterns, &limits) {
        Ok(files) => files
            .iter()
            .map(|f| {
                assert!(f.path.is_absolute() && f.path.is_file(), "{f:?}");
                format!("{} {}", f.name, f.size)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("{}: {}", e.info().code, e.info().message),
    }
}

#[test]
fn declared_outputs_are_collected() {
    let (_tmp, w) = workdir();
    let check = |patterns: &[&str], expect: &str| {
        assert_eq!(collect(&w, patterns), expect, "{patterns:?}");
    };
    check(&["photo.jpg"], "photo.jpg 3");
    check(&["build/app.apk"], "build/app.apk 5");
    // A glob matches within one directory, sorted; not dot files, not directories.
    check(&["build/*.apk"], "build/app.apk 5\nbuild/lib.apk 4");
    check(
        &["build/*"],
        "build/app.apk 5\nbuild/lib.apk 4\nbuild/notes.txt 2",
    );
    check(&["build/.*.apk"], "build/.hidden.apk 1");
    check(&["build/?ib.apk"], "build/lib.apk 4");
    check(&["*.jpg", "photo.jpg"], "photo.jpg 3");
    check(&[], "");
}

#[test]
fn what_outputs_may_not_be() {
    let (_tmp, w) = workdir();
    let check = |patterns: &[&str], expect: &str| {
        let got = collect(&w, patterns);
        assert!(got.starts_with(expect), "{patterns:?}: {got}");
    };
    check(
        &["big.bin"],
        "policy_denied: refused by policy.files.max_upload_bytes: the output file `big.bin` is \
         20 bytes; this device sends files of at most 10 bytes",
    );
    check(
        &["*.bin"],
        "policy_denied: refused by policy.files.max_upload_bytes",
    );
    check(
        &["nope.txt"],
        "output_missing: the declared output `nope.txt` is not in the workdir",
    );
    check(
        &["*.nope"],
        "output_missing: no file matches the declared output `*.nope`",
    );
    check(&["gone/*.apk"], "output_missing: no file matches");
    check(
        &["../secret"],
        "path_outside_workdir: the declared output `../secret` has a `..`",
    );
    check(
        &["/etc/hostname"],
        "path_outside_workdir: the declared output `/etc/hostname` is absolute",
    );
    check(
        &["*/app.apk"],
        "invalid_action: the declared output `*/app.apk`: only the last part",
    );
    check(
        &["build"],
        "invalid_action: the declared output `build` is not a file",
    );
    check(
        &["photo.jpg", ""],
        "invalid_action: the declared output an empty file name",
    );
}

#[cfg(unix)]
#[test]
fn symlinks_may_not_lead_out() {
    let (_tmp, w) = workdir();
    assert_eq!(collect(&w, &["in.lnk"]), "in.lnk 3");
    let got = collect(&w, &["out.lnk"]);
    assert!(
        got.starts_with("path_outside_workdir: the declared output `out.lnk` leads outside"),
        "{got}"
    );
    let got = collect(&w, &["up/secret"]);
    assert!(got.starts_with("path_outside_workdir"), "{got}");
    let got = collect(&w, &["*.lnk"]);
    assert!(got.starts_with("path_outside_workdir"), "{got}");
}

// Sending and fetching, against a real HTTP server.

const TOKEN: &str = "device-token";

/// Byte `i` of every generated file.
fn byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// Generated chunks are at most this long.
const GEN_CHUNK: u64 = 64 * 1024;

/// `len` generated bytes, in chunks of [`GEN_CHUNK`], made as they are read.
fn generated(len: u64) -> impl futures_util::Stream<Item = Vec<u8>> {
    // Byte `i` is `byte(i)`: a chunk from `at` is this table from `at % 251`.
    let table: Arc<Vec<u8>> = Arc::new((0..GEN_CHUNK + 251).map(byte).collect());
    futures_util::stream::unfold(0, move |at| {
        let table = Arc::clone(&table);
        async move {
            (at < len).then(|| {
                let n = (len - at).min(GEN_CHUNK);
                let from = (at % 251) as usize;
                (table[from..from + n as usize].to_vec(), at + n)
            })
        }
    })
}

/// The `FileRef` of `len` generated bytes.
async fn reference(name: &str, len: u64) -> FileRef {
    let mut h = Sha256::new();
    let mut chunks = std::pin::pin!(generated(len));
    while let Some(c) = chunks.next().await {
        h.update(&c);
    }
    FileRef {
        name: name.into(),
        size: len,
        sha256: hex::encode(h.finalize()),
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Takes a file as the orchestrator will: streamed and hashed, never held whole. `/lying/…`
/// answers another hash than the content's, `/full/…` a full disk.
async fn accept(
    UrlPath((mode, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "bad_token", "wrong device token");
    }
    let declared: Option<u64> = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let Ok(chunk) = chunk else {
            return error(StatusCode::BAD_REQUEST, "invalid_body", "broken body");
        };
        size += chunk.len() as u64;
        h.update(&chunk);
    }
    if declared != Some(size) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "wrong content-length",
        );
    }
    let mut sha256 = hex::encode(h.finalize());
    match mode.as_str() {
        "lying" => sha256 = "0".repeat(64),
        "full" => {
            return error(
                StatusCode::INSUFFICIENT_STORAGE,
                "disk_full",
                "the orchestrator's disk is full: the file was not stored",
            );
        }
        _ => {}
    }
    axum::Json(FileRef { name, size, sha256 }).into_response()
}

/// Serves `len` generated bytes: whole (`good`), with the last byte changed (`corrupt`), one
/// short (`short`) or one more (`long`); `missing` is a 404.
async fn serve(UrlPath((len, kind)): UrlPath<(u64, String)>, headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "bad_token", "wrong device token");
    }
    let (len, flip) = match kind.as_str() {
        "good" => (len, false),
        "corrupt" => (len, true),
        "short" => (len - 1, false),
        "long" => (len + 1, false),
        _ => return error(StatusCode::NOT_FOUND, "blob_not_found", "no stored file"),
    };
    let body = generated(len).map(move |mut chunk| {
        // The last chunk is the short one (the test's lengths are not multiples of it).
        if flip
            && (chunk.len() as u64) < GEN_CHUNK
            && let Some(last) = chunk.last_mut()
        {
            *last ^= 1;
        }
        Ok::<_, std::io::Error>(chunk)
    });
    Body::from_stream(body).into_response()
}

/// A real HTTP server on a loopback port; its base URL.
async fn server() -> String {
    let app = Router::new()
        .route("/upload/{mode}/{name}", put(accept))
        .route("/blobs/{len}/{kind}", get(serve));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn local(path: PathBuf, name: &str) -> LocalFile {
    let size = std::fs::metadata(&path).unwrap().len();
    LocalFile {
        name: name.into(),
        path,
        size,
    }
}

/// The files in `dir` and below, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn an_upload_streams_with_the_token_and_is_checked_against_the_answer() {
    let base = server().await;
    let client = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("photo.jpg");
    std::fs::write(&path, b"jpeg bytes").unwrap();
    let file = local(path, "photos/photo.jpg");

    let url = format!("{base}/upload/ok/photos%2Fphoto.jpg");
    let stored = upload(&client, &url, TOKEN, &file).await.unwrap();
    assert_eq!(
        stored,
        FileRef {
            name: "photos/photo.jpg".into(),
            size: 10,
            sha256: hex::encode(Sha256::digest(b"jpeg bytes")),
        }
    );
    // An answer naming another file than the one sent is refused.
    let e = upload(&client, &format!("{base}/upload/ok/x"), TOKEN, &file)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("as `x`"), "{e}");

    let e = upload(&client, &url, "wrong", &file).await.unwrap_err();
    assert_eq!(e.code(), "upload_failed");
    assert!(
        e.to_string()
            .contains("401 Unauthorized: bad_token: wrong device token"),
        "{e}"
    );
    let lying = format!("{base}/upload/lying/photos%2Fphoto.jpg");
    let e = upload(&client, &lying, TOKEN, &file).await.unwrap_err();
    assert_eq!(e.code(), "upload_failed");
    assert!(
        e.to_string().contains("the orchestrator stored 10 bytes"),
        "{e}"
    );
    let full = format!("{base}/upload/full/photos%2Fphoto.jpg");
    let e = upload(&client, &full, TOKEN, &file).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("507 Insufficient Storage: disk_full"),
        "{e}"
    );
    let gone = format!("http://{}/x", unused_addr().await);
    let e = upload(&client, &gone, TOKEN, &file).await.unwrap_err();
    assert_eq!(e.code(), "upload_failed", "{e}");
}

/// A loopback address nothing listens on.
async fn unused_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn a_download_appears_under_its_name_only_if_it_verifies() {
    let base = server().await;
    let client = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    let expected = reference("photos/a.jpg", 1000).await;

    let path = download(
        &client,
        &format!("{base}/blobs/1000/good"),
        TOKEN,
        &expected,
        &inputs,
    )
    .await
    .unwrap();
    assert_eq!(path, inputs.join("photos/a.jpg"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), expected.sha256);
    assert_eq!(files_under(&inputs), ["photos/a.jpg"]);
    std::fs::remove_file(&path).unwrap();

    for (kind, code, says) in [
        ("corrupt", "download_corrupt", "its content hashes to"),
        ("short", "download_corrupt", "999 of 1000 bytes"),
        ("long", "download_corrupt", "more than 1000 bytes"),
        (
            "missing",
            "download_failed",
            "404 Not Found: blob_not_found",
        ),
    ] {
        let url = format!("{base}/blobs/1000/{kind}");
        let e = download(&client, &url, TOKEN, &expected, &inputs)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{kind}: {e}");
        assert!(e.to_string().contains(says), "{kind}: {e}");
        assert!(
            files_under(&inputs).is_empty(),
            "{kind}: {:?}",
            files_under(&inputs)
        );
    }
    let e = download(
        &client,
        &format!("{base}/blobs/1000/good"),
        "wrong",
        &expected,
        &inputs,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("401 Unauthorized"), "{e}");
    // A reference that names a place outside the inputs is refused before anything is fetched.
    let mut escaping = expected.clone();
    escaping.name = "../escaped".into();
    let e = download(
        &client,
        &format!("{base}/blobs/1000/good"),
        TOKEN,
        &escaping,
        &inputs,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), "path_outside_workdir");
    assert!(!tmp.path().join("escaped").exists());
}

/// 64 MiB up and down: streamed in chunks on both sides (the test server never holds the
/// file either), hashed on the way, the same bytes at the end.
#[tokio::test]
async fn a_large_file_goes_up_and_comes_down_whole() {
    const LEN: u64 = 64 << 20;
    let base = server().await;
    let client = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("build")).unwrap();
    let mut h = Sha256::new();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(work.join("build/big.bin")).unwrap();
        let mut chunks = std::pin::pin!(generated(LEN));
        while let Some(c) = chunks.next().await {
            h.update(&c);
            f.write_all(&c).unwrap();
        }
    }
    let expected = FileRef {
        name: "build/big.bin".into(),
        size: LEN,
        sha256: hex::encode(h.finalize()),
    };
    let files = collect_outputs(&work, &["build/*.bin".into()], &FilesPolicy::default()).unwrap();
    assert_eq!(files.len(), 1);
    let url = format!("{base}/upload/ok/build%2Fbig.bin");
    assert_eq!(
        upload(&client, &url, TOKEN, &files[0]).await.unwrap(),
        expected
    );

    let inputs = tmp.path().join("inputs");
    let url = format!("{base}/blobs/{LEN}/good");
    let path = download(&client, &url, TOKEN, &expected, &inputs)
        .await
        .unwrap();
    let mut h = Sha256::new();
    let mut f = tokio::fs::File::open(&path).await.unwrap();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    assert_eq!(hex::encode(h.finalize()), expected.sha256);
    assert_eq!(files_under(&inputs), ["build/big.bin"]);
}

#[tokio::test]
async fn write_behind_syncs_once_enough_was_written_and_one_sync_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut file = tokio::fs::File::create(tmp.path().join("f")).await.unwrap();
    let mut behind = WriteBehind::new(&file).await.unwrap();
    file.write_all(b"some bytes").await.unwrap();
    behind.wrote(SYNC_EVERY - 1);
    assert!(behind.running.is_none(), "a sync before SYNC_EVERY bytes");
    behind.wrote(SYNC_EVERY);
    let first = behind.running.take().expect("a sync at SYNC_EVERY bytes");
    assert_eq!(behind.synced_at, SYNC_EVERY);
    first.await.unwrap().unwrap();
    // While one runs, no other starts.
    behind.running = Some(tokio::spawn(std::future::pending()));
    behind.wrote(3 * SYNC_EVERY);
    assert_eq!(behind.synced_at, SYNC_EVERY);
}
