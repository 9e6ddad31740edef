//! `weft open`: a one-time login link to the web view, opened in a browser when possible.

use std::process::{Command, Stdio};

use super::Client;
use crate::now_ms;

/// Asks the server for a login link, prints it, and tries to open it.
pub async fn run(client: &Client, no_browser: bool) -> anyhow::Result<i32> {
    let link = client.login_link().await?;
    // The server that made the link (the leader, with replicas), which serves the web view.
    let url = format!("{}{}", client.base(), link.path);
    let secs = link.expires_at_ms.saturating_sub(now_ms()) / 1000;
    println!("{url}");
    eprintln!("weft: this link logs a browser in to the web view; it works once, within {secs} s");
    if !no_browser && !open_in_browser(&url) {
        eprintln!("weft: could not start a browser here; open the link yourself");
    }
    Ok(0)
}

/// Starts the desktop's URL opener (`xdg-open`, `open`, or `cmd /c start`) without waiting for
/// it. Returns whether one could be started.
fn open_in_browser(url: &str) -> bool {
    let candidates: &[(&str, &[&str])] = if cfg!(target_os = "macos") {
        &[("open", &[])]
    } else if cfg!(windows) {
        &[("cmd", &["/c", "start", ""])]
    } else {
        &[("xdg-open", &[]), ("gio", &["open"])]
    };
    candidates.iter().any(|(program, args)| {
        Command::new(program)
            .args(*args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .is_ok()
    })
}
