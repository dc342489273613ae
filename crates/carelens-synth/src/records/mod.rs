//! A person's records: diagnoses, encounters, prescriptions and measurements, following
//! from who they are (age, deprivation, conditions, frailty).
//!
//! Rates are per person-year of registration in the two-year activity window, calibrated
//! to England: type 1 A&E about 200 attendances per 1,000 a year, emergency admissions
//! about 100 per 1,000 rising steeply with age, mean length of stay about 5 days with a
//! long tail, and heavy-tailed use (a few people account for many attendances).

use rand::RngExt;
use rand_distr::{Distribution, Gamma, LogNormal, Normal};

use crate::calendar::EARLIEST_RECORD;
use crate::clinical::{CONDITIONS, Group, N_GROUPS, code};
use crate::geography::Geography;
use crate::person::Person;
use crate::sampling::{SynthRng, by_age, day_between, poisson};
use crate::tables::{ConditionRows, EncounterRows, MedicationRows, ObservationRows};

mod encounters;

pub use encounters::ENCOUNTERS_PER_PERSON;
mod observations;
mod prescriptions;

use encounters::encounters;
use observations::observations;
use prescriptions::prescriptions;

/// A condition group a person has been diagnosed with.
#[derive(Debug, Clone, Copy)]
pub struct Diagnosis {
    /// Date of first diagnosis.
    pub first: i32,
    /// Whether it is on the active register (never resolved, or relapsed).
    pub active: bool,
}

/// Diagnoses of one person, by group.
pub type Diagnoses = [Option<Diagnosis>; N_GROUPS];

/// The generator's fixed distributions, built once per extract.
pub struct Distributions {
    ae_propensity: Gamma<f64>,
    admission_propensity: Gamma<f64>,
    outpatient_propensity: Gamma<f64>,
    standard_normal: Normal<f64>,
    emergency_los: LogNormal<f64>,
    elective_los: LogNormal<f64>,
    hba1c_diabetic: LogNormal<f64>,
}

impl Distributions {
    /// The fixed distributions of the generator.
    pub fn new() -> Distributions {
        // Parameters are constants within every distribution's valid range.
        let gamma = |shape: f64| Gamma::new(shape, 1.0 / shape).unwrap_or_else(|_| unreachable!());
        let lognormal = |median: f64, sigma: f64| {
            LogNormal::new(median.ln(), sigma).unwrap_or_else(|_| unreachable!())
        };
        Distributions {
            ae_propensity: gamma(0.45),
            admission_propensity: gamma(1.0),
            outpatient_propensity: gamma(1.5),
            standard_normal: Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!()),
            emergency_los: lognormal(3.4, 1.0),
            elective_los: lognormal(2.0, 0.7),
            hba1c_diabetic: lognormal(53.0, 0.24),
        }
    }

    fn normal(&self, rng: &mut SynthRng, mean: f64, sd: f64) -> f64 {
        mean + sd * self.standard_normal.sample(rng)
    }
}

/// Where a person's rows go.
pub struct Sinks<'a> {
    pub condition: &'a mut ConditionRows,
    pub encounter: &'a mut EncounterRows,
    pub medication: &'a mut MedicationRows,
    pub observation: &'a mut ObservationRows,
}

/// Everything the record generators share for one person.
pub struct Context<'a> {
    pub rng: &'a mut SynthRng,
    pub geo: &'a Geography,
    pub dist: &'a Distributions,
    pub person: &'a Person,
    /// Key and base of the person's encounter identifiers.
    pub encounter_key: u64,
    pub encounter_base: u64,
}

/// Writes all records of one person.
pub fn write_records(ctx: &mut Context<'_>, sinks: &mut Sinks<'_>) {
    let dx = diagnoses(ctx, sinks.condition);
    encounters(ctx, &dx, sinks.encounter, sinks.condition);
    prescriptions(ctx, &dx, sinks.medication);
    observations(ctx, &dx, sinks.observation);
}

fn is_active(dx: &Diagnoses, group: Group) -> bool {
    dx[group as usize].is_some_and(|d| d.active)
}

fn n_active(dx: &Diagnoses) -> usize {
    dx.iter().flatten().filter(|d| d.active).count()
}

/// Mean number of active long-term conditions by age band, to keep activity rates at their
/// age-specific targets while sicker people get more of it.
pub const MEAN_CONDITIONS: [f64; 6] = [0.08, 0.3, 0.75, 1.5, 2.2, 2.8];

fn morbidity_factor(dx: &Diagnoses, age: u32, strength: f64) -> f64 {
    (1.0 + strength * n_active(dx) as f64) / (1.0 + strength * by_age(&MEAN_CONDITIONS, age))
}

/// Diagnosis, review and resolution codes for each condition the person has had.
fn diagnoses(ctx: &mut Context<'_>, rows: &mut ConditionRows) -> Diagnoses {
    let p = ctx.person;
    let last = p.last_day();
    let mut out: Diagnoses = [None; N_GROUPS];
    for (group, spec) in CONDITIONS.iter().enumerate() {
        if !p.ever[group] {
            continue;
        }
        let earliest = (p.birth_day + (spec.min_age as f64 * 365.25) as i32).max(EARLIEST_RECORD);
        if earliest > last {
            continue;
        }
        // Years since diagnosis: exponential, mean 9 years, within the possible span.
        let years_ago = -9.0 * (1.0 - ctx.rng.random::<f64>()).ln();
        let first = (last - (years_ago * 365.25) as i32).max(earliest);
        let group_name = spec.group;
        rows.push(
            p.id,
            code(ctx.rng, group, false),
            group_name,
            first,
            false,
            "GP",
        );

        // Reviews recoded in primary care.
        for _ in 0..poisson(ctx.rng, 0.6) {
            let day = day_between(ctx.rng, first, last);
            rows.push(
                p.id,
                code(ctx.rng, group, false),
                group_name,
                day,
                false,
                "GP",
            );
        }

        let mut active = true;
        if let Some(resolution) = spec.resolution
            && ctx.rng.random::<f64>() < spec.resolves
            && first + 90 < last
        {
            let resolved = day_between(ctx.rng, first + 90, last);
            rows.push(
                p.id,
                ("SNOMED", resolution),
                group_name,
                resolved,
                true,
                "GP",
            );
            active = false;
            if ctx.rng.random::<f64>() < 0.3 && resolved + 30 < last {
                // Relapse: diagnosed again after the resolution.
                let again = day_between(ctx.rng, resolved + 30, last);
                rows.push(
                    p.id,
                    code(ctx.rng, group, false),
                    group_name,
                    again,
                    false,
                    "GP",
                );
                active = true;
            }
        }
        out[group] = Some(Diagnosis { first, active });
    }
    out
}
