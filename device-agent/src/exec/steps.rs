//! `steps`: a test executor that works in turns, the way an LLM agent loop does. It takes
//! `steps` turns of `step_ms` each, reports each turn, and when it reaches its turn limit asks
//! the orchestrator for the turns it still needs; refused, it ends with `budget_exhausted`.
//! Offered only when the agent runs with `--test-executors`.

use std::time::Duration;

use serde_json::json;
use tokio::sync::oneshot;

use super::{Ctx, ExecEvent, Outcome};

/// How long to wait for an answer to a request for more turns.
const EXTEND_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(steps: u32, step_ms: u64, ctx: &Ctx<'_>) -> Outcome {
    let mut limit = ctx.max_turns;
    for turn in 1..=steps {
        if turn > limit {
            let want = steps - limit;
            let (reply, answer) = oneshot::channel();
            let _ = ctx.progress.send(ExecEvent::Extend { turns: want, reply });
            let granted = tokio::time::timeout(EXTEND_TIMEOUT, answer)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            if granted == 0 {
                return Outcome::failed_with(
                    "budget_exhausted",
                    format!(
                        "needed {steps} turns and had {limit}; the request's turn budget gave no more"
                    ),
                    weft_protocol::TaskOutput {
                        summary: format!("stopped after {limit} of {steps} steps"),
                        data: json!({"steps": steps, "turns_used": limit}),
                    },
                );
            }
            limit += granted;
        }
        tokio::time::sleep(Duration::from_millis(step_ms)).await;
        let _ = ctx.progress.send(ExecEvent::Turn {
            used: turn,
            note: format!("step {turn} of {steps}"),
        });
    }
    Outcome::succeeded(
        format!("{steps} steps"),
        json!({"steps": steps, "turns_used": steps}),
    )
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use weft_protocol::wire::ResultStatus;

    async fn with_grants(steps: u32, max: u32, grants: Vec<u32>) -> (Outcome, Vec<u32>) {
        let dir = tempfile::tempdir().unwrap();
        let env = crate::exec::TestEnv::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut ctx = env.ctx(dir.path());
        ctx.progress = tx;
        ctx.max_turns = max;
        let answer = async move {
            let mut grants = grants.into_iter();
            let mut turns = Vec::new();
            while let Some(ev) = rx.recv().await {
                match ev {
                    ExecEvent::Turn { used, .. } => turns.push(used),
                    ExecEvent::Extend { reply, .. } => {
                        let _ = reply.send(grants.next().unwrap_or(0));
                    }
                    ExecEvent::Note(_) => {}
                }
            }
            turns
        };
        let (outcome, turns) = tokio::join!(
            async {
                let o = run(steps, 0, &ctx).await;
                drop(ctx);
                o
            },
            answer
        );
        (outcome, turns)
    }

    #[tokio::test]
    async fn asks_for_more_turns_and_stops_when_refused() {
        let (o, turns) = with_grants(5, 3, vec![2]).await;
        assert_eq!(o.status, ResultStatus::Succeeded);
        assert_eq!(turns, [1, 2, 3, 4, 5]);

        let (o, turns) = with_grants(5, 3, vec![1, 0]).await;
        assert_eq!(o.status, ResultStatus::Failed);
        assert_eq!(o.error.unwrap().code, "budget_exhausted");
        assert_eq!(turns, [1, 2, 3, 4]);
        assert_eq!(o.output.data["turns_used"], 4);
    }
}
