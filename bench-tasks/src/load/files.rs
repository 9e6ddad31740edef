//! `weft-load files`: one large file from a phone agent through the orchestrator to a laptop
//! agent on loopback (issue 17, "Streaming"), against `cp` of the same file on the same disk.
//!
//! Everything is real: `weft serve` ([`Spawned`]) and two `weft agent` processes. The file is
//! generated in the phone's workdir; t1 on the phone declares it as an output (so the agent
//! uploads it after its no-op command succeeds), t2 on the laptop hashes it through
//! `{{t1.files.NAME}}` (so the agent downloads it first, verified). The legs are timed by
//! watching the disk every [`POLL`]: the upload from the first `.part` in the blob store's
//! `tmp/` until the blob is under its name, the download from the first `.part` in the laptop's
//! inputs until the file is under its name. The orchestrator's `VmRSS` is sampled at the same
//! pace, and its CPU time, the agents' and the whole machine's are read before and after.
//!
//! Besides `cp` of the file (and `cp` then an fsync), the same run times two `cp` in a row,
//! the file to a first copy and that copy to a second, both kept until the second is done:
//! the bytes written twice as weft writes them (the blob, then the laptop's copy), without
//! hashing or sockets. On a VM whose host takes back the memory its guest frees (free page
//! reporting: Firecracker here), writing a second GiB of new page cache costs several times
//! the first, which a single `cp` (into pages just freed) never pays (BENCHMARKS.md, "Files").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::client::Api;
use super::procfs::{ProcSample, machine_busy_ms};
use super::report::{Summary, summarize};
use super::server::Spawned;

/// How often the disk and the orchestrator's memory are looked at during the transfer.
const POLL: Duration = Duration::from_millis(5);

/// The file's name in the phone's workdir.
const NAME: &str = "big.bin";

const MB: f64 = 1e6;
const MIB: f64 = 1024.0 * 1024.0;

/// What [`run_files`] moves.
#[derive(Debug, Clone)]
pub struct FilesOptions {
    /// Bytes of the file (the agent's default policy sends at most 1 GiB).
    pub bytes: u64,
    /// The `weft` binary: `weft agent` for both devices.
    pub bin: PathBuf,
    /// Longest the transfer may take.
    pub timeout: Duration,
}

/// One run's figures. MB is 10⁶ bytes, MiB 2²⁰.
#[derive(Debug, Clone, Serialize)]
pub struct FilesReport {
    pub bytes: u64,
    /// `cp` of the file between two directories of the same disk (page cache warm, no fsync).
    pub cp_s: f64,
    pub cp_mb_s: f64,
    /// The same `cp` followed by an fsync of the copy (`sync FILE`): weft fsyncs what it stores.
    pub cp_fsync_s: f64,
    /// `cp` of the file to a first copy, then of that to a second, both kept until the second
    /// is done (no fsync): the two writes of weft's two legs.
    pub cp_twice_s: f64,
    pub cp_twice_mb_s: f64,
    /// Phone → orchestrator: first partial blob seen → the blob under its name.
    pub upload_s: f64,
    pub upload_mb_s: f64,
    /// Orchestrator → laptop: first partial download seen → the file under its name.
    pub download_s: f64,
    pub download_mb_s: f64,
    /// Request submitted → the file under its name on the laptop.
    pub end_to_end_s: f64,
    pub end_to_end_mb_s: f64,
    /// `end_to_end_s / cp_s`.
    pub vs_cp: f64,
    /// `end_to_end_s / cp_twice_s`.
    pub vs_cp_twice: f64,
    /// The orchestrator's `VmRSS` with both agents connected, before the request.
    pub rss_idle_mib: f64,
    /// Its highest sampled `VmRSS` during the transfer, and that minus idle.
    pub rss_peak_mib: f64,
    pub rss_above_idle_mib: f64,
    /// CPU time during the transfer (submit → the laptop's copy in place), in cores.
    pub server_cores: f64,
    pub phone_cores: f64,
    pub laptop_cores: f64,
    /// The rest of the machine (busy time minus the three processes above) meanwhile.
    pub others_cores: f64,
    /// CPU time each process spent from the submit to the laptop's copy in place, seconds.
    pub server_cpu_s: f64,
    pub phone_cpu_s: f64,
    pub laptop_cpu_s: f64,
    /// `/proc/loadavg`'s 1-minute figure before the run.
    pub loadavg_1m: f64,
}

/// The times the disk showed each step, from the submit.
#[derive(Debug, Default)]
struct Seen {
    upload_started: Option<Duration>,
    uploaded: Option<Duration>,
    download_started: Option<Duration>,
    downloaded: Option<Duration>,
    rss_peak_kib: u64,
}

/// Runs the transfer once against `server` (fresh, with nothing else connected).
pub async fn run_files(server: &Spawned, opts: &FilesOptions) -> anyhow::Result<FilesReport> {
    let target = server.target();
    let pid = target.pid.context("the orchestrator's pid is unknown")?;
    let api = Api::new(target, 4)?;
    let dir = server.dir();
    let phone_work = dir.join("phone");
    let laptop_work = dir.join("laptop");
    std::fs::create_dir_all(&phone_work)?;
    std::fs::create_dir_all(&laptop_work)?;
    let source = phone_work.join(NAME);
    let sha256 = {
        let (path, bytes) = (source.clone(), opts.bytes);
        tokio::task::spawn_blocking(move || generate(&path, bytes)).await??
    };
    let loadavg_1m = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    let (cp_s, cp_fsync_s) = time_cp(&source, &dir.join("cp")).await?;
    let cp_twice_s = time_cp_twice(&source, &dir.join("cp-twice")).await?;

    let mut agents = Vec::new();
    for (name, work) in [("phone", &phone_work), ("laptop", &laptop_work)] {
        let token = api.add_device(name, name).await?;
        agents.push(spawn_agent(
            &opts.bin,
            &target.base,
            name,
            &token,
            work,
            dir,
        )?);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.online_devices().await? < 2 {
        if Instant::now() > deadline {
            bail!("the two agents did not come online within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the connections settle before idle is read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kib = ProcSample::read(pid)?.rss_kib;
    let agent_pids: Vec<u32> = agents
        .iter()
        .filter_map(tokio::process::Child::id)
        .collect();
    let cpu = |pid: u32| ProcSample::read(pid).map(|s| s.cpu_ms).unwrap_or(0);
    let (server_cpu0, busy0) = (cpu(pid), machine_busy_ms().unwrap_or(0));
    let agents_cpu0: Vec<u64> = agent_pids.iter().map(|p| cpu(*p)).collect();

    let graph = json!({
        "tasks": [
            {"id": "t1", "instruction": "send the file", "device": "phone",
             "action": {"kind": "shell", "command": "true"},
             "outputs": {"files": [NAME]}},
            {"id": "t2", "instruction": "hash the file", "device": "laptop",
             "action": {"kind": "shell", "command": format!("sha256sum {{{{t1.files.{NAME}}}}}")}},
        ],
        "edges": [{"from": "t1", "to": "t2"}],
    });
    let started = Instant::now();
    let id = api
        .submit(&json!({"text": "files", "graph": graph}), opts.timeout)
        .await?
        .id;
    let seen = watch(dir, &laptop_work, pid, started, opts.timeout).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = cpu(pid).saturating_sub(server_cpu0);
    let agents_cpu: Vec<u64> = agent_pids
        .iter()
        .zip(&agents_cpu0)
        .map(|(p, c0)| cpu(*p).saturating_sub(*c0))
        .collect();
    let busy = machine_busy_ms()
        .unwrap_or(0)
        .saturating_sub(busy0)
        .saturating_sub(server_cpu + agents_cpu.iter().sum::<u64>());

    api.wait(&id, super::WaitMode::Sse, opts.timeout)
        .await
        .context("waiting for the request")?;
    let view = api.request_json(&id, opts.timeout).await?;
    for mut a in agents {
        let _ = a.kill().await;
    }
    if view["status"] != "succeeded" {
        bail!("the request did not succeed: {view}");
    }
    let hashed = view["tasks"][1]["output"]["data"]["stdout"]
        .as_str()
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default();
    if hashed != sha256 {
        bail!("the laptop hashed {hashed:?}; the file's SHA-256 is {sha256}");
    }
    let secs = |d: Option<Duration>, what: &str| {
        d.map(|d| d.as_secs_f64())
            .with_context(|| format!("the {what} was never seen on disk"))
    };
    let upload_s = secs(seen.uploaded, "stored blob")? - secs(seen.upload_started, "upload")?;
    let download_s =
        secs(seen.downloaded, "downloaded file")? - secs(seen.download_started, "download")?;
    let end_to_end_s = secs(seen.downloaded, "downloaded file")?;
    let rate = |s: f64| opts.bytes as f64 / MB / s;
    let cores = |ms: u64| ms as f64 / 1000.0 / end_to_end_s.min(elapsed);
    let (phone_cpu, laptop_cpu) = (
        agents_cpu.first().copied().unwrap_or(0),
        agents_cpu.get(1).copied().unwrap_or(0),
    );
    let rss_peak_kib = seen.rss_peak_kib.max(rss_idle_kib);
    Ok(FilesReport {
        bytes: opts.bytes,
        cp_s,
        cp_mb_s: rate(cp_s),
        cp_fsync_s,
        cp_twice_s,
        cp_twice_mb_s: rate(cp_twice_s),
        upload_s,
        upload_mb_s: rate(upload_s),
        download_s,
        download_mb_s: rate(download_s),
        end_to_end_s,
        end_to_end_mb_s: rate(end_to_end_s),
        vs_cp: end_to_end_s / cp_s,
        vs_cp_twice: end_to_end_s / cp_twice_s,
        rss_idle_mib: rss_idle_kib as f64 / 1024.0,
        rss_peak_mib: rss_peak_kib as f64 / 1024.0,
        rss_above_idle_mib: (rss_peak_kib - rss_idle_kib) as f64 / 1024.0,
        server_cores: cores(server_cpu),
        phone_cores: cores(phone_cpu),
        laptop_cores: cores(laptop_cpu),
        others_cores: cores(busy),
        server_cpu_s: server_cpu as f64 / 1000.0,
        phone_cpu_s: phone_cpu as f64 / 1000.0,
        laptop_cpu_s: laptop_cpu as f64 / 1000.0,
        loadavg_1m,
    })
}

/// Writes `bytes` generated bytes (xorshift: not compressible, not all alike) to `path`, a
/// MiB at a time, and answers their SHA-256.
fn generate(path: &Path, bytes: u64) -> anyhow::Result<String> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(buf.len() as u64))?;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Times `cp SOURCE DIR/` and, again, `cp` then `sync` of the copy; removes the copies.
async fn time_cp(source: &Path, dir: &Path) -> anyhow::Result<(f64, f64)> {
    Ok((
        time_copy(source, dir, false).await?,
        time_copy(source, dir, true).await?,
    ))
}

/// Times `cp SOURCE DIR/a` then `cp DIR/a DIR/b`, and removes both.
async fn time_cp_twice(source: &Path, dir: &Path) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let (a, b) = (dir.join("a"), dir.join("b"));
    let t = Instant::now();
    succeed("cp", &[source, &a]).await?;
    succeed("cp", &[&a, &b]).await?;
    let took = t.elapsed().as_secs_f64();
    std::fs::remove_file(&a)?;
    std::fs::remove_file(&b)?;
    Ok(took)
}

/// Times `cp SOURCE DIR/` (then `sync` of the copy if `fsync`), and removes the copy.
async fn time_copy(source: &Path, dir: &Path, fsync: bool) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let copy = dir.join(NAME);
    let t = Instant::now();
    succeed("cp", &[source, &copy]).await?;
    if fsync {
        succeed("sync", &[&copy]).await?;
    }
    let took = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;
    Ok(took)
}

/// Runs `program args…` to its end; an error unless it succeeded.
async fn succeed(program: &str, args: &[&Path]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .with_context(|| format!("cannot run {program}"))?;
    if !status.success() {
        bail!("{program} {args:?} failed: {status}");
    }
    Ok(())
}

fn spawn_agent(
    bin: &Path,
    base: &str,
    name: &str,
    token: &str,
    workdir: &Path,
    dir: &Path,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    tokio::process::Command::new(bin)
        .args(["agent", "--server", base, "--name", name, "--kind", name])
        .arg("--workdir")
        .arg(workdir)
        .arg("--state-dir")
        .arg(dir.join(format!("{name}-state")))
        .env("WEFT_DEVICE_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} agent", bin.display()))
}

/// Watches the blob store, the laptop's inputs and the orchestrator's memory every [`POLL`]
/// until the laptop's copy is under its name.
async fn watch(
    dir: &Path,
    laptop_work: &Path,
    pid: u32,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Seen> {
    let blobs = dir.join("data/blobs");
    let inputs = laptop_work.join("inputs");
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while seen.downloaded.is_none() {
        tick.tick().await;
        let now = started.elapsed();
        if now > timeout {
            bail!("the file did not reach the laptop within {timeout:?}: {seen:?}");
        }
        if let Ok(s) = ProcSample::read(pid) {
            seen.rss_peak_kib = seen.rss_peak_kib.max(s.rss_kib);
        }
        if seen.uploaded.is_none() {
            if seen.upload_started.is_none() && !entries(&blobs.join("tmp")).is_empty() {
                seen.upload_started = Some(now);
            }
            let stored = entries(&blobs)
                .iter()
                .any(|d| d.file_name().is_some_and(|n| n.len() == 2) && !entries(d).is_empty());
            if stored {
                seen.uploaded = Some(now);
                seen.upload_started.get_or_insert(now);
            }
        } else {
            // inputs/<attempt>/t1/<files>
            let files: Vec<PathBuf> = entries(&inputs)
                .iter()
                .flat_map(|a| entries(&a.join("t1")))
                .collect();
            if seen.download_started.is_none() && !files.is_empty() {
                seen.download_started = Some(now);
            }
            if files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == NAME))
            {
                seen.downloaded = Some(now);
            }
        }
    }
    Ok(seen)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

impl FilesReport {
    pub fn render(&self) -> String {
        format!(
            "files: {:.0} MiB phone -> orchestrator -> laptop (loadavg {:.2} before)\n  \
             cp {:.3} s ({:.0} MB/s), cp + fsync {:.3} s, two cp in a row {:.3} s \
             ({:.0} MB/s)\n  \
             upload {:.3} s ({:.0} MB/s), download {:.3} s ({:.0} MB/s), end to end {:.3} s \
             ({:.0} MB/s, {:.2}x cp, {:.2}x two cp)\n  \
             orchestrator RSS idle {:.1} MiB, peak {:.1} MiB ({:.1} MiB above idle)\n  \
             CPU during the transfer: orchestrator {:.2}, phone {:.2}, laptop {:.2}, others {:.2} \
             cores; orchestrator {:.2}, phone {:.2}, laptop {:.2} s\n",
            self.bytes as f64 / MIB,
            self.loadavg_1m,
            self.cp_s,
            self.cp_mb_s,
            self.cp_fsync_s,
            self.cp_twice_s,
            self.cp_twice_mb_s,
            self.upload_s,
            self.upload_mb_s,
            self.download_s,
            self.download_mb_s,
            self.end_to_end_s,
            self.end_to_end_mb_s,
            self.vs_cp,
            self.vs_cp_twice,
            self.rss_idle_mib,
            self.rss_peak_mib,
            self.rss_above_idle_mib,
            self.server_cores,
            self.phone_cores,
            self.laptop_cores,
            self.others_cores,
            self.server_cpu_s,
            self.phone_cpu_s,
            self.laptop_cpu_s,
        )
    }

    /// Median and spread of the figures over `runs`.
    pub fn summary(runs: &[FilesReport]) -> Summary {
        summarize(
            runs,
            &[
                ("cp MB/s", |r| Some(r.cp_mb_s)),
                ("cp + fsync s", |r| Some(r.cp_fsync_s)),
                ("two cp s", |r| Some(r.cp_twice_s)),
                ("upload MB/s", |r| Some(r.upload_mb_s)),
                ("download MB/s", |r| Some(r.download_mb_s)),
                ("end to end MB/s", |r| Some(r.end_to_end_mb_s)),
                ("end to end s", |r| Some(r.end_to_end_s)),
                ("end to end / cp", |r| Some(r.vs_cp)),
                ("end to end / two cp", |r| Some(r.vs_cp_twice)),
                ("RSS idle MiB", |r| Some(r.rss_idle_mib)),
                ("RSS above idle MiB", |r| Some(r.rss_above_idle_mib)),
                ("orchestrator cores", |r| Some(r.server_cores)),
                ("phone agent cores", |r| Some(r.phone_cores)),
                ("laptop agent cores", |r| Some(r.laptop_cores)),
                ("other cores", |r| Some(r.others_cores)),
                ("orchestrator CPU s", |r| Some(r.server_cpu_s)),
                ("phone agent CPU s", |r| Some(r.phone_cpu_s)),
                ("laptop agent CPU s", |r| Some(r.laptop_cpu_s)),
                ("loadavg 1m", |r| Some(r.loadavg_1m)),
            ],
        )
    }
}
