//! The public transparency register: served without a token, every charge in it with only
//! the public fields, and nothing released in it.

use std::collections::BTreeSet;

use super::*;

/// Every key the register's JSON may hold, at any depth: the public fields, decided in
/// carelens-service's `register` module. A new key fails here until it is decided public.
const PUBLIC_KEYS: [&str; 32] = [
    "dataset",
    "accounting",
    "rho",
    "made_at",
    "cap",
    "spent",
    "epsilon",
    "delta",
    "charges",
    "entry",
    "date",
    "role",
    "basis",
    "purpose",
    "cumulative_epsilon",
    "outcome",
    "release",
    "answered_again",
    "rejected",
    "refused",
    "log",
    "intact",
    "entries",
    "head_seq",
    "head_hash",
    "disclosure",
    "suppress_at_or_below",
    "rounding",
    "zero",
    "marker",
    "method",
    "base",
];

fn keys(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                into.insert(key.clone());
                keys(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys(item, into)),
        _ => {}
    }
}

/// The numbers written in `text` (thousands separators dropped), hex hashes left out.
fn numbers_in(text: &str) -> BTreeSet<String> {
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    let mut plain = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if hex(c) {
            run.push(c);
            continue;
        }
        if run.len() < 64 {
            plain.push_str(&run);
        }
        run.clear();
        plain.push(c);
    }
    plain
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .map(|token| token.trim_matches(['.', ',']).replace(',', ""))
        .filter(|token| !token.is_empty())
        .collect()
}

async fn get(f: &Fixture, path: &str) -> (StatusCode, String, String) {
    let (status, headers, body) = f.call("GET", path, None, None, None).await;
    let media = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, media, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_public_and_lists_every_charge_without_a_result() {
    let f = Fixture::new().await;
    let (status, media, page) = get(&f, "/register").await;
    assert_eq!(status, StatusCode::OK);
    assert!(media.starts_with("text/html"), "{media}");
    assert!(page.contains("Nothing has been spent yet"), "{page}");

    let (analyst, researcher, approver) = (
        f.token("analyst").await,
        f.token("researcher").await,
        f.token("approver").await,
    );
    // Two titled queries (one titled with markup and a spreadsheet formula), one without a
    // title, one asked twice, one rejected, one request released after approval.
    let by_sex = "-- People by sex, for the register's test\n-- What: registered people by sex.\n\
                  -- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS n FROM person GROUP BY sex";
    let by_decile = "-- =HYPERLINK(\"x\") <script>alert(1)</script>\n-- What: people by decile.\n\
                     -- carelens: epsilon=0.25\n\
                     SELECT imd_decile, COUNT(*) AS n FROM person GROUP BY imd_decile";
    // A first comment line not written to be read (no `What:`): commented-out SQL with a
    // literal, never published.
    let untitled = "-- SELECT COUNT(*) FROM person WHERE year_of_birth = 1931\n\
                    SELECT COUNT(*) AS n FROM person WHERE year_of_birth < 1961";
    let mut released = Vec::new();
    for sql in [by_sex, by_decile, untitled, by_sex] {
        let (status, _, body) = f.query(&analyst, json!({ "sql": sql })).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        released.push(serde_json::from_slice::<Value>(&body).unwrap());
    }
    let (status, _) = f
        .json(
            "POST",
            "/api/v1/queries",
            Some(&analyst),
            Some(json!({ "sql": "SELECT person_id FROM person" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let request_sql =
        "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth < 1951";
    let (status, body) = f
        .json(
            "POST",
            "/api/v1/requests",
            Some(&researcher),
            Some(json!({ "sql": request_sql, "purpose": "Feasibility of the Wessex falls trial", "epsilon": 0.5 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["request"]["id"].as_i64().unwrap();
    let (status, body) = f
        .json(
            "POST",
            &format!("/api/v1/requests/{id}/approve"),
            Some(&approver),
            Some(json!({ "note": "fine" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = f
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/release"),
            Some(&researcher),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    released.push(serde_json::from_slice::<Value>(&body).unwrap());

    // The register, as JSON, without a token.
    let (status, media, text) = get(&f, "/register.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(media, "application/json");
    let register: Value = serde_json::from_str(&text).unwrap();
    let mut found = BTreeSet::new();
    keys(&register, &mut found);
    let public: BTreeSet<String> = PUBLIC_KEYS.iter().map(|k| k.to_string()).collect();
    assert!(
        found.is_subset(&public),
        "fields not decided public: {:?}",
        found.difference(&public).collect::<Vec<_>>()
    );
    let charges = register["charges"].as_array().unwrap();
    let summary: Vec<(Value, Value, Value, Value, f64)> = charges
        .iter()
        .map(|c| {
            (
                c["role"].clone(),
                c["basis"].clone(),
                c["purpose"].clone(),
                c["outcome"].clone(),
                c["spent"]["epsilon"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("analyst"),
                json!("query"),
                json!("People by sex, for the register's test"),
                json!("released"),
                0.5
            ),
            (
                json!("analyst"),
                json!("query"),
                json!("=HYPERLINK(\"x\") <script>alert(1)</script>"),
                json!("released"),
                0.25
            ),
            (
                json!("analyst"),
                json!("query"),
                Value::Null,
                json!("released"),
                1.0
            ),
            (
                json!("researcher"),
                json!("approved_request"),
                json!("Feasibility of the Wessex falls trial"),
                json!("released"),
                0.5
            ),
        ]
    );
    let cumulative: Vec<f64> = charges
        .iter()
        .map(|c| c["cumulative_epsilon"].as_f64().unwrap())
        .collect();
    assert_eq!(cumulative, [0.5, 0.75, 1.75, 2.25]);
    assert_eq!(register["spent"]["epsilon"], 2.25);
    assert_eq!(register["cap"]["epsilon"], 20.0);
    assert_eq!(register["answered_again"], 1);
    assert_eq!(register["rejected"], 1);
    // Each release named is the one the caller got.
    let ids: Vec<Value> = charges.iter().map(|c| c["release"].clone()).collect();
    let got: Vec<Value> = [0, 1, 2, 4]
        .iter()
        .map(|&i| released[i]["release_id"].clone())
        .collect();
    assert_eq!(ids, got);
    let length = f.service.log_length().await.unwrap();
    assert_eq!(register["log"]["intact"], true);
    assert_eq!(register["log"]["head_seq"], length);

    // No released value, no SQL, in any form of the register.
    let (_, _, page) = get(&f, "/register").await;
    let (_, media, csv) = get(&f, "/register.csv").await;
    assert!(media.starts_with("text/csv"), "{media}");
    for form in [&page, &csv, &text] {
        let written = numbers_in(form);
        for release in &released {
            for row in release["rows"].as_array().unwrap() {
                for (column, value) in row.as_object().unwrap() {
                    let Some(value) = value.as_f64() else {
                        continue;
                    };
                    if column == "imd_decile" || value < 100.0 {
                        continue;
                    }
                    let shown = carelens_render::number(value).replace(',', "");
                    assert!(
                        !written.contains(&shown),
                        "released value {shown} ({column}) is in the register"
                    );
                }
            }
        }
        for sql_text in [
            "SELECT",
            "year_of_birth",
            "1931",
            "1961",
            "1951",
            "GROUP BY",
        ] {
            assert!(!form.contains(sql_text), "{sql_text} is in the register");
        }
    }
    // Every form is checked against this test's own values: they were large.
    assert!(released[0]["rows"][0]["n"].as_f64().unwrap() > 1000.0);

    // Markup in a title is text on the page; a formula is not one in the CSV.
    assert!(!page.contains("<script>alert"), "a title's markup is live");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        csv.contains("\"'=HYPERLINK(\"\"x\"\") <script>alert(1)</script>\""),
        "{csv}"
    );
    assert!(page.contains(&format!(
        "carelens audit verify --expect-head {length}:{}",
        register["log"]["head_hash"].as_str().unwrap()
    )));
    assert!(page.contains("href=\"register.csv\"") && page.contains("href=\"register.json\""));
    // The CSV has a line per charge and the same columns every time.
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + charges.len());
    assert_eq!(
        lines[0],
        "entry,date,role,basis,purpose,epsilon,delta,cumulative_epsilon,outcome,release,rho"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_made_again_when_the_log_grows() {
    let f = Fixture::new().await;
    let (_, _, before) = get(&f, "/register.json").await;
    let before: Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["charges"], json!([]));
    let analyst = f.token("analyst").await;
    let (status, _, _) = f.query(&analyst, json!({ "sql": COUNT })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, after) = get(&f, "/register.json").await;
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["charges"].as_array().unwrap().len(), 1);
    assert_eq!(after["spent"]["epsilon"], 0.5);
}

/// With a refresh interval, a poller gets the same register until it is due: the time of
/// a charge shows only to within the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_made_again_only_when_due() {
    let f = Fixture::with(ServerOptions {
        register_refresh: std::time::Duration::from_secs(3600),
        ..quiet()
    })
    .await;
    let (_, _, before) = get(&f, "/register.json").await;
    let analyst = f.token("analyst").await;
    let (status, _, _) = f.query(&analyst, json!({ "sql": COUNT })).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, after) = get(&f, "/register.json").await;
    assert_eq!(
        before, after,
        "the register was made again before it was due"
    );
    let after: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["charges"], json!([]));
}
