//! Real agent processes: the `weft agent` subcommand (the same code as `weft-agent`) as child
//! processes of the test.

use std::process::Stdio;
use std::time::Duration;

use weft_protocol::RequestStatus;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_agents_run_a_multi_device_request() {
    let h = Harness::start().await;
    let mut children = Vec::new();
    for (name, kind) in [("laptop", "laptop"), ("server", "server")] {
        let token = h.add_device(name, kind).await;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["agent", "--server", &h.base, "--name", name, "--kind", kind])
            .arg("--workdir")
            .arg(h.dir.path().join("procs").join(name))
            .arg("--state-dir")
            .arg(h.dir.path().join("procs-state").join(name))
            .env("WEFT_DEVICE_TOKEN", &token)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        children.push(child);
    }
    h.wait_online(2).await;
    let devices = h.devices().await;
    assert!(
        devices
            .iter()
            .all(|d| d.capabilities.contains(&"shell".to_string()))
    );
    let v = h
        .submit(r#"on laptop run "echo $PPID > pid.txt; echo one" then on server run "echo two""#)
        .await;
    let v = h.wait_done(v.id.as_str()).await;
    assert_eq!(v.status, RequestStatus::Succeeded, "{v:#?}");
    assert_eq!(v.tasks[1].output.as_ref().unwrap().data["stdout"], "two\n");
    // The shell ran in the laptop agent's own workdir.
    assert!(h.dir.path().join("procs/laptop/pid.txt").is_file());

    // SIGTERM stops an agent cleanly and the device goes offline.
    for c in &children {
        let pid = c.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
    }
    for c in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(10), c.wait())
            .await
            .expect("agent did not exit after SIGTERM")
            .unwrap();
        assert!(status.success(), "agent exited with {status}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h
        .devices()
        .await
        .iter()
        .any(|d| d.status == weft_protocol::rest::DeviceStatus::Online)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices still online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
}
