//! The routes a shared service adds to the release protocol: the catalog as each role
//! may see it, the log's check, metrics, batches, the OpenAPI document, the queue and
//! stopping.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::*;
use crate::routes::api_routes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_shows_file_statistics_to_admins_only() {
    let f = Fixture::new().await;
    for user in ["analyst", "researcher", "approver"] {
        let token = f.token(user).await;
        let (status, catalog) = f.json("GET", "/api/v1/catalog", Some(&token), None).await;
        assert_eq!(status, StatusCode::OK, "{user}: {catalog}");
        let tables = catalog["tables"].as_array().expect("tables");
        assert!(tables.iter().any(|t| t["name"] == "person"), "{catalog}");
        for table in tables {
            assert!(table["columns"].as_array().is_some_and(|c| !c.is_empty()));
            // Exact counts of the extract are released outside the budget: never to
            // those who query it.
            assert!(table.get("rows").is_none(), "{user} sees rows: {table}");
            assert!(table.get("warnings").is_none(), "{user} sees warnings");
        }
        assert!(catalog.get("users").is_none(), "{user} sees the users");
        assert!(catalog["policy"]["epsilon_max"].is_number());
        assert!(catalog["disclosure"]["name"].is_string());
    }
    let admin = f.token("admin").await;
    let (status, catalog) = f.json("GET", "/api/v1/catalog", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    let person = catalog["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "person")
        .unwrap();
    assert!(person["rows"].as_u64().is_some_and(|rows| rows > 0));
    assert!(person["warnings"].is_array());
    assert_eq!(catalog["users"].as_array().map(Vec::len), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_checks_itself_for_anyone_signed_in() {
    let f = Fixture::new().await;
    let analyst = f.token("analyst").await;
    let (status, _) = f.json("GET", "/api/v1/audit/verify", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sql": COUNT })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, check) = f
        .json("GET", "/api/v1/audit/verify", Some(&analyst), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check["intact"], true, "{check}");
    // The token's issue, the charge and the release at least.
    assert!(check["entries"].as_i64().is_some_and(|n| n >= 3), "{check}");
    assert_eq!(check["head"]["hash"].as_str().map(str::len), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_for_admins_and_hold_no_result() {
    let f = Fixture::new().await;
    let (analyst, admin) = (f.token("analyst").await, f.token("admin").await);
    let (_, _, bytes) = f.query(&analyst, json!({ "sql": COUNT })).await;
    let release: Value = serde_json::from_slice(&bytes).unwrap();
    let _ = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sql": "SELECT person_id FROM person" })),
        )
        .await;

    let (status, answer) = f.json("GET", "/api/v1/metrics", Some(&analyst), None).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::FORBIDDEN, "admins_only")
    );

    let (status, headers, text) = f
        .call("GET", "/api/v1/metrics", Some(&admin), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(text).unwrap();
    for line in [
        "carelens_releases_total{cached=\"false\"} 1",
        "carelens_epsilon_spent_total 0.5",
        "carelens_http_requests_total{route=\"queries\",status=\"200\"} 1",
        "# TYPE carelens_http_request_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("carelens_errors_total{code=") && l.contains("refusal=\"true\"")),
        "the rejection is counted:\n{text}"
    );
    // Every sample line is a name, optional labels and a number; the released count
    // appears nowhere.
    let value = release["rows"][0]["n"].to_string();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let number = line.rsplit(' ').next().unwrap();
        assert!(number.parse::<f64>().is_ok(), "{line}");
        assert!(!line.contains(&format!("\"{value}\"")), "{line}");
    }
}

#[derive(Deserialize)]
struct BatchAnswer {
    items: Vec<BatchItem>,
    spent: Value,
    report_html: String,
}

#[derive(Deserialize)]
struct BatchItem {
    name: String,
    outcome: String,
    spent: Value,
    release: Option<Box<RawValue>>,
    error: Option<Value>,
    why: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_checked_whole_and_answers_each_release_as_stored() {
    let f = Fixture::new().await;
    let analyst = f.token("analyst").await;
    let count_by_sex =
        "-- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS n FROM person GROUP BY sex";
    let batch = json!({ "queries": [
        { "name": "total", "sql": COUNT },
        { "name": "by_sex", "sql": count_by_sex },
        { "name": "identifiers", "sql": "SELECT person_id FROM person",
          "source": "mine/identifiers.sql" },
    ]});
    let (status, _, bytes) = f
        .call(
            "POST",
            "/api/v1/batches",
            Some(&analyst),
            Some(batch.clone()),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let answer: BatchAnswer = serde_json::from_slice(&bytes).unwrap();
    let outcomes: Vec<(&str, &str)> = answer
        .items
        .iter()
        .map(|i| (i.name.as_str(), i.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("total", "released"),
            ("by_sex", "released"),
            ("identifiers", "rejected")
        ]
    );
    assert_eq!(answer.spent["epsilon"], 1.0);
    // The report a commissioner reads: every query by name, its outcome, the budget.
    let html = &answer.report_html;
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..100.min(html.len())]
    );
    for needle in ["total", "by_sex", "mine/identifiers.sql", "rejected"] {
        assert!(html.contains(needle), "the report lacks {needle:?}");
    }
    assert_eq!(answer.items[2].spent["epsilon"], 0.0);
    // Why, in words, naming the source the client gave.
    let why = answer.items[2].why.as_deref().unwrap();
    assert!(why.contains("--> mine/identifiers.sql"), "{why}");
    assert!(answer.items[0].why.is_none());
    let error = answer.items[2].error.as_ref().unwrap();
    assert_eq!(
        (error["code"].as_str(), error["refusal"].as_bool()),
        (Some("rejected"), Some(true))
    );

    // Each release is the stored bytes, verbatim: the same as asking for it alone (now
    // at no cost), and known to the ledger.
    let total = answer.items[0].release.as_ref().unwrap().get();
    let (status, headers, alone) = f.query(&analyst, json!({ "sql": COUNT })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["carelens-cached"], "true");
    assert_eq!(format!("{total}\n").as_bytes(), alone.as_slice());
    let check = f
        .service
        .check_release(format!("{total}\n").as_bytes())
        .await
        .unwrap();
    assert!(check.released.is_some());

    // Again: every release answered at no cost.
    let (_, again) = f
        .json("POST", "/api/v1/batches", Some(&analyst), Some(batch))
        .await;
    assert_eq!(again["spent"]["epsilon"], 0.0, "{again}");
    assert_eq!(again["items"][0]["outcome"], "cached");

    // A batch that does not fit is refused whole: nothing runs.
    let big: Vec<Value> = (0..16)
        .map(|i| {
            json!({ "name": format!("q{i}"),
                    "sql": format!(
                        "-- carelens: epsilon=1\nSELECT COUNT(*) AS n FROM person \
                         WHERE year_of_birth >= {}",
                        1920 + i
                    ) })
        })
        .collect();
    let (status, refused) = f
        .json(
            "POST",
            "/api/v1/batches",
            Some(&analyst),
            Some(json!({ "queries": big })),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::FORBIDDEN, "batch_over_budget"),
        "{refused}"
    );
    assert_eq!(refused["error"]["refusal"], true);

    // Researchers spend only through requests; an empty batch is malformed.
    let researcher = f.token("researcher").await;
    let (status, refused) = f
        .json(
            "POST",
            "/api/v1/batches",
            Some(&researcher),
            Some(json!({ "queries": [{ "name": "t", "sql": COUNT }] })),
        )
        .await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::FORBIDDEN, "researchers_ask")
    );
    let (status, _) = f
        .json(
            "POST",
            "/api/v1/batches",
            Some(&analyst),
            Some(json!({ "queries": [] })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, lines) = f.json("GET", "/api/v1/budget", Some(&analyst), None).await;
    let own = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "analyst")
        .unwrap();
    assert_eq!(own["spent"]["epsilon"], 1.0, "{own}");
}

/// The document's paths and methods: `{("/queries", "post"), ...}`.
fn documented() -> BTreeSet<(String, String)> {
    let document: Value = serde_json::from_str(crate::openapi::DOCUMENT).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((path.clone(), method.clone()));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_real_routes_both_ways() {
    let f = Fixture::new().await;
    let real: BTreeSet<(String, String)> = api_routes()
        .iter()
        .flat_map(|(path, methods, _, _)| {
            methods
                .iter()
                .map(|m| ((*path).to_owned(), (*m).to_owned()))
        })
        .collect();
    assert_eq!(documented(), real, "the document and the routes differ");

    // Each route answers its documented methods (never 404 or 405) and only those (405).
    let admin = f.token("admin").await;
    for (path, method) in &real {
        let url = format!("/api/v1{}", path.replace("{id}", "1"));
        let body = (method == "post").then(|| json!({}));
        let (status, _, _) = f
            .call(&method.to_uppercase(), &url, Some(&admin), body, None)
            .await;
        assert!(
            status != StatusCode::NOT_FOUND || path.contains("{id}"),
            "{method} {url}: {status}"
        );
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {url}");
        for other in ["get", "post", "put", "delete"] {
            if !real.contains(&(path.clone(), other.to_owned())) {
                let (status, _, _) = f
                    .call(&other.to_uppercase(), &url, Some(&admin), None, None)
                    .await;
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{other} {url}");
            }
        }
    }
    // Served as it is, without a token.
    let (status, served) = f.json("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        served,
        serde_json::from_str::<Value>(crate::openapi::DOCUMENT).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id() {
    let f = Fixture::new().await;
    let mut ids = BTreeSet::new();
    for path in ["/api/v1/health", "/api/v1/budget", "/nowhere"] {
        let (_, headers, _) = f.call("GET", path, None, None, None).await;
        let id = headers[REQUEST_ID].to_str().unwrap().to_owned();
        // 64 bits under the process's keys: no count of calls, no start time in it.
        assert!(
            id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(ids.insert(id), "request ids repeat");
    }
    let ids: Vec<u64> = ids
        .iter()
        .map(|id| u64::from_str_radix(id, 16).unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[1].abs_diff(w[0]) > 1_000),
        "consecutive calls get unrelated ids: {ids:x?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_running_and_waiting_calls_the_answer_is_429() {
    let f = Fixture::with(ServerOptions {
        max_running: 1,
        max_waiting: 0,
        ..quiet()
    })
    .await;
    let analyst = f.token("analyst").await;
    // Each answer is held to the response quantum (1 s on the sample), so the first call
    // holds the only turn while the second arrives.
    let first = {
        let router = f.router.clone();
        let analyst = analyst.clone();
        tokio::spawn(async move {
            let request = Request::post("/api/v1/queries")
                .header("authorization", format!("Bearer {analyst}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({ "sql": COUNT }).to_string()))
                .unwrap();
            router.oneshot(request).await.unwrap().status()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, headers, body) = f
        .call(
            "POST",
            "/api/v1/explain",
            Some(&analyst),
            Some(json!({ "sql": COUNT })),
            None,
        )
        .await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "busy")
    );
    assert_eq!(headers["retry-after"], "5");
    // Routes that plan nothing are not queued.
    let (status, _) = f.json("GET", "/api/v1/budget", Some(&analyst), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_server_answers_503_to_new_calls() {
    let f = Fixture::new().await;
    let analyst = f.token("analyst").await;
    f.drain.start();
    for (method, path) in [("GET", "/api/v1/health"), ("POST", "/api/v1/queries")] {
        let body = (method == "POST").then(|| json!({ "sql": COUNT }));
        let (status, headers, answer) = f.call(method, path, Some(&analyst), body, None).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::SERVICE_UNAVAILABLE, "stopping")
        );
        assert!(headers.contains_key("retry-after"));
    }
    let lines = f
        .service
        .budget(&f.service.caller("analyst").unwrap())
        .await
        .unwrap();
    assert!(lines.iter().all(|l| l.spent.epsilon_value() == 0.0));
}
