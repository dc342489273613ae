//! A person's records: diagnoses, encounters, prescriptions and measurements, following
//! from who they are (age, deprivation, conditions, frailty).
//!
//! Rates are per person-year of registration in the two-year activity window, calibrated
//! to England: type 1 A&E about 200 attendances per 1,000 a year, emergency admissions
//! about 100 per 1,000 rising steeply with age, mean length of stay about 5 days with a
//! long tail, and heavy-tailed use (a few people account for many attendances).

use rand::RngExt;
use rand_distr::{Distribution, Gamma, LogNormal, Normal};

use crate::calendar::{EARLIEST_RECORD, INDEX_DATE, WINDOW_START};
use crate::clinical::{CONDITIONS, Group, N_GROUPS, Smoking, code};
use crate::geography::Geography;
use crate::ids::pseudonym;
use crate::person::Person;
use crate::sampling::{
    SynthRng, by_age, day_between, deprivation, pick, poisson, winter_day_between,
};
use crate::tables::{ConditionRows, EncounterRow, EncounterRows, MedicationRows, ObservationRows};

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

/// Distributions built once per chunk.
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

/// Appends a person's encounters with fresh identifiers, and the diagnoses they code.
struct Encounters<'r> {
    rows: &'r mut EncounterRows,
    conditions: &'r mut ConditionRows,
    key: u64,
    base: u64,
    next: u64,
    person_id: i64,
}

impl Encounters<'_> {
    fn push(&mut self, mut row: EncounterRow<'_>) {
        row.encounter_id = pseudonym(self.key, self.base + self.next);
        row.person_id = self.person_id;
        self.next += 1;
        self.rows.push(row);
    }
}

fn row<'a>(setting: &'a str, start: i32, provider: &'a str, cost: f64) -> EncounterRow<'a> {
    EncounterRow {
        encounter_id: 0,
        person_id: 0,
        setting,
        start_date: start,
        end_date: Some(start),
        admission_method: None,
        attendance_status: Some("ATTENDED"),
        provider_code: provider,
        primary_diag_icd10: None,
        los_days: None,
        service_type: None,
        cost_gbp: cost,
    }
}

fn pence(x: f64) -> f64 {
    (x.max(0.0) * 100.0).round() / 100.0
}

/// An acute trust for a person: mostly their locality's main trust.
fn acute_trust(ctx: &mut Context<'_>) -> &'static str {
    let loc = &ctx.geo.localities[ctx.person.locality];
    let place = &ctx.geo.places[loc.place];
    let u: f64 = ctx.rng.random();
    if u < 0.82 {
        place.acute_trusts[loc.main_trust]
    } else if u < 0.96 {
        pick(ctx.rng, place.acute_trusts)
    } else {
        // Specialist care elsewhere in Wessex.
        let other = &ctx.geo.places[ctx.rng.random_range(0..ctx.geo.places.len())];
        other.acute_trusts[0]
    }
}

const EMERGENCY_DIAGNOSES: [&str; 12] = [
    "R07.4", "J18.9", "N39.0", "R55", "J22", "R10.4", "A41.9", "K92.2", "L03.9", "E86", "R06.0",
    "T14.9",
];
const ELECTIVE_DIAGNOSES: [&str; 8] = [
    "H25.9", "M17.1", "M16.1", "K80.2", "K40.9", "N40", "D25.9", "Z51.1",
];

fn emergency_diagnosis(ctx: &mut Context<'_>, dx: &Diagnoses) -> Option<&'static str> {
    let age = ctx.person.age;
    let u: f64 = ctx.rng.random();
    if u < 0.05 {
        return None; // not yet coded
    }
    if is_active(dx, Group::Copd) && u < 0.40 {
        return Some(pick(ctx.rng, &["J44.1", "J44.0"]));
    }
    if is_active(dx, Group::Hf) && u < 0.35 {
        return Some("I50.0");
    }
    if is_active(dx, Group::Af) && u < 0.2 {
        return Some("I48.9");
    }
    if is_active(dx, Group::Chd) && u < 0.2 {
        return Some("I21.9");
    }
    if is_active(dx, Group::Stia) && u < 0.15 {
        return Some("I63.9");
    }
    if age >= 75 && u < 0.15 {
        return Some("S72.0");
    }
    if age < 35 && u < 0.12 {
        return Some("K35.8");
    }
    Some(pick(ctx.rng, &EMERGENCY_DIAGNOSES))
}

/// Hospital spells code the person's known conditions as secondary diagnoses.
fn code_conditions_in_spell(
    ctx: &mut Context<'_>,
    dx: &Diagnoses,
    day: i32,
    out: &mut Encounters<'_>,
) {
    for (group, d) in dx.iter().enumerate() {
        if let Some(d) = d
            && d.active
            && d.first <= day
            && ctx.rng.random::<f64>() < 0.4
        {
            let c = code(ctx.rng, group, true);
            out.conditions
                .push(ctx.person.id, c, CONDITIONS[group].group, day, false, "APC");
        }
    }
}

#[allow(clippy::too_many_lines)]
fn encounters(
    ctx: &mut Context<'_>,
    dx: &Diagnoses,
    rows: &mut EncounterRows,
    conditions: &mut ConditionRows,
) {
    let p = ctx.person;
    let (first, last) = (p.first_day(), p.last_day());
    let years = p.exposure_years();
    if years <= 0.0 {
        return;
    }
    let age = p.age;
    let mut out = Encounters {
        rows,
        conditions,
        key: ctx.encounter_key,
        base: ctx.encounter_base,
        next: 0,
        person_id: p.id,
    };
    let health = (0.35 * p.health - 0.061).exp();
    let geo = ctx.geo;
    let loc = &geo.localities[p.locality];
    let place = &geo.places[loc.place];

    // Type 1 A&E: heavy-tailed, with a few high-intensity users.
    let mut ae_propensity = ctx.dist.ae_propensity.sample(ctx.rng) * health;
    if ctx.rng.random::<f64>() < 0.003 {
        ae_propensity *= ctx.rng.random_range(15.0..45.0);
    }
    let ae_rate = by_age(&[0.21, 0.22, 0.15, 0.16, 0.25, 0.40], age)
        * deprivation(0.35, p.imd_decile)
        * morbidity_factor(dx, age, 0.15)
        * ae_propensity;
    for _ in 0..poisson(ctx.rng, ae_rate * years) {
        let day = winter_day_between(ctx.rng, first, last);
        let end = if ctx.rng.random::<f64>() < 0.15 {
            (day + 1).min(INDEX_DATE)
        } else {
            day
        };
        let provider = acute_trust(ctx);
        let cost = pence(ctx.dist.normal(ctx.rng, 260.0, 70.0));
        if ctx.rng.random::<f64>() < 0.08
            && let Some((group, _)) = dx
                .iter()
                .enumerate()
                .find(|(_, d)| d.is_some_and(|d| d.active && d.first <= day))
        {
            let c = code(ctx.rng, group, false);
            out.conditions
                .push(p.id, c, CONDITIONS[group].group, day, false, "AE");
        }
        out.push(EncounterRow {
            end_date: Some(end),
            ..row("AE", day, provider, cost)
        });
    }

    // Admitted patient care.
    let admission_propensity = ctx.dist.admission_propensity.sample(ctx.rng) * health;
    let emergency_rate = by_age(&[0.075, 0.07, 0.09, 0.17, 0.31, 0.72], age)
        * deprivation(0.25, p.imd_decile)
        * morbidity_factor(dx, age, 0.3)
        * admission_propensity;
    let elective_rate = by_age(&[0.03, 0.05, 0.10, 0.18, 0.20, 0.12], age)
        * morbidity_factor(dx, age, 0.2)
        * admission_propensity.sqrt();
    let maternity_rate = if p.female && (16..=45).contains(&age) {
        0.06
    } else {
        0.0
    };
    let transfer_rate = if age >= 65 { 0.004 } else { 0.0005 };
    let spells = [
        ("EMERGENCY", poisson(ctx.rng, emergency_rate * years)),
        ("ELECTIVE", poisson(ctx.rng, elective_rate * years)),
        ("MATERNITY", poisson(ctx.rng, maternity_rate * years)),
        ("TRANSFER", poisson(ctx.rng, transfer_rate * years)),
    ];
    let mut reablement_from = None;
    for (method, count) in spells {
        for _ in 0..count {
            let start = if method == "EMERGENCY" {
                winter_day_between(ctx.rng, first, last)
            } else {
                day_between(ctx.rng, first, last)
            };
            let (los, diagnosis, cost) = match method {
                "EMERGENCY" => {
                    let los = if ctx.rng.random::<f64>() < 0.15 {
                        0
                    } else {
                        let age_effect = (0.012 * (f64::from(age) - 60.0)).exp();
                        (ctx.dist.emergency_los.sample(ctx.rng) * age_effect) as i32 + 1
                    };
                    let diagnosis = emergency_diagnosis(ctx, dx);
                    (los, diagnosis, 1_800.0 + 340.0 * f64::from(los))
                }
                "ELECTIVE" => {
                    let los = if ctx.rng.random::<f64>() < 0.65 {
                        0
                    } else {
                        ctx.dist.elective_los.sample(ctx.rng) as i32 + 1
                    };
                    let diagnosis = if is_active(dx, Group::Can) && ctx.rng.random::<f64>() < 0.5 {
                        Some(pick(ctx.rng, CONDITIONS[Group::Can as usize].icd10))
                    } else {
                        Some(pick(ctx.rng, &ELECTIVE_DIAGNOSES))
                    };
                    (los, diagnosis, 1_200.0 + 450.0 * f64::from(los))
                }
                "MATERNITY" => {
                    let los = ctx.rng.random_range(0..=3);
                    (
                        los,
                        Some(pick(ctx.rng, &["O80.9", "O82.9", "O70.1"])),
                        2_700.0 + 300.0 * f64::from(los),
                    )
                }
                _ => {
                    let los = ctx.rng.random_range(2..=20);
                    (
                        los,
                        Some(pick(ctx.rng, &EMERGENCY_DIAGNOSES)),
                        400.0 * f64::from(los),
                    )
                }
            };
            let los = los.min(365);
            let end = start + los;
            // Spells still open at the extract date have no end date or length of stay yet.
            let (end_date, los_days) = if end > INDEX_DATE {
                (None, None)
            } else {
                (Some(end), Some(los))
            };
            let provider = acute_trust(ctx);
            let cost = pence(cost * (0.8 + 0.4 * ctx.rng.random::<f64>()));
            code_conditions_in_spell(ctx, dx, start, &mut out);
            out.push(EncounterRow {
                end_date,
                admission_method: Some(method),
                primary_diag_icd10: diagnosis,
                los_days,
                ..row("APC", start, provider, cost)
            });
            if method == "EMERGENCY"
                && age >= 65
                && end < INDEX_DATE
                && ctx.rng.random::<f64>() < 0.08
            {
                reablement_from = Some(end + 1);
            }
        }
    }

    // Outpatient appointments: missed more often by younger adults and in deprived areas.
    let op_rate = by_age(&[0.8, 1.0, 1.6, 2.6, 3.0, 2.4], age)
        * morbidity_factor(dx, age, 0.3)
        * ctx.dist.outpatient_propensity.sample(ctx.rng);
    let dna_age = match age {
        0..=17 => 1.1,
        18..=39 => 1.5,
        40..=64 => 1.0,
        _ => 0.65,
    };
    let p_dna = 0.075 * dna_age * deprivation(0.4, p.imd_decile);
    for _ in 0..poisson(ctx.rng, op_rate * years) {
        let day = day_between(ctx.rng, first, last);
        let u: f64 = ctx.rng.random();
        let status = if u < p_dna {
            "DNA"
        } else if u < p_dna + 0.06 {
            "CANCELLED"
        } else {
            "ATTENDED"
        };
        let cost = if status == "ATTENDED" {
            pence(ctx.dist.normal(ctx.rng, 165.0, 40.0))
        } else {
            0.0
        };
        let provider = acute_trust(ctx);
        out.push(EncounterRow {
            attendance_status: Some(status),
            ..row("OP", day, provider, cost)
        });
    }

    // GP appointments.
    let practice = geo.practices[p.practice].code;
    let gp_rate = by_age(&[1.8, 1.6, 2.2, 3.5, 4.5, 5.0], age) * morbidity_factor(dx, age, 0.2);
    let p_gp_dna = 0.04 * deprivation(0.3, p.imd_decile);
    for _ in 0..poisson(ctx.rng, gp_rate * years) {
        let day = day_between(ctx.rng, first, last);
        let status = if ctx.rng.random::<f64>() < p_gp_dna {
            "DNA"
        } else {
            "ATTENDED"
        };
        let cost = if status == "ATTENDED" { 42.0 } else { 0.0 };
        out.push(EncounterRow {
            attendance_status: Some(status),
            ..row("GP", day, practice, cost)
        });
    }

    // Community health services: mostly frail older people.
    let frailty = match p.efi {
        Some("severe") => 6.0,
        Some("moderate") => 3.0,
        Some("mild") => 1.3,
        _ => 1.0,
    };
    let comm_rate = if age >= 65 {
        0.5 * frailty * if p.care_home { 4.0 } else { 1.0 }
    } else {
        0.06
    };
    for _ in 0..poisson(ctx.rng, comm_rate * years) {
        let day = day_between(ctx.rng, first, last);
        let cost = pence(ctx.dist.normal(ctx.rng, 75.0, 20.0));
        out.push(row("COMM", day, place.community_trust, cost));
    }

    // Mental health services.
    let (mh_rate, mh_services): (f64, &[&str]) = if is_active(dx, Group::Smi) {
        (
            4.0,
            &[
                "Community Mental Health Team",
                "Community Mental Health Team",
                "Early Intervention in Psychosis",
                "Crisis Resolution",
            ],
        )
    } else if is_active(dx, Group::Dem) {
        (0.5, &["Memory Assessment Service"])
    } else if is_active(dx, Group::Dep) {
        (
            0.4,
            &[
                "NHS Talking Therapies",
                "NHS Talking Therapies",
                "Community Mental Health Team",
            ],
        )
    } else if (14..=70).contains(&age) {
        (0.015, &["NHS Talking Therapies", "Crisis Resolution"])
    } else {
        (0.0, &[])
    };
    for _ in 0..poisson(ctx.rng, mh_rate * years) {
        let day = day_between(ctx.rng, first, last);
        let inpatient = is_active(dx, Group::Smi) && ctx.rng.random::<f64>() < 0.03;
        let (service, end, cost) = if inpatient {
            let end = day + ctx.rng.random_range(7..90);
            (
                "Mental Health Inpatient",
                (end <= INDEX_DATE).then_some(end),
                480.0 * f64::from(end - day),
            )
        } else {
            (
                pick(ctx.rng, mh_services),
                Some(day),
                ctx.dist.normal(ctx.rng, 190.0, 50.0),
            )
        };
        if ctx.rng.random::<f64>() < 0.3 {
            for group in [Group::Smi, Group::Dep, Group::Dem] {
                if is_active(dx, group) {
                    let c = code(ctx.rng, group as usize, false);
                    out.conditions.push(
                        p.id,
                        c,
                        CONDITIONS[group as usize].group,
                        day,
                        false,
                        "MH",
                    );
                    break;
                }
            }
        }
        out.push(EncounterRow {
            end_date: end,
            service_type: Some(service),
            ..row("MH", day, place.community_trust, pence(cost))
        });
    }

    // Adult social care: long-term support for care-home residents, the frail and people
    // with learning disabilities; reablement after an emergency admission.
    let council = place.council_code;
    let long_term = if p.care_home {
        Some(if ctx.rng.random::<f64>() < 0.4 {
            ("Long Term Support: Nursing", 1_150.0)
        } else {
            ("Long Term Support: Residential", 950.0)
        })
    } else {
        let p_community = match p.efi {
            Some("severe") => 0.35,
            Some("moderate") => 0.12,
            Some("mild") => 0.02,
            _ => 0.0,
        } + if is_active(dx, Group::Ld) && age >= 18 {
            0.45
        } else {
            0.0
        };
        (ctx.rng.random::<f64>() < p_community).then_some(("Long Term Support: Community", 320.0))
    };
    if let Some((service, weekly)) = long_term {
        // Episodes often began before the window; they end when the person leaves.
        let start = if ctx.rng.random::<f64>() < 0.6 {
            (first - ctx.rng.random_range(30..1_500)).max(p.registration_start)
        } else {
            day_between(ctx.rng, first, last)
        };
        let end = (last < INDEX_DATE).then_some(last);
        let weeks = f64::from(end.unwrap_or(INDEX_DATE) - start.max(WINDOW_START)) / 7.0;
        out.push(EncounterRow {
            end_date: end,
            attendance_status: None,
            service_type: Some(service),
            ..row("ASC", start, council, pence(weekly * weeks.max(1.0)))
        });
    }
    if let Some(start) = reablement_from {
        let end = start + 42;
        out.push(EncounterRow {
            end_date: (end <= INDEX_DATE).then_some(end),
            attendance_status: None,
            service_type: Some("Short Term Support: Reablement"),
            ..row("ASC", start, council, 2_700.0)
        });
    }
}

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
fn prescriptions(ctx: &mut Context<'_>, dx: &Diagnoses, rows: &mut MedicationRows) {
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
        // About 15% of people with AF are not anticoagulated: the trial cohort of C2.
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

/// Measurements follow conditions: blood pressure for hypertension, HbA1c for diabetes,
/// eGFR for kidney disease, smoking status for everyone now and then.
fn observations(ctx: &mut Context<'_>, dx: &Diagnoses, rows: &mut ObservationRows) {
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
