//! Retention of files (docs/artifacts.md), end to end with a short `--artifact-retention`: a
//! blob is kept while a request that refers to it runs and for the retention after the last
//! such request ended, then deleted with a `files_deleted` event in each such request's
//! journal; the same content of two requests is one blob, kept for the later one; a blob
//! uploaded for an attempt whose result is not committed yet is never deleted, even when
//! no request refers to it yet; and a full disk on upload is `507 disk_full`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use weft_protocol::rest::EventKind;
use weft_protocol::{RequestStatus, TaskStatus};

use crate::files::{blobs_in, sha256_hex, submit_graph};
use crate::harness::Harness;

/// A server whose files are kept `retention` after their requests, swept every 100 ms.
async fn server(retention: Duration) -> Harness {
    Harness::start_with(|o| {
        o.retention = weft_orchestrator::retention::Options {
            retention,
            every: Duration::from_millis(100),
            slack: Duration::from_millis(50),
        };
    })
    .await
}

fn blob_path(h: &Harness, sha256: &str) -> PathBuf {
    h.dir
        .path()
        .join("data/blobs")
        .join(&sha256[..2])
        .join(&sha256[2..])
}

/// Submits a graph where t1 on `device` writes `text` to out.txt and declares it.
async fn produce(h: &Harness, device: &str, text: &str) -> String {
    let graph = json!({"tasks": [
        {"id": "t1", "instruction": "write a file", "device": device,
         "action": {"kind": "shell", "command": format!("printf '%s' '{text}' > out.txt")},
         "outputs": {"files": ["out.txt"]}},
    ]});
    submit_graph(h, graph).await
}

/// Starts a request whose one task sleeps on `device`; its id and its running attempt's.
async fn sleeping(h: &Harness, device: &str) -> (String, String) {
    let graph = json!({"tasks": [
        {"id": "t1", "instruction": "wait", "device": device,
         "action": {"kind": "shell", "command": "sleep 30"}},
    ]});
    let id = submit_graph(h, graph).await;
    let v = h
        .wait_for(&id, "running", |v| v.tasks[0].status == TaskStatus::Running)
        .await;
    (id, v.tasks[0].attempts[0].id.as_str().to_owned())
}

/// Uploads `body` as file `name` of `attempt`, as its device (`token`) does before its result.
async fn upload(
    h: &Harness,
    token: &str,
    attempt: &str,
    name: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    h.http
        .put(format!("{}/v1/attempts/{attempt}/files/{name}", h.base))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Polls until `cond` holds (at most 15 s).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "still not {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn deleted_in(events: &[weft_protocol::rest::Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::FilesDeleted { files } => Some(files.iter().map(|f| f.name.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_kept_within_retention_of_its_last_request_then_deleted_and_journaled() {
    let retention = Duration::from_secs(3);
    let mut h = server(retention).await;
    let token = h.add_device("laptop", "laptop").await;
    h.start_agent("laptop", "laptop", &token);
    h.wait_online(1).await;

    let first = produce(&h, "laptop", "the same bytes").await;
    let v = h.wait_done(&first).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    let ended = tokio::time::Instant::now();
    let sha = sha256_hex(b"the same bytes");
    // The request view lists the file with its download path.
    assert_eq!(
        serde_json::to_value(&v.tasks[0].files).unwrap(),
        json!([{"name": "out.txt", "size": 14, "sha256": sha,
                "url": format!("/v1/requests/{first}/files/{sha}")}])
    );
    assert!(blob_path(&h, &sha).exists());

    // A second request stores the same content: one blob, now kept for it too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = produce(&h, "laptop", "the same bytes").await;
    assert_eq!(h.wait_done(&second).await.status, RequestStatus::Succeeded);
    assert_eq!(blobs_in(&h.dir.path().join("data/blobs")).len(), 1);

    // Past the first request's retention, within the second's: kept, and nothing journaled.
    tokio::time::sleep_until(ended + retention + Duration::from_millis(500)).await;
    assert!(
        blob_path(&h, &sha).exists(),
        "deleted while the second request refers to it"
    );
    let (status, _) = h.get(&format!("/v1/requests/{first}/files/{sha}")).await;
    assert_ne!(status, StatusCode::NOT_FOUND);
    assert!(deleted_in(&h.events(&first).await).is_empty());

    // Past both: deleted, and journaled in both requests.
    eventually("deleted", || !blob_path(&h, &sha).exists()).await;
    for id in [&first, &second] {
        let mut journaled = Vec::new();
        for _ in 0..100 {
            journaled = deleted_in(&h.events(id).await);
            if !journaled.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(journaled, ["out.txt"], "request {id}");
        // Still listed, no longer downloadable.
        let v = h.request(id).await;
        assert_eq!(v.tasks[0].files.len(), 1);
        assert_eq!(v.tasks[0].files[0].url, None, "{v:#?}");
        let (status, body) = h.get(&format!("/v1/requests/{id}/files/{sha}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "blob_not_found");
    }
    h.stop().await;
}

/// The race retention must never lose: a blob uploaded for an attempt whose result is not
/// committed yet is referred to by no request, yet is kept while that attempt runs, even
/// with a retention of nothing; once the attempt ended without a result, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_uploaded_for_an_attempt_not_yet_committed_is_kept() {
    let mut h = server(Duration::ZERO).await;
    let phone = h.add_device("phone", "phone").await;
    h.start_agent("phone", "phone", &phone);
    h.wait_online(1).await;

    // Its content was a file of a request that ended: past retention at once.
    let old = produce(&h, "phone", "uploaded again").await;
    assert_eq!(h.wait_done(&old).await.status, RequestStatus::Succeeded);

    let (id, attempt) = sleeping(&h, "phone").await;
    // What the agent does before its result: the upload (here by hand, for that attempt).
    let r = upload(&h, &phone, &attempt, "out.txt", b"uploaded again".to_vec()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let sha = sha256_hex(b"uploaded again");

    // Many sweeps later, while the attempt runs: still there.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        blob_path(&h, &sha).exists(),
        "deleted while the attempt that uploaded it runs"
    );

    // The attempt ends without a result (cancelled): nothing refers to the blob any more.
    let (status, _) = h
        .post(&format!("/v1/requests/{id}/cancel"), &json!({}))
        .await;
    assert!(status.is_success());
    h.wait_done(&id).await;
    eventually("deleted once no attempt could still claim it", || {
        !blob_path(&h, &sha).exists()
    })
    .await;
    h.stop().await;
}

/// A full disk on upload is `507 disk_full`: nothing stored, the server goes on, and the
/// attempt fails with the agent's `upload_failed` naming it. Needs a small tmpfs (root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_upload_is_507_disk_full_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("data/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&blobs)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(blobs.clone());
    let data = dir.path().join("data");
    let mut h = Harness::start_with(|o| {
        o.data_dir = data.clone();
    })
    .await;
    let phone = h.add_device("phone", "phone").await;
    h.start_agent("phone", "phone", &phone);
    h.wait_online(1).await;

    // By hand: the answer a device gets.
    let (id, attempt) = sleeping(&h, "phone").await;
    let r = upload(&h, &phone, &attempt, "big.bin", vec![7u8; 1024 * 1024]).await;
    // Refused before the body was read to the end: the connection is not used again.
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "disk_full", "{body}");
    assert!(blobs_in(&blobs).is_empty());
    assert!(
        crate::files::files_in(&blobs.join("tmp")).is_empty(),
        "a partial file was left"
    );
    h.post(&format!("/v1/requests/{id}/cancel"), &json!({}))
        .await;
    h.wait_done(&id).await;

    // Through the agent: the attempt fails naming it, and the server still serves.
    let graph = json!({"tasks": [
        {"id": "t1", "instruction": "write a big file", "device": "phone",
         "action": {"kind": "shell", "command": "head -c 1048576 /dev/zero > big.bin"},
         "outputs": {"files": ["big.bin"]}},
    ]});
    let id = submit_graph(&h, graph).await;
    let v = h.wait_done(&id).await;
    assert_eq!(v.status, RequestStatus::Failed, "{v:#?}");
    let error = v.tasks[0].error.as_ref().expect("an error");
    assert_eq!(error.code, "upload_failed", "{error:?}");
    assert!(error.message.contains("disk_full"), "{error:?}");
    let (status, _) = h.get("/v1/devices").await;
    assert_eq!(status, StatusCode::OK);
    h.stop().await;
}
