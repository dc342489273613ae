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

#[test]
fn switching_accounting_counts_every_charge_in_the_new_currency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let mut basic = Ledger::open(&path, budgets(10.0, 100.0)).unwrap();
        for (key, epsilon) in [("a", 1.0), ("b", 2.0)] {
            let r = charged(
                basic
                    .charge("ana", &query(key), &charge_of(epsilon, 0.0))
                    .unwrap(),
            );
            basic.record_release(&r, b"r").unwrap();
        }
        let report = basic.budget_report(Some("ana")).unwrap();
        assert_eq!(line(&report, "ana").spent.epsilon_value(), 3.0);
        assert!(line(&report, "ana").zcdp.is_none());
    }
    // The policy turns to Gaussian noise: the same two charges, in ρ (1/2 + 4/2).
    let zcdp = Ledger::open(&path, zcdp_budgets(10.0)).unwrap();
    let report = zcdp.budget_report(Some("ana")).unwrap();
    let ana = line(&report, "ana");
    assert_eq!(ana.zcdp.unwrap().spent.rho, 2_500_000_000_000);
    let expected = zcdp_epsilon(2.5, 1e-5).unwrap();
    assert!((ana.spent.epsilon_value() - expected).abs() <= 1e-12);
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

    // Read as it is, without writing: intact, and its charges count in ρ.
    let read = Ledger::open_read_only(&path, zcdp_budgets(10.0)).unwrap();
    assert_intact(&read);
    let report = read.budget_report(Some("ana")).unwrap();
    assert_eq!(line(&report, "ana").zcdp.unwrap().spent, old);
    assert_eq!(line(&report, "ana").failed.unwrap().spent_zcdp, old);
    drop(read);
    assert_eq!(schema_version(&path), 4);

    // Opened to charge: migrated, the old entries untouched and still verifying.
    let mut ledger = Ledger::open(&path, zcdp_budgets(10.0)).unwrap();
    assert_eq!(schema_version(&path), SCHEMA_VERSION);
    assert_intact(&ledger);
    let r = charged(ledger.charge("ana", &query("v5"), &gaussian(0.05)).unwrap());
    ledger.record_release(&r, b"r").unwrap();
    let report = ledger.budget_report(Some("ana")).unwrap();
    assert_eq!(
        line(&report, "ana").zcdp.unwrap().spent,
        old.plus(ZcdpAmount {
            rho: 50_000_000_000,
            delta: 0
        })
    );
    assert_intact(&ledger);
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
