//! The signed-in pages' security, in process: sign-in, the session cookie, CSRF on every
//! form, a revoked token ending its sessions, sign-out. (Whole flows in a real browser,
//! with accessibility checks, are in tests/browser, run by scripts/check-pages-in-browser.sh.)

use axum::http::HeaderMap;

use crate::session::{SESSION_COOKIE, SIGNIN_COOKIE};

use super::*;

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A page call: `method path` with `cookies` and, for a post, the form `fields`.
async fn page(
    f: &Fixture,
    method: &str,
    path: &str,
    cookies: &str,
    fields: &[(&str, &str)],
    origin: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "carelens.test");
    if !cookies.is_empty() {
        request = request.header("cookie", cookies);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let request = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.join("&")))
        .unwrap();
    let response = f.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// `POST path` of the form `fields` with `cookies`, from no other site.
async fn post(
    f: &Fixture,
    path: &str,
    cookies: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    page(f, "POST", path, cookies, fields, None).await
}

/// `name=value` of the cookie `name` that `headers` set.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

/// The CSRF secret the page's forms carry.
fn csrf_of(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with its CSRF secret")
        + 19;
    html[start..start + 64].to_owned()
}

/// Signs `token` in; the session cookie and the pages' CSRF secret.
async fn sign_in(f: &Fixture, token: &str) -> (String, String) {
    let (_, headers, html) = page(f, "GET", "/signin", "", &[], None).await;
    let signin = set_cookie(&headers, SIGNIN_COOKIE).expect("the sign-in cookie");
    let csrf = csrf_of(&html);
    let (status, headers, _) = page(
        f,
        "POST",
        "/signin",
        &signin,
        &[("csrf", &csrf), ("token", token)],
        Some("http://carelens.test"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/query");
    let session = set_cookie(&headers, SESSION_COOKIE).expect("a session cookie");
    let (status, _, html) = page(f, "GET", "/query", &session, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    (session, csrf_of(&html))
}

async fn analyst_spent(f: &Fixture) -> f64 {
    let caller = f.service.caller("analyst").unwrap();
    let lines = f.service.own_budget(&caller).await.unwrap();
    lines
        .iter()
        .find(|l| l.name == "analyst")
        .unwrap()
        .spent
        .epsilon_value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_strict_session_cookie_and_checks_the_form() {
    let f = Fixture::new().await;
    let token = f.token("analyst").await;
    // Signed out: every page sends to sign-in.
    for path in ["/", "/query"] {
        let (status, headers, _) = page(&f, "GET", path, "", &[], None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(headers["location"], "/signin", "{path}");
    }
    let (status, headers, html) = page(&f, "GET", "/signin", "", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let signin = set_cookie(&headers, SIGNIN_COOKIE).unwrap();
    let csrf = csrf_of(&html);
    // The sign-in form without its secret, with another, or from another site.
    for (cookie, given, origin) in [
        (signin.as_str(), "", None),
        (signin.as_str(), "0".repeat(64).as_str(), None),
        ("", csrf.as_str(), None),
        (
            signin.as_str(),
            csrf.as_str(),
            Some("https://elsewhere.example"),
        ),
        (signin.as_str(), csrf.as_str(), Some("null")),
    ] {
        let (status, headers, _) = page(
            &f,
            "POST",
            "/signin",
            cookie,
            &[("csrf", given), ("token", &token)],
            origin,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{cookie:?} {given:?} {origin:?}"
        );
        assert!(set_cookie(&headers, SESSION_COOKIE).is_none());
    }
    // A wrong token.
    let (status, headers, html) = post(
        &f,
        "/signin",
        &signin,
        &[("csrf", &csrf), ("token", "carelens_0123")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("not accepted"));
    assert!(set_cookie(&headers, SESSION_COOKIE).is_none());
    // The right one: a session cookie the browser keeps to itself and this site.
    let (status, headers, _) = post(
        &f,
        "/signin",
        &signin,
        &[("csrf", &csrf), ("token", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains(&token), "the token is never in a cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_needs_its_csrf_secret_and_a_revoked_token_ends_the_session() {
    let f = Fixture::new().await;
    let issued = f
        .service
        .issue_token("analyst", Duration::from_secs(3600))
        .await
        .unwrap();
    let (session, csrf) = sign_in(&f, &issued.secret).await;
    let sql = "-- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS n FROM person GROUP BY sex";
    // Without the secret, with another session's, from another site: refused, nothing spent.
    let (other_session, other_csrf) = sign_in(&f, &f.token("analyst").await).await;
    assert_ne!(csrf, other_csrf);
    for (given, origin) in [
        ("", None),
        (other_csrf.as_str(), None),
        (csrf.as_str(), Some("https://elsewhere.example")),
    ] {
        for action in ["release", "explain"] {
            let (status, _, _) = page(
                &f,
                "POST",
                "/query",
                &session,
                &[("csrf", given), ("sql", sql), ("action", action)],
                origin,
            )
            .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{given:?} {origin:?} {action}"
            );
        }
        let (status, _, _) =
            page(&f, "POST", "/signout", &session, &[("csrf", given)], origin).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    assert_eq!(analyst_spent(&f).await, 0.0);

    // With it: explained (nothing spent), then released (charged once).
    let (status, _, html) = page(
        &f,
        "POST",
        "/query",
        &session,
        &[("csrf", &csrf), ("sql", sql), ("action", "explain")],
        Some("http://carelens.test"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Nothing has been spent"), "{html}");
    assert_eq!(analyst_spent(&f).await, 0.0);
    let (status, _, html) = post(
        &f,
        "/query",
        &session,
        &[("csrf", &csrf), ("sql", sql), ("action", "release")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Released. Spent now: ε 0.5"), "{html}");
    assert!(html.contains("download=\"release-"), "{html}");
    assert_eq!(analyst_spent(&f).await, 0.5);
    // A rejection: its hint, nothing spent.
    let (status, _, html) = page(
        &f,
        "POST",
        "/query",
        &session,
        &[
            ("csrf", &csrf),
            ("sql", "SELECT person_id FROM person"),
            ("action", "release"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Hint: "), "{html}");
    assert_eq!(analyst_spent(&f).await, 0.5);

    // The token revoked: its session stops at the next page; the other session goes on.
    f.service.revoke_token(issued.info.id).await.unwrap();
    let (status, headers, _) = page(&f, "GET", "/query", &session, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/signin");
    let (status, _, _) = post(
        &f,
        "/query",
        &session,
        &[("csrf", &csrf), ("sql", sql), ("action", "release")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = page(&f, "GET", "/query", &other_session, &[], None).await;
    assert_eq!(status, StatusCode::OK);

    // Sign-out ends the session for good.
    let (status, headers, _) = post(&f, "/signout", &other_session, &[("csrf", &other_csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&headers, SESSION_COOKIE).is_some_and(|c| c == format!("{SESSION_COOKIE}="))
    );
    let (status, _, _) = page(&f, "GET", "/query", &other_session, &[], None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

/// The `action`s of every form on `html`.
fn form_actions(html: &str) -> Vec<String> {
    html.match_indices("<form method=\"post\" action=\"")
        .map(|(at, found)| {
            let rest = &html[at + found.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

/// Every form of every page, posted without the session's CSRF secret, is refused and
/// leaves the ledger as it was; the list of forms tried is checked against the forms the
/// pages really have. The approvers' queue is refused to an analyst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_of_every_page_is_refused_without_its_csrf_secret() {
    let f = Fixture::with_library().await;
    let (analyst, analyst_csrf) = sign_in(&f, &f.token("analyst").await).await;
    let (researcher, researcher_csrf) = sign_in(&f, &f.token("researcher").await).await;
    let (approver, approver_csrf) = sign_in(&f, &f.token("approver").await).await;
    let sql = "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth < 1950";
    let (status, headers, _) = page(
        &f,
        "POST",
        "/requests",
        &researcher,
        &[
            ("csrf", &researcher_csrf),
            ("sql", sql),
            ("purpose", "a count"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers["location"].to_str().unwrap().to_owned();
    let id: i64 = location.trim_start_matches("/requests/").parse().unwrap();

    let (status, _, _) = page(&f, "GET", "/requests/queue", &analyst, &[], None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, queue) = page(&f, "GET", "/requests/queue", &approver, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue.contains(&format!("href=\"/requests/{id}\"")),
        "{queue}"
    );

    // The forms the pages have, as each person sees them.
    let mut seen = std::collections::BTreeSet::new();
    for (cookie, path) in [
        (&analyst, "/query".to_owned()),
        (&analyst, "/library".to_owned()),
        (&researcher, "/requests".to_owned()),
        (&approver, format!("/requests/{id}")),
    ] {
        let (status, _, html) = page(&f, "GET", &path, cookie, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        seen.extend(form_actions(&html));
    }
    // Approved, the requester's page has the release form.
    let (status, _, _) = post(
        &f,
        &format!("/requests/{id}/approve"),
        &approver,
        &[("csrf", &approver_csrf), ("note", "fine")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, html) = page(
        &f,
        "GET",
        &format!("/requests/{id}"),
        &researcher,
        &[],
        None,
    )
    .await;
    seen.extend(form_actions(&html));

    let tried = [
        (
            &analyst,
            &analyst_csrf,
            "/query".to_owned(),
            vec![("sql", sql), ("action", "release")],
        ),
        (&analyst, &analyst_csrf, "/signout".to_owned(), vec![]),
        (&analyst, &analyst_csrf, "/library/run".to_owned(), vec![]),
        (
            &researcher,
            &researcher_csrf,
            "/requests".to_owned(),
            vec![("sql", sql), ("purpose", "again")],
        ),
        (
            &approver,
            &approver_csrf,
            format!("/requests/{id}/approve"),
            vec![("note", "ok")],
        ),
        (
            &approver,
            &approver_csrf,
            format!("/requests/{id}/reject"),
            vec![("note", "no")],
        ),
        (
            &researcher,
            &researcher_csrf,
            format!("/requests/{id}/release"),
            vec![],
        ),
    ];
    let listed: std::collections::BTreeSet<String> =
        tried.iter().map(|(_, _, path, _)| path.clone()).collect();
    assert_eq!(seen, listed, "a form is not in this test's list");

    let before = f.service.log_length().await.unwrap();
    let secrets = [&analyst_csrf, &researcher_csrf, &approver_csrf];
    for (cookie, own, path, fields) in &tried {
        // No secret, and each other session's secret.
        let others = secrets.iter().filter(|s| **s != *own).map(|s| s.as_str());
        for secret in std::iter::once("").chain(others) {
            let mut all = fields.clone();
            all.push(("csrf", secret));
            let (status, _, _) = page(&f, "POST", path, cookie, &all, None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} with {secret:?}");
        }
    }
    assert_eq!(
        f.service.log_length().await.unwrap(),
        before,
        "a refused form changed the ledger"
    );
    // The sessions are all still signed in (sign-out was refused too).
    for cookie in [&analyst, &researcher, &approver] {
        let (status, _, _) = page(&f, "GET", "/query", cookie, &[], None).await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// The audit page shows an analyst their own entries only, with no check of the log; an
/// approver everyone's, the check, and the filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_shows_each_role_what_it_may_see() {
    let f = Fixture::new().await;
    let (analyst, analyst_csrf) = sign_in(&f, &f.token("analyst").await).await;
    let (approver, _) = sign_in(&f, &f.token("approver").await).await;
    let sql = "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person";
    let (status, _, _) = post(
        &f,
        "/query",
        &analyst,
        &[("csrf", &analyst_csrf), ("sql", sql), ("action", "release")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, html) = page(&f, "GET", "/audit", &analyst, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("SELECT COUNT(*) AS n FROM person"), "{html}");
    assert!(html.contains("<td>released"), "{html}");
    assert!(
        !html.contains("<td>approver "),
        "an analyst sees another's entries"
    );
    assert!(!html.contains("Intact."));
    let (status, _, html) = page(&f, "GET", "/audit?of=approver", &analyst, &[], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!html.contains("<td>approver "));
    let (status, _, _) = page(&f, "GET", "/audit?event=nonsense", &analyst, &[], None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _, html) = page(&f, "GET", "/audit", &approver, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Intact."), "{html}");
    assert!(html.contains("<td>approver "));
    let (status, _, html) = page(&f, "GET", "/audit?event=charged", &approver, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<td>charged"));
    assert!(!html.contains("<td>token_issued"));
}

/// The library page lists the bundled queries with their cost; a researcher may read it but
/// not run it; a run's report is the runner's (and overseers') only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_runs_as_one_batch_and_its_report_is_the_runners() {
    let f = Fixture::with_library().await;
    let (analyst, analyst_csrf) = sign_in(&f, &f.token("analyst").await).await;
    let (researcher, researcher_csrf) = sign_in(&f, &f.token("researcher").await).await;
    let (approver, _) = sign_in(&f, &f.token("approver").await).await;
    let (status, _, html) = page(&f, "GET", "/library", &analyst, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let files = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sql")
        })
        .count();
    assert_eq!(html.matches("<tr><td><strong>").count(), files, "{html}");
    assert!(html.contains("Run the library (up to ε 11)"), "{html}");

    let (status, _, html) = page(&f, "GET", "/library", &researcher, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("action=\"/library/run\""));
    let (status, _, _) = post(
        &f,
        "/library/run",
        &researcher,
        &[("csrf", &researcher_csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, headers, _) = post(&f, "/library/run", &analyst, &[("csrf", &analyst_csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let report = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(report, "/library/runs/1");
    let (status, _, html) = page(&f, "GET", &report, &analyst, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&format!("{files} of {files} queries released")),
        "{html}"
    );
    // The library's ε 11, up to the hair each quantile leaves unspent (QuantileRelease).
    let spent = analyst_spent(&f).await;
    assert!((spent - 11.0).abs() < 1e-9, "{spent}");
    let (status, _, _) = page(&f, "GET", &report, &researcher, &[], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = page(&f, "GET", &report, &approver, &[], None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, html) = page(&f, "GET", "/library", &analyst, &[], None).await;
    assert!(html.contains("href=\"/library/runs/1\""));
}
