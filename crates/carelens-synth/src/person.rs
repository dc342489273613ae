//! People: where they live and are registered, their age, sex, ethnicity, health,
//! registration history and death.

use rand::RngExt;
use rand_distr::{Distribution, Exp, StandardNormal};

use crate::calendar::{INDEX_DATE, WINDOW_START, civil_from_days, first_of_month};
use crate::clinical::{N_GROUPS, Smoking, draw_conditions, draw_efi, draw_smoking};
use crate::geography::Geography;
use crate::sampling::{SynthRng, by_age, cumulative, pick, pick_cumulative};

/// Oldest age generated.
const MAX_AGE: usize = 104;

/// England's population by five-year age band, per cent (ONS mid-2021, rounded), the
/// shape every locality's age profile starts from.
const ENGLAND_FIVE_YEAR: [f64; 21] = [
    5.4, 6.0, 6.0, 5.6, 6.1, 6.6, 6.9, 6.6, 6.2, 6.4, 6.9, 6.7, 5.8, 5.0, 5.0, 3.6, 2.5, 1.5, 0.7,
    0.2, 0.02,
];

/// Per-locality tables that make drawing a person cheap.
pub struct Population {
    /// Cumulative locality weights (by registered population).
    locality: Vec<f64>,
    /// Per locality: cumulative weights of ages 0..=MAX_AGE.
    ages: Vec<Vec<f64>>,
    /// Per locality: cumulative weights of its practices.
    practices: Vec<Vec<f64>>,
}

impl Population {
    /// Builds the tables from the geography.
    pub fn new(geo: &Geography) -> Population {
        let locality = cumulative(geo.localities.iter().map(|l| f64::from(l.population)));
        let ages = geo
            .localities
            .iter()
            .map(|l| {
                let student_town = matches!(
                    l.name,
                    "Southampton Central"
                        | "Southampton West"
                        | "Portsmouth South"
                        | "Central Bournemouth"
                );
                let w: Vec<f64> = (0..=MAX_AGE)
                    .map(|age| {
                        let base = ENGLAND_FIVE_YEAR[age / 5] / 5.0;
                        if student_town && (18..=24).contains(&age) {
                            base * 1.8
                        } else {
                            base
                        }
                    })
                    .collect();
                // Tilt the whole profile by exp(beta * age) until the share aged 65+ is the
                // locality's: older areas then also have fewer children and an older
                // median (Dorset Council: 29.6% aged 65+, median age about 51.6).
                let tilted = |beta: f64| -> Vec<f64> {
                    w.iter()
                        .enumerate()
                        .map(|(age, x)| x * (beta * age as f64).exp())
                        .collect()
                };
                let share_65 = |v: &[f64]| v[65..].iter().sum::<f64>() / v.iter().sum::<f64>();
                let (mut lo, mut hi) = (-0.1, 0.1);
                for _ in 0..60 {
                    let mid = 0.5 * (lo + hi);
                    if share_65(&tilted(mid)) < l.share_65_plus {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let w = tilted(0.5 * (lo + hi));
                cumulative(w)
            })
            .collect();
        let practices = geo
            .practices_of_locality
            .iter()
            .map(|range| cumulative(geo.practices[range.clone()].iter().map(|p| p.list_size)))
            .collect();
        Population {
            locality,
            ages,
            practices,
        }
    }
}

/// A generated person, with what the event generators need to know about them.
pub struct Person {
    pub id: i64,
    /// Age in whole years on the index date.
    pub age: u32,
    pub female: bool,
    pub sex: &'static str,
    pub ethnicity: Option<&'static str>,
    pub locality: usize,
    pub practice: usize,
    pub lsoa: &'static str,
    pub imd_decile: u8,
    /// Latent health: standard normal, higher is sicker. Drives conditions and activity.
    pub health: f64,
    pub smoking: Smoking,
    /// Condition groups ever diagnosed.
    pub ever: [bool; N_GROUPS],
    pub efi: Option<&'static str>,
    pub care_home: bool,
    pub birth_day: i32,
    /// Calendar year of birth; `2025 - year_of_birth` is `age` or `age + 1`, as in real
    /// extracts that hold the year only.
    pub year_of_birth: i32,
    pub registration_start: i32,
    pub registration_end: Option<i32>,
    pub date_of_death: Option<i32>,
}

impl Person {
    /// First day of the activity window on which the person is registered.
    pub fn first_day(&self) -> i32 {
        self.registration_start.max(WINDOW_START)
    }

    /// Last day the person is registered and alive (at most the index date).
    pub fn last_day(&self) -> i32 {
        let mut last = INDEX_DATE;
        if let Some(end) = self.registration_end {
            last = last.min(end);
        }
        if let Some(death) = self.date_of_death {
            last = last.min(death);
        }
        last
    }

    /// Years of activity window the person was registered and alive.
    pub fn exposure_years(&self) -> f64 {
        (f64::from(self.last_day() - self.first_day() + 1) / 365.25).max(0.0)
    }
}

const ETHNIC_MINORITIES: [&str; 4] = ["Asian", "Mixed", "Black", "Other"];
const ETHNIC_MINORITY_WEIGHTS: [f64; 4] = [0.45, 0.67, 0.85, 1.0];

/// Share of recorded ethnicity that is White, by place (Census 2021, rounded).
fn white_share(place: &str) -> f64 {
    match place {
        "Dorset" => 0.95,
        "BCP" => 0.90,
        "Hampshire" => 0.92,
        "Southampton" => 0.78,
        "Portsmouth" => 0.84,
        _ => 0.96,
    }
}

/// Annual probability of death by age, England life tables (rounded).
fn annual_mortality(age: u32) -> f64 {
    match age {
        0 => 0.004,
        1..=44 => 0.0006,
        45..=64 => 0.004,
        65..=74 => 0.014,
        75..=84 => 0.042,
        85..=94 => 0.13,
        _ => 0.30,
    }
}

/// Draws person number `index`; `id` is their pseudonym.
pub fn draw_person(rng: &mut SynthRng, geo: &Geography, pop: &Population, id: i64) -> Person {
    let locality = pick_cumulative(rng, &pop.locality);
    let loc = &geo.localities[locality];
    let place = geo.place_of(locality);
    let age = pick_cumulative(rng, &pop.ages[locality]) as u32;

    // Women outnumber men from late middle age.
    let p_female = match age {
        0..=59 => 0.495,
        60..=69 => 0.515,
        70..=79 => 0.535,
        80..=89 => 0.58,
        _ => 0.68,
    };
    let u: f64 = rng.random();
    let (female, sex) = if u < 0.0005 {
        (false, "I")
    } else if u < 0.001 {
        (false, "U")
    } else if rng.random::<f64>() < p_female {
        (true, "F")
    } else {
        (false, "M")
    };

    let ethnicity = if rng.random::<f64>() < 0.12 {
        None
    } else if rng.random::<f64>() < white_share(place.name) + (f64::from(age.min(80)) / 80.0) * 0.04
    {
        Some("White")
    } else {
        Some(ETHNIC_MINORITIES[pick_cumulative(rng, &ETHNIC_MINORITY_WEIGHTS)])
    };

    // Residence: mostly in the practice's locality, some across the boundary within the
    // place, a few outside Wessex (codes absent from lsoa_lookup).
    let practice_range = &geo.practices_of_locality[locality];
    let practice = practice_range.start + pick_cumulative(rng, &pop.practices[locality]);
    let r: f64 = rng.random();
    let (lsoa, imd_decile) = if r < 0.004 {
        let code: &'static str = pick(rng, &OUT_OF_AREA_LSOAS);
        let decile = (loc.mean_imd_decile + 2.0 * (rng.random::<f64>() - 0.5)).round();
        (code, decile.clamp(1.0, 10.0) as u8)
    } else {
        let range = if r < 0.06 {
            geo.lsoas_of_place[loc.place].clone()
        } else {
            geo.lsoas_of_locality[locality].clone()
        };
        let l = &geo.lsoas[rng.random_range(range)];
        (l.code, l.imd_decile)
    };

    let health: f64 = rng.sample(StandardNormal);
    let smoking = draw_smoking(rng, age, imd_decile);
    let ever = draw_conditions(rng, age, female, imd_decile, health, smoking);
    let n_conditions = ever.iter().filter(|&&b| b).count();
    let efi = draw_efi(rng, age, n_conditions, health);
    let care_home = age >= 65 && {
        let dementia = ever[crate::clinical::Group::Dem as usize];
        let p = 0.004
            + if dementia { 0.45 } else { 0.0 }
            + if efi == Some("severe") { 0.07 } else { 0.0 }
            + if age >= 85 { 0.03 } else { 0.0 };
        rng.random::<f64>() < p
    };

    // Registration history.
    // Exact age `age` on the index date: born in the year before their last birthday.
    let birth_day = INDEX_DATE - (f64::from(age) * 365.25) as i32 - rng.random_range(0..365);
    let year_of_birth = civil_from_days(birth_day).0;
    let years_registered = Exp::new(1.0 / 14.0).map(|d| d.sample(rng)).unwrap_or(14.0);
    let mut registration_start = (INDEX_DATE - (years_registered * 365.25) as i32).max(birth_day);
    if rng.random::<f64>() < 0.05 {
        // Moved into Wessex during the window.
        registration_start = rng.random_range(WINDOW_START..=INDEX_DATE).max(birth_day);
    }
    let window_from = registration_start.max(WINDOW_START);
    let mut registration_end = None;
    let mut date_of_death = None;
    if window_from < INDEX_DATE - 1 {
        if rng.random::<f64>() < 0.045 {
            // Moved away: de-registered, with their older records still in the extract.
            registration_end = Some(rng.random_range(window_from + 1..INDEX_DATE));
        } else {
            // Relative risks scaled to average about 1 within an age group, so deaths
            // stay near the life-table rate while falling on the sicker people.
            let mut hazard = annual_mortality(age) * (1.0 + 0.25 * n_conditions as f64)
                / (1.0 + 0.25 * by_age(&crate::records::MEAN_CONDITIONS, age));
            hazard *= match efi {
                Some("severe") => 1.6,
                Some("moderate") => 1.15,
                Some("mild") => 0.9,
                Some(_) => 0.7,
                None => 1.0,
            };
            if care_home {
                hazard *= 1.4;
            }
            let p_death = 1.0 - (1.0 - hazard.min(0.9)).powi(2);
            if rng.random::<f64>() < p_death {
                let day = first_of_month(rng.random_range(window_from..INDEX_DATE));
                if day >= registration_start {
                    date_of_death = Some(day);
                }
            }
        }
    }

    Person {
        id,
        age,
        female,
        sex,
        ethnicity,
        locality,
        practice,
        lsoa,
        imd_decile,
        health,
        smoking,
        ever,
        efi,
        care_home,
        birth_day,
        year_of_birth,
        registration_start,
        registration_end,
        date_of_death,
    }
}

/// LSOAs just outside Wessex (Wiltshire, Somerset, West Sussex): registered with a Wessex
/// practice but absent from `lsoa_lookup`.
const OUT_OF_AREA_LSOAS: [&str; 6] = [
    "E01031980",
    "E01032102",
    "E01029215",
    "E01029311",
    "E01031590",
    "E01031622",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_profiles_hit_each_localitys_share_aged_65_plus() {
        let geo = Geography::get();
        let pop = Population::new(geo);
        for (locality, cdf) in geo.localities.iter().zip(&pop.ages) {
            let total = cdf[MAX_AGE];
            let share = (total - cdf[64]) / total;
            assert!(
                (share - locality.share_65_plus).abs() < 1e-6,
                "{}: {share}",
                locality.name
            );
        }
    }
}
