//! [`LlmPlanner`]: plans and revises graphs by asking a chat-completions model for JSON.

use std::time::Instant;

use serde_json::json;

use super::client::{self, ChatRequest, Client, ClientConfig, Message};
use super::{CallLog, LlmCall, Purpose, now_ms, parse, prompt};
use crate::revise::{ReviseFuture, ReviseInput, Revision};
use crate::{DeviceProfile, Error, Plan, PlanFuture, PlanInput, Planner};

/// How the LLM planner works.
#[derive(Debug, Clone)]
pub struct LlmPlannerConfig {
    pub client: ClientConfig,
    /// How many times a refused answer goes back to the model with its errors before the
    /// planning fails (`plan_invalid`); each plan or revision asks at most `1 + repair_rounds`
    /// times. Default 2.
    pub repair_rounds: u32,
    /// Bytes of each task's output (and of each error message) shown to the model when
    /// revising; the rest is cut. Default 2000.
    pub output_limit: usize,
}

impl LlmPlannerConfig {
    pub fn new(client: ClientConfig) -> Self {
        Self {
            client,
            repair_rounds: 2,
            output_limit: 2000,
        }
    }
}

/// The LLM planner. See the [module docs](super) for what it sends to the model.
#[derive(Debug)]
pub struct LlmPlanner {
    client: Client,
    repair_rounds: u32,
    output_limit: usize,
}

impl LlmPlanner {
    /// Checks the configuration (and, in replay mode, loads the cassette).
    pub fn new(config: LlmPlannerConfig) -> Result<Self, client::Error> {
        Ok(Self {
            client: Client::new(config.client)?,
            repair_rounds: config.repair_rounds,
            output_limit: config.output_limit,
        })
    }

    /// Asks once and records the call in `calls`.
    async fn ask(
        &self,
        req: &ChatRequest,
        purpose: Purpose,
        round: u32,
        attempt: u32,
        calls: &CallLog,
    ) -> Result<client::Completion, Error> {
        let at_ms = now_ms();
        let started = Instant::now();
        let model = self.client.model().to_owned();
        match self.client.complete(req).await {
            Ok(c) => {
                calls.push(LlmCall {
                    purpose,
                    round,
                    attempt,
                    model,
                    request: c.request.clone(),
                    response: Some(c.response.clone()),
                    error: None,
                    prompt_tokens: c.usage.map(|u| u.prompt_tokens),
                    completion_tokens: c.usage.map(|u| u.completion_tokens),
                    latency_ms: millis(c.latency),
                    at_ms,
                });
                Ok(c)
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, purpose = purpose.as_str(), "LLM call failed");
                calls.push(LlmCall {
                    purpose,
                    round,
                    attempt,
                    model: model.clone(),
                    request: json!({"model": model, "messages": req.messages}),
                    response: None,
                    error: Some((e.code().to_owned(), e.to_string())),
                    prompt_tokens: None,
                    completion_tokens: None,
                    latency_ms: millis(started.elapsed()),
                    at_ms,
                });
                Err(Error::Llm {
                    code: e.code(),
                    message: e.to_string(),
                })
            }
        }
    }

    async fn plan_async(&self, input: PlanInput<'_>) -> Result<Plan, Error> {
        if input.text.trim().is_empty() {
            return Err(Error::Empty);
        }
        let devices = online(input.devices);
        if devices.is_empty() {
            return Err(Error::NoOnlineDevice);
        }
        let mut messages = vec![
            Message::system(prompt::plan_system(&devices)),
            Message::user(input.text),
        ];
        let attempts = 1 + self.repair_rounds;
        let mut errors = Vec::new();
        for attempt in 1..=attempts {
            let req = ChatRequest {
                messages: messages.clone(),
                json_schema: Some(prompt::plan_schema()),
                tools: Vec::new(),
            };
            let c = self
                .ask(&req, Purpose::Plan, 0, attempt, input.calls)
                .await?;
            match parse::plan(c.text(), &devices) {
                Ok(plan) => {
                    tracing::info!(tasks = plan.tasks.len(), attempt, "LLM plan accepted");
                    return Ok(plan);
                }
                Err(e) => {
                    tracing::info!(attempt, errors = ?e, "LLM plan refused");
                    input.calls.refuse_last("plan_invalid", e.join("; "));
                    messages.push(Message::assistant(c.text()));
                    messages.push(Message::user(prompt::repair(&e)));
                    errors = e;
                }
            }
        }
        Err(Error::PlanInvalid { attempts, errors })
    }

    async fn revise_async(&self, input: ReviseInput<'_>) -> Result<Revision, Error> {
        let devices = online(input.devices);
        let rounds_left = input.max_rounds.saturating_sub(input.round);
        let mut messages = vec![
            Message::system(prompt::revise_system(&devices, rounds_left)),
            Message::user(prompt::revise_user(&input, self.output_limit)),
        ];
        if let Some(r) = input.refused {
            messages.push(Message::assistant(r.answer.clone()));
            messages.push(Message::user(prompt::edit_refused(r)));
        }
        let attempts = 1 + self.repair_rounds;
        let mut errors = Vec::new();
        for attempt in 1..=attempts {
            let req = ChatRequest {
                messages: messages.clone(),
                json_schema: Some(prompt::revise_schema()),
                tools: Vec::new(),
            };
            let c = self
                .ask(&req, Purpose::Revise, input.round, attempt, input.calls)
                .await?;
            match parse::revision(c.text()) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    tracing::info!(attempt, errors = ?e, "LLM revision refused");
                    input.calls.refuse_last("revision_invalid", e.join("; "));
                    messages.push(Message::assistant(c.text()));
                    messages.push(Message::user(prompt::repair(&e)));
                    errors = e;
                }
            }
        }
        Err(Error::RevisionInvalid { attempts, errors })
    }
}

impl Planner for LlmPlanner {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn plan<'a>(&'a self, input: PlanInput<'a>) -> PlanFuture<'a> {
        Box::pin(self.plan_async(input))
    }

    fn revises(&self) -> bool {
        true
    }

    fn revise<'a>(&'a self, input: ReviseInput<'a>) -> ReviseFuture<'a> {
        Box::pin(self.revise_async(input))
    }
}

/// The online devices, sorted by name: what the model is shown and may use.
fn online(devices: &[DeviceProfile]) -> Vec<&DeviceProfile> {
    let mut online: Vec<&DeviceProfile> = devices.iter().filter(|d| d.info.online).collect();
    online.sort_by(|a, b| a.info.name.as_str().cmp(b.info.name.as_str()));
    online
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
