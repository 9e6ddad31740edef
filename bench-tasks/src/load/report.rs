//! What the runs report, as JSON (`serde`) and as a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::agents::{CounterSnapshot, Loss};
use super::procfs::ProcSample;
use super::server::TargetKind;

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            min_ms: ms(h.min()),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// The orchestrator's figures around a load run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadServer {
    /// Before any agent registered.
    pub idle: ProcSample,
    /// Agents connected, warm-up done, right before the measured requests.
    pub before_load: ProcSample,
    /// Right after the last measured request finished.
    pub after_load: ProcSample,
    /// CPU time used during the measured requests, seconds.
    pub cpu_s: f64,
    /// `cpu_s / wall_s`: cores kept busy on average (2 = all of this machine).
    pub cores: f64,
    /// Orchestrator CPU per completed task, microseconds.
    pub cpu_us_per_subtask: f64,
}

/// The result of one load run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub target: TargetKind,
    pub agents: usize,
    pub shape: String,
    /// `text` (rules planner) or `graph`.
    pub submit_mode: String,
    pub requests: usize,
    pub warmup: usize,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub wait: String,
    /// Requests whose final status was `succeeded`.
    pub succeeded: u64,
    /// Requests that were refused, timed out, or ended other than `succeeded`.
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    /// Tasks of the succeeded requests.
    pub subtasks: u64,
    /// Wall time of the measured requests, first submit to last final status.
    pub wall_s: f64,
    pub requests_per_s: f64,
    pub subtasks_per_s: f64,
    /// Submit (before `POST`) to final status observed, succeeded requests only.
    pub latency: Percentiles,
    /// `POST /v1/requests` round trip alone.
    pub submit: Percentiles,
    /// `None` when the orchestrator's pid is unknown.
    pub server: Option<LoadServer>,
    /// The load generator's own CPU during the measured requests (it shares the machine).
    pub generator_cpu_s: f64,
    pub generator_cores: f64,
    /// Cores other processes on the machine used meanwhile (machine busy time minus the
    /// orchestrator's and the generator's, over the wall time); near 0 on a quiet machine.
    pub others_cores: Option<f64>,
    pub register_s: f64,
    pub connect_s: f64,
    pub agent_counters: CounterSnapshot,
}

/// The orchestrator's figures around an idle run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleServer {
    /// Before any device was registered.
    pub start: ProcSample,
    /// Devices registered, none connected.
    pub registered: ProcSample,
    /// Every agent connected and settled: the CPU window starts here.
    pub connected: ProcSample,
    /// End of the CPU window.
    pub end: ProcSample,
    /// `(end.rss - start.rss) / agents`: registry entry + connection, KiB.
    pub rss_per_agent_kib: f64,
    /// `(end.rss - registered.rss) / agents`: the connection alone, KiB.
    pub rss_per_connection_kib: f64,
    /// `(end.hwm - start.hwm) / agents`, KiB.
    pub hwm_per_agent_kib: f64,
    /// CPU over the window, percent of one core.
    pub cpu_pct_of_one_core: f64,
}

/// The result of one idle run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleReport {
    pub target: TargetKind,
    pub agents: usize,
    pub heartbeat_interval_ms: u64,
    pub register_s: f64,
    pub connect_s: f64,
    pub settle_s: f64,
    pub window_s: f64,
    pub heartbeats_sent_in_window: u64,
    pub heartbeats_received_in_window: u64,
    pub server: Option<IdleServer>,
    /// The generator's own memory per agent, KiB (for scale; not the orchestrator's).
    pub generator_rss_per_agent_kib: f64,
    /// Cores other processes used during the window (see [`LoadReport::others_cores`]).
    pub others_cores: Option<f64>,
    pub agent_counters: CounterSnapshot,
}

/// One trial of a lost run: a one-task request whose first attempt's agent went lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostTrial {
    pub how: Loss,
    pub request_id: Option<String>,
    pub task_id: Option<String>,
    /// The agent (index) that received the first attempt and went lost.
    pub lost_agent: Option<usize>,
    /// The agent the task was assigned to next.
    pub replaced_on: Option<usize>,
    /// First `assign` read → agent lost (its `accept` is sent in between), ms.
    pub assign_to_lost_ms: Option<f64>,
    /// The figure: agent lost → the same task's next `assign` read by another agent, ms.
    pub replace_ms: Option<f64>,
    /// Agent lost → the request's final status seen, ms.
    pub lost_to_done_ms: Option<f64>,
    /// The request's final status.
    pub final_status: Option<String>,
    /// Hellos refused with `already_connected` before the lost agent was back.
    pub reconnect_refusals: u32,
    /// Why the trial failed; a run stops at its first failed trial.
    pub error: Option<String>,
}

/// The trials of one way of losing an agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostMode {
    pub how: Loss,
    /// Trials asked for.
    pub trials: usize,
    /// Trials whose task was re-placed on another agent and whose request succeeded.
    pub ok: usize,
    /// Agent lost → re-assigned elsewhere, ms, over the good trials (median = p50).
    pub replace_ms: Option<Spread>,
    /// Agent lost → request done, ms, over the good trials.
    pub lost_to_done_ms: Option<Spread>,
    /// `replace_ms` p50 and max divided by the goal (≤ 1 meets it).
    pub p50_over_goal: Option<f64>,
    pub max_over_goal: Option<f64>,
}

/// The result of one lost run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostReport {
    pub target: TargetKind,
    pub agents: usize,
    /// As named in the orchestrator's `welcome`.
    pub heartbeat_interval_ms: u64,
    /// The grace window the server was started with, when known (`None`: its default).
    pub lost_grace_ms: Option<u64>,
    /// The goal: 2 heartbeat intervals + 100 ms.
    pub goal_ms: f64,
    pub modes: Vec<LostMode>,
    pub trials: Vec<LostTrial>,
    pub agent_counters: CounterSnapshot,
}

/// Median, min and max of one figure over several runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// Named figures with their spread over runs, in a fixed order.
pub type Summary = Vec<(&'static str, Spread)>;

/// A figure's name and how to read it from one run.
pub(super) type Figure<T> = (&'static str, fn(&T) -> Option<f64>);

pub(super) fn summarize<T>(runs: &[T], figures: &[Figure<T>]) -> Summary {
    figures
        .iter()
        .filter_map(|(name, f)| {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            Spread::of(&values).map(|s| (*name, s))
        })
        .collect()
}

impl LoadReport {
    /// Median and spread of the headline figures over `runs`.
    pub fn summary(runs: &[LoadReport]) -> Summary {
        summarize(
            runs,
            &[
                ("latency p50 ms", |r| Some(r.latency.p50_ms)),
                ("latency p90 ms", |r| Some(r.latency.p90_ms)),
                ("latency p99 ms", |r| Some(r.latency.p99_ms)),
                ("latency max ms", |r| Some(r.latency.max_ms)),
                ("submit p50 ms", |r| Some(r.submit.p50_ms)),
                ("requests/s", |r| Some(r.requests_per_s)),
                ("subtasks/s", |r| Some(r.subtasks_per_s)),
                ("server cores", |r| r.server.as_ref().map(|s| s.cores)),
                ("server CPU µs/subtask", |r| {
                    r.server.as_ref().map(|s| s.cpu_us_per_subtask)
                }),
                ("server RSS after MiB", |r| {
                    r.server
                        .as_ref()
                        .map(|s| s.after_load.rss_kib as f64 / 1024.0)
                }),
                ("server HWM MiB", |r| {
                    r.server
                        .as_ref()
                        .map(|s| s.after_load.hwm_kib as f64 / 1024.0)
                }),
                ("generator cores", |r| Some(r.generator_cores)),
                ("other processes cores", |r| r.others_cores),
            ],
        )
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rate = self
            .rate
            .map(|r| format!("{r}/s open loop"))
            .unwrap_or_else(|| "as fast as possible".into());
        let _ = writeln!(
            s,
            "load: {} agents, shape {} as {}, {} requests (+{} warm-up), concurrency {}, {rate}, wait {}, orchestrator {:?}",
            self.agents,
            self.shape,
            self.submit_mode,
            self.requests,
            self.warmup,
            self.concurrency,
            self.wait,
            self.target
        );
        let _ = writeln!(
            s,
            "  agents registered in {:.2} s, connected in {:.2} s",
            self.register_s, self.connect_s
        );
        let _ = writeln!(
            s,
            "  requests   {} succeeded, {} failed{}",
            self.succeeded,
            self.failed,
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(" {:?}", self.errors)
            }
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "  first error: {e}");
        }
        let l = &self.latency;
        let _ = writeln!(
            s,
            "  submit→done ms   p50 {:>9.3}  p90 {:>9.3}  p99 {:>9.3}  max {:>9.3}  (mean {:.3}, n {})",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms, l.count
        );
        let p = &self.submit;
        let _ = writeln!(
            s,
            "  POST only ms     p50 {:>9.3}  p90 {:>9.3}  p99 {:>9.3}  max {:>9.3}",
            p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms
        );
        let _ = writeln!(
            s,
            "  throughput       {:.1} requests/s, {:.1} subtasks/s over {:.2} s ({} subtasks)",
            self.requests_per_s, self.subtasks_per_s, self.wall_s, self.subtasks
        );
        match &self.server {
            Some(sv) => {
                let _ = writeln!(
                    s,
                    "  orchestrator     CPU {:.2} s = {:.2} cores, {:.0} µs CPU/subtask",
                    sv.cpu_s, sv.cores, sv.cpu_us_per_subtask
                );
                let _ = writeln!(
                    s,
                    "  orchestrator RSS idle {} KiB → agents connected {} KiB → after {} KiB (HWM {} KiB)",
                    sv.idle.rss_kib,
                    sv.before_load.rss_kib,
                    sv.after_load.rss_kib,
                    sv.after_load.hwm_kib
                );
            }
            None => {
                let _ = writeln!(s, "  orchestrator     (pid unknown: no /proc figures)");
            }
        }
        let _ = writeln!(
            s,
            "  generator        CPU {:.2} s = {:.2} cores; other processes {}",
            self.generator_cpu_s,
            self.generator_cores,
            self.others_cores
                .map(|c| format!("{c:.2} cores"))
                .unwrap_or_else(|| "unknown".into())
        );
        let c = &self.agent_counters;
        let _ = writeln!(
            s,
            "  agents           {} assigns, {} results, {} acks, {} errors, {} disconnects",
            c.assigns, c.results, c.acks, c.errors, c.disconnects
        );
        s
    }
}

impl IdleReport {
    /// Median and spread of the headline figures over `runs`.
    pub fn summary(runs: &[IdleReport]) -> Summary {
        summarize(
            runs,
            &[
                ("RSS per agent KiB", |r| {
                    r.server.as_ref().map(|s| s.rss_per_agent_kib)
                }),
                ("RSS per connection KiB", |r| {
                    r.server.as_ref().map(|s| s.rss_per_connection_kib)
                }),
                ("HWM per agent KiB", |r| {
                    r.server.as_ref().map(|s| s.hwm_per_agent_kib)
                }),
                ("CPU % of one core", |r| {
                    r.server.as_ref().map(|s| s.cpu_pct_of_one_core)
                }),
                ("connect s", |r| Some(r.connect_s)),
                ("register s", |r| Some(r.register_s)),
                ("other processes cores", |r| r.others_cores),
            ],
        )
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "idle: {} agents heartbeating every {} ms, orchestrator {:?}",
            self.agents, self.heartbeat_interval_ms, self.target
        );
        let _ = writeln!(
            s,
            "  registered in {:.2} s, connected in {:.2} s; settle {:.1} s, window {:.1} s",
            self.register_s, self.connect_s, self.settle_s, self.window_s
        );
        match &self.server {
            Some(sv) => {
                let _ = writeln!(
                    s,
                    "  orchestrator RSS start {} KiB → registered {} KiB → connected {} KiB → end {} KiB (HWM {} KiB)",
                    sv.start.rss_kib,
                    sv.registered.rss_kib,
                    sv.connected.rss_kib,
                    sv.end.rss_kib,
                    sv.end.hwm_kib
                );
                let _ = writeln!(
                    s,
                    "  per agent        {:.1} KiB RSS ({:.1} KiB of it the connection), HWM {:.1} KiB",
                    sv.rss_per_agent_kib, sv.rss_per_connection_kib, sv.hwm_per_agent_kib
                );
                let _ = writeln!(
                    s,
                    "  CPU              {:.2} % of one core over the window ({} threads)",
                    sv.cpu_pct_of_one_core, sv.end.threads
                );
            }
            None => {
                let _ = writeln!(s, "  orchestrator     (pid unknown: no /proc figures)");
            }
        }
        let _ = writeln!(
            s,
            "  heartbeats in window: {} sent by agents, {} received from the orchestrator; {} disconnects, {} errors",
            self.heartbeats_sent_in_window,
            self.heartbeats_received_in_window,
            self.agent_counters.disconnects,
            self.agent_counters.errors
        );
        let _ = writeln!(
            s,
            "  generator RSS    {:.1} KiB per agent",
            self.generator_rss_per_agent_kib
        );
        s
    }
}

impl LostReport {
    /// Whether every trial asked for ran, re-placed its task on another agent and succeeded.
    pub fn ok(&self) -> bool {
        self.modes.iter().all(|m| m.ok == m.trials)
    }

    pub fn mode(&self, how: Loss) -> Option<&LostMode> {
        self.modes.iter().find(|m| m.how == how)
    }

    /// Median and spread of the headline figures over `runs`.
    pub fn summary(runs: &[LostReport]) -> Summary {
        fn replace(r: &LostReport, how: Loss) -> Option<Spread> {
            r.mode(how)?.replace_ms
        }
        summarize(
            runs,
            &[
                ("goal ms", |r| Some(r.goal_ms)),
                ("close re-placed min ms", |r| {
                    replace(r, Loss::Close).map(|s| s.min)
                }),
                ("close re-placed p50 ms", |r| {
                    replace(r, Loss::Close).map(|s| s.median)
                }),
                ("close re-placed max ms", |r| {
                    replace(r, Loss::Close).map(|s| s.max)
                }),
                ("close p50 / goal", |r| r.mode(Loss::Close)?.p50_over_goal),
                ("silent re-placed min ms", |r| {
                    replace(r, Loss::Silent).map(|s| s.min)
                }),
                ("silent re-placed p50 ms", |r| {
                    replace(r, Loss::Silent).map(|s| s.median)
                }),
                ("silent re-placed max ms", |r| {
                    replace(r, Loss::Silent).map(|s| s.max)
                }),
                ("silent p50 / goal", |r| r.mode(Loss::Silent)?.p50_over_goal),
            ],
        )
    }

    /// A table for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let grace = self
            .lost_grace_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "the server's default".into());
        let _ = writeln!(
            s,
            "lost: {} agents, heartbeat {} ms, lost grace {grace}, goal 2 × {} + 100 = {:.0} ms, orchestrator {:?}",
            self.agents,
            self.heartbeat_interval_ms,
            self.heartbeat_interval_ms,
            self.goal_ms,
            self.target
        );
        for m in &self.modes {
            let _ = writeln!(
                s,
                "  {:<6} {}/{} re-placed elsewhere and succeeded",
                m.how.to_string(),
                m.ok,
                m.trials
            );
            if let Some(r) = m.replace_ms {
                let _ = writeln!(
                    s,
                    "         lost → re-assigned ms  min {:>9.1}  p50 {:>9.1}  max {:>9.1}   (p50 {:.2} × goal, max {:.2} × goal)",
                    r.min,
                    r.median,
                    r.max,
                    m.p50_over_goal.unwrap_or(f64::NAN),
                    m.max_over_goal.unwrap_or(f64::NAN)
                );
            }
            if let Some(d) = m.lost_to_done_ms {
                let _ = writeln!(
                    s,
                    "         lost → request done ms min {:>9.1}  p50 {:>9.1}  max {:>9.1}",
                    d.min, d.median, d.max
                );
            }
        }
        for t in self.trials.iter().filter(|t| t.error.is_some()) {
            let _ = writeln!(
                s,
                "  failed trial ({}, request {}): {}",
                t.how,
                t.request_id.as_deref().unwrap_or("-"),
                t.error.as_deref().unwrap_or_default()
            );
        }
        let c = &self.agent_counters;
        let refusals: u32 = self.trials.iter().map(|t| t.reconnect_refusals).sum();
        let _ = writeln!(
            s,
            "  agents {} assigns, {} results, {} acks, {} errors, {} unexpected disconnects; {refusals} reconnect hellos refused (already_connected)",
            c.assigns, c.results, c.acks, c.errors, c.disconnects
        );
        s
    }
}

/// Renders a summary over several runs.
pub fn render_summary(runs: usize, summary: &Summary) -> String {
    let mut s = format!("median of {runs} runs (min – max):\n");
    for (name, sp) in summary {
        let _ = writeln!(
            s,
            "  {name:<24} {:>12.3}   ({:.3} – {:.3})",
            sp.median, sp.min, sp.max
        );
    }
    s
}
