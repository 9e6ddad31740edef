//! Table tests for the rules planner: each case is a request and the plan (or error) it gives,
//! rendered compactly, e.g. `t1[laptop] shell "echo a"; t2[*] read a.txt | edges: t1->t2`.

use super::*;
use crate::DeviceName;
use crate::error::GRAMMAR_HINT;

fn device(name: &str, kind: &str) -> DeviceInfo {
    DeviceInfo {
        name: DeviceName::new(name),
        kind: kind.to_owned(),
        capabilities: vec!["shell".into(), "http".into(), "fs".into()],
        online: true,
    }
}

/// Devices named `laptop`, `server` and `phone`, each of the same kind.
fn three_devices() -> Vec<DeviceInfo> {
    vec![
        device("laptop", "laptop"),
        device("server", "server"),
        device("phone", "phone"),
    ]
}

/// Renders a target: `[name]` for a device, `[kind:k]` for a kind, `[*]` for any device.
fn render_target(target: &Target) -> String {
    match target {
        Target::Device(d) => format!("[{d}]"),
        Target::Kind(k) => format!("[kind:{k}]"),
        Target::Any => "[*]".to_owned(),
    }
}

fn render_action(action: Option<&Action>) -> String {
    match action {
        Some(Action::Shell { command }) => format!("shell {command:?}"),
        Some(Action::HttpGet { url }) => format!("fetch {url}"),
        Some(Action::WriteFile { path, content }) => format!("write {path} {content:?}"),
        Some(Action::ReadFile { path }) => format!("read {path}"),
        None => "none".to_owned(),
    }
}

/// Renders a plan as `TASK; TASK | edges: FROM->TO, …` (`-` for no edges).
fn render_plan(plan: &Plan) -> String {
    let tasks: Vec<String> = plan
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{}{} {}",
                t.id,
                render_target(&t.target),
                render_action(t.action.as_ref())
            )
        })
        .collect();
    let edges: Vec<String> = plan
        .edges
        .iter()
        .map(|e| {
            assert_eq!(e.kind, EdgeKind::Success);
            format!("{}->{}", e.from, e.to)
        })
        .collect();
    let edges = if edges.is_empty() {
        "-".to_owned()
    } else {
        edges.join(", ")
    };
    format!("{} | edges: {edges}", tasks.join("; "))
}

/// Renders an outcome: the plan, or `CODE: MESSAGE` (for `unplannable`, the two lists instead of
/// the long message).
fn render(result: Result<Plan, Error>) -> String {
    match result {
        Ok(plan) => render_plan(&plan),
        Err(Error::Unplannable {
            understood,
            not_understood,
        }) => format!("unplannable: understood {understood:?}; not {not_understood:?}"),
        Err(e) => format!("{}: {e}", e.code()),
    }
}

fn check_with(devices: &[DeviceInfo], input: &str, expect: &str) {
    let got = render(RulesPlanner::new().plan_sync(input, devices));
    assert_eq!(got, expect, "request {input:?}");
}

/// Plans `input` for [`three_devices`] and compares the rendering with `expect`.
fn check(input: &str, expect: &str) {
    check_with(&three_devices(), input, expect);
}

#[test]
fn parallel_tasks() {
    check(
        r#"on laptop run "echo alpha" and on server run "echo beta""#,
        r#"t1[laptop] shell "echo alpha"; t2[server] shell "echo beta" | edges: -"#,
    );
}

#[test]
fn sequential_tasks() {
    check(
        r#"on laptop run "echo one" then on server run "echo two""#,
        r#"t1[laptop] shell "echo one"; t2[server] shell "echo two" | edges: t1->t2"#,
    );
}

#[test]
fn fan_in() {
    check(
        r#"on server run "echo x", on laptop run "echo y" and on phone run "echo z" then on laptop run "echo done""#,
        r#"t1[server] shell "echo x"; t2[laptop] shell "echo y"; t3[phone] shell "echo z"; t4[laptop] shell "echo done" | edges: t1->t4, t2->t4, t3->t4"#,
    );
}

#[test]
fn files_and_http() {
    check(
        r#"on laptop write "hello file" to notes/a.txt and on phone fetch http://127.0.0.1:7600/healthz then on laptop read notes/a.txt"#,
        r#"t1[laptop] write notes/a.txt "hello file"; t2[phone] fetch http://127.0.0.1:7600/healthz; t3[laptop] read notes/a.txt | edges: t1->t3, t2->t3"#,
    );
}

#[test]
fn readme_examples() {
    check(
        r#"on phone fetch https://example.com then on laptop write "fetched" to log.txt"#,
        r#"t1[phone] fetch https://example.com; t2[laptop] write log.txt "fetched" | edges: t1->t2"#,
    );
}

#[test]
fn three_steps() {
    check(
        r#"on server run "uname -sr", on laptop run "echo hello from the laptop" and on phone fetch http://127.0.0.1:1234/healthz then on laptop write "three devices answered" to report.txt then on laptop read report.txt"#,
        r#"t1[server] shell "uname -sr"; t2[laptop] shell "echo hello from the laptop"; t3[phone] fetch http://127.0.0.1:1234/healthz; t4[laptop] write report.txt "three devices answered"; t5[laptop] read report.txt | edges: t1->t4, t2->t4, t3->t4, t4->t5"#,
    );
}

#[test]
fn full_bipartite_edges_between_steps() {
    check(
        r#"run "a" and run "b" then run "c", run "d""#,
        r#"t1[*] shell "a"; t2[*] shell "b"; t3[*] shell "c"; t4[*] shell "d" | edges: t1->t3, t1->t4, t2->t3, t2->t4"#,
    );
}

#[test]
fn separators_inside_quotes_do_not_count() {
    check(
        r#"run "echo a, b and c then d""#,
        r#"t1[*] shell "echo a, b and c then d" | edges: -"#,
    );
    check(
        r#"write 'x, and then y' to "a, b.txt""#,
        r#"t1[*] write a, b.txt "x, and then y" | edges: -"#,
    );
}

#[test]
fn oxford_comma_and_and_then() {
    check(
        r#"run "a", run "b", and run "c", then read x"#,
        r#"t1[*] shell "a"; t2[*] shell "b"; t3[*] shell "c"; t4[*] read x | edges: t1->t4, t2->t4, t3->t4"#,
    );
    check(
        r#"run "a" and then run "b""#,
        r#"t1[*] shell "a"; t2[*] shell "b" | edges: t1->t2"#,
    );
}

#[test]
fn comma_attached_to_a_bare_word_ends_it() {
    check(
        "fetch http://x/a, on laptop read b.txt",
        "t1[*] fetch http://x/a; t2[laptop] read b.txt | edges: -",
    );
}

#[test]
fn device_placement_and_articles() {
    check(
        r#"run "uname" on server"#,
        r#"t1[server] shell "uname" | edges: -"#,
    );
    check(
        r#"on my laptop run "x""#,
        r#"t1[laptop] shell "x" | edges: -"#,
    );
    check(
        r#"on the Server run "x""#,
        r#"t1[server] shell "x" | edges: -"#,
    );
    check(r#"ON PHONE RUN "x""#, r#"t1[phone] shell "x" | edges: -"#);
}

#[test]
fn device_names_before_kinds() {
    let mbp = [device("mbp", "laptop"), device("pi", "edge")];
    check_with(
        &mbp,
        r#"on laptop run "x""#,
        r#"t1[kind:laptop] shell "x" | edges: -"#,
    );
    check_with(&mbp, r#"on MBP run "x""#, r#"t1[mbp] shell "x" | edges: -"#);
    check_with(
        &mbp,
        r#"on Edge run "x""#,
        r#"t1[kind:edge] shell "x" | edges: -"#,
    );
    check_with(
        &mbp,
        r#"on tablet run "x""#,
        r#"t1[kind:tablet] shell "x" | edges: -"#,
    );
    let custom = [device("r2", "robot")];
    check_with(
        &custom,
        r#"on robot run "x""#,
        r#"t1[kind:robot] shell "x" | edges: -"#,
    );
}

#[test]
fn offline_devices_are_still_targets() {
    let mut laptop = device("laptop", "laptop");
    laptop.online = false;
    check_with(
        &[laptop],
        r#"on laptop run "x""#,
        r#"t1[laptop] shell "x" | edges: -"#,
    );
}

#[test]
fn unknown_devices() {
    check(
        r#"on toaster run "echo hi""#,
        "unknown_device: no registered device or device kind is called `toaster` \
         (registered: laptop, phone, server)",
    );
    check_with(
        &[],
        r#"run "x" on Fridge"#,
        "unknown_device: no registered device or device kind is called `Fridge` \
         (no devices are registered)",
    );
}

#[test]
fn not_understood() {
    check(
        r#"on laptop run "echo a" then make me a sandwich"#,
        r#"unplannable: understood ["on laptop run \"echo a\""]; not ["\"make me a sandwich\""]"#,
    );
    check(
        r#"run "unterminated"#,
        r#"unplannable: understood []; not ["\"run \"unterminated\" (a quote is opened but never closed)"]"#,
    );
    check(
        "fetch ftp://x",
        r#"unplannable: understood []; not ["\"fetch ftp://x\" (`ftp://x` is not a URL starting with http:// or https://)"]"#,
    );
    check(
        r#"run "x" and"#,
        r#"unplannable: understood ["run \"x\""]; not ["nothing after \"and\" at the end"]"#,
    );
    check(
        r#"and run "x""#,
        r#"unplannable: understood ["run \"x\""]; not ["nothing before \"and\" at the start"]"#,
    );
    check(
        r#"run "x" and and run "y""#,
        r#"unplannable: understood ["run \"x\"", "run \"y\""]; not ["nothing between \"and\" and \"and\""]"#,
    );
    check(
        "and",
        r#"unplannable: understood []; not ["nothing before \"and\" at the start", "nothing after \"and\" at the end"]"#,
    );
    check(
        r#"hello, run uname then on toaster read a"#,
        r#"unplannable: understood ["on toaster read a"]; not ["\"hello\"", "\"run uname\" (the command must be in quotes, e.g. run \"echo hi\")"]"#,
    );
}

#[test]
fn unplannable_message_says_what_was_and_was_not_understood() {
    let err = RulesPlanner::new()
        .plan_sync(
            r#"on laptop run "echo a" then make me a sandwich"#,
            &three_devices(),
        )
        .expect_err("a sandwich is not an action");
    assert_eq!(err.code(), "unplannable");
    assert_eq!(
        err.to_string(),
        format!(
            "could not plan this request (understood: on laptop run \"echo a\"; \
             did not understand: \"make me a sandwich\"). {GRAMMAR_HINT}"
        )
    );
    assert!(err.to_string().contains("LLM planner"));
}

#[test]
fn empty_requests() {
    for blank in ["", "   ", "\n\t "] {
        check(blank, "empty_request: the request is empty");
    }
}

#[test]
fn size_limits() {
    let many = vec![r#"run "x""#; 257].join(" and ");
    check(
        &many,
        "plan_too_large: the plan has 257 tasks; the limit is 256",
    );
    let most = vec![r#"run "x""#; 256].join(" and ");
    assert_eq!(
        RulesPlanner::new()
            .plan_sync(&most, &[])
            .map(|p| p.tasks.len()),
        Ok(256)
    );
    let half = vec![r#"run "x""#; 100].join(", ");
    check(
        &format!("{half} then {half}"),
        "plan_too_large: the plan has 10000 edges; the limit is 4096",
    );
}

#[test]
fn titles_instructions_and_capabilities() {
    let plan = RulesPlanner::new()
        .plan_sync(
            &format!(
                r#"  on laptop run "echo   alpha
beta" , fetch https://example.com/x and on phone write "t" to 'notes/a b.txt' then read notes/a.txt on server , run "{}" "#,
                "y".repeat(100)
            ),
            &three_devices(),
        )
        .expect("plannable");
    let rows: Vec<String> = plan
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{} | {} | {}",
                t.title,
                t.instruction,
                t.capabilities.join(",")
            )
        })
        .collect();
    let long_title = format!("run `{}…", "y".repeat(74));
    assert_eq!(long_title.chars().count(), MAX_TITLE_CHARS);
    assert_eq!(
        rows,
        [
            "run `echo alpha beta` | on laptop run \"echo   alpha\nbeta\" | shell".to_owned(),
            "fetch https://example.com/x | fetch https://example.com/x | http".to_owned(),
            "write notes/a b.txt | on phone write \"t\" to 'notes/a b.txt' | fs".to_owned(),
            "read notes/a.txt | read notes/a.txt on server | fs".to_owned(),
            format!("{long_title} | run \"{}\" | shell", "y".repeat(100)),
        ]
    );
}

/// A small deterministic generator (xorshift64), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }
}

/// Pieces the random requests are built from: single tokens (`WORDS`), whole clauses that parse
/// (`CLAUSES`), and what goes between them (`JOINS`).
const WORDS: &str = r#"on laptop server phone toaster the my run exec " ' \ , and then fetch http://x
    https://y/a,b ftp://z write save to read cat a.txt "echo a" 'b c' "x\"y" “curly” é 日本 ON"#;
const CLAUSES: &[&str] = &[
    r#"run "echo a""#,
    "on phone fetch http://x",
    "read b on laptop",
    "on the server write 'x, y' to a.txt",
    "exec “curly”",
];
const JOINS: &[&str] = &[" and ", ", ", " then ", ", and ", " ", "", "\n"];

#[test]
fn random_requests_never_panic_and_plans_validate() {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let devices = three_devices();
    let planner = RulesPlanner::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut planned = 0;
    for _ in 0..1000 {
        let mut text = String::new();
        for i in 0..1 + rng.below(8) {
            if i > 0 {
                text.push_str(JOINS[rng.below(JOINS.len())]);
            }
            if rng.below(3) != 0 {
                text.push_str(CLAUSES[rng.below(CLAUSES.len())]);
            } else {
                text.push_str(words[rng.below(words.len())]);
            }
        }
        match planner.plan_sync(&text, &devices) {
            Ok(plan) => {
                planned += 1;
                assert_eq!(plan.validate(&Limits::default()), Ok(()), "{text:?}");
            }
            Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
        }
    }
    assert!(
        planned >= 100,
        "only {planned} random requests were plannable"
    );
}

#[test]
fn random_characters_never_panic() {
    let chars: Vec<char> = "ab o n,\"'\\\u{201C}\u{201D}\u{2018}\u{2019}é日\n\t"
        .chars()
        .collect();
    let planner = RulesPlanner::new();
    let mut rng = Rng(42);
    for _ in 0..1000 {
        let text: String = (0..rng.below(24))
            .map(|_| chars[rng.below(chars.len())])
            .collect();
        if let Ok(plan) = planner.plan_sync(&text, &three_devices()) {
            assert_eq!(plan.validate(&Limits::default()), Ok(()), "{text:?}");
        }
    }
}
