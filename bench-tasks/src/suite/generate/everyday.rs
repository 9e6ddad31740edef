//! Everyday categories: file sync and backup, report assembly, phone notifications and
//! messages, calendar and reminders, photo and document hand-off.

// The families are tables of tuples, one row per task, read row by row.
#![allow(clippy::type_complexity)]

use serde_json::json;
use weft_protocol::ConditionOp;

use super::*;
use crate::suite::check::Items;

const MIB: u64 = weft_agent::seeded::MIB;

/// Copies each file from `src` to `dst` under `prefix`: reads in parallel, each write after
/// its read. Returns the write task ids.
fn copy_files(
    b: &mut B,
    src: &str,
    dst: &str,
    files: &[(&str, &str)],
    prefix: &str,
) -> Vec<String> {
    let reads: Vec<String> = files
        .iter()
        .map(|(path, content)| {
            b.file(src, path, content);
            b.sim(
                src,
                &format!("read {path} on the {src}"),
                "file.read",
                json!({"path": path}),
            )
        })
        .collect();
    files
        .iter()
        .zip(&reads)
        .map(|((path, _), r)| {
            let to = format!("{prefix}{path}");
            let w = b.sim(
                dst,
                &format!("save {path} as {to} on the {dst}"),
                "file.write",
                json!({"path": to, "content": format!("{{{{{r}.output}}}}")}),
            );
            b.after(r, &w);
            w
        })
        .collect()
}

/// The rules text for the same copies: reads joined by "and", then writes of each read.
fn copy_rules(src: &str, dst: &str, files: &[(&str, &str)], prefix: &str) -> String {
    let reads: Vec<String> = files
        .iter()
        .map(|(p, _)| format!("on {src} read {p}"))
        .collect();
    let writes: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            format!(
                "on {dst} write \"{{{{t{}.output}}}}\" to {prefix}{p}",
                i + 1
            )
        })
        .collect();
    format!("{} then {}", reads.join(" and "), writes.join(" and "))
}

/// Sends each binary file from `src` and copies it on every device of `dsts` under `prefix`:
/// a `file.read` per file on `src` declaring it as an output (in parallel), then on each
/// destination a `file.copy` of the received file. Returns the copying task ids.
fn send_files(
    b: &mut B,
    src: &str,
    dsts: &[&str],
    files: &[(&str, u64)],
    prefix: &str,
) -> Vec<String> {
    let mut copies = Vec::new();
    for (path, size) in files {
        b.seeded_file(src, path, *size);
        let r = b.sim(
            src,
            &format!("send {path} from the {src}"),
            "file.read",
            json!({"path": path}),
        );
        b.sends(&r, &[path]);
        for dst in dsts {
            let to = format!("{prefix}{path}");
            copies.push(b.receive(
                dst,
                &format!("save {path} as {to} on the {dst}"),
                &r,
                path,
                &to,
            ));
        }
    }
    copies
}

/// Why the rules grammar cannot move a file to the Windows laptop.
const NO_SHELL_COPY: &str = "the rules grammar moves a file with `copy`, whose receiving task \
     runs `cp` with `shell` on the destination, and the Windows laptop has no shell";

/// The rules clause that moves files `copy` put at their own paths on `dst` under `prefix`.
fn move_rule(dst: &str, files: &[(&str, u64)], prefix: &str) -> String {
    let mut dirs: Vec<String> = files
        .iter()
        .filter_map(|(p, _)| {
            format!("{prefix}{p}")
                .rsplit_once('/')
                .map(|(d, _)| d.to_owned())
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    let moves: Vec<String> = files
        .iter()
        .map(|(p, _)| format!("mv {p} {prefix}{p}"))
        .collect();
    format!(
        "on {dst} run \"mkdir -p {} && {}\"",
        dirs.join(" "),
        moves.join(" && ")
    )
}

/// The rules text for copies of text files (read, then write) and binary files (`copy`, then
/// moved under `prefix`) from `src` to `dst`.
fn copy_rules_with_binaries(
    src: &str,
    dst: &str,
    files: &[(&str, &str)],
    binaries: &[(&str, u64)],
    prefix: &str,
) -> String {
    let mut first: Vec<String> = files
        .iter()
        .map(|(p, _)| format!("on {src} read {p}"))
        .collect();
    first.extend(
        binaries
            .iter()
            .map(|(p, _)| format!("copy {p} from {src} to {dst}")),
    );
    let mut second: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            format!(
                "on {dst} write \"{{{{t{}.output}}}}\" to {prefix}{p}",
                i + 1
            )
        })
        .collect();
    second.push(move_rule(dst, binaries, prefix));
    format!("{} then {}", first.join(" and "), second.join(" and "))
}

pub fn file_sync() -> Vec<TaskFile> {
    let c = "file-sync";
    let mut out = Vec::new();
    // A: back files up from a laptop to the server, optionally telling the phone.
    let backups: [(&str, &str, &str, &[(&str, &str)], bool); 5] = [
        (
            "sync-01",
            M,
            "my thesis introduction",
            &[(
                "thesis/ch1-introduction.md",
                "# 1 Introduction\n\nAgents that span laptops, phones and servers need one plan.\nThis chapter states the problem and the three research questions.\n",
            )],
            false,
        ),
        (
            "sync-02",
            W,
            "the budget files",
            &[
                (
                    "finance/budget-2026.csv",
                    "month,rent,food,travel\njan,1200,410,95\nfeb,1200,388,240\n",
                ),
                (
                    "finance/invoices-q1.txt",
                    "INV-1041 Northwind 2300 EUR paid\nINV-1042 Contoso 870 EUR open\n",
                ),
            ],
            true,
        ),
        (
            "sync-03",
            M,
            "the three recipes",
            &[
                (
                    "recipes/shakshuka.md",
                    "Shakshuka: 6 eggs, 800 g tomatoes, 1 onion, cumin, paprika.\n",
                ),
                (
                    "recipes/dal.md",
                    "Red lentil dal: 250 g lentils, coconut milk, ginger, turmeric.\n",
                ),
                (
                    "recipes/focaccia.md",
                    "Focaccia: 500 g flour, 400 ml water, 10 g salt, olive oil, rosemary.\n",
                ),
            ],
            false,
        ),
        (
            "sync-04",
            M,
            "my lecture notes",
            &[
                (
                    "lectures/week-07-consensus.md",
                    "Week 7: Raft elects a leader per term; logs are replicated by the leader.\n",
                ),
                (
                    "lectures/week-08-crdts.md",
                    "Week 8: CRDTs merge without coordination; G-counters only grow.\n",
                ),
            ],
            true,
        ),
        (
            "sync-05",
            W,
            "the signed contracts",
            &[
                (
                    "contracts/acme-2026.txt",
                    "Contract ACME-2026: support hours 9-17 CET, renewal 2027-01-01.\n",
                ),
                (
                    "contracts/globex-nda.txt",
                    "NDA Globex: mutual, 3 years, signed 2026-02-11.\n",
                ),
                (
                    "contracts/initech-sow.txt",
                    "SOW Initech: migration of 14 services, fixed price 48k.\n",
                ),
            ],
            false,
        ),
    ];
    for (id, src, what, files, notify) in backups {
        let prefix = format!("backup/{src}/");
        let paths: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        let request = format!(
            "Back up {what} ({}) from my {} to the Linux server, under backup/{src}/{}.",
            paths.join(", "),
            src.replace('-', " "),
            if notify {
                ", and let me know on my phone when the backup is done"
            } else {
                ""
            }
        );
        let mut b = B::new(c, id, &format!("Back up {what} to the server"), &request);
        let writes = copy_files(&mut b, src, S, files, &prefix);
        for (p, content) in files.iter() {
            b.check(under(
                file_eq(S, &format!("{prefix}{p}"), content),
                &prefix,
                p,
            ));
        }
        if notify {
            let n = b.sim(
                P,
                "tell the phone the backup is done",
                "notify",
                json!({"title": "Backup done", "body": format!("{} files from the {src} are on the server", files.len())}),
            );
            b.after_all(&writes, &n);
            // The request says when, not what: one notification, in any words.
            b.check(count(P, Items::Notifications, 1));
            b.unsupported(NO_APPS);
        } else {
            b.rules(&copy_rules(src, S, files, &prefix));
        }
        out.push(b.done());
    }
    // B: two-way sync between the laptops.
    let pairs: [(&str, (&str, &str), (&str, &str)); 2] = [
        (
            "sync-06",
            (
                "shared/agenda.md",
                "Agenda 2026-03-04\n1. Q1 numbers\n2. Hiring\n3. Offsite venue\n",
            ),
            (
                "shared/action-items.md",
                "- Ana: send Q1 deck by Friday\n- Ben: book the venue\n",
            ),
        ),
        (
            "sync-07",
            (
                "site/index.html",
                "<html><body><h1>Studio Lumen</h1><p>Now booking spring shoots.</p></body></html>\n",
            ),
            (
                "site/style.css",
                "body { font-family: Georgia; }\nh1 { color: #2b4c7e; }\n",
            ),
        ),
    ];
    for (id, (wpath, wtext), (mpath, mtext)) in pairs {
        let mut b = B::new(
            c,
            id,
            "Sync a folder between the two laptops",
            &format!(
                "Make both laptops have the same files: copy {wpath} from the Windows laptop to \
                 the Mac and {mpath} from the Mac to the Windows laptop."
            ),
        );
        b.file(W, wpath, wtext).file(M, mpath, mtext);
        let r1 = b.sim(
            W,
            &format!("read {wpath} on the Windows laptop"),
            "file.read",
            json!({"path": wpath}),
        );
        let r2 = b.sim(
            M,
            &format!("read {mpath} on the Mac"),
            "file.read",
            json!({"path": mpath}),
        );
        let w1 = b.sim(
            M,
            &format!("save {wpath} on the Mac"),
            "file.write",
            json!({"path": wpath, "content": "{{t1.output}}"}),
        );
        let w2 = b.sim(
            W,
            &format!("save {mpath} on the Windows laptop"),
            "file.write",
            json!({"path": mpath, "content": "{{t2.output}}"}),
        );
        b.after(&r1, &w1).after(&r2, &w2);
        b.rules(&format!(
            "on {W} read {wpath} and on {M} read {mpath} then on {M} write \"{{{{t1.output}}}}\" to {wpath} and on {W} write \"{{{{t2.output}}}}\" to {mpath}"
        ));
        for d in [W, M] {
            b.check(file_eq(d, wpath, wtext));
            b.check(file_eq(d, mpath, mtext));
        }
        out.push(b.done());
    }
    // C: back up a folder and write a manifest of what is on the server. Some of its files
    // are binary (seeded at reset, a few MiB): they go as files, checked by their SHA-256.
    let manifests: [(&str, &str, &str, &[(&str, &str)], &[(&str, u64)]); 2] = [
        (
            "sync-08",
            M,
            "design",
            &[
                (
                    "design/logo.svg",
                    "<svg viewBox=\"0 0 10 10\"><circle cx=\"5\" cy=\"5\" r=\"4\"/></svg>\n",
                ),
                (
                    "design/palette.txt",
                    "primary #2b4c7e\naccent #e08a2c\nbackground #fdfcf9\n",
                ),
            ],
            &[("design/brand-guide.pdf", 3 * MIB)],
        ),
        (
            "sync-09",
            W,
            "tax",
            &[(
                "tax/2025-receipts.txt",
                "donation 150\ntraining course 890\nwork laptop 1,240\n",
            )],
            &[
                ("tax/2025-return.pdf", 2 * MIB + MIB / 2),
                ("tax/payslips-2025.zip", 3 * MIB + MIB / 2),
            ],
        ),
    ];
    for (id, src, folder, files, binaries) in manifests {
        let mut b = B::new(
            c,
            id,
            &format!("Back up the {folder} folder with a manifest"),
            &format!(
                "Copy the {folder} folder from my {} to the server under backup/{folder}/ and \
                 write a MANIFEST.txt there listing every file that is now in the backup.",
                src.replace('-', " ")
            ),
        );
        let mut writes = copy_files(&mut b, src, S, files, "backup/");
        writes.extend(send_files(&mut b, src, &[S], binaries, "backup/"));
        let list = b.sim(
            S,
            &format!("list backup/{folder} on the server"),
            "file.list",
            json!({"dir": format!("backup/{folder}")}),
        );
        b.after_all(&writes, &list);
        let manifest = format!("backup/{folder}/MANIFEST.txt");
        let w = b.sim(
            S,
            "write the manifest",
            "file.write",
            json!({"path": manifest, "content": format!("{{{{{list}.output}}}}")}),
        );
        b.after(&list, &w);
        b.rules(&format!(
            "{} then on {S} run \"find backup/{folder} -type f | sort\" then on {S} write the result to {manifest}",
            copy_rules_with_binaries(src, S, files, binaries, "backup/")
        ));
        // Every file's name (a listing may give paths from the workdir, the folder or none).
        let listed: Vec<&str> = files
            .iter()
            .map(|(p, _)| *p)
            .chain(binaries.iter().map(|(p, _)| *p))
            .map(|p| p.rsplit('/').next().unwrap_or(p))
            .collect();
        b.check(file_has(S, &manifest, &listed));
        for (p, content) in files.iter() {
            b.check(file_eq(S, &format!("backup/{p}"), content));
        }
        for (p, size) in binaries.iter() {
            b.check(seeded_at(S, &format!("backup/{p}"), src, p, *size));
        }
        out.push(b.done());
    }
    // D: push a config file from the server to other devices.
    let configs: [(&str, &str, &str, &[&str], Option<&str>); 2] = [
        (
            "sync-10",
            "config/app.toml",
            "[server]\nport = 8443\nworkers = 6\n[features]\nbeta_search = true\n",
            &[E, W],
            None,
        ),
        (
            "sync-11",
            "config/sensors.toml",
            "version = \"v14\"\n[intervals]\ntemperature_s = 30\nhumidity_s = 60\n",
            &[E],
            Some("v14"),
        ),
    ];
    for (id, path, text, targets, version) in configs {
        let names: Vec<String> = targets.iter().map(|t| t.replace('-', " ")).collect();
        let mut b = B::new(
            c,
            id,
            &format!("Roll out {path} from the server"),
            &format!(
                "Copy {path} from the Linux server to the {}{}.",
                names.join(" and the "),
                match version {
                    Some(v) => format!(
                        ", and record on my phone (app data key sensor_config_version) that {v} is deployed"
                    ),
                    None => String::new(),
                }
            ),
        );
        b.file(S, path, text);
        let r = b.sim(
            S,
            &format!("read {path} on the server"),
            "file.read",
            json!({"path": path}),
        );
        let mut writes = Vec::new();
        for t in targets.iter() {
            let w = b.sim(
                t,
                &format!("install {path} on the {t}"),
                "file.write",
                json!({"path": path, "content": "{{t1.output}}"}),
            );
            b.after(&r, &w);
            writes.push(w);
            b.check(file_eq(t, path, text));
        }
        match version {
            Some(v) => {
                let k = b.sim(
                    P,
                    "record the deployed version on the phone",
                    "kv.set",
                    json!({"key": "sensor_config_version", "value": v}),
                );
                b.after_all(&writes, &k);
                b.check(kv(P, "sensor_config_version", json!(v)));
                b.unsupported(NO_APPS);
            }
            None => {
                let w: Vec<String> = targets
                    .iter()
                    .map(|t| format!("on {t} write \"{{{{t1.output}}}}\" to {path}"))
                    .collect();
                b.rules(&format!("on {S} read {path} then {}", w.join(" and ")));
            }
        }
        out.push(b.done());
    }
    // E: binary files (documents, a spreadsheet, an archive, a slide deck, a firmware image;
    // seeded at reset, a few MiB each) moved as files: the source sends each, every
    // destination copies what it received; checked by their SHA-256.
    let moves: [(
        &str,
        &str,
        &str,
        &str,
        &[(&str, u64)],
        &[(&str, &str)],
        bool,
    ); 5] = [
        (
            "sync-15",
            "Back up two scanned documents to the server",
            "Back up my scanned passport (docs/passport-scan.pdf) and my health insurance card \
             (docs/health-insurance.pdf) from my windows laptop to the Linux server, under \
             backup/windows-laptop/.",
            W,
            &[
                ("docs/passport-scan.pdf", 2 * MIB + MIB / 2),
                ("docs/health-insurance.pdf", MIB + MIB / 2),
            ],
            &[(S, "backup/windows-laptop/")],
            false,
        ),
        (
            "sync-16",
            "Copy a spreadsheet to the Mac",
            "Copy my household budget spreadsheet finance/household-2026.xlsx from the Windows \
             laptop to my Mac, at the same path.",
            W,
            &[("finance/household-2026.xlsx", 3 * MIB)],
            &[(M, "")],
            false,
        ),
        (
            "sync-17",
            "Archive the March photos on the server",
            "Copy the photo archive photos/2026-03.zip from my phone to the Linux server, under \
             archive/, and let me know on my phone when it is there.",
            P,
            &[("photos/2026-03.zip", 4 * MIB)],
            &[(S, "archive/")],
            true,
        ),
        (
            "sync-18",
            "Copy a slide deck to the Windows laptop",
            "Copy the slide deck talks/kickoff-2026.pptx from my Mac to the Windows laptop, at \
             the same path.",
            M,
            &[("talks/kickoff-2026.pptx", 3 * MIB + MIB / 2)],
            &[(W, "")],
            false,
        ),
        (
            "sync-19",
            "Roll out a firmware image",
            "Roll out the firmware image firmware/sensor-v15.bin from the Linux server to the edge \
             box and my phone, at the same path.",
            S,
            &[("firmware/sensor-v15.bin", 2 * MIB + MIB / 4)],
            &[(E, ""), (P, "")],
            false,
        ),
    ];
    for (id, title, request, src, binaries, dests, notify) in moves {
        let mut b = B::new(c, id, title, request);
        let mut receives = Vec::new();
        for (dst, prefix) in dests {
            receives.extend(send_files(&mut b, src, &[dst], binaries, prefix));
            for (p, size) in binaries.iter() {
                let at = seeded_at(dst, &format!("{prefix}{p}"), src, p, *size);
                // "At the same path" (no prefix) allows one place only.
                b.check(if prefix.is_empty() {
                    at
                } else {
                    under(at, prefix, p)
                });
            }
        }
        if notify {
            let n = b.sim(
                P,
                "tell the phone the archive is there",
                "notify",
                json!({"title": "Archive copied", "body": format!("{} is on the server", binaries[0].0)}),
            );
            b.after_all(&receives, &n);
            b.check(count(P, Items::Notifications, 1));
            b.unsupported(NO_APPS);
        } else if dests.iter().any(|(d, _)| *d == W) {
            b.unsupported(NO_SHELL_COPY);
        } else {
            let copies: Vec<String> = dests
                .iter()
                .flat_map(|(d, _)| {
                    binaries
                        .iter()
                        .map(move |(p, _)| format!("copy {p} from {src} to {d}"))
                })
                .collect();
            let moved: Vec<String> = dests
                .iter()
                .filter(|(_, prefix)| !prefix.is_empty())
                .map(|(d, prefix)| move_rule(d, binaries, prefix))
                .collect();
            let mut rules = copies.join(" and ");
            if !moved.is_empty() {
                rules = format!("{rules} then {}", moved.join(" and "));
            }
            b.rules(&rules);
        }
        out.push(b.done());
    }
    out
}

pub fn report_assembly() -> Vec<TaskFile> {
    let c = "report-assembly";
    let mut out = Vec::new();
    // (id, week, notes, kpis, third source (device, path, text), mail to)
    let weeks: [(&str, u32, &str, &str, (&str, &str, &str), Option<&str>); 8] = [
        (
            "report-01",
            12,
            "Meeting w12: launch date confirmed for April 2.\nRisks: payment provider sandbox is flaky.\n",
            "signups 1840\nchurn 2.1%\nNPS 41\n",
            (P, "health/steps-w12.txt", "average steps 8120\n"),
            None,
        ),
        (
            "report-02",
            13,
            "Meeting w13: beta opened to 200 users.\nDecision: drop the legacy exporter.\n",
            "signups 2210\nchurn 1.9%\nNPS 44\n",
            (
                E,
                "sensors/office-w13.txt",
                "office CO2 peak 1180 ppm on Tuesday\n",
            ),
            None,
        ),
        (
            "report-03",
            14,
            "Meeting w14: hiring two support engineers.\nOffsite moved to May 21.\n",
            "signups 2480\nchurn 2.4%\nNPS 39\n",
            (P, "health/steps-w14.txt", "average steps 6930\n"),
            None,
        ),
        (
            "report-04",
            15,
            "Meeting w15: pricing page A/B test ends Friday.\nInvoices now sent on the 1st.\n",
            "signups 2650\nchurn 2.0%\nNPS 45\n",
            (
                E,
                "sensors/office-w15.txt",
                "office temperature average 21.4 C\n",
            ),
            None,
        ),
        (
            "report-05",
            16,
            "Meeting w16: SOC 2 audit kickoff on Monday.\nNew on-call rotation from May.\n",
            "signups 2790\nchurn 1.8%\nNPS 47\n",
            (P, "health/steps-w16.txt", "average steps 9410\n"),
            Some("maria.keller@example.com"),
        ),
        (
            "report-06",
            17,
            "Meeting w17: mobile app 3.2 shipped.\nCustomer council scheduled for June.\n",
            "signups 3010\nchurn 1.7%\nNPS 48\n",
            (
                E,
                "sensors/office-w17.txt",
                "meeting rooms occupied 64% of the week\n",
            ),
            Some("board@example.com"),
        ),
        (
            "report-07",
            18,
            "Meeting w18: support backlog down to 31 tickets.\nDesign system v2 adopted.\n",
            "signups 2950\nchurn 2.2%\nNPS 46\n",
            (P, "health/steps-w18.txt", "average steps 7770\n"),
            Some("team-leads@example.com"),
        ),
        (
            "report-08",
            19,
            "Meeting w19: data retention policy approved.\nQ2 OKR review next week.\n",
            "signups 3180\nchurn 1.6%\nNPS 50\n",
            (
                E,
                "sensors/office-w19.txt",
                "office CO2 peak 960 ppm on Thursday\n",
            ),
            Some("maria.keller@example.com"),
        ),
    ];
    for (id, week, notes, kpis, (third_dev, third_path, third_text), mail_to) in weeks {
        let notes_path = format!("notes/meeting-w{week}.md");
        let kpi_path = format!("kpi/week-{week}.txt");
        let report = format!("reports/week-{week}.md");
        let third_label = if third_dev == P {
            "my step count from the phone"
        } else {
            "the office sensor summary from the edge box"
        };
        // Some weeks the report may be written on either laptop.
        let any_laptop = week % 2 == 1 && mail_to.is_none();
        let request = format!(
            "Put together the week {week} report on {} ({report}): the meeting \
             notes from my Mac ({notes_path}), the KPIs from our dashboard at ${{WEB}}/{kpi_path} \
             (fetch it from the server) and {third_label} ({third_path}){}.",
            if any_laptop {
                "either laptop"
            } else {
                "the Windows laptop"
            },
            match mail_to {
                Some(to) => format!(", then mail it to {to} as an attachment"),
                None => String::new(),
            }
        );
        let mut b = B::new(c, id, &format!("Week {week} report"), &request);
        b.file(M, &notes_path, notes)
            .file(third_dev, third_path, third_text)
            .page(&kpi_path, kpis);
        let t1 = b.sim(
            M,
            "read the meeting notes on the Mac",
            "file.read",
            json!({"path": notes_path}),
        );
        let t2 = b.fetch(
            S,
            "fetch the KPIs from the dashboard",
            &format!("${{WEB}}/{kpi_path}"),
        );
        let t3 = b.sim(
            third_dev,
            &format!("read {third_path} on the {third_dev}"),
            "file.read",
            json!({"path": third_path}),
        );
        let content = json!({"path": report, "content": format!(
            "# Week {week} report\n\n## Meeting notes\n{{{{t1.output}}}}\n## KPIs\n{{{{t2.output}}}}\n## Other\n{{{{t3.output}}}}"
        )});
        let t4 = if any_laptop {
            b.sim_on_kind(
                "laptop",
                "write the report on a laptop",
                "file.write",
                content,
            )
        } else {
            b.sim(
                W,
                "write the report on the Windows laptop",
                "file.write",
                content,
            )
        };
        b.after_all(&[t1, t2, t3], &t4);
        let first = |t: &str| t.lines().next().unwrap_or_default().to_owned();
        let k: Vec<String> = vec![first(notes), first(kpis), first(third_text)];
        let kr: Vec<&str> = k.iter().map(String::as_str).collect();
        b.check(file_has(
            if any_laptop { "any:laptop" } else { W },
            &report,
            &kr,
        ));
        match mail_to {
            Some(to) => {
                let m = b.sim(
                    W,
                    &format!("mail the report to {to}"),
                    "mail.send",
                    json!({"to": to, "subject": format!("Week {week} report"), "body": "Hi, the weekly report is attached.", "attachments": [report]}),
                );
                b.after(&t4, &m);
                // The request names no subject or text: the attachment is what counts.
                b.check(mail(W, to, None, &[], Some(&report)));
                b.check(count(W, Items::Mails, 1));
                b.unsupported(NO_APPS);
            }
            None => {
                let writer = if any_laptop { "laptop" } else { W };
                b.rules(&format!(
                    "on {M} read {notes_path}, on {S} fetch ${{WEB}}/{kpi_path} and on {third_dev} read {third_path} then on {writer} write the results to {report}"
                ));
            }
        }
        out.push(b.done());
    }
    // C: a morning brief from the apps themselves.
    let briefs: [(&str, &str, &str, u32, &[(&str, &str)]); 3] = [
        (
            "report-09",
            "2026-03-09",
            "Q1 planning: ship offline mode; cut cloud costs 15%; hire a designer.",
            9120,
            &[
                ("2026-03-09T09:30", "Standup"),
                ("2026-03-09T14:00", "Design review"),
            ],
        ),
        (
            "report-10",
            "2026-03-10",
            "Q1 planning: migrate billing to the new provider before April.",
            4310,
            &[
                ("2026-03-10T11:00", "Vendor call"),
                ("2026-03-10T16:30", "1:1 with Ben"),
            ],
        ),
        (
            "report-11",
            "2026-03-11",
            "Q1 planning: customer interviews, 12 done of 20.",
            11030,
            &[
                ("2026-03-11T10:00", "Interview: Fabrikam"),
                ("2026-03-11T13:00", "Lunch with Ana"),
                ("2026-03-11T17:00", "Gym"),
            ],
        ),
    ];
    for (id, date, plan_note, steps, events) in briefs {
        let brief = format!("briefs/{date}.md");
        let mut b = B::new(
            c,
            id,
            &format!("Morning brief for {date}"),
            &format!(
                "Make my morning brief for {date} in {brief} on the Windows laptop: today's \
                 events from the Mac calendar, my \"Q1 planning\" note, and yesterday's steps \
                 (steps_yesterday in the phone's app data); then copy the brief to the Mac's \
                 clipboard."
            ),
        );
        b.dev(M).notes.push(weft_agent::sim::Note {
            title: "Q1 planning".into(),
            body: plan_note.into(),
            folder: "work".into(),
        });
        for (start, title) in events.iter() {
            b.dev(M).calendar.push(weft_agent::sim::Event {
                title: (*title).into(),
                start: (*start).into(),
                ..Default::default()
            });
        }
        b.dev(M).calendar.push(weft_agent::sim::Event {
            title: "Dentist".into(),
            start: "2026-03-20T08:00".into(),
            ..Default::default()
        });
        // The request names the key: no planner can guess where an app keeps a number.
        b.dev(P).kv.insert("steps_yesterday".into(), json!(steps));
        let t1 = b.sim(
            M,
            "list today's events on the Mac",
            "calendar.list",
            json!({"date": date}),
        );
        let t2 = b.sim(
            M,
            "read the Q1 planning note",
            "note.read",
            json!({"title": "Q1 planning"}),
        );
        let t3 = b.sim(
            P,
            "read yesterday's steps on the phone",
            "kv.get",
            json!({"key": "steps_yesterday"}),
        );
        // The brief's text is known once its three sources are read: the file and the
        // clipboard are written from it at once.
        let text = format!(
            "# Brief {date}\n\n{{{{t1.output}}}}\n{{{{t2.output}}}}\n\nSteps yesterday: {{{{t3.output}}}}\n"
        );
        let sources = [t1, t2, t3];
        let t4 = b.sim(
            W,
            "write the brief",
            "file.write",
            json!({"path": brief, "content": text}),
        );
        b.after_all(&sources, &t4);
        let t5 = b.sim(
            M,
            "copy the brief to the Mac clipboard",
            "clipboard.set",
            json!({"text": text}),
        );
        b.after_all(&sources, &t5);
        // The data: each event's time and title, the note, the step count; not the event of
        // another day.
        let mut wanted: Vec<String> = Vec::new();
        for (start, title) in events.iter() {
            wanted.push(start.rsplit('T').next().unwrap_or(start).to_owned());
            wanted.push((*title).to_owned());
        }
        wanted.push(plan_note.to_owned());
        wanted.push(steps.to_string());
        let wr: Vec<&str> = wanted.iter().map(String::as_str).collect();
        b.check(without(file_has(W, &brief, &wr), &["Dentist"]));
        b.check(Check::Clipboard {
            device: s(M),
            equals: None,
            contains: strs(&wr),
        });
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn phone_messaging() -> Vec<TaskFile> {
    let c = "phone-messaging";
    let mut out = Vec::new();
    // A: a status file on the server, texted to someone.
    let deploys: [(&str, &str, &str, &str); 3] = [
        (
            "phone-01",
            "checkout",
            "deployed v4.12.0 to production at 14:02, all health checks green",
            "+49 151 2345 6789",
        ),
        (
            "phone-02",
            "search",
            "rollback to v2.8.3 after error rate rose to 4%",
            "Ben",
        ),
        (
            "phone-03",
            "billing",
            "canary at 10% since 09:40, no errors so far",
            "Priya",
        ),
    ];
    for (id, app, status, to) in deploys {
        let path = format!("status/deploy-{app}.txt");
        let mut b = B::new(
            c,
            id,
            &format!("Text the {app} deploy status"),
            &format!(
                "Text {to} from my phone what the server says about the {app} deploy ({path})."
            ),
        );
        b.file(S, &path, &format!("{status}\n"));
        let r = b.sim(
            S,
            &format!("read {path} on the server"),
            "file.read",
            json!({"path": path}),
        );
        let m = b.sim(
            P,
            &format!("text {to}"),
            "message.send",
            json!({"to": to, "text": format!("{app} deploy: {{{{t1.output}}}}")}),
        );
        b.after(&r, &m);
        b.check(message(P, to, &[status]));
        b.check(count(P, Items::Messages, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // B: a laptop's clipboard as a phone notification.
    let clips: [(&str, &str, &str); 2] = [
        ("phone-04", M, "Gate B42, boarding 18:05, seat 14C"),
        ("phone-05", W, "Wi-Fi: StudioGuest / password lumen-2026"),
    ];
    for (id, dev, text) in clips {
        let mut b = B::new(
            c,
            id,
            "Send my clipboard to the phone",
            &format!(
                "Show what is on the {}'s clipboard as a notification on my phone.",
                dev.replace('-', " ")
            ),
        );
        b.dev(dev).clipboard = text.to_owned();
        let g = b.sim(dev, "read the laptop clipboard", "clipboard.get", json!({}));
        let n = b.sim(
            P,
            "notify on the phone",
            "notify",
            json!({"title": "From your laptop", "body": "{{t1.output}}"}),
        );
        b.after(&g, &n);
        b.check(notification(P, &[text]));
        b.check(count(P, Items::Notifications, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // C: the same news texted to several people at once.
    let groups: [(&str, &str, &[&str]); 3] = [
        (
            "phone-06",
            "Dinner moved to 20:00 at Lupa",
            &["Ana", "Ben", "Chloe"],
        ),
        (
            "phone-07",
            "Climbing cancelled tomorrow, gym closed",
            &["Dario", "Emma"],
        ),
        (
            "phone-08",
            "Standup starts 15 min late today",
            &["Femi", "Greta", "Hugo", "Ines"],
        ),
    ];
    for (id, news, people) in groups {
        let mut b = B::new(
            c,
            id,
            &format!("Text {} people", people.len()),
            &format!(
                "Text {} from my phone: \"{news}\", each message starting with their name, and \
                 show me a notification once all are sent.",
                people.join(", ")
            ),
        );
        let sends: Vec<String> = people
            .iter()
            .map(|p| {
                b.sim(
                    P,
                    &format!("text {p}"),
                    "message.send",
                    json!({"to": p, "text": format!("{p}, {news}")}),
                )
            })
            .collect();
        let n = b.sim(P, "confirm on the phone", "notify", json!({"title": "Messages sent", "body": format!("{} people know: {news}", people.len())}));
        b.after_all(&sends, &n);
        // Each person once, the news and their name in it; one notification, in any words.
        for p in people.iter() {
            b.check(message(P, p, &[p, news]));
            b.check(count_to(P, Items::Messages, p, 1));
        }
        b.check(count(P, Items::Messages, people.len()));
        b.check(count(P, Items::Notifications, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // D: what the laptop's inbox has about something, as a phone notification.
    let inboxes: [(&str, &str, &[(&str, &str, &str)], usize); 3] = [
        (
            "phone-09",
            "invoice",
            &[
                (
                    "billing@northwind.example",
                    "Invoice 2291 due",
                    "Your invoice 2291 over 340 EUR is due on March 15.",
                ),
                ("ana@example.com", "Lunch?", "Free on Thursday?"),
                (
                    "billing@contoso.example",
                    "Invoice 77 paid",
                    "Thanks, invoice 77 is paid.",
                ),
            ],
            2,
        ),
        (
            "phone-10",
            "delivery",
            &[
                (
                    "noreply@parcels.example",
                    "Delivery today",
                    "Your parcel arrives between 13:00 and 15:00.",
                ),
                ("ben@example.com", "Slides", "Here are the slides."),
            ],
            1,
        ),
        (
            "phone-11",
            "interview",
            &[
                (
                    "hr@fabrikam.example",
                    "Interview slot",
                    "Your interview is on March 18 at 10:00.",
                ),
                (
                    "hr@fabrikam.example",
                    "Interview prep",
                    "Please bring a short portfolio.",
                ),
                ("news@shop.example", "Spring sale", "Up to 40% off."),
            ],
            2,
        ),
    ];
    for (id, topic, mails, hits) in inboxes {
        let mut b = B::new(
            c,
            id,
            &format!("Notify me about {topic} mails"),
            &format!(
                "Check the Windows laptop's inbox for mail about \"{topic}\" and tell me on my \
                 phone how many there are and what the latest says."
            ),
        );
        for (from, subject, body) in mails.iter() {
            b.dev(W).inbox.push(weft_agent::sim::Mail {
                from: (*from).into(),
                to: vec!["me@example.com".into()],
                subject: (*subject).into(),
                body: (*body).into(),
                attachments: vec![],
            });
        }
        let q = b.sim(
            W,
            &format!("search the inbox for {topic}"),
            "mail.search",
            json!({"query": topic}),
        );
        let n = b.sim(P, "notify on the phone", "notify", json!({"title": format!("{topic} mail"), "body": "{{t1.output.count}} mails; latest: {{t1.output.summary}}"}));
        b.after(&q, &n);
        let last = mails
            .iter()
            .rfind(|(_, s, bd)| {
                s.to_lowercase().contains(topic) || bd.to_lowercase().contains(topic)
            })
            .map(|(_, _, bd)| *bd)
            .unwrap_or_default();
        // How many, and the latest one's text; nothing of a mail about something else.
        let others: Vec<&str> = mails
            .iter()
            .filter(|(_, s, bd)| {
                !s.to_lowercase().contains(topic) && !bd.to_lowercase().contains(topic)
            })
            .map(|(_, _, bd)| *bd)
            .collect();
        b.check(without(
            notification(P, &[&hits.to_string(), last]),
            &others,
        ));
        b.check(count(P, Items::Notifications, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn calendar() -> Vec<TaskFile> {
    let c = "calendar";
    let mut out = Vec::new();
    // A: one event on every device with a calendar.
    let everywhere: [(&str, &str, &str, &str, &str); 3] = [
        (
            "cal-01",
            "Team offsite",
            "2026-05-21T09:00",
            "2026-05-21T17:00",
            "Villa Hügel",
        ),
        (
            "cal-02",
            "Flight LH 2034 to Munich",
            "2026-04-03T07:15",
            "2026-04-03T08:20",
            "BER Terminal 1",
        ),
        (
            "cal-03",
            "Parents' evening",
            "2026-03-26T18:30",
            "2026-03-26T20:00",
            "Riverside School",
        ),
    ];
    for (id, title, start, end, location) in everywhere {
        let mut b = B::new(
            c,
            id,
            &format!("Put \"{title}\" on every calendar"),
            &format!(
                "Add \"{title}\" ({start} to {end}, at {location}) to the calendars on both \
                 laptops and my phone."
            ),
        );
        for d in [W, M, P] {
            b.sim(
                d,
                &format!("add the event on the {d}"),
                "calendar.add",
                json!({"title": title, "start": start, "end": end, "location": location}),
            );
            b.check(event(d, title, start, None));
            b.check(count(d, Items::Events, 1));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // B: a meeting proposed by mail, booked with a reminder.
    let invites: [(&str, &str, &str, &str, &str, &str, &str); 3] = [
        (
            "cal-04",
            "roadmap",
            "Roadmap review",
            "2026-03-12T15:00",
            "2026-03-12T14:45",
            "lena@example.com",
            "Bring the Q2 estimates.",
        ),
        (
            "cal-05",
            "contract",
            "Contract call with Initech",
            "2026-03-17T11:00",
            "2026-03-17T10:45",
            "legal@initech.example",
            "We will go through clause 7 (liability).",
        ),
        (
            "cal-06",
            "kickoff",
            "Project kickoff",
            "2026-03-23T09:30",
            "2026-03-23T09:15",
            "pm@fabrikam.example",
            "Agenda: scope, timeline, roles.",
        ),
    ];
    for (id, key, title, start, due, from, last_line) in invites {
        let mut b = B::new(
            c,
            id,
            &format!("Book the {key} meeting from the mail"),
            &format!(
                "Find the mail about the {key} on my Mac, put \"{title}\" at {start} in the Mac's \
                 calendar with the sender invited, and remind me on the phone 15 minutes before \
                 with what the mail asks me to prepare."
            ),
        );
        b.dev(M).inbox.push(weft_agent::sim::Mail {
            from: from.into(),
            to: vec!["me@example.com".into()],
            subject: format!("Re: {key}"),
            body: format!("Can we meet on {start}?\n{last_line}"),
            attachments: vec![],
        });
        let q = b.sim(
            M,
            &format!("find the {key} mail"),
            "mail.search",
            json!({"query": key}),
        );
        let e = b.sim(
            M,
            "add the meeting to the Mac calendar",
            "calendar.add",
            json!({"title": title, "start": start, "attendees": [from]}),
        );
        let r = b.sim(
            P,
            "add the reminder on the phone",
            "reminder.add",
            json!({"text": format!("{title}: {{{{t1.output.summary}}}}"), "due": due}),
        );
        b.after(&q, &e).after(&q, &r);
        b.check(event(M, title, start, Some(from)));
        // What the mail asks to prepare; the reminder's own words are free.
        b.check(reminder(P, due, &[last_line]));
        b.check(count(P, Items::Reminders, 1));
        b.check(count(M, Items::Events, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // C: today's agenda from the Mac as a reminder on the phone.
    let agendas: [(&str, &str, &[(&str, &str)]); 2] = [
        (
            "cal-07",
            "2026-03-13",
            &[
                ("2026-03-13T09:00", "Standup"),
                ("2026-03-13T12:30", "Lunch with Omar"),
                ("2026-03-13T16:00", "Release retro"),
            ],
        ),
        (
            "cal-08",
            "2026-03-16",
            &[
                ("2026-03-16T10:00", "Budget review"),
                ("2026-03-16T15:00", "Dentist"),
            ],
        ),
    ];
    for (id, date, events) in agendas {
        let due = format!("{date}T07:45");
        let mut b = B::new(
            c,
            id,
            &format!("Agenda for {date} on the phone"),
            &format!(
                "At 07:45 on {date}, remind me on my phone of that day's agenda from the Mac calendar."
            ),
        );
        for (start, title) in events.iter() {
            b.dev(M).calendar.push(weft_agent::sim::Event {
                title: (*title).into(),
                start: (*start).into(),
                ..Default::default()
            });
        }
        b.dev(M).calendar.push(weft_agent::sim::Event {
            title: "Other day".into(),
            start: "2026-04-01T10:00".into(),
            ..Default::default()
        });
        let l = b.sim(
            M,
            &format!("list the events of {date}"),
            "calendar.list",
            json!({"date": date}),
        );
        let r = b.sim(
            P,
            "remind me of the agenda",
            "reminder.add",
            json!({"text": "Agenda: {{t1.output}}", "due": due}),
        );
        b.after(&l, &r);
        let titles: Vec<&str> = events.iter().map(|(_, t)| *t).collect();
        b.check(without(reminder(P, &due, &titles), &["Other day"]));
        b.check(count(P, Items::Reminders, 1));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // D: book a slot only if the day is free; else say so on the phone.
    let slots: [(&str, &str, &str, bool); 3] = [
        ("cal-09", "2026-03-19", "Focus day", true),
        ("cal-10", "2026-03-24", "Car service", false),
        ("cal-11", "2026-03-27", "Day off", true),
    ];
    for (id, date, title, free) in slots {
        let start = format!("{date}T09:00");
        let mut b = B::new(
            c,
            id,
            &format!("Book \"{title}\" if {date} is free"),
            &format!(
                "If nothing is on the Windows laptop's calendar on {date}, book \"{title}\" there \
                 at 09:00; otherwise tell me on my phone what is in the way."
            ),
        );
        if !free {
            b.dev(W).calendar.push(weft_agent::sim::Event {
                title: "Quarterly review".into(),
                start: format!("{date}T10:00"),
                ..Default::default()
            });
        }
        let l = b.sim(
            W,
            &format!("list the events of {date}"),
            "calendar.list",
            json!({"date": date}),
        );
        let add = b.sim(
            W,
            &format!("book {title}"),
            "calendar.add",
            json!({"title": title, "start": start}),
        );
        let busy = b.sim(
            P,
            "say the day is taken",
            "notify",
            json!({"title": format!("{date} is busy"), "body": "{{t1.output}}"}),
        );
        b.when(&l, &add, "/count", ConditionOp::Equals, json!(0));
        b.when(&l, &busy, "/count", ConditionOp::NotEquals, json!(0));
        if free {
            b.check(event(W, title, &start, None));
            b.check(count(W, Items::Events, 1));
            b.check(no_notification(P));
        } else {
            // What is in the way, in any words; and nothing booked.
            b.check(no_event(W, title));
            b.check(notification(P, &["Quarterly review"]));
            b.check(count(P, Items::Notifications, 1));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}

pub fn photo_handoff() -> Vec<TaskFile> {
    let c = "photo-handoff";
    let mut out = Vec::new();
    // A: a photo from the phone onto a laptop.
    let shots: [(&str, &str, &str, bool); 4] = [
        ("photo-01", "whiteboard-sprint-12", L, false),
        ("photo-02", "receipt-hardware-store", W, true),
        ("photo-03", "parking-level-3", M, true),
        ("photo-04", "serial-number-router", W, false),
    ];
    for (id, name, dst, tell) in shots {
        let path = format!("Desktop/{name}.jpg");
        let mut b = B::new(
            c,
            id,
            &format!("Photo {name} to the laptop"),
            &format!(
                "Take a photo named {name} with my phone and put it on the {}'s Desktop{}.",
                dst.replace('-', " "),
                if tell {
                    ", then pop up a notification there"
                } else {
                    ""
                }
            ),
        );
        // The photo's bytes go as a file: the phone sends it, the laptop copies what it got.
        let t = b.sim(P, "take the photo", "photo.take", json!({"name": name}));
        let shot = photo_path(name);
        b.sends(&t, &[&shot]);
        let w = b.receive(dst, "save it on the laptop's Desktop", &t, &shot, &path);
        b.check(photo_at(dst, &path, name));
        if tell {
            let n = b.sim(
                dst,
                "tell the laptop",
                "notify",
                json!({"title": "Photo arrived", "body": format!("{path} from your phone")}),
            );
            b.after(&w, &n);
            b.check(count(dst, Items::Notifications, 1));
        }
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // B: a document from a laptop onto the phone.
    let docs: [(&str, &str, &str, &str); 3] = [
        (
            "photo-05",
            W,
            "docs/boarding-pass.txt",
            "BOARDING PASS LH2034 BER-MUC seat 14C gate B42 18:05\n",
        ),
        (
            "photo-06",
            M,
            "docs/lease-2026.txt",
            "Lease: Flat 3, 14 Canal St; rent 1,150/month; from 2026-04-01.\n",
        ),
        (
            "photo-07",
            W,
            "docs/insurance-card.txt",
            "Health insurance: TK 1234 5678 90, valid to 2027-12\n",
        ),
    ];
    for (id, src, path, text) in docs {
        let name = path.trim_start_matches("docs/");
        let to = format!("Downloads/{name}");
        let mut b = B::new(
            c,
            id,
            &format!("Hand {name} to the phone"),
            &format!(
                "Put {path} from my {} into the phone's Downloads folder.",
                src.replace('-', " ")
            ),
        );
        b.file(src, path, text);
        let r = b.sim(
            src,
            &format!("read {path}"),
            "file.read",
            json!({"path": path}),
        );
        let w = b.sim(
            P,
            &format!("save {to} on the phone"),
            "file.write",
            json!({"path": to, "content": "{{t1.output}}"}),
        );
        b.after(&r, &w);
        b.check(file_eq(P, &to, text));
        b.rules(&format!(
            "on {src} read {path} then on {P} write the result to {to}"
        ));
        out.push(b.done());
    }
    // C: receipts photographed, filed on the server, listed in a note on the Mac.
    let receipts: [(&str, &str, &[&str]); 2] = [
        (
            "photo-08",
            "March",
            &["receipt-taxi-0311", "receipt-hotel-0312"],
        ),
        (
            "photo-09",
            "April",
            &[
                "receipt-train-0402",
                "receipt-dinner-0402",
                "receipt-parking-0403",
            ],
        ),
    ];
    for (id, month, names) in receipts {
        let title = format!("Receipts {month}");
        let mut b = B::new(
            c,
            id,
            &format!("File the {month} receipts"),
            &format!(
                "Photograph my {month} receipts ({}) with the phone, file them on the server under \
                 receipts/{}/, and keep a note \"{title}\" on the Mac listing them.",
                names.join(", "),
                month.to_lowercase()
            ),
        );
        let mut writes = Vec::new();
        let mut listed = Vec::new();
        for n in names.iter() {
            let t = b.sim(
                P,
                &format!("photograph {n}"),
                "photo.take",
                json!({"name": n}),
            );
            let shot = photo_path(n);
            b.sends(&t, &[&shot]);
            let path = format!("receipts/{}/{n}.jpg", month.to_lowercase());
            let w = b.receive(S, &format!("file {path} on the server"), &t, &shot, &path);
            b.check(photo_at(S, &path, n));
            writes.push(w);
            listed.push(path);
        }
        let nt = b.sim(
            M,
            "write the note on the Mac",
            "note.create",
            json!({"title": title, "body": listed.join("\n"), "folder": "expenses"}),
        );
        b.after_all(&writes, &nt);
        // The note lists the receipts by name (paths or not).
        b.check(note(M, &title, names));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    // D: a text handed over through the phone's clipboard.
    let clips: [(&str, &str, &str); 2] = [
        (
            "photo-10",
            "docs/wifi.txt",
            "Network: Lumen-5G  Password: tulip-harbor-42",
        ),
        ("photo-11", "docs/tracking.txt", "DHL 00340434161094015902"),
    ];
    for (id, path, text) in clips {
        let mut b = B::new(
            c,
            id,
            "Hand text over through the phone clipboard",
            &format!(
                "Put the text of {path} from my Mac on my phone's clipboard, so I can paste it there."
            ),
        );
        b.file(M, path, &format!("{text}\n"));
        let r = b.sim(
            M,
            &format!("read {path}"),
            "file.read",
            json!({"path": path}),
        );
        let s_ = b.sim(
            P,
            "set the phone clipboard",
            "clipboard.set",
            json!({"text": "{{t1.output}}"}),
        );
        b.after(&r, &s_);
        b.check(clipboard_eq(P, text));
        b.unsupported(NO_APPS);
        out.push(b.done());
    }
    out
}
