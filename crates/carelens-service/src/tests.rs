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

    let bad = service
        .query(
            &analyst,
            "SELECT COUNT(*) FROM person WHERE no_such_column = 1",
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
        rejections, 3,
        "the analysis's two rejections and the researcher's"
    );
}

/// What one concurrent task got.
#[derive(Debug)]
enum Outcome {
    Query(Result<Released, ServiceError>),
    Budget(Result<Vec<BudgetLine>, ServiceError>),
}

/// 32 tasks on one service: analysts' and admins' queries that their budgets cover only
/// in part, rejections and budget reads, all at once. Each budget is spent exactly up
/// to what it covers, never over, and the audit log is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(service(&dir).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let service = Arc::clone(&service);
        tasks.spawn(async move {
            let (user, sql) = match i % 8 {
                // 4 admin queries of 0.3 against a budget of 1: 3 fit.
                0 => ("admin", count(0.3, 1900 + i)),
                // 4 rejections.
                1 => ("analyst", "SELECT person_id FROM person".to_owned()),
                // 4 budget reads.
                2 => {
                    let caller = service.caller("approver").unwrap();
                    return (i, Outcome::Budget(service.budget(&caller).await));
                }
                // 20 analyst queries of 0.6 against a budget of 10: 16 fit.
                _ => ("analyst", count(0.6, 1900 + i)),
            };
            let caller = service.caller(user).unwrap();
            (i, Outcome::Query(service.query(&caller, &sql).await))
        });
    }
    // Nothing panics before every task is done: while queries run, the engine's panic
    // hook withholds a panic's message.
    let (mut released, mut over_budget, mut rejected) = (0, 0, 0);
    let mut unexpected = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((_, Outcome::Budget(Ok(lines)))) => {
                if lines
                    .iter()
                    .any(|l| l.spent.epsilon_value() > l.budget.epsilon_value())
                {
                    unexpected.push(format!("overspent: {lines:?}"));
                }
            }
            Ok((_, Outcome::Query(Ok(answer)))) if !answer.cached => released += 1,
            Ok((_, Outcome::Query(Err(ServiceError::OverBudget(_))))) => over_budget += 1,
            Ok((_, Outcome::Query(Err(ServiceError::Rejected(_))))) => rejected += 1,
            Ok((i, outcome)) => unexpected.push(format!("task {i}: {outcome:?}")),
            Err(e) => unexpected.push(format!("a task failed: {e}")),
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    assert_eq!((released, over_budget, rejected), (16 + 3, 4 + 1, 4));
    let admin = service.caller("admin").unwrap();
    let lines = service.budget(&admin).await.unwrap();
    assert!((spent_by(&lines, "analyst") - 16.0 * 0.6).abs() < 1e-9);
    assert!((spent_by(&lines, "admin") - 0.9).abs() < 1e-9);
    assert!(matches!(
        service.verify(None).await.unwrap(),
        Verification::Intact { .. }
    ));
}
