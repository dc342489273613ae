//! The limits a shared service needs beyond the engine's own (each query's time and
//! memory, from the policy): how many queries run at once, how many may wait, and no new
//! work once the server is stopping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::ApiError;

/// Seconds a client is asked to wait before trying again when the queue is full or the
/// server is stopping.
const RETRY_AFTER_SECONDS: u32 = 5;

/// Whether the server is stopping: once it is, calls already running finish (a release
/// being made is stored and answered) and new calls are answered 503.
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    /// A server that is not stopping.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, new calls are answered 503.
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Drain::start`] was called.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The calls that plan or run queries (DataFusion work: CPU and memory): at most
/// `running` at once, at most `waiting` more in a queue, first come first served; a call
/// beyond both is answered 429 at once, before anything is planned, charged or logged.
#[derive(Debug)]
pub(crate) struct Gate {
    running: Arc<Semaphore>,
    /// How many calls may run at once.
    capacity: u32,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    pub(crate) fn new(running: usize, waiting: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(running.max(1))),
            capacity: u32::try_from(running.max(1)).unwrap_or(u32::MAX),
            waiting: AtomicUsize::new(0),
            max_waiting: waiting,
        }
    }
}

impl Gate {
    /// Waits until no call is running: those whose callers hung up run on their own, and
    /// must end (their releases stored) before the server's process does.
    pub(crate) async fn idle(&self) {
        let _ = self.running.acquire_many(self.capacity).await;
    }
}

/// Leaves the queue however the wait ends (a client that goes away drops its call).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Middleware on the query routes: a turn at the gate, or 429.
pub(crate) async fn queue(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let permit = match Arc::clone(&gate.running).try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            let queued = gate.waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = Waiting(&gate.waiting);
            if queued >= gate.max_waiting {
                drop(waiting);
                return busy(
                    StatusCode::TOO_MANY_REQUESTS,
                    "busy",
                    "too many queries are running or waiting; try again shortly",
                );
            }
            let permit = Arc::clone(&gate.running).acquire_owned().await;
            drop(waiting);
            match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => {
                    return busy(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "stopping",
                        "the server is stopping",
                    );
                }
            }
        }
    };
    // The call runs to its end on its own task, holding its turn, even if the caller hangs
    // up: a query charged must be run and stored (or its failure stored), never cut short
    // half way — the caller, or anyone asking the same, gets the stored answer at no cost.
    let call = tokio::spawn(async move {
        let response = next.run(request).await;
        drop(permit);
        response
    });
    match call.await {
        Ok(response) => response,
        Err(_) => ApiError::Request {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "an internal error; the operator's log has the details".to_owned(),
        }
        .into_response(),
    }
}

/// How long a caller has to send a request's body.
pub(crate) const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Middleware on every route, outside the gate: the body is read whole (up to `limit`
/// bytes) within [`BODY_DEADLINE`] before anything else, so a caller trickling a body
/// holds no turn at the gate while it does (answered 408 when it is too slow, 413 when it
/// is too large).
pub(crate) async fn read_body_first(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::Request {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "bad_request",
            message: format!("the request's body is larger than {limit} bytes"),
        }
        .into_response(),
        Err(_) => ApiError::Request {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "bad_request",
            message: format!(
                "the request's body did not arrive within {} s",
                BODY_DEADLINE.as_secs()
            ),
        }
        .into_response(),
    }
}

/// Middleware on every route: 503 once the server is stopping.
pub(crate) async fn refuse_when_draining(
    State(drain): State<Drain>,
    request: Request,
    next: Next,
) -> Response {
    if drain.is_draining() {
        return busy(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the server is stopping; try again when it is back",
        );
    }
    next.run(request).await
}

fn busy(status: StatusCode, code: &'static str, message: &str) -> Response {
    let mut response = ApiError::Request {
        status,
        code,
        message: message.to_owned(),
    }
    .into_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}
