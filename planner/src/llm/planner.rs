//! [`LlmPlanner`]: plans and revises graphs by asking a chat-completions model for JSON.

use std::time::Instant;

use serde_json::json;

use super::actions::Catalog;
use super::client::{self, ChatRequest, Client, ClientConfig, Message};
use super::parse::Answer;
use super::{CallLog, LlmCall, Purpose, now_ms, parse, prompt, refuse, review};
use crate::canonical::canonical_json;
use crate::revise::{ReviseFuture, ReviseInput, Revision};
use crate::{DeviceInfo, DeviceProfile, Error, Plan, PlanFuture, PlanInput, Planner};

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
    /// The most tokens one answer may have (`max_tokens`). An answer cut there is refused as
    /// cut off and repaired like any other. Default 2000: a plan of 20 tasks fits.
    pub max_tokens: u32,
}

impl LlmPlannerConfig {
    pub fn new(client: ClientConfig) -> Self {
        Self {
            client,
            repair_rounds: 2,
            output_limit: 2000,
            max_tokens: 2000,
        }
    }
}

/// Sampling temperature of a first question: the most likely answer, the same every time.
const FIRST_TEMPERATURE: f32 = 0.0;

/// Sampling temperature of a repair: a little freedom, so that a repair is not the refused
/// answer again.
const REPAIR_TEMPERATURE: f32 = 0.3;

/// The LLM planner. See the [module docs](super) for what it sends to the model.
#[derive(Debug)]
pub struct LlmPlanner {
    client: Client,
    repair_rounds: u32,
    output_limit: usize,
    max_tokens: u32,
}

impl LlmPlanner {
    /// Checks the configuration (and, in replay mode, loads the cassette).
    pub fn new(config: LlmPlannerConfig) -> Result<Self, client::Error> {
        Ok(Self {
            client: Client::new(config.client)?,
            repair_rounds: config.repair_rounds,
            output_limit: config.output_limit,
            max_tokens: config.max_tokens,
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

    /// The question for one try: the system prompt and the user's message, and, for a repair,
    /// only the last refused answer with all of its errors (not the whole conversation: a
    /// small model's context is short, and older answers only distract it).
    fn question(
        &self,
        base: &[Message],
        last: Option<&Refused>,
        schema: &client::JsonSchema,
    ) -> ChatRequest {
        let mut messages = base.to_vec();
        if let Some(r) = last {
            messages.push(Message::assistant(r.answer.clone()));
            messages.push(Message::user(prompt::repair(&r.errors)));
        }
        ChatRequest {
            messages,
            json_schema: Some(schema.clone()),
            tools: Vec::new(),
            max_tokens: Some(self.max_tokens),
            temperature: Some(if last.is_some() {
                REPAIR_TEMPERATURE
            } else {
                FIRST_TEMPERATURE
            }),
        }
    }

    /// The errors of an answer that stopped at the token limit.
    fn cut_off(&self) -> Vec<String> {
        vec![format!(
            "your answer was cut off at the limit of {} tokens: answer with fewer tasks and \
             shorter titles",
            self.max_tokens
        )]
    }

    async fn plan_async(&self, input: PlanInput<'_>) -> Result<Plan, Error> {
        if input.text.trim().is_empty() {
            return Err(Error::Empty);
        }
        let infos: Vec<DeviceInfo> = input.devices.iter().map(|d| d.info.clone()).collect();
        if let Some(reason) = refuse::before_planning(input.text, &infos) {
            tracing::info!(%reason, "the LLM planner refused the request before asking the model");
            return Err(Error::Refused { reason });
        }
        let devices = online(input.devices);
        if devices.is_empty() {
            return Err(Error::NoOnlineDevice);
        }
        let catalog = Catalog::new(&devices, input.text);
        let base = [
            Message::system(prompt::plan_system(&devices, &catalog, input.text)),
            Message::user(input.text),
        ];
        let schema = prompt::plan_schema(&devices, &catalog, true);
        // A repair may not refuse: a small model otherwise copies the errors into `refuse`.
        let repair_schema = prompt::plan_schema(&devices, &catalog, false);
        let attempts = 1 + self.repair_rounds;
        let mut repairs = Repairs::default();
        for attempt in 1..=attempts {
            let schema = if attempt == 1 {
                &schema
            } else {
                &repair_schema
            };
            let req = self.question(&base, repairs.last(), schema);
            let c = self
                .ask(&req, Purpose::Plan, 0, attempt, input.calls)
                .await?;
            let errors = if c.cut_off() {
                self.cut_off()
            } else {
                match parse::plan(c.text(), &devices, input.text) {
                    Ok(Answer::Plan(plan)) => {
                        if let Some(reason) = review::destructive(&plan) {
                            input.calls.refuse_last("plan_refused", reason.clone());
                            return Err(Error::Refused { reason });
                        }
                        tracing::info!(tasks = plan.tasks.len(), attempt, "LLM plan accepted");
                        return Ok(plan);
                    }
                    Ok(Answer::Refuse(reason)) => {
                        tracing::info!(attempt, %reason, "the LLM planner refused the request");
                        return Err(Error::Refused { reason });
                    }
                    Err(e) => e,
                }
            };
            tracing::info!(attempt, ?errors, "LLM plan refused");
            input.calls.refuse_last("plan_invalid", errors.join("; "));
            if !repairs.push(c.text(), errors) {
                break;
            }
        }
        Err(Error::PlanInvalid {
            attempts: repairs.asked(),
            errors: repairs.into_errors(),
        })
    }

    async fn revise_async(&self, input: ReviseInput<'_>) -> Result<Revision, Error> {
        let devices = online(input.devices);
        let catalog = Catalog::new(&devices, input.text);
        let rounds_left = input.max_rounds.saturating_sub(input.round);
        let mut base = vec![
            Message::system(prompt::revise_system(&devices, &catalog, rounds_left)),
            Message::user(prompt::revise_user(&input, self.output_limit)),
        ];
        if let Some(r) = input.refused {
            base.push(Message::assistant(r.answer.clone()));
            base.push(Message::user(prompt::edit_refused(r)));
        }
        let schema = prompt::revise_schema();
        let attempts = 1 + self.repair_rounds;
        let mut repairs = Repairs::default();
        for attempt in 1..=attempts {
            let req = self.question(&base, repairs.last(), &schema);
            let c = self
                .ask(&req, Purpose::Revise, input.round, attempt, input.calls)
                .await?;
            let errors = if c.cut_off() {
                self.cut_off()
            } else {
                match parse::revision(c.text()) {
                    Ok(r) => return Ok(r),
                    Err(e) => e,
                }
            };
            tracing::info!(attempt, ?errors, "LLM revision refused");
            input
                .calls
                .refuse_last("revision_invalid", errors.join("; "));
            if !repairs.push(c.text(), errors) {
                break;
            }
        }
        Err(Error::RevisionInvalid {
            attempts: repairs.asked(),
            errors: repairs.into_errors(),
        })
    }
}

/// A refused answer and why.
#[derive(Debug)]
struct Refused {
    answer: String,
    errors: Vec<String>,
}

/// The refused answers of one plan or revision, so that a repair shows the last one and a
/// model that repeats itself is not asked again.
#[derive(Debug, Default)]
struct Repairs {
    seen: Vec<String>,
    last: Option<Refused>,
}

impl Repairs {
    fn last(&self) -> Option<&Refused> {
        self.last.as_ref()
    }

    /// Records a refused answer; `false` when it repeats an answer refused before (asking again
    /// would get it a third time).
    fn push(&mut self, answer: &str, errors: Vec<String>) -> bool {
        let key = canonical(answer);
        let new = !self.seen.contains(&key);
        self.seen.push(key);
        self.last = Some(Refused {
            answer: answer.to_owned(),
            errors,
        });
        new
    }

    fn asked(&self) -> u32 {
        u32::try_from(self.seen.len()).unwrap_or(u32::MAX)
    }

    fn into_errors(self) -> Vec<String> {
        self.last.map(|r| r.errors).unwrap_or_default()
    }
}

/// An answer with its JSON written one way (keys sorted, no spaces), so that the same answer
/// formatted differently compares equal.
fn canonical(answer: &str) -> String {
    serde_json::from_str::<serde_json::Value>(answer.trim())
        .map(|v| canonical_json(&v))
        .unwrap_or_else(|_| answer.trim().to_owned())
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
