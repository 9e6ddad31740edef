//! Wide cross-device work, in every category: the same step on several devices at once (a
//! fan-out over the fleet), then a join that brings the results together, or deliveries to
//! several devices at once. These are the tasks whose plans have the most independent steps;
//! the reference plans run every step as soon as what it needs is there.

// The families are tables of tuples, one row per task, read row by row.
#![allow(clippy::type_complexity)]

use serde_json::json;
use weft_protocol::ConditionOp;

use super::ops::{client_log, edge_log, grep_sorted, log, server_log};
use super::*;
use crate::suite::check::Items;

/// `{{ID.output}}`: a reference to a task's output.
fn out(id: &str) -> String {
    format!("{{{{{id}.output}}}}")
}

/// How a request names a device.
fn called(d: &str) -> &'static str {
    match d {
        W => "the Windows laptop",
        M => "my Mac",
        S => "the Linux server",
        P => "my phone",
        _ => "the edge box",
    }
}

/// `a, b and c`.
fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match items.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => String::new(),
    }
}

/// A number as a person writes it: `93`, `95.5`.
fn shown(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

pub fn file_sync() -> Vec<TaskFile> {
    let c = "file-sync";
    let mut out_ = Vec::new();
    // A: one or two files from each of several devices, backed up on the server at once.
    let gathers: [(&str, &str, &[(&str, &str, &str)]); 2] = [
        (
            "sync-12",
            "Back up a file from every device",
            &[
                (
                    M,
                    "projects/roadmap.md",
                    "Roadmap: Q2 offline mode, Q3 shared folders, Q4 web client.\n",
                ),
                (
                    W,
                    "finance/forecast-q2.csv",
                    "month,revenue\napr,41000\nmay,43500\njun,47250\n",
                ),
                (
                    P,
                    "Downloads/ticket-berlin.txt",
                    "ICE 1007 Munich-Berlin, 2026-04-03 08:02, coach 7 seat 45\n",
                ),
                (
                    E,
                    "config/gateway.toml",
                    "[gateway]\nuplink = \"lte\"\nbuffer_hours = 48\n",
                ),
            ],
        ),
        (
            "sync-13",
            "Back up two files from three devices",
            &[
                (
                    M,
                    "thesis/ch2-related-work.md",
                    "# 2 Related work\n\nPlanners for multi-device agents fall into three groups.\n",
                ),
                (
                    M,
                    "thesis/references.bib",
                    "@article{ufo3, title={UFO3}, year={2025}}\n",
                ),
                (
                    W,
                    "thesis/figures.txt",
                    "fig-1 architecture.svg\nfig-2 latency.svg\n",
                ),
                (W, "thesis/data/latency.csv", "run,ms\n1,302\n2,288\n"),
                (
                    P,
                    "Recordings/interview-notes.txt",
                    "Interview 4: the phone is where people notice failures first.\n",
                ),
                (
                    P,
                    "Recordings/interview-consent.txt",
                    "Consent forms signed: 4 of 4.\n",
                ),
            ],
        ),
    ];
    for (id, title, files) in gathers {
        let what: Vec<String> = [M, W, P, E]
            .iter()
            .filter_map(|d| {
                let paths: Vec<&str> = files
                    .iter()
                    .filter(|(x, _, _)| x == d)
                    .map(|(_, p, _)| *p)
                    .collect();
                (!paths.is_empty()).then(|| format!("{} from {}", and_list(&paths), called(d)))
            })
            .collect();
        let mut names: Vec<&str> = Vec::new();
        for (d, _, _) in files.iter() {
            if !names.contains(d) {
                names.push(d);
            }
        }
        let mut b = B::new(
            c,
            id,
            title,
            &format!(
                "Back up {} to the Linux server, each under backup/DEVICE/, DEVICE being the \
                 name of the device it comes from ({}).",
                and_list(&what),
                names.join(", ")
            ),
        );
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for (d, path, text) in files.iter() {
            b.file(d, path, text);
            let r = b.sim(
                d,
                &format!("read {path} on the {d}"),
                "file.read",
                json!({"path": path}),
            );
            let to = format!("backup/{d}/{path}");
            writes.push((r, to.clone()));
            reads.push(format!("on {d} read {path}"));
            b.check(under(file_eq(S, &to, text), &format!("backup/{d}/"), path));
        }
        let mut rules_writes = Vec::new();
        for (i, (r, to)) in writes.iter().enumerate() {
            let w = b.sim(
                S,
                &format!("store {to}"),
                "file.write",
                json!({"path": to, "content": out(r)}),
            );
            b.after(r, &w);
            rules_writes.push(format!(
                "on {S} write \"{{{{t{}.output}}}}\" to {to}",
                i + 1
            ));
        }
        b.rules(&format!(
            "{} then {}",
            reads.join(" and "),
            rules_writes.join(" and ")
        ));
        out_.push(b.done());
    }
    // B: configuration files rolled out from the server to every other device.
    {
        let files = [
            ("config/app.toml", "[server]\nport = 8443\nworkers = 8\n"),
            (
                "config/logging.toml",
                "[logging]\nlevel = \"info\"\nrotate_mb = 50\n",
            ),
            (
                "config/features.json",
                "{\"offline_mode\": true, \"beta_search\": false}\n",
            ),
        ];
        let targets = [W, M, P, E];
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        let mut b = B::new(
            c,
            "sync-14",
            "Roll out three config files everywhere",
            &format!(
                "Roll out {} from the Linux server to both laptops, my phone and the edge box, \
                 at the same paths.",
                and_list(&paths)
            ),
        );
        let mut reads = Vec::new();
        for (path, text) in &files {
            b.file(S, path, text);
            reads.push(b.sim(
                S,
                &format!("read {path} on the server"),
                "file.read",
                json!({"path": path}),
            ));
        }
        let mut rules_writes = Vec::new();
        for t in targets {
            for (i, ((path, text), r)) in files.iter().zip(&reads).enumerate() {
                let w = b.sim(
                    t,
                    &format!("install {path} on the {t}"),
                    "file.write",
                    json!({"path": path, "content": out(r)}),
                );
                b.after(r, &w);
                b.check(file_eq(t, path, text));
                rules_writes.push(format!(
                    "on {t} write \"{{{{t{}.output}}}}\" to {path}",
                    i + 1
                ));
            }
        }
        let rules_reads: Vec<String> = paths.iter().map(|p| format!("on {S} read {p}")).collect();
        b.rules(&format!(
            "{} then {}",
            rules_reads.join(" and "),
            rules_writes.join(" and ")
        ));
        out_.push(b.done());
    }
    out_
}

/// The log of the Windows laptop's sync client.
fn windows_log(date: &str, v: u32) -> String {
    log(
        date,
        &[
            ("08:03:00", "INFO", "onedrive: 31 files synced"),
            (
                &format!("08:2{v}:40"),
                "ERROR",
                "onedrive: upload failed: quota exceeded",
            ),
            ("09:12:09", "WARN", "onedrive: file locked: budget.xlsx"),
        ],
    )
}

/// The log of the phone's app.
fn phone_log(date: &str, v: u32) -> String {
    log(
        date,
        &[
            ("07:45:12", "INFO", "app: opened from notification"),
            ("08:15:30", "WARN", "app: battery saver delayed sync"),
            (
                &format!("09:2{v}:05"),
                "ERROR",
                "app: push token rejected by gateway",
            ),
        ],
    )
}

pub fn log_collection() -> Vec<TaskFile> {
    let c = "log-collection";
    let mut out_ = Vec::new();
    // A: one kind of line from every device, merged in time order, and counted per device.
    let merges: [(&str, &str, u32, &str, &str, &str, &str, &str); 2] = [
        (
            "logs-12",
            "2026-03-16",
            3,
            "ERROR",
            "errors",
            S,
            "incidents/2026-03-16.log",
            "incidents/2026-03-16-counts.txt",
        ),
        (
            "logs-13",
            "2026-03-17",
            4,
            "WARN",
            "warnings",
            M,
            "digests/2026-03-17-warnings.log",
            "digests/2026-03-17-counts.txt",
        ),
    ];
    for (id, date, v, level, word, dst, merged, counts) in merges {
        let logs: Vec<(&str, &str, String)> = vec![
            (S, "logs/app.log", server_log(date, v)),
            (E, "logs/sensor.log", edge_log(date, v)),
            (M, "logs/client.log", client_log(date, v)),
            (W, "logs/sync.log", windows_log(date, v)),
            (P, "logs/app.log", phone_log(date, v)),
        ];
        let mut b = B::new(
            c,
            id,
            &format!("{level} lines of all five devices, {date}"),
            &format!(
                "Collect the {level} lines from the logs on all five devices and merge them, in \
                 time order, into {merged} on {}; also write how many each device logged, one \
                 line per device, \"{word} on DEVICE: N\", to {counts} there.",
                called(dst)
            ),
        );
        let mut collects = Vec::new();
        let mut numbers = Vec::new();
        for (d, path, text) in &logs {
            b.file(d, path, text);
            let col = b.sim(
                d,
                &format!("collect the {level} lines on the {d}"),
                "log.collect",
                json!({"dir": "logs", "contains": level}),
            );
            let n = b.sim(d, "count them", "data.count", json!({"text": out(&col)}));
            b.after(&col, &n);
            collects.push(col);
            numbers.push(n);
        }
        let joined: String = collects.iter().map(|t| out(t)).collect();
        let sort = b.sim(
            dst,
            "sort them by time",
            "data.sort",
            json!({"text": joined}),
        );
        b.after_all(&collects, &sort);
        let w = b.sim(
            dst,
            &format!("write {merged}"),
            "file.write",
            json!({"path": merged, "content": out(&sort)}),
        );
        b.after(&sort, &w);
        let lines: String = logs
            .iter()
            .zip(&numbers)
            .map(|((d, _, _), n)| format!("{word} on {d}: {}\n", out(n)))
            .collect();
        let wc = b.sim(
            dst,
            &format!("write {counts}"),
            "file.write",
            json!({"path": counts, "content": lines}),
        );
        b.after_all(&numbers, &wc);
        let texts: Vec<&str> = logs.iter().map(|(_, _, t)| t.as_str()).collect();
        b.check(file_eq(dst, merged, &grep_sorted(&texts, level, false)));
        let expected: Vec<String> = logs
            .iter()
            .map(|(d, _, t)| {
                format!(
                    "{word} on {d}: {}",
                    t.lines().filter(|l| l.contains(level)).count()
                )
            })
            .collect();
        let er: Vec<&str> = expected.iter().map(String::as_str).collect();
        b.check(file_has(dst, counts, &er));
        b.unsupported(
            "the rules grammar would need a shell on every device to select and count lines, \
             and the Windows laptop has none",
        );
        out_.push(b.done());
    }
    // B: today's logs of four devices archived on the server.
    {
        let date = "2026-03-18";
        let sources: [(&str, &str, String); 4] = [
            (E, "logs/sensor.log", edge_log(date, 5)),
            (M, "logs/client.log", client_log(date, 5)),
            (W, "logs/sync.log", windows_log(date, 5)),
            (P, "logs/app.log", phone_log(date, 5)),
        ];
        let mut b = B::new(
            c,
            "logs-14",
            &format!("Archive the logs of {date} from four devices"),
            &format!(
                "Archive today's log files from the edge box, my Mac, the Windows laptop and my \
                 phone on the server, each under archive/{date}/DEVICE/."
            ),
        );
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for (d, path, text) in &sources {
            b.file(d, path, text);
            let r = b.sim(
                d,
                &format!("read {path} on the {d}"),
                "file.read",
                json!({"path": path}),
            );
            let to = format!("archive/{date}/{d}/{}", path.trim_start_matches("logs/"));
            reads.push(format!("on {d} read {path}"));
            writes.push((r, to.clone()));
            b.check(under(
                file_eq(S, &to, text),
                &format!("archive/{date}/{d}/"),
                path,
            ));
        }
        let mut rules_writes = Vec::new();
        for (i, (r, to)) in writes.iter().enumerate() {
            let w = b.sim(
                S,
                &format!("store {to}"),
                "file.write",
                json!({"path": to, "content": out(r)}),
            );
            b.after(r, &w);
            rules_writes.push(format!(
                "on {S} write \"{{{{t{}.output}}}}\" to {to}",
                i + 1
            ));
        }
        b.rules(&format!(
            "{} then {}",
            reads.join(" and "),
            rules_writes.join(" and ")
        ));
        out_.push(b.done());
    }
    out_
}

pub fn report_assembly() -> Vec<TaskFile> {
    let c = "report-assembly";
    let mut out_ = Vec::new();
    // A: each lead gets their own figures, read where they are, mailed at once.
    let mailings: [(&str, &str, &str, &[(&str, &str, &str, &str)]); 2] = [
        (
            "report-12",
            "March figures",
            M,
            &[
                (
                    S,
                    "north",
                    "ana@example.com",
                    "North, March: revenue 41,200 EUR, 18 new customers\n",
                ),
                (
                    S,
                    "south",
                    "ben@example.com",
                    "South, March: revenue 28,750 EUR, 9 new customers\n",
                ),
                (
                    S,
                    "east",
                    "chloe@example.com",
                    "East, March: revenue 33,905 EUR, 14 new customers\n",
                ),
                (
                    S,
                    "west",
                    "dario@example.com",
                    "West, March: revenue 19,480 EUR, 6 new customers\n",
                ),
            ],
        ),
        (
            "report-13",
            "week 12 numbers",
            P,
            &[
                (
                    W,
                    "support",
                    "femi@example.com",
                    "Support, week 12: 212 tickets, median reply 3 h 10 min\n",
                ),
                (
                    M,
                    "sales",
                    "greta@example.com",
                    "Sales, week 12: 37 demos, 11 deals closed\n",
                ),
                (
                    E,
                    "ops",
                    "hugo@example.com",
                    "Ops, week 12: 99.97% uptime, 2 incidents\n",
                ),
            ],
        ),
    ];
    for (id, what, from, rows) in mailings {
        let path = |d: &str, name: &str| {
            if d == S {
                format!("reports/{name}-march.txt")
            } else {
                format!("{name}/week-12.txt")
            }
        };
        let parts: Vec<String> = rows
            .iter()
            .map(|(d, name, to, _)| {
                format!("{name}'s ({} on {}) to {to}", path(d, name), called(d))
            })
            .collect();
        let mut b = B::new(
            c,
            id,
            &format!("Mail each lead their {what}"),
            &format!(
                "Mail each lead their own {what} from {}: {}.",
                called(from),
                and_list(&parts)
            ),
        );
        for (d, name, to, text) in rows.iter() {
            let p = path(d, name);
            b.file(d, &p, text);
            let r = b.sim(
                d,
                &format!("read {p} on the {d}"),
                "file.read",
                json!({"path": p}),
            );
            let m = b.sim(
                from,
                &format!("mail {to} the {name} figures"),
                "mail.send",
                json!({"to": to, "subject": format!("{name}: {what}"), "body": out(&r)}),
            );
            b.after(&r, &m);
            // Their own figures, and nobody else's.
            let others: Vec<&str> = rows
                .iter()
                .filter(|(_, n, _, _)| n != name)
                .map(|(_, _, _, t)| t.trim_end())
                .collect();
            b.check(without(
                mail(from, to, None, &[text.trim_end()], None),
                &others,
            ));
            b.check(count_to(from, Items::Mails, to, 1));
        }
        b.check(count(from, Items::Mails, rows.len()));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: a summary from all five devices, written on both laptops.
    {
        let report = "reports/q1-summary.md";
        let sources: [(&str, &str, &str); 4] = [
            (
                M,
                "notes/board-q1.md",
                "Board, Q1: offline mode approved; hiring freeze lifted in April.\n",
            ),
            (
                W,
                "support/q1.txt",
                "Support, Q1: 2,480 tickets, satisfaction 4.6 of 5\n",
            ),
            (
                P,
                "travel/q1.txt",
                "Travel, Q1: 6 trips, 11 nights, 2,140 EUR\n",
            ),
            (
                E,
                "energy/q1.txt",
                "Energy, Q1: office used 9,870 kWh, 12% less than Q4\n",
            ),
        ];
        let kpis = "Revenue, Q1: 512,300 EUR\nGross margin: 71%\n";
        let mut b = B::new(
            c,
            "report-14",
            "Q1 summary from five devices",
            &format!(
                "Put together the Q1 summary in {report} on both laptops: the board notes from \
                 my Mac (notes/board-q1.md), the revenue figures at ${{WEB}}/kpi/q1.txt (fetch \
                 it from the server), the support stats from the Windows laptop \
                 (support/q1.txt), my phone's travel log (travel/q1.txt) and the edge box's \
                 energy summary (energy/q1.txt)."
            ),
        );
        b.page("kpi/q1.txt", kpis);
        let mut ids = Vec::new();
        let mut body = String::from("# Q1 summary\n");
        let mut rules = Vec::new();
        for (i, (d, path, text)) in sources.iter().enumerate() {
            b.file(d, path, text);
            let r = b.sim(
                d,
                &format!("read {path} on the {d}"),
                "file.read",
                json!({"path": path}),
            );
            body.push_str(&format!("\n{}", out(&r)));
            rules.push(format!("on {d} read {path}"));
            ids.push(r);
            if i == 0 {
                let f = b.fetch(S, "fetch the revenue figures", "${WEB}/kpi/q1.txt");
                body.push_str(&format!("\n{}", out(&f)));
                rules.push(format!("on {S} fetch ${{WEB}}/kpi/q1.txt"));
                ids.push(f);
            }
        }
        for d in [W, M] {
            let w = b.sim(
                d,
                &format!("write the summary on the {d}"),
                "file.write",
                json!({"path": report, "content": body}),
            );
            b.after_all(&ids, &w);
        }
        let mut firsts: Vec<&str> = sources.iter().map(|(_, _, t)| t.trim_end()).collect();
        firsts.push("Revenue, Q1: 512,300 EUR");
        for d in [W, M] {
            b.check(file_has(d, report, &firsts));
        }
        b.rules(&format!(
            "{} then on {W} write the results to {report} and on {M} write the results to \
             {report}",
            and_list(&rules)
        ));
        out_.push(b.done());
    }
    out_
}

pub fn phone_messaging() -> Vec<TaskFile> {
    let c = "phone-messaging";
    let mut out_ = Vec::new();
    // A: each person texted their own shift, read from the rota where it is kept.
    let rotas: [(&str, &str, &str, &[(&str, &str)]); 2] = [
        (
            "phone-12",
            "Saturday",
            S,
            &[
                ("Ana", "Saturday 08:00-14:00, front desk"),
                ("Ben", "Saturday 10:00-18:00, warehouse"),
                ("Chloe", "Saturday 14:00-22:00, front desk"),
                ("Dario", "Saturday 06:00-12:00, deliveries"),
            ],
        ),
        (
            "phone-13",
            "Sunday",
            M,
            &[
                ("Emma", "Sunday 09:00-13:00, bar"),
                ("Femi", "Sunday 12:00-20:00, kitchen"),
                ("Greta", "Sunday 17:00-23:00, bar"),
            ],
        ),
    ];
    for (id, day, at, people) in rotas {
        let dir = format!("rota/{}", day.to_lowercase());
        let names: Vec<&str> = people.iter().map(|(n, _)| *n).collect();
        let mut b = B::new(
            c,
            id,
            &format!("Text everyone their {day} shift"),
            &format!(
                "Text {} from my phone their own shift for {day}; each one's shift is in \
                 {dir}/NAME.txt on {} ({}.txt, …).",
                and_list(&names),
                called(at),
                people[0].0.to_lowercase()
            ),
        );
        for (name, shift) in people.iter() {
            let path = format!("{dir}/{}.txt", name.to_lowercase());
            b.file(at, &path, &format!("{shift}\n"));
            let r = b.sim(
                at,
                &format!("read {path}"),
                "file.read",
                json!({"path": path}),
            );
            let m = b.sim(
                P,
                &format!("text {name}"),
                "message.send",
                json!({"to": name, "text": format!("{name}, your {day} shift: {}", out(&r))}),
            );
            b.after(&r, &m);
            let others: Vec<&str> = people
                .iter()
                .filter(|(n, _)| n != name)
                .map(|(_, s)| *s)
                .collect();
            b.check(without(message(P, name, &[shift]), &others));
            b.check(count_to(P, Items::Messages, name, 1));
        }
        b.check(count(P, Items::Messages, people.len()));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: one piece of news to everyone, each on the device it goes out from.
    {
        let mut b = B::new(
            c,
            "phone-14",
            "Tell the family I landed",
            "I landed in Munich at 18:40: text Mum and Dad from my phone, mail \
             grandma@example.com from my Mac, and show a notification on the Windows laptop, \
             all saying so.",
        );
        let text = "Landed in Munich at 18:40";
        for who in ["Mum", "Dad"] {
            b.sim(
                P,
                &format!("text {who}"),
                "message.send",
                json!({"to": who, "text": text}),
            );
            b.check(message(P, who, &["18:40"]));
            b.check(count_to(P, Items::Messages, who, 1));
        }
        b.sim(
            M,
            "mail grandma",
            "mail.send",
            json!({"to": "grandma@example.com", "subject": "Landed in Munich", "body": text}),
        );
        b.sim(
            W,
            "notify on the Windows laptop",
            "notify",
            json!({"title": "Landed in Munich", "body": "at 18:40"}),
        );
        b.check(mail(M, "grandma@example.com", None, &["18:40"], None));
        b.check(count(M, Items::Mails, 1));
        b.check(notification(W, &["18:40"]));
        b.check(count(W, Items::Notifications, 1));
        b.check(count(P, Items::Messages, 2));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    out_
}

pub fn calendar() -> Vec<TaskFile> {
    let c = "calendar";
    let mut out_ = Vec::new();
    // A: time away blocked on every calendar, a note left, people told.
    let aways: [(&str, &str, &str, &str, &str, &[&str]); 2] = [
        (
            "cal-12",
            "Holiday",
            "2026-08-03T00:00",
            "2026-08-14T23:59",
            M,
            &["Ana", "Ben"],
        ),
        (
            "cal-13",
            "Conference trip",
            "2026-06-15T07:00",
            "2026-06-19T20:00",
            W,
            &["Chloe", "Dario", "Emma"],
        ),
    ];
    for (id, title, start, end, note_on, people) in aways {
        let until = &end[..10];
        let mut b = B::new(
            c,
            id,
            &format!("Block \"{title}\" everywhere and tell people"),
            &format!(
                "Block \"{title}\" from {start} to {end} on the calendars of both laptops and my \
                 phone, make a note \"Out of office\" on {} saying I am away until {until}, and \
                 text {} from my phone that I am away until {until}.",
                called(note_on),
                and_list(people)
            ),
        );
        for d in [W, M, P] {
            b.sim(
                d,
                &format!("block the time on the {d}"),
                "calendar.add",
                json!({"title": title, "start": start, "end": end}),
            );
            b.check(event(d, title, start, None));
            b.check(count(d, Items::Events, 1));
        }
        b.sim(
            note_on,
            "leave the out-of-office note",
            "note.create",
            json!({"title": "Out of office", "body": format!("Away until {until}.")}),
        );
        b.check(note(note_on, "Out of office", &[until]));
        for p in people.iter() {
            b.sim(
                P,
                &format!("text {p}"),
                "message.send",
                json!({"to": p, "text": format!("{p}, I am away until {until}.")}),
            );
            b.check(message(P, p, &[until]));
            b.check(count_to(P, Items::Messages, p, 1));
        }
        b.check(count(P, Items::Messages, people.len()));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: a meeting set up everywhere, its agenda mailed from where it is kept.
    {
        let start = "2026-04-14T10:00";
        let agenda = "Q2 review agenda\n1. Q1 results\n2. Hiring plan\n3. Offsite\n";
        let mut b = B::new(
            c,
            "cal-14",
            "Set up the Q2 review",
            &format!(
                "Set up the Q2 review at {start}: put it on the calendars of both laptops and my \
                 phone, remind me on the phone at 17:00 the day before, and mail the agenda \
                 (agenda/q2-review.md on the Linux server) to ana@example.com and \
                 ben@example.com from my Mac."
            ),
        );
        b.file(S, "agenda/q2-review.md", agenda);
        for d in [W, M, P] {
            b.sim(
                d,
                &format!("add the review on the {d}"),
                "calendar.add",
                json!({"title": "Q2 review", "start": start}),
            );
            b.check(event(d, "Q2 review", start, None));
            b.check(count(d, Items::Events, 1));
        }
        b.sim(
            P,
            "remind me the day before",
            "reminder.add",
            json!({"text": "Q2 review tomorrow at 10:00", "due": "2026-04-13T17:00"}),
        );
        b.check(reminder(P, "2026-04-13T17:00", &[]));
        b.check(count(P, Items::Reminders, 1));
        let r = b.sim(
            S,
            "read the agenda on the server",
            "file.read",
            json!({"path": "agenda/q2-review.md"}),
        );
        let m = b.sim(
            M,
            "mail the agenda",
            "mail.send",
            json!({"to": ["ana@example.com", "ben@example.com"], "subject": "Q2 review agenda", "body": out(&r)}),
        );
        b.after(&r, &m);
        for to in ["ana@example.com", "ben@example.com"] {
            b.check(mail(M, to, None, &["Hiring plan"], None));
            b.check(count_to(M, Items::Mails, to, 1));
        }
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    out_
}

pub fn data_pipeline() -> Vec<TaskFile> {
    let c = "data-pipeline";
    let mut out_ = Vec::new();
    // A: one CSV per region, each fetched and summed on its own device, the totals published
    // on the server and kept on the phone.
    let regions: [(&str, &str, &str, &[(&str, &str, &str)]); 2] = [
        (
            "data-12",
            "March",
            "amount",
            &[
                (S, "north", "rep,amount\nana,1200\nomar,2310\nlena,705\n"),
                (E, "south", "rep,amount\nben,860\nkai,1490\n"),
                (M, "east", "rep,amount\nchloe,1415\nmira,980\nsven,2045\n"),
                (W, "west", "rep,amount\ndario,390\nyuki,1875\n"),
            ],
        ),
        (
            "data-13",
            "Q1",
            "units",
            &[
                (S, "alps", "month,units\njan,410\nfeb,385\nmar,502\n"),
                (E, "coast", "month,units\njan,220\nfeb,198\nmar,264\n"),
                (W, "lakes", "month,units\njan,133\nfeb,171\nmar,149\n"),
            ],
        ),
    ];
    for (id, period, column, rows) in regions {
        let slug = period.to_lowercase();
        let path = format!("reports/regions-{slug}.txt");
        let urls: Vec<String> = rows
            .iter()
            .map(|(d, r, _)| format!("${{WEB}}/sales/{slug}/{r}.csv on {}", called(d)))
            .collect();
        let keys: Vec<String> = rows
            .iter()
            .map(|(_, r, _)| format!("sales_{slug}_{r}"))
            .collect();
        let mut b = B::new(
            c,
            id,
            &format!("{period} totals of {} regions", rows.len()),
            &format!(
                "Fetch the {period} sales of the {} regions — {} — add up the \"{column}\" \
                 column of each, write the totals, one line per region, to {path} on the Linux \
                 server, and keep each total in my phone's app data as {}.",
                rows.len(),
                and_list(&urls),
                and_list(&keys)
            ),
        );
        let mut sums = Vec::new();
        let mut wanted = Vec::new();
        for ((d, r, csv), key) in rows.iter().zip(&keys) {
            let url_path = format!("sales/{slug}/{r}.csv");
            b.page(&url_path, csv);
            let f = b.fetch(
                d,
                &format!("fetch the {r} sales"),
                &format!("${{WEB}}/{url_path}"),
            );
            let sum = b.sim(
                d,
                &format!("sum the {r} {column}"),
                "data.sum_csv",
                json!({"text": out(&f), "column": column}),
            );
            b.after(&f, &sum);
            let k = b.sim(
                P,
                &format!("keep the {r} total on the phone"),
                "kv.set",
                json!({"key": key, "value": out(&sum)}),
            );
            b.after(&sum, &k);
            let total: i64 = csv
                .lines()
                .skip(1)
                .filter_map(|l| l.rsplit(',').next()?.parse::<i64>().ok())
                .sum();
            b.check(kv(P, key, json!(total)));
            wanted.push(r.to_string());
            wanted.push(total.to_string());
            sums.push((r, sum));
        }
        let content: String = sums
            .iter()
            .map(|(r, s)| format!("{r}: {}\n", out(s)))
            .collect();
        let w = b.sim(
            S,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": content}),
        );
        let ids: Vec<String> = sums.iter().map(|(_, s)| s.clone()).collect();
        b.after_all(&ids, &w);
        let wr: Vec<&str> = wanted.iter().map(String::as_str).collect();
        b.check(file_has(S, &path, &wr));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: three status feeds filtered where they are fetched, the result on both laptops.
    {
        let feeds = [
            (
                S,
                "status/eu.txt",
                "eu-west: ok\neu-central: outage in storage since 09:12\neu-north: ok\n",
            ),
            (
                E,
                "status/us.txt",
                "us-east: outage in DNS since 08:55\nus-west: degraded latency\n",
            ),
            (
                M,
                "status/asia.txt",
                "ap-south: ok\nap-east: outage in compute since 10:03\n",
            ),
        ];
        let path = "public/outages.txt";
        let parts: Vec<String> = feeds
            .iter()
            .map(|(d, p, _)| format!("${{WEB}}/{p} on {}", called(d)))
            .collect();
        let mut b = B::new(
            c,
            "data-14",
            "Outages of three regions on both laptops",
            &format!(
                "Fetch the status feeds {}, keep only the lines mentioning outage from each, \
                 and save them all to {path} on both laptops.",
                and_list(&parts)
            ),
        );
        let mut filters = Vec::new();
        for (d, p, body) in &feeds {
            b.page(p, body);
            let f = b.fetch(d, &format!("fetch {p}"), &format!("${{WEB}}/{p}"));
            let fl = b.sim(
                d,
                "keep the outage lines",
                "data.filter",
                json!({"text": out(&f), "contains": "outage"}),
            );
            b.after(&f, &fl);
            filters.push(fl);
        }
        let content: String = filters.iter().map(|f| out(f)).collect();
        for d in [W, M] {
            let w = b.sim(
                d,
                &format!("save {path} on the {d}"),
                "file.write",
                json!({"path": path, "content": content}),
            );
            b.after_all(&filters, &w);
        }
        let bodies: Vec<&str> = feeds.iter().map(|(_, _, t)| *t).collect();
        let kept = grep_sorted(&bodies, "outage", false);
        let lines: Vec<&str> = kept.lines().collect();
        for d in [W, M] {
            b.check(without(
                file_has(d, path, &lines),
                &["eu-west", "degraded", "ap-south"],
            ));
        }
        b.unsupported(
            "the rules grammar would filter with a shell, and the Windows laptop has none; \
             nor can it write one result to two devices",
        );
        out_.push(b.done());
    }
    out_
}

pub fn build_test() -> Vec<TaskFile> {
    let c = "build-test";
    let mut out_ = Vec::new();
    let tests = |fails: &[&str], names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("{n}: {}\n", if fails.contains(n) { "fail" } else { "pass" }))
            .collect()
    };
    // A: one project built on three machines at once; the outcomes on the server, each
    // failing build's report mailed.
    let matrices: [(&str, &str, &[&str], [&[&str]; 3]); 2] = [
        (
            "build-12",
            "payments-sdk",
            &["test_charge", "test_keychain", "test_paths", "test_retry"],
            [&[], &["test_keychain"], &["test_paths"]],
        ),
        (
            "build-13",
            "desktop-app",
            &["test_fonts", "test_menus", "test_updates"],
            [&["test_fonts"], &[], &[]],
        ),
    ];
    for (id, p, names, fails) in matrices {
        let project = format!("projects/{p}");
        let path = format!("builds/{p}-matrix.txt");
        let machines = [S, M, W];
        let mut b = B::new(
            c,
            id,
            &format!("Build {p} on three machines"),
            &format!(
                "Build and test {p} on the Linux server, the Mac and the Windows laptop at the \
                 same time, write the three outcomes to {path} on the server, and mail the \
                 report of each build that fails to team@example.com from my Mac."
            ),
        );
        let mut builds = Vec::new();
        for (d, f) in machines.iter().zip(fails) {
            b.file(d, &format!("{project}/tests.txt"), &tests(f, names));
            let bt = b.sim(
                d,
                &format!("build on the {d}"),
                "build.run",
                json!({"project": project}),
            );
            let m = b.sim(
                M,
                &format!("mail the {d} report"),
                "mail.send",
                json!({"to": "team@example.com", "subject": format!("{p} build failed on {d}"), "body": out(&bt)}),
            );
            b.when(&bt, &m, "/status", ConditionOp::Equals, json!("failed"));
            builds.push(bt);
        }
        let content: String = machines
            .iter()
            .zip(&builds)
            .map(|(d, t)| format!("{d}: {{{{{t}.output.status}}}}\n"))
            .collect();
        let w = b.sim(
            S,
            "write the outcomes",
            "file.write",
            json!({"path": path, "content": content}),
        );
        b.after_all(&builds, &w);
        b.check(file_has(S, &path, &["passed", "failed"]));
        let failing: Vec<&str> = fails.iter().flat_map(|f| f.iter().copied()).collect();
        for f in &failing {
            b.check(mail(M, "team@example.com", None, &[*f], None));
        }
        // One mail per failing build, none for a green one.
        b.check(count_to(
            M,
            Items::Mails,
            "team@example.com",
            fails.iter().filter(|f| !f.is_empty()).count(),
        ));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: four services built on the server at once; a summary on the Mac, the phone told of
    // each failure.
    {
        let services: [(&str, &[&str], &[&str]); 4] = [
            ("api", &["test_routes", "test_auth"], &[]),
            (
                "web",
                &["test_render", "test_forms", "test_i18n"],
                &["test_i18n"],
            ),
            ("worker", &["test_queue", "test_retry"], &[]),
            ("cli", &["test_args", "test_config"], &["test_config"]),
        ];
        let path = "builds/nightly-2026-03-20.txt";
        let mut b = B::new(
            c,
            "build-14",
            "Build four services on the server",
            &format!(
                "Build and test api, web, worker and cli (projects/NAME on the Linux server) all \
                 at once there, write which passed and which failed, with the failing tests, to \
                 {path} on my Mac, and notify me on my phone about each one that failed."
            ),
        );
        let mut builds = Vec::new();
        for (name, names, fails) in services {
            let project = format!("projects/{name}");
            b.file(S, &format!("{project}/tests.txt"), &tests(fails, names));
            let bt = b.sim(
                S,
                &format!("build {name}"),
                "build.run",
                json!({"project": project}),
            );
            let n = b.sim(
                P,
                &format!("tell the phone {name} failed"),
                "notify",
                json!({"title": format!("{name} build failed"), "body": format!("{{{{{bt}.output.failed}}}} failing tests in {name}")}),
            );
            b.when(&bt, &n, "/status", ConditionOp::Equals, json!("failed"));
            if !fails.is_empty() {
                b.check(notification(P, &[name]));
            }
            builds.push(bt);
        }
        let content: String = builds.iter().map(|t| out(t)).collect();
        let w = b.sim(
            M,
            "write the summary",
            "file.write",
            json!({"path": path, "content": content}),
        );
        b.after_all(&builds, &w);
        b.check(file_has(
            M,
            path,
            &["passed", "failed", "test_i18n", "test_config"],
        ));
        b.check(count(P, Items::Notifications, 2));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    out_
}

pub fn photo_handoff() -> Vec<TaskFile> {
    let c = "photo-handoff";
    let mut out_ = Vec::new();
    // A: photos taken on the phone, each delivered to two devices.
    let shots: [(&str, &[&str], [(&str, &str); 2]); 2] = [
        (
            "photo-12",
            &["shelf-a", "shelf-b", "shelf-c"],
            [(W, "Desktop"), (M, "Desktop")],
        ),
        (
            "photo-13",
            &["meter-gas", "meter-water"],
            [(W, "Desktop"), (S, "meters/2026-03")],
        ),
    ];
    for (id, names, dests) in shots {
        let where_: Vec<String> = dests
            .iter()
            .map(|(d, dir)| format!("{dir}/ on {}", called(d)))
            .collect();
        let mut b = B::new(
            c,
            id,
            &format!("{} photos to two devices", names.len()),
            &format!(
                "Take photos named {} with my phone and put each one in {}.",
                and_list(names),
                and_list(&where_)
            ),
        );
        for n in names.iter() {
            let t = b.sim(
                P,
                &format!("photograph {n}"),
                "photo.take",
                json!({"name": n}),
            );
            let shot = photo_path(n);
            b.sends(&t, &[&shot]);
            for (d, dir) in dests {
                let path = format!("{dir}/{n}.jpg");
                b.receive(d, &format!("save {path} on the {d}"), &t, &shot, &path);
                b.check(photo_at(d, &path, n));
            }
        }
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: documents from a laptop to the phone and the other laptop.
    {
        let docs = [
            (
                "docs/passport-scan.txt",
                "PASSPORT C01X00T47, valid to 2031-05-09\n",
            ),
            (
                "docs/visa.txt",
                "Visa JP-2026-118733, single entry, 30 days\n",
            ),
            (
                "docs/hotel-booking.txt",
                "Hotel Kiyomizu, 2026-05-02 to 2026-05-09, booking 88412\n",
            ),
        ];
        let paths: Vec<&str> = docs.iter().map(|(p, _)| *p).collect();
        let mut b = B::new(
            c,
            "photo-14",
            "Travel documents to the phone and the Mac",
            &format!(
                "Put {} from the Windows laptop into my phone's Downloads folder and my Mac's \
                 Documents folder.",
                and_list(&paths)
            ),
        );
        let mut reads = Vec::new();
        for (p, text) in &docs {
            b.file(W, p, text);
            reads.push(b.sim(W, &format!("read {p}"), "file.read", json!({"path": p})));
        }
        let mut rules_writes = Vec::new();
        for (d, dir) in [(P, "Downloads"), (M, "Documents")] {
            for (i, ((p, text), r)) in docs.iter().zip(&reads).enumerate() {
                let to = format!("{dir}/{}", p.trim_start_matches("docs/"));
                let w = b.sim(
                    d,
                    &format!("save {to} on the {d}"),
                    "file.write",
                    json!({"path": to, "content": out(r)}),
                );
                b.after(r, &w);
                b.check(file_eq(d, &to, text));
                rules_writes.push(format!(
                    "on {d} write \"{{{{t{}.output}}}}\" to {to}",
                    i + 1
                ));
            }
        }
        let rules_reads: Vec<String> = paths.iter().map(|p| format!("on {W} read {p}")).collect();
        b.rules(&format!(
            "{} then {}",
            rules_reads.join(" and "),
            rules_writes.join(" and ")
        ));
        out_.push(b.done());
    }
    out_
}

pub fn monitoring() -> Vec<TaskFile> {
    let c = "monitoring";
    let mut out_ = Vec::new();
    // A: one threshold checked on every device; each breach alerted, every reading recorded.
    let sweeps: [(&str, &str, f64, [f64; 5]); 2] = [
        (
            "mon-12",
            "disk_used_pct",
            90.0,
            [93.0, 71.0, 66.0, 95.5, 40.0],
        ),
        (
            "mon-13",
            "mem_used_pct",
            85.0,
            [88.0, 52.0, 91.5, 60.0, 79.0],
        ),
    ];
    for (id, metric, max, values) in sweeps {
        let devices = [S, E, M, W, P];
        let path = format!("status/{}-check.txt", metric.trim_end_matches("_pct"));
        let mut b = B::new(
            c,
            id,
            &format!("{metric} on all five devices"),
            &format!(
                "Check {metric} on all five devices against {}: alert my phone about each \
                 device above it, and write every reading to {path} on my Mac.",
                shown(max)
            ),
        );
        let mut checks = Vec::new();
        for (d, v) in devices.iter().zip(values) {
            b.dev(d).metrics.insert(metric.into(), v);
            let ck = b.sim(
                d,
                &format!("check {metric} on the {d}"),
                "metric.check",
                json!({"name": metric, "max": max}),
            );
            let alert = b.sim(
                P,
                &format!("alert about the {d}"),
                "notify",
                json!({"title": format!("{metric} alert on {d}"), "body": out(&ck)}),
            );
            b.when(&ck, &alert, "/breach", ConditionOp::Equals, json!(true));
            if v > max {
                b.check(notification(P, &[&shown(v)]));
            }
            checks.push(ck);
        }
        let content: String = devices
            .iter()
            .zip(&checks)
            .map(|(d, t)| format!("{d}: {}\n", out(t)))
            .collect();
        let w = b.sim(
            M,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": content}),
        );
        b.after_all(&checks, &w);
        let readings: Vec<String> = values.iter().map(|v| shown(*v)).collect();
        let rr: Vec<&str> = readings.iter().map(String::as_str).collect();
        b.check(file_has(M, &path, &rr));
        // One alert per device above the threshold, none for the others.
        b.check(count(
            P,
            Items::Notifications,
            values.iter().filter(|v| **v > max).count(),
        ));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: three readings of every device, in one report on two devices.
    {
        let metrics = ["cpu_pct", "mem_used_pct", "disk_used_pct"];
        let devices = [S, E, M, W, P];
        // Values no other one contains, so each is found only where it belongs.
        let values: [[f64; 3]; 5] = [
            [37.25, 61.5, 72.75],
            [12.5, 44.25, 58.5],
            [23.75, 68.25, 81.5],
            [19.25, 55.75, 47.5],
            [8.75, 39.5, 26.25],
        ];
        let path = "status/fleet-load.txt";
        let mut b = B::new(
            c,
            "mon-14",
            "Load of the whole fleet",
            &format!(
                "Read {} on all five devices and write them, one per line, to {path} on the \
                 Linux server and on the Windows laptop.",
                and_list(&metrics)
            ),
        );
        let mut reads = Vec::new();
        let mut content = String::new();
        let mut wanted = Vec::new();
        for (d, vals) in devices.iter().zip(values) {
            for (m, v) in metrics.iter().zip(vals) {
                b.dev(d).metrics.insert((*m).into(), v);
                let t = b.sim(
                    d,
                    &format!("read {m} on the {d}"),
                    "metric.read",
                    json!({"name": m}),
                );
                content.push_str(&format!("{d} {m}: {}\n", out(&t)));
                wanted.push(shown(v));
                reads.push(t);
            }
        }
        for d in [S, W] {
            let w = b.sim(
                d,
                &format!("write {path} on the {d}"),
                "file.write",
                json!({"path": path, "content": content}),
            );
            b.after_all(&reads, &w);
        }
        let wr: Vec<&str> = wanted.iter().map(String::as_str).collect();
        for d in [S, W] {
            b.check(file_has(d, path, &wr));
        }
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    out_
}

pub fn research() -> Vec<TaskFile> {
    let c = "research";
    let mut out_ = Vec::new();
    // A: five sources fetched from all five devices at once, put together, the first finding
    // mailed.
    type Source<'a> = (&'a str, &'a str);
    let topics: [(&str, &str, &str, [Source<'_>; 5], &str); 2] = [
        (
            "research-12",
            "heat-storage",
            "Heat storage",
            [
                (
                    "wiki/thermal-storage.txt",
                    "Water stores about 1.16 kWh per cubic metre per degree.\n",
                ),
                (
                    "gov/storage-grants.txt",
                    "Home storage tanks get a 25% grant from 2026.\n",
                ),
                (
                    "review/sand-battery.txt",
                    "A sand battery keeps heat at 500 C for weeks.\n",
                ),
                (
                    "forum/tank-sizing.txt",
                    "Owners size tanks at 50 litres per kW of heat pump.\n",
                ),
                (
                    "news/district-heat.txt",
                    "Helsinki stores district heat in a 1 million m3 cavern.\n",
                ),
            ],
            "ana@example.com",
        ),
        (
            "research-13",
            "bike-commuting",
            "Bike commuting",
            [
                (
                    "wiki/bike-commute.txt",
                    "The average bike commute in Europe is 5.4 km.\n",
                ),
                (
                    "gov/bike-lease.txt",
                    "Leased work bikes are taxed at 0.25% of their price per month.\n",
                ),
                (
                    "study/commute-health.txt",
                    "Cycling to work cut sick days by 15% in a Dutch study.\n",
                ),
                (
                    "shop/rain-gear.txt",
                    "Waterproof overtrousers weigh about 250 g.\n",
                ),
                (
                    "city/bike-parking.txt",
                    "The station garage holds 3,000 bikes, free for 24 hours.\n",
                ),
            ],
            "ben@example.com",
        ),
    ];
    for (id, slug, title, sources, to) in topics {
        let path = format!("research/{slug}.md");
        let devices = [S, E, M, W, P];
        let urls: Vec<String> = sources
            .iter()
            .map(|(p, _)| format!("${{WEB}}/{p}"))
            .collect();
        let mut b = B::new(
            c,
            id,
            &format!("Research from five devices: {title}"),
            &format!(
                "Gather five sources on {} — {} — fetching them from the server, the edge box, \
                 my Mac, the Windows laptop and my phone at the same time, put them together in \
                 {path} on my Mac, and mail {to} the first finding from my Mac.",
                title.to_lowercase(),
                and_list(&urls)
            ),
        );
        let mut ids = Vec::new();
        let mut body = format!("# {title}\n");
        for ((p, text), d) in sources.iter().zip(devices) {
            b.page(p, text);
            let f = b.fetch(
                d,
                &format!("fetch {p} on the {d}"),
                &format!("${{WEB}}/{p}"),
            );
            body.push_str(&format!("\n{}", out(&f)));
            ids.push(f);
        }
        let w = b.sim(
            M,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": body}),
        );
        b.after_all(&ids, &w);
        let m = b.sim(
            M,
            &format!("mail {to}"),
            "mail.send",
            json!({"to": to, "subject": format!("Research: {title}"), "body": format!("First finding: {}", out(&ids[0]))}),
        );
        b.after(&ids[0], &m);
        let texts: Vec<&str> = sources.iter().map(|(_, t)| t.trim_end()).collect();
        b.check(file_has(M, &path, &texts));
        b.check(mail(M, to, None, &[texts[0]], None));
        b.check(count(M, Items::Mails, 1));
        b.unsupported(NO_APPS);
        out_.push(b.done());
    }
    // B: price and spec pages of three vendors, fetched on two devices, in one file.
    {
        let vendors = [
            (
                "synology",
                "Synology DS224+: 349 EUR\n",
                "Synology DS224+: 2 bays, 2.5 GbE, 6 GB RAM max\n",
            ),
            (
                "qnap",
                "QNAP TS-264: 399 EUR\n",
                "QNAP TS-264: 2 bays, 2x 2.5 GbE, 16 GB RAM max\n",
            ),
            (
                "ugreen",
                "UGREEN DXP2800: 299 EUR\n",
                "UGREEN DXP2800: 2 bays, 2.5 GbE, 16 GB RAM max\n",
            ),
        ];
        let path = "research/nas-vendors.md";
        let pages: Vec<String> = vendors
            .iter()
            .flat_map(|(v, _, _)| {
                [
                    format!("${{WEB}}/vendors/{v}-price.txt"),
                    format!("${{WEB}}/vendors/{v}-spec.txt"),
                ]
            })
            .collect();
        let mut b = B::new(
            c,
            "research-14",
            "Compare three NAS vendors",
            &format!(
                "Compare three NAS vendors: fetch their price pages on the server and their spec \
                 pages on the edge box ({}), and put them all in {path} on the Windows laptop.",
                and_list(&pages)
            ),
        );
        let mut ids = Vec::new();
        let mut fetches = Vec::new();
        let mut body = String::from("# NAS vendors\n");
        for (v, price, spec) in &vendors {
            for (kind, text, d) in [("price", price, S), ("spec", spec, E)] {
                let p = format!("vendors/{v}-{kind}.txt");
                b.page(&p, text);
                let f = b.fetch(d, &format!("fetch {p}"), &format!("${{WEB}}/{p}"));
                body.push_str(&format!("\n{}", out(&f)));
                fetches.push(format!("on {d} fetch ${{WEB}}/{p}"));
                ids.push(f);
            }
        }
        let w = b.sim(
            W,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": body}),
        );
        b.after_all(&ids, &w);
        let texts: Vec<&str> = vendors
            .iter()
            .flat_map(|(_, p, s)| [p.trim_end(), s.trim_end()])
            .collect();
        b.check(file_has(W, path, &texts));
        b.rules(&format!(
            "{} then on {W} write the results to {path}",
            and_list(&fetches)
        ));
        out_.push(b.done());
    }
    out_
}
