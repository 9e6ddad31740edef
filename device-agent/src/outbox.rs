//! Results waiting for the orchestrator's `ack`, kept on disk so that they outlive the agent.
//!
//! A result stays here from the moment its attempt ends until the orchestrator acknowledges it.
//! Each one is a file `STATE_DIR/outbox/NAME.json` holding the `result` frame exactly as it is
//! sent; it is written (temporary file, fsync, rename, fsync of the directory) before the frame
//! goes out, and deleted on `ack`. After a reconnect or a restart every entry is listed in the
//! hello and the ones the orchestrator still wants are sent again. The orchestrator applies each
//! attempt's result at most once, so a re-sent copy is harmless.
//!
//! NAME is the attempt id when it is 1-128 letters, digits, `-` or `_`; any other id is
//! hex-encoded as `HEX.hex.json` (a dot never occurs in a plain name, so the two cannot clash).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use weft_protocol::{AgentMsg, AttemptId, MAX_FRAME_BYTES};

/// The outbox directory inside a state directory.
pub(crate) const OUTBOX_DIR: &str = "outbox";
/// Where unreadable files are moved, inside the outbox directory.
const CORRUPT_DIR: &str = "corrupt";

#[derive(Debug)]
pub struct Outbox {
    /// `STATE_DIR/outbox`.
    dir: PathBuf,
    /// Oldest first; at most one entry per attempt; each an `AgentMsg::Result`.
    entries: Vec<(AttemptId, AgentMsg)>,
    /// An exclusive lock on `STATE_DIR/lock`, held while the outbox is open: two agents sharing
    /// one state dir would take each other's results.
    _lock: fs::File,
}

impl Outbox {
    /// Opens the outbox of `state_dir` (creating both directories, mode 0700 on unix) and loads
    /// every result in it, oldest first (by modification time, then name). Unreadable files
    /// are moved to `outbox/corrupt/`; temporary files left by a crash are removed. Fails only
    /// when the directory itself cannot be created or listed.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join(OUTBOX_DIR);
        create_private_dir(&dir)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join("lock"))?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                fs::TryLockError::WouldBlock => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "another agent is using the state dir {}; give each agent its own --state-dir",
                        state_dir.display()
                    ),
                ),
                fs::TryLockError::Error(e) => e,
            });
        }
        let mut found: Vec<(SystemTime, String, AttemptId, AgentMsg)> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(file = %path.display(), "ignoring a file with a non-UTF-8 name in the outbox");
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.ends_with(".tmp") {
                tracing::info!(file = %path.display(), "removing an unfinished outbox write");
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a temporary outbox file");
                }
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match load(&path, &name) {
                Ok((mtime, attempt, msg)) => found.push((mtime, name, attempt, msg)),
                Err(why) => {
                    tracing::error!(file = %path.display(), %why, "unreadable outbox entry; moving it to outbox/corrupt/");
                    move_aside(&dir, &path, &name);
                }
            }
        }
        found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let entries = found.into_iter().map(|(_, _, a, m)| (a, m)).collect();
        Ok(Self {
            dir,
            entries,
            _lock: lock,
        })
    }

    /// The directory holding the result files (`STATE_DIR/outbox`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `result` (an `AgentMsg::Result`) until [`Outbox::ack`], replacing an earlier result
    /// of the same attempt. It is kept in memory even when writing its file fails; the error
    /// says the result would not survive a restart.
    pub fn put(&mut self, result: AgentMsg) -> io::Result<()> {
        let AgentMsg::Result { attempt_id, .. } = &result else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "only result frames go into the outbox",
            ));
        };
        let attempt = attempt_id.clone();
        let bytes = serde_json::to_vec(&result).map_err(io::Error::other);
        self.entries.retain(|(a, _)| *a != attempt);
        self.entries.push((attempt.clone(), result));
        write_durably(&self.dir, &file_name(&attempt), &bytes?)
    }

    /// Drops the entry of an acknowledged attempt and deletes its file. Returns whether there
    /// was one.
    pub fn ack(&mut self, attempt: &AttemptId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(a, _)| a != attempt);
        let had = before != self.entries.len();
        if had {
            self.delete(attempt);
        }
        had
    }

    /// Keeps only the entries whose attempt `keep` accepts; the others' files are deleted.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttemptId) -> bool) {
        let mut dropped = Vec::new();
        self.entries.retain(|(a, _)| {
            let k = keep(a);
            if !k {
                dropped.push(a.clone());
            }
            k
        });
        for a in dropped {
            self.delete(&a);
        }
    }

    /// Deletes an entry's file. Not fsynced: if the deletion is lost in a crash, the result is
    /// listed in the next hello, not reattached, and dropped then.
    fn delete(&self, attempt: &AttemptId) {
        let path = self.dir.join(file_name(attempt));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete an outbox file")
            }
        }
    }

    pub fn attempts(&self) -> impl Iterator<Item = &AttemptId> {
        self.entries.iter().map(|(a, _)| a)
    }

    /// Every held result, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &AgentMsg> {
        self.entries.iter().map(|(_, m)| m)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The file name for an attempt's result: the id itself when it is file-safe, else its hex.
pub(crate) fn file_name(attempt: &AttemptId) -> String {
    let id = attempt.as_str();
    let plain = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{id}.json")
    } else {
        format!("{}.hex.json", hex::encode(id))
    }
}

/// Reads one outbox file; the error says why it is unusable.
fn load(path: &Path, name: &str) -> Result<(SystemTime, AttemptId, AgentMsg), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FRAME_BYTES as u64 {
        return Err(format!(
            "{} bytes is larger than any result frame",
            meta.len()
        ));
    }
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let msg: AgentMsg = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let AgentMsg::Result { attempt_id, .. } = &msg else {
        return Err("not a result frame".into());
    };
    if file_name(attempt_id) != name {
        return Err(format!(
            "holds the result of attempt {attempt_id}, which belongs in another file"
        ));
    }
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok((mtime, attempt_id.clone(), msg))
}

/// Moves an unusable file to `outbox/corrupt/` (never deletes it).
fn move_aside(dir: &Path, path: &Path, name: &str) {
    let corrupt = dir.join(CORRUPT_DIR);
    let moved = create_private_dir(&corrupt).and_then(|()| fs::rename(path, corrupt.join(name)));
    if let Err(e) = moved {
        tracing::error!(file = %path.display(), error = %e, "cannot move an unreadable outbox file aside; ignoring it");
    }
}

/// Writes `dir/name` so that after a crash it holds either nothing or all of `bytes`.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let written = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Makes a rename or creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` and its missing parents, readable by this user only (on unix).
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_protocol::TaskOutput;
    use weft_protocol::wire::ResultStatus;

    fn result(id: &str, summary: &str) -> AgentMsg {
        AgentMsg::Result {
            attempt_id: id.into(),
            status: ResultStatus::Succeeded,
            output: TaskOutput {
                summary: summary.into(),
                data: serde_json::json!({"stdout": format!("{summary}\n")}),
            },
            error: None,
            files: vec![],
        }
    }

    fn ids(o: &Outbox) -> Vec<&str> {
        o.attempts().map(AttemptId::as_str).collect()
    }

    /// The names of the files directly in the outbox directory, sorted.
    fn files(o: &Outbox) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(o.dir())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_state_dir_is_used_by_one_agent_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Outbox::open(dir.path()).unwrap();
        let err = Outbox::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another agent"), "{err}");
        drop(first);
        assert!(Outbox::open(dir.path()).is_ok());
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        let name = |s: &str| file_name(&s.into());
        assert_eq!(name("a-1_B"), "a-1_B.json");
        assert_eq!(name(&"x".repeat(128)), format!("{}.json", "x".repeat(128)));
        assert_eq!(
            name(&"x".repeat(129)),
            format!("{}.hex.json", "78".repeat(129))
        );
        assert_eq!(name(""), ".hex.json");
        assert_eq!(name("../etc/passwd"), "2e2e2f6574632f706173737764.hex.json");
        assert_eq!(name("a.b"), "612e62.hex.json");
        // A plain id that looks like another id's hex still gets a different file.
        assert_eq!(name("612e62"), "612e62.json");
        assert_eq!(name("é"), "c3a9.hex.json");
    }

    #[test]
    fn results_survive_reopening_in_order() {
        let state = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(state.path()).unwrap();
        assert!(o.is_empty());
        o.put(result("b", "first")).unwrap();
        o.put(result("a.odd", "second")).unwrap();
        o.put(result("c", "third")).unwrap();
        // A newer result for an attempt replaces the old one and moves to the end.
        o.put(result("b", "fourth")).unwrap();
        assert_eq!(ids(&o), ["a.odd", "c", "b"]);
        assert_eq!(files(&o), ["612e6f6464.hex.json", "b.json", "c.json"]);

        // Writes within one clock tick share a modification time; give them distinct ones.
        let base = SystemTime::now() - std::time::Duration::from_secs(60);
        let dir = o.dir().to_path_buf();
        let set_mtime = |name: &str, secs: u64| {
            fs::File::options()
                .write(true)
                .open(dir.join(name))
                .unwrap()
                .set_modified(base + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        set_mtime("612e6f6464.hex.json", 0);
        set_mtime("c.json", 1);
        set_mtime("b.json", 2);
        let want_ids: Vec<String> = ids(&o).into_iter().map(str::to_owned).collect();
        let want: Vec<AgentMsg> = o.pending().cloned().collect();
        drop(o);
        let again = Outbox::open(state.path()).unwrap();
        assert_eq!(ids(&again), want_ids);
        assert_eq!(again.pending().cloned().collect::<Vec<_>>(), want);
        drop(again);
        // Equal times: by name.
        set_mtime("c.json", 0);
        set_mtime("b.json", 1);
        set_mtime("612e6f6464.hex.json", 1);
        assert_eq!(
            ids(&Outbox::open(state.path()).unwrap()),
            ["c", "a.odd", "b"]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("b.json")), 0o600);
        }
    }

    #[test]
    fn ack_and_retain_delete_the_files() {
        let state = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(state.path()).unwrap();
        for id in ["a", "b", "c"] {
            o.put(result(id, id)).unwrap();
        }
        assert!(o.ack(&"b".into()));
        assert!(!o.ack(&"b".into()));
        assert_eq!(files(&o), ["a.json", "c.json"]);
        o.retain(|a| a.as_str() == "c");
        assert_eq!(ids(&o), ["c"]);
        assert_eq!(files(&o), ["c.json"]);
        drop(o);
        assert_eq!(ids(&Outbox::open(state.path()).unwrap()), ["c"]);
    }

    #[test]
    fn only_results_go_in() {
        let state = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(state.path()).unwrap();
        assert!(o.put(AgentMsg::Heartbeat {}).is_err());
        assert!(o.is_empty());
        assert!(files(&o).is_empty());
    }

    #[test]
    fn corrupt_files_are_moved_aside_and_temporary_files_removed() {
        let state = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(state.path()).unwrap();
        o.put(result("good", "kept")).unwrap();
        let dir = o.dir().to_path_buf();
        fs::write(dir.join("broken.json"), b"{\"type\": \"result\", \"attem").unwrap();
        fs::write(dir.join("beat.json"), br#"{"type":"heartbeat"}"#).unwrap();
        drop(o);
        // A valid result in the wrong file.
        fs::write(
            dir.join("other.json"),
            serde_json::to_vec(&result("good", "forged")).unwrap(),
        )
        .unwrap();
        fs::write(dir.join("half.json.tmp"), b"{\"type\"").unwrap();
        fs::write(dir.join("notes.txt"), b"left alone").unwrap();

        let o = Outbox::open(state.path()).unwrap();
        assert_eq!(ids(&o), ["good"]);
        let Some(AgentMsg::Result { output, .. }) = o.pending().next() else {
            panic!("no result")
        };
        assert_eq!(output.summary, "kept");
        assert_eq!(files(&o), ["good.json", "notes.txt"]);
        let mut corrupt: Vec<String> = fs::read_dir(dir.join(CORRUPT_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        corrupt.sort();
        assert_eq!(corrupt, ["beat.json", "broken.json", "other.json"]);
        // Opening again finds the same, and leaves the corrupt directory alone.
        drop(o);
        assert_eq!(ids(&Outbox::open(state.path()).unwrap()), ["good"]);
    }
}
