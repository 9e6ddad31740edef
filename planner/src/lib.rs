//! Planners for weft: turn a request's text into a task graph ([`Plan`]), and revise a running
//! graph after results ([`Planner::revise`]).
//!
//! Also the pure graph logic the engine calls at run time: [`condition`] (checking and evaluating
//! the predicates of `condition` edges) and [`refs`] (`{{t1.output}}` references from one task
//! to an upstream task's output). `docs/graph.md` describes both.
//!
//! Two planners: [`RulesPlanner`], offline and deterministic, and [`llm::LlmPlanner`], which asks
//! an OpenAI-compatible chat-completions endpoint.
//!
//! Architecture invariant: a planner knows devices only through the [`DeviceProfile`] list it is
//! given, holds no state between calls about requests, and never talks to devices or the
//! database. The rules planner and all graph logic are pure. The one I/O in this crate is in
//! [`llm`]: HTTP POSTs to the configured `{base}/chat/completions` endpoint, and reading or
//! appending the cassette file when one is configured.
//!
//! ```
//! use weft_planner::{DeviceInfo, RulesPlanner, Target};
//!
//! let devices = [DeviceInfo {
//!     name: "laptop".into(),
//!     kind: "laptop".into(),
//!     capabilities: vec!["shell".into()],
//!     online: true,
//! }];
//! let plan = RulesPlanner::new()
//!     .plan_sync(r#"on laptop run "echo one" then run "echo two""#, &devices)
//!     .unwrap();
//! assert_eq!(plan.tasks.len(), 2);
//! assert_eq!(plan.tasks[0].target, Target::Device("laptop".into()));
//! assert_eq!(plan.tasks[1].target, Target::Any);
//! assert_eq!(plan.edges.len(), 1);
//! ```

pub mod canonical;
pub mod condition;
mod error;
pub mod llm;
mod plan;
pub mod refs;
mod revise;
mod rules;
pub mod text;

use std::future::Future;
use std::pin::Pin;

pub use error::Error;
pub use llm::CallLog;
pub use plan::{Limits, Plan, PlannedEdge, PlannedTask, Target};
pub use revise::{GraphState, Refusal, ReviseFuture, ReviseInput, Revision, TaskState};
pub use rules::RulesPlanner;
pub use weft_protocol::{
    Action, Condition, ConditionOp, ConditionSource, DeviceName, EdgeKind, TaskId, TaskOutput,
    TaskStatus,
};

/// A registered device as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's unique name (`laptop`, `build-server-2`).
    pub name: DeviceName,
    /// Its kind: a plain lowercase word such as `laptop`, `phone` or `server`.
    pub kind: String,
    /// The executor capabilities it advertised (`shell`, `http`, `fs`).
    pub capabilities: Vec<String>,
    /// Whether it is connected and taking work (not draining). The rules planner still targets
    /// offline devices (the engine queues their tasks); the LLM planner uses online ones only.
    pub online: bool,
}

/// A registered device as a planner may describe it to a model: its [`DeviceInfo`] and the
/// platform its agent reported.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    pub info: DeviceInfo,
    /// As the agent reported it (`linux-x86_64`, …); `None` until it has connected once.
    pub platform: Option<String>,
    /// The tools of its tool executors (`sim` ops, `phone` and `adb` tools), each with the JSON
    /// Schema of its `args`, as the agent advertised them in its hello.
    pub tools: Vec<weft_protocol::ToolSpec>,
}

/// Lets the rules planner read profiles in place (no copy of the device list per request).
impl std::borrow::Borrow<DeviceInfo> for DeviceProfile {
    fn borrow(&self) -> &DeviceInfo {
        &self.info
    }
}

/// What a planner plans.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The request's text.
    pub text: &'a str,
    /// Every registered device, online or not.
    pub devices: &'a [DeviceProfile],
    /// Where an LLM planner leaves its calls to the model (the caller stores them, whether the
    /// planning succeeds or not).
    pub calls: &'a CallLog,
}

/// The future returned by [`Planner::plan`].
pub type PlanFuture<'a> = Pin<Box<dyn Future<Output = Result<Plan, Error>> + Send + 'a>>;

/// Turns a request into a plan, and may revise the running graph after results.
///
/// Object safe: the orchestrator holds an `Arc<dyn Planner>`. Callers should still
/// [`Plan::validate`] what they get back before acting on it, and apply revisions only through
/// the engine's atomic edit path.
pub trait Planner: Send + Sync + std::fmt::Debug {
    /// Short name stored with each request (`"rules"`, `"llm"`).
    fn name(&self) -> &'static str;

    /// Plans `input.text` for the registered devices.
    fn plan<'a>(&'a self, input: PlanInput<'a>) -> PlanFuture<'a>;

    /// Whether [`Planner::revise`] can ever answer anything but "finish" (the orchestrator runs
    /// revisions only for planners that say so).
    fn revises(&self) -> bool {
        false
    }

    /// After a task of a request this planner planned has ended: edit ops for the running
    /// graph, or [`Revision::Finish`]. The default never changes anything.
    fn revise<'a>(&'a self, _input: ReviseInput<'a>) -> ReviseFuture<'a> {
        Box::pin(std::future::ready(Ok(Revision::Finish {
            reason: String::new(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn rules_planner_is_usable_as_a_trait_object() {
        let planner: Arc<dyn Planner> = Arc::new(RulesPlanner::new());
        assert_eq!(planner.name(), "rules");
        let devices = [DeviceProfile {
            info: DeviceInfo {
                name: "laptop".into(),
                kind: "laptop".into(),
                capabilities: vec!["shell".into()],
                online: false,
            },
            platform: None,
            tools: Vec::new(),
        }];
        let calls = CallLog::default();
        let mut fut = planner.plan(PlanInput {
            text: r#"on laptop run "echo hi""#,
            devices: &devices,
            calls: &calls,
        });
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(res) = fut.as_mut().poll(&mut cx) else {
            panic!("the rules planner's future is ready at once");
        };
        let plan = res.expect("plannable");
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].target, Target::Device("laptop".into()));
        assert!(calls.take().is_empty());
        assert!(!planner.revises());
    }
}
