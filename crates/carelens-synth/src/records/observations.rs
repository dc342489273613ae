//! Measurements: blood pressure, HbA1c, BMI, eGFR and smoking status.

use rand::RngExt;
use rand_distr::Distribution;

use super::{Context, Diagnoses, is_active};
use crate::clinical::{Group, Smoking};
use crate::sampling::{day_between, poisson};
use crate::tables::ObservationRows;

/// Measurements follow conditions: blood pressure for hypertension, HbA1c for diabetes,
/// eGFR for kidney disease, smoking status for everyone now and then.
pub(super) fn observations(ctx: &mut Context<'_>, dx: &Diagnoses, rows: &mut ObservationRows) {
    let p = ctx.person;
    let (first, last) = (p.first_day(), p.last_day());
    let years = p.exposure_years();
    if years <= 0.0 || p.age < 16 {
        return;
    }
    let age = f64::from(p.age);
    let rng = &mut *ctx.rng;
    let dist = ctx.dist;
    let hypertensive = is_active(dx, Group::Hyp);
    let diabetic = is_active(dx, Group::DmT2) || is_active(dx, Group::DmT1);
    let ckd = is_active(dx, Group::Ckd);

    // Blood pressure: about two thirds of people with hypertension are controlled.
    let bp_rate = if hypertensive {
        1.4
    } else if age >= 40.0 {
        0.25
    } else {
        0.08
    };
    let bp_excess = if hypertensive {
        if rng.random::<f64>() < 0.68 {
            8.0
        } else {
            28.0
        }
    } else {
        0.0
    };
    let sbp_level = dist.normal(rng, 116.0 + 0.45 * (age - 30.0).max(0.0) + bp_excess, 7.0);
    for _ in 0..poisson(rng, bp_rate * years) {
        let day = day_between(rng, first, last);
        let sbp = dist.normal(rng, sbp_level, 8.0).round().clamp(70.0, 240.0);
        let dbp = dist
            .normal(rng, 0.42 * sbp + 22.0, 6.0)
            .round()
            .clamp(40.0, 140.0);
        rows.number(p.id, day, "SBP", sbp);
        rows.number(p.id, day, "DBP", dbp);
    }

    // HbA1c (mmol/mol): diagnostic >= 48; QOF control thresholds 58 and 75.
    let hba1c_rate = if diabetic {
        2.0
    } else if age >= 40.0 {
        0.12
    } else {
        0.02
    };
    let hba1c_level = if diabetic {
        dist.hba1c_diabetic.sample(rng)
            * if is_active(dx, Group::DmT1) {
                1.15
            } else {
                1.0
            }
    } else if rng.random::<f64>() < 0.12 {
        rng.random_range(42.0..47.5)
    } else {
        dist.normal(rng, 37.0, 3.5)
    };
    for _ in 0..poisson(rng, hba1c_rate * years) {
        let day = day_between(rng, first, last);
        let value = dist
            .normal(rng, hba1c_level, 3.0)
            .round()
            .clamp(20.0, 180.0);
        rows.number(p.id, day, "HBA1C", value);
    }

    // BMI.
    let bmi_level = dist
        .normal(
            rng,
            27.3 + if diabetic { 3.5 } else { 0.0 } + if hypertensive { 1.5 } else { 0.0 },
            4.8,
        )
        .clamp(14.0, 70.0);
    let bmi_rate = if diabetic { 0.75 } else { 0.25 };
    for _ in 0..poisson(rng, bmi_rate * years) {
        let day = day_between(rng, first, last);
        let value = (dist.normal(rng, bmi_level, 0.4) * 10.0).round() / 10.0;
        rows.number(p.id, day, "BMI", value);
    }

    // eGFR (mL/min/1.73m2): stage 3 or worse in CKD.
    let egfr_rate = if ckd || diabetic || hypertensive {
        1.2
    } else if age >= 65.0 {
        0.3
    } else {
        0.05
    };
    let egfr_level = if ckd {
        rng.random_range(22.0..59.0)
    } else {
        dist.normal(rng, 100.0 - 0.8 * (age - 30.0).max(0.0), 10.0)
            .clamp(60.0, 130.0)
    };
    for _ in 0..poisson(rng, egfr_rate * years) {
        let day = day_between(rng, first, last);
        let value = dist.normal(rng, egfr_level, 3.0).round().clamp(5.0, 150.0);
        rows.number(p.id, day, "EGFR", value);
    }

    // Smoking status; some ex-smokers were recorded as smokers earlier in the window.
    let Some(status) = p.smoking.code() else {
        return;
    };
    let smoking_rate = 0.35
        + if is_active(dx, Group::Copd) || p.smoking == Smoking::Current {
            0.5
        } else {
            0.0
        };
    let n = poisson(rng, smoking_rate * years);
    let quit_day = (p.smoking == Smoking::Ex && rng.random::<f64>() < 0.2)
        .then(|| day_between(rng, first, last));
    for _ in 0..n {
        let day = day_between(rng, first, last);
        let code = match quit_day {
            Some(q) if day < q => "CURRENT",
            _ => status,
        };
        rows.coded(p.id, day, "SMOKING", code);
    }
}
