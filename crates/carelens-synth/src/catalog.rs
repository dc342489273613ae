//! The catalog (`carelens.toml`) of a generated extract.
//!
//! The catalog is also the single source of the Parquet schemas: the writers build each
//! table's Arrow schema from it, so the files and their catalog cannot disagree.

use carelens_catalog::{
    Catalog, Column, ColumnType, Dataset, Literal, Policy, Role, Table, TableKind, User,
};
use carelens_privacy::{Delta, Epsilon};

use crate::clinical::CONDITIONS;

/// Table names, in the order they are written.
pub const PERSON: &str = "person";
/// See [`PERSON`].
pub const CONDITION: &str = "condition";
/// See [`PERSON`].
pub const ENCOUNTER: &str = "encounter";
/// See [`PERSON`].
pub const MEDICATION: &str = "medication";
/// See [`PERSON`].
pub const OBSERVATION: &str = "observation";
/// See [`PERSON`].
pub const PRACTICE_LOOKUP: &str = "practice_lookup";
/// See [`PERSON`].
pub const LSOA_LOOKUP: &str = "lsoa_lookup";

/// Encounter settings.
pub const SETTINGS: [&str; 7] = ["GP", "AE", "APC", "OP", "COMM", "MH", "ASC"];
/// Admission methods of APC spells.
pub const ADMISSION_METHODS: [&str; 4] = ["ELECTIVE", "EMERGENCY", "MATERNITY", "TRANSFER"];
/// Attendance statuses of appointments.
pub const ATTENDANCE: [&str; 3] = ["ATTENDED", "DNA", "CANCELLED"];
/// Service types of adult social care and mental-health encounters.
pub const SERVICE_TYPES: [&str; 10] = [
    "Long Term Support: Residential",
    "Long Term Support: Nursing",
    "Long Term Support: Community",
    "Short Term Support: Reablement",
    "Community Mental Health Team",
    "NHS Talking Therapies",
    "Crisis Resolution",
    "Mental Health Inpatient",
    "Memory Assessment Service",
    "Early Intervention in Psychosis",
];
/// Drug classes of the `medication` table.
pub const DRUG_CLASSES: [&str; 20] = [
    "METFORMIN",
    "SGLT2",
    "INSULIN",
    "STATIN",
    "ACEI",
    "CCB",
    "BETA_BLOCKER",
    "LOOP_DIURETIC",
    "ANTIPLATELET",
    "ANTICOAG_DOAC",
    "WARFARIN",
    "ANTIDEP",
    "ICS",
    "SABA",
    "ANTIPSYCHOTIC",
    "ANTIEPILEPTIC",
    "ANTIDEMENTIA",
    "PPI",
    "OPIOID",
    "ANTIBIOTIC",
];
/// Observation types.
pub const OBS_TYPES: [&str; 6] = ["BMI", "HBA1C", "SBP", "DBP", "SMOKING", "EGFR"];
/// Smoking status codes.
pub const SMOKING_CODES: [&str; 3] = ["CURRENT", "EX", "NEVER"];
/// Condition sources.
pub const SOURCE_SETTINGS: [&str; 6] = ["GP", "APC", "OP", "AE", "MH", "COMM"];

fn col(name: &str, data_type: ColumnType) -> Column {
    Column::new(name, data_type)
}

fn described(mut c: Column, text: &str) -> Column {
    c.description = Some(text.to_owned());
    c
}

fn nullable(mut c: Column) -> Column {
    c.nullable = true;
    c
}

fn strings(mut c: Column, values: &[&str]) -> Column {
    c.domain = Some(
        values
            .iter()
            .map(|v| Literal::Str((*v).to_owned()))
            .collect(),
    );
    c
}

fn from(mut c: Column, source: &str) -> Column {
    c.domain_from = Some(source.to_owned());
    c
}

fn bounded(mut c: Column, lo: f64, hi: f64, precision: Option<f64>) -> Column {
    c.bounds = Some([lo, hi]);
    c.precision = precision;
    c
}

fn booleans(mut c: Column) -> Column {
    c.domain = Some(vec![Literal::Bool(false), Literal::Bool(true)]);
    c
}

fn person_id() -> Column {
    described(
        col("person_id", ColumnType::Int64),
        "keyed-hash pseudonym of the person; never output",
    )
}

/// The catalog of an extract of `persons` people generated from `seed`.
pub fn extract_catalog(persons: u64, seed: u64) -> Catalog {
    use ColumnType::*;
    let groups: Vec<&str> = CONDITIONS.iter().map(|c| c.group).collect();
    let table = |name: &str, kind, description: &str, columns| Table {
        name: name.to_owned(),
        kind,
        path: format!("{name}.parquet"),
        description: Some(description.to_owned()),
        max_groups: None,
        max_rows_per_group: None,
        unique_key: None,
        columns,
    };
    let events = |t: Table, max_groups: u32, max_rows: u32| Table {
        max_groups: Some(max_groups),
        max_rows_per_group: Some(max_rows),
        ..t
    };

    let person = table(
        PERSON,
        TableKind::Person,
        "one row per person registered with a Wessex practice at any time in 2023/24-2024/25",
        vec![
            person_id(),
            described(
                {
                    let mut c = bounded(col("year_of_birth", Int32), 1915.0, 2025.0, None);
                    c.domain_range = Some([1915, 2025]);
                    c
                },
                "year only; age at the index date is 2025 - year_of_birth",
            ),
            strings(col("sex", Utf8), &["F", "M", "I", "U"]),
            nullable(strings(
                col("ethnicity_group", Utf8),
                &["White", "Mixed", "Asian", "Black", "Other"],
            )),
            described(
                from(col("lsoa21", Utf8), "lsoa_lookup.lsoa21"),
                "LSOA 2021 of residence; a few are outside Wessex and not in lsoa_lookup",
            ),
            {
                let mut c = col("imd_decile", Int32);
                c.domain_range = Some([1, 10]);
                described(c, "Index of Multiple Deprivation decile, 1 = most deprived")
            },
            from(col("practice_code", Utf8), "practice_lookup.practice_code"),
            from(col("pcn_code", Utf8), "practice_lookup.pcn_code"),
            from(col("locality", Utf8), "practice_lookup.locality"),
            from(col("place", Utf8), "practice_lookup.place"),
            from(col("icb", Utf8), "practice_lookup.icb"),
            col("registration_start", Date32),
            described(
                nullable(col("registration_end", Date32)),
                "null = still registered",
            ),
            described(
                nullable(col("date_of_death", Date32)),
                "first of the month of death",
            ),
            booleans(col("care_home_resident", Boolean)),
            described(
                nullable(strings(
                    col("efi_category", Utf8),
                    &["fit", "mild", "moderate", "severe"],
                )),
                "electronic frailty index, people aged 65+ only",
            ),
        ],
    );

    let condition = events(
        table(
            CONDITION,
            TableKind::Events,
            "coded diagnoses and resolutions, many per person",
            vec![
                person_id(),
                strings(col("code_system", Utf8), &["SNOMED", "ICD10"]),
                col("code", Utf8),
                strings(col("condition_group", Utf8), &groups),
                col("event_date", Date32),
                described(
                    booleans(col("is_resolution", Boolean)),
                    "true for a code recording that the condition resolved",
                ),
                strings(col("source_setting", Utf8), &SOURCE_SETTINGS),
            ],
        ),
        5,
        5,
    );

    let encounter = events(
        table(
            ENCOUNTER,
            TableKind::Events,
            "activity across primary, acute, community, mental-health and social care",
            vec![
                col("encounter_id", Int64),
                person_id(),
                strings(col("setting", Utf8), &SETTINGS),
                col("start_date", Date32),
                described(
                    nullable(col("end_date", Date32)),
                    "null while an episode is open at the extract date",
                ),
                nullable(strings(col("admission_method", Utf8), &ADMISSION_METHODS)),
                nullable(strings(col("attendance_status", Utf8), &ATTENDANCE)),
                described(
                    col("provider_code", Utf8),
                    "ODS code of the trust, practice or council",
                ),
                nullable(col("primary_diag_icd10", Utf8)),
                described(
                    nullable(bounded(col("los_days", Int32), 0.0, 60.0, None)),
                    "length of stay of APC spells, in days",
                ),
                nullable(strings(col("service_type", Utf8), &SERVICE_TYPES)),
                described(
                    bounded(col("cost_gbp", Float64), 0.0, 10_000.0, Some(0.01)),
                    "reference cost in pounds",
                ),
            ],
        ),
        4,
        10,
    );

    let medication = events(
        table(
            MEDICATION,
            TableKind::Events,
            "prescriptions issued in primary care",
            vec![
                person_id(),
                col("issue_date", Date32),
                described(col("bnf_code", Utf8), "15-character BNF presentation code"),
                strings(col("drug_class", Utf8), &DRUG_CLASSES),
                bounded(col("quantity", Int32), 0.0, 200.0, None),
            ],
        ),
        4,
        13,
    );

    let observation = events(
        table(
            OBSERVATION,
            TableKind::Events,
            "measurements: BMI (kg/m2), HbA1c (mmol/mol), blood pressure (mmHg), eGFR, smoking",
            vec![
                person_id(),
                col("obs_date", Date32),
                strings(col("obs_type", Utf8), &OBS_TYPES),
                nullable(bounded(col("value_num", Float64), 0.0, 250.0, Some(0.1))),
                nullable(strings(col("value_code", Utf8), &SMOKING_CODES)),
            ],
        ),
        4,
        6,
    );

    let unique = |t: Table, key: &str| Table {
        unique_key: Some(key.to_owned()),
        ..t
    };
    let practice_lookup = unique(
        table(
            PRACTICE_LOOKUP,
            TableKind::Public,
            "GP practices with their PCN, locality, place and ICB",
            vec![
                col("practice_code", Utf8),
                col("pcn_code", Utf8),
                col("pcn_name", Utf8),
                col("locality", Utf8),
                col("place", Utf8),
                col("icb", Utf8),
            ],
        ),
        "practice_code",
    );

    let lsoa_lookup = unique(
        table(
            LSOA_LOOKUP,
            TableKind::Public,
            "LSOAs 2021 with locality, deprivation and rural-urban class",
            vec![
                col("lsoa21", Utf8),
                col("locality", Utf8),
                {
                    let mut c = col("imd_decile", Int32);
                    c.domain_range = Some([1, 10]);
                    c
                },
                col("rural_urban", Utf8),
            ],
        ),
        "lsoa21",
    );

    Catalog {
        dataset: Dataset {
            name: format!("Wessex synthetic care records ({persons} persons, seed {seed})"),
            person_column: "person_id".to_owned(),
            description: Some(
                "Synthetic, Wessex-shaped extract written by `carelens synth`. No real person \
                 is in it. Index date 2025-03-31; activity from 2023-04-01."
                    .to_owned(),
            ),
        },
        policy: Policy::default(),
        ledger: None,
        users: sample_users(),
        tables: vec![
            person,
            condition,
            encounter,
            medication,
            observation,
            practice_lookup,
            lsoa_lookup,
        ],
    }
}

/// The users of a synthetic extract: one per role, so that every command can be tried.
fn sample_users() -> Vec<User> {
    const ANALYST: (Epsilon, Delta) = (Epsilon::constant(15.0), Delta::constant(1e-5));
    const RESEARCHER: (Epsilon, Delta) = (Epsilon::constant(5.0), Delta::constant(1e-5));
    const OVERSIGHT: (Epsilon, Delta) = (Epsilon::constant(1.0), Delta::constant(0.0));
    let user = |name: &str, role: Role, (epsilon, delta): (Epsilon, Delta)| User {
        name: name.to_owned(),
        role,
        epsilon,
        delta,
    };
    vec![
        user("analyst", Role::Analyst, ANALYST),
        user("researcher", Role::Researcher, RESEARCHER),
        user("approver", Role::Approver, OVERSIGHT),
        user("admin", Role::Admin, OVERSIGHT),
    ]
}
