//! Operations categories: log collection and merge, data fetch-transform-publish, build and
//! test on the server, monitoring and alerting, multi-step research gathering.

// The families are tables of tuples, one row per task, read row by row.
#![allow(clippy::type_complexity)]

use serde_json::json;
use weft_protocol::ConditionOp;

use super::*;
use crate::suite::check::Items;

/// Log lines `DATE T TIME LEVEL component: message`, one per entry.
pub(super) fn log(date: &str, entries: &[(&str, &str, &str)]) -> String {
    entries
        .iter()
        .map(|(time, level, msg)| format!("{date}T{time} {level} {msg}\n"))
        .collect()
}

/// The lines of `texts` that contain `word`, sorted (byte order, as `LC_ALL=C sort`).
pub(super) fn grep_sorted(texts: &[&str], word: &str, unique: bool) -> String {
    let mut lines: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| l.contains(word) && !l.trim().is_empty())
        .collect();
    lines.sort_unstable();
    if unique {
        lines.dedup();
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Each source's logs: (device, path, text).
type Logs<'a> = &'a [(&'a str, &'a str, String)];

pub(super) fn server_log(date: &str, variant: u32) -> String {
    let v = variant;
    log(
        date,
        &[
            ("08:00:01", "INFO", "api: started, 6 workers"),
            (
                &format!("08:1{v}:22"),
                "ERROR",
                &format!("api: upstream timeout after 30s (request {})", 4100 + v),
            ),
            ("08:20:05", "WARN", "api: slow query 2.3s on orders"),
            (
                &format!("09:0{v}:47"),
                "ERROR",
                "db: connection pool exhausted",
            ),
            ("09:30:00", "INFO", "api: health ok"),
        ],
    )
}

fn worker_log(date: &str, variant: u32) -> String {
    log(
        date,
        &[
            ("08:05:10", "INFO", "worker: 120 jobs queued"),
            (
                &format!("08:4{variant}:03"),
                "ERROR",
                "worker: job 77 failed: invalid image",
            ),
            ("09:15:44", "WARN", "worker: retrying job 81"),
        ],
    )
}

pub(super) fn edge_log(date: &str, variant: u32) -> String {
    log(
        date,
        &[
            ("07:59:59", "INFO", "sensor: boot, firmware 2.4.1"),
            (
                &format!("08:3{variant}:10"),
                "ERROR",
                "sensor: humidity probe not responding",
            ),
            (
                "08:45:00",
                "WARN",
                &format!("sensor: temperature drift {variant}.2 C"),
            ),
            ("09:10:00", "INFO", "sensor: uploaded 240 readings"),
        ],
    )
}

pub(super) fn client_log(date: &str, variant: u32) -> String {
    log(
        date,
        &[
            ("08:02:30", "INFO", "client: sync started"),
            (
                &format!("08:5{variant}:12"),
                "ERROR",
                "client: certificate expired for cdn.example.com",
            ),
            ("09:20:18", "WARN", "client: offline for 40s"),
        ],
    )
}

/// `the a, the b and the c`.
pub(super) fn the_list(names: &[String]) -> String {
    let the: Vec<String> = names.iter().map(|n| format!("the {n}")).collect();
    match the.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

fn place(b: &mut B, logs: Logs<'_>) {
    for (d, p, t) in logs {
        b.file(d, p, t);
    }
}

pub fn log_collection() -> Vec<TaskFile> {
    let c = "log-collection";
    let mut out = Vec::new();
    // A: ERROR lines from several devices merged in time order into one file.
    let merges: [(&str, &str, u32, &[&str], &str); 4] = [
        ("logs-01", "2026-03-02", 1, &[S, E], M),
        ("logs-02", "2026-03-03", 2, &[S, E, M], M),
        ("logs-03", "2026-03-04", 3, &[S, E], W),
        ("logs-04", "2026-03-05", 4, &[S, E], W),
    ];
    for (id, date, v, sources, dst) in merges {
        let mut logs: Vec<(&str, &str, String)> = Vec::new();
        for src in sources {
            match *src {
                S => {
                    logs.push((S, "logs/app.log", server_log(date, v)));
                    if id == "logs-04" {
                        logs.push((S, "logs/worker.log", worker_log(date, v)));
                    }
                }
                E => logs.push((E, "logs/sensor.log", edge_log(date, v))),
                _ => logs.push((M, "logs/client.log", client_log(date, v))),
            }
        }
        let path = format!("incidents/{date}.log");
        let names: Vec<String> = sources.iter().map(|s| s.replace('-', " ")).collect();
        let mut b = B::new(
            c,
            id,
            &format!("Merge the errors of {date}"),
            &format!(
                "Collect the ERROR lines from the logs on {} and merge them, in time order, \
                 into {path} on the {}.",
                the_list(&names),
                dst.replace('-', " ")
            ),
        );
        place(&mut b, &logs);
        let collects: Vec<String> = sources
            .iter()
            .map(|src| {
                b.sim(
                    src,
                    &format!("collect the ERROR lines on the {src}"),
                    "log.collect",
                    json!({"dir": "logs", "contains": "ERROR"}),
                )
            })
            .collect();
        let joined: String = collects
            .iter()
            .map(|t| format!("{{{{{t}.output}}}}"))
            .collect();
        let sort = b.sim(
            dst,
            "sort them by time",
            "data.sort",
            json!({"text": joined}),
        );
        b.after_all(&collects, &sort);
        let w = b.sim(
            dst,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": format!("{{{{{sort}.output}}}}")}),
        );
        b.after(&sort, &w);
        let texts: Vec<&str> = logs.iter().map(|(_, _, t)| t.as_str()).collect();
        b.check(file_eq(dst, &path, &grep_sorted(&texts, "ERROR", false)));
        let greps: Vec<String> = sources
            .iter()
            .map(|src| format!("on {src} run \"grep -h ERROR logs/*.log\""))
            .collect();
        let refs: String = (1..=sources.len())
            .map(|i| format!("{{{{t{i}.output}}}}"))
            .collect();
        let rules = if dst == M {
            format!(
                "{} then on {M} run \"mkdir -p incidents && printf %s {refs} | sort > {path}\"",
                greps.join(" and ")
            )
        } else {
            format!(
                "{} then on {S} run \"printf %s {refs} | sort\" then on {dst} write the result to {path}",
                greps.join(" and ")
            )
        };
        b.rules(&rules);
        out.push(b.done());
    }
    // B: how many errors each device logged, in a small report.
    let counts: [(&str, &str, u32, &[&str], &str); 3] = [
        ("logs-05", "2026-03-06", 5, &[S, E], L),
        ("logs-06", "2026-03-07", 6, &[S, E, M], W),
        ("logs-07", "2026-03-08", 7, &[E, M], W),
    ];
    for (id, date, v, sources, dst) in counts {
        let mut logs: Vec<(&str, &str, String)> = Vec::new();
        for src in sources {
            logs.push(match *src {
                S => (S, "logs/app.log", server_log(date, v)),
                E => (E, "logs/sensor.log", edge_log(date, v)),
                _ => (M, "logs/client.log", client_log(date, v)),
            });
        }
        let path = format!("reports/errors-{date}.txt");
        let mut b = B::new(
            c,
            id,
            &format!("Count the errors of {date}"),
            &format!(
                "Count the ERROR lines in the logs of {} and write one line per device, \
                 \"errors on DEVICE: N\", to {path} on the {}.",
                the_list(
                    &sources
                        .iter()
                        .map(|s| s.replace('-', " "))
                        .collect::<Vec<_>>()
                ),
                dst.replace('-', " ")
            ),
        );
        place(&mut b, &logs);
        let mut count_ids = Vec::new();
        for src in sources {
            let col = b.sim(
                src,
                &format!("collect the ERROR lines on the {src}"),
                "log.collect",
                json!({"dir": "logs", "contains": "ERROR"}),
            );
            let n = b.sim(
                src,
                "count them",
                "data.count",
                json!({"text": format!("{{{{{col}.output}}}}")}),
            );
            b.after(&col, &n);
            count_ids.push(n);
        }
        let content: String = sources
            .iter()
            .zip(&count_ids)
            .map(|(s, n)| format!("errors on {s}: {{{{{n}.output}}}}\n"))
            .collect();
        let w = b.sim(
            dst,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": content}),
        );
        b.after_all(&count_ids, &w);
        let expected: Vec<String> = logs
            .iter()
            .map(|(d, _, t)| {
                format!(
                    "errors on {d}: {}",
                    t.lines().filter(|l| l.contains("ERROR")).count()
                )
            })
            .collect();
        let er: Vec<&str> = expected.iter().map(String::as_str).collect();
        b.check(file_has(dst, &path, &er));
        let greps: Vec<String> = sources
            .iter()
            .map(|src| format!("on {src} run \"cat logs/*.log | grep -c ERROR || true\""))
            .collect();
        let text: String = sources
            .iter()
            .enumerate()
            .map(|(i, s)| format!("errors on {s}: {{{{t{}.output}}}}", i + 1))
            .collect();
        b.rules(&format!(
            "{} then on {dst} write \"{text}\" to {path}",
            greps.join(" and ")
        ));
        out.push(b.done());
    }
    // C: logs archived on the server.
    let archives: [(&str, &str, u32, &[&str]); 2] = [
        ("logs-08", "2026-03-09", 8, &[E, M]),
        ("logs-09", "2026-03-10", 9, &[E, M, W]),
    ];
    for (id, date, v, sources) in archives {
        let mut b = B::new(
            c,
            id,
            &format!("Archive the logs of {date} on the server"),
            &format!(
                "Archive today's log files from {} on the server, each under \
                 archive/{date}/DEVICE/.",
                the_list(
                    &sources
                        .iter()
                        .map(|s| s.replace('-', " "))
                        .collect::<Vec<_>>()
                )
            ),
        );
        let mut reads = Vec::new();
        let mut writes = Vec::new();
        for src in sources {
            let (path, text) = match *src {
                E => ("logs/sensor.log", edge_log(date, v)),
                M => ("logs/client.log", client_log(date, v)),
                _ => (
                    "logs/sync.log",
                    log(
                        date,
                        &[
                            ("10:00:00", "INFO", "onedrive: 14 files synced"),
                            ("10:05:00", "WARN", "onedrive: file locked: budget.xlsx"),
                        ],
                    ),
                ),
            };
            b.file(src, path, &text);
            let r = b.sim(
                src,
                &format!("read {path} on the {src}"),
                "file.read",
                json!({"path": path}),
            );
            let to = format!("archive/{date}/{src}/{}", path.trim_start_matches("logs/"));
            reads.push(format!("on {src} read {path}"));
            writes.push((to.clone(), r.clone()));
            b.check(under(
                file_eq(S, &to, &text),
                &format!("archive/{date}/{src}/"),
                path,
            ));
        }
        let mut rules_writes = Vec::new();
        for (i, (to, r)) in writes.iter().enumerate() {
            let w = b.sim(
                S,
                &format!("store {to}"),
                "file.write",
                json!({"path": to, "content": format!("{{{{{r}.output}}}}")}),
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
        out.push(b.done());
    }
    // D: a digest of warnings mailed to the ops team.
    let digests: [(&str, &str, u32, &str); 2] = [
        ("logs-10", "2026-03-11", 1, "ops@example.com"),
        ("logs-11", "2026-03-12", 2, "oncall@example.com"),
    ];
    for (id, date, v, to) in digests {
        let mut b = B::new(
            c,
            id,
            &format!("Mail the warnings of {date}"),
            &format!(
                "Mail {to} from my Mac a digest of every WARN line logged today on the server \
                 and the edge box, in time order, subject \"Warnings {date}\"."
            ),
        );
        let logs = [
            (S, "logs/app.log", server_log(date, v)),
            (E, "logs/sensor.log", edge_log(date, v)),
        ];
        place(&mut b, &logs);
        let a = b.sim(
            S,
            "collect WARN lines on the server",
            "log.collect",
            json!({"dir": "logs", "contains": "WARN"}),
        );
        let e = b.sim(
            E,
            "collect WARN lines on the edge box",
            "log.collect",
            json!({"dir": "logs", "contains": "WARN"}),
        );
        let sort = b.sim(
            M,
            "sort them by time",
            "data.sort",
            json!({"text": "{{t1.output}}{{t2.output}}"}),
        );
        b.after(&a, &sort).after(&e, &sort);
        let m = b.sim(
            M,
            &format!("mail the digest to {to}"),
            "mail.send",
            json!({"to": to, "subject": format!("Warnings {date}"), "body": "{{t3.output}}"}),
        );
        b.after(&sort, &m);
        let texts: Vec<&str> = logs.iter().map(|(_, _, t)| t.as_str()).collect();
        let lines = grep_sorted(&texts, "WARN", false);
        let lr: Vec<&str> = lines.lines().collect();
        // The subject is the request's; the body holds every WARN line and no other.
        b.check(without(
            mail(M, to, Some(&format!("Warnings {date}")), &lr, None),
            &["ERROR", "INFO"],
        ));
        b.check(count(M, Items::Mails, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn data_pipeline() -> Vec<TaskFile> {
    let c = "data-pipeline";
    let mut out = Vec::new();
    // A: fetch a CSV, sum a column, publish the total.
    let sums: [(&str, &str, &str, &str, &str, &str, Option<&str>); 4] = [
        (
            "data-01",
            "data/sales-march.csv",
            "region,rep,amount\nnorth,ana,1200\nsouth,ben,860\neast,chloe,1415\nwest,dario,390\n",
            "amount",
            S,
            L,
            None,
        ),
        (
            "data-02",
            "data/donations.csv",
            "date,donor,eur\n2026-03-01,anon,50\n2026-03-02,k.lee,125\n2026-03-04,anon,20\n",
            "eur",
            S,
            W,
            None,
        ),
        (
            "data-03",
            "data/orders-week-11.csv",
            "order,sku,qty\n9001,BOLT-M6,400\n9002,NUT-M6,380\n9003,WASHER,1000\n9004,BOLT-M8,150\n",
            "qty",
            S,
            M,
            Some("orders_week_11"),
        ),
        (
            "data-04",
            "data/energy-hall-b.csv",
            "hour,kwh\n00,31\n01,29\n02,30\n03,44\n",
            "kwh",
            E,
            S,
            None,
        ),
    ];
    for (id, url_path, csv, column, at, dst, key) in sums {
        let name = url_path
            .trim_start_matches("data/")
            .trim_end_matches(".csv");
        let path = format!("published/{name}-total.txt");
        let total: i64 = csv
            .lines()
            .skip(1)
            .filter_map(|l| {
                let col = csv.lines().next()?.split(',').position(|h| h == column)?;
                l.split(',').nth(col)?.parse::<i64>().ok()
            })
            .sum();
        let col_index = csv
            .lines()
            .next()
            .unwrap_or_default()
            .split(',')
            .position(|h| h == column)
            .unwrap_or(0)
            + 1;
        let mut b = B::new(
            c,
            id,
            &format!("Total of {column} in {name}"),
            &format!(
                "Fetch ${{WEB}}/{url_path} on the {}, add up its \"{column}\" column, and publish \
                 the total to {path} on the {}{}.",
                at.replace('-', " "),
                dst.replace('-', " "),
                match key {
                    Some(k) => format!(" and to my phone's app data as {k}"),
                    None => String::new(),
                }
            ),
        );
        b.page(url_path, csv);
        let f = b.fetch(
            at,
            &format!("fetch {url_path}"),
            &format!("${{WEB}}/{url_path}"),
        );
        let sum = b.sim(
            at,
            &format!("sum the {column} column"),
            "data.sum_csv",
            json!({"text": "{{t1.output}}", "column": column}),
        );
        b.after(&f, &sum);
        let w = b.sim(
            dst,
            &format!("publish {path}"),
            "file.write",
            json!({"path": path, "content": "{{t2.output}}"}),
        );
        b.after(&sum, &w);
        b.check(file_eq(dst, &path, &total.to_string()));
        match key {
            Some(k) => {
                let kvt = b.sim(
                    P,
                    "store the total on the phone",
                    "kv.set",
                    json!({"key": k, "value": "{{t2.output}}"}),
                );
                b.after(&sum, &kvt);
                b.check(kv(P, k, json!(total)));
                b.unsupported(NO_APPS);
            }
            None => {
                b.rules(&format!(
                    "on {at} fetch ${{WEB}}/{url_path} then on {at} run \"printf %s {{{{t1.output}}}} | awk -F, 'NR>1{{s+=${col_index}}} END{{print s}}'\" then on {dst} write the result to {path}"
                ));
            }
        }
        out.push(b.done());
    }
    // B: fetch a feed, keep the lines that matter, publish them.
    let filters: [(&str, &str, &str, &str, &str, &str); 3] = [
        (
            "data-05",
            "feeds/transit.txt",
            "U2 delays 5 min at Alexanderplatz\nS7 on time\nM10 cancelled until 18:00\nU2 platform change at Gleisdreieck\n",
            "U2",
            E,
            S,
        ),
        (
            "data-06",
            "feeds/weather-alerts.txt",
            "BERLIN wind 45 km/h\nHAMBURG storm warning until 22:00\nMUNICH clear\nHAMBURG tide +1.2 m\n",
            "HAMBURG",
            S,
            W,
        ),
        (
            "data-07",
            "feeds/releases.txt",
            "weft 0.9.0 stable\nweft 1.0.0-rc1 pre-release\npetgraph 0.8.1 stable\ntokio 1.44.0 stable\n",
            "stable",
            E,
            M,
        ),
    ];
    for (id, url_path, body, word, at, dst) in filters {
        let name = url_path
            .trim_start_matches("feeds/")
            .trim_end_matches(".txt");
        let path = format!("public/{name}-{}.txt", word.to_lowercase());
        let mut b = B::new(
            c,
            id,
            &format!("Publish the {word} lines of {name}"),
            &format!(
                "Fetch ${{WEB}}/{url_path} on the {}, keep only the lines mentioning {word}, and \
                 publish them as {path} on the {}.",
                at.replace('-', " "),
                dst.replace('-', " ")
            ),
        );
        b.page(url_path, body);
        let f = b.fetch(
            at,
            &format!("fetch {url_path}"),
            &format!("${{WEB}}/{url_path}"),
        );
        let fl = b.sim(
            at,
            &format!("keep the {word} lines"),
            "data.filter",
            json!({"text": "{{t1.output}}", "contains": word}),
        );
        b.after(&f, &fl);
        let w = b.sim(
            dst,
            &format!("publish {path}"),
            "file.write",
            json!({"path": path, "content": "{{t2.output}}"}),
        );
        b.after(&fl, &w);
        let kept: String = body
            .lines()
            .filter(|l| l.contains(word))
            .map(|l| format!("{l}\n"))
            .collect();
        b.check(file_eq(dst, &path, &kept));
        b.rules(&format!(
            "on {at} fetch ${{WEB}}/{url_path} then on {at} run \"printf %s {{{{t1.output}}}} | grep {word}\" then on {dst} write the result to {path}"
        ));
        out.push(b.done());
    }
    // C: two feeds merged without repeats.
    let merges: [(&str, &str, &str, &str, &str, &str); 2] = [
        (
            "data-08",
            "lists/newsletter-a.txt",
            "ana@example.com\nben@example.com\nchloe@example.com\n",
            "lists/newsletter-b.txt",
            "ben@example.com\ndario@example.com\nana@example.com\n",
            "merged/newsletter.txt",
        ),
        (
            "data-09",
            "lists/stock-berlin.txt",
            "BOLT-M6\nNUT-M6\nWASHER-8\n",
            "lists/stock-hamburg.txt",
            "NUT-M6\nHINGE-40\nBOLT-M6\nSCREW-4x30\n",
            "merged/stock.txt",
        ),
    ];
    for (id, a, abody, bp, bbody, path) in merges {
        let mut b = B::new(
            c,
            id,
            &format!("Merge {a} and {bp}"),
            &format!(
                "Fetch ${{WEB}}/{a} on the server and ${{WEB}}/{bp} on the edge box, merge them \
                 sorted without duplicates, and save the result as {path} on the Windows laptop."
            ),
        );
        b.page(a, abody).page(bp, bbody);
        let f1 = b.fetch(S, &format!("fetch {a}"), &format!("${{WEB}}/{a}"));
        let f2 = b.fetch(E, &format!("fetch {bp}"), &format!("${{WEB}}/{bp}"));
        let m = b.sim(
            S,
            "merge without duplicates",
            "data.sort",
            json!({"text": "{{t1.output}}{{t2.output}}", "unique": true}),
        );
        b.after(&f1, &m).after(&f2, &m);
        let w = b.sim(
            W,
            &format!("save {path}"),
            "file.write",
            json!({"path": path, "content": "{{t3.output}}"}),
        );
        b.after(&m, &w);
        b.check(file_eq(W, path, &grep_sorted(&[abody, bbody], "", true)));
        b.rules(&format!(
            "on {S} fetch ${{WEB}}/{a} and on {E} fetch ${{WEB}}/{bp} then on {S} run \"printf %s {{{{t1.output}}}}{{{{t2.output}}}} | sort -u\" then on {W} write the result to {path}"
        ));
        out.push(b.done());
    }
    // D: count the open items of a feed and keep the figure in an app, with a notification.
    let counts: [(&str, &str, &str, &str, &str); 2] = [
        (
            "data-10",
            "feeds/orders.txt",
            "9001 open\n9002 shipped\n9003 open\n9004 open\n9005 cancelled\n",
            "open",
            "open_orders",
        ),
        (
            "data-11",
            "feeds/tickets.txt",
            "T-311 urgent printer\nT-312 normal vpn\nT-313 urgent payroll\n",
            "urgent",
            "urgent_tickets",
        ),
    ];
    for (id, url_path, body, word, key) in counts {
        let n = body.lines().filter(|l| l.contains(word)).count();
        let mut b = B::new(
            c,
            id,
            &format!("Count the {word} items"),
            &format!(
                "Count the {word} entries in ${{WEB}}/{url_path} (fetch it on the server), keep \
                 the number in the Windows laptop's app data as {key}, and notify me there."
            ),
        );
        b.page(url_path, body);
        let f = b.fetch(
            S,
            &format!("fetch {url_path}"),
            &format!("${{WEB}}/{url_path}"),
        );
        let cnt = b.sim(
            S,
            &format!("count the {word} lines"),
            "data.count",
            json!({"text": "{{t1.output}}", "contains": word}),
        );
        b.after(&f, &cnt);
        let k = b.sim(
            W,
            &format!("store {key}"),
            "kv.set",
            json!({"key": key, "value": "{{t2.output}}"}),
        );
        let nt = b.sim(W, "notify on the laptop", "notify", json!({"title": format!("{word} items"), "body": format!("{{{{t2.output}}}} {word} in {url_path}")}));
        b.after(&cnt, &k).after(&cnt, &nt);
        b.check(kv(W, key, json!(n)));
        // The number, in any words.
        b.check(notification(W, &[&n.to_string()]));
        b.check(count(W, Items::Notifications, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn build_test() -> Vec<TaskFile> {
    let c = "build-test";
    let mut out = Vec::new();
    let tests = |fails: &[&str], names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("{n}: {}\n", if fails.contains(n) { "fail" } else { "pass" }))
            .collect()
    };
    // A: build on the server; the log to the Mac; tell about a failure, record a success.
    let builds: [(&str, &str, &[&str], &[&str]); 4] = [
        (
            "build-01",
            "checkout",
            &["test_cart_total", "test_coupon", "test_tax_eu"],
            &[],
        ),
        (
            "build-02",
            "search",
            &["test_index", "test_ranking", "test_typos", "test_facets"],
            &["test_typos"],
        ),
        (
            "build-03",
            "billing",
            &["test_invoice_pdf", "test_refund"],
            &[],
        ),
        (
            "build-04",
            "mobile-api",
            &["test_login", "test_push", "test_upload"],
            &["test_push", "test_upload"],
        ),
    ];
    for (id, p, names, fails) in builds {
        let project = format!("projects/{p}");
        let log_path = format!("builds/{p}.log");
        let mut b = B::new(
            c,
            id,
            &format!("Build {p} and report"),
            &format!(
                "Build and test {p} on the Linux server, copy the build log to my Mac as \
                 {log_path}; if tests fail, notify me on the Mac with how many, and if it passes, \
                 record {p} as last_green in the Windows laptop's app data."
            ),
        );
        b.file(S, &format!("{project}/tests.txt"), &tests(fails, names))
            .file(S, &format!("{project}/src/main.rs"), "fn main() {}\n");
        let bt = b.sim(
            S,
            &format!("build and test {p}"),
            "build.run",
            json!({"project": project}),
        );
        let w = b.sim(
            M,
            "copy the log to the Mac",
            "file.write",
            json!({"path": log_path, "content": "{{t1.output}}"}),
        );
        b.after(&bt, &w);
        let n = b.sim(M, "notify about the failure", "notify", json!({"title": format!("{p} build failed"), "body": "{{t1.output.failed}} failing tests"}));
        let k = b.sim(
            W,
            "record the green build",
            "kv.set",
            json!({"key": "last_green", "value": p}),
        );
        b.when(&bt, &n, "/status", ConditionOp::Equals, json!("failed"));
        b.when(&bt, &k, "/status", ConditionOp::Equals, json!("passed"));
        let status = if fails.is_empty() { "passed" } else { "failed" };
        // The log: its outcome and every failing test, however the log is laid out.
        let mut wanted = vec![status];
        wanted.extend(fails.iter().copied());
        b.check(file_has(M, &log_path, &wanted));
        if fails.is_empty() {
            b.check(kv(W, "last_green", json!(p)));
            b.check(no_notification(M));
        } else {
            // How many failed, in any words; and no green build recorded.
            b.check(notification(M, &[&fails.len().to_string()]));
            b.check(count(M, Items::Notifications, 1));
            b.check(no_kv(W, "last_green"));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // B: the same project built on the server and on the Mac at once.
    let matrix: [(&str, &str, &[&str], &[&str], &[&str]); 3] = [
        // The two machines disagree, so that both builds must have run where asked.
        (
            "build-05",
            "renderer",
            &["test_shapes", "test_text", "test_gpu"],
            &[],
            &["test_gpu"],
        ),
        (
            "build-06",
            "sync-engine",
            &["test_merge", "test_conflicts"],
            &["test_conflicts"],
            &[],
        ),
        (
            "build-07",
            "cli",
            &["test_parse", "test_help", "test_paths"],
            &[],
            &["test_paths", "test_help"],
        ),
    ];
    for (id, p, names, server_fails, mac_fails) in matrix {
        let project = format!("projects/{p}");
        let path = format!("builds/{p}-matrix.txt");
        let mut b = B::new(
            c,
            id,
            &format!("Build {p} on Linux and macOS"),
            &format!(
                "Build and test {p} on the Linux server and on the Mac at the same time, and \
                 write both results to {path} on the Windows laptop."
            ),
        );
        b.file(
            S,
            &format!("{project}/tests.txt"),
            &tests(server_fails, names),
        )
        .file(M, &format!("{project}/tests.txt"), &tests(mac_fails, names));
        let b1 = b.sim(
            S,
            "build on the server",
            "build.run",
            json!({"project": project}),
        );
        let b2 = b.sim(
            M,
            "build on the Mac",
            "build.run",
            json!({"project": project}),
        );
        let w = b.sim(W, "write the matrix", "file.write", json!({"path": path, "content": "linux-server: {{t1.output.status}}\nmac-laptop: {{t2.output.status}}\n"}));
        b.after(&b1, &w).after(&b2, &w);
        // Both outcomes (one passed, one failed), in any layout.
        assert!(
            server_fails.is_empty() != mac_fails.is_empty(),
            "{id}: the outcomes must differ"
        );
        b.check(file_has(W, &path, &["passed", "failed"]));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // C: last night's build log to a laptop.
    let logs: [(&str, &str, &str, &str); 2] = [
        (
            "build-08",
            "payments",
            W,
            "build projects/payments: passed\nok   test_charge\nok   test_refund\n2 passed, 0 failed\n",
        ),
        (
            "build-09",
            "gateway",
            M,
            "build projects/gateway: failed\nok   test_routes\nFAIL test_tls\n1 passed, 1 failed\n",
        ),
    ];
    for (id, p, dst, text) in logs {
        let src = format!("projects/{p}/build.log");
        let to = format!("builds/{p}-nightly.log");
        let mut b = B::new(
            c,
            id,
            &format!("Fetch the {p} nightly log"),
            &format!(
                "Copy last night's build log of {p} from the server ({src}) to the {} as {to}.",
                dst.replace('-', " ")
            ),
        );
        b.file(S, &src, text);
        let r = b.sim(S, &format!("read {src}"), "file.read", json!({"path": src}));
        let w = b.sim(
            dst,
            &format!("save {to}"),
            "file.write",
            json!({"path": to, "content": "{{t1.output}}"}),
        );
        b.after(&r, &w);
        b.check(file_eq(dst, &to, text));
        b.rules(&format!(
            "on {S} read {src} then on {dst} write the result to {to}"
        ));
        out.push(b.done());
    }
    // D: a failed build mailed to the team; a green one only logged.
    let mails: [(&str, &str, &[&str], &[&str]); 2] = [
        (
            "build-10",
            "importer",
            &["test_csv", "test_xlsx", "test_encoding"],
            &["test_encoding"],
        ),
        ("build-11", "exporter", &["test_json", "test_parquet"], &[]),
    ];
    for (id, p, names, fails) in mails {
        let project = format!("projects/{p}");
        let mut b = B::new(
            c,
            id,
            &format!("Build {p}; mail the team if it fails"),
            &format!(
                "Build {p} on the server. If it fails, mail the report to team@example.com from \
                 my Mac; either way, append the outcome to builds/history.log on the server."
            ),
        );
        b.file(S, &format!("{project}/tests.txt"), &tests(fails, names));
        let bt = b.sim(
            S,
            &format!("build {p}"),
            "build.run",
            json!({"project": project}),
        );
        let m = b.sim(M, "mail the team", "mail.send", json!({"to": "team@example.com", "subject": format!("{p} build failed"), "body": "{{t1.output}}"}));
        let h = b.sim(
            S,
            "append to the build history",
            "log.append",
            json!({"path": "builds/history.log", "line": format!("{p}: {{{{t1.output.status}}}}")}),
        );
        b.when(&bt, &m, "/status", ConditionOp::Equals, json!("failed"));
        b.after(&bt, &h);
        let (status, other) = if fails.is_empty() {
            ("passed", "failed")
        } else {
            ("failed", "passed")
        };
        // The outcome, in any layout, and not the other one.
        b.check(without(
            file_has(S, "builds/history.log", &[p, status]),
            &[other],
        ));
        if fails.is_empty() {
            b.check(no_mail(M));
        } else {
            // The report names the failing tests; the subject is free.
            b.check(mail(M, "team@example.com", None, fails, None));
            b.check(count(M, Items::Mails, 1));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn monitoring() -> Vec<TaskFile> {
    let c = "monitoring";
    let mut out = Vec::new();
    // A: a threshold; an alert on the phone when crossed, a log line when not.
    let checks: [(&str, &str, &str, f64, f64, &str); 4] = [
        (
            "mon-01",
            S,
            "disk_used_pct",
            93.0,
            90.0,
            "The nightly backups land on the server tonight.",
        ),
        (
            "mon-02",
            S,
            "disk_used_pct",
            71.0,
            90.0,
            "We cleaned up old releases yesterday.",
        ),
        (
            "mon-03",
            E,
            "temp_c",
            78.5,
            75.0,
            "The edge box sits in a sunny window.",
        ),
        (
            "mon-04",
            S,
            "mem_used_pct",
            64.0,
            85.0,
            "The new cache went live this morning.",
        ),
    ];
    for (id, dev, metric, value, max, context) in checks {
        let breach = value > max;
        let shown = |x: f64| {
            if x.fract() == 0.0 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        };
        let mut b = B::new(
            c,
            id,
            &format!("Watch {metric} on the {dev}"),
            &format!(
                "{context} Check {metric} on the {} against {}: above it, alert my phone; \
                 otherwise just log the reading to monitor/checks.log there.",
                dev.replace('-', " "),
                shown(max)
            ),
        );
        b.dev(dev).metrics.insert(metric.into(), value);
        let ck = b.sim(
            dev,
            &format!("check {metric}"),
            "metric.check",
            json!({"name": metric, "max": max}),
        );
        let alert = b.sim(
            P,
            "alert the phone",
            "notify",
            json!({"title": format!("{metric} alert on {dev}"), "body": "{{t1.output}}"}),
        );
        let logit = b.sim(
            dev,
            "log the reading",
            "log.append",
            json!({"path": "monitor/checks.log", "line": "{{t1.output}}"}),
        );
        b.when(&ck, &alert, "/breach", ConditionOp::Equals, json!(true));
        b.when(&ck, &logit, "/breach", ConditionOp::Equals, json!(false));
        if breach {
            // One alert, in any words; no reading logged.
            b.check(count(P, Items::Notifications, 1));
            b.check(no_file(dev, "monitor/checks.log"));
        } else {
            // The reading is logged (its value, in any layout); no alert.
            b.check(no_notification(P));
            b.check(file_has(dev, "monitor/checks.log", &[&shown(value)]));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // B: a status report of the fleet from three devices' readings.
    let fleets: [(&str, &[(&str, &str, f64)], &str); 3] = [
        (
            "mon-05",
            &[
                (S, "cpu_pct", 37.0),
                (E, "temp_c", 41.5),
                (P, "battery_pct", 82.0),
            ],
            W,
        ),
        (
            "mon-06",
            &[
                (S, "load_avg", 2.75),
                (E, "humidity_pct", 58.0),
                (M, "disk_used_pct", 66.0),
            ],
            W,
        ),
        (
            "mon-07",
            &[
                (S, "open_connections", 412.0),
                (E, "uptime_h", 731.0),
                (P, "storage_free_gb", 18.0),
            ],
            M,
        ),
    ];
    for (id, readings, dst) in fleets {
        let path = format!("status/fleet-{id}.txt");
        let mut b = B::new(
            c,
            id,
            "Fleet status report",
            &format!(
                "Read {} and write them, one per line, to {path} on the {}.",
                readings
                    .iter()
                    .map(|(d, m, _)| format!("{m} on the {}", d.replace('-', " ")))
                    .collect::<Vec<_>>()
                    .join(", "),
                dst.replace('-', " ")
            ),
        );
        let mut ids = Vec::new();
        let mut content = String::new();
        let mut wanted = Vec::new();
        for (d, m, v) in readings.iter() {
            b.dev(d).metrics.insert((*m).into(), *v);
            let t = b.sim(
                d,
                &format!("read {m} on the {d}"),
                "metric.read",
                json!({"name": m}),
            );
            content.push_str(&format!("{d} {m}: {{{{{t}.output}}}}\n"));
            let shown = if v.fract() == 0.0 {
                format!("{}", *v as i64)
            } else {
                format!("{v}")
            };
            // Each reading's name (as the request gives it) and value, in any layout.
            wanted.push((*m).to_owned());
            wanted.push(shown);
            ids.push(t);
        }
        let w = b.sim(
            dst,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": content}),
        );
        b.after_all(&ids, &w);
        let wr: Vec<&str> = wanted.iter().map(String::as_str).collect();
        b.check(file_has(dst, &path, &wr));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // C: a health endpoint, polled from the edge box.
    {
        let mut b = B::new(
            c,
            "mon-08",
            "Record the health endpoint",
            "Fetch ${WEB}/health from the edge box and save what it says to monitor/health.txt on the server.",
        );
        let body = "status: ok\ndb: ok\nqueue: 12 jobs\n";
        b.page("health", body);
        let f = b.fetch(E, "fetch the health endpoint", "${WEB}/health");
        let w = b.sim(
            S,
            "save it on the server",
            "file.write",
            json!({"path": "monitor/health.txt", "content": "{{t1.output}}"}),
        );
        b.after(&f, &w);
        b.check(file_eq(S, "monitor/health.txt", body));
        b.rules(&format!(
            "on {E} fetch ${{WEB}}/health then on {S} write the result to monitor/health.txt"
        ));
        out.push(b.done());
    }
    let health: [(&str, &str, &str); 2] = [
        (
            "mon-09",
            "status/api",
            "status: degraded\ndb: slow (p99 2.4s)\n",
        ),
        ("mon-10", "status/search", "status: ok\nindex: fresh\n"),
    ];
    for (id, page, body) in health {
        let degraded = body.contains("degraded");
        let mut b = B::new(
            c,
            id,
            &format!("Watch {page}"),
            &format!(
                "Poll ${{WEB}}/{page} from the edge box; if it reports degraded, alert my phone. \
                 Log every poll to monitor/{}.log on the edge box.",
                page.replace('/', "-")
            ),
        );
        b.page(page, body);
        let log_path = format!("monitor/{}.log", page.replace('/', "-"));
        let f = b.fetch(E, &format!("poll {page}"), &format!("${{WEB}}/{page}"));
        let a = b.sim(
            P,
            "alert the phone",
            "notify",
            json!({"title": format!("{page} degraded"), "body": "{{t1.output}}"}),
        );
        let l = b.sim(
            E,
            "log the poll",
            "log.append",
            json!({"path": log_path, "line": format!("{page}: {{{{t1.output.status}}}}")}),
        );
        b.when(&f, &a, "/body", ConditionOp::Contains, json!("degraded"));
        b.after_any(&f, &l);
        // The poll is logged (in any words); one alert when degraded, none otherwise.
        b.check(file_has(E, &log_path, &[]));
        if degraded {
            b.check(count(P, Items::Notifications, 1));
        } else {
            b.check(no_notification(P));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // D: a temperature check that is always logged, and texted to on-call when too hot.
    {
        let mut b = B::new(
            c,
            "mon-11",
            "Edge temperature watch",
            "Check the edge box's temperature against 70 C; if it is hotter, text the on-call \
             engineer (Priya) from my phone. Whatever the outcome, append \"checked\" to \
             monitor/temp.log on the edge box.",
        );
        // Below the threshold: the text branch must leave no trace.
        b.dev(E).metrics.insert("temp_c".into(), 68.0);
        let ck = b.sim(
            E,
            "check the temperature",
            "metric.check",
            json!({"name": "temp_c", "max": 70}),
        );
        let tx = b.sim(
            P,
            "text the on-call engineer",
            "message.send",
            json!({"to": "Priya", "text": "Edge box too hot: {{t1.output}}"}),
        );
        let lg = b.sim(
            E,
            "log the check",
            "log.append",
            json!({"path": "monitor/temp.log", "line": "checked"}),
        );
        b.when(&ck, &tx, "/breach", ConditionOp::Equals, json!(true));
        b.after_any(&ck, &lg);
        b.check(count(P, Items::Messages, 0));
        b.check(file_eq(E, "monitor/temp.log", "checked"));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn research() -> Vec<TaskFile> {
    let c = "research";
    let mut out = Vec::new();
    // (id, topic slug, title, three sources (path, body), note + mail to)
    type Source<'a> = (&'a str, &'a str);
    let topics: [(&str, &str, &str, [Source<'_>; 3], Option<&str>); 7] = [
        (
            "research-01",
            "heat-pumps",
            "Heat pumps",
            [
                (
                    "wiki/heat-pump.txt",
                    "A heat pump moves heat instead of making it.\nTypical COP is 3 to 4 for air-source units.\n",
                ),
                (
                    "gov/heat-pump-grants.txt",
                    "Grants cover up to 70% of installation costs in 2026.\n",
                ),
                (
                    "forum/heat-pump-noise.txt",
                    "Owners report 35-45 dB at one metre from the outdoor unit.\n",
                ),
            ],
            None,
        ),
        (
            "research-02",
            "sourdough",
            "Sourdough hydration",
            [
                (
                    "wiki/sourdough.txt",
                    "Sourdough is leavened by wild yeast and lactobacilli.\n",
                ),
                (
                    "blog/hydration-75.txt",
                    "At 75% hydration the crumb opens without the dough spreading.\n",
                ),
                (
                    "video/shaping-notes.txt",
                    "Shape with tension; cold-retard 12 to 16 hours.\n",
                ),
            ],
            None,
        ),
        (
            "research-03",
            "ebike-batteries",
            "E-bike batteries",
            [
                (
                    "wiki/li-ion.txt",
                    "Lithium-ion cells last 500 to 1000 full cycles.\n",
                ),
                (
                    "shop/battery-care.txt",
                    "Store batteries at 40-60% charge when not in use.\n",
                ),
                (
                    "news/battery-recycling.txt",
                    "EU rules require 63% battery recycling efficiency by 2027.\n",
                ),
            ],
            None,
        ),
        (
            "research-04",
            "rainwater",
            "Rainwater harvesting",
            [
                (
                    "wiki/rainwater.txt",
                    "One millimetre of rain on one square metre is one litre.\n",
                ),
                (
                    "city/rainwater-rules.txt",
                    "Tanks above 10 m3 need a permit in the city.\n",
                ),
                (
                    "forum/first-flush.txt",
                    "A first-flush diverter keeps roof dirt out of the tank.\n",
                ),
            ],
            None,
        ),
        (
            "research-05",
            "standing-desks",
            "Standing desks",
            [
                (
                    "wiki/standing-desk.txt",
                    "Alternate sitting and standing every 30 to 60 minutes.\n",
                ),
                (
                    "review/desk-motors.txt",
                    "Dual-motor frames lift 120 kg and are quieter.\n",
                ),
                (
                    "study/posture.txt",
                    "Monitor top at eye level reduces neck strain.\n",
                ),
            ],
            Some("ana@example.com"),
        ),
        (
            "research-06",
            "solar-balcony",
            "Balcony solar",
            [
                (
                    "wiki/plug-in-solar.txt",
                    "Plug-in solar kits feed up to 800 W into a socket.\n",
                ),
                (
                    "gov/balcony-solar.txt",
                    "Registration with the grid operator is free and online.\n",
                ),
                (
                    "forum/balcony-yield.txt",
                    "A south balcony yields about 600 kWh a year.\n",
                ),
            ],
            Some("ben@example.com"),
        ),
        (
            "research-07",
            "cold-brew",
            "Cold brew coffee",
            [
                (
                    "wiki/cold-brew.txt",
                    "Cold brew steeps coarse coffee in cold water for 12 to 24 hours.\n",
                ),
                (
                    "blog/ratio.txt",
                    "A 1:8 ratio gives a concentrate to dilute 1:1.\n",
                ),
                (
                    "study/acidity.txt",
                    "Cold brew measures slightly less acidic than hot coffee.\n",
                ),
            ],
            Some("chloe@example.com"),
        ),
    ];
    for (id, slug, title, sources, share) in topics {
        let path = format!("research/{slug}.md");
        let devices = [S, E, M];
        let mut b = B::new(
            c,
            id,
            &format!("Research: {title}"),
            &format!(
                "Gather three sources on {} — ${{WEB}}/{}, ${{WEB}}/{} and ${{WEB}}/{} — fetching \
                 them from the server, the edge box and the Mac at the same time, and put them \
                 together in {path} on the Mac{}.",
                title.to_lowercase(),
                sources[0].0,
                sources[1].0,
                sources[2].0,
                match share {
                    Some(to) => format!(
                        "; then make a note \"{title}\" pointing to it and mail {to} the first finding"
                    ),
                    None => String::new(),
                }
            ),
        );
        let mut ids = Vec::new();
        for ((p, body), d) in sources.iter().zip(devices) {
            b.page(p, body);
            ids.push(b.fetch(
                d,
                &format!("fetch {p} on the {d}"),
                &format!("${{WEB}}/{p}"),
            ));
        }
        let w = b.sim(
            M,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": format!("# {title}\n\n{{{{t1.output}}}}\n{{{{t2.output}}}}\n{{{{t3.output}}}}")}),
        );
        b.after_all(&ids, &w);
        let firsts: Vec<&str> = sources
            .iter()
            .map(|(_, body)| body.lines().next().unwrap_or_default())
            .collect();
        b.check(file_has(M, &path, &firsts));
        match share {
            Some(to) => {
                let n = b.sim(M, "make a note", "note.create", json!({"title": title, "body": "Sources collected in {{t4.output.path}}", "folder": "research"}));
                let m = b.sim(M, &format!("mail {to}"), "mail.send", json!({"to": to, "subject": format!("Research: {title}"), "body": "First finding: {{t1.output}}"}));
                b.after(&w, &n).after(&w, &m);
                b.check(note(M, title, &[&path]));
                // The first finding; the subject is free.
                b.check(mail(M, to, None, &[firsts[0]], None));
                b.check(count(M, Items::Mails, 1));
                b.unsupported(NO_APPS);
            }
            None => {
                b.rules(&format!(
                    "on {S} fetch ${{WEB}}/{}, on {E} fetch ${{WEB}}/{} and on {M} fetch ${{WEB}}/{} then on {M} write the results to {path}",
                    sources[0].0, sources[1].0, sources[2].0
                ));
            }
        }
        out.push(b.done());
    }
    // C: an index page names the latest article; fetch that one and keep its key findings.
    let chains: [(&str, &str, &str, &str); 2] = [
        (
            "research-08",
            "batteries",
            "articles/solid-state-2026.txt",
            "Solid-state cells entered pilot production.\nKey finding: energy density reached 450 Wh/kg.\nKey finding: cycle life is still below 800.\nOutlook: cars by 2028.\n",
        ),
        (
            "research-09",
            "sleep",
            "articles/sleep-and-memory.txt",
            "A study followed 300 adults for a year.\nKey finding: 7 to 8 hours of sleep improved recall by 18%.\nMethods: actigraphy and weekly tests.\nKey finding: naps did not replace night sleep.\n",
        ),
    ];
    for (id, topic, article, body) in chains {
        let index = format!("index/{topic}.txt");
        let path = format!("research/{topic}-findings.txt");
        let mut b = B::new(
            c,
            id,
            &format!("Key findings on {topic}"),
            &format!(
                "Our reading list at ${{WEB}}/{index} names the latest article on {topic}; fetch \
                 that article on the server and save its \"Key finding\" lines to {path} on the \
                 Windows laptop."
            ),
        );
        // The index holds the article's URL and nothing else.
        b.page(&index, &format!("${{WEB}}/{article}"));
        b.page(article, body);
        let i = b.fetch(S, "fetch the reading list", &format!("${{WEB}}/{index}"));
        let a = b.fetch(S, "fetch the article it names", "{{t1.output}}");
        let f = b.sim(
            S,
            "keep the key findings",
            "data.filter",
            json!({"text": "{{t2.output}}", "contains": "Key finding"}),
        );
        let w = b.sim(
            W,
            &format!("save {path}"),
            "file.write",
            json!({"path": path, "content": "{{t3.output}}"}),
        );
        b.after(&i, &a).after(&a, &f).after(&f, &w);
        let kept: String = body
            .lines()
            .filter(|l| l.contains("Key finding"))
            .map(|l| format!("{l}\n"))
            .collect();
        b.check(file_eq(W, &path, &kept));
        b.unsupported(
            "the rules grammar fetches only literal URLs; here the URL is what the first fetch \
             returned",
        );
        out.push(b.done());
    }
    // D: the inbox and the web, gathered into one file, its path on the clipboard.
    let mixes: [(&str, &str, &str, &str, &str); 2] = [
        (
            "research-10",
            "grant",
            "Grant deadline",
            "The grant deadline is May 15; budgets above 50k need two quotes.",
            "funding/grant-call.txt",
        ),
        (
            "research-11",
            "venue",
            "Venue options",
            "Venue A: 80 seats, 1,900 EUR/day; venue B: 120 seats, 2,600 EUR/day.",
            "events/venues.txt",
        ),
    ];
    for (id, topic, subject, mail_body, page) in mixes {
        let path = format!("research/{topic}-sources.md");
        let page_body = format!("Official page on the {topic}: details updated 2026-03-01.\n");
        let mut b = B::new(
            c,
            id,
            &format!("Gather what we know about the {topic}"),
            &format!(
                "Put together what we know about the {topic}: the mail about it in the Windows \
                 laptop's inbox and ${{WEB}}/{page} (fetch it on the edge box), in {path} on the \
                 Mac, and copy that file's path to the Mac's clipboard."
            ),
        );
        b.dev(W).inbox.push(weft_agent::sim::Mail {
            from: "office@example.com".into(),
            to: vec!["me@example.com".into()],
            subject: subject.into(),
            body: mail_body.into(),
            attachments: vec![],
        });
        b.page(page, &page_body);
        let q = b.sim(
            W,
            &format!("search the inbox for {topic}"),
            "mail.search",
            json!({"query": topic}),
        );
        let f = b.fetch(E, &format!("fetch {page}"), &format!("${{WEB}}/{page}"));
        let w = b.sim(
            M,
            &format!("write {path}"),
            "file.write",
            json!({"path": path, "content": "{{t1.output}}---\n{{t2.output}}"}),
        );
        b.after(&q, &w).after(&f, &w);
        let cl = b.sim(
            M,
            "copy the path",
            "clipboard.set",
            json!({"text": "{{t3.output.path}}"}),
        );
        b.after(&w, &cl);
        b.check(file_has(M, &path, &[mail_body, page_body.trim_end()]));
        b.check(clipboard_eq(M, &path));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}
