//! Encounters across settings: A&E, admitted patient care, outpatients, GP, community,
//! mental health and adult social care.

use rand::RngExt;
use rand_distr::Distribution;

use super::{Context, Diagnoses, is_active, morbidity_factor};
use crate::calendar::{INDEX_DATE, WINDOW_START};
use crate::clinical::{CONDITIONS, Group, code};
use crate::ids::pseudonym;
use crate::sampling::{by_age, day_between, deprivation, pick, poisson, winter_day_between};
use crate::tables::{ConditionRows, EncounterRow, EncounterRows};

/// Encounter identifiers per person: person `i`'s are keyed pseudonyms of
/// `i * ENCOUNTERS_PER_PERSON + k`, so they are unique across the extract.
pub const ENCOUNTERS_PER_PERSON: u64 = 1 << 12;

/// Appends a person's encounters with fresh identifiers, and the diagnoses they code.
struct Encounters<'r> {
    rows: &'r mut EncounterRows,
    conditions: &'r mut ConditionRows,
    key: u64,
    base: u64,
    next: u64,
    person_id: i64,
    /// First and last day of the person's activity window, and its length in years.
    first: i32,
    last: i32,
    years: f64,
    /// The person's latent health as a multiplier on rates (mean 1).
    health: f64,
}

impl Encounters<'_> {
    fn push(&mut self, mut row: EncounterRow<'_>) {
        // Never reached by the rates used; if it were, identifiers would stay unique.
        debug_assert!(self.next < ENCOUNTERS_PER_PERSON, "too many encounters");
        if self.next >= ENCOUNTERS_PER_PERSON {
            return;
        }
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

/// The recorded end of an episode that would end on `end`: that day if the person is still
/// in the extract then; the day they died or left if that came first; none while the
/// episode is still open at the extract date.
fn episode_end(end: i32, last: i32) -> Option<i32> {
    if end <= last {
        Some(end)
    } else if last < INDEX_DATE {
        Some(last)
    } else {
        None
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

/// Encounters in every setting, and the diagnoses that hospital, A&E and mental-health
/// contacts code.
pub(super) fn encounters(
    ctx: &mut Context<'_>,
    dx: &Diagnoses,
    rows: &mut EncounterRows,
    conditions: &mut ConditionRows,
) {
    let p = ctx.person;
    let years = p.exposure_years();
    if years <= 0.0 {
        return;
    }
    let mut out = Encounters {
        rows,
        conditions,
        key: ctx.encounter_key,
        base: ctx.encounter_base,
        next: 0,
        person_id: p.id,
        first: p.first_day(),
        last: p.last_day(),
        years,
        health: (0.35 * p.health - 0.061).exp(),
    };
    accident_and_emergency(ctx, dx, &mut out);
    let reablement_from = admissions(ctx, dx, &mut out);
    outpatients(ctx, dx, &mut out);
    gp_appointments(ctx, dx, &mut out);
    community_care(ctx, &mut out);
    mental_health(ctx, dx, &mut out);
    social_care(ctx, dx, &mut out, reablement_from);
}

/// Type 1 A&E: heavy-tailed, with a few high-intensity users.
fn accident_and_emergency(ctx: &mut Context<'_>, dx: &Diagnoses, out: &mut Encounters<'_>) {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
    let mut ae_propensity = ctx.dist.ae_propensity.sample(ctx.rng) * out.health;
    if ctx.rng.random::<f64>() < 0.003 {
        ae_propensity *= ctx.rng.random_range(15.0..45.0);
    }
    let ae_rate = by_age(&[0.21, 0.22, 0.15, 0.16, 0.25, 0.40], age)
        * deprivation(0.35, p.imd_decile)
        * morbidity_factor(dx, age, 0.15)
        * ae_propensity;
    // Attendances are spread evenly through the year: winter pressure shows in admissions.
    for _ in 0..poisson(ctx.rng, ae_rate * years) {
        let day = day_between(ctx.rng, first, last);
        let end = if ctx.rng.random::<f64>() < 0.15 {
            (day + 1).min(last)
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
}

/// Admitted patient care.
fn admissions(ctx: &mut Context<'_>, dx: &Diagnoses, out: &mut Encounters<'_>) -> Option<i32> {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
    let admission_propensity = ctx.dist.admission_propensity.sample(ctx.rng) * out.health;
    let emergency_rate = by_age(&[0.07, 0.065, 0.084, 0.155, 0.26, 0.68], age)
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
            let end_date = episode_end(start + los.min(365), last);
            let los_days = end_date.map(|end| end - start);
            let provider = acute_trust(ctx);
            let cost = pence(cost * (0.8 + 0.4 * ctx.rng.random::<f64>()));
            code_conditions_in_spell(ctx, dx, start, out);
            out.push(EncounterRow {
                end_date,
                admission_method: Some(method),
                primary_diag_icd10: diagnosis,
                los_days,
                ..row("APC", start, provider, cost)
            });
            if let Some(end) = end_date
                && method == "EMERGENCY"
                && age >= 65
                && end < last
                && ctx.rng.random::<f64>() < 0.08
            {
                reablement_from = Some(end + 1);
            }
        }
    }
    reablement_from
}

/// Outpatient appointments: missed more often by younger adults and in deprived areas.
fn outpatients(ctx: &mut Context<'_>, dx: &Diagnoses, out: &mut Encounters<'_>) {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
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
}

/// GP appointments.
fn gp_appointments(ctx: &mut Context<'_>, dx: &Diagnoses, out: &mut Encounters<'_>) {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
    let practice = ctx.geo.practices[p.practice].code;
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
}

/// Community health services: mostly frail older people.
fn community_care(ctx: &mut Context<'_>, out: &mut Encounters<'_>) {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
    let place = ctx.geo.place_of(p.locality);
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
}

/// Mental health services.
fn mental_health(ctx: &mut Context<'_>, dx: &Diagnoses, out: &mut Encounters<'_>) {
    let p = ctx.person;
    let (first, last, years, age) = (out.first, out.last, out.years, p.age);
    let place = ctx.geo.place_of(p.locality);
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
            let end = episode_end(day + ctx.rng.random_range(7..90), last);
            let days = end.unwrap_or(INDEX_DATE) - day;
            ("Mental Health Inpatient", end, 480.0 * f64::from(days))
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
}

/// Adult social care: long-term support for care-home residents, the frail and people
/// with learning disabilities; reablement after an emergency admission.
fn social_care(
    ctx: &mut Context<'_>,
    dx: &Diagnoses,
    out: &mut Encounters<'_>,
    reablement_from: Option<i32>,
) {
    let p = ctx.person;
    let (first, last, age) = (out.first, out.last, p.age);
    let place = ctx.geo.place_of(p.locality);
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
        out.push(EncounterRow {
            end_date: episode_end(start + 42, last),
            attendance_status: None,
            service_type: Some("Short Term Support: Reablement"),
            ..row("ASC", start, council, 2_700.0)
        });
    }
}
