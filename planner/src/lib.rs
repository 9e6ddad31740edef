//! Planners for weft: turn a request's text into a task graph ([`Plan`]).
//!
//! Also the pure graph logic the engine calls at run time: [`condition`] (checking and evaluating
//! the predicates of `condition` edges) and [`refs`] (`{{t1.output}}` references from one task
//! to an upstream task's output). `docs/graph.md` describes both.
//!
//! Architecture invariant: this crate is pure. A planner does no I/O of its own and holds no state
//! between calls; it knows devices only through the [`DeviceInfo`] list it is given. (A future LLM
//! planner will talk HTTP, which is why [`Planner::plan`] returns a future.)
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

pub mod condition;
mod error;
mod plan;
pub mod refs;
mod rules;

use std::future::Future;
use std::pin::Pin;

pub use error::Error;
pub use plan::{Limits, Plan, PlannedEdge, PlannedTask, Target};
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
    /// Whether it is connected right now. Offline devices are still valid targets: the engine
    /// queues their tasks.
    pub online: bool,
}

/// The future returned by [`Planner::plan`].
pub type PlanFuture<'a> = Pin<Box<dyn Future<Output = Result<Plan, Error>> + Send + 'a>>;

/// Turns a request into a plan.
///
/// Implemented by the rules planner now and by an LLM planner later (which will do HTTP I/O,
/// hence the future). Object safe: the orchestrator holds an `Arc<dyn Planner>`. Callers should
/// still [`Plan::validate`] what they get back before acting on it.
pub trait Planner: Send + Sync + std::fmt::Debug {
    /// Short name stored with each request (`"rules"`, later `"llm"`).
    fn name(&self) -> &'static str;

    /// Plans `text` for the registered `devices`.
    fn plan<'a>(&'a self, text: &'a str, devices: &'a [DeviceInfo]) -> PlanFuture<'a>;
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
        let devices = [DeviceInfo {
            name: "laptop".into(),
            kind: "laptop".into(),
            capabilities: vec!["shell".into()],
            online: false,
        }];
        let mut fut = planner.plan(r#"on laptop run "echo hi""#, &devices);
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(res) = fut.as_mut().poll(&mut cx) else {
            panic!("the rules planner's future is ready at once");
        };
        let plan = res.expect("plannable");
        assert_eq!(plan.tasks.len(), 1);
        assert_eq!(plan.tasks[0].target, Target::Device("laptop".into()));
    }
}
