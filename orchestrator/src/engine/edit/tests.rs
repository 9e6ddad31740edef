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

/// `update_task` replaces a waiting task's declared files, checked as `add_task` checks them:
/// outputs valid names or globs, inputs references to tasks upstream of it.
#[test]
fn an_update_replaces_a_tasks_files_checked_as_at_submit() {
    let g = two_in_a_row();
    let files = |g: &Graph, id: &str| g.task(&id.into()).unwrap().files.clone();
    let a = g
        .apply(
            &ops(json!([
                {"op": "update_task", "task_id": "t1", "outputs": {"files": ["photo.jpg", "build/*.apk"]}},
                {"op": "update_task", "task_id": "t2", "inputs": {"files": ["{{t1.files}}"]}},
            ])),
            &ctx(),
        )
        .unwrap();
    assert_eq!(files(&a.graph, "t1").outputs, ["photo.jpg", "build/*.apk"]);
    assert!(files(&a.graph, "t1").inputs.is_empty());
    assert_eq!(files(&a.graph, "t2").inputs, ["{{t1.files}}"]);
    assert_eq!(
        a.graph.task(&"t1".into()).unwrap().spec().outputs,
        Some(weft_protocol::FilesSpec {
            files: vec!["photo.jpg".into(), "build/*.apk".into()]
        }),
        "the request view shows them"
    );
    // Absent, they stay; an empty list clears them.
    let b = a
        .graph
        .apply(
            &ops(json!([
                {"op": "update_task", "task_id": "t1", "title": "renamed"},
                {"op": "update_task", "task_id": "t2", "inputs": {"files": []}},
            ])),
            &ctx(),
        )
        .unwrap();
    assert_eq!(files(&b.graph, "t1").outputs, ["photo.jpg", "build/*.apk"]);
    assert!(files(&b.graph, "t2").is_empty());

    let too_many: Vec<String> = (0..=weft_protocol::files::MAX_FILES_PER_SPEC)
        .map(|_| "{{t1.files}}".to_owned())
        .collect();
    for (batch, want) in [
        (
            json!([{"op": "update_task", "task_id": "t1", "outputs": {"files": ["../up.txt"]}}]),
            "invalid_task @Some(0)",
        ),
        (
            json!([{"op": "update_task", "task_id": "t1", "outputs": {"files": ["*/app.apk"]}}]),
            "invalid_task @Some(0)",
        ),
        (
            json!([{"op": "update_task", "task_id": "t2", "inputs": {"files": too_many}}]),
            "invalid_task @Some(0)",
        ),
        // t2 is downstream of t1, not upstream.
        (
            json!([{"op": "update_task", "task_id": "t1", "inputs": {"files": ["{{t2.files}}"]}}]),
            "bad_reference @None",
        ),
        (
            json!([{"op": "update_task", "task_id": "t2", "inputs": {"files": ["photo.jpg"]}}]),
            "bad_reference @None",
        ),
    ] {
        assert_eq!(check(&g, batch.clone()), want, "{batch}");
    }
    // A task that has started keeps its files.
    let mut started = g.clone();
    started
        .transition(&"t1".into(), TaskStatus::Dispatched)
        .unwrap();
    assert_eq!(
        check(
            &started,
            json!([{"op": "update_task", "task_id": "t1", "outputs": {"files": ["a.txt"]}}])
        ),
        "task_not_editable @Some(0)"
    );
}
