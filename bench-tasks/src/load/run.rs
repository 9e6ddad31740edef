//! The two runs: load (requests to completion) and idle (heartbeating connections).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, mpsc};
use weft_protocol::RequestStatus;

use super::agents::{self, Fleet, FleetOptions};
use super::client::{Api, Refused, SubmitMode, WaitMode};
use super::procfs::ProcSample;
use super::report::{IdleReport, IdleServer, LoadReport, LoadServer, Percentiles};
use super::server::Target;
use super::shape::Shape;

/// What [`run_load`] does.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Connected agents.
    pub agents: usize,
    pub shape: Shape,
    /// Rules text or the graph itself.
    pub submit: SubmitMode,
    /// Measured requests.
    pub requests: usize,
    /// Requests run first and left out of every figure.
    pub warmup: usize,
    /// Requests in flight at most (closed loop: exactly this many workers).
    pub concurrency: usize,
    /// Open loop: start a request every `1/rate` s (latency counts from the scheduled start, so a
    /// generator that falls behind shows up as latency, not as a lower offered load).
    pub rate: Option<f64>,
    pub wait: WaitMode,
    /// `max_concurrency` each agent advertises.
    pub agent_concurrency: u32,
    /// Longest one request may take, submit to final status.
    pub timeout: Duration,
}

impl LoadOptions {
    /// The `--tiny` smoke run: 3 agents, 20 requests of mixed shapes, 4 at a time.
    pub fn tiny() -> Self {
        Self {
            agents: 3,
            shape: Shape::Mix,
            submit: SubmitMode::Text,
            requests: 20,
            warmup: 0,
            concurrency: 4,
            rate: None,
            wait: WaitMode::Sse,
            agent_concurrency: 4,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What [`run_idle`] does.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub agents: usize,
    /// Wait after the last agent is welcomed before the window starts.
    pub settle: Duration,
    /// The measuring window for CPU.
    pub window: Duration,
    /// Registrations / handshakes at once.
    pub parallelism: usize,
}

fn sample(target: &Target) -> Option<ProcSample> {
    target.pid.and_then(|pid| ProcSample::read(pid).ok())
}

struct Outcome {
    latency_us: u64,
    submit_us: u64,
    tasks: u64,
    result: Result<RequestStatus, String>,
}

#[derive(Debug)]
struct Tally {
    latency: Histogram<u64>,
    submit: Histogram<u64>,
    succeeded: u64,
    failed: u64,
    subtasks: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        // 1 µs .. 1 h, 3 significant digits.
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Self {
            latency: h(),
            submit: h(),
            succeeded: 0,
            failed: 0,
            subtasks: 0,
            errors: BTreeMap::new(),
            first_error: None,
        }
    }

    fn add(&mut self, o: Outcome) {
        match o.result {
            Ok(RequestStatus::Succeeded) => {
                self.succeeded += 1;
                self.subtasks += o.tasks;
                self.latency.saturating_record(o.latency_us.max(1));
                self.submit.saturating_record(o.submit_us.max(1));
            }
            Ok(other) => {
                self.failed += 1;
                *self
                    .errors
                    .entry(format!("final status {}", other.as_str()))
                    .or_default() += 1;
            }
            Err(e) => {
                self.failed += 1;
                let key = e.split(':').next().unwrap_or("error").to_owned();
                *self.errors.entry(key).or_default() += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
    }
}

fn classify(e: &anyhow::Error) -> String {
    if let Some(r) = e.downcast_ref::<Refused>() {
        return format!("refused {} {}: {}", r.status, r.code, r.message);
    }
    let text = format!("{e:#}");
    if text == "timeout" {
        return "timeout: no final status in time".into();
    }
    format!("transport: {text}")
}

async fn one(api: &Api, i: usize, opts: &LoadOptions, t0: Instant) -> Outcome {
    let body = match opts.submit {
        SubmitMode::Text => opts.shape.text_body(i),
        SubmitMode::Graph => opts.shape.graph_body(i),
    };
    let sent = Instant::now();
    let mut o = Outcome {
        latency_us: 0,
        submit_us: 0,
        tasks: 0,
        result: Err(String::new()),
    };
    let submitted = match opts.wait {
        WaitMode::Post => api.submit_waiting(&body, opts.timeout, opts.timeout).await,
        WaitMode::Sse | WaitMode::Poll { .. } => api.submit(&body, opts.timeout).await,
    };
    let view = match submitted {
        Ok(v) => v,
        Err(e) => {
            o.result = Err(classify(&e));
            return o;
        }
    };
    o.submit_us = micros(sent.elapsed());
    o.tasks = view.tasks.len() as u64;
    // A waited submit's answer is the final view, unless the wait ran out first.
    o.result = if opts.wait == WaitMode::Post && view.status.is_terminal() {
        Ok(view.status)
    } else {
        api.wait(&view.id, opts.wait, opts.timeout)
            .await
            .map_err(|e| classify(&e))
    };
    o.latency_us = micros(t0.elapsed());
    o
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs requests `first..first + count` and returns their tally and the wall time they took.
async fn drive(api: &Api, opts: &LoadOptions, first: usize, count: usize) -> (Tally, Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    match opts.rate {
        None => {
            let next = Arc::new(AtomicUsize::new(first));
            let end = first + count;
            for _ in 0..opts.concurrency.clamp(1, count.max(1)) {
                let (api, opts, next, tx) = (api.clone(), opts.clone(), next.clone(), tx.clone());
                workers.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            break;
                        }
                        let o = one(&api, i, &opts, Instant::now()).await;
                        let _ = tx.send(o);
                    }
                });
            }
        }
        Some(rate) => {
            let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
            let period = Duration::from_secs_f64(1.0 / rate.max(1e-6));
            for k in 0..count {
                let due = start + period.mul_f64(k as f64);
                tokio::time::sleep_until(due.into()).await;
                let Ok(permit) = gate.clone().acquire_owned().await else {
                    break;
                };
                let (api, opts, tx) = (api.clone(), opts.clone(), tx.clone());
                workers.spawn(async move {
                    let o = one(&api, first + k, &opts, due).await;
                    drop(permit);
                    let _ = tx.send(o);
                });
            }
        }
    }
    drop(tx);
    let mut tally = Tally::new();
    while let Some(o) = rx.recv().await {
        tally.add(o);
    }
    while workers.join_next().await.is_some() {}
    (tally, start.elapsed())
}

/// Connects the agents, runs the warm-up and the measured requests, and reports.
pub async fn run_load(target: &Target, opts: &LoadOptions) -> anyhow::Result<LoadReport> {
    if opts.submit == SubmitMode::Text && !opts.shape.has_text() {
        anyhow::bail!(
            "shape {} cannot be written as rules text; use graph submission",
            opts.shape
        );
    }
    let api = Api::new(target, opts.concurrency * 2)?;
    api.health().await?;
    let idle = sample(target);

    let mut fleet_opts = FleetOptions::new(opts.agents);
    fleet_opts.max_concurrency = opts.agent_concurrency;
    let t = Instant::now();
    let creds = agents::register(&api, &fleet_opts).await?;
    let register_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let fleet = Fleet::connect(&api, creds, &fleet_opts).await?;
    let connect_s = t.elapsed().as_secs_f64();

    if opts.warmup > 0 {
        let (warm, _) = drive(&api, opts, 0, opts.warmup).await;
        if warm.succeeded == 0 {
            let why = warm
                .first_error
                .clone()
                .unwrap_or_else(|| format!("{:?}", warm.errors));
            fleet.stop().await;
            anyhow::bail!("no warm-up request succeeded: {why}");
        }
    }

    let before = sample(target);
    let own_before = ProcSample::own().ok();
    let machine_before = super::procfs::machine_busy_ms();
    let (tally, wall) = drive(&api, opts, opts.warmup, opts.requests).await;
    let after = sample(target);
    let own_after = ProcSample::own().ok();
    let machine_after = super::procfs::machine_busy_ms();

    // Acks may trail the final status by a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut counters = fleet.counters();
    while counters.acks < counters.results && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        counters = fleet.counters();
    }
    fleet.stop().await;

    let wall_s = wall.as_secs_f64();
    let server = match (idle, before, after) {
        (Some(idle), Some(before), Some(after)) => {
            let cpu_s = after.cpu_ms.saturating_sub(before.cpu_ms) as f64 / 1000.0;
            Some(LoadServer {
                idle,
                before_load: before,
                after_load: after,
                cpu_s,
                cores: cpu_s / wall_s,
                cpu_us_per_subtask: if tally.subtasks > 0 {
                    cpu_s * 1e6 / tally.subtasks as f64
                } else {
                    0.0
                },
            })
        }
        _ => None,
    };
    let generator_cpu_s = match (own_before, own_after) {
        (Some(a), Some(b)) => b.cpu_ms.saturating_sub(a.cpu_ms) as f64 / 1000.0,
        _ => 0.0,
    };
    // Other processes' CPU during the measured requests: the machine's busy time minus the
    // orchestrator's and the generator's (only meaningful when the orchestrator is a separate
    // process; in-process its time is already in the generator's).
    let server_cpu_s = server.as_ref().map(|s| s.cpu_s).unwrap_or(0.0);
    let own_in_server = target.pid == Some(std::process::id());
    let others_cores = match (machine_before, machine_after) {
        (Some(a), Some(b)) => {
            let busy = b.saturating_sub(a) as f64 / 1000.0;
            let ours = generator_cpu_s + if own_in_server { 0.0 } else { server_cpu_s };
            Some(((busy - ours) / wall_s).max(0.0))
        }
        _ => None,
    };
    Ok(LoadReport {
        target: target.kind,
        agents: opts.agents,
        shape: opts.shape.to_string(),
        submit_mode: opts.submit.to_string(),
        requests: opts.requests,
        warmup: opts.warmup,
        concurrency: opts.concurrency,
        rate: opts.rate,
        wait: opts.wait.to_string(),
        succeeded: tally.succeeded,
        failed: tally.failed,
        errors: tally.errors,
        first_error: tally.first_error,
        subtasks: tally.subtasks,
        wall_s,
        requests_per_s: tally.succeeded as f64 / wall_s,
        subtasks_per_s: tally.subtasks as f64 / wall_s,
        latency: Percentiles::of(&tally.latency),
        submit: Percentiles::of(&tally.submit),
        server,
        generator_cpu_s,
        generator_cores: generator_cpu_s / wall_s,
        others_cores,
        register_s,
        connect_s,
        agent_counters: counters,
    })
}

/// Connects agents that only heartbeat and reports the orchestrator's memory per agent and its CPU
/// over a window.
pub async fn run_idle(target: &Target, opts: &IdleOptions) -> anyhow::Result<IdleReport> {
    let api = Api::new(target, 8)?;
    api.health().await?;
    let start = sample(target);
    let own_start = ProcSample::own().ok();

    let mut fleet_opts = FleetOptions::new(opts.agents);
    fleet_opts.parallelism = opts.parallelism;
    let t = Instant::now();
    let creds = agents::register(&api, &fleet_opts).await?;
    let register_s = t.elapsed().as_secs_f64();
    let registered = sample(target);
    let t = Instant::now();
    let fleet = Fleet::connect(&api, creds, &fleet_opts).await?;
    let connect_s = t.elapsed().as_secs_f64();

    tokio::time::sleep(opts.settle).await;
    let connected = sample(target);
    let own_connected = ProcSample::own().ok();
    let machine_start = super::procfs::machine_busy_ms();
    let c0 = fleet.counters();
    let t = Instant::now();
    tokio::time::sleep(opts.window).await;
    let window_s = t.elapsed().as_secs_f64();
    let end = sample(target);
    let own_end = ProcSample::own().ok();
    let machine_end = super::procfs::machine_busy_ms();
    let c1 = fleet.counters();
    let heartbeat_interval_ms = u64::try_from(fleet.heartbeat_interval.as_millis()).unwrap_or(0);
    fleet.stop().await;

    let n = opts.agents.max(1) as f64;
    let server = match (start, registered, connected, end) {
        (Some(start), Some(registered), Some(connected), Some(end)) => Some(IdleServer {
            rss_per_agent_kib: end.rss_kib.saturating_sub(start.rss_kib) as f64 / n,
            rss_per_connection_kib: end.rss_kib.saturating_sub(registered.rss_kib) as f64 / n,
            hwm_per_agent_kib: end.hwm_kib.saturating_sub(start.hwm_kib) as f64 / n,
            cpu_pct_of_one_core: end.cpu_ms.saturating_sub(connected.cpu_ms) as f64
                / 10.0
                / window_s,
            start,
            registered,
            connected,
            end,
        }),
        _ => None,
    };
    let others_cores = match (machine_start, machine_end, own_connected, own_end) {
        (Some(a), Some(b), Some(oa), Some(ob)) => {
            let mut ours = ob.cpu_ms.saturating_sub(oa.cpu_ms);
            if target.pid != Some(std::process::id())
                && let (Some(sa), Some(sb)) = (connected, end)
            {
                ours += sb.cpu_ms.saturating_sub(sa.cpu_ms);
            }
            Some((b.saturating_sub(a).saturating_sub(ours) as f64 / 1000.0 / window_s).max(0.0))
        }
        _ => None,
    };
    let generator_rss_per_agent_kib = match (own_start, own_end) {
        (Some(a), Some(b)) => b.rss_kib.saturating_sub(a.rss_kib) as f64 / n,
        _ => 0.0,
    };
    Ok(IdleReport {
        target: target.kind,
        agents: opts.agents,
        heartbeat_interval_ms,
        register_s,
        connect_s,
        settle_s: opts.settle.as_secs_f64(),
        window_s,
        heartbeats_sent_in_window: c1.heartbeats_sent - c0.heartbeats_sent,
        heartbeats_received_in_window: c1.heartbeats_received - c0.heartbeats_received,
        server,
        generator_rss_per_agent_kib,
        others_cores,
        agent_counters: c1,
    })
}
