//! Ledger tests: budgets, cache, audit chain, and the failure modes that matter — races
//! between threads and processes, crashes between steps, tampering, damaged files.
//!
//! Child processes are this test binary run again on one `#[ignore]`d test, told what to
//! do through environment variables.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use carelens_catalog::Role;
use carelens_privacy::{ChargeItem, MechanismKind, PrivacyCharge};
use rusqlite::Connection;

use crate::*;

pub(crate) fn charge_of(epsilon: f64, delta: f64) -> PrivacyCharge {
    PrivacyCharge::new(vec![ChargeItem {
        label: "count(*)".into(),
        mechanism: if delta > 0.0 {
            MechanismKind::LaplaceThreshold
        } else {
            MechanismKind::DiscreteLaplace
        },
        epsilon,
        delta,
        max_groups: 1,
        per_group_sensitivity: 1,
        scale: 1.0 / epsilon,
        threshold: None,
        rho: None,
    }])
}

pub(crate) fn budgets(user_epsilon: f64, dataset_epsilon: f64) -> Budgets {
    Budgets {
        accounting: carelens_privacy::Accounting::Basic,
        dataset: Amount::budget(dataset_epsilon, 1e-4),
        users: vec![
            (
                "ana".into(),
                Role::Analyst,
                Amount::budget(user_epsilon, 1e-5),
            ),
            (
                "bob".into(),
                Role::Analyst,
                Amount::budget(user_epsilon, 1e-5),
            ),
            ("eve".into(), Role::Admin, Amount::budget(1.0, 0.0)),
        ],
    }
}

pub(crate) fn query(key: &str) -> QueryRecord<'_> {
    QueryRecord {
        sql: "SELECT count(*) FROM person",
        plan_hash: "plan",
        cache_key: key,
    }
}

pub(crate) fn ledger_in(dir: &Path, b: Budgets) -> Ledger {
    Ledger::open(&dir.join("ledger.sqlite"), b).unwrap()
}

pub(crate) fn charged(outcome: ChargeOutcome) -> Receipt {
    match outcome {
        ChargeOutcome::Charged(r) => r,
        other => panic!("expected a charge, got {other:?}"),
    }
}

pub(crate) fn assert_intact(ledger: &Ledger) -> i64 {
    match ledger.verify().unwrap() {
        Verification::Intact { entries, .. } => entries,
        broken => panic!("{broken:?}"),
    }
}

#[test]
fn charge_release_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let receipt = charged(
        ledger
            .charge("ana", &query("q1"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    assert!(!receipt.resumed);
    let stored = ledger.record_release(&receipt, b"result one").unwrap();
    assert_eq!(stored.result, b"result one");
    assert_eq!(stored.charge_seq, receipt.seq);

    // The same query, by anyone, is served from the cache at no cost.
    for user in ["ana", "bob"] {
        match ledger
            .charge(user, &query("q1"), &charge_of(0.25, 0.0))
            .unwrap()
        {
            ChargeOutcome::Cached(c) => assert_eq!(c, stored),
            other => panic!("{other:?}"),
        }
    }
    let report = ledger.budget_report(None).unwrap();
    let line = |name: &str| report.iter().find(|l| l.name == name).unwrap().clone();
    assert_eq!(line("ana").spent.epsilon_value(), 0.25);
    assert_eq!(line("ana").remaining.epsilon_value(), 0.75);
    assert_eq!(line("bob").spent, Amount::default());
    assert_eq!(line(DATASET_USER).spent.epsilon_value(), 0.25);

    let events: Vec<Event> = ledger
        .audit_log(None, None)
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    // Four budget grants (dataset + 3 users), then the query's life.
    assert_eq!(
        events,
        [
            Event::Budget,
            Event::Budget,
            Event::Budget,
            Event::Budget,
            Event::Charged,
            Event::Released,
            Event::Cached,
            Event::Cached
        ]
    );
    assert_eq!(assert_intact(&ledger), 8);
}

#[test]
fn refusals_name_the_budget_and_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 1.5));
    charged(
        ledger
            .charge("ana", &query("a"), &charge_of(0.75, 0.0))
            .unwrap(),
    );
    // Ana has 0.25 left.
    let ChargeOutcome::Refused(r) = ledger
        .charge("ana", &query("b"), &charge_of(0.5, 0.0))
        .unwrap()
    else {
        panic!("ana's budget cannot cover 0.5");
    };
    assert_eq!(r.which, Which::User);
    assert_eq!(r.remaining.epsilon_value(), 0.25);
    assert_eq!(
        r.to_string(),
        "the query needs epsilon 0.5 and delta 0, but your budget has epsilon 0.25 and delta 0.00001 left"
    );
    // Bob has his own 1.0, but the dataset only 0.75.
    let ChargeOutcome::Refused(r) = ledger
        .charge("bob", &query("c"), &charge_of(1.0, 0.0))
        .unwrap()
    else {
        panic!("the dataset cannot cover 1.0");
    };
    assert_eq!(r.which, Which::Dataset);
    // δ is a budget too.
    let ChargeOutcome::Refused(r) = ledger
        .charge("bob", &query("d"), &charge_of(0.1, 1e-4))
        .unwrap()
    else {
        panic!("bob's delta budget is 1e-5");
    };
    assert_eq!(r.which, Which::User);
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        0.75
    );
    let refused = ledger
        .audit_log(None, None)
        .unwrap()
        .into_iter()
        .filter(|e| e.event == Event::Refused)
        .count();
    assert_eq!(refused, 3);
    assert_intact(&ledger);
}

#[test]
fn a_batch_is_checked_whole_and_released_queries_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let receipt = charged(
        ledger
            .charge("ana", &query("done"), &charge_of(0.5, 0.0))
            .unwrap(),
    );
    ledger.record_release(&receipt, b"released").unwrap();
    // Ana has 0.5 left. "done" is free, "new" twice in the batch is paid once.
    let (c4, c1) = (charge_of(0.4, 0.0), charge_of(0.1, 0.0));
    let fits = [
        (query("done"), &c4),
        (query("new"), &c4),
        (query("new"), &c4),
        (query("more"), &c1),
    ];
    let check = ledger.check_batch("ana", &fits).unwrap();
    assert_eq!(check.refusal, None);
    assert_eq!((check.new, check.cached), (2, 1));
    assert_eq!(check.total.epsilon_value(), 0.5);
    // One more query tips it over: refused whole, logged once, nothing debited.
    let c2 = charge_of(0.2, 0.0);
    let mut too_much = fits.to_vec();
    too_much.push((query("extra"), &c2));
    let check = ledger.check_batch("ana", &too_much).unwrap();
    let refusal = check.refusal.expect("0.7 does not fit in 0.5");
    assert_eq!(refusal.which, Which::User);
    assert_eq!(refusal.requested.epsilon_value(), 0.7);
    assert_eq!(refusal.remaining.epsilon_value(), 0.5);
    let log = ledger.audit_log(None, None).unwrap();
    let refused: Vec<_> = log.iter().filter(|e| e.event == Event::Refused).collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]
            .detail
            .starts_with("batch of 5 queries refused before running: the query needs epsilon 0.7"),
        "{}",
        refused[0].detail
    );
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        0.5
    );
    // Nothing new costs nothing and is never refused, even after the catalog lowered
    // Ana's budget below what she has spent.
    drop(ledger);
    let mut ledger = ledger_in(dir.path(), budgets(0.25, 10.0));
    let c5 = charge_of(0.5, 0.0);
    let check = ledger.check_batch("ana", &[(query("done"), &c5)]).unwrap();
    assert_eq!((check.new, check.cached, check.refusal), (0, 1, None));
    assert_intact(&ledger);
}

#[test]
fn unknown_users_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let e = ledger
        .charge("mallory", &query("a"), &charge_of(0.1, 0.0))
        .unwrap_err();
    assert!(e.to_string().starts_with("unknown user `mallory`"), "{e}");
    assert!(ledger.budget_report(Some("mallory")).is_err());
    assert!(
        ledger
            .record_rejection("mallory", "SELECT 1", "", "no")
            .is_err()
    );
}

#[test]
fn rejections_and_errors_are_logged_at_no_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    ledger
        .record_rejection(
            "ana",
            "SELECT person_id FROM person",
            "p",
            "person_id in the output",
        )
        .unwrap();
    let receipt = charged(
        ledger
            .charge("ana", &query("x"), &charge_of(0.5, 0.0))
            .unwrap(),
    );
    ledger.record_error(&receipt, "disk full").unwrap();
    let log = ledger.audit_log(None, Some("ana")).unwrap();
    let kinds: Vec<Event> = log.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [Event::Budget, Event::Rejected, Event::Charged, Event::Error]
    );
    assert_eq!(log[1].detail, "person_id in the output");
    assert_eq!(log[3].refers_to, Some(receipt.seq));
    // The error leaves the budget spent (fail closed).
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        0.5
    );
    assert!(
        ledger
            .audit_log(Some("2999-01-01"), None)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ledger
            .audit_log(Some("2000-01-01"), Some("ana"))
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn a_release_for_a_query_released_meanwhile_returns_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = ledger_in(dir.path(), budgets(1.0, 10.0));
    let mut b = ledger_in(dir.path(), budgets(1.0, 10.0));
    // Both charge before either releases (two processes racing on one query).
    let ra = charged(
        a.charge("ana", &query("same"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    let rb = charged(
        b.charge("bob", &query("same"), &charge_of(0.25, 0.0))
            .unwrap(),
    );
    let first = a.record_release(&ra, b"first").unwrap();
    let second = b.record_release(&rb, b"second").unwrap();
    assert_eq!(
        second.result, b"first",
        "the same question gets the same answer"
    );
    assert_eq!(second, first);
    assert_intact(&a);
}

#[test]
fn a_receipt_from_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    let mut receipt = charged(
        ledger
            .charge("ana", &query("x"), &charge_of(0.1, 0.0))
            .unwrap(),
    );
    receipt.cache_key = "other".into();
    assert!(matches!(
        ledger.record_release(&receipt, b"r").unwrap_err(),
        LedgerError::BadReceipt { .. }
    ));
    receipt.seq = 1; // a budget entry, not a charge
    assert!(matches!(
        ledger.record_release(&receipt, b"r").unwrap_err(),
        LedgerError::BadReceipt { .. }
    ));
}

#[test]
fn budget_changes_in_the_catalog_are_audited_and_never_refund() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
        charged(
            ledger
                .charge("ana", &query("a"), &charge_of(0.75, 0.0))
                .unwrap(),
        );
    }
    // Reopening with the same budgets adds nothing.
    let before = ledger_in(dir.path(), budgets(1.0, 10.0))
        .audit_log(None, None)
        .unwrap()
        .len();
    // The administrator lowers everyone's budget below what ana has spent.
    let mut ledger = ledger_in(dir.path(), budgets(0.5, 10.0));
    let log = ledger.audit_log(None, None).unwrap();
    assert_eq!(log.len(), before + 2, "ana's and bob's budgets changed");
    assert!(
        log[before..]
            .iter()
            .all(|e| e.event == Event::Budget && e.detail == "budget changed in the catalog")
    );
    let ana = &ledger.budget_report(Some("ana")).unwrap()[1];
    assert_eq!(
        (ana.spent.epsilon_value(), ana.remaining.epsilon),
        (0.75, 0)
    );
    assert!(matches!(
        ledger
            .charge("ana", &query("b"), &charge_of(0.01, 0.0))
            .unwrap(),
        ChargeOutcome::Refused(_)
    ));
    assert_intact(&ledger);
}

// ---------------------------------------------------------------------------------------
// Concurrency

#[test]
fn eight_threads_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path, budgets(2.0, 100.0)).unwrap());
    // 8 threads x 4 charges of 0.125 against a budget of 2.0: exactly 16 fit.
    let successes: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                s.spawn(move || {
                    let mut ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
                    (0..4)
                        .filter(|i| {
                            let key = format!("t{t}-q{i}");
                            matches!(
                                ledger
                                    .charge("ana", &query(&key), &charge_of(0.125, 0.0))
                                    .unwrap(),
                                ChargeOutcome::Charged(_)
                            )
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(successes, 16);
    let ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        2.0
    );
    assert_intact(&ledger);
}

pub(crate) const CHILD_ENV: &str = "CARELENS_LEDGER_TEST_CHILD";

/// Runs the ignored test `name` of this binary in a child process with `envs`.
pub(crate) fn child(name: &str, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Child process: charges `ana` for 6 distinct queries of ε 0.125; prints how many fit.
#[test]
#[ignore = "run only as a child process by four_processes_never_overspend"]
fn child_charger() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let tag = std::env::var("CHILD_TAG").unwrap();
    let mut ledger = Ledger::open(Path::new(&path), budgets(2.0, 100.0)).unwrap();
    let mut ok = 0;
    for i in 0..6 {
        let key = format!("{tag}-q{i}");
        if let ChargeOutcome::Charged(_) = ledger
            .charge("ana", &query(&key), &charge_of(0.125, 0.0))
            .unwrap()
        {
            ok += 1;
        }
    }
    println!("CHILD charged={ok}");
}

#[test]
fn four_processes_never_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path, budgets(2.0, 100.0)).unwrap());
    // 4 processes x 6 charges of 0.125 against 2.0: exactly 16 of 24 fit.
    let children: Vec<_> = (0..4)
        .map(|i| {
            child(
                "tests::child_charger",
                &[
                    (CHILD_ENV, path.display().to_string()),
                    ("CHILD_TAG", format!("p{i}")),
                ],
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut total = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let n: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("CHILD charged="))
            .unwrap_or_else(|| panic!("no result from child: {text}"))
            .trim()
            .parse()
            .unwrap();
        total += n;
    }
    assert_eq!(total, 16);
    let ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        2.0
    );
    assert_intact(&ledger);
}

// ---------------------------------------------------------------------------------------
// Crash safety

/// The steps of one query, and where a child may be killed.
const STEPS: [&str; 4] = [
    "after-charge",
    "after-execute",
    "after-release-logged",
    "after-output-written",
];

/// Child process: charge → execute → record release → write the output file, aborting
/// (no unwinding, no cleanup: as if killed) after the step named by `CRASH_AT`.
#[test]
#[ignore = "run only as a child process by a_crash_at_any_step_never_releases_unpaid_or_charges_twice"]
fn child_pipeline() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let crash_at = std::env::var("CRASH_AT").unwrap_or_default();
    let output = PathBuf::from(std::env::var("OUTPUT").unwrap());
    let crash = |step: &str| {
        if crash_at == step {
            std::process::abort();
        }
    };
    let mut ledger = Ledger::open(Path::new(&path), budgets(1.0, 10.0)).unwrap();
    let receipt = match ledger
        .charge("ana", &query("the-query"), &charge_of(0.25, 0.0))
        .unwrap()
    {
        ChargeOutcome::Charged(r) => Some(r),
        ChargeOutcome::Cached(stored) => {
            std::fs::write(&output, &stored.result).unwrap();
            None
        }
        ChargeOutcome::Failed(failure) => {
            println!("CHILD failed: {}", failure.message);
            None
        }
        ChargeOutcome::Refused(r) => panic!("{r}"),
    };
    let Some(receipt) = receipt else { return };
    crash(STEPS[0]);
    let result = b"noisy result".to_vec(); // the engine's work
    crash(STEPS[1]);
    let stored = ledger.record_release(&receipt, &result).unwrap();
    crash(STEPS[2]);
    std::fs::write(&output, &stored.result).unwrap();
    crash(STEPS[3]);
}

/// Invariants after any run: an output exists only if a release was logged for a charge;
/// one query is charged at most once; the chain is intact.
fn check_invariants(path: &Path, output: &Path) -> (usize, usize) {
    let ledger = Ledger::open(path, budgets(1.0, 10.0)).unwrap();
    let log = ledger.audit_log(None, None).unwrap();
    let charges = log.iter().filter(|e| e.event == Event::Charged).count();
    let releases: Vec<_> = log.iter().filter(|e| e.event == Event::Released).collect();
    assert!(charges <= 1, "charged {charges} times for one query");
    assert!(releases.len() <= 1);
    for r in &releases {
        let charge = log.iter().find(|e| Some(e.seq) == r.refers_to).unwrap();
        assert_eq!(charge.event, Event::Charged);
    }
    if output.exists() {
        assert_eq!(releases.len(), 1, "an output exists with no logged release");
    }
    let spent = ledger.budget_report(Some("ana")).unwrap()[1]
        .spent
        .epsilon_value();
    assert_eq!(spent, 0.25 * charges as f64);
    assert_intact(&ledger);
    (charges, releases.len())
}

#[test]
fn a_crash_at_any_step_never_releases_unpaid_or_charges_twice() {
    for (i, step) in STEPS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        let output = dir.path().join("result.out");
        let envs = |crash: &str| {
            vec![
                (CHILD_ENV, path.display().to_string()),
                ("OUTPUT", output.display().to_string()),
                ("CRASH_AT", crash.to_owned()),
            ]
        };
        let out = child("tests::child_pipeline", &envs(step))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the child should have died:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (charges, releases) = check_invariants(&path, &output);
        assert_eq!(charges, 1, "{step}");
        assert_eq!(releases, usize::from(i >= 2), "{step}");
        assert_eq!(output.exists(), i >= 3, "{step}");

        // Asking again after the crash: the answer comes out, charged once in all.
        let out = child("tests::child_pipeline", &envs("")).output().unwrap();
        assert!(
            out.status.success(),
            "{step}: the retry failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (charges, releases) = check_invariants(&path, &output);
        assert_eq!((charges, releases), (1, 1), "{step}");
        assert_eq!(std::fs::read(&output).unwrap(), b"noisy result");
    }
}

#[test]
fn a_charge_is_taken_up_once_and_a_second_stop_is_its_stored_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let output = dir.path().join("result.out");
    let envs = |crash: &str| {
        vec![
            (CHILD_ENV, path.display().to_string()),
            ("OUTPUT", output.display().to_string()),
            ("CRASH_AT", crash.to_owned()),
        ]
    };
    // Killed after the charge, then killed again after taking it up: as a query that
    // brings its process down every time it runs would be.
    for attempt in 0..2 {
        let out = child("tests::child_pipeline", &envs(STEPS[0]))
            .output()
            .unwrap();
        assert!(!out.status.success(), "attempt {attempt} should have died");
    }
    let events = |ledger: &Ledger| -> Vec<Event> {
        ledger
            .audit_log(None, None)
            .unwrap()
            .iter()
            .skip(4)
            .map(|e| e.event)
            .collect()
    };
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    assert_eq!(events(&ledger), [Event::Charged, Event::Resumed]);
    drop(ledger);

    // The third ask does not run it: the failure is recorded and served.
    let out = child("tests::child_pipeline", &envs("")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("CHILD failed: {STOPPED_TWICE}")),
        "{stdout}"
    );
    assert!(!output.exists(), "nothing was released");
    // And every ask after it gets the same failure, at no cost.
    let out = child("tests::child_pipeline", &envs("")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("CHILD failed: "));
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    assert_eq!(
        events(&ledger),
        [
            Event::Charged,
            Event::Resumed,
            Event::Error,
            Event::CachedFailure
        ]
    );
    let (charges, releases) = check_invariants(&path, &output);
    assert_eq!((charges, releases), (1, 0));
}

// ---------------------------------------------------------------------------------------
// Tampering

/// A ledger with a few entries, and a raw connection to tamper with it (triggers dropped,
/// as an attacker would).
fn tampering_setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    for key in ["a", "b", "c"] {
        let r = charged(
            ledger
                .charge("ana", &query(key), &charge_of(0.1, 0.0))
                .unwrap(),
        );
        ledger.record_release(&r, key.as_bytes()).unwrap();
    }
    // 4 budget entries, then charged/released x 3: entries 1..=10.
    assert_eq!(assert_intact(&ledger), 10);
    (dir, path)
}

/// A new ledger at `path` in `dir` turned into one as carelens wrote it at schema 4: its
/// budget grants, no ρ columns, `user_version` 4. Add entries with [`append_before_rho`].
pub(crate) fn ledger_before_rho(dir: &Path, b: Budgets) -> PathBuf {
    let path = dir.join("ledger.sqlite");
    drop(Ledger::open(&path, b).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE audit DROP COLUMN rho_delta_units;
             ALTER TABLE audit DROP COLUMN rho_units;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    path
}

/// Appends an entry as carelens wrote them before schema 5, hashed without ρ, to a ledger
/// from [`ledger_before_rho`]; a charge debits `charge`'s (ε, δ). Its sequence number.
pub(crate) fn append_before_rho(
    conn: &Connection,
    event: audit::Event,
    user: &str,
    cache_key: &str,
    charge: Option<&PrivacyCharge>,
    detail: &str,
    refers_to: Option<i64>,
) -> i64 {
    let (seq, prev_hash): (i64, String) = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let amount = match charge {
        Some(c) if event == audit::Event::Charged => Amount::charge(c.epsilon(), c.delta()),
        _ => Amount::default(),
    };
    let mut entry = audit::AuditEntry {
        seq: seq + 1,
        at: "2026-11-30T12:00:00.000000Z".into(),
        user: user.into(),
        role: "analyst".into(),
        event,
        sql: "SELECT count(*) FROM person".into(),
        plan_hash: "plan".into(),
        cache_key: cache_key.into(),
        params: charge.map_or(String::new(), |c| serde_json::to_string(c).unwrap()),
        epsilon_units: amount.epsilon,
        delta_units: amount.delta,
        rho_units: None,
        rho_delta_units: None,
        detail: detail.into(),
        result_hash: String::new(),
        refers_to,
        prev_hash,
        hash: String::new(),
    };
    entry.hash = entry.compute_hash();
    conn.execute(
        "INSERT INTO audit (seq, at, user, role, event, sql, plan_hash, cache_key, params,
             epsilon_units, delta_units, detail, result_hash, refers_to, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        rusqlite::params![
            entry.seq,
            entry.at,
            entry.user,
            entry.role,
            entry.event.as_str(),
            entry.sql,
            entry.plan_hash,
            entry.cache_key,
            entry.params,
            entry.epsilon_units,
            entry.delta_units,
            entry.detail,
            entry.result_hash,
            entry.refers_to,
            entry.prev_hash,
            entry.hash
        ],
    )
    .unwrap();
    entry.seq
}

pub(crate) fn raw(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    c
}

fn broken_at(path: &Path) -> (i64, String) {
    let ledger = Ledger::open_read_only(path, budgets(1.0, 10.0)).unwrap();
    match ledger.verify().unwrap() {
        Verification::Broken { seq, problem } => (seq, problem),
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
}

#[test]
fn the_audit_table_refuses_plain_edits() {
    let (_dir, path) = tampering_setup();
    let c = Connection::open(&path).unwrap();
    let e = c
        .execute("UPDATE audit SET epsilon_units = 0 WHERE seq = 5", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c
        .execute("DELETE FROM audit WHERE seq = 5", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[test]
fn verify_names_an_edited_entry() {
    let (_dir, path) = tampering_setup();
    // Refund a charge by editing it.
    raw(&path)
        .execute("UPDATE audit SET epsilon_units = 0 WHERE seq = 7", [])
        .unwrap();
    let (seq, problem) = broken_at(&path);
    assert_eq!(seq, 7);
    assert!(problem.contains("changed"), "{problem}");
    // Re-hashing the edited entry moves the break to the next one.
    let (_dir, path) = tampering_setup();
    let c = raw(&path);
    c.execute("UPDATE audit SET sql = 'SELECT 2' WHERE seq = 5", [])
        .unwrap();
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    let mut entry = ledger.audit_log(None, None).unwrap().remove(4);
    entry.hash = entry.compute_hash();
    c.execute("UPDATE audit SET hash = ?1 WHERE seq = 5", [&entry.hash])
        .unwrap();
    assert_eq!(broken_at(&path).0, 6);
}

#[test]
fn verify_names_a_deleted_entry() {
    let (_dir, path) = tampering_setup();
    raw(&path)
        .execute("DELETE FROM audit WHERE seq = 5", [])
        .unwrap();
    let (seq, problem) = broken_at(&path);
    assert_eq!(seq, 5);
    assert!(problem.contains("missing"), "{problem}");
}

#[test]
fn verify_names_reordered_entries() {
    let (_dir, path) = tampering_setup();
    raw(&path)
        .execute_batch(
            "UPDATE audit SET seq = 1000 WHERE seq = 6;
             UPDATE audit SET seq = 6 WHERE seq = 7;
             UPDATE audit SET seq = 7 WHERE seq = 1000;",
        )
        .unwrap();
    assert_eq!(broken_at(&path).0, 6);
}

#[test]
fn verify_names_an_inserted_entry() {
    let (_dir, path) = tampering_setup();
    let c = raw(&path);
    // Make room after entry 4 and insert a forged charge for bob there.
    c.execute_batch(
        "UPDATE audit SET seq = seq + 100 WHERE seq > 4;
         UPDATE audit SET seq = seq - 99 WHERE seq > 100;",
    )
    .unwrap();
    c.execute(
        "INSERT INTO audit SELECT 5, at, 'bob', role, event, sql, plan_hash, 'forged', params, epsilon_units, delta_units, detail, result_hash, refers_to, prev_hash, hash, rho_units, rho_delta_units FROM audit WHERE seq = 6",
        [],
    )
    .unwrap();
    assert_eq!(broken_at(&path).0, 5);
    // An entry appended at the end with a made-up hash is caught too.
    let (_dir, path) = tampering_setup();
    raw(&path)
        .execute(
            "INSERT INTO audit SELECT 11, at, user, role, event, sql, plan_hash, cache_key, params, epsilon_units, delta_units, detail, result_hash, refers_to, prev_hash, hash, rho_units, rho_delta_units FROM audit WHERE seq = 10",
            [],
        )
        .unwrap();
    assert_eq!(broken_at(&path).0, 11);
}

#[test]
fn verify_notices_removed_triggers() {
    let (_dir, path) = tampering_setup();
    drop(raw(&path));
    let (_, problem) = broken_at(&path);
    assert!(problem.contains("triggers"), "{problem}");
}

// ---------------------------------------------------------------------------------------
// Damaged files

fn written_ledger() -> (tempfile::TempDir, PathBuf) {
    let (dir, path) = tampering_setup();
    (dir, path)
}

#[test]
fn an_empty_file_is_not_a_new_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    std::fs::write(&path, b"").unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(matches!(e, LedgerError::Empty { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
}

#[test]
fn a_garbage_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let junk: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &junk).unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(matches!(e, LedgerError::Corrupt { .. }), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), junk);
}

#[test]
fn a_truncated_ledger_is_refused_not_reset() {
    let (_dir, path) = written_ledger();
    // Pad the log so that the file has many pages, then cut it in half.
    {
        let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
        for i in 0..200 {
            ledger
                .record_rejection(
                    "ana",
                    &"SELECT x FROM t WHERE y = 1 ".repeat(20),
                    "p",
                    &format!("reason {i}"),
                )
                .unwrap();
        }
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 20_000, "{}", bytes.len());
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(matches!(e, LedgerError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("budgets are never reset"), "{e}");
}

#[test]
fn a_read_only_ledger_can_be_read_but_not_charged() {
    let (_dir, path) = written_ledger();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&path, perms).unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(matches!(e, LedgerError::ReadOnly { .. }), "{e}");
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    let spent = ledger.budget_report(Some("ana")).unwrap()[1]
        .spent
        .epsilon_value();
    assert!((spent - 0.3).abs() < 1e-12, "{spent}");
    assert_intact(&ledger);
}

#[test]
fn a_locked_ledger_is_a_clear_error_after_the_wait() {
    let (_dir, path) = written_ledger();
    let holder = Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let e = Ledger::open_with_wait(&path, budgets(1.0, 10.0), Duration::from_millis(200))
        .err()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
    assert!(matches!(e, LedgerError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("try again"), "{e}");
    holder.execute_batch("ROLLBACK").unwrap();
    let ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    assert_intact(&ledger);
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER)")
        .unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(matches!(e, LedgerError::NotALedger { .. }), "{e}");

    let (_dir, path) = written_ledger();
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = Ledger::open(&path, budgets(1.0, 10.0)).err().unwrap();
    assert!(
        matches!(e, LedgerError::NewerSchema { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn a_new_ledger_gets_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".carelens/deeper/ledger.sqlite");
    let ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    assert!(path.exists());
    assert_eq!(assert_intact(&ledger), 4);
}

#[test]
fn eight_threads_asking_the_same_question_pay_once_and_get_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path, budgets(2.0, 100.0)).unwrap());
    let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                s.spawn(move || {
                    let mut ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
                    match ledger
                        .charge("ana", &query("shared"), &charge_of(0.5, 0.0))
                        .unwrap()
                    {
                        ChargeOutcome::Charged(r) => {
                            let mine = format!("answer from thread {t}");
                            ledger.record_release(&r, mine.as_bytes()).unwrap().result
                        }
                        ChargeOutcome::Cached(stored) => stored.result,
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let ledger = Ledger::open(&path, budgets(2.0, 100.0)).unwrap();
    let log = ledger.audit_log(None, None).unwrap();
    let count = |ev: Event| log.iter().filter(|e| e.event == ev).count();
    assert_eq!((count(Event::Charged), count(Event::Released)), (1, 1));
    // The others waited for the running charge's answer: none took it up.
    assert_eq!((count(Event::Resumed), count(Event::Cached)), (0, 7));
    assert_eq!(
        ledger.budget_report(Some("ana")).unwrap()[1]
            .spent
            .epsilon_value(),
        0.5
    );
    assert_intact(&ledger);
}

#[test]
fn an_altered_stored_release_is_never_served() {
    let (_dir, path) = tampering_setup();
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TRIGGER releases_no_update; UPDATE releases SET result = X'00' WHERE cache_key = 'b';",
    )
    .unwrap();
    drop(c);
    let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    let e = ledger
        .charge("bob", &query("b"), &charge_of(0.1, 0.0))
        .unwrap_err();
    assert!(matches!(e, LedgerError::AlteredRelease { .. }), "{e}");
    match ledger.verify().unwrap() {
        Verification::Broken { seq, problem } => {
            assert_eq!(seq, 8, "release of query b");
            assert!(problem.contains("altered"), "{problem}");
        }
        intact => panic!("{intact:?}"),
    }
}

#[test]
fn a_rewritten_chain_is_caught_against_a_recorded_head() {
    let (_dir, path) = tampering_setup();
    let Verification::Intact {
        head_seq,
        head_hash,
        ..
    } = Ledger::open_read_only(&path, budgets(1.0, 10.0))
        .unwrap()
        .verify()
        .unwrap()
    else {
        panic!("intact");
    };
    // Refund a charge, then re-hash every entry after it and restore the triggers: the
    // chain alone is intact again.
    let c = raw(&path);
    c.execute("UPDATE audit SET epsilon_units = 1 WHERE seq = 7", [])
        .unwrap();
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    let mut prev = ledger.audit_log(None, None).unwrap()[5].hash.clone();
    for mut entry in ledger.audit_log(None, None).unwrap().into_iter().skip(6) {
        entry.prev_hash = prev.clone();
        entry.hash = entry.compute_hash();
        c.execute(
            "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![entry.prev_hash, entry.hash, entry.seq],
        )
        .unwrap();
        prev = entry.hash;
    }
    c.execute_batch(
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END;
         CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END;",
    )
    .unwrap();
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    assert!(
        matches!(ledger.verify().unwrap(), Verification::Intact { .. }),
        "the chain alone cannot tell"
    );
    match ledger.verify_against((head_seq, &head_hash)).unwrap() {
        Verification::Broken { seq, problem } => {
            assert_eq!(seq, head_seq);
            assert!(problem.contains("rewritten"), "{problem}");
        }
        intact => panic!("{intact:?}"),
    }
    // A log cut short is caught against the recorded head too.
    let (_dir, path) = tampering_setup();
    raw(&path)
        .execute("DELETE FROM audit WHERE seq = 10", [])
        .unwrap();
    let ledger = Ledger::open_read_only(&path, budgets(1.0, 10.0)).unwrap();
    match ledger.verify_against((10, &head_hash)).unwrap() {
        Verification::Broken { problem, .. } => assert!(problem.contains("cut off"), "{problem}"),
        intact => panic!("{intact:?}"),
    }
}

#[test]
fn invalid_charges_are_refused_not_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in(dir.path(), budgets(1.0, 10.0));
    for (eps, delta) in [
        (f64::NAN, 0.0),
        (-0.5, 0.0),
        (0.1, f64::INFINITY),
        (2e6, 0.0),
    ] {
        let e = ledger
            .charge("ana", &query("x"), &charge_of(eps, delta))
            .unwrap_err();
        assert!(
            matches!(e, LedgerError::BadCharge { .. }),
            "{eps} {delta}: {e}"
        );
    }
}

#[test]
fn a_budget_lowered_by_another_process_binds_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = ledger_in(dir.path(), budgets(1.0, 10.0));
    // Another process starts with an updated catalog that halves the budgets.
    drop(ledger_in(dir.path(), budgets(0.5, 10.0)));
    let ChargeOutcome::Refused(r) = old
        .charge("ana", &query("a"), &charge_of(0.75, 0.0))
        .unwrap()
    else {
        panic!("the lowered budget must apply");
    };
    assert_eq!(r.remaining.epsilon_value(), 0.5);
}

/// A deleted stored release is caught both ways: `verify` names the release whose result
/// is gone, and asking the same query again is refused with nothing spent — never charged
/// and released afresh (a second, independent noisy answer to average).
#[test]
fn a_deleted_release_is_caught_and_not_answered_afresh() {
    let (_dir, path) = tampering_setup();
    // Whoever can write the file can drop the trigger, delete, and put it back.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER releases_no_delete;
             DELETE FROM releases WHERE cache_key = 'b';
             CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases
             BEGIN SELECT RAISE(ABORT, 'stored releases are immutable'); END;",
        )
        .unwrap();
    let (seq, problem) = broken_at(&path);
    assert_eq!(seq, 8, "{problem}");
    assert!(problem.contains("stored result is gone"), "{problem}");

    let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
    let before = ledger.audit_log(None, None).unwrap().len();
    let refused = ledger
        .charge("ana", &query("b"), &charge_of(0.1, 0.0))
        .unwrap_err();
    assert!(
        matches!(refused, LedgerError::LostRelease { release_seq: 8, .. }),
        "{refused}"
    );
    assert_eq!(ledger.audit_log(None, None).unwrap().len(), before);
}

/// Every spend first checks the hash chain written since the last spend (a checkpoint in
/// the ledger, so it stays cheap): an entry changed behind the ledger's back stops the
/// next spend, with nothing spent; and so does a changed checkpoint entry.
#[test]
fn a_spend_on_a_broken_chain_is_refused() {
    let (_dir, path) = tampering_setup();
    {
        let mut ledger = Ledger::open(&path, budgets(1.0, 10.0)).unwrap();
        // Sets the checkpoint at the head (entry 12).
        let r = charged(
            ledger
                .charge("ana", &query("d"), &charge_of(0.1, 0.0))
                .unwrap(),
        );
        ledger.record_release(&r, b"d").unwrap();
    }
    for (seq, edit) in [
        // After the checkpoint: the release just written.
        (12, "UPDATE audit SET detail = 'forged' WHERE seq = 12"),
        // The checkpoint entry (10, the head when "d" was charged), as a chain rewritten
        // from an earlier entry on would change it. (An edit before the checkpoint that
        // leaves it alone is `audit verify`'s to find.)
        (10, "UPDATE audit SET hash = '00' WHERE seq = 10"),
    ] {
        let copy = path.with_extension(format!("copy{seq}"));
        std::fs::copy(&path, &copy).unwrap();
        {
            // Drop the triggers, edit, and put them back: only the edit differs.
            let c = Connection::open(&copy).unwrap();
            let triggers: Vec<String> = c
                .prepare(
                    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'",
                )
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            drop(c);
            let c = raw(&copy);
            c.execute(edit, []).unwrap();
            for trigger in &triggers {
                c.execute(trigger, []).unwrap();
            }
        }
        let mut ledger = Ledger::open(&copy, budgets(1.0, 10.0)).unwrap();
        let before = ledger.budget_report(Some("ana")).unwrap()[1].spent;
        let refused = ledger
            .charge("ana", &query("e"), &charge_of(0.1, 0.0))
            .unwrap_err();
        assert!(
            matches!(refused, LedgerError::BrokenChain { seq: at, .. } if at == seq),
            "edit of entry {seq}: {refused}"
        );
        assert_eq!(ledger.budget_report(Some("ana")).unwrap()[1].spent, before);
    }
}
