//! Long-term conditions: who has which, since when, and how they are coded.
//!
//! Prevalence is given per age band for England (QOF 2023/24, rounded) and modified by
//! sex, deprivation, a latent per-person health factor and clinical clusters
//! (hypertension → CKD and diabetes, AF → heart failure, smoking → COPD, stroke →
//! dementia, learning disability → epilepsy), so conditions are correlated the way they
//! are in real registers rather than drawn as independent columns.

use rand::RngExt;

use crate::sampling::{SynthRng, by_age, deprivation, pick};

/// Number of condition groups.
pub const N_GROUPS: usize = 16;

/// A condition group of the `condition` table, indexing [`CONDITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum Group {
    Hyp,
    DmT1,
    DmT2,
    Ckd,
    Chd,
    Af,
    Hf,
    Stia,
    Ast,
    Copd,
    Dep,
    Smi,
    Dem,
    Can,
    Ld,
    Epil,
}

/// How one condition group is coded and how common it is.
pub struct ConditionSpec {
    /// The `condition_group` value.
    pub group: &'static str,
    /// SNOMED CT diagnosis codes used in primary care.
    pub snomed: &'static [&'static str],
    /// ICD-10 codes used in hospital coding.
    pub icd10: &'static [&'static str],
    /// SNOMED code recording that the condition resolved, if it can.
    pub resolution: Option<&'static str>,
    /// Active prevalence by age band (0-17, 18-39, 40-64, 65-74, 75-84, 85+) in an average
    /// population, before the modifiers below.
    pub by_age: [f64; 6],
    /// Multipliers for females and males.
    pub sex: (f64, f64),
    /// Deprivation gradient (see [`deprivation`]).
    pub deprivation: f64,
    /// Chance a case has a resolution code.
    pub resolves: f64,
    /// Youngest age at diagnosis.
    pub min_age: u32,
}

/// All condition groups, in the order they are drawn (clusters depend on earlier ones).
pub const CONDITIONS: [ConditionSpec; N_GROUPS] = [
    ConditionSpec {
        group: "HYP",
        snomed: &["38341003", "59621000"],
        icd10: &["I10"],
        resolution: Some("162659009"),
        by_age: [0.0, 0.0198, 0.1485, 0.396, 0.55, 0.638],
        sex: (0.95, 1.05),
        deprivation: 0.12,
        resolves: 0.03,
        min_age: 18,
    },
    ConditionSpec {
        group: "DM_T1",
        snomed: &["46635009"],
        icd10: &["E10.9"],
        resolution: None,
        by_age: [0.003, 0.005, 0.005, 0.004, 0.003, 0.002],
        sex: (0.9, 1.1),
        deprivation: 0.05,
        resolves: 0.0,
        min_age: 1,
    },
    ConditionSpec {
        group: "DM_T2",
        snomed: &["44054006", "313436004"],
        icd10: &["E11.9", "E11.6"],
        resolution: Some("315051004"),
        by_age: [0.00057, 0.01035, 0.0667, 0.1495, 0.17825, 0.15525],
        sex: (0.87, 1.15),
        deprivation: 0.30,
        resolves: 0.04,
        min_age: 12,
    },
    ConditionSpec {
        group: "CKD",
        snomed: &["433144002", "431856006"],
        icd10: &["N18.3", "N18.4"],
        resolution: Some("1097891000000108"),
        by_age: [0.0, 0.0018, 0.0168, 0.078, 0.162, 0.276],
        sex: (1.1, 0.9),
        deprivation: 0.12,
        resolves: 0.03,
        min_age: 18,
    },
    ConditionSpec {
        group: "CHD",
        snomed: &["53741008", "22298006"],
        icd10: &["I25.1", "I21.9"],
        resolution: None,
        by_age: [0.0, 0.00096, 0.0192, 0.078, 0.138, 0.18],
        sex: (0.7, 1.35),
        deprivation: 0.25,
        resolves: 0.0,
        min_age: 25,
    },
    ConditionSpec {
        group: "AF",
        snomed: &["49436004", "440059007"],
        icd10: &["I48.9", "I48.1"],
        resolution: Some("196371000000102"),
        by_age: [0.0, 0.0006, 0.0078, 0.0576, 0.126, 0.21],
        sex: (0.85, 1.2),
        deprivation: -0.05,
        resolves: 0.04,
        min_age: 25,
    },
    ConditionSpec {
        group: "HF",
        snomed: &["84114007", "42343007"],
        icd10: &["I50.9", "I50.0"],
        resolution: None,
        by_age: [0.0, 0.00045, 0.003, 0.018, 0.0525, 0.105],
        sex: (0.85, 1.2),
        deprivation: 0.2,
        resolves: 0.0,
        min_age: 25,
    },
    ConditionSpec {
        group: "STIA",
        snomed: &["230690007", "266257000"],
        icd10: &["I63.9", "G45.9"],
        resolution: None,
        by_age: [0.0, 0.00135, 0.0108, 0.054, 0.108, 0.15525],
        sex: (0.95, 1.05),
        deprivation: 0.15,
        resolves: 0.0,
        min_age: 18,
    },
    ConditionSpec {
        group: "AST",
        snomed: &["195967001", "389145006"],
        icd10: &["J45.9"],
        resolution: Some("162660004"),
        by_age: [0.0525, 0.0735, 0.0714, 0.0735, 0.0735, 0.063],
        sex: (1.1, 0.9),
        deprivation: 0.12,
        resolves: 0.15,
        min_age: 2,
    },
    ConditionSpec {
        group: "COPD",
        snomed: &["13645005", "195951007"],
        icd10: &["J44.9", "J44.1"],
        resolution: None,
        by_age: [0.0, 0.00057, 0.01495, 0.0575, 0.0805, 0.0805],
        sex: (0.95, 1.05),
        deprivation: 0.35,
        resolves: 0.0,
        min_age: 35,
    },
    ConditionSpec {
        group: "DEP",
        snomed: &["35489007", "370143000"],
        icd10: &["F32.9", "F33.9"],
        resolution: Some("196381000000100"),
        by_age: [0.0105, 0.13125, 0.147, 0.1155, 0.105, 0.105],
        sex: (1.25, 0.75),
        deprivation: 0.25,
        resolves: 0.25,
        min_age: 12,
    },
    ConditionSpec {
        group: "SMI",
        snomed: &["58214004", "13746004"],
        icd10: &["F20.9", "F31.9"],
        resolution: Some("162571000000100"),
        by_age: [0.00068, 0.01215, 0.0162, 0.01215, 0.0108, 0.00945],
        sex: (0.95, 1.05),
        deprivation: 0.45,
        resolves: 0.04,
        min_age: 14,
    },
    ConditionSpec {
        group: "DEM",
        snomed: &["52448006", "26929004"],
        icd10: &["F03", "G30.9"],
        resolution: None,
        by_age: [0.0, 0.0, 0.00104, 0.0117, 0.0585, 0.208],
        sex: (1.15, 0.85),
        deprivation: 0.08,
        resolves: 0.0,
        min_age: 40,
    },
    ConditionSpec {
        group: "CAN",
        snomed: &["254837009", "363406005", "399068003", "254632001"],
        icd10: &["C50.9", "C18.9", "C61", "C34.9"],
        resolution: None,
        by_age: [0.0011, 0.0033, 0.0352, 0.0935, 0.143, 0.165],
        sex: (1.05, 0.95),
        deprivation: -0.05,
        resolves: 0.0,
        min_age: 0,
    },
    ConditionSpec {
        group: "LD",
        snomed: &["110359009"],
        icd10: &["F79"],
        resolution: None,
        by_age: [0.0066, 0.0066, 0.0066, 0.0044, 0.0033, 0.0022],
        sex: (0.75, 1.25),
        deprivation: 0.15,
        resolves: 0.0,
        min_age: 0,
    },
    ConditionSpec {
        group: "EPIL",
        snomed: &["84757009", "313307000"],
        icd10: &["G40.9"],
        resolution: Some("196911000000104"),
        by_age: [0.0055, 0.0088, 0.0088, 0.0099, 0.0099, 0.0099],
        sex: (0.95, 1.05),
        deprivation: 0.2,
        resolves: 0.05,
        min_age: 0,
    },
];

/// Smoking status, as recorded in the `observation` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoking {
    /// Under 16: never asked.
    NotRecorded,
    /// `NEVER`.
    Never,
    /// `EX`.
    Ex,
    /// `CURRENT`.
    Current,
}

impl Smoking {
    /// The `value_code` of a smoking observation.
    pub fn code(self) -> Option<&'static str> {
        match self {
            Smoking::NotRecorded => None,
            Smoking::Never => Some("NEVER"),
            Smoking::Ex => Some("EX"),
            Smoking::Current => Some("CURRENT"),
        }
    }
}

/// Smoking status: current smoking is three to four times as common in the most deprived
/// decile as in the least, and falls in old age.
pub fn draw_smoking(rng: &mut SynthRng, age: u32, imd_decile: u8) -> Smoking {
    if age < 16 {
        return Smoking::NotRecorded;
    }
    let age_factor = match age {
        16..=24 => 0.7,
        25..=64 => 1.0,
        _ => 0.55,
    };
    let current = (0.06 + 0.20 * f64::from(10 - imd_decile) / 9.0) * age_factor;
    let ex = if age >= 50 { 0.30 } else { 0.14 };
    let u: f64 = rng.random();
    if u < current {
        Smoking::Current
    } else if u < current + ex {
        Smoking::Ex
    } else {
        Smoking::Never
    }
}

/// Multiplier on a condition's chance from conditions drawn before it and from smoking.
fn cluster_multiplier(group: Group, has: &[bool; N_GROUPS], smoking: Smoking) -> f64 {
    let m = |g: Group, factor: f64| if has[g as usize] { factor } else { 1.0 };
    match group {
        Group::DmT2 => m(Group::Hyp, 1.8),
        Group::Ckd => m(Group::Hyp, 1.8) * m(Group::DmT2, 1.8),
        Group::Chd => {
            let smoke = if smoking == Smoking::Current {
                1.5
            } else {
                1.0
            };
            m(Group::Hyp, 1.5) * m(Group::DmT2, 1.5) * smoke
        }
        Group::Af => m(Group::Hyp, 1.3),
        Group::Hf => m(Group::Af, 3.5) * m(Group::Chd, 3.0),
        Group::Stia => m(Group::Af, 2.0) * m(Group::Hyp, 1.5),
        Group::Copd => match smoking {
            Smoking::Current => 3.0,
            Smoking::Ex => 1.8,
            _ => 0.3,
        },
        Group::Dem => m(Group::Stia, 2.0),
        Group::Smi => m(Group::Ld, 2.0),
        Group::Dep => m(Group::Smi, 2.0),
        Group::Epil => m(Group::Ld, 10.0),
        _ => 1.0,
    }
}

/// Cluster effects raise prevalence; dividing by their typical size keeps each group's
/// overall prevalence near its target.
const CLUSTER_NORMALISER: [f64; N_GROUPS] = [
    1.0, 1.0, 1.25, 1.25, 1.25, 1.08, 1.3, 1.3, 1.0, 1.0, 1.0, 1.0, 1.1, 1.0, 1.0, 1.1,
];

/// Draw which condition groups a person has ever been diagnosed with.
///
/// `health` is the person's latent health factor (standard normal; higher is sicker).
pub fn draw_conditions(
    rng: &mut SynthRng,
    age: u32,
    female: bool,
    imd_decile: u8,
    health: f64,
    smoking: Smoking,
) -> [bool; N_GROUPS] {
    let mut has = [false; N_GROUPS];
    // E[exp(0.45 Z)] = exp(0.45^2 / 2): divide it out so the factor averages 1.
    let health_factor = (0.45 * health - 0.101).exp();
    // LD is drawn before the groups it influences.
    let order = [
        Group::Ld,
        Group::Hyp,
        Group::DmT1,
        Group::DmT2,
        Group::Ckd,
        Group::Chd,
        Group::Af,
        Group::Hf,
        Group::Stia,
        Group::Ast,
        Group::Copd,
        Group::Smi,
        Group::Dep,
        Group::Dem,
        Group::Can,
        Group::Epil,
    ];
    for group in order {
        let spec = &CONDITIONS[group as usize];
        if age < spec.min_age {
            continue;
        }
        let sex = if female { spec.sex.0 } else { spec.sex.1 };
        // Ever diagnosed = active / (share not resolved or resolved then relapsed).
        let ever = by_age(&spec.by_age, age) / (1.0 - 0.7 * spec.resolves);
        let p = ever
            * sex
            * deprivation(spec.deprivation, imd_decile)
            * health_factor
            * cluster_multiplier(group, &has, smoking)
            / CLUSTER_NORMALISER[group as usize];
        has[group as usize] = rng.random::<f64>() < p.min(0.95);
    }
    has
}

/// The electronic frailty index category for people aged 65 and over (`None` below 65,
/// and for 3% of older people whose score was never calculated).
pub fn draw_efi(
    rng: &mut SynthRng,
    age: u32,
    n_conditions: usize,
    health: f64,
) -> Option<&'static str> {
    if age < 65 || rng.random::<f64>() < 0.03 {
        return None;
    }
    let noise: f64 = rng.random::<f64>() - 0.5;
    let score =
        0.03 * f64::from(age - 65) + 0.28 * n_conditions as f64 + 0.45 * health + 0.9 * noise;
    Some(match score {
        s if s < 0.55 => "fit",
        s if s < 1.25 => "mild",
        s if s < 1.9 => "moderate",
        _ => "severe",
    })
}

/// A diagnosis code for a group: SNOMED in primary care, ICD-10 in hospital.
pub fn code(rng: &mut SynthRng, group: usize, icd10: bool) -> (&'static str, &'static str) {
    let spec = &CONDITIONS[group];
    if icd10 {
        ("ICD10", pick(rng, spec.icd10))
    } else {
        ("SNOMED", pick(rng, spec.snomed))
    }
}
