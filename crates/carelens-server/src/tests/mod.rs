//! Every route and every error status, in process (`tower::ServiceExt::oneshot`), on the
//! bundled sample.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use carelens_service::Service;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

const COUNT: &str = "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person";

mod load;
mod ops;
mod register;
mod tls;
mod web;

struct Fixture {
    _dir: tempfile::TempDir,
    service: Arc<Service>,
    router: axum::Router,
    drain: Drain,
}

/// The options tests serve with: no request log on the test output.
fn quiet() -> ServerOptions {
    ServerOptions {
        log_format: LogFormat::Off,
        register_refresh: Duration::ZERO,
        ..ServerOptions::default()
    }
}

impl Fixture {
    async fn new() -> Self {
        Self::with(quiet()).await
    }

    async fn with(options: ServerOptions) -> Self {
        Self::serving(options, None).await
    }

    /// A server with the bundled query library for its Library page.
    async fn with_library() -> Self {
        let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries");
        Self::serving(quiet(), Some(&library)).await
    }

    async fn serving(options: ServerOptions, library: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let catalog = carelens_catalog::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data/carelens.toml"),
        )
        .unwrap();
        let service = Arc::new(
            Service::open(catalog, &dir.path().join("ledger.sqlite"))
                .await
                .unwrap(),
        );
        let server = Server::with_library(Arc::clone(&service), options, library);
        Self {
            _dir: dir,
            service,
            router: server.router(),
            drain: server.drain(),
        }
    }

    async fn token(&self, user: &str) -> String {
        self.service
            .issue_token(user, Duration::from_secs(3600))
            .await
            .unwrap()
            .secret
    }

    /// `method path` with `token` and a JSON `body`; the status, headers and body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        accept: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, bytes.to_vec())
    }

    /// `POST /api/v1/queries` with `body` as `token`'s user, answered in JSON.
    async fn query(
        &self,
        token: &str,
        body: Value,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.call("POST", "/api/v1/queries", Some(token), Some(body), None)
            .await
    }

    async fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.call(method, path, token, body, None).await;
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, value)
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_token_and_everything_else_does() {
    let f = Fixture::new().await;
    let (status, body) = f.json("GET", "/api/v1/health", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));

    let revoked = f
        .service
        .issue_token("analyst", Duration::from_secs(60))
        .await
        .unwrap();
    f.service.revoke_token(revoked.info.id).await.unwrap();
    let expired = f
        .service
        .issue_token("analyst", Duration::ZERO)
        .await
        .unwrap()
        .secret;
    let valid = f.token("analyst").await;
    // The valid token with its last digit changed.
    let last = if valid.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &valid[..valid.len() - 1]);
    for token in [
        None,
        Some("nonsense"),
        Some(wrong.as_str()),
        Some(&revoked.secret),
        Some(&expired),
    ] {
        for (method, path) in [
            ("GET", "/api/v1/budget"),
            ("POST", "/api/v1/queries"),
            ("GET", "/api/v1/requests"),
            ("POST", "/api/v1/explain"),
        ] {
            let body = (method == "POST").then(|| json!({ "sql": COUNT }));
            let (status, answer) = f.json(method, path, token, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {token:?}");
            assert_eq!(code(&answer), "unauthenticated");
        }
    }
    // Nothing was spent by any of them.
    let (status, lines) = f.json("GET", "/api/v1/budget", Some(&valid), None).await;
    assert_eq!(status, StatusCode::OK);
    let lines = lines.as_array().expect("budget lines");
    assert!(!lines.is_empty());
    for line in lines {
        assert_eq!(line["spent"]["epsilon"], 0.0, "{line}");
    }
    assert!(lines.iter().any(|line| line["name"] == "analyst"));
    let (status, answer) = f.json("GET", "/api/v1/nowhere", Some(&valid), None).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_answers_the_stored_release_and_its_renderings() {
    let f = Fixture::new().await;
    let analyst = f.token("analyst").await;
    let sql = json!({ "sql": COUNT });
    let (status, headers, first) = f.query(&analyst, sql.clone()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["carelens-cached"], "false");
    assert_eq!(headers["carelens-epsilon-spent"], "0.5");
    // The bytes answered are the bytes stored: their hash is a released entry's.
    let check = f.service.check_release(&first).await.unwrap();
    let release: Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(
        check.released.map(|(seq, _)| seq),
        release["release_id"].as_i64()
    );

    let (status, headers, again) = f.query(&analyst, sql.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first, "the same bytes again");
    assert_eq!(
        (
            &headers["carelens-cached"],
            &headers["carelens-epsilon-spent"]
        ),
        (&"true".parse().unwrap(), &"0".parse().unwrap())
    );
    let (status, headers, csv) = f
        .call(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(sql.clone()),
            Some("text/csv"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(String::from_utf8(csv).unwrap().starts_with("n\n"));
    let (status, headers, parquet) = f
        .call(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(sql),
            Some(PARQUET_TYPE),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], PARQUET_TYPE);
    assert_eq!(&parquet[..4], b"PAR1");
    let (status, headers, stream) = f
        .call(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sql": COUNT })),
            Some("application/vnd.apache.arrow.stream"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let reader = arrow::ipc::reader::StreamReader::try_new(stream.as_slice(), None).unwrap();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].num_rows(), 1);
    assert_eq!(batches[0].schema().field(0).name(), "n");
}

const PARQUET_TYPE: &str = "application/vnd.apache.parquet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_code() {
    let f = Fixture::new().await;
    let (analyst, researcher) = (f.token("analyst").await, f.token("researcher").await);
    let post = |sql: &str| Some(json!({ "sql": sql }));

    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            post("SELECT person_id FROM person"),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "rejected")
    );
    assert_eq!(
        body["error"]["rejection"]["kind"], "person_column",
        "{body}"
    );

    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            post("SELECT nope FROM person"),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "rejected")
    );
    assert_eq!(body["error"]["rejection"]["kind"], "name", "{body}");
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            post(
                "SELECT COUNT(*) AS n FROM person p JOIN person q \
                 ON p.person_id = q.person_id WHERE sex = 'F'",
            ),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_query"),
        "{body}"
    );

    let (status, body) = f
        .json("POST", "/api/v1/queries", Some(&researcher), post(COUNT))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "researchers_ask")
    );

    // Over budget: the analyst has 15; seven queries of 2 spend 14, and one of 2 more is
    // refused.
    for year in 0..7 {
        let sql = format!(
            "-- carelens: epsilon=2\nSELECT COUNT(*) AS n FROM person WHERE year_of_birth > {}",
            1930 + year
        );
        let (status, _) = f
            .json("POST", "/api/v1/queries", Some(&analyst), post(&sql))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            post("-- carelens: epsilon=2\nSELECT COUNT(*) AS n FROM person"),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "over_budget")
    );

    // Malformed requests: not JSON, a missing field, an unknown field, too large.
    let (status, _, _) = f.query(&analyst, json!("SELECT 1")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sq": COUNT })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_request")
    );
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sql": COUNT, "user": "admin" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "bad_request"),
        "no body field names a user"
    );
    let huge = format!(
        "SELECT COUNT(*) FROM person WHERE {}",
        "1 = 1 OR ".repeat(30_000)
    );
    let (status, body) = f
        .json("POST", "/api/v1/queries", Some(&analyst), post(&huge))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "bad_request")
    );

    // Audit: only overseers see others' entries.
    let (status, body) = f
        .json("GET", "/api/v1/audit?of=admin", Some(&analyst), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "others_entries")
    );
    let (status, body) = f
        .json("GET", "/api/v1/audit?event=rejected", Some(&analyst), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_array()
            .unwrap()
            .iter()
            .all(|e| e["user"] == "analyst")
    );
    // The person column in the output, and the unknown column.
    assert_eq!(body.as_array().unwrap().len(), 2, "{body}");
    let (status, body) = f
        .json("GET", "/api/v1/audit?event=nonsense", Some(&analyst), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "bad_input")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_workflow_over_http() {
    let f = Fixture::new().await;
    let (analyst, researcher, approver) = (
        f.token("analyst").await,
        f.token("researcher").await,
        f.token("approver").await,
    );
    let sql = "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth < 1950";
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/requests",
            Some(&researcher),
            Some(json!({ "sql": sql, "purpose": "a feasibility count", "epsilon": 0.5 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["request"]["id"].as_i64().unwrap();
    assert_eq!(body["cost"]["epsilon"], 0.5);

    // An analyst cannot decide; another user's request is unknown to the analyst, not
    // forbidden (its existence is not confirmed); the requester cannot release it yet.
    let approve = |note: &str| Some(json!({ "note": note }));
    let (status, body) = f
        .json(
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(&analyst),
            approve("ok"),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_request"),
        "{body}"
    );
    let (status, body) = f
        .json(
            "GET",
            &format!("/api/v1/requests/{id}"),
            Some(&analyst),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_request")
    );
    let (status, body) = f
        .json(
            "POST",
            &format!("/api/v1/requests/{id}/release"),
            Some(&researcher),
            None,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "wrong_state"),
        "{body}"
    );

    let (status, body) = f
        .json(
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(&approver),
            approve("fine"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["request"]["state"], "approved");
    let (status, headers, first) = f
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/release"),
            Some(&researcher),
            None,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(headers["carelens-cached"], "false");
    let (_, headers, again) = f
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/release"),
            Some(&researcher),
            None,
            None,
        )
        .await;
    assert_eq!(
        (again, &headers["carelens-cached"]),
        (first, &"true".parse().unwrap())
    );

    let (status, body) = f
        .json("GET", "/api/v1/requests", Some(&researcher), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["state"], "released");
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/requests/999/reject",
            Some(&approver),
            Some(json!({ "note": "x" })),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "unknown_request")
    );
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/explain",
            Some(&researcher),
            Some(json!({ "sql": COUNT })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["epsilon"], 0.5);
    assert!(
        body["private"]["mechanisms"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
    );
}
