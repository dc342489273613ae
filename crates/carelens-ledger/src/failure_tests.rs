//! Failures carry no fresh information: a query that failed after its charge is answered
//! with that failure again, for any user, at no cost and without running; a charge whose
//! process stopped is taken up once; a second ask of a running charge waits for it; and a
//! version-2 ledger is migrated with its old failures served.

use std::time::Duration;

use rusqlite::Connection;

use crate::tests::{
    append_before_rho, assert_intact, budgets, charge_of, charged, ledger_before_rho, ledger_in,
    query,
};
use crate::*;

const FAILED: &str = "the query failed while running (an execution error); details are withheld";

fn failed(outcome: ChargeOutcome) -> StoredFailure {
    match outcome {
        ChargeOutcome::Failed(f) => f,
        other => panic!("expected a stored failure, got {other:?}"),
    }
}

fn events(ledger: &Ledger) -> Vec<Event> {
    ledger
        .audit_log(None, None)
        .unwrap()
        .iter()
        .skip(4) // the budget grants
        .map(|e| e.event)
        .collect()
}

fn spent(ledger: &Ledger, user: &str) -> f64 {
    let report = ledger.budget_report(None).unwrap();
    let line = report.iter().find(|l| l.name == user).unwrap();
    line.spent.epsilon_value()
}

#[test]
fn a_failure_is_served_on_retry_at_no_cost_to_the_same_and_to_another_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let receipt = charged(
        ledger
            .charge("ana", &query("boom"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    ledger.record_error(&receipt, FAILED).unwrap();

    let first = failed(
        ledger
            .charge("ana", &query("boom"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert_eq!(first.message, FAILED);
    assert_eq!(first.charge_seq, receipt.seq);
    let again = failed(
        ledger
            .charge("bob", &query("boom"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert_eq!(again, first, "the same question gets the same answer");
    assert_eq!(spent(&ledger, "ana"), 0.25, "paid once, by the first run");
    assert_eq!(spent(&ledger, "bob"), 0.0);
    assert_eq!(spent(&ledger, DATASET_USER), 0.25);

    assert_eq!(
        events(&ledger),
        [
            Event::Charged,
            Event::Error,
            Event::CachedFailure,
            Event::CachedFailure
        ]
    );
    let served = ledger
        .audit_events(None, None, Some(Event::CachedFailure))
        .unwrap();
    assert_eq!(
        served.iter().map(|e| e.user.as_str()).collect::<Vec<_>>(),
        ["ana", "bob"]
    );
    assert!(served.iter().all(|e| e.refers_to == Some(first.error_seq)
        && e.epsilon_units == 0
        && e.cache_key == "boom"));
    // The error entry carries the query, so that `audit log --event error` shows it.
    let errors = ledger.audit_events(None, None, Some(Event::Error)).unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].sql, "SELECT count(*) FROM person");
    assert_eq!(errors[0].detail, FAILED);

    // A charge has one outcome: the failure cannot be replaced by a release or another
    // failure.
    let e = ledger.record_release(&receipt, b"late").unwrap_err();
    assert!(
        matches!(e, LedgerError::AlreadyFailed { seq } if seq == receipt.seq),
        "{e}"
    );
    let e = ledger.record_error(&receipt, "again").unwrap_err();
    assert!(matches!(e, LedgerError::AlreadyFailed { .. }), "{e}");
    assert_intact(&ledger);
}

#[test]
fn budgets_count_each_users_failed_charges_and_their_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    for (user, key, epsilon) in [
        ("ana", "f1", 0.25),
        ("ana", "f2", 0.125),
        ("bob", "f3", 0.5),
    ] {
        let r = charged(
            ledger
                .charge(user, &query(key), &charge_of(epsilon, 0.0))
                .unwrap(),
        );
        ledger.record_error(&r, FAILED).unwrap();
    }
    let r = charged(
        ledger
            .charge("ana", &query("ok"), &charge_of(0.0625, 0.0))
            .unwrap(),
    );
    ledger.record_release(&r, b"fine").unwrap();
    // Serving a failure again is not another failed charge.
    failed(
        ledger
            .charge("bob", &query("f1"), &charge_of(0.25, 0.0))
            .unwrap(),
    );

    let report = ledger.budget_report(None).unwrap();
    let failures = |name: &str| {
        report
            .iter()
            .find(|l| l.name == name)
            .unwrap()
            .failed
            .unwrap()
    };
    assert_eq!(failures("ana").count, 2);
    assert_eq!(failures("ana").spent.epsilon_value(), 0.375);
    assert_eq!(failures("bob").count, 1);
    assert_eq!(failures("bob").spent.epsilon_value(), 0.5);
    assert_eq!(failures("eve"), Failures::default());
    assert_eq!(failures(DATASET_USER).count, 3);
    assert_eq!(failures(DATASET_USER).spent.epsilon_value(), 0.875);
    // A user's own report shows their failures, not everyone's on the dataset's line.
    let own = ledger.budget_report(Some("ana")).unwrap();
    assert_eq!(own[0].failed, None);
    assert_eq!(own[1].failed.unwrap().count, 2);
}

#[test]
fn a_batch_check_counts_failed_queries_as_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let r = charged(
        ledger
            .charge("ana", &query("boom"), &charge_of(0.75, 0.0))
            .unwrap(),
    );
    ledger.record_error(&r, FAILED).unwrap();
    // Ana has 0.25 left: the failed query is free, the new one fits.
    let (c75, c2) = (charge_of(0.75, 0.0), charge_of(0.2, 0.0));
    let check = ledger
        .check_batch("ana", &[(query("boom"), &c75), (query("new"), &c2)])
        .unwrap();
    assert_eq!((check.new, check.cached, check.failed), (1, 0, 1));
    assert_eq!(check.total.epsilon_value(), 0.2);
    assert!(check.refusal.is_none());
}

#[test]
fn a_release_of_the_same_query_is_served_before_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    // Two users' runs of one query raced: one failed, the other was released.
    let ra = charged(
        ledger
            .charge("ana", &query("raced"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    let rb = charged(
        ledger
            .charge("bob", &query("raced"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    ledger.record_error(&ra, FAILED).unwrap();
    let released = ledger.record_release(&rb, b"answer").unwrap();
    match ledger
        .charge("eve", &query("raced"), &charge_of(0.25, 0.0))
        .unwrap()
    {
        ChargeOutcome::Cached(stored) => assert_eq!(stored, released),
        other => panic!("{other:?}"),
    }
    assert_intact(&ledger);
}

#[test]
fn a_stopped_charge_is_taken_up_once_then_becomes_a_stored_failure() {
    let dir = tempfile::tempdir().unwrap();
    // Dropping a handle without recording an outcome is what a killed process leaves:
    // a charge with no outcome, and its mark released.
    let first = {
        let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
        charged(
            ledger
                .charge("ana", &query("crashes"), &charge_of(0.25, 0.0))
                .unwrap(),
        )
    };
    let resumed = {
        let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
        charged(
            ledger
                .charge("ana", &query("crashes"), &charge_of(0.25, 0.0))
                .unwrap(),
        )
    };
    assert!(resumed.resumed && !first.resumed);
    assert_eq!(resumed.seq, first.seq, "the same charge, not a new debit");

    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let failure = failed(
        ledger
            .charge("ana", &query("crashes"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert_eq!(failure.message, STOPPED_TWICE);
    assert_eq!(failure.charge_seq, first.seq);
    // From now on that failure is the answer, for anyone, and nothing runs.
    let again = failed(
        ledger
            .charge("bob", &query("crashes"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert_eq!(again, failure);
    assert_eq!(
        events(&ledger),
        [
            Event::Charged,
            Event::Resumed,
            Event::Error,
            Event::CachedFailure
        ]
    );
    assert_eq!(spent(&ledger, "ana"), 0.25);
    assert_eq!(spent(&ledger, "bob"), 0.0);
    assert_eq!(
        ledger.budget_report(None).unwrap()[1].failed.unwrap().count,
        1
    );
    // A charge whose outcome is logged leaves no mark behind.
    let marks = dir.path().join("ledger.sqlite-running");
    assert_eq!(std::fs::read_dir(&marks).unwrap().count(), 0);
    assert_intact(&ledger);
}

#[test]
fn a_second_ask_of_a_running_charge_waits_for_its_outcome() {
    for fails in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let mut runner = ledger_in(dir.path(), budgets(1.0, 10.0));
        let receipt = charged(
            runner
                .charge("ana", &query("slow"), &charge_of(0.25, 0.0))
                .unwrap(),
        );
        let (asking, asked) = std::sync::mpsc::channel();
        let other = std::thread::spawn(move || {
            let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
            asking.send(()).unwrap();
            ledger
                .charge("ana", &query("slow"), &charge_of(0.25, 0.0))
                .unwrap()
        });
        asked.recv().unwrap();
        // Had it not waited, it would already have taken the charge up (`resumed`).
        std::thread::sleep(Duration::from_millis(300));
        assert!(!other.is_finished(), "the second ask waits");
        if fails {
            runner.record_error(&receipt, FAILED).unwrap();
        } else {
            runner.record_release(&receipt, b"answer").unwrap();
        }
        match (fails, other.join().unwrap()) {
            (false, ChargeOutcome::Cached(stored)) => assert_eq!(stored.result, b"answer"),
            (true, ChargeOutcome::Failed(f)) => assert_eq!(f.message, FAILED),
            (_, other) => panic!("{other:?}"),
        }
        let log = events(&runner);
        assert!(!log.contains(&Event::Resumed), "{log:?}");
        assert_eq!(spent(&runner, "ana"), 0.25);
        assert_intact(&runner);
    }
}

#[test]
fn asking_again_on_the_handle_that_runs_the_charge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let receipt = charged(
        ledger
            .charge("ana", &query("q"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    let e = ledger
        .charge("ana", &query("q"), &charge_of(0.25, 0.0))
        .unwrap_err();
    assert!(
        matches!(e, LedgerError::AlreadyRunning { seq } if seq == receipt.seq),
        "{e}"
    );
    ledger.record_release(&receipt, b"r").unwrap();
    assert!(matches!(
        ledger
            .charge("ana", &query("q"), &charge_of(0.25, 0.0))
            .unwrap(),
        ChargeOutcome::Cached(_)
    ));
}

#[test]
fn eight_threads_asking_a_failing_question_pay_once_and_get_one_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path, budgets(2.0, 100.0)).unwrap());
    let messages: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                s.spawn(move || {
                    let mut ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
                    match ledger
                        .charge("ana", &query("fails"), &charge_of(0.5, 0.0))
                        .unwrap()
                    {
                        ChargeOutcome::Charged(r) => {
                            let mine = format!("failure in thread {t}");
                            ledger.record_error(&r, &mine).unwrap();
                            mine
                        }
                        ChargeOutcome::Failed(f) => f.message,
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    let ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
    let log = events(&ledger);
    let count = |ev: Event| log.iter().filter(|e| **e == ev).count();
    assert_eq!(
        (
            count(Event::Charged),
            count(Event::Error),
            count(Event::CachedFailure),
            count(Event::Resumed)
        ),
        (1, 1, 7, 0)
    );
    assert_eq!(spent(&ledger, "ana"), 0.5);
    assert_intact(&ledger);
}

#[test]
fn verify_catches_a_served_failure_that_names_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let r = charged(
        ledger
            .charge("ana", &query("q"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    ledger.record_release(&r, b"r").unwrap();
    // A `cached_failure` pointing at a release, written around the ledger.
    let conn = Connection::open(&path).unwrap();
    crate::audit::append(
        &conn,
        Event::CachedFailure,
        &crate::audit::NewEntry {
            user: "bob",
            role: "analyst",
            cache_key: "q",
            refers_to: Some(r.seq + 1),
            ..Default::default()
        },
    )
    .unwrap();
    match ledger.verify().unwrap() {
        Verification::Broken { problem, .. } => {
            assert!(problem.contains("names no earlier failure"), "{problem}")
        }
        intact => panic!("{intact:?}"),
    }
}

/// What a ledger written by a version-2 carelens holds: this schema without the version-3
/// index, `user_version` 2, and an old build's entries — a failed charge, and a charge
/// taken up once (old builds took a charge up for a concurrent ask too) with no outcome.
fn version_2_ledger(dir: &std::path::Path) -> std::path::PathBuf {
    let path = ledger_before_rho(dir, budgets(1.0, 10.0));
    let conn = Connection::open(&path).unwrap();
    let failed = append_before_rho(
        &conn,
        Event::Charged,
        "ana",
        "failed-in-v2",
        Some(&charge_of(0.25, 0.0)),
        "",
        None,
    );
    append_before_rho(
        &conn,
        Event::Error,
        "ana",
        "failed-in-v2",
        None,
        FAILED,
        Some(failed),
    );
    let orphan = append_before_rho(
        &conn,
        Event::Charged,
        "ana",
        "taken-up-in-v2",
        Some(&charge_of(0.125, 0.0)),
        "",
        None,
    );
    append_before_rho(
        &conn,
        Event::Resumed,
        "ana",
        "taken-up-in-v2",
        None,
        "takes up an unreleased charge of the same query",
        Some(orphan),
    );
    conn.execute_batch(
        "DROP INDEX audit_by_cache_key_event; DROP TABLE tokens; PRAGMA user_version = 2;",
    )
    .unwrap();
    path
}

fn schema_version(path: &std::path::Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_2_ledger_is_readable_and_migrated_and_its_failures_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = version_2_ledger(dir.path());
    assert_eq!(schema_version(&path), 2);

    // Read as it is: nothing written, everything readable.
    let read = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    assert_intact(&read);
    assert_eq!(spent(&read, "ana"), 0.375);
    assert_eq!(
        read.budget_report(None).unwrap()[1].failed.unwrap().count,
        1
    );
    drop(read);
    assert_eq!(schema_version(&path), 2);

    // Opened to charge: migrated in place, with the index that finds stored failures.
    let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    assert_eq!(schema_version(&path), SCHEMA_VERSION);
    let index: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'audit_by_cache_key_event'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);
    // The version-2 failure is served, to anyone, at no cost.
    let f = failed(
        ledger
            .charge("bob", &query("failed-in-v2"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert_eq!(f.message, FAILED);
    // The charge a version-2 build took up once is not taken up again: it is failed.
    let f = failed(
        ledger
            .charge("ana", &query("taken-up-in-v2"), &charge_of(0.125, 0.0))
            .unwrap(),
    );
    assert_eq!(f.message, STOPPED_TWICE);
    assert_eq!(spent(&ledger, "ana"), 0.375);
    assert_eq!(spent(&ledger, "bob"), 0.0);
    assert_intact(&ledger);
    drop(ledger);
    // Opening again changes nothing more.
    drop(Ledger::open(&path, budgets(1.0, 10.0)).unwrap());
    assert_eq!(schema_version(&path), SCHEMA_VERSION);
}
