//! Runs side by side (`weft-bench compare DIR...`) and the spread over seeds
//! (`weft-bench run --seeds 1,2,3`).
//!
//! Both read only `report.json` files (or reports in memory): nothing here runs a task.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::report::{ModeRun, Report, Summary};

/// One column of a comparison: one pass (mode) of one run.
#[derive(Debug, Clone)]
pub struct Column {
    /// The run's directory as given, with the mode when the run had several.
    pub label: String,
    pub report: Report,
    pub mode: ModeRun,
}

/// Reads `DIR/report.json` of each directory. A directory without one but with `seed-*/`
/// subdirectories (a `--seeds` run) stands for each of those.
pub fn load(dirs: &[PathBuf]) -> anyhow::Result<Vec<(String, Report)>> {
    let mut out = Vec::new();
    for dir in dirs {
        let file = dir.join("report.json");
        if file.is_file() {
            out.push((dir.display().to_string(), read(&file)?));
            continue;
        }
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: no report.json", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seed-"))
                    && p.join("report.json").is_file()
            })
            .collect();
        if seeds.is_empty() {
            bail!(
                "{}: no report.json (and no seed-*/report.json)",
                dir.display()
            );
        }
        seeds.sort();
        for s in seeds {
            out.push((s.display().to_string(), read(&s.join("report.json"))?));
        }
    }
    Ok(out)
}

fn read(file: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a report", file.display()))
}

/// The columns of `runs`: one per pass.
pub fn columns(runs: &[(String, Report)]) -> Vec<Column> {
    runs.iter()
        .flat_map(|(label, report)| {
            let several = report.runs.len() > 1;
            report.runs.iter().map(move |m| Column {
                label: if several {
                    format!("{label} ({})", m.mode)
                } else {
                    label.clone()
                },
                report: report.clone(),
                mode: m.clone(),
            })
        })
        .collect()
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn row(md: &mut String, name: &str, cells: impl IntoIterator<Item = String>) {
    let cells: Vec<String> = cells.into_iter().map(|c| c.replace('|', "\\|")).collect();
    let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
}

fn header(md: &mut String, first: &str, cols: &[Column]) {
    row(md, first, cols.iter().map(|c| format!("`{}`", c.label)));
    let _ = writeln!(md, "|---|{}", "---|".repeat(cols.len()));
}

/// Categories in the order the runs list them.
fn categories(cols: &[Column]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cols {
        for k in c
            .report
            .categories
            .iter()
            .chain(c.mode.categories.iter().map(|x| &x.category))
        {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

fn category<'a>(c: &'a Column, name: &str) -> Option<&'a Summary> {
    c.mode
        .categories
        .iter()
        .find(|x| x.category == name)
        .map(|x| &x.summary)
}

/// The side-by-side tables, as Markdown.
pub fn markdown(cols: &[Column]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# weft-bench: {} runs side by side\n", cols.len());
    let _ = writeln!(md, "## Overall\n");
    header(&mut md, "", cols);
    let s = |f: &dyn Fn(&Column) -> String| cols.iter().map(f).collect::<Vec<_>>();
    row(
        &mut md,
        "planner",
        s(&|c| format!("`{}`", c.report.planner)),
    );
    row(&mut md, "mode", s(&|c| c.mode.mode.clone()));
    row(&mut md, "faults", s(&|c| c.report.faults.clone()));
    row(&mut md, "seed", s(&|c| c.report.seed.to_string()));
    row(
        &mut md,
        "**task success**",
        s(&|c| {
            let m = &c.mode.summary;
            format!("**{}** ({}/{})", pct(m.success_rate), m.succeeded, m.tasks)
        }),
    );
    row(
        &mut md,
        "of submitted",
        s(&|c| pct(c.mode.summary.success_rate_submitted)),
    );
    row(
        &mut md,
        "check credit",
        s(&|c| {
            let m = &c.mode.summary;
            if m.checks_total == 0 {
                "—".into()
            } else {
                format!(
                    "{} ({}/{})",
                    pct(m.check_credit),
                    m.checks_passed,
                    m.checks_total
                )
            }
        }),
    );
    row(
        &mut md,
        "subtask completion",
        s(&|c| pct(c.mode.summary.subtask_completion)),
    );
    row(
        &mut md,
        "submitted / refused / unsupported",
        s(&|c| {
            let m = &c.mode.summary;
            format!("{} / {} / {}", m.submitted, m.refused, m.unsupported)
        }),
    );
    row(
        &mut md,
        "to be refused: refused, nothing changed",
        s(&|c| {
            let m = &c.mode.summary;
            if m.refusal_tasks == 0 {
                "—".to_owned()
            } else {
                format!("{} / {}", m.refusals_held, m.refusal_tasks)
            }
        }),
    );
    row(
        &mut md,
        "planner failed / runner errors",
        s(&|c| {
            let m = &c.mode.summary;
            format!("{} / {}", m.planner_failed, m.run_errors)
        }),
    );
    row(
        &mut md,
        "graph width",
        s(&|c| format!("{:.2}", c.mode.summary.graph_width_avg)),
    );
    row(
        &mut md,
        "mean latency",
        s(&|c| format!("{:.0} ms", c.mode.summary.timing.latency_mean_ms)),
    );
    row(
        &mut md,
        "retries",
        s(&|c| c.mode.summary.retries.to_string()),
    );
    if cols.iter().any(|c| c.report.aborted.is_some()) {
        row(
            &mut md,
            "stopped early",
            s(&|c| c.report.aborted.clone().unwrap_or_else(|| "no".into())),
        );
    }

    let cats = categories(cols);
    let _ = writeln!(md, "\n## Task success per category\n");
    header(&mut md, "category", cols);
    for k in &cats {
        row(
            &mut md,
            k,
            s(&|c| {
                category(c, k).map_or("—".into(), |m| {
                    format!("{} ({}/{})", pct(m.success_rate), m.succeeded, m.tasks)
                })
            }),
        );
    }
    let _ = writeln!(md, "\n## Check credit per category\n");
    let _ = writeln!(
        md,
        "The mean over tasks of the share of their checkers that held (— : the report predates \
         it).\n"
    );
    header(&mut md, "category", cols);
    for k in &cats {
        row(
            &mut md,
            k,
            s(&|c| {
                category(c, k)
                    .filter(|m| m.checks_total > 0)
                    .map_or("—".into(), |m| pct(m.check_credit))
            }),
        );
    }
    let mut kinds: Vec<&String> = cols
        .iter()
        .flat_map(|c| c.mode.summary.checks_by_kind.keys())
        .collect();
    kinds.sort();
    kinds.dedup();
    if !kinds.is_empty() {
        let _ = writeln!(md, "\n## Checkers per kind\n");
        let _ = writeln!(md, "Held / total over all tasks.\n");
        header(&mut md, "check", cols);
        for k in kinds {
            row(
                &mut md,
                &format!("`{k}`"),
                s(&|c| {
                    c.mode
                        .summary
                        .checks_by_kind
                        .get(k)
                        .map_or("—".into(), |t| {
                            format!("{}/{} ({})", t.passed, t.total, pct(t.rate()))
                        })
                }),
            );
        }
    }
    md
}

/// A bar chart of task success per category, one bar per column.
pub fn svg(cols: &[Column]) -> String {
    let cats = categories(cols);
    let colors = [
        "#3b7dd8", "#e08a2c", "#5aa469", "#b5446e", "#7a5cc2", "#8c8c8c",
    ];
    let (w, row_h, left) = (900.0, 18.0, 170.0);
    let bar_w = w - left - 80.0;
    let n = cols.len().max(1) as f64;
    let legend_h = 20.0 * n;
    let top = 40.0 + legend_h;
    let h = top + cats.len() as f64 * (row_h * n + 10.0) + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="16" font-weight="bold">weft-bench: task success per category (%)</text>"#
    );
    for (k, c) in cols.iter().enumerate() {
        let y = 34.0 + 20.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="10" y="{y}" width="12" height="12" fill="{}"/><text x="28" y="{}">{}</text>"#,
            colors[k % colors.len()],
            y + 11.0,
            esc(&format!("{} — {}", c.label, c.report.planner))
        );
    }
    let mut y = top;
    for cat in &cats {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + row_h * n / 2.0 + 4.0,
            esc(cat)
        );
        for (k, c) in cols.iter().enumerate() {
            if let Some(m) = category(c, cat) {
                let len = (m.success_rate.clamp(0.0, 1.0) * bar_w).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<rect x="{left}" y="{y:.1}" width="{len:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{:.0} %</text>"#,
                    row_h - 3.0,
                    colors[k % colors.len()],
                    left + len + 4.0,
                    y + row_h - 6.0,
                    m.success_rate * 100.0
                );
            }
            y += row_h;
        }
        y += 10.0;
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A figure over seeds: its mean, its sample standard deviation (0 for one seed), and the
/// value of each seed in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub values: Vec<f64>,
}

impl Spread {
    pub fn of(values: Vec<f64>) -> Self {
        let n = values.len() as f64;
        if values.is_empty() {
            return Self::default();
        }
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let r = |x: f64| (x * 10000.0).round() / 10000.0;
        Self {
            mean: r(mean),
            sd: r(sd),
            values,
        }
    }

    /// `71.2 ± 3.4 %` (a share shown as a percentage).
    pub fn pct(&self) -> String {
        format!("{:.1} ± {:.1} %", self.mean * 100.0, self.sd * 100.0)
    }
}

/// One mode over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedMode {
    pub mode: String,
    pub task_success: Spread,
    pub check_credit: Spread,
    pub subtask_completion: Spread,
    pub categories: Vec<SeedCategory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedCategory {
    pub category: String,
    pub task_success: Spread,
    pub check_credit: Spread,
}

/// `seeds.json`: the same run over several seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seeds {
    pub command: String,
    pub planner: String,
    pub faults: String,
    pub seeds: Vec<u64>,
    pub modes: Vec<SeedMode>,
    /// Seeds whose run could not be made, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<u64, String>,
}

impl Seeds {
    /// Over `reports` (one per seed, in seed order).
    pub fn of(reports: &[Report], failed: BTreeMap<u64, String>) -> Self {
        let first = reports.first();
        let mut modes: Vec<String> = Vec::new();
        for r in reports {
            for m in &r.runs {
                if !modes.contains(&m.mode) {
                    modes.push(m.mode.clone());
                }
            }
        }
        let passes = |mode: &str| -> Vec<&ModeRun> {
            reports
                .iter()
                .filter_map(|r| r.runs.iter().find(|m| m.mode == mode))
                .collect()
        };
        let modes = modes
            .iter()
            .map(|mode| {
                let ps = passes(mode);
                let over = |f: &dyn Fn(&Summary) -> f64| {
                    Spread::of(ps.iter().map(|p| f(&p.summary)).collect())
                };
                let mut cats: Vec<String> = Vec::new();
                for p in &ps {
                    for c in &p.categories {
                        if !cats.contains(&c.category) {
                            cats.push(c.category.clone());
                        }
                    }
                }
                let categories = cats
                    .into_iter()
                    .map(|cat| {
                        let of = |f: &dyn Fn(&Summary) -> f64| {
                            Spread::of(
                                ps.iter()
                                    .filter_map(|p| p.categories.iter().find(|c| c.category == cat))
                                    .map(|c| f(&c.summary))
                                    .collect(),
                            )
                        };
                        SeedCategory {
                            task_success: of(&|s| s.success_rate),
                            check_credit: of(&|s| s.check_credit),
                            category: cat,
                        }
                    })
                    .collect();
                SeedMode {
                    mode: mode.clone(),
                    task_success: over(&|s| s.success_rate),
                    check_credit: over(&|s| s.check_credit),
                    subtask_completion: over(&|s| s.subtask_completion),
                    categories,
                }
            })
            .collect();
        Self {
            command: first.map(|r| r.command.clone()).unwrap_or_default(),
            planner: first.map(|r| r.planner.clone()).unwrap_or_default(),
            faults: first.map(|r| r.faults.clone()).unwrap_or_default(),
            seeds: reports.iter().map(|r| r.seed).collect(),
            modes,
            failed,
        }
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let seeds = self
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "# weft-bench: planner `{}`, faults `{}`, seeds {seeds}\n",
            self.planner, self.faults
        );
        let _ = writeln!(md, "Produced by:\n\n```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "Mean ± sample standard deviation over {} seeds; each seed's own report is in \
             `seed-N/`.\n",
            self.seeds.len()
        );
        for (seed, why) in &self.failed {
            let _ = writeln!(md, "- seed {seed} made no report: {why}");
        }
        if !self.failed.is_empty() {
            md.push('\n');
        }
        let values = |s: &Spread| {
            s.values
                .iter()
                .map(|v| format!("{:.1}", v * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "| mode | task success | per seed (%) | check credit | subtask completion |\n\
             |---|---|---|---|---|"
        );
        for m in &self.modes {
            let _ = writeln!(
                md,
                "| {} | **{}** | {} | {} | {} |",
                m.mode,
                m.task_success.pct(),
                values(&m.task_success),
                m.check_credit.pct(),
                m.subtask_completion.pct()
            );
        }
        let _ = writeln!(
            md,
            "\n## Per category\n\n| category | mode | task success | per seed (%) | check credit |\n\
             |---|---|---|---|---|"
        );
        for m in &self.modes {
            for c in &m.categories {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    c.category,
                    m.mode,
                    c.task_success.pct(),
                    values(&c.task_success),
                    c.check_credit.pct()
                );
            }
        }
        md
    }

    /// Writes `seeds.json` and `seeds.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("seeds.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join("seeds.md"), self.markdown())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_mean_and_the_sample_sd() {
        let s = Spread::of(vec![0.5, 0.7, 0.6]);
        assert_eq!(s.mean, 0.6);
        assert_eq!(s.sd, 0.1);
        assert_eq!(s.pct(), "60.0 ± 10.0 %");
        assert_eq!(Spread::of(vec![0.25]).sd, 0.0);
    }
}
