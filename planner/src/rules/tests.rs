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
        Some(Action::CopyFile { from, to }) => format!("copy {from} {to:?}"),
        Some(Action::Steps { steps, .. }) => format!("steps {steps}"),
        Some(Action::Phone { tool, .. } | Action::Adb { tool, .. }) => format!("tool {tool}"),
        Some(Action::Sim { op, .. }) => format!("sim {op}"),
        None => "none".to_owned(),
    }
}

/// Renders a plan as `TASK; TASK | edges: FROM->TO, …` (`-` for no edges).
fn render_plan(plan: &Plan) -> String {
    let tasks: Vec<String> = plan
        .tasks
        .iter()
        .map(|t| {
            let mut s = format!(
                "{}{} {}",
                t.id,
                render_target(&t.target),
                render_action(t.action.as_ref())
            );
            if !t.outputs.is_empty() {
                s.push_str(&format!(" out{:?}", t.outputs));
            }
            s
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
fn copy_a_file_between_devices() {
    // The source lists the file's directory and declares the file; the destination copies
    // the fetched file to the same path in its workdir.
    check(
        "copy notes/a.txt from laptop to phone",
        r#"t1[laptop] read notes out["notes/a.txt"]; t2[phone] copy {{t1.files.notes/a.txt}} "notes/a.txt" | edges: t1->t2"#,
    );
    check(
        "on laptop send photo.jpg to the phone",
        r#"t1[laptop] read . out["photo.jpg"]; t2[phone] copy {{t1.files.photo.jpg}} "photo.jpg" | edges: t1->t2"#,
    );
    // A name a reference cannot spell: all of t1's files, which is that one.
    check(
        "copy \"it's here.txt\" from server to kind-less-laptop",
        "unknown_device: no registered device or device kind is called `kind-less-laptop` \
         (registered: laptop, phone, server)",
    );
    check(
        "copy \"my dir/it's here.txt\" from server to laptop",
        r#"t1[server] read my dir out["my dir/it's here.txt"]; t2[laptop] copy {{t1.files}} "my dir/it's here.txt" | edges: t1->t2"#,
    );
    // Kinds work as for `on`.
    check(
        "copy a.txt from desktop to laptop",
        r#"t1[kind:desktop] read . out["a.txt"]; t2[laptop] copy {{t1.files.a.txt}} "a.txt" | edges: t1->t2"#,
    );
}

#[test]
fn copies_in_steps() {
    // The step before leads to the sending task; the next step waits for the receiving one.
    check(
        r#"on laptop run "make" then copy build/app.apk from laptop to phone then on phone run "ls build""#,
        r#"t1[laptop] shell "make"; t2[laptop] read build out["build/app.apk"]; t3[phone] copy {{t2.files.build/app.apk}} "build/app.apk"; t4[phone] shell "ls build" | edges: t2->t3, t1->t2, t3->t4"#,
    );
    // Two copies at once, and a copy beside a task.
    check(
        r#"copy a.txt from laptop to phone and on server send b.txt to laptop, on phone run "date""#,
        r#"t1[laptop] read . out["a.txt"]; t2[phone] copy {{t1.files.a.txt}} "a.txt"; t3[server] read . out["b.txt"]; t4[laptop] copy {{t3.files.b.txt}} "b.txt"; t5[phone] shell "date" | edges: t1->t2, t3->t4"#,
    );
}

#[test]
fn copies_not_understood() {
    check(
        "send a.txt to phone",
        r#"unplannable: understood []; not ["\"send a.txt to phone\" (send needs the device the file is on: on laptop send notes/a.txt to phone, or copy notes/a.txt from laptop to phone)"]"#,
    );
    check(
        "copy a.txt from toaster to phone",
        "unknown_device: no registered device or device kind is called `toaster` \
         (registered: laptop, phone, server)",
    );
    check(
        "copy ../a.txt from laptop to phone",
        r#"unplannable: understood []; not ["\"copy ../a.txt from laptop to phone\" (`../a.txt` is not a path relative to the device's working directory (`../a.txt` has a `..` part), e.g. copy notes/a.txt from laptop to phone)"]"#,
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
fn write_the_result() {
    check(
        r#"on laptop run "echo hi" then on phone write the result to out.txt"#,
        r#"t1[laptop] shell "echo hi"; t2[phone] write out.txt "{{t1.output}}" | edges: t1->t2"#,
    );
    check(
        "on phone fetch https://example.com then save the output to page.html",
        r#"t1[phone] fetch https://example.com; t2[*] write page.html "{{t1.output}}" | edges: t1->t2"#,
    );
    check(
        r#"run "a" and on server run "b" then on laptop write the results to both.txt"#,
        r#"t1[*] shell "a"; t2[server] shell "b"; t3[laptop] write both.txt "{{t1.output}}\n{{t2.output}}" | edges: t1->t3, t2->t3"#,
    );
    check(
        r#"read a.txt then write it to b.txt and write its output to c.txt then write the result to d.txt"#,
        r#"t1[*] read a.txt; t2[*] write b.txt "{{t1.output}}"; t3[*] write c.txt "{{t1.output}}"; t4[*] write d.txt "{{t2.output}}\n{{t3.output}}" | edges: t1->t2, t1->t3, t2->t4, t3->t4"#,
    );
}

#[test]
fn write_the_result_needs_an_earlier_step() {
    let why = "there is no earlier result to write: \\\"the result\\\" is the output of the step \
               before \\\"then\\\", e.g. run \\\"date\\\" then write the result to date.txt";
    check(
        "on phone write the result to out.txt",
        &format!(
            r#"unplannable: understood []; not ["\"on phone write the result to out.txt\" ({why})"]"#
        ),
    );
    check(
        r#"run "a" and write it to out.txt"#,
        &format!(
            r#"unplannable: understood ["run \"a\""]; not ["\"write it to out.txt\" ({why})"]"#
        ),
    );
}

#[test]
fn write_the_result_titles() {
    let plan = RulesPlanner::new()
        .plan_sync(
            r#"run "a" then on phone write the result to "my  out.txt" then run "b", run "c" then write it to x"#,
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
    assert_eq!(
        rows,
        [
            "run `a` | run \"a\" | shell",
            "write result to my out.txt | on phone write the result to \"my  out.txt\" | fs",
            "run `b` | run \"b\" | shell",
            "run `c` | run \"c\" | shell",
            "write results to x | write it to x | fs",
        ]
    );
}

#[test]
fn hand_written_references() {
    check(
        r#"on laptop run "uname" then on phone run "echo {{t1.output}} > host.txt""#,
        r#"t1[laptop] shell "uname"; t2[phone] shell "echo {{t1.output}} > host.txt" | edges: t1->t2"#,
    );
    check(
        r#"run "uname" then run "x" then write "{{ t1.output.exit_code }}" to code.txt"#,
        r#"t1[*] shell "uname"; t2[*] shell "x"; t3[*] write code.txt "{{ t1.output.exit_code }}" | edges: t1->t2, t2->t3"#,
    );
    check(
        r#"run "echo {{t2.output}}" then run "b""#,
        "invalid_plan: invalid plan: task t1 refers to t2 ({{t2.output}}), which is not upstream of it",
    );
    check(
        r#"run "a" and run "echo {{t1.output}}""#,
        "invalid_plan: invalid plan: task t2 refers to t1 ({{t1.output}}), which is not upstream of it",
    );
    check(
        r#"run "a" then run "echo '{{t1.output}}'""#,
        r#"unplannable: understood ["run \"a\""]; not ["\"run \"echo '{{t1.output}}'\"\" (in the action's `command`: {{t1.output}} is inside '…'; in a shell command write references bare, they are quoted for you (e.g. echo {{t1.output}}))"]"#,
    );
    check(
        r#"run "a" then write "{{t1}}" to x"#,
        r#"unplannable: understood ["run \"a\""]; not ["\"write \"{{t1}}\" to x\" (in the action's `content`: `{{t1}}` is not a reference (expected `.output` after the task id); a reference looks like {{t1.output}}, {{t1.output.summary}} or {{t1.output.stdout}}, and `{{` always starts one)"]"#,
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
    assert!(err.to_string().contains("--planner llm"));
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

/// More pieces, with data flow: `write the result`, references good and bad.
const REF_WORDS: &str = r#"it result output its the {{ }} {{t1.output}} "{{t1.output}}"
    {{t2.output.x "{{t1}}" '{{' "'{{t1.output}}'" t1.output"#;
const REF_CLAUSES: &[&str] = &[
    "write the result to r.txt",
    "on phone save it into s.txt",
    r#"run "cat {{t1.output.stdout}}""#,
    r#"write "{{ t1.output }}" to "{{t2.output.summary}}""#,
    "fetch http://x/{{t1.output}}",
];

/// Plans 1000 random requests: `prefix`, then `words` and `clauses`. Every plan must validate.
/// Returns how many were plannable, and how many of those had a reference.
fn random_requests(prefix: &str, words: &[&str], clauses: &[&str], seed: u64) -> (usize, usize) {
    let devices = three_devices();
    let planner = RulesPlanner::new();
    let mut rng = Rng(seed);
    let (mut planned, mut with_refs) = (0, 0);
    for _ in 0..1000 {
        let mut text = prefix.to_owned();
        for i in 0..1 + rng.below(8) {
            if i > 0 {
                text.push_str(JOINS[rng.below(JOINS.len())]);
            }
            if rng.below(3) != 0 {
                text.push_str(clauses[rng.below(clauses.len())]);
            } else {
                text.push_str(words[rng.below(words.len())]);
            }
        }
        match planner.plan_sync(&text, &devices) {
            Ok(plan) => {
                planned += 1;
                assert_eq!(plan.validate(&Limits::default()), Ok(()), "{text:?}");
                let refs = plan.tasks.iter().map(|t| {
                    crate::refs::task_references(&t.instruction, t.action.as_ref())
                        .map(|r| r.len())
                        .unwrap_or_default()
                });
                if refs.sum::<usize>() > 0 {
                    with_refs += 1;
                }
            }
            Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
        }
    }
    (planned, with_refs)
}

#[test]
fn random_requests_never_panic_and_plans_validate() {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let (planned, _) = random_requests("", &words, CLAUSES, 0x9E37_79B9_7F4A_7C15);
    assert!(
        planned >= 100,
        "only {planned} random requests were plannable"
    );
}

#[test]
fn random_requests_with_references_never_panic_and_plans_validate() {
    let words: Vec<&str> = WORDS
        .split_whitespace()
        .chain(REF_WORDS.split_whitespace())
        .collect();
    let clauses: Vec<&str> = CLAUSES.iter().chain(REF_CLAUSES).copied().collect();
    // Half the requests start with two steps, so that t1 and t2 are upstream of the rest.
    let (a, a_refs) = random_requests("", &words, &clauses, 0x2545_F491_4F6C_DD1D);
    let (b, b_refs) = random_requests(r#"run "a" then run "b" then "#, &words, &clauses, 7);
    let (planned, with_refs) = (a + b, a_refs + b_refs);
    assert!(
        planned >= 100 && with_refs >= 50,
        "only {planned} random requests were plannable, {with_refs} with references"
    );
}

#[test]
fn random_characters_never_panic() {
    let chars: Vec<char> = "ab o n,\"'\\\u{201C}\u{201D}\u{2018}\u{2019}é日\n\t{{}}.$#`"
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
