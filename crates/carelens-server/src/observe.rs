//! What the operator sees of the server: one log line per call and the counters
//! `GET /metrics` shows.
//!
//! A log line names the call's request id (also sent back as `carelens-request-id`), the
//! caller, the method, the path, the status, what became of it (released, answered again,
//! the error's code) and how long it took. It never holds SQL, a token, a result value or
//! a request body: the audit log keeps what was asked, and the operator's log need not.
//! The metrics are counts and sums over calls (by route, status, outcome) and the ε
//! spent; like the log they never hold a value of a release.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

/// The header that carries a call's request id back to its caller.
pub const REQUEST_ID: &str = "carelens-request-id";

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `key=value` text, for a person reading a terminal.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
    /// No request lines (tests).
    Off,
}

/// What became of a call, as the handler that answered it says (a response extension
/// the log and the metrics read; it never leaves the server).
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// A release: made now at a cost of `epsilon`, or answered again at no cost.
    Released { cached: bool, epsilon: f64 },
    /// A batch: how many releases it made, answered again, and what it spent.
    Batch {
        released: u64,
        cached: u64,
        epsilon: f64,
    },
    /// An error: its code, whether the service refused on a privacy or governance ground,
    /// and (for our own faults only) the detail withheld from the caller.
    Error {
        code: &'static str,
        refusal: bool,
        detail: Option<String>,
    },
}

/// Who called, once the bearer token is checked (a request extension the authenticator
/// fills and the log reads).
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerSlot(Arc<Mutex<Option<String>>>);

impl CallerSlot {
    pub(crate) fn set(&self, name: &str) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.to_owned());
    }

    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The counters behind `GET /metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Counters>,
}

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct Counters {
    /// Calls by (route, status).
    calls: BTreeMap<(&'static str, u16), u64>,
    /// Latency by route: counts per bucket (the last is +Inf), sum of seconds.
    latency: BTreeMap<&'static str, ([u64; BUCKETS.len() + 1], f64)>,
    releases_new: u64,
    releases_cached: u64,
    /// Errors by (code, refusal).
    errors: BTreeMap<(&'static str, bool), u64>,
    epsilon_spent: f64,
}

impl Metrics {
    fn record(&self, route: &'static str, status: u16, seconds: f64, outcome: Option<&Outcome>) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *c.calls.entry((route, status)).or_default() += 1;
        let (buckets, sum) = c.latency.entry(route).or_default();
        let bucket = BUCKETS
            .iter()
            .position(|&upper| seconds <= upper)
            .unwrap_or(BUCKETS.len());
        buckets[bucket] += 1;
        *sum += seconds;
        match outcome {
            Some(Outcome::Released { cached, epsilon }) => {
                if *cached {
                    c.releases_cached += 1;
                } else {
                    c.releases_new += 1;
                }
                c.epsilon_spent += epsilon;
            }
            Some(Outcome::Batch {
                released,
                cached,
                epsilon,
            }) => {
                c.releases_new += released;
                c.releases_cached += cached;
                c.epsilon_spent += epsilon;
            }
            Some(Outcome::Error { code, refusal, .. }) => {
                *c.errors.entry((code, *refusal)).or_default() += 1;
            }
            None => {}
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        let name = family(
            &mut out,
            "carelens_http_requests_total",
            "counter",
            "API calls answered, by route and status.",
        );
        for ((route, status), n) in &c.calls {
            let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let name = family(
            &mut out,
            "carelens_releases_total",
            "counter",
            "Releases answered: made now (charged) or answered again at no cost.",
        );
        let _ = writeln!(out, "{name}{{cached=\"false\"}} {}", c.releases_new);
        let _ = writeln!(out, "{name}{{cached=\"true\"}} {}", c.releases_cached);
        let name = family(
            &mut out,
            "carelens_errors_total",
            "counter",
            "Calls answered with an error, by code; refusal=\"true\" for privacy and \
             governance refusals (analysis rejections, budget, workflow, role).",
        );
        for ((code, refusal), n) in &c.errors {
            let _ = writeln!(out, "{name}{{code=\"{code}\",refusal=\"{refusal}\"}} {n}");
        }
        let name = family(
            &mut out,
            "carelens_epsilon_spent_total",
            "counter",
            "Epsilon charged by releases made through this server since it started.",
        );
        let _ = writeln!(out, "{name} {}", c.epsilon_spent);
        let name = family(
            &mut out,
            "carelens_http_request_duration_seconds",
            "histogram",
            "Time to answer an API call, by route (the response quantum included).",
        );
        for (route, (buckets, sum)) in &c.latency {
            let mut cumulative = 0;
            for (i, n) in buckets.iter().enumerate() {
                cumulative += n;
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), f64::to_string);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {cumulative}");
        }
        out
    }
}

/// Writes a metric family's `# HELP` and `# TYPE` lines; its name, for its samples.
fn family<'a>(out: &mut String, name: &'a str, kind: &str, help: &str) -> &'a str {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

/// What the observing middleware shares.
#[derive(Debug)]
pub(crate) struct Observer {
    pub metrics: Metrics,
    format: LogFormat,
    next_id: AtomicU64,
    /// The keys that turn the call counter into a request id: SipHash under random keys
    /// drawn per process, so an id says nothing about how many calls others made or when
    /// the server started.
    ids: RandomState,
}

impl Observer {
    pub(crate) fn new(format: LogFormat) -> Self {
        Self {
            metrics: Metrics::default(),
            format,
            next_id: AtomicU64::new(1),
            ids: RandomState::new(),
        }
    }
}

/// The route a path belongs to, for metrics (a fixed set, so that no path a caller makes
/// up becomes a label).
fn route_of(path: &str) -> &'static str {
    let rest = path.strip_prefix("/api/v1/").unwrap_or("");
    match rest.split('/').next().unwrap_or("") {
        "queries" => "queries",
        "explain" => "explain",
        "batches" => "batches",
        "requests" => "requests",
        "budget" => "budget",
        "audit" => "audit",
        "catalog" => "catalog",
        "health" => "health",
        "metrics" => "metrics",
        "openapi.json" => "openapi",
        _ => "other",
    }
}

/// Middleware on every route: gives the call a request id, and logs and counts it.
pub(crate) async fn observe(
    State(observer): State<Arc<Observer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = format!(
        "{:016x}",
        observer
            .ids
            .hash_one(observer.next_id.fetch_add(1, Ordering::Relaxed))
    );
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let outcome = response.extensions_mut().remove::<Outcome>();
    let route = route_of(&path);
    observer
        .metrics
        .record(route, status, seconds, outcome.as_ref());
    if observer.format != LogFormat::Off {
        let line = log_line(
            observer.format,
            &id,
            slot.get().as_deref(),
            &method,
            &path,
            status,
            seconds,
            outcome.as_ref(),
        );
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
    response
}

#[allow(clippy::too_many_arguments)]
fn log_line(
    format: LogFormat,
    id: &str,
    user: Option<&str>,
    method: &str,
    path: &str,
    status: u16,
    seconds: f64,
    outcome: Option<&Outcome>,
) -> String {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ms = (seconds * 1000.0).round() as u64;
    let (what, epsilon, detail) = match outcome {
        Some(Outcome::Released { cached: true, .. }) => ("answered_again".to_owned(), 0.0, None),
        Some(Outcome::Released { epsilon, .. }) => ("released".to_owned(), *epsilon, None),
        Some(Outcome::Batch { epsilon, .. }) => ("batch".to_owned(), *epsilon, None),
        Some(Outcome::Error { code, detail, .. }) => ((*code).to_owned(), 0.0, detail.clone()),
        None => (String::new(), 0.0, None),
    };
    match format {
        LogFormat::Json => json!({
            "at": at,
            "request_id": id,
            "user": user,
            "method": method,
            "path": path,
            "status": status,
            "outcome": (!what.is_empty()).then_some(&what),
            "epsilon": epsilon,
            "ms": ms,
            "detail": detail,
        })
        .to_string(),
        _ => {
            let mut line = format!(
                "{at} request_id={id} user={} {method} {path} status={status} ms={ms}",
                user.unwrap_or("-")
            );
            if !what.is_empty() {
                let _ = write!(line, " outcome={what}");
            }
            if epsilon > 0.0 {
                let _ = write!(line, " epsilon={epsilon}");
            }
            if let Some(detail) = detail {
                let _ = write!(line, " detail={detail:?}");
            }
            line
        }
    }
}
