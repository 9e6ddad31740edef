//! A seatbelt for the runner's own machine: the five devices are processes on it, and their
//! `shell` executor runs real commands (as the user running `weft-bench`, in each device's
//! workdir). Before the runner submits a graph that came from outside (an external planner, a
//! plans directory), [`unsafe_task`] looks for a shell command that would delete files outside
//! a device's workdir, format or overwrite a disk, or stop the machine; such a graph is not
//! submitted and its task fails `blocked`.
//!
//! This is not a sandbox: it catches the obvious (`rm -rf ~`, `rm -rf /*`, `cd / && rm -r *`,
//! `find / -delete`, `mkfs`, `dd of=/dev/sda`, `shutdown`), which the suite's refusal tasks ask
//! for in so many words. Run planners you do not trust in a container. (The LLM planner plans
//! inside the orchestrator and refuses destructive plans itself, `plan_refused`.)

use weft_protocol::Action;
use weft_protocol::rest::GraphSpec;

/// The first task of `graph` whose shell command the runner will not run: its id and why.
pub fn unsafe_task(graph: &GraphSpec) -> Option<(String, String)> {
    graph.tasks.iter().find_map(|t| match &t.action {
        Some(Action::Shell { command }) => {
            danger(command).map(|why| (t.id.as_str().to_owned(), format!("`{command}` {why}")))
        }
        _ => None,
    })
}

/// Programs that format, wipe or partition a disk, or stop the machine.
const NEVER: &[&str] = &[
    "mkfs", "wipefs", "shred", "fdisk", "sfdisk", "parted", "shutdown", "reboot", "halt",
    "poweroff",
];

/// Programs that delete.
const DELETERS: &[&str] = &["rm", "rmdir", "unlink"];

/// Why `command` must not run on the runner's machine, if it must not.
pub fn danger(command: &str) -> Option<&'static str> {
    let words: Vec<&str> = command
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`'))
        .map(|w| w.trim_matches(['"', '\'']))
        .filter(|w| !w.is_empty())
        .collect();
    let program = |w: &str| w.rsplit('/').next().unwrap_or(w).to_owned();
    let programs: Vec<String> = words.iter().map(|w| program(w)).collect();
    if programs
        .iter()
        .any(|p| NEVER.contains(&p.as_str()) || p.starts_with("mkfs."))
    {
        return Some("would format or wipe a disk, or stop the machine");
    }
    let redirected_to_device = command.match_indices('>').any(|(i, _)| {
        let rest = command[i + 1..].trim_start_matches(['>', ' ']);
        rest.starts_with("/dev/") && !rest.starts_with("/dev/null")
    });
    if redirected_to_device || words.iter().any(|w| w.starts_with("of=/dev/")) {
        return Some("would overwrite a device");
    }
    let deletes = programs.iter().any(|p| DELETERS.contains(&p.as_str()))
        || (programs.iter().any(|p| p == "find")
            && words.iter().any(|w| *w == "-delete" || *w == "-exec"));
    let leaves_workdir = programs.iter().any(|p| p == "cd")
        || words.iter().any(|w| {
            w.starts_with('/') || w.starts_with('~') || w.starts_with('$') || w.contains("..")
        });
    (deletes && leaves_workdir).then_some("would delete files outside the device's workdir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_runner_will_not_run() {
        for c in [
            "rm -rf ~",
            "rm -rf /",
            "sudo rm -Rf /*",
            "rm -r \"$HOME\"",
            "cd / && rm -rf *",
            "rm -rf ../..",
            "find / -delete",
            "find ~ -type f -exec rm {} +",
            "mkfs.ext4 /dev/sdb1",
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "echo x >/dev/sda",
            "cat img > /dev/sdb",
            "wipefs -a /dev/nvme0n1",
            "shutdown -h now",
            "unlink /etc/hosts",
        ] {
            assert!(danger(c).is_some(), "{c}");
        }
        for c in [
            "rm -rf build/",
            "rm -f out/*.tmp",
            "rm -rf *",
            "grep -h ERROR logs/*.log",
            "printf %s x | sort > /dev/null",
            "echo rm is a program",
            "cat /etc/os-release",
            "find logs -name '*.log'",
        ] {
            assert!(danger(c).is_none(), "{c}");
        }
    }
}
