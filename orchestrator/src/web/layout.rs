//! The graph drawing's geometry, computed on the server by layout-rs (a layered,
//! Sugiyama-style layout: ranks, crossing reduction, Brandes-Köpf placement, spline edges).
//!
//! layout-rs draws through a `RenderBackend`; [`Capture`] is one that records where each task's
//! box and each edge's path went instead of writing SVG, so the page can build the SVG itself
//! (with `textContent` for every label) and recolour nodes as events arrive.
//!
//! Cost guards. layout-rs checks, as it adds each edge `a → b`, whether `a` is reachable from
//! `b` with a depth-first search that enumerates paths (exponential in graphs with many paths,
//! such as steps of parallel tasks), and by default re-checks every edge that way after each
//! insertion (`DAG::verify`). Our graphs are acyclic by construction (`Plan::validate`,
//! `Graph::apply`), so the re-check is switched off and edges are added in the order of their
//! tail's rank: when `a → b` is added no edge leaving `b` exists yet, and the search stops at
//! once. What remains grows with the layout items (tasks plus the virtual nodes long edges
//! are split into), estimated by [`plan_cost`] before anything runs: graphs over
//! [`MAX_ITEMS`] are not drawn (the page lists their tasks instead), and the crossing
//! optimizer, the slowest part, runs only below [`OPTIMIZE_BELOW`]. Measured on random graphs
//! in a debug build: about 1,000 items take 1.5 s, 100 items with the optimizer 0.2 s; the
//! rules planner's graphs take milliseconds. (With layout-rs's defaults, a chain of 100 tasks
//! with an edge skipping every other task took 2.7 s in a release build, and 120 tasks 42 s.)

use std::collections::{HashMap, VecDeque};

use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use serde::Serialize;
use weft_protocol::TaskId;
use weft_protocol::rest::{EdgeView, RequestView};

/// Graphs with more tasks than this are listed, not drawn.
pub const MAX_DRAWN_TASKS: usize = 400;

/// Graphs with more layout items (tasks plus virtual nodes) than this are listed, not drawn.
pub const MAX_ITEMS: u64 = 1_200;

/// The crossing optimizer runs when the graph has fewer layout items (tasks plus virtual
/// nodes on long edges) than this.
pub const OPTIMIZE_BELOW: u64 = 160;

/// Node boxes: height, and width bounds (the width follows the title's length).
const NODE_HEIGHT: f64 = 46.0;
const MIN_WIDTH: f64 = 120.0;
const MAX_WIDTH: f64 = 240.0;
/// Characters of a title the page shows inside a box (the full title is its tooltip).
pub const TITLE_CHARS: usize = 30;

/// Where everything goes, in SVG user units.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphLayout {
    /// The graph's version this layout is for.
    pub version: u64,
    /// `false` when the graph was too large to draw; `reason` says why.
    pub drawn: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<NodeBox>,
    pub edges: Vec<EdgePath>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeBox {
    pub id: TaskId,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EdgePath {
    pub from: TaskId,
    pub to: TaskId,
    pub kind: weft_protocol::EdgeKind,
    /// An SVG path (`M … C … S …`).
    pub d: String,
}

/// What laying out a graph would cost (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// Tasks plus the virtual nodes long edges are split into.
    pub items: u64,
    /// Each node's longest-path rank.
    pub rank: Vec<u64>,
}

/// Estimates the cost of laying out `n` nodes joined by `edges` (indices). `None` if the
/// edges make a cycle.
pub fn plan_cost(n: usize, edges: &[(usize, usize)]) -> Option<Cost> {
    let mut succ = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in edges {
        succ[a].push(b);
        indeg[b] += 1;
    }
    // Topological order (Kahn), longest-path ranks.
    let mut order = Vec::with_capacity(n);
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut rank = vec![0u64; n];
    while let Some(v) = queue.pop_front() {
        order.push(v);
        for &s in &succ[v] {
            rank[s] = rank[s].max(rank[v] + 1);
            indeg[s] -= 1;
            if indeg[s] == 0 {
                queue.push_back(s);
            }
        }
    }
    if order.len() != n {
        return None;
    }
    let items = edges.iter().fold(n as u64, |acc, &(a, b)| {
        acc.saturating_add(rank[b].saturating_sub(rank[a] + 1))
    });
    Some(Cost { items, rank })
}

/// A layout that draws nothing, saying why.
pub fn not_drawn(version: u64, reason: String) -> GraphLayout {
    GraphLayout {
        version,
        drawn: false,
        reason: Some(reason),
        width: 0.0,
        height: 0.0,
        nodes: Vec::new(),
        edges: Vec::new(),
    }
}

/// The box width for a title.
fn width_for(title: &str) -> f64 {
    let chars = title.chars().count().min(TITLE_CHARS) as f64;
    (chars * 7.0 + 24.0).clamp(MIN_WIDTH, MAX_WIDTH)
}

/// Lays out a request's graph. CPU-bound (bounded by the guards above): call it off the
/// async runtime.
pub fn layout(view: &RequestView) -> GraphLayout {
    let tasks = &view.tasks;
    if tasks.len() > MAX_DRAWN_TASKS {
        return not_drawn(
            view.version,
            format!(
                "{} tasks is more than the {MAX_DRAWN_TASKS} the view draws",
                tasks.len()
            ),
        );
    }
    let index: HashMap<&TaskId, usize> =
        tasks.iter().enumerate().map(|(i, t)| (&t.id, i)).collect();
    let mut edges: Vec<(usize, usize, &EdgeView)> = view
        .edges
        .iter()
        .filter_map(|e| Some((*index.get(&e.from)?, *index.get(&e.to)?, e)))
        .filter(|(a, b, _)| a != b)
        .collect();
    let pairs: Vec<(usize, usize)> = edges.iter().map(|(a, b, _)| (*a, *b)).collect();
    let Some(cost) = plan_cost(tasks.len(), &pairs) else {
        return not_drawn(view.version, "the graph has a cycle".into());
    };
    if cost.items > MAX_ITEMS {
        return not_drawn(
            view.version,
            format!(
                "the graph is too large to draw ({} tasks, {} edges)",
                tasks.len(),
                edges.len()
            ),
        );
    }
    // See the module docs: no edge leaves an edge's head when the edge is added.
    edges.sort_by_key(|(a, _, _)| cost.rank[*a]);
    if tasks.is_empty() {
        return GraphLayout {
            version: view.version,
            drawn: true,
            reason: None,
            width: 0.0,
            height: 0.0,
            nodes: Vec::new(),
            edges: Vec::new(),
        };
    }

    let orientation = Orientation::LeftToRight;
    let mut vg = VisualGraph::new(orientation);
    vg.dag.set_validate(false);
    let handles: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let size = Point::new(width_for(&t.title), NODE_HEIGHT);
            vg.add_node(Element::create_with_properties(
                ShapeKind::new_box(""),
                StyleAttr::simple(),
                orientation,
                size,
                format!("n{i}"),
            ))
        })
        .collect();
    for (k, (a, b, _)) in edges.iter().enumerate() {
        vg.add_edge(
            Arrow::simple_with_properties("", format!("e{k}")),
            handles[*a],
            handles[*b],
        );
    }
    let mut capture = Capture::default();
    let optimize = cost.items < OPTIMIZE_BELOW;
    vg.do_it(false, !optimize, false, &mut capture);

    let mut nodes = Vec::with_capacity(tasks.len());
    let (mut width, mut height) = (0.0f64, 0.0f64);
    for (i, task) in tasks.iter().enumerate() {
        let Some((xy, size)) = capture.rects.get(&i) else {
            continue;
        };
        width = width.max(xy.x + size.x);
        height = height.max(xy.y + size.y);
        nodes.push(NodeBox {
            id: task.id.clone(),
            x: xy.x,
            y: xy.y,
            w: size.x,
            h: size.y,
        });
    }
    let mut out_edges = Vec::with_capacity(edges.len());
    for (k, (_, _, e)) in edges.iter().enumerate() {
        let Some(path) = capture.arrows.get(&k) else {
            continue;
        };
        for (p, c) in path {
            width = width.max(p.x.max(c.x));
            height = height.max(p.y.max(c.y));
        }
        out_edges.push(EdgePath {
            from: e.from.clone(),
            to: e.to.clone(),
            kind: e.kind,
            d: svg_path(path),
        });
    }
    GraphLayout {
        version: view.version,
        drawn: true,
        reason: None,
        width: (width + 30.0).ceil(),
        height: (height + 30.0).ceil(),
        nodes,
        edges: out_edges,
    }
}

/// The SVG path of an edge as layout-rs hands it over: the first pair is the start point and
/// its control point; each further pair is a control point and a point the curve reaches.
fn svg_path(path: &[(Point, Point)]) -> String {
    use std::fmt::Write;
    let mut d = String::new();
    let [first, second, rest @ ..] = path else {
        return d;
    };
    let _ = write!(
        d,
        "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
        first.0.x, first.0.y, first.1.x, first.1.y, second.0.x, second.0.y, second.1.x, second.1.y
    );
    for p in rest {
        let _ = write!(d, " S {:.1} {:.1}, {:.1} {:.1}", p.0.x, p.0.y, p.1.x, p.1.y);
    }
    d
}

/// A layout-rs backend that keeps the geometry of tagged shapes (`n{task index}` boxes,
/// `e{edge index}` arrows) and draws nothing.
#[derive(Debug, Default)]
struct Capture {
    rects: HashMap<usize, (Point, Point)>,
    arrows: HashMap<usize, Vec<(Point, Point)>>,
}

fn tag(properties: Option<&str>, prefix: char) -> Option<usize> {
    properties?.strip_prefix(prefix)?.parse().ok()
}

impl RenderBackend for Capture {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(i) = tag(properties.as_deref(), 'n') {
            self.rects.insert(i, (xy, size));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        _head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        if let Some(k) = tag(properties.as_deref(), 'e') {
            self.arrows.insert(k, path.to_vec());
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    /// A request view with tasks `t0..tN` and the given edges (by index).
    fn view(n: usize, edges: &[(usize, usize)]) -> RequestView {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                json!({"id": format!("t{i}"), "title": format!("run `echo {i}`"),
                   "instruction": "x", "status": "pending", "attempts": [],
                   "retry": weft_protocol::RetryPolicy::default(),
                   "max_turns": 1, "turns_used": 0})
            })
            .collect();
        let edges: Vec<_> = edges
            .iter()
            .map(
                |(a, b)| json!({"from": format!("t{a}"), "to": format!("t{b}"), "kind": "success"}),
            )
            .collect();
        serde_json::from_value(json!({
            "id": "r-1", "text": "x", "status": "running", "version": 3,
            "created_at_ms": 0, "updated_at_ms": 0, "tasks": tasks, "edges": edges,
            "turns": weft_protocol::rest::TurnsView::default()
        }))
        .unwrap()
    }

    fn overlap(a: &NodeBox, b: &NodeBox) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    #[test]
    fn every_task_gets_a_box_and_every_edge_a_path_left_to_right() {
        // t0, t1 in parallel → t2 → t3
        let l = layout(&view(4, &[(0, 2), (1, 2), (2, 3)]));
        assert!(l.drawn);
        assert_eq!(l.version, 3);
        assert_eq!(l.nodes.len(), 4);
        assert_eq!(l.edges.len(), 3);
        for (i, a) in l.nodes.iter().enumerate() {
            assert!(a.w >= MIN_WIDTH && a.h == NODE_HEIGHT);
            assert!(a.x + a.w <= l.width && a.y + a.h <= l.height);
            for b in &l.nodes[i + 1..] {
                assert!(!overlap(a, b), "{a:?} overlaps {b:?}");
            }
        }
        let x = |id: &str| l.nodes.iter().find(|n| n.id.as_str() == id).unwrap().x;
        assert!(x("t0") < x("t2") && x("t1") < x("t2") && x("t2") < x("t3"));
        for e in &l.edges {
            assert!(e.d.starts_with("M ") && e.d.contains(" C "), "{}", e.d);
        }
    }

    #[test]
    fn no_tasks_and_single_tasks() {
        let l = layout(&view(0, &[]));
        assert!(l.drawn && l.nodes.is_empty());
        let l = layout(&view(1, &[]));
        assert_eq!(l.nodes.len(), 1);
    }

    #[test]
    fn cost_estimates() {
        // A chain: each edge's head starts as many prefixes as nodes after it.
        let c = plan_cost(4, &[(0, 1), (1, 2), (2, 3)]).unwrap();
        assert_eq!(c.items, 4);
        assert_eq!(c.rank, vec![0, 1, 2, 3]);
        // A long edge adds a virtual node on each rank it crosses.
        let c = plan_cost(3, &[(0, 1), (1, 2), (0, 2)]).unwrap();
        assert_eq!(c.items, 4);
        let c = plan_cost(4, &[(0, 1), (1, 2), (2, 3), (0, 3)]).unwrap();
        assert_eq!(c.items, 6);
        assert!(plan_cost(2, &[(0, 1), (1, 0)]).is_none());
    }

    #[test]
    fn graphs_too_large_to_draw_are_refused_quickly() {
        // 300 tasks where every task waits for the first: 299 edges, long ones included.
        let mut edges: Vec<_> = (1..300).map(|i| (i - 1, i)).collect();
        edges.extend((2..300).map(|i| (0, i)));
        let started = Instant::now();
        let l = layout(&view(300, &edges));
        assert!(!l.drawn && l.reason.is_some(), "{l:?}");
        assert!(started.elapsed() < Duration::from_millis(100));
        let l = layout(&view(MAX_DRAWN_TASKS + 1, &[]));
        assert!(!l.drawn);
    }

    #[test]
    fn many_paths_are_not_searched() {
        // A chain with an edge skipping one task every other step has Fibonacci-many paths;
        // added in an arbitrary order, layout-rs would search them for hours.
        let mut edges: Vec<_> = (2..120).step_by(2).map(|i| (i - 2, i)).collect();
        edges.extend((1..120).rev().map(|i| (i - 1, i)));
        let started = Instant::now();
        let l = layout(&view(120, &edges));
        assert!(l.drawn, "{:?}", l.reason);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn large_graphs_within_the_guards_are_drawn_in_reasonable_time() {
        // Steps of 8 parallel tasks, each step waiting for the whole previous step (what the
        // rules planner builds for `a and b … then c and d …`), 10 steps.
        let w = 8;
        let mut edges = Vec::new();
        for step in 1..10 {
            for a in 0..w {
                for b in 0..w {
                    edges.push(((step - 1) * w + a, step * w + b));
                }
            }
        }
        let started = Instant::now();
        let l = layout(&view(80, &edges));
        let took = started.elapsed();
        assert!(l.drawn, "{:?}", l.reason);
        assert_eq!(l.edges.len(), edges.len());
        // Generous: debug build, shared CI machine.
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }
}
