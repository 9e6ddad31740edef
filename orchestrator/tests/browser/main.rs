//! The web view in a real headless Chromium: a real server on 127.0.0.1:0 with in-process
//! agents (the `it` harness), driven over WebDriver. Screenshots of the request and devices
//! pages are saved under `target/tmp/web-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them
//! these tests fail with a message saying so.

mod driver;
#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../it/pg.rs"]
mod pg;
mod view;
