//! `fs`: read and write text files inside the agent's workdir, and inside the extra roots the
//! owner's policy names (`policy.fs.read` / `policy.fs.write`), nowhere else.
//!
//! A relative path is taken inside the workdir; an absolute one must lie inside a configured
//! root (else `policy_denied`). `..` is never accepted, and after symlinks are resolved the
//! path must still lie inside an allowed root; anything else is refused with
//! `path_outside_workdir`. Neither is worth retrying.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Ctx, Outcome, capped_text, summary_of};
use crate::policy::FsOp;

fn outside(path: &str) -> Outcome {
    Outcome::failed(
        "path_outside_workdir",
        format!("`{path}` resolves outside the agent's workdir and every allowed root"),
    )
}

/// Checks that `real` (a canonical path) is inside one of the canonical roots for `op`.
async fn inside(op: FsOp, real: &Path, path: &str, ctx: &Ctx<'_>) -> Result<(), Outcome> {
    for (i, root) in ctx.policy.fs_roots(op, ctx.workdir).iter().enumerate() {
        match tokio::fs::canonicalize(root).await {
            Ok(root) if real.starts_with(&root) => return Ok(()),
            Ok(_) => {}
            Err(e) if i == 0 => {
                return Err(Outcome::failed(
                    "workdir_unavailable",
                    format!("the workdir: {e}"),
                ));
            }
            Err(_) => {}
        }
    }
    Err(outside(path))
}

fn io_error(what: &str, path: &str, e: &std::io::Error) -> Outcome {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => "not_found",
        std::io::ErrorKind::PermissionDenied => "permission_denied",
        _ => "io_error",
    };
    Outcome::failed(code, format!("cannot {what} `{path}`: {e}"))
}

/// The lexical check of the policy, as an [`Outcome`].
fn lexical(op: FsOp, path: &str, ctx: &Ctx<'_>) -> Result<PathBuf, Outcome> {
    ctx.policy
        .check_path(op, path, ctx.workdir)
        .map_err(|r| super::failed(r.error()))
}

/// The real file `path` names, for reading: checked lexically, then after resolving symlinks.
pub async fn resolve_read(path: &str, ctx: &Ctx<'_>) -> Result<PathBuf, Outcome> {
    let target = lexical(FsOp::Read, path, ctx)?;
    let real = tokio::fs::canonicalize(&target)
        .await
        .map_err(|e| io_error("read", path, &e))?;
    inside(FsOp::Read, &real, path, ctx).await?;
    Ok(real)
}

/// Where to write `path`: checked lexically, its directories created only after the deepest
/// existing one is found inside an allowed root (so a symlinked directory cannot lead them
/// elsewhere), and an existing symlink at the target checked too.
pub async fn resolve_write(path: &str, ctx: &Ctx<'_>) -> Result<PathBuf, Outcome> {
    let target = lexical(FsOp::Write, path, ctx)?;
    let parent = target.parent().unwrap_or(ctx.workdir).to_path_buf();
    tokio::fs::create_dir_all(ctx.workdir)
        .await
        .map_err(|e| io_error("create the workdir for", path, &e))?;
    let mut existing = parent.clone();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p.to_path_buf(),
            None => break,
        }
    }
    let real = tokio::fs::canonicalize(&existing)
        .await
        .map_err(|e| io_error("resolve", path, &e))?;
    inside(FsOp::Write, &real, path, ctx).await?;
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| io_error("create the directory of", path, &e))?;
    if let Ok(meta) = tokio::fs::symlink_metadata(&target).await
        && meta.file_type().is_symlink()
    {
        let real = tokio::fs::canonicalize(&target)
            .await
            .map_err(|_| outside(path))?;
        inside(FsOp::Write, &real, path, ctx).await?;
    }
    Ok(target)
}

pub async fn write(path: &str, content: &str, ctx: &Ctx<'_>) -> Outcome {
    match try_write(path, content, ctx).await {
        Ok(o) | Err(o) => o,
    }
}

async fn try_write(path: &str, content: &str, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    if content.len() > ctx.max_output_bytes {
        return Err(Outcome::failed(
            "content_too_large",
            format!(
                "{} bytes is above this agent's limit of {} (policy.max_output_bytes)",
                content.len(),
                ctx.max_output_bytes
            ),
        ));
    }
    let target = resolve_write(path, ctx).await?;
    tokio::fs::write(&target, content)
        .await
        .map_err(|e| io_error("write", path, &e))?;
    Ok(Outcome::succeeded(
        format!("wrote {} bytes to {path}", content.len()),
        json!({"path": path, "bytes": content.len()}),
    ))
}

/// Copies the file `from` to `to`, byte for byte: into a temporary file beside `to`, synced,
/// then renamed over it, so `to` is the whole copy or what it was before. Both paths are
/// resolved as a read and a write are (inside the workdir or a root the policy allows,
/// symlinks checked).
pub async fn copy(from: &str, to: &str, ctx: &Ctx<'_>) -> Outcome {
    match try_copy(from, to, ctx).await {
        Ok(o) | Err(o) => o,
    }
}

async fn try_copy(from: &str, to: &str, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    let source = resolve_read(from, ctx).await?;
    if tokio::fs::metadata(&source).await.is_ok_and(|m| m.is_dir()) {
        return Err(Outcome::failed(
            "invalid_action",
            format!("`{from}` is a directory; copy_file copies one file"),
        ));
    }
    let target = resolve_write(to, ctx).await?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = crate::files::TempFile::new(
        target.with_file_name(format!(".{name}.{:016x}.part", rand::random::<u64>())),
    );
    let bytes = tokio::fs::copy(&source, temp.path())
        .await
        .map_err(|e| io_error("copy", from, &e))?;
    let file = tokio::fs::File::open(temp.path())
        .await
        .map_err(|e| io_error("copy", to, &e))?;
    file.sync_all()
        .await
        .map_err(|e| io_error("copy", to, &e))?;
    tokio::fs::rename(temp.path(), &target)
        .await
        .map_err(|e| io_error("copy", to, &e))?;
    temp.disarm();
    if let Some(dir) = target.parent() {
        let _ = crate::files::sync_dir(dir).await;
    }
    Ok(Outcome::succeeded(
        format!("copied {bytes} bytes from {from} to {to}"),
        json!({"from": from, "to": to, "bytes": bytes}),
    ))
}

pub async fn read(path: &str, ctx: &Ctx<'_>) -> Outcome {
    match try_read(path, ctx).await {
        Ok(o) | Err(o) => o,
    }
}

async fn try_read(path: &str, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    let real = resolve_read(path, ctx).await?;
    if tokio::fs::metadata(&real).await.is_ok_and(|m| m.is_dir()) {
        return list(path, &real, ctx).await;
    }
    let bytes = tokio::fs::read(&real)
        .await
        .map_err(|e| io_error("read", path, &e))?;
    let (content, truncated) = capped_text(&bytes, ctx.max_output_bytes);
    // Not UTF-8 (a photo, a PDF): the content is its lossy reading, kept as before; the summary
    // says what it is instead of showing a line of it.
    let binary = std::str::from_utf8(&bytes).is_err();
    let summary = if binary {
        format!("{path}: {} bytes, not text", bytes.len())
    } else {
        summary_of(&content)
    };
    Ok(Outcome::succeeded(
        summary,
        json!({"path": path, "content": content, "bytes": bytes.len(), "truncated": truncated,
               "binary": binary}),
    ))
}

/// At most this many entries of a directory are listed.
const MAX_ENTRIES: usize = 1000;

/// A directory read: its entries by name, each with its kind and size in bytes (`content`: one
/// `name<TAB>size` line each, a `/` after a directory's name), so a task (or a small model) can
/// see names and sizes without a shell. Symlinks are listed, not followed.
async fn list(path: &str, real: &Path, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    let mut dir = tokio::fs::read_dir(real)
        .await
        .map_err(|e| io_error("list", path, &e))?;
    let mut entries = Vec::new();
    let mut more = false;
    while let Some(e) = dir
        .next_entry()
        .await
        .map_err(|e| io_error("list", path, &e))?
    {
        if entries.len() == MAX_ENTRIES {
            more = true;
            break;
        }
        let meta = e
            .metadata()
            .await
            .map_err(|err| io_error("list", path, &err))?;
        let kind = if meta.file_type().is_symlink() {
            "symlink"
        } else if meta.is_dir() {
            "dir"
        } else {
            "file"
        };
        let name = e.file_name().to_string_lossy().into_owned();
        entries.push((name, kind, meta.len()));
    }
    entries.sort();
    let lines: String = entries
        .iter()
        .map(|(name, kind, size)| {
            let slash = if *kind == "dir" { "/" } else { "" };
            format!("{name}{slash}\t{size}\n")
        })
        .collect();
    let (content, truncated) = capped_text(lines.as_bytes(), ctx.max_output_bytes);
    let listed: Vec<_> = entries
        .iter()
        .map(|(name, kind, size)| json!({"name": name, "kind": kind, "size": size}))
        .collect();
    Ok(Outcome::succeeded(
        format!("{} entries in {path}", entries.len()),
        json!({"path": path, "entries": listed, "content": content,
               "truncated": truncated || more}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::TestEnv;
    use crate::policy::Policy;
    use weft_protocol::Action;
    use weft_protocol::wire::ResultStatus;

    fn small() -> TestEnv {
        TestEnv::with_policy(Policy {
            max_output_bytes: 64,
            ..Policy::default()
        })
    }

    fn code(o: &Outcome) -> &str {
        o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("ok")
    }

    #[tokio::test]
    async fn writes_and_reads_inside_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let env = small();
        let c = env.ctx(dir.path());
        let w = write("notes/a.txt", "hello\nfile", &c).await;
        assert_eq!(w.status, ResultStatus::Succeeded, "{w:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes/a.txt")).unwrap(),
            "hello\nfile"
        );
        let r = read("./notes/a.txt", &c).await;
        assert_eq!(r.output.data["content"], "hello\nfile");
        assert_eq!(r.output.summary, "file");
        assert_eq!(r.output.data["binary"], false);
        std::fs::write(
            dir.path().join("cat.jpg"),
            [0xff, 0xd8, 0xff, 0x00, b'\n', 0xc3],
        )
        .unwrap();
        let r = read("cat.jpg", &c).await;
        assert_eq!(r.output.summary, "cat.jpg: 6 bytes, not text");
        assert_eq!(r.output.data["binary"], true);
        assert_eq!(code(&read("missing.txt", &c).await), "not_found");
        assert_eq!(
            code(&write("big.txt", &"x".repeat(65), &c).await),
            "content_too_large"
        );
    }

    #[tokio::test]
    async fn copy_file_copies_any_bytes_whole_and_only_inside_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        // Larger than the output limit, and not UTF-8: a copy is not an output.
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::create_dir_all(dir.path().join("inputs/a1/t1")).unwrap();
        std::fs::write(dir.path().join("inputs/a1/t1/cat.jpg"), &bytes).unwrap();
        let env = small();
        let c = env.ctx(dir.path());
        let caps = ["fs".to_owned()];
        let copy = |from: &str, to: &str| Action::CopyFile {
            from: from.into(),
            to: to.into(),
        };
        let o = super::super::run(
            &copy("inputs/a1/t1/cat.jpg", "photos/new/cat.jpg"),
            &caps,
            &c,
        )
        .await;
        assert_eq!(o.status, ResultStatus::Succeeded, "{o:?}");
        assert_eq!(o.output.data["bytes"], 10_000);
        assert!(std::fs::read(dir.path().join("photos/new/cat.jpg")).unwrap() == bytes);
        // Nothing but the copy is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("photos/new"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["cat.jpg"]);
        for (action, want) in [
            (copy("missing.jpg", "x.jpg"), "not_found"),
            (copy("inputs", "x"), "invalid_action"),
            (copy("../outside", "x"), "path_outside_workdir"),
            (
                copy("inputs/a1/t1/cat.jpg", "../x.jpg"),
                "path_outside_workdir",
            ),
        ] {
            let o = super::super::run(&action, &caps, &c).await;
            assert_eq!(code(&o), want, "{action:?}: {o:?}");
        }
        assert!(!dir.path().join("x.jpg").exists() && !dir.path().join("x").exists());
        let o = super::super::run(
            &copy("inputs/a1/t1/cat.jpg", "y"),
            &["shell".to_owned()],
            &c,
        )
        .await;
        assert_eq!(code(&o), "unsupported_action", "copy_file needs `fs`");
    }

    #[tokio::test]
    async fn reading_a_directory_lists_names_kinds_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.log"), "x".repeat(50)).unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/c"), "cc").unwrap();
        let env = TestEnv::with_policy(Policy::default());
        let c = env.ctx(dir.path());
        let r = read(".", &c).await;
        assert_eq!(r.status, ResultStatus::Succeeded, "{r:?}");
        assert_eq!(
            r.output.data["content"],
            "a.txt\t1\nb.log\t50\nsub/\t4096\n".replace(
                "4096",
                &std::fs::metadata(dir.path().join("sub"))
                    .unwrap()
                    .len()
                    .to_string(),
            )
        );
        assert_eq!(r.output.data["entries"][1]["name"], "b.log");
        assert_eq!(r.output.data["entries"][1]["size"], 50);
        assert_eq!(r.output.data["entries"][2]["kind"], "dir");
        assert_eq!(r.output.summary, "3 entries in .");
        let sub = read("sub", &c).await;
        assert_eq!(sub.output.data["content"], "c\t2\n");
        // The same roots as a file read: a directory outside is refused.
        assert_eq!(code(&read("..", &c).await), "path_outside_workdir");
    }

    #[tokio::test]
    async fn paths_escaping_the_workdir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let env = small();
        let c = env.ctx(&work);
        for bad in ["../secret", "a/../../secret", "", "  "] {
            assert_eq!(code(&read(bad, &c).await), "path_outside_workdir", "{bad}");
            assert_eq!(
                code(&write(bad, "x", &c).await),
                "path_outside_workdir",
                "{bad}"
            );
        }
        // An absolute path needs a root in the policy.
        let r = read("/etc/passwd", &c).await;
        assert_eq!(code(&r), "policy_denied");
        assert!(r.error.unwrap().message.contains("policy.fs.read"));
        assert_eq!(code(&write("/tmp/x", "x", &c).await), "policy_denied");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), work.join("up")).unwrap();
            std::os::unix::fs::symlink(dir.path().join("secret"), work.join("link")).unwrap();
            assert_eq!(code(&read("up/secret", &c).await), "path_outside_workdir");
            assert_eq!(code(&read("link", &c).await), "path_outside_workdir");
            assert_eq!(code(&write("link", "x", &c).await), "path_outside_workdir");
            assert_eq!(
                code(&write("up/new/file", "x", &c).await),
                "path_outside_workdir"
            );
            assert!(!dir.path().join("new").exists());
            assert_eq!(
                std::fs::read_to_string(dir.path().join("secret")).unwrap(),
                "s"
            );
        }
    }

    #[tokio::test]
    async fn configured_roots_open_more_of_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let shared = dir.path().join("shared");
        let out = dir.path().join("out");
        for d in [&work, &shared, &out] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(shared.join("in.txt"), "shared text").unwrap();
        let mut policy = Policy::default();
        policy.fs.read = vec![shared.clone()];
        policy.fs.write = vec![out.clone()];
        let env = TestEnv::with_policy(policy);
        let c = env.ctx(&work);
        let p = |d: &Path, f: &str| d.join(f).display().to_string();
        let r = read(&p(&shared, "in.txt"), &c).await;
        assert_eq!(r.output.data["content"], "shared text", "{r:?}");
        let w = write(&p(&out, "sub/o.txt"), "o", &c).await;
        assert_eq!(w.status, ResultStatus::Succeeded, "{w:?}");
        assert_eq!(
            read(&p(&out, "sub/o.txt"), &c).await.output.data["content"],
            "o"
        );
        // A read root is not writable.
        let w = write(&p(&shared, "x.txt"), "x", &c).await;
        assert!(w.error.unwrap().message.contains("policy.fs.write"));
        // `..` out of a root is refused before anything is touched.
        let r = read(&format!("{}/../work/x", shared.display()), &c).await;
        assert_eq!(code(&r), "path_outside_workdir");
        #[cfg(unix)]
        {
            // A symlink inside a root that leads out of every root.
            std::os::unix::fs::symlink("/etc", shared.join("etc")).unwrap();
            let r = read(&p(&shared, "etc/hostname"), &c).await;
            assert!(
                matches!(code(&r), "path_outside_workdir" | "not_found"),
                "{r:?}"
            );
        }
    }
}
