//! A progress line on stderr: rewritten in place (`\r`) on a terminal, one line per task
//! otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress through the suite.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    label: String,
    total: usize,
    done: usize,
    passed: usize,
    started: Instant,
}

impl Progress {
    /// Progress on stderr (`enabled: false` prints nothing).
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            tty: std::io::stderr().is_terminal(),
            label: String::new(),
            total: 0,
            done: 0,
            passed: 0,
            started: Instant::now(),
        }
    }

    /// A pass over `total` tasks begins (pass `k` of `of`).
    pub fn start(&mut self, mode: &str, total: usize, k: usize, of: usize) {
        self.label = if of > 1 {
            format!("{mode} ({k}/{of})")
        } else {
            mode.to_owned()
        };
        self.total = total;
        self.done = 0;
        self.passed = 0;
        self.started = Instant::now();
        if self.enabled && !self.tty {
            eprintln!("weft-bench: {} — {total} tasks", self.label);
        }
    }

    /// One task ended.
    pub fn task(&mut self, category: &str, id: &str, success: bool) {
        self.done += 1;
        self.passed += usize::from(success);
        if !self.enabled {
            return;
        }
        let mark = if success { "ok  " } else { "FAIL" };
        if self.tty {
            let width = 30usize;
            let filled = width * self.done / self.total.max(1);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let line = format!(
                "\r{} [{bar}] {}/{} passed {} | {mark} {category}/{id}",
                self.label, self.done, self.total, self.passed
            );
            let mut err = std::io::stderr();
            let _ = write!(err, "{line:<120}");
            let _ = err.flush();
        } else {
            eprintln!("[{:>3}/{}] {mark} {category}/{id}", self.done, self.total);
        }
    }

    /// The pass ended.
    pub fn finish(&mut self) {
        if self.enabled {
            if self.tty {
                eprintln!();
            }
            eprintln!(
                "weft-bench: {}: {}/{} tasks passed in {:.1} s",
                self.label,
                self.passed,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
