//! What the agent says about its machine beyond `os-arch`: the operating system's version.

/// The OS version, when it can be told: the distribution and kernel on Linux, `Android N` in
/// Termux, `macOS N` on macOS, the `ver` line on Windows.
pub fn os_version() -> Option<String> {
    match std::env::consts::OS {
        "linux" => linux_version(
            std::fs::read_to_string("/etc/os-release").ok().as_deref(),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .as_deref(),
        ),
        "android" => {
            command_line("getprop", &["ro.build.version.release"]).map(|v| format!("Android {v}"))
        }
        "macos" => command_line("sw_vers", &["-productVersion"]).map(|v| format!("macOS {v}")),
        "windows" => command_line("cmd", &["/C", "ver"]),
        _ => None,
    }
}

/// The first non-empty line a command prints, if it succeeds.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(200).collect())
}

/// `PRETTY_NAME` from os-release and the kernel release: `Debian GNU/Linux 13 (trixie); kernel
/// 6.12.0`.
pub fn linux_version(os_release: Option<&str>, kernel: Option<&str>) -> Option<String> {
    let pretty = os_release.and_then(|text| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix("PRETTY_NAME=")?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            (!v.is_empty()).then(|| v.to_owned())
        })
    });
    let kernel = kernel.map(str::trim).filter(|k| !k.is_empty());
    match (pretty, kernel) {
        (Some(p), Some(k)) => Some(format!("{p}; kernel {k}")),
        (Some(p), None) => Some(p),
        (None, Some(k)) => Some(format!("Linux; kernel {k}")),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_versions_combine_distribution_and_kernel() {
        let rel = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n";
        assert_eq!(
            linux_version(Some(rel), Some("6.12.0-1-amd64\n")).as_deref(),
            Some("Debian GNU/Linux 13 (trixie); kernel 6.12.0-1-amd64")
        );
        assert_eq!(
            linux_version(None, Some("6.1")).as_deref(),
            Some("Linux; kernel 6.1")
        );
        assert_eq!(linux_version(Some("X=1"), None), None);
        #[cfg(target_os = "linux")]
        assert!(os_version().is_some());
    }
}
