//! Prescriptions: repeat regimens that follow conditions and age, and acute courses.

use rand::RngExt;

use super::{Context, Diagnoses};
use crate::clinical::Group;
use crate::sampling::{SynthRng, by_age, day_between, pick, poisson};
use crate::tables::MedicationRows;

/// A repeat prescription: drug class, BNF code, days between issues, quantity per issue.
type Regimen = (&'static str, &'static str, i32, i32);

const METFORMIN: Regimen = ("METFORMIN", "0601022B0AAABAB", 56, 112);
const SGLT2: Regimen = ("SGLT2", "0601023AGAAAAAA", 56, 56);
const INSULIN: Regimen = ("INSULIN", "0601012V0BBAEAD", 56, 10);
const STATIN: Regimen = ("STATIN", "0212000B0AAACAC", 56, 56);
const ACEI: Regimen = ("ACEI", "0205051R0AAAKAK", 56, 56);
const CCB: Regimen = ("CCB", "0206020A0AAAAAA", 56, 56);
const BETA_BLOCKER: Regimen = ("BETA_BLOCKER", "0204000H0AAAAAA", 56, 56);
const LOOP_DIURETIC: Regimen = ("LOOP_DIURETIC", "0202020L0AABDBD", 28, 28);
const ANTIPLATELET: Regimen = ("ANTIPLATELET", "0209000A0AAABAB", 56, 56);
const DOAC: Regimen = ("ANTICOAG_DOAC", "0208020Z0AAAAAA", 56, 112);
const WARFARIN: Regimen = ("WARFARIN", "0208020V0AAAAAA", 28, 56);
const ANTIDEP: Regimen = ("ANTIDEP", "0403030Q0AAAAAA", 28, 28);
const ICS: Regimen = ("ICS", "0302000C0AAAAAA", 60, 1);
const SABA: Regimen = ("SABA", "0301011R0AAAPAP", 90, 2);
const ANTIPSYCHOTIC: Regimen = ("ANTIPSYCHOTIC", "0402010ABAAAAAA", 28, 28);
const ANTIEPILEPTIC: Regimen = ("ANTIEPILEPTIC", "0408010AHAAAAAA", 56, 112);
const ANTIDEMENTIA: Regimen = ("ANTIDEMENTIA", "0411000D0AAAAAA", 28, 28);
const PPI: Regimen = ("PPI", "0103050P0AAAAAA", 56, 56);

/// Repeat prescriptions follow conditions; acute courses follow age.
pub(super) fn prescriptions(ctx: &mut Context<'_>, dx: &Diagnoses, rows: &mut MedicationRows) {
    let p = ctx.person;
    let (first, last) = (p.first_day(), p.last_day());
    if last < first {
        return;
    }
    let age = p.age;
    let mut regimens: Vec<(Regimen, i32)> = Vec::new();
    let mut add = |rng: &mut SynthRng, regimen: Regimen, chance: f64, since: i32| {
        if rng.random::<f64>() < chance && !regimens.iter().any(|(r, _)| r.0 == regimen.0) {
            regimens.push((regimen, since));
        }
    };
    let since = |g: Group| dx[g as usize].filter(|d| d.active).map(|d| d.first);
    let rng = &mut *ctx.rng;
    if let Some(d) = since(Group::DmT2) {
        add(rng, METFORMIN, 0.85, d);
        add(rng, SGLT2, 0.35, d);
        add(rng, INSULIN, 0.08, d);
        add(rng, STATIN, 0.75, d);
    }
    if let Some(d) = since(Group::DmT1) {
        add(rng, INSULIN, 1.0, d);
    }
    if let Some(d) = since(Group::Af) {
        // About 15% of people with AF are never anticoagulated, and some stop: the trial
        // cohort of shared/QUERIES.md C2.
        if rng.random::<f64>() < 0.85 {
            let regimen = if rng.random::<f64>() < 0.78 {
                DOAC
            } else {
                WARFARIN
            };
            add(rng, regimen, 1.0, d);
        }
    }
    if let Some(d) = since(Group::Hyp) {
        add(rng, ACEI, 0.55, d);
        add(rng, CCB, 0.45, d);
    }
    if let Some(d) = since(Group::Hf) {
        add(rng, LOOP_DIURETIC, 0.7, d);
        add(rng, BETA_BLOCKER, 0.7, d);
        add(rng, ACEI, 0.6, d);
    }
    if let Some(d) = since(Group::Chd) {
        add(rng, STATIN, 0.9, d);
        add(rng, BETA_BLOCKER, 0.5, d);
        add(rng, ANTIPLATELET, 0.8, d);
    }
    if let Some(d) = since(Group::Stia) {
        add(rng, STATIN, 0.8, d);
        add(rng, ANTIPLATELET, 0.6, d);
    }
    if let Some(d) = since(Group::Ckd) {
        add(rng, STATIN, 0.5, d);
    }
    if let Some(d) = since(Group::Dep) {
        add(rng, ANTIDEP, 0.7, d);
    }
    if let Some(d) = since(Group::Ast) {
        add(rng, ICS, 0.7, d);
        add(rng, SABA, 0.85, d);
    }
    if let Some(d) = since(Group::Copd) {
        add(rng, ICS, 0.5, d);
        add(rng, SABA, 0.9, d);
    }
    if let Some(d) = since(Group::Smi) {
        add(rng, ANTIPSYCHOTIC, 0.8, d);
    }
    if let Some(d) = since(Group::Epil) {
        add(rng, ANTIEPILEPTIC, 0.9, d);
    }
    if let Some(d) = since(Group::Dem) {
        add(rng, ANTIDEMENTIA, 0.5, d);
    }
    // Primary prevention and common repeats rise with age.
    let before_window = first - 365;
    add(
        rng,
        STATIN,
        by_age(&[0.0, 0.01, 0.08, 0.32, 0.42, 0.35], age),
        before_window,
    );
    if age >= 18 {
        add(rng, ANTIDEP, 0.04, before_window);
    }
    if age >= 50 {
        add(rng, PPI, 0.12, before_window);
    }

    for ((class, bnf, interval, quantity), since) in regimens {
        let start = (since + rng.random_range(0..120)).max(first);
        if start > last {
            continue;
        }
        // One in ten stops during the window.
        let stop = if rng.random::<f64>() < 0.1 {
            day_between(rng, start, last)
        } else {
            last
        };
        let mut day = start + rng.random_range(0..interval);
        while day <= stop {
            if rng.random::<f64>() < 0.92 {
                rows.push(p.id, day, bnf, class, quantity);
            }
            day += interval + rng.random_range(-3..=5);
        }
    }

    // Acute courses.
    let antibiotic_rate = by_age(&[0.6, 0.4, 0.4, 0.55, 0.65, 0.7], age);
    for _ in 0..poisson(rng, antibiotic_rate * p.exposure_years()) {
        let day = day_between(rng, first, last);
        rows.push(
            p.id,
            day,
            "0501013B0AAABAB",
            "ANTIBIOTIC",
            pick(rng, &[15, 21]),
        );
    }
    if age >= 18 {
        for _ in 0..poisson(rng, 0.08 * p.exposure_years()) {
            let day = day_between(rng, first, last);
            rows.push(
                p.id,
                day,
                "0407010F0AAAAAA",
                "OPIOID",
                pick(rng, &[30, 60, 100]),
            );
        }
    }
}
