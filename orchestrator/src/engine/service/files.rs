//! Files between devices, the engine's part (docs/artifacts.md): which stored files an
//! attempt takes as input (worked out at dispatch from its references and its `inputs` list,
//! named in its `assign`, and the paths its references are filled in with), and who may move
//! which bytes: a device may upload the outputs of an attempt it holds, and download only the
//! blobs the inputs of its live attempts name. Answered from memory, at once. And the journal
//! of retention's deletions (`crate::retention`).

use std::collections::BTreeMap;

use weft_planner::refs::{self, Refers};
use weft_protocol::files::{InputFile, StoredFile};
use weft_protocol::rest::EventKind;
use weft_protocol::{AttemptId, DeviceName, ErrorInfo, FileRef, RequestId, TaskId};

use super::Engine;
use crate::engine::Error;
use crate::engine::Graph;
use crate::store::Batch;

/// What a device asks to do with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWant {
    /// Store an output of this attempt.
    Upload(AttemptId),
    /// Fetch the blob of this SHA-256.
    Download(String),
}

/// What the engine allows, and what it knows of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGrant {
    pub device: DeviceName,
    /// The request and task of the attempt (an upload) or of one attempt that takes the blob
    /// (a download).
    pub request: RequestId,
    pub task: TaskId,
    /// A download: the size the blob has (from the `FileRef` that names it).
    pub size: Option<u64>,
}

/// The files an attempt of `tid` takes and the local paths its references stand for.
#[derive(Debug, Default)]
pub(super) struct Inputs {
    pub files: Vec<InputFile>,
    pub paths: refs::Files,
}

/// The upstream files task `tid` of `graph` refers to (in its instruction, its action or its
/// `inputs` list), each with the path attempt `attempt` will find it at. A reference to a file
/// its upstream task did not produce is `file_not_produced`; a malformed `inputs` entry
/// `bad_reference`. References to tasks that are not upstream are left out here (filling
/// them in fails, `bad_reference`).
pub(super) fn inputs(
    graph: &Graph,
    tid: &TaskId,
    attempt: &AttemptId,
) -> Result<Inputs, ErrorInfo> {
    let Some(task) = graph.task(tid) else {
        return Ok(Inputs::default());
    };
    let mut wanted =
        refs::task_references(&task.instruction, task.action.as_ref()).unwrap_or_default();
    wanted.extend(
        refs::input_references(&task.files.inputs)
            .map_err(|e| ErrorInfo::new("bad_reference", e))?,
    );
    wanted.retain(|r| !matches!(r.what, Refers::Output(_)));
    if wanted.is_empty() {
        return Ok(Inputs::default());
    }
    let ancestors = graph.ancestors(tid);
    let mut chosen: BTreeMap<(TaskId, String), FileRef> = BTreeMap::new();
    let mut paths = refs::Files::new();
    for r in wanted {
        if !ancestors.contains(&r.task) {
            continue;
        }
        let produced = graph
            .task(&r.task)
            .map(|t| t.produced.as_slice())
            .unwrap_or_default();
        let picked: Vec<&FileRef> = match &r.what {
            Refers::File(name) => {
                let Some(f) = produced.iter().find(|f| &f.name == name) else {
                    let made: Vec<&str> = produced.iter().map(|f| f.name.as_str()).collect();
                    return Err(ErrorInfo::new(
                        "file_not_produced",
                        format!(
                            "{r}: task {} produced no file `{name}` (it produced {})",
                            r.task,
                            if made.is_empty() {
                                "none".to_owned()
                            } else {
                                made.join(", ")
                            }
                        ),
                    ));
                };
                vec![f]
            }
            _ => produced.iter().collect(),
        };
        let of_task = paths.entry(r.task.clone()).or_default();
        for f in picked {
            let input = InputFile {
                task: r.task.clone(),
                file: f.clone(),
            };
            of_task.insert(f.name.clone(), input.local_path(attempt));
            chosen.insert((r.task.clone(), f.name.clone()), f.clone());
        }
    }
    let files = chosen
        .into_iter()
        .map(|((task, _), file)| InputFile { task, file })
        .collect();
    Ok(Inputs { files, paths })
}

impl Engine {
    /// Journals the deletion of `blobs` by retention: one `files_deleted` event per request
    /// whose files they are, staged in the current group. Answers the blobs journaled; a blob
    /// a request still live in the engine refers to (a file of its, or an output one of its
    /// tasks produced and the store may not have yet) is left out, whatever the caller read.
    pub(super) fn files_deleted(
        &mut self,
        blobs: BTreeMap<String, Vec<(RequestId, StoredFile)>>,
    ) -> Vec<String> {
        let live_refers = |sha256: &str, files: &[(RequestId, StoredFile)]| {
            files.iter().any(|(r, _)| self.requests.contains_key(r))
                || self.requests.values().any(|r| {
                    r.graph
                        .tasks()
                        .any(|t| t.produced.iter().any(|f| f.sha256 == sha256))
                })
        };
        let mut journaled = Vec::new();
        let mut by_request: BTreeMap<RequestId, Vec<StoredFile>> = BTreeMap::new();
        for (sha256, files) in blobs {
            if live_refers(&sha256, &files) {
                tracing::warn!(blob = %sha256, "retention: a live request refers to this blob; kept");
                continue;
            }
            for (request, file) in files {
                by_request.entry(request).or_default().push(file);
            }
            journaled.push(sha256);
        }
        let mut batch = Batch::default();
        for (request, files) in by_request {
            batch.event(&request, EventKind::FilesDeleted { files });
        }
        self.stage(batch);
        journaled
    }

    /// Whether the device whose token is `token` may do `want`: an upload only for a live
    /// attempt it holds, a download only of a blob an input of one of its live attempts names.
    pub(super) fn file_access(&self, token: &str, want: &FileWant) -> Result<FileGrant, Error> {
        let device = self
            .devices
            .by_token(token)
            .ok_or(Error::BadDeviceToken)?
            .clone();
        match want {
            FileWant::Upload(attempt) => {
                let live = self
                    .attempts
                    .get(attempt)
                    .ok_or_else(|| Error::AttemptNotLive(attempt.clone()))?;
                if live.device != device {
                    return Err(Error::NotYourAttempt {
                        attempt: attempt.clone(),
                        device,
                    });
                }
                Ok(FileGrant {
                    request: live.request.clone(),
                    task: live.task.clone(),
                    device,
                    size: None,
                })
            }
            FileWant::Download(sha256) => {
                let found = self.attempts.held_by(&device).find_map(|live| {
                    let f = live.inputs.iter().find(|f| &f.sha256 == sha256)?;
                    Some((live, f.size))
                });
                let (live, size) = found.ok_or_else(|| Error::BlobNotAssigned {
                    sha256: sha256.clone(),
                    device: device.clone(),
                })?;
                Ok(FileGrant {
                    request: live.request.clone(),
                    task: live.task.clone(),
                    device,
                    size: Some(size),
                })
            }
        }
    }
}
