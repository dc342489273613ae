//! The service on the bundled sample: who may spend, what each refusal is, and many
//! concurrent callers on one service.

use std::sync::Arc;

use carelens_ledger::{DATASET_USER, Event, Verification};

use super::*;

fn sample() -> LoadedCatalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data/carelens.toml");
    carelens_catalog::load(&path).expect("the sample catalog loads")
}

async fn service(dir: &tempfile::TempDir) -> Service {
    Service::open(sample(), &dir.path().join("ledger.sqlite"))
        .await
        .expect("the service opens on the sample")
}

/// A distinct counting query (so none is answered from another's release).
fn count(epsilon: f64, year: i32) -> String {
    format!(
        "-- carelens: epsilon={epsilon}\n\
         SELECT COUNT(*) AS n FROM person WHERE year_of_birth > {year}"
    )
}

fn spent_by(lines: &[BudgetLine], name: &str) -> f64 {
    lines
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.spent.epsilon_value())
        .unwrap_or_else(|| panic!("no budget line for {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_the_catalogs_users() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let analyst = service.caller("analyst").unwrap();
    assert_eq!((analyst.name(), analyst.role()), ("analyst", Role::Analyst));
    let err = service.caller("mallory").unwrap_err();
    assert!(matches!(err, ServiceError::UnknownUser { .. }), "{err:?}");
    assert_eq!((err.exit_code(), err.http_status()), (2, 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_is_charged_released_and_answered_again_at_no_cost() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let analyst = service.caller("analyst").unwrap();
    let first = service.query(&analyst, &count(0.5, 1950)).await.unwrap();
    assert!(!first.cached);
    assert_eq!(first.spent.epsilon_value(), 0.5);
    assert!(first.release.release_id.is_some());
    let again = service.query(&analyst, &count(0.5, 1950)).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.spent.epsilon_value(), 0.0);
    assert_eq!(again.release.rows, first.release.rows);
    let lines = service.budget(&analyst).await.unwrap();
    assert_eq!(spent_by(&lines, "analyst"), 0.5);
    // An analyst sees their own line and the dataset's, nobody else's.
    assert!(
        lines
            .iter()
            .all(|l| l.name == "analyst" || l.name == DATASET_USER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_at_no_cost_with_their_codes() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let analyst = service.caller("analyst").unwrap();
    let researcher = service.caller("researcher").unwrap();

    let rejected = service
        .query(&analyst, "SELECT person_id FROM person")
        .await
        .unwrap_err();
    assert!(
        matches!(rejected, ServiceError::Rejected(_)),
        "{rejected:?}"
    );
    assert_eq!((rejected.exit_code(), rejected.http_status()), (1, 422));

    let asks = service
        .query(&researcher, &count(0.5, 1950))
        .await
        .unwrap_err();
    assert!(matches!(asks, ServiceError::ResearchersAsk), "{asks:?}");
    assert_eq!((asks.exit_code(), asks.http_status()), (1, 403));
    assert!(service.may_run_batches(&researcher).is_err());
    assert!(service.may_run_batches(&analyst).is_ok());

    let over = service
        .query(&analyst, &count(2.5, 1950))
        .await
        .unwrap_err();
    // Above the policy's epsilon_max (2): rejected by the policy, before any charge.
    assert!(matches!(over, ServiceError::Rejected(_)), "{over:?}");

    // An unknown column is a rejection with its place (logged); an ambiguous one is a
    // query that cannot be planned (not logged).
    let unknown = service
        .query(
            &analyst,
            "SELECT COUNT(*) FROM person WHERE no_such_column = 1",
        )
        .await
        .unwrap_err();
    assert!(matches!(unknown, ServiceError::Rejected(_)), "{unknown:?}");
    assert_eq!(unknown.exit_code(), 1);
    let bad = service
        .query(
            &analyst,
            "SELECT COUNT(*) FROM person p JOIN person q ON p.person_id = q.person_id \
             WHERE sex = 'F'",
        )
        .await
        .unwrap_err();
    assert!(matches!(bad, ServiceError::BadQuery(_)), "{bad:?}");
    assert_eq!(bad.exit_code(), 2);

    let admin = service.caller("admin").unwrap();
    let lines = service.budget(&admin).await.unwrap();
    assert_eq!(spent_by(&lines, "analyst"), 0.0);
    assert_eq!(spent_by(&lines, "researcher"), 0.0);
    let log = service
        .with_ledger(|l| l.audit_log(None, None))
        .await
        .unwrap();
    let rejections = log.iter().filter(|e| e.event == Event::Rejected).count();
    assert_eq!(
        rejections, 4,
        "the analysis's two rejections, the unknown column and the researcher's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stands_for_its_user_until_it_expires_or_is_revoked() {
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let issued = service
        .issue_token("analyst", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(issued.secret.starts_with(TOKEN_PREFIX));
    assert_eq!(issued.secret.len(), TOKEN_PREFIX.len() + 64);
    let caller = service.authenticate(&issued.secret).await.unwrap();
    assert_eq!((caller.name(), caller.role()), ("analyst", Role::Analyst));

    let other = service
        .issue_token("analyst", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_ne!(other.secret, issued.secret, "every token is fresh");
    let expired = service
        .issue_token("analyst", Duration::ZERO)
        .await
        .unwrap();
    let mut wrong = issued.secret.clone();
    wrong.pop();
    wrong.push(if issued.secret.ends_with('0') {
        '1'
    } else {
        '0'
    });
    for bad in [
        expired.secret.as_str(),
        wrong.as_str(),
        &issued.secret[TOKEN_PREFIX.len()..],
        "",
    ] {
        let err = service.authenticate(bad).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Unauthenticated),
            "{bad}: {err:?}"
        );
        assert_eq!(err.http_status(), 401);
    }

    service.revoke_token(issued.info.id).await.unwrap();
    assert!(matches!(
        service.authenticate(&issued.secret).await,
        Err(ServiceError::Unauthenticated)
    ));
    assert!(service.authenticate(&other.secret).await.is_ok());
    assert!(matches!(
        service
            .issue_token("mallory", Duration::from_secs(60))
            .await,
        Err(ServiceError::UnknownUser { .. })
    ));
    let listed = service.tokens(Some("analyst")).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().filter(|t| t.revoked_at.is_some()).count(), 1);
    assert!(matches!(
        service.verify(None).await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// What one concurrent task got.
#[derive(Debug)]
enum Outcome {
    Query(Result<Released, ServiceError>),
    Budget(Result<Vec<BudgetLine>, ServiceError>),
}

/// Which kind of concurrent task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// The analyst's distinct queries of 1.9 against a budget of 15: 7 of 10 fit (and with
    /// the others' the dataset's cap of 20 is not reached: 13.3 + 0.9 + 4.8 + 0.5).
    Analyst,
    /// The admin's distinct queries of 0.3 against a budget of 1: 3 of 4 fit.
    Admin,
    /// Queries the analysis rejects.
    Rejected,
    /// Budget reads by the approver.
    Budget,
    /// Two releases of each of 8 approved requests of 0.8 against the researcher's
    /// budget of 5: 6 requests fit.
    Request(i64),
    /// One query asked 4 times at once by the approver: run once, then answered again.
    Same,
}

/// 42 tasks on one service, all at once: queries that their users' budgets cover only in
/// part, the same query asked four times, every approved request released twice,
/// rejections and budget reads. Each budget is spent exactly up to what it covers, never
/// over; an identical query or request is charged once; the audit log is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(service(&dir).await);
    let (researcher, approver) = (
        service.caller("researcher").unwrap(),
        service.caller("approver").unwrap(),
    );
    let mut requests = Vec::new();
    for k in 0..8 {
        let sql = format!(
            "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth > {}",
            1930 + k
        );
        let (request, _) = service
            .submit_request(&researcher, &sql, "a feasibility count", Some(0.8))
            .await
            .unwrap();
        // Later ones differ from earlier approved ones only in a constant: flagged, so
        // the approval carries a note.
        service
            .approve_request(&approver, request.id, None, "independent thresholds")
            .await
            .unwrap();
        requests.push(request.id);
    }

    let mut kinds: Vec<Kind> = Vec::new();
    kinds.extend([Kind::Analyst; 10]);
    kinds.extend([Kind::Admin; 4]);
    kinds.extend([Kind::Rejected; 4]);
    kinds.extend([Kind::Budget; 4]);
    kinds.extend([Kind::Same; 4]);
    for &id in &requests {
        kinds.extend([Kind::Request(id); 2]);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, kind) in kinds.into_iter().enumerate() {
        let service = Arc::clone(&service);
        let year = 1900 + i as i32;
        tasks.spawn(async move {
            let (user, sql) = match kind {
                Kind::Analyst => ("analyst", count(1.9, year)),
                Kind::Admin => ("admin", count(0.3, year)),
                Kind::Rejected => ("analyst", "SELECT person_id FROM person".to_owned()),
                Kind::Same => ("approver", count(0.5, 1960)),
                Kind::Budget => {
                    let caller = service.caller("approver").unwrap();
                    return (kind, Outcome::Budget(service.budget(&caller).await));
                }
                Kind::Request(id) => {
                    let caller = service.caller("researcher").unwrap();
                    let released = service.release_request(&caller, id, None).await;
                    return (kind, Outcome::Query(released));
                }
            };
            let caller = service.caller(user).unwrap();
            (kind, Outcome::Query(service.query(&caller, &sql).await))
        });
    }
    // Nothing panics before every task is done: while queries run, the engine's panic
    // hook withholds a panic's message.
    let mut tally: std::collections::HashMap<(Kind, &str), usize> = Default::default();
    let mut unexpected = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let outcome = match joined {
            Ok((_, Outcome::Budget(Ok(lines)))) => {
                if lines
                    .iter()
                    .any(|l| l.spent.epsilon_value() > l.budget.epsilon_value())
                {
                    unexpected.push(format!("overspent: {lines:?}"));
                }
                continue;
            }
            Ok((kind, Outcome::Query(Ok(answer)))) if answer.cached => (kind, "again"),
            Ok((kind, Outcome::Query(Ok(_)))) => (kind, "released"),
            Ok((kind, Outcome::Query(Err(ServiceError::OverBudget(_))))) => (kind, "over"),
            Ok((kind, Outcome::Query(Err(ServiceError::Rejected(_))))) => (kind, "rejected"),
            Ok((kind, outcome)) => {
                unexpected.push(format!("{kind:?}: {outcome:?}"));
                continue;
            }
            Err(e) => {
                unexpected.push(format!("a task failed: {e}"));
                continue;
            }
        };
        *tally.entry(outcome).or_default() += 1;
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let count = |kind, what| tally.get(&(kind, what)).copied().unwrap_or(0);
    assert_eq!(
        (
            count(Kind::Analyst, "released"),
            count(Kind::Analyst, "over")
        ),
        (7, 3),
        "{tally:?}"
    );
    assert_eq!(
        (count(Kind::Admin, "released"), count(Kind::Admin, "over")),
        (3, 1),
        "{tally:?}"
    );
    assert_eq!(count(Kind::Rejected, "rejected"), 4, "{tally:?}");
    assert_eq!(
        (count(Kind::Same, "released"), count(Kind::Same, "again")),
        (1, 3),
        "{tally:?}"
    );
    // Per request: both releases answered (once run, once again), or both refused.
    let mut fitted = 0;
    for &id in &requests {
        let kind = Kind::Request(id);
        match (
            count(kind, "released"),
            count(kind, "again"),
            count(kind, "over"),
        ) {
            (1, 1, 0) => fitted += 1,
            (0, 0, 2) => {}
            other => panic!("request {id}: {other:?} in {tally:?}"),
        }
    }
    assert_eq!(fitted, 6, "{tally:?}");

    let admin = service.caller("admin").unwrap();
    let lines = service.budget(&admin).await.unwrap();
    for (user, spent) in [
        ("analyst", 7.0 * 1.9),
        ("admin", 3.0 * 0.3),
        ("researcher", 6.0 * 0.8),
        ("approver", 0.5),
    ] {
        assert!(
            (spent_by(&lines, user) - spent).abs() < 1e-9,
            "{user}: {lines:?}"
        );
    }
    assert!(matches!(
        service.verify(None).await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// A release made under a request stays with the request: the same SQL asked by an
/// analyst afterwards is charged and released afresh, not answered with the researcher's
/// number (which would sidestep the four-eyes release to one person); and a request
/// released after an analyst asked the same is not answered with the analyst's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_under_a_request_stays_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let (researcher, approver, analyst) = (
        service.caller("researcher").unwrap(),
        service.caller("approver").unwrap(),
        service.caller("analyst").unwrap(),
    );
    let request_for = async |sql: &str| {
        let (request, _) = service
            .submit_request(&researcher, sql, "a feasibility count", Some(0.5))
            .await
            .unwrap();
        service
            .approve_request(&approver, request.id, None, "thresholds checked")
            .await
            .unwrap();
        request.id
    };

    let first = "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth > 1950";
    let id = request_for(first).await;
    let released = service
        .release_request(&researcher, id, None)
        .await
        .unwrap();
    assert!(!released.cached);
    let asked = service
        .query(&analyst, &format!("-- carelens: epsilon=0.5\n{first}"))
        .await
        .unwrap();
    assert!(!asked.cached, "the analyst got the researcher's release");
    assert_eq!(asked.spent.epsilon_value(), 0.5);
    // The researcher asking again gets their own release, at no cost.
    let again = service
        .release_request(&researcher, id, None)
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.bytes, released.bytes);

    let second = "SELECT COUNT(DISTINCT person_id) AS n FROM person WHERE year_of_birth > 1960";
    let by_analyst = service
        .query(&analyst, &format!("-- carelens: epsilon=0.5\n{second}"))
        .await
        .unwrap();
    let id = request_for(second).await;
    let released = service
        .release_request(&researcher, id, None)
        .await
        .unwrap();
    assert!(
        !released.cached,
        "the request was answered with the analyst's release"
    );
    assert_ne!(released.bytes, by_analyst.bytes);
    assert!(matches!(
        service.verify(None).await.unwrap(),
        Verification::Intact { .. }
    ));
}

/// A request is a cohort count or a small table by a public key: a breakdown by locality
/// (25 cells) is rejected at submission, logged at no cost; by sex (4) is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_count_or_a_small_table() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir).await;
    let researcher = service.caller("researcher").unwrap();
    let by = |key: &str| {
        format!("SELECT {key}, COUNT(DISTINCT person_id) AS n FROM person GROUP BY {key}")
    };
    let refused = service
        .submit_request(&researcher, &by("locality"), "a breakdown", Some(0.5))
        .await;
    let Err(ServiceError::Rejected(rejection)) = refused else {
        panic!("a 25-cell request was not rejected")
    };
    assert!(rejection.what.contains("at most 12 cells"), "{rejection:?}");
    let (request, _) = service
        .submit_request(&researcher, &by("sex"), "by sex", Some(0.5))
        .await
        .unwrap();
    assert_eq!(request.state, carelens_ledger::RequestState::Submitted);
    let budget = service.budget(&researcher).await.unwrap();
    assert_eq!(spent_by(&budget, "researcher"), 0.0);
}

/// A copy of the sample extract in `dir/extract`, to change under a running service.
fn copy_of_sample(dir: &std::path::Path) -> std::path::PathBuf {
    let extract = dir.join("extract");
    std::fs::create_dir_all(&extract).unwrap();
    let sample_dir = sample().path().parent().unwrap().to_owned();
    for entry in std::fs::read_dir(&sample_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, extract.join(path.file_name().unwrap())).unwrap();
        }
    }
    extract
}

/// A file changed after the service opened and checked the extract: the next query is
/// refused before its charge (nothing spent), not run against unchecked files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_under_a_running_service_are_not_charged_for() {
    let dir = tempfile::tempdir().unwrap();
    let extract = copy_of_sample(dir.path());
    let catalog = carelens_catalog::load(&extract.join("carelens.toml")).unwrap();
    let service = Service::open(catalog, &dir.path().join("ledger.sqlite"))
        .await
        .unwrap();
    let analyst = service.caller("analyst").unwrap();
    service.query(&analyst, &count(0.5, 1950)).await.unwrap();
    // Rewritten in place (the same bytes, a new modification time): not what was checked.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let person = extract.join("person.parquet");
    std::fs::write(&person, std::fs::read(&person).unwrap()).unwrap();
    let refused = service.query(&analyst, &count(0.5, 1960)).await;
    assert!(
        matches!(refused, Err(ServiceError::ExtractChanged)),
        "{:?}",
        refused.err()
    );
    let lines = service.budget(&analyst).await.unwrap();
    assert_eq!(spent_by(&lines, "analyst"), 0.5);
}

/// A file replaced while a query runs (the sample's 1 s response quantum holds every
/// answer at least that long, so a change 300 ms in lands inside the run): the check after
/// the run finds it, and nothing computed from it is released. The charge stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_while_a_query_runs_release_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let extract = copy_of_sample(dir.path());
    let catalog = carelens_catalog::load(&extract.join("carelens.toml")).unwrap();
    assert!(
        catalog.catalog().policy.response_quantum_ms >= 1000,
        "the test needs the run to last at least 1 s"
    );
    let service = Service::open(catalog, &dir.path().join("ledger.sqlite"))
        .await
        .unwrap();
    let analyst = service.caller("analyst").unwrap();
    let person = extract.join("person.parquet");
    let sql = count(0.5, 1960);
    let (answer, ()) = tokio::join!(service.query(&analyst, &sql), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        std::fs::write(&person, std::fs::read(&person).unwrap()).unwrap();
    });
    let Err(ServiceError::FailedAfterCharge { message, .. }) = answer else {
        panic!(
            "released from changed files: {:?}",
            answer.map(|a| a.release)
        )
    };
    assert!(message.contains("changed while the query ran"), "{message}");
    let lines = service.budget(&analyst).await.unwrap();
    assert_eq!(spent_by(&lines, "analyst"), 0.5);
}
