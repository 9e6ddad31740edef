//! Answers sent before the request's body was read to its end close their connection.
//!
//! A request refused early (a body over the limit, `413`; not JSON, `415`; no token, `401`; a
//! standby's `307`; an upload refused half-way, `507`…) leaves the rest of its body on the
//! connection. The server cannot read the next request there, so it closes the connection
//! after the answer; without `Connection: close` the client does not know it, sends its next
//! request on that connection and gets an incomplete message instead of an answer. Every
//! request with a body goes through [`track`], and [`BodyRead::close_if_unread`] marks the
//! answer when the body was not read to its end, whichever layer or handler answered.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, header};
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// Whether a tracked request's body was read to its end.
#[derive(Debug, Clone)]
pub struct BodyRead(Option<Arc<AtomicBool>>);

/// `req` with its body watched, if it has one.
pub fn track(req: Request<Body>) -> (Request<Body>, BodyRead) {
    if req.body().is_end_stream() {
        return (req, BodyRead(None));
    }
    let ended = Arc::new(AtomicBool::new(false));
    let watch = BodyRead(Some(Arc::clone(&ended)));
    let req = req.map(|inner| Body::new(Watched { inner, ended }));
    (req, watch)
}

impl BodyRead {
    /// `resp`, with `Connection: close` if the request had a body that was not read to its
    /// end.
    pub fn close_if_unread(&self, mut resp: Response) -> Response {
        if self
            .0
            .as_ref()
            .is_some_and(|ended| !ended.load(Ordering::Acquire))
        {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A body that notes when it has been read to its end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn answer(watch: &BodyRead) -> Option<HeaderValue> {
        watch
            .close_if_unread(Response::new(Body::empty()))
            .headers()
            .get(header::CONNECTION)
            .cloned()
    }

    #[tokio::test]
    async fn only_a_body_left_unread_closes() {
        let close = Some(HeaderValue::from_static("close"));
        let (_req, none) = track(Request::new(Body::empty()));
        assert_eq!(answer(&none), None, "no body");

        let (req, unread) = track(Request::new(Body::from("0123456789")));
        assert_eq!(answer(&unread), close, "not read");
        drop(req);
        assert_eq!(answer(&unread), close, "dropped unread");

        let chunks = futures_util::stream::iter(["ab", "cd"].map(Ok::<_, std::io::Error>));
        let (req, half) = track(Request::new(Body::from_stream(chunks)));
        let mut body = req.into_body().into_data_stream();
        body.next().await.unwrap().unwrap();
        assert_eq!(answer(&half), close, "read half-way");
        body.next().await.unwrap().unwrap();
        assert!(body.next().await.is_none());
        assert_eq!(answer(&half), None, "read to its end");

        let (req, read) = track(Request::new(Body::from("0123456789")));
        axum::body::to_bytes(req.into_body(), 1024).await.unwrap();
        assert_eq!(answer(&read), None, "read whole");
    }
}
