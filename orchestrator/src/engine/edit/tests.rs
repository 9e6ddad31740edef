//! Edit batches, op by op: what applies, what is refused and with which code.

use super::*;
use serde_json::json;
use weft_protocol::TaskStatus;

fn ctx() -> EditCtx {
    let mut devices = HashMap::new();
    devices.insert(
        DeviceName::from("laptop"),
        vec!["shell".to_owned(), "fs".to_owned()],
    );
    EditCtx {
        devices,
        check_targets: true,
        defaults: crate::engine::graph::tests::defaults(),
        now_ms: 0,
    }
}

fn ops(v: serde_json::Value) -> Vec<EditOp> {
    serde_json::from_value(v).unwrap()
}

fn two_in_a_row() -> Graph {
    let rows = vec![];
    let mut g = Graph::from_records(rows, &[], 0).unwrap();
    let applied = g
        .apply(
            &ops(json!([
                {"op": "add_task", "task": {"id": "t1", "instruction": "a", "action": {"kind": "shell", "command": "echo a"}}},
                {"op": "add_task", "task": {"id": "t2", "instruction": "b", "action": {"kind": "shell", "command": "echo b"}}},
                {"op": "add_edge", "from": "t1", "to": "t2"},
            ])),
            &ctx(),
        )
        .unwrap();
    g = applied.graph;
    g
}

fn statuses(g: &Graph) -> Vec<(String, &'static str)> {
    g.tasks()
        .map(|t| (t.id.to_string(), t.status().as_str()))
        .collect()
}

/// Applies `batch` and returns the error code, or "ok".
fn check(g: &Graph, batch: serde_json::Value) -> String {
    match g.apply(&ops(batch), &ctx()) {
        Ok(_) => "ok".into(),
        Err(e) => format!("{} @{:?}", e.code, e.op),
    }
}

#[test]
fn new_tasks_settle() {
    let g = two_in_a_row();
    assert_eq!(
        statuses(&g),
        [("t1".into(), "ready"), ("t2".into(), "pending")]
    );
}

#[test]
fn invalid_ops_are_named_and_nothing_applies() {
    let g = two_in_a_row();
    let before = format!("{:?}", statuses(&g));
    let cases = [
        (
            json!([{"op": "add_edge", "from": "t2", "to": "t1"}]),
            "cycle @Some(0)",
        ),
        (
            json!([{"op": "add_edge", "from": "t1", "to": "t1"}]),
            "self_edge @Some(0)",
        ),
        (
            json!([{"op": "add_edge", "from": "t1", "to": "t2"}]),
            "edge_exists @Some(0)",
        ),
        (
            json!([{"op": "remove_edge", "from": "t2", "to": "t1"}]),
            "unknown_edge @Some(0)",
        ),
        (
            json!([{"op": "remove_task", "task_id": "t9"}]),
            "unknown_task @Some(0)",
        ),
        (
            json!([{"op": "add_task", "task": {"id": "t1", "instruction": "x"}}]),
            "duplicate_task @Some(0)",
        ),
        (
            json!([{"op": "add_task", "task": {"id": "../x", "instruction": "x"}}]),
            "invalid_task_id @Some(0)",
        ),
        (
            json!([{"op": "add_task", "task": {"id": "t3", "instruction": "x", "device": "toaster"}}]),
            "unknown_device @Some(0)",
        ),
        (
            json!([{"op": "add_task", "task": {"id": "t3", "instruction": "x", "action": {"kind": "http_get", "url": "http://x"}}}]),
            "unknown_capability @Some(0)",
        ),
        (
            json!([{"op": "add_edge", "from": "t1", "to": "t2", "kind": "condition"}]),
            "invalid_condition @Some(0)",
        ),
        // The last op is the bad one: the first two must not stick.
        (
            json!([
                {"op": "add_task", "task": {"id": "t3", "instruction": "c", "action": {"kind": "shell", "command": "echo c"}}},
                {"op": "add_edge", "from": "t2", "to": "t3"},
                {"op": "add_edge", "from": "t3", "to": "t1"},
            ]),
            "cycle @Some(2)",
        ),
        (
            json!([
                {"op": "add_task", "task": {"id": "t3", "instruction": "c", "action": {"kind": "write_file", "path": "x", "content": "{{t2.output}}"}}},
            ]),
            "bad_reference @None",
        ),
        (json!([]), "empty_edit @None"),
    ];
    for (batch, want) in cases {
        assert_eq!(check(&g, batch.clone()), want, "{batch}");
        assert_eq!(format!("{:?}", statuses(&g)), before);
    }
}

#[test]
fn a_missing_capability_names_who_lacks_it() {
    let g = two_in_a_row();
    let refusal = |device: Option<&str>| {
        let mut task = json!({"id": "t3", "instruction": "fetch",
            "action": {"kind": "http_get", "url": "http://x"}});
        if let Some(d) = device {
            task["device"] = json!(d);
        }
        let e = g
            .apply(&ops(json!([{"op": "add_task", "task": task}])), &ctx())
            .unwrap_err();
        (e.code, e.message)
    };
    assert_eq!(
        refusal(Some("laptop")),
        (
            "unknown_capability",
            "op 0: device `laptop` does not have the capability `http`".to_owned()
        )
    );
    assert_eq!(
        refusal(None),
        (
            "unknown_capability",
            "op 0: no registered device has the capability `http`".to_owned()
        )
    );
}

#[test]
fn started_tasks_are_frozen() {
    let mut g = two_in_a_row();
    let t1 = TaskId::from("t1");
    g.transition(&t1, TaskStatus::Dispatched).unwrap();
    for (batch, want) in [
        (
            json!([{"op": "remove_task", "task_id": "t1"}]),
            "task_not_editable @Some(0)",
        ),
        (
            json!([{"op": "update_task", "task_id": "t1", "title": "x"}]),
            "task_not_editable @Some(0)",
        ),
        (
            json!([
                {"op": "add_task", "task": {"id": "t0", "instruction": "x", "action": {"kind": "shell", "command": "true"}}},
                {"op": "add_edge", "from": "t0", "to": "t1"},
            ]),
            "edge_into_started_task @Some(1)",
        ),
        (
            json!([{"op": "remove_edge", "from": "t1", "to": "t2"}]),
            "ok",
        ),
    ] {
        assert_eq!(check(&g, batch.clone()), want, "{batch}");
    }
}

#[test]
fn removing_an_edge_can_make_a_task_ready_and_adding_one_makes_it_wait() {
    let g = two_in_a_row();
    let a = g
        .apply(
            &ops(json!([{"op": "remove_edge", "from": "t1", "to": "t2"}])),
            &ctx(),
        )
        .unwrap();
    assert_eq!(a.changed, vec![TaskId::from("t2")]);
    assert_eq!(
        a.graph.task(&"t2".into()).unwrap().status(),
        TaskStatus::Ready
    );
    let b = a
        .graph
        .apply(
            &ops(json!([{"op": "add_edge", "from": "t1", "to": "t2", "kind": "completion"}])),
            &ctx(),
        )
        .unwrap();
    assert_eq!(
        b.graph.task(&"t2".into()).unwrap().status(),
        TaskStatus::Pending
    );
}

#[test]
fn references_must_point_upstream_even_transitively() {
    let g = two_in_a_row();
    let spec = |content: &str| {
        json!({"op": "add_task", "task": {"id": "t3", "instruction": "w",
            "action": {"kind": "write_file", "path": "out.txt", "content": content}}})
    };
    // t1 is upstream of t3 through t2.
    assert_eq!(
        check(
            &g,
            json!([spec("{{t1.output.stdout}}"), {"op": "add_edge", "from": "t2", "to": "t3"}])
        ),
        "ok"
    );
    assert_eq!(
        check(&g, json!([spec("{{t1.output}}")])),
        "bad_reference @None"
    );
}
