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
    running: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Gate {
    pub(crate) fn new(running: usize, waiting: usize) -> Self {
        Self {
            running: Semaphore::new(running.max(1)),
            waiting: AtomicUsize::new(0),
            max_waiting: waiting,
        }
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
    let permit = match gate.running.try_acquire() {
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
            let permit = gate.running.acquire().await;
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
    let response = next.run(request).await;
    drop(permit);
    response
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
