//! `fs`: read and write text files inside the agent's workdir, and nowhere else.
//!
//! A path must be relative and may not contain `..`; after symlinks are resolved it must still
//! lie inside the workdir. Anything else is refused with `path_outside_workdir`, which is never
//! worth retrying.

use std::path::{Component, Path, PathBuf};

use serde_json::json;

use super::{Ctx, Outcome, capped_text, summary_of};

fn outside(path: &str) -> Outcome {
    Outcome::failed(
        "path_outside_workdir",
        format!("`{path}` is not a relative path inside the agent's workdir"),
    )
}

/// The workdir-relative `path`, checked lexically (no absolute paths, no `..`).
fn lexical(workdir: &Path, path: &str) -> Result<PathBuf, Outcome> {
    let p = Path::new(path);
    if path.trim().is_empty() || path.contains('\0') {
        return Err(outside(path));
    }
    if !p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside(path));
    }
    Ok(workdir.join(p))
}

/// Checks that `real` (a canonical path) is inside the canonical workdir.
async fn inside(workdir: &Path, real: &Path, path: &str) -> Result<(), Outcome> {
    let root = tokio::fs::canonicalize(workdir)
        .await
        .map_err(|e| Outcome::failed("workdir_unavailable", format!("the workdir: {e}")))?;
    if real.starts_with(&root) {
        Ok(())
    } else {
        Err(outside(path))
    }
}

fn io_error(what: &str, path: &str, e: &std::io::Error) -> Outcome {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => "not_found",
        std::io::ErrorKind::PermissionDenied => "permission_denied",
        _ => "io_error",
    };
    Outcome::failed(code, format!("cannot {what} `{path}`: {e}"))
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
                "{} bytes is above this agent's limit of {}",
                content.len(),
                ctx.max_output_bytes
            ),
        ));
    }
    let target = lexical(ctx.workdir, path)?;
    let parent = target.parent().unwrap_or(ctx.workdir).to_path_buf();
    tokio::fs::create_dir_all(ctx.workdir)
        .await
        .map_err(|e| io_error("create the workdir for", path, &e))?;
    // Resolve the deepest existing ancestor first, so that a symlinked directory cannot lead
    // the directories created below out of the workdir.
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
    inside(ctx.workdir, &real, path).await?;
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| io_error("create the directory of", path, &e))?;
    if let Ok(meta) = tokio::fs::symlink_metadata(&target).await
        && meta.file_type().is_symlink()
    {
        let real = tokio::fs::canonicalize(&target)
            .await
            .map_err(|_| outside(path))?;
        inside(ctx.workdir, &real, path).await?;
    }
    tokio::fs::write(&target, content)
        .await
        .map_err(|e| io_error("write", path, &e))?;
    Ok(Outcome::succeeded(
        format!("wrote {} bytes to {path}", content.len()),
        json!({"path": path, "bytes": content.len()}),
    ))
}

pub async fn read(path: &str, ctx: &Ctx<'_>) -> Outcome {
    match try_read(path, ctx).await {
        Ok(o) | Err(o) => o,
    }
}

async fn try_read(path: &str, ctx: &Ctx<'_>) -> Result<Outcome, Outcome> {
    let target = lexical(ctx.workdir, path)?;
    let real = tokio::fs::canonicalize(&target)
        .await
        .map_err(|e| io_error("read", path, &e))?;
    inside(ctx.workdir, &real, path).await?;
    let bytes = tokio::fs::read(&real)
        .await
        .map_err(|e| io_error("read", path, &e))?;
    let (content, truncated) = capped_text(&bytes, ctx.max_output_bytes);
    Ok(Outcome::succeeded(
        summary_of(&content),
        json!({"path": path, "content": content, "bytes": bytes.len(), "truncated": truncated}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_protocol::wire::ResultStatus;

    fn ctx<'a>(dir: &'a Path, http: &'a reqwest::Client) -> Ctx<'a> {
        Ctx {
            workdir: dir,
            max_output_bytes: 64,
            http,
            http_timeout: std::time::Duration::from_secs(1),
            progress: tokio::sync::mpsc::unbounded_channel().0,
            max_turns: 1,
        }
    }

    fn code(o: &Outcome) -> &str {
        o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("ok")
    }

    #[tokio::test]
    async fn writes_and_reads_inside_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        let c = ctx(dir.path(), &http);
        let w = write("notes/a.txt", "hello\nfile", &c).await;
        assert_eq!(w.status, ResultStatus::Succeeded, "{w:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes/a.txt")).unwrap(),
            "hello\nfile"
        );
        let r = read("./notes/a.txt", &c).await;
        assert_eq!(r.output.data["content"], "hello\nfile");
        assert_eq!(r.output.summary, "file");
        assert_eq!(code(&read("missing.txt", &c).await), "not_found");
        assert_eq!(
            code(&write("big.txt", &"x".repeat(65), &c).await),
            "content_too_large"
        );
    }

    #[tokio::test]
    async fn paths_escaping_the_workdir_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let http = reqwest::Client::new();
        let c = ctx(&work, &http);
        for bad in ["../secret", "/etc/passwd", "a/../../secret", "", "  "] {
            assert_eq!(code(&read(bad, &c).await), "path_outside_workdir", "{bad}");
            assert_eq!(
                code(&write(bad, "x", &c).await),
                "path_outside_workdir",
                "{bad}"
            );
        }
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
}
