//! `http`: GET a URL with a timeout and a size cap on the body.

use futures_util::StreamExt;
use serde_json::json;

use super::{Ctx, Outcome, capped_text};

pub async fn get(url: &str, ctx: &Ctx<'_>) -> Outcome {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            return Outcome::failed("invalid_url", format!("`{url}` is not an http(s) URL"));
        }
    };
    let fetch = async {
        let resp = ctx
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| Outcome::failed("http_unreachable", format!("GET {url}: {e}")))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        let mut cut = false;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| Outcome::failed("http_unreachable", format!("GET {url}: {e}")))?;
            let room = ctx.max_output_bytes.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                // Stop downloading: everything further would be thrown away.
                cut = true;
                break;
            }
        }
        let (text, cut_utf8) = capped_text(&body, ctx.max_output_bytes);
        let data = json!({
            "status": status.as_u16(),
            "content_type": content_type,
            "body": text,
            "truncated": cut || cut_utf8,
        });
        let summary = format!(
            "HTTP {} from {url} ({} bytes{})",
            status.as_u16(),
            body.len(),
            if cut { ", truncated" } else { "" }
        );
        if status.is_success() {
            Ok(Outcome::succeeded(summary, data))
        } else {
            Err(Outcome::failed_with(
                "http_status",
                format!("GET {url} answered {status}"),
                weft_protocol::TaskOutput { summary, data },
            ))
        }
    };
    match tokio::time::timeout(ctx.http_timeout, fetch).await {
        Ok(Ok(o) | Err(o)) => o,
        Err(_) => Outcome::failed(
            "timeout",
            format!(
                "GET {url} took longer than {} s",
                ctx.http_timeout.as_secs_f64()
            ),
        ),
    }
}
