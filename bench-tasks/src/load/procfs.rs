//! Memory and CPU time of a process, read from `/proc/<pid>/status` and `/proc/<pid>/stat`.

use std::sync::OnceLock;

use serde::Serialize;

/// One reading of a process's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time so far (`utime + stime`), milliseconds (resolution: one clock tick,
    /// usually 10 ms).
    pub cpu_ms: u64,
    /// Number of threads.
    pub threads: u64,
}

impl ProcSample {
    /// Reads `pid`'s figures now.
    pub fn read(pid: u32) -> std::io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let mut s = parse_status(&status);
        s.cpu_ms = parse_stat_cpu_ticks(&stat)
            .map(|t| t * 1000 / clock_ticks())
            .ok_or_else(|| std::io::Error::other(format!("cannot parse /proc/{pid}/stat")))?;
        Ok(s)
    }

    /// Reads this process's own figures.
    pub fn own() -> std::io::Result<Self> {
        Self::read(std::process::id())
    }
}

fn parse_status(status: &str) -> ProcSample {
    let mut s = ProcSample::default();
    for line in status.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let value = || {
            rest.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match key {
            "VmRSS" => s.rss_kib = value(),
            "VmHWM" => s.hwm_kib = value(),
            "Threads" => s.threads = value(),
            _ => {}
        }
    }
    s
}

/// `utime + stime` in clock ticks: fields 14 and 15 of `/proc/<pid>/stat`, counted after the
/// command name (which is in parentheses and may hold spaces).
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time the whole machine has spent busy (not idle, not waiting for I/O), over all cores,
/// milliseconds, from the first line of `/proc/stat`. Minus the orchestrator's and the
/// generator's own, it shows how much other processes took from a measurement.
pub fn machine_busy_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy * 1000 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless proven otherwise).
pub fn clock_ticks() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "1234 (weft serve) S 1 1234 1234 0 -1 4194560 2783 0 0 0 157 42 0 0 20 0 6 0 \
                    1000 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(199));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tweft\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        let s = parse_status(status);
        assert_eq!((s.rss_kib, s.hwm_kib, s.threads), (10240, 20480, 3));
    }

    #[test]
    fn reads_the_machine() {
        assert!(machine_busy_ms().is_some());
    }

    #[test]
    fn reads_itself() {
        let s = ProcSample::own().unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib && s.threads >= 1);
    }
}
