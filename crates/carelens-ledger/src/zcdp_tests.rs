//! zCDP accounting: budgets held to the conversion of Σρ, exact ρ arithmetic, a ledger
//! switching accounting, and the migration from schema 4 (no ρ) to 5.

use std::path::{Path, PathBuf};

use carelens_privacy::{
    Accounting, ChargeItem, MechanismKind, PrivacyCharge, zcdp_epsilon, zcdp_rho_within,
};
use rusqlite::Connection;

use crate::audit::Event;
use crate::tests::{
    append_before_rho, assert_intact, budgets, charge_of, charged, ledger_before_rho, query,
};
use crate::*;

/// One Gaussian part of ρ = 0.05 (σ = √10 at L2 sensitivity 1): alone it is
/// (1.3081…, 10⁻⁵)-DP.
fn gaussian(rho: f64) -> PrivacyCharge {
    let epsilon = zcdp_epsilon(rho, 1e-5).unwrap();
    PrivacyCharge::new(vec![ChargeItem {
        label: "count(*)".into(),
        mechanism: MechanismKind::DiscreteGaussian,
        epsilon,
        delta: 1e-5,
        max_groups: 1,
        per_group_sensitivity: 1,
        scale: 10f64.sqrt(),
        threshold: None,
        rho: Some(rho),
    }])
}

/// Budgets composed in zCDP: ana's is (ε, 10⁻⁵), the dataset's (100, 10⁻⁴).
fn zcdp_budgets(epsilon: f64) -> Budgets {
    let mut b = budgets(epsilon, 100.0);
    b.accounting = Accounting::Zcdp;
    b
}

fn line<'a>(report: &'a [BudgetLine], name: &str) -> &'a BudgetLine {
    report.iter().find(|l| l.name == name).unwrap()
}

#[test]
fn ten_gaussian_releases_fit_a_budget_that_basic_composition_fills_with_three() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    // ε 4.75 at δ 10⁻⁵: basic composition would take three releases at most (and by δ
    // only one); zCDP takes ten (ρ 0.5 is ε 4.728), not eleven (ρ 0.55 is more).
    assert!(zcdp_epsilon(0.5, 1e-5).unwrap() <= 4.75);
    assert!(zcdp_epsilon(0.55, 1e-5).unwrap() > 4.75);
    let mut ledger = Ledger::open(&path, zcdp_budgets(4.75)).unwrap();
    for i in 0..10 {
        let r = charged(
            ledger
                .charge("ana", &query(&format!("q{i}")), &gaussian(0.05))
                .unwrap(),
        );
        ledger.record_release(&r, b"r").unwrap();
    }
    let refused = match ledger
        .charge("ana", &query("q10"), &gaussian(0.05))
        .unwrap()
    {
        ChargeOutcome::Refused(r) => r,
        other => panic!("{other:?}"),
    };
    let z = refused.zcdp.expect("a zCDP refusal speaks in rho");
    assert_eq!(z.requested.rho, 50_000_000_000);
    let message = refused.to_string();
    assert!(message.contains("needs rho 0.05"), "{message}");

    // Spent exactly ρ 0.5: ten times 5·10¹⁰ units.
    let report = ledger.budget_report(None).unwrap();
    let ana = line(&report, "ana");
    let zl = ana.zcdp.expect("zCDP lines show rho");
    assert_eq!(
        zl.spent,
        ZcdpAmount {
            rho: 500_000_000_000,
            delta: 0
        }
    );
    // Shown as ε at the budget's δ: the conversion of 0.5, rounded up to a unit.
    let expected = zcdp_epsilon(0.5, 1e-5).unwrap();
    assert!(
        (ana.spent.epsilon_value() - expected).abs() <= 1e-12,
        "{:?}",
        ana.spent
    );
    assert_eq!(ana.spent.delta, Amount::budget(4.75, 1e-5).delta);
    assert_eq!(
        ana.remaining.epsilon,
        Amount::budget(4.75, 1e-5).epsilon - ana.spent.epsilon
    );
    // What ρ the budget holds, and what is left of it.
    let capacity = zcdp_rho_within(4.75, 1e-5).unwrap();
    assert!((zl.capacity_rho as f64 / RHO_UNITS - capacity).abs() < 1e-9);
    assert_eq!(zl.remaining_rho, zl.capacity_rho - 500_000_000_000);
    // The dataset composes the same way.
    let dataset = line(&report, DATASET_USER).zcdp.unwrap();
    assert_eq!(dataset.spent.rho, 500_000_000_000);
    assert_intact(&ledger);

    // Each charged entry stores its ρ exactly beside its (ε, δ).
    let stored: Vec<(i64, i64, Option<i64>, Option<i64>)> = Connection::open(&path)
        .unwrap()
        .prepare("SELECT epsilon_units, delta_units, rho_units, rho_delta_units FROM audit WHERE event = 'charged'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), 10);
    for (epsilon, delta, rho, rho_delta) in stored {
        assert_eq!(
            epsilon,
            Amount::charge(zcdp_epsilon(0.05, 1e-5).unwrap(), 0.0).epsilon
        );
        assert_eq!(delta, 10_000_000_000_000);
        assert_eq!((rho, rho_delta), (Some(50_000_000_000), Some(0)));
    }
}

#[test]
fn pure_and_approximate_charges_compose_in_zcdp_by_the_documented_rule() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in_zcdp(dir.path(), 10.0);
    // A Laplace count of ε 0.5: ρ 0.125. Key selection of ε 0.25, δ 10⁻⁶: ρ 0.03125
    // and δ 10⁻⁶. A Gaussian part: ρ 0.05.
    for (key, charge) in [
        ("laplace", charge_of(0.5, 0.0)),
        ("keys", charge_of(0.25, 1e-6)),
        ("gaussian", gaussian(0.05)),
    ] {
        let r = charged(ledger.charge("ana", &query(key), &charge).unwrap());
        ledger.record_release(&r, b"r").unwrap();
    }
    let report = ledger.budget_report(Some("ana")).unwrap();
    let ana = line(&report, "ana");
    let zl = ana.zcdp.unwrap();
    assert_eq!(
        zl.spent,
        ZcdpAmount {
            rho: 125_000_000_000 + 31_250_000_000 + 50_000_000_000,
            delta: 1_000_000_000_000,
        }
    );
    // Converted at the 9·10⁻⁶ the key selection leaves of ana's δ 10⁻⁵.
    let expected = zcdp_epsilon(0.20625, 9e-6).unwrap();
    assert!((ana.spent.epsilon_value() - expected).abs() <= 1e-12);
    assert_eq!(ana.spent.delta, 10_000_000_000_000);
    assert_intact(&ledger);
}

#[test]
fn a_budget_with_no_delta_takes_no_rho() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in_zcdp(dir.path(), 1.0);
    // eve's budget is (1, 0): ρ cannot be converted without a δ.
    let refused = match ledger.charge("eve", &query("g"), &gaussian(1e-6)).unwrap() {
        ChargeOutcome::Refused(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(refused.zcdp.unwrap().remaining_rho, 0);
    // A pure charge of a tiny ε still needs δ to be converted: refused too.
    assert!(matches!(
        ledger
            .charge("eve", &query("l"), &charge_of(0.01, 0.0))
            .unwrap(),
        ChargeOutcome::Refused(_)
    ));
}

/// The rule is the ledger's, recorded when it is made: a catalog that changes its noise
/// later changes the noise, not how the ledger adds its charges up.
#[test]
fn a_ledger_keeps_the_rule_it_was_made_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let mut basic = Ledger::open(&path, budgets(10.0, 100.0)).unwrap();
        assert_eq!(basic.accounting(), Accounting::Basic);
        for (key, epsilon) in [("a", 1.0), ("b", 2.0)] {
            let r = charged(
                basic
                    .charge("ana", &query(key), &charge_of(epsilon, 0.0))
                    .unwrap(),
            );
            basic.record_release(&r, b"r").unwrap();
        }
    }
    // The policy turns to Gaussian noise: the ledger still adds ε up, for every handle.
    let mut later = Ledger::open(&path, zcdp_budgets(10.0)).unwrap();
    assert_eq!(later.accounting(), Accounting::Basic);
    let r = charged(later.charge("ana", &query("g"), &gaussian(0.05)).unwrap());
    later.record_release(&r, b"r").unwrap();
    let report = later.budget_report(Some("ana")).unwrap();
    let ana = line(&report, "ana");
    assert!(ana.zcdp.is_none());
    let alone = Amount::charge(zcdp_epsilon(0.05, 1e-5).unwrap(), 1e-5);
    assert_eq!(ana.spent, Amount::charge(3.0, 0.0).plus(alone));
    let read = Ledger::open_read_only(&path, zcdp_budgets(10.0)).unwrap();
    assert_eq!(read.accounting(), Accounting::Basic);

    // And the other way: a ledger made under Gaussian noise keeps composing in zCDP, a
    // Laplace count of ε 1 counted as ρ 1/2.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    drop(Ledger::open(&path, zcdp_budgets(10.0)).unwrap());
    let mut laplace = Ledger::open(&path, budgets(10.0, 100.0)).unwrap();
    assert_eq!(laplace.accounting(), Accounting::Zcdp);
    let r = charged(
        laplace
            .charge("ana", &query("l"), &charge_of(1.0, 0.0))
            .unwrap(),
    );
    laplace.record_release(&r, b"r").unwrap();
    let report = laplace.budget_report(Some("ana")).unwrap();
    assert_eq!(
        line(&report, "ana").zcdp.unwrap().spent.rho,
        500_000_000_000
    );
    // The record is in the file.
    let recorded: String = Connection::open(&path)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'accounting'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(recorded, "zcdp");
}

fn ledger_in_zcdp(dir: &Path, epsilon: f64) -> Ledger {
    Ledger::open(&dir.join("ledger.sqlite"), zcdp_budgets(epsilon)).unwrap()
}

/// A ledger as carelens wrote it at schema 4 (no ρ anywhere), with two charges for ana
/// that failed: ε 0.5, and ε 0.25 with δ 10⁻⁶.
fn version_4_ledger(dir: &Path) -> PathBuf {
    let path = ledger_before_rho(dir, budgets(10.0, 100.0));
    let conn = Connection::open(&path).unwrap();
    for (key, charge) in [
        ("v4-a", charge_of(0.5, 0.0)),
        ("v4-b", charge_of(0.25, 1e-6)),
    ] {
        let seq = append_before_rho(&conn, Event::Charged, "ana", key, Some(&charge), "", None);
        append_before_rho(&conn, Event::Error, "ana", key, None, "failed", Some(seq));
    }
    path
}

fn schema_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_version_4_ledger_is_read_and_migrated_with_its_charges_in_rho() {
    let dir = tempfile::tempdir().unwrap();
    let path = version_4_ledger(dir.path());
    // Earlier charges in ρ: (ε, δ) whole, ε²/2 exactly: 0.125 + 0.03125, δ 10⁻⁶.
    let old = ZcdpAmount {
        rho: 156_250_000_000,
        delta: 1_000_000_000_000,
    };

    // Read as it is, without writing: intact; its charges were admitted by basic
    // composition, so it keeps that rule, and they read in ρ as ε²/2.
    let read = Ledger::open_read_only(&path, zcdp_budgets(10.0)).unwrap();
    assert_intact(&read);
    assert_eq!(read.accounting(), Accounting::Basic);
    let report = read.budget_report(Some("ana")).unwrap();
    assert_eq!(line(&report, "ana").failed.unwrap().spent_zcdp, old);
    assert_eq!(line(&report, "ana").spent, Amount::charge(0.75, 1e-6));
    drop(read);
    assert_eq!(schema_version(&path), 4);

    // Opened to charge: migrated, the old entries untouched and still verifying, the
    // rule recorded as basic; a new charge stores its ρ.
    let mut ledger = Ledger::open(&path, zcdp_budgets(10.0)).unwrap();
    assert_eq!(schema_version(&path), SCHEMA_VERSION);
    assert_eq!(ledger.accounting(), Accounting::Basic);
    assert_intact(&ledger);
    let r = charged(
        ledger
            .charge("ana", &query("v5"), &charge_of(0.5, 0.0))
            .unwrap(),
    );
    ledger.record_error(&r, "failed").unwrap();
    let report = ledger.budget_report(Some("ana")).unwrap();
    assert_eq!(
        line(&report, "ana").failed.unwrap().spent_zcdp,
        old.plus(ZcdpAmount {
            rho: 125_000_000_000,
            delta: 0
        })
    );
    let entries = assert_intact(&ledger);
    drop(ledger);

    // The old entries have no ρ; the new charge has it, and it is hashed: changing it
    // breaks the chain there.
    let conn = crate::tests::raw(&path);
    let nulls: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE event = 'charged' AND rho_units IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nulls, 2);
    conn.execute(
        "UPDATE audit SET rho_units = 1 WHERE cache_key = 'v5' AND event = 'charged'",
        [],
    )
    .unwrap();
    let read = Ledger::open_read_only(&path, zcdp_budgets(10.0)).unwrap();
    match read.verify().unwrap() {
        Verification::Broken { problem, .. } => assert!(problem.contains("hash"), "{problem}"),
        intact => panic!("a changed rho went unnoticed: {intact:?} ({entries} entries)"),
    }
}

/// A batch is checked in ρ as a whole, and the dataset's budget composes in zCDP too.
#[test]
fn batches_and_the_dataset_budget_are_held_to_zcdp() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = ledger_in_zcdp(dir.path(), 4.75);
    let charge = gaussian(0.05);
    let keys: Vec<String> = (0..11).map(|i| format!("b{i}")).collect();
    let batch = |n: usize| -> Vec<(QueryRecord<'_>, &PrivacyCharge)> {
        keys[..n].iter().map(|k| (query(k), &charge)).collect()
    };
    // Ten fit ana's (4.75, 10⁻⁵) in zCDP, together; eleven do not.
    let ten = ledger.check_batch("ana", &batch(10)).unwrap();
    assert!(ten.refusal.is_none(), "{:?}", ten.refusal);
    assert_eq!(ten.total_zcdp.rho, 500_000_000_000);
    let eleven = ledger.check_batch("ana", &batch(11)).unwrap();
    let refusal = eleven.refusal.expect("eleven do not fit");
    assert_eq!(refusal.which, Which::User);
    assert_eq!(refusal.zcdp.unwrap().requested.rho, 550_000_000_000);

    // The dataset's (2, 10⁻⁴) is the tighter budget here (ana's is ε 100): charges are
    // admitted while the dataset's converted total fits, and the next is refused by it.
    let dir = tempfile::tempdir().unwrap();
    let mut b = budgets(100.0, 2.0);
    b.accounting = Accounting::Zcdp;
    let mut ledger = Ledger::open(&dir.path().join("ledger.sqlite"), b).unwrap();
    let fits_dataset = |rho: f64| zcdp_epsilon(rho, 1e-4).unwrap() <= 2.0;
    let mut n = 0;
    while fits_dataset(0.05 * f64::from(n + 1)) {
        let r = charged(
            ledger
                .charge("ana", &query(&format!("d{n}")), &gaussian(0.05))
                .unwrap(),
        );
        ledger.record_release(&r, b"r").unwrap();
        n += 1;
    }
    assert!(n >= 1);
    match ledger
        .charge("ana", &query("over"), &gaussian(0.05))
        .unwrap()
    {
        ChargeOutcome::Refused(r) => {
            assert_eq!(r.which, Which::Dataset);
            assert!(r.zcdp.is_some());
        }
        other => panic!("{other:?}"),
    }
}
