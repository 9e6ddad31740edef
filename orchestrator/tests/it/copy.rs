//! The rules planner's `copy PATH from DEVICE to DEVICE` (docs/rules-planner.md), end to end:
//! `weft submit` with the text, two `weft agent` processes, the same bytes at the same path on
//! the destination; `weft status` lists the file that travelled.

use std::time::Duration;

use weft_protocol::RequestStatus;

use crate::files::{sha256_hex, spawn_agent, workdir};
use crate::harness::Harness;

/// `weft ARGS` against `h`: its exit code and stdout.
async fn weft(h: &Harness, args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .args(["--server", &h.base, "--api-token", &h.token])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weft did not finish in time")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_submit_copy_puts_the_same_bytes_on_the_other_device() {
    let h = Harness::start().await;
    let mut children = Vec::new();
    // Lowercase names (also their kinds); the request names them in capitals, matched
    // ignoring case, and `from A` is a device, not an article.
    for name in ["a", "b"] {
        let token = h.add_device(name, name).await;
        std::fs::create_dir_all(workdir(&h, name)).unwrap();
        children.push(spawn_agent(&h, name, &token));
    }
    h.wait_online(2).await;
    // Bytes of every value, so that nothing on the way may treat them as text.
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let source = workdir(&h, "a").join("notes/a.txt");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    std::fs::write(&source, &bytes).unwrap();

    let (code, printed) = weft(&h, &["submit", "--watch", "copy notes/a.txt from A to B"]).await;
    assert_eq!(code, Some(0), "{printed}");
    let copied = std::fs::read(workdir(&h, "b").join("notes/a.txt"))
        .unwrap_or_else(|e| panic!("{e}: {printed}"));
    assert_eq!(copied.len(), bytes.len());
    assert!(copied == bytes, "B has other bytes");
    // The source is left as it was.
    assert_eq!(std::fs::read(&source).unwrap(), bytes);

    // weft printed the final view: t1 on A sent it, t2 on B received it.
    let sha = sha256_hex(&bytes);
    // The first line is the request's id.
    let id = printed.lines().next().unwrap_or_default().trim().to_owned();
    let v = h.request(&id).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(v.tasks[0].device.as_ref().unwrap().as_str(), "a");
    assert_eq!(v.tasks[1].device.as_ref().unwrap().as_str(), "b");
    assert_eq!(v.tasks[0].files.len(), 1, "{v:#?}");
    assert_eq!(v.tasks[0].files[0].sha256, sha);
    let line = format!(
        "file: notes/a.txt  195.3 KiB  sha256 {}  /v1/requests/{id}/files/{sha}",
        &sha[..12]
    );
    assert!(printed.contains(&line), "{printed}");
    let (code, status) = weft(&h, &["status", &id]).await;
    assert_eq!(code, Some(0));
    assert!(status.contains(&line), "{status}");
    drop(children);
    h.stop().await;
}
