//! The lost run: how fast a lost device's in-flight work is placed on another device.
//!
//! One one-task request at a time. The agent that receives the task's first `assign` accepts it,
//! holds the result back and goes lost ([`Loss::Close`] or [`Loss::Silent`]); the figure is the
//! time from that moment until the same task's next `assign` is read by another agent, which
//! answers it at once so that the request succeeds. The lost agent then connects again (a fresh
//! `hello` holding no attempts), so the pool stays at N for the next trial.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use weft_protocol::{RequestStatus, TaskId};

use super::agents::{self, FleetOptions, LosingFleet, Loss, LossEvent};
use super::client::{Api, WaitMode};
use super::report::{LostMode, LostReport, LostTrial, Spread};
use super::server::Target;
use super::shape::Shape;

/// What [`run_lost`] does.
#[derive(Debug, Clone)]
pub struct LostOptions {
    /// Connected agents (at least 2: the task must have somewhere else to go).
    pub agents: usize,
    /// Trials per way of losing an agent.
    pub trials: usize,
    /// The ways of losing an agent, run in this order.
    pub modes: Vec<Loss>,
    /// Longest one trial may take: submit to re-placement and the request's end, and the lost
    /// agent's reconnection.
    pub timeout: Duration,
    /// The grace window the server was started with, when known (only reported).
    pub lost_grace_ms: Option<u64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connects the agents, runs the trials of every mode (stopping at the first failed trial) and
/// reports.
pub async fn run_lost(target: &Target, opts: &LostOptions) -> anyhow::Result<LostReport> {
    if opts.agents < 2 {
        bail!("a lost run needs at least 2 agents: the task must have another device to go to");
    }
    let api = Api::new(target, 4)?;
    api.health().await?;
    let fleet_opts = FleetOptions::new(opts.agents);
    let creds = agents::register(&api, &fleet_opts).await?;
    let mut fleet = LosingFleet::connect(&api, creds, &fleet_opts).await?;
    let heartbeat_interval_ms = u64::try_from(fleet.heartbeat_interval.as_millis()).unwrap_or(0);

    let mut trials: Vec<LostTrial> = Vec::new();
    'modes: for &how in &opts.modes {
        for _ in 0..opts.trials {
            let t = trial(&api, &mut fleet, how, trials.len(), opts.timeout).await;
            let failed = t.error.is_some();
            trials.push(t);
            if failed {
                break 'modes;
            }
        }
    }
    // Acks may trail the final status by a moment.
    let acks_by = Instant::now() + Duration::from_secs(2);
    let mut agent_counters = fleet.counters();
    while agent_counters.acks < agent_counters.results && Instant::now() < acks_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
        agent_counters = fleet.counters();
    }
    fleet.stop().await;

    let goal_ms = 2.0 * heartbeat_interval_ms as f64 + 100.0;
    let modes = opts
        .modes
        .iter()
        .map(|&how| {
            let good: Vec<&LostTrial> = trials
                .iter()
                .filter(|t| t.how == how && t.error.is_none())
                .collect();
            let replace: Vec<f64> = good.iter().filter_map(|t| t.replace_ms).collect();
            let done: Vec<f64> = good.iter().filter_map(|t| t.lost_to_done_ms).collect();
            let replace_ms = Spread::of(&replace);
            LostMode {
                how,
                trials: opts.trials,
                ok: good.len(),
                replace_ms,
                lost_to_done_ms: Spread::of(&done),
                p50_over_goal: replace_ms.map(|s| s.median / goal_ms),
                max_over_goal: replace_ms.map(|s| s.max / goal_ms),
            }
        })
        .collect();
    Ok(LostReport {
        target: target.kind,
        agents: opts.agents,
        heartbeat_interval_ms,
        lost_grace_ms: opts.lost_grace_ms,
        goal_ms,
        modes,
        trials,
        agent_counters,
    })
}

/// One trial; a failure is written into the trial, not returned.
async fn trial(
    api: &Api,
    fleet: &mut LosingFleet,
    how: Loss,
    i: usize,
    timeout: Duration,
) -> LostTrial {
    let mut t = LostTrial {
        how,
        request_id: None,
        task_id: None,
        lost_agent: None,
        replaced_on: None,
        assign_to_lost_ms: None,
        replace_ms: None,
        lost_to_done_ms: None,
        final_status: None,
        reconnect_refusals: 0,
        error: None,
    };
    fleet.set_loss(Some(how));
    let res = trial_steps(api, fleet, i, timeout, &mut t).await;
    fleet.set_loss(None);
    if let Err(e) = res {
        t.error = Some(format!("{e:#}"));
    }
    t
}

/// The agent that went lost and when.
struct Lost {
    agent: usize,
    task_id: TaskId,
    assigned: Instant,
    at: Instant,
}

async fn trial_steps(
    api: &Api,
    fleet: &mut LosingFleet,
    i: usize,
    timeout: Duration,
    t: &mut LostTrial,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let view = api
        .submit(&Shape::Single.text_body(i), timeout)
        .await
        .context("submitting the request")?;
    t.request_id = Some(view.id.clone());
    // The event stream replays the journal, so it may open after the POST; the agents' events
    // are read meanwhile.
    let wait = async {
        let status = api.wait(&view.id, WaitMode::Sse, timeout).await;
        (status, Instant::now())
    };
    let (watched, (status, done_at)) = tokio::join!(watch(fleet, &view.id, deadline), wait);
    let (lost, replaced_on, replaced_at) = watched?;
    t.task_id = Some(lost.task_id.to_string());
    t.lost_agent = Some(lost.agent);
    t.replaced_on = Some(replaced_on);
    t.assign_to_lost_ms = Some(ms(lost.at.saturating_duration_since(lost.assigned)));
    t.replace_ms = Some(ms(replaced_at.saturating_duration_since(lost.at)));
    let status = status.with_context(|| format!("following request {}", view.id))?;
    t.final_status = Some(status.as_str().to_owned());
    t.lost_to_done_ms = Some(ms(done_at.saturating_duration_since(lost.at)));
    if replaced_on == lost.agent {
        bail!("the task was assigned again to the agent that went lost");
    }
    if status != RequestStatus::Succeeded {
        bail!("the request ended {}", status.as_str());
    }

    fleet.reconnect(lost.agent, timeout);
    let deadline = Instant::now() + timeout;
    loop {
        match fleet.next_event(deadline).await {
            Some(LossEvent::Reconnected { agent, refused }) if agent == lost.agent => {
                t.reconnect_refusals = refused;
                return Ok(());
            }
            Some(LossEvent::Failed { agent, error }) => bail!("agent {agent}: {error}"),
            Some(_) => {}
            None => bail!("agent {} did not reconnect within {timeout:?}", lost.agent),
        }
    }
}

/// Reads the agents' events until `request`'s task has gone lost on one agent and been assigned
/// to another; returns the loss, and that agent and when its `assign` was read.
async fn watch(
    fleet: &mut LosingFleet,
    request: &str,
    deadline: Instant,
) -> anyhow::Result<(Lost, usize, Instant)> {
    let mut lost: Option<Lost> = None;
    loop {
        let Some(event) = fleet.next_event(deadline).await else {
            match lost {
                None => bail!("no agent received the task in time"),
                Some(l) => bail!(
                    "task {} was not assigned to another agent within the timeout ({:.0} ms after agent {} went lost)",
                    l.task_id,
                    ms(Instant::now().saturating_duration_since(l.at)),
                    l.agent
                ),
            }
        };
        match event {
            LossEvent::WentLost {
                agent,
                request_id,
                task_id,
                assigned,
                lost: at,
            } if request_id.as_str() == request => {
                lost = Some(Lost {
                    agent,
                    task_id,
                    assigned,
                    at,
                });
            }
            LossEvent::Reassigned {
                agent,
                request_id,
                task_id,
                at,
            } if request_id.as_str() == request => {
                if let Some(l) = lost.take_if(|l| l.task_id == task_id) {
                    return Ok((l, agent, at));
                }
            }
            LossEvent::Failed { agent, error } => bail!("agent {agent}: {error}"),
            _ => {}
        }
    }
}
