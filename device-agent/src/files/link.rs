//! The agent's link for files: an HTTP client to its orchestrator (the same base URL, TLS
//! pin and device token as its WebSocket) and what an attempt does with files around its run:
//! [`Link::fetch_inputs`] before, [`Link::send_outputs`] after a success.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_protocol::{AttemptId, ErrorInfo, FileRef, InputFile};

use super::{Error, collect_outputs, download, upload};
use crate::policy::FilesPolicy;

/// How long connecting to the orchestrator may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a transfer may go without a byte moving.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how this agent moves files.
#[derive(Debug, Clone)]
pub struct Link {
    client: reqwest::Client,
    /// `http(s)://host:port[/prefix]`, without a trailing `/`.
    base: String,
    token: String,
    limits: FilesPolicy,
}

impl Link {
    /// A link to `server` (TLS pinned to `pin` when given), authenticated by `token`.
    pub fn new(
        server: &crate::tls::ServerUrl,
        pin: Option<crate::tls::Fingerprint>,
        token: &str,
        limits: FilesPolicy,
    ) -> Result<Self, String> {
        let scheme = if server.tls { "https" } else { "http" };
        let base = format!(
            "{scheme}://{}:{}{}",
            server.host, server.port, server.prefix
        );
        let mut builder = reqwest::Client::builder()
            .pool_idle_timeout(weft_protocol::HTTP_POOL_IDLE)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if server.tls {
            builder = builder.use_preconfigured_tls((*crate::tls::client_config(pin)).clone());
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot set up the file transfer client: {e}"))?;
        Ok(Self {
            client,
            base,
            token: token.to_owned(),
            limits,
        })
    }

    /// Fetches every input of `attempt` into its place under `workdir`
    /// (`InputFile::local_path`), verified. The first failure ends it (retryable:
    /// `download_failed`, `download_corrupt`).
    pub async fn fetch_inputs(
        &self,
        workdir: &Path,
        attempt: &AttemptId,
        inputs: &[InputFile],
    ) -> Result<(), ErrorInfo> {
        for input in inputs {
            let dir = workdir
                .join(weft_protocol::files::inputs_dir(attempt))
                .join(input.task.as_str());
            let url = format!("{}/v1/blobs/{}", self.base, input.file.sha256);
            download(&self.client, &url, &self.token, &input.file, &dir)
                .await
                .map_err(|e| e.info())?;
        }
        Ok(())
    }

    /// Collects the files `outputs` names in `workdir` and sends each for `attempt`; answers
    /// what the orchestrator stored. A missing output, one outside the workdir or over the
    /// owner's limit (`policy_denied`), or a failed upload (`upload_failed`, retryable) ends it.
    pub async fn send_outputs(
        &self,
        workdir: &Path,
        attempt: &AttemptId,
        outputs: &[String],
    ) -> Result<Vec<FileRef>, ErrorInfo> {
        if outputs.is_empty() {
            return Ok(Vec::new());
        }
        let dir = workdir.to_path_buf();
        let patterns = outputs.to_vec();
        let limits = self.limits.clone();
        let found = tokio::task::spawn_blocking(move || collect_outputs(&dir, &patterns, &limits))
            .await
            .map_err(|e| ErrorInfo::new("io_error", format!("collecting outputs: {e}")))?
            .map_err(|e: Error| e.info())?;
        let mut sent = Vec::with_capacity(found.len());
        for file in &found {
            let url = format!(
                "{}/v1/attempts/{}/files/{}",
                self.base,
                encode(attempt.as_str()),
                encode(&file.name)
            );
            sent.push(
                upload(&self.client, &url, &self.token, file)
                    .await
                    .map_err(|e| e.info())?,
            );
        }
        Ok(sent)
    }
}

/// The inputs directory of `attempt` in `workdir`, removed once the attempt is over.
pub fn inputs_path(workdir: &Path, attempt: &AttemptId) -> PathBuf {
    workdir.join(weft_protocol::files::inputs_dir(attempt))
}

/// Where every attempt's inputs directory is, relative to the workdir.
const INPUTS: &str = "inputs";

/// Removes the inputs directories (`inputs/<attempt>/`) an earlier run of the agent left in
/// `workdir`: those of attempts it was running when it was killed, with their partial
/// downloads (`.<name>.<random>.part`). Call it at start, before any attempt runs. Files
/// directly in `inputs/` are not an attempt's and are left alone. Answers how many were
/// removed.
pub fn remove_stale_inputs(workdir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(workdir.join(INPUTS)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            tracing::info!(dir = %entry.path().display(), "removing the inputs an earlier run left");
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `s` percent-encoded for a URL path, `/` kept between its parts.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use weft_protocol::AttemptId;

    #[test]
    fn inputs_directories_are_under_inputs() {
        let dir = super::inputs_path(std::path::Path::new("w"), &AttemptId("a-1".into()));
        assert_eq!(
            dir,
            std::path::Path::new("w").join(super::INPUTS).join("a-1")
        );
    }

    #[test]
    fn an_earlier_run_s_inputs_are_removed_but_not_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let w = tmp.path();
        assert_eq!(super::remove_stale_inputs(w).unwrap(), 0, "no inputs/ yet");
        for f in [
            "inputs/a-1/t1/.photo.jpg.0123.part",
            "inputs/a-2/t1/photo.jpg",
        ] {
            std::fs::create_dir_all(w.join(f).parent().unwrap()).unwrap();
            std::fs::write(w.join(f), b"x").unwrap();
        }
        std::fs::write(w.join("inputs/notes.txt"), b"mine").unwrap();
        assert_eq!(super::remove_stale_inputs(w).unwrap(), 2);
        let left: Vec<_> = std::fs::read_dir(w.join("inputs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
    }

    #[test]
    fn names_are_percent_encoded_but_keep_their_slashes() {
        assert_eq!(
            super::encode("build/app v2#1.apk"),
            "build/app%20v2%231.apk"
        );
        assert_eq!(super::encode("日"), "%E6%97%A5");
    }
}
