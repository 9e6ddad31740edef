//! Files that travel between devices (issue 17): how a task declares the files it produces or
//! takes (`FilesSpec`), and how one stored file is named (`FileRef`: its name in the task's
//! workdir, its size and its SHA-256, which is also its name in the orchestrator's blob store).
//!
//! On the wire: a task spec's `outputs` and `inputs` (`FilesSpec`), a `result` frame's
//! `files` (`FileRef`), an `assign` frame's `files` ([`InputFile`]) and the REST listing of a
//! request's files ([`StoredFile`]); `docs/artifacts.md` tells the whole story. Each refuses,
//! when read, what a device must never act on: a name that leaves the workdir, a hash that is
//! not one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AttemptId, RequestId, TaskId};

/// Longest file name or pattern taken, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 1024;

/// Most entries one `FilesSpec` may list.
pub const MAX_FILES_PER_SPEC: usize = 64;

/// One stored file: the name it has relative to the producing task's workdir (`/` between
/// directories), its size in bytes and the SHA-256 of its content (64 lowercase hex digits).
///
/// ```json
/// {"name": "build/app.apk", "size": 5242880, "sha256": "9f86d08188…"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "RawFileRef")]
pub struct FileRef {
    /// Relative to the workdir: not empty, no leading `/`, no `..` or `.` part.
    pub name: String,
    pub size: u64,
    /// 64 lowercase hex digits.
    pub sha256: String,
}

/// What `FileRef` is read from, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileRef {
    name: String,
    #[serde(deserialize_with = "crate::whole::int")]
    size: u64,
    sha256: String,
}

impl TryFrom<RawFileRef> for FileRef {
    type Error = String;

    fn try_from(r: RawFileRef) -> Result<Self, String> {
        let f = FileRef {
            name: r.name,
            size: r.size,
            sha256: r.sha256,
        };
        f.validate()?;
        Ok(f)
    }
}

impl FileRef {
    /// Checks the name and the hash (what reading one checks too).
    pub fn validate(&self) -> Result<(), String> {
        check_file_name(&self.name)?;
        if !valid_sha256(&self.sha256) {
            return Err(format!(
                "file `{}`: sha256 must be 64 lowercase hex digits",
                self.name
            ));
        }
        Ok(())
    }
}

/// The files a task declares, as `"outputs": {"files": [...]}` (what it produces, relative to
/// its workdir) or `"inputs": {"files": [...]}` (what it takes). An entry is a relative path;
/// its last part may be a glob (`*` any run of characters, `?` one), so `photo.jpg`,
/// `*.log` and `build/*.apk` are entries, `*/app.apk` is not.
///
/// Unlike [`FileRef`], reading one does not check its entries: a task's `outputs` are checked
/// with [`FilesSpec::validate`] (and its `inputs` as references) where the graph is checked,
/// so that a bad entry is refused like the rest of a bad task (`422`), not as bad JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesSpec {
    pub files: Vec<String>,
}

impl FilesSpec {
    /// Checks every entry (as a name whose last part may be a glob) and the count.
    pub fn validate(&self) -> Result<(), String> {
        if self.files.len() > MAX_FILES_PER_SPEC {
            return Err(format!(
                "{} files listed; at most {MAX_FILES_PER_SPEC} may be",
                self.files.len()
            ));
        }
        for (i, f) in self.files.iter().enumerate() {
            check_file_pattern(f).map_err(|e| format!("files[{i}]: {e}"))?;
        }
        Ok(())
    }
}

/// A file an attempt takes as input, as its `assign` names it: the upstream task that produced
/// it and the stored file. The agent fetches it from `GET /v1/blobs/{sha256}` (with its device
/// token) into [`InputFile::local_path`] before the attempt runs, and references to it
/// (`{{t1.files…}}`) were filled in with that same path.
///
/// ```json
/// {"task": "t1", "file": {"name": "photo.jpg", "size": 5242880, "sha256": "9f86d08188…"}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub task: TaskId,
    pub file: FileRef,
}

impl InputFile {
    /// Where attempt `attempt` finds this file, relative to the agent's workdir:
    /// `inputs/<attempt>/<task>/<name>` (`/` between parts, on every platform).
    pub fn local_path(&self, attempt: &AttemptId) -> String {
        format!(
            "{}/{}/{}",
            inputs_dir(attempt),
            self.task.as_str(),
            self.file.name
        )
    }
}

/// The directory, relative to the workdir, that attempt `attempt`'s input files go into.
pub fn inputs_dir(attempt: &AttemptId) -> String {
    format!("inputs/{}", attempt.as_str())
}

/// One file a request's task produced, as `GET /v1/requests/{id}/files` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoredFile {
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// The attempt that produced it (the one that succeeded).
    #[schema(value_type = String)]
    pub attempt_id: AttemptId,
    pub name: String,
    pub size: u64,
    /// Also its name in the blob store: `GET /v1/requests/{id}/files/{sha256}` fetches it.
    pub sha256: String,
}

/// The answer to `GET /v1/requests/{id}/files`: every file its tasks produced, by task order
/// and then name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestFiles {
    #[schema(value_type = String)]
    pub request_id: RequestId,
    pub files: Vec<StoredFile>,
}

/// One file a task produced, as the request view (`GET /v1/requests/{id}`) lists it under the
/// task.
///
/// ```json
/// {"name": "photo.jpg", "size": 3145728, "sha256": "9f86d08188…",
///  "url": "/v1/requests/r-1/files/9f86d08188…"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Where a client with the API token downloads it (a path on the server); absent once
    /// retention deleted its bytes (`--artifact-retention` after the request ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl TaskFile {
    /// The download path of blob `sha256` of request `request`.
    pub fn url(request: &RequestId, sha256: &str) -> String {
        format!("/v1/requests/{}/files/{sha256}", request.as_str())
    }
}

/// Whether `s` is a SHA-256 as weft writes one: 64 lowercase hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a file name relative to a workdir: not empty, at most [`MAX_FILE_NAME_BYTES`], no
/// leading `/`, no `\` or NUL (a separator on Windows, the end of a C string), no empty, `.`
/// or `..` part, no glob character (`*`, `?`).
pub fn check_file_name(name: &str) -> Result<(), String> {
    check_path(name, false)
}

/// Checks a declared entry of a [`FilesSpec`]: a file name whose last part may hold `*` and
/// `?`.
pub fn check_file_pattern(pattern: &str) -> Result<(), String> {
    check_path(pattern, true)
}

fn check_path(p: &str, glob_in_last: bool) -> Result<(), String> {
    if p.is_empty() {
        return Err("an empty file name".into());
    }
    if p.len() > MAX_FILE_NAME_BYTES {
        return Err(format!(
            "a file name longer than {MAX_FILE_NAME_BYTES} bytes"
        ));
    }
    if p.starts_with('/') {
        return Err(format!(
            "`{p}` is absolute; names are relative to the workdir"
        ));
    }
    if p.contains(['\\', '\0']) {
        return Err(format!("`{}` holds `\\` or NUL", p.escape_debug()));
    }
    let parts: Vec<&str> = p.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        match *part {
            "" => return Err(format!("`{p}` has an empty part (`//` or a trailing `/`)")),
            "." | ".." => return Err(format!("`{p}` has a `{part}` part")),
            _ => {}
        }
        let last = i + 1 == parts.len();
        if part.contains(['*', '?']) && !(glob_in_last && last) {
            return Err(if glob_in_last {
                format!("`{p}`: only the last part of a name may hold `*` or `?`")
            } else {
                format!("`{p}` holds `*` or `?`")
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn file_ref_format() {
        let f = FileRef {
            name: "build/app.apk".into(),
            size: 5,
            sha256: HASH.into(),
        };
        let v = json!({"name": "build/app.apk", "size": 5, "sha256": HASH});
        assert_eq!(serde_json::to_value(&f).unwrap(), v);
        assert_eq!(serde_json::from_value::<FileRef>(v).unwrap(), f);
        // A whole float is an integer, as everywhere inbound.
        let w = json!({"name": "build/app.apk", "size": 5.0, "sha256": HASH});
        assert_eq!(serde_json::from_value::<FileRef>(w).unwrap(), f);
    }

    #[test]
    fn file_ref_refuses_unknown_fields_bad_names_and_bad_hashes() {
        let read = |v: serde_json::Value| serde_json::from_value::<FileRef>(v).map(|_| ());
        assert!(read(json!({"name": "a", "size": 1, "sha256": HASH, "x": 1})).is_err());
        assert!(read(json!({"name": "a", "size": 1})).is_err());
        assert!(read(json!({"name": "a", "size": -1, "sha256": HASH})).is_err());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "./a",
            "a//b",
            "a/",
            "a\\b",
            "a\0",
            "*.jpg",
            "dir/?",
        ] {
            let e = read(json!({"name": bad, "size": 1, "sha256": HASH})).unwrap_err();
            assert!(e.to_string().contains('`') || bad.is_empty(), "{bad}: {e}");
        }
        let long = "x".repeat(MAX_FILE_NAME_BYTES + 1);
        assert!(read(json!({"name": long, "size": 1, "sha256": HASH})).is_err());
        for bad in [
            &HASH[1..],
            &HASH.to_uppercase(),
            &format!("{}g", &HASH[1..]),
            "",
        ] {
            let e = read(json!({"name": "a", "size": 1, "sha256": bad})).unwrap_err();
            assert!(e.to_string().contains("64 lowercase hex"), "{bad}: {e}");
        }
        for ok in [
            "a",
            "photo.jpg",
            "build/out/app.apk",
            "..a",
            "a..",
            ".hidden",
        ] {
            read(json!({"name": ok, "size": 0, "sha256": HASH})).unwrap();
        }
    }

    #[test]
    fn files_spec_format() {
        let s = FilesSpec {
            files: vec!["photo.jpg".into(), "build/*.apk".into(), "log-?.txt".into()],
        };
        let v = json!({"files": ["photo.jpg", "build/*.apk", "log-?.txt"]});
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
        assert_eq!(serde_json::from_value::<FilesSpec>(v).unwrap(), s);
    }

    #[test]
    fn files_spec_refusals() {
        let read = |v: serde_json::Value| {
            serde_json::from_value::<FilesSpec>(v)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate())
        };
        assert!(read(json!({"files": [], "more": 1})).is_err());
        assert!(read(json!({})).is_err());
        for (bad, says) in [
            ("", "empty"),
            ("/tmp/x", "absolute"),
            ("../x", "`..`"),
            ("*/app.apk", "last part"),
            ("a/**/b", "last part"),
        ] {
            let e = read(json!({"files": ["ok.txt", bad]})).unwrap_err();
            assert!(e.contains("files[1]") && e.contains(says), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_FILES_PER_SPEC).map(|i| format!("f{i}")).collect();
        assert!(
            read(json!({ "files": many }))
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn hashes() {
        assert!(valid_sha256(HASH));
        assert!(!valid_sha256(&HASH.to_uppercase()));
        assert!(!valid_sha256(&HASH[..63]));
    }
}
