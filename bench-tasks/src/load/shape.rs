//! Graph shapes, written as rules-planner text.
//!
//! The rules planner builds layered graphs: `then` separates steps (every task of a step waits
//! for every task of the step before) and `,`/`and` separate parallel tasks within a step. Every
//! task here is `run "true"` with no `on DEVICE`, so it may go to any device with the `shell`
//! capability. The rules planner accepts at most 256 tasks and 16 KiB of text.
//!
//! Every shape can also be submitted as a graph (`POST /v1/requests` with `graph`, see
//! [`Shape::graph_body`]): that path has no 256-task limit, and it is the only way to submit the
//! random DAG ([`Shape::Dag`]), which the grammar cannot express.

use std::fmt;
use std::str::FromStr;

/// One no-op clause.
pub const NOOP: &str = r#"run "true""#;

/// The shapes of request the load generator submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One task.
    Single,
    /// `K` tasks, each depending on the one before.
    Chain(usize),
    /// `K` independent tasks.
    Fanout(usize),
    /// One task, then `K` in parallel, then one task that waits for all of them (`K + 2` tasks).
    Diamond(usize),
    /// `K` tasks; each task after the first depends on one or two random earlier tasks
    /// (deterministic per request index). Graph submission only.
    Dag(usize),
    /// Cycles through single, chain:3, fanout:3 and diamond:2 (used by `--tiny`).
    Mix,
}

const MIX: [Shape; 4] = [
    Shape::Single,
    Shape::Chain(3),
    Shape::Fanout(3),
    Shape::Diamond(2),
];

impl Shape {
    /// The shape of the `i`-th request (only [`Shape::Mix`] varies).
    pub fn nth(self, i: usize) -> Shape {
        match self {
            Shape::Mix => MIX[i % MIX.len()],
            s => s,
        }
    }

    /// Whether the rules grammar can express this shape (all but [`Shape::Dag`]).
    pub fn has_text(self) -> bool {
        !matches!(self, Shape::Dag(_))
    }

    /// Rules-planner text for the `i`-th request of this shape. A [`Shape::Dag`] has no text
    /// form; its text is only a description.
    pub fn text(self, i: usize) -> String {
        match self.nth(i) {
            Shape::Single => NOOP.to_owned(),
            Shape::Chain(k) => vec![NOOP; k].join(" then "),
            Shape::Fanout(k) => vec![NOOP; k].join(", "),
            Shape::Diamond(k) => format!("{NOOP} then {} then {NOOP}", vec![NOOP; k].join(" and ")),
            Shape::Dag(k) => format!("random DAG of {k} no-op tasks"),
            Shape::Mix => unreachable!("nth never returns Mix"),
        }
    }

    /// The `POST /v1/requests` body submitting the `i`-th request as rules text.
    pub fn text_body(self, i: usize) -> serde_json::Value {
        serde_json::json!({ "text": self.text(i) })
    }

    /// The `POST /v1/requests` body submitting the `i`-th request as a whole graph: tasks
    /// `t1..tN` (`shell` `true`, any capable device) and `success` edges.
    pub fn graph_body(self, i: usize) -> serde_json::Value {
        let tasks: Vec<serde_json::Value> = (1..=self.tasks(i))
            .map(|n| {
                serde_json::json!({
                    "id": format!("t{n}"),
                    "instruction": NOOP,
                    "action": {"kind": "shell", "command": "true"},
                })
            })
            .collect();
        let edges: Vec<serde_json::Value> = self
            .edge_list(i)
            .into_iter()
            .map(|(a, b)| {
                serde_json::json!({"from": format!("t{}", a + 1), "to": format!("t{}", b + 1), "kind": "success"})
            })
            .collect();
        serde_json::json!({
            "text": format!("weft-load {}", self.nth(i)),
            "graph": {"tasks": tasks, "edges": edges},
        })
    }

    /// The edges of the `i`-th request, as `(from, to)` task indices from 0, in the order the
    /// rules planner would number the tasks.
    pub fn edge_list(self, i: usize) -> Vec<(usize, usize)> {
        match self.nth(i) {
            Shape::Single | Shape::Fanout(_) => Vec::new(),
            Shape::Chain(k) => (1..k).map(|t| (t - 1, t)).collect(),
            Shape::Diamond(k) => (1..=k)
                .map(|t| (0, t))
                .chain((1..=k).map(|t| (t, k + 1)))
                .collect(),
            Shape::Dag(k) => {
                let mut rng = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut edges = Vec::new();
                for t in 1..k {
                    let first = (next() % t as u64) as usize;
                    edges.push((first, t));
                    if t > 1 && next() % 2 == 0 {
                        let second = (next() % t as u64) as usize;
                        if second != first {
                            edges.push((second, t));
                        }
                    }
                }
                edges
            }
            Shape::Mix => unreachable!("nth never returns Mix"),
        }
    }

    /// How many tasks the `i`-th request has.
    pub fn tasks(self, i: usize) -> usize {
        match self.nth(i) {
            Shape::Single => 1,
            Shape::Chain(k) | Shape::Fanout(k) | Shape::Dag(k) => k,
            Shape::Diamond(k) => k + 2,
            Shape::Mix => unreachable!("nth never returns Mix"),
        }
    }

    /// How many edges the `i`-th request has.
    pub fn edges(self, i: usize) -> usize {
        self.edge_list(i).len()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Single => f.write_str("single"),
            Shape::Chain(k) => write!(f, "chain:{k}"),
            Shape::Fanout(k) => write!(f, "fanout:{k}"),
            Shape::Diamond(k) => write!(f, "diamond:{k}"),
            Shape::Dag(k) => write!(f, "dag:{k}"),
            Shape::Mix => f.write_str("mix"),
        }
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, k) = match s.split_once(':') {
            Some((n, k)) => {
                let k: usize = k
                    .parse()
                    .map_err(|_| format!("`{k}` in `{s}` is not a number"))?;
                if k == 0 {
                    return Err(format!("`{s}`: K must be at least 1"));
                }
                (n, Some(k))
            }
            None => (s, None),
        };
        match (name, k) {
            ("single", None) => Ok(Shape::Single),
            ("mix", None) => Ok(Shape::Mix),
            ("chain", Some(k)) => Ok(Shape::Chain(k)),
            ("fanout", Some(k)) => Ok(Shape::Fanout(k)),
            ("diamond", k) => Ok(Shape::Diamond(k.unwrap_or(2))),
            ("dag", Some(k)) => Ok(Shape::Dag(k)),
            _ => Err(format!(
                "unknown shape `{s}`: use single, chain:K, fanout:K, diamond[:K], dag:K or mix"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let t = |s: &str, i| s.parse::<Shape>().unwrap().text(i);
        assert_eq!(t("single", 0), r#"run "true""#);
        assert_eq!(t("chain:2", 0), r#"run "true" then run "true""#);
        assert_eq!(t("fanout:3", 0), r#"run "true", run "true", run "true""#);
        assert_eq!(
            t("diamond", 0),
            r#"run "true" then run "true" and run "true" then run "true""#
        );
        assert_eq!(t("mix", 1), t("chain:3", 0));
        assert_eq!("diamond:2".parse::<Shape>().unwrap().tasks(0), 4);
    }

    #[test]
    fn graphs() {
        let d: Shape = "diamond:2".parse().unwrap();
        assert_eq!(d.edge_list(0), vec![(0, 1), (0, 2), (1, 3), (2, 3)]);
        let body = d.graph_body(0);
        assert_eq!(body["graph"]["tasks"].as_array().unwrap().len(), 4);
        assert_eq!(
            body["graph"]["edges"][3],
            serde_json::json!({"from": "t3", "to": "t4", "kind": "success"})
        );
        // A random DAG: every edge points forward, every task but the first has a parent, and the
        // same request index gives the same graph.
        let dag = Shape::Dag(50);
        let edges = dag.edge_list(7);
        assert!(edges.iter().all(|&(a, b)| a < b));
        assert!((1..50).all(|t| edges.iter().any(|&(_, b)| b == t)));
        assert_eq!(edges, dag.edge_list(7));
        assert_ne!(edges, dag.edge_list(8));
        assert!(!dag.has_text() && Shape::Chain(3).has_text());
    }

    #[test]
    fn parse_errors() {
        for bad in ["chain", "chain:0", "chain:x", "ring:3", "single:2"] {
            assert!(bad.parse::<Shape>().is_err(), "{bad}");
        }
        for s in ["single", "chain:7", "fanout:2", "diamond:3", "dag:9", "mix"] {
            assert_eq!(s.parse::<Shape>().unwrap().to_string(), s);
        }
    }
}
