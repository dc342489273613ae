//! Realism of the synthetic extract: the facts of shared/DATA.md ("Facts the generator
//! should reproduce") checked on the 100,000-person extract, with plain DataFusion.
//!
//! Each test states its source figure and a tolerance set from measurements on several
//! seeds (7, 1, 2, 3, 42 and 1234), wide enough for any seed but narrow enough to catch a
//! broken generator; a failure prints the measured values. Rates are per
//! registered-and-alive person on the index date (`REG`), over the 12 months to
//! 2025-03-31, unless the test says otherwise.

use std::ops::RangeInclusive;

use datafusion::prelude::SessionContext;

use crate::common::{REG, extract_100k, numbers, rows, session};

/// The 12 months to the index date, for a date column.
fn last_12_months(column: &str) -> String {
    format!("{column} BETWEEN DATE '2024-04-01' AND DATE '2025-03-31'")
}

/// `active (person_id, condition_group)`: who is on each condition register on the index
/// date, QOF-style as in shared/QUERIES.md Q1 — a diagnosis code not followed by a later
/// resolution code.
const ACTIVE: &str = "active AS (
  SELECT person_id, condition_group FROM (
    SELECT person_id, condition_group,
           MAX(CASE WHEN NOT is_resolution THEN event_date END) AS last_dx,
           MAX(CASE WHEN is_resolution THEN event_date END)     AS last_res
    FROM condition WHERE event_date <= DATE '2025-03-31'
    GROUP BY person_id, condition_group) d
  WHERE last_dx IS NOT NULL AND (last_res IS NULL OR last_res < last_dx))";

/// Adult age bands over which chronic-disease prevalence and statin use rise.
const ADULT_BANDS: [&str; 4] = ["18-39", "40-64", "65-74", "75-84"];

async fn extract() -> SessionContext {
    session(extract_100k()).await
}

/// The numbers of the row keyed `key`.
fn row<'a>(rows: &'a [(String, Vec<f64>)], key: &str) -> &'a [f64] {
    &rows
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {rows:?}"))
        .1
}

#[track_caller]
fn assert_within(what: &str, value: f64, range: RangeInclusive<f64>) {
    assert!(
        range.contains(&value),
        "{what} = {value:.4}, expected within {range:?}"
    );
}

/// `values` (label, value) strictly increase in the order given.
#[track_caller]
fn assert_rising(what: &str, values: &[(&str, f64)]) {
    assert!(
        values.windows(2).all(|w| w[0].1 < w[1].1),
        "{what} should rise with age band: {values:?}"
    );
}

/// Active prevalence of `group` in the registered population, by age band.
async fn prevalence_by_age_band(group: &str) -> Vec<(&'static str, f64)> {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         cases AS (SELECT DISTINCT person_id FROM active WHERE condition_group = '{group}')
         SELECT r.age_band, COUNT(DISTINCT c.person_id) * 1.0 / COUNT(DISTINCT r.person_id)
         FROM reg r LEFT JOIN cases c ON c.person_id = r.person_id
         GROUP BY r.age_band"
    );
    let by_band = rows(&ctx, &sql).await;
    ADULT_BANDS
        .iter()
        .map(|&band| (band, row(&by_band, band)[0]))
        .collect()
}

// --- Population -----------------------------------------------------------------------

/// ONS Census 2021: Dorset ICS is old (Dorset Council 29.6% aged 65+, BCP 21.6%, so about
/// 25.5%); Hampshire and Isle of Wight about 20% (old Isle of Wight, young Southampton and
/// Portsmouth).
#[tokio::test]
async fn share_aged_65_plus_is_higher_in_dorset_than_in_hampshire_and_isle_of_wight() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG} SELECT icb, AVG(CASE WHEN age >= 65 THEN 1.0 ELSE 0.0 END) FROM reg
         GROUP BY icb"
    );
    let by_icb = rows(&ctx, &sql).await;
    let dorset = row(&by_icb, "Dorset")[0];
    let hiow = row(&by_icb, "Hampshire and Isle of Wight")[0];
    assert!(
        dorset > hiow + 0.02,
        "share aged 65+: Dorset {dorset:.4}, Hampshire and Isle of Wight {hiow:.4}"
    );
    assert_within("Dorset share aged 65+", dorset, 0.20..=0.31);
    assert_within("HIOW share aged 65+", hiow, 0.15..=0.25);
}

/// DATA.md: Dorset has 13 localities and 779,770 of Wessex's ~2.58 million people (30%).
#[tokio::test]
async fn dorset_has_13_localities_and_three_tenths_of_the_people() {
    let ctx = extract().await;
    let [localities] = numbers(
        &ctx,
        "SELECT COUNT(DISTINCT locality) FROM practice_lookup WHERE icb = 'Dorset'",
    )
    .await[..] else {
        unreachable!()
    };
    assert_eq!(localities, 13.0, "Dorset localities");
    let [share] = numbers(
        &ctx,
        "SELECT AVG(CASE WHEN icb = 'Dorset' THEN 1.0 ELSE 0.0 END) FROM person",
    )
    .await[..] else {
        unreachable!()
    };
    assert_within("Dorset share of persons", share, 0.27..=0.33);
}

/// DATA.md: Dorset (Council) median age 51.6, against 40.6 in England and Wales.
#[tokio::test]
async fn dorset_council_median_age_is_about_51() {
    let ctx = extract().await;
    let sql =
        format!("WITH {REG} SELECT median(CAST(age AS DOUBLE)) FROM reg WHERE place = 'Dorset'");
    let median = numbers(&ctx, &sql).await[0];
    assert_within("median age in Dorset Council", median, 47.0..=56.0);
}

/// DATA.md: ethnicity is missing for about 10-15% of people.
#[tokio::test]
async fn ethnicity_is_missing_for_8_to_16_percent_of_people() {
    let ctx = extract().await;
    let sql = "SELECT AVG(CASE WHEN ethnicity_group IS NULL THEN 1.0 ELSE 0.0 END) FROM person";
    let missing = numbers(&ctx, sql).await[0];
    assert_within("share with ethnicity missing", missing, 0.08..=0.16);
}

/// DATA.md: "a few unknown LSOAs" — people living just outside Wessex, with well-formed
/// LSOA codes that `lsoa_lookup` does not have.
#[tokio::test]
async fn a_few_people_live_in_lsoas_missing_from_the_lookup() {
    let ctx = extract().await;
    let sql = "SELECT AVG(CASE WHEN l.lsoa21 IS NULL THEN 1.0 ELSE 0.0 END),
                      COUNT(DISTINCT CASE WHEN l.lsoa21 IS NULL THEN p.lsoa21 END),
                      SUM(CASE WHEN p.lsoa21 LIKE 'E01______' THEN 0 ELSE 1 END)
               FROM person p LEFT JOIN lsoa_lookup l ON l.lsoa21 = p.lsoa21";
    let [unknown_share, unknown_codes, malformed] = numbers(&ctx, sql).await[..] else {
        unreachable!()
    };
    assert_within(
        "share of persons in unknown LSOAs",
        unknown_share,
        0.001..=0.02,
    );
    assert!(unknown_codes >= 2.0, "unknown LSOA codes: {unknown_codes}");
    assert_eq!(malformed, 0.0, "persons with a malformed lsoa21");
}

/// DATA.md: de-registered and dead people stay in the extract with their older records. A
/// record can't be coded after death or de-registration.
#[tokio::test]
async fn deregistered_and_dead_people_keep_condition_records_dated_before_their_end() {
    let ctx = extract().await;
    let sql = "WITH ended AS (
          SELECT person_id, date_of_death IS NOT NULL AS dead,
                 COALESCE(date_of_death, registration_end) AS end_date
          FROM person WHERE date_of_death IS NOT NULL OR registration_end IS NOT NULL),
        per_person AS (
          SELECT e.person_id, e.dead,
                 SUM(CASE WHEN c.event_date <= e.end_date THEN 1 ELSE 0 END) AS before_end,
                 SUM(CASE WHEN c.event_date > e.end_date THEN 1 ELSE 0 END)  AS after_end
          FROM ended e LEFT JOIN condition c ON c.person_id = e.person_id
          GROUP BY e.person_id, e.dead)
        SELECT CASE WHEN dead THEN 'dead' ELSE 'deregistered' END,
               COUNT(*) * 1.0 / (SELECT COUNT(*) FROM person),
               AVG(CASE WHEN before_end > 0 THEN 1.0 ELSE 0.0 END),
               SUM(after_end)
        FROM per_person GROUP BY dead";
    let by_end = rows(&ctx, sql).await;
    for (how, share_range) in [("deregistered", 0.02..=0.08), ("dead", 0.012..=0.04)] {
        let [share, with_records, after_end] = row(&by_end, how)[..] else {
            unreachable!()
        };
        assert_within(&format!("share of persons {how}"), share, share_range);
        assert!(
            with_records >= 0.2,
            "{how}: share with condition rows before their end {with_records:.3}"
        );
        assert_eq!(
            after_end, 0.0,
            "{how}: condition rows dated after their end"
        );
    }
}

/// Nothing happens to a person after they die or leave, or before they are born: every
/// dated event of every events table lies between birth year and the person's end (death,
/// de-registration or the index date).
#[tokio::test]
async fn no_event_is_dated_after_death_or_de_registration_or_before_birth() {
    let ctx = extract().await;
    for (table, dates) in [
        ("condition", vec!["event_date"]),
        ("encounter", vec!["start_date", "end_date"]),
        ("medication", vec!["issue_date"]),
        ("observation", vec!["obs_date"]),
    ] {
        for date in dates {
            let sql = format!(
                "SELECT COUNT(*), SUM(CASE WHEN t.{date} > COALESCE(p.date_of_death, p.registration_end, DATE '2025-03-31') THEN 1 ELSE 0 END),
                        SUM(CASE WHEN EXTRACT(YEAR FROM t.{date}) < p.year_of_birth THEN 1 ELSE 0 END)
                 FROM {table} t JOIN person p ON p.person_id = t.person_id
                 WHERE t.{date} IS NOT NULL"
            );
            let [rows, after_end, before_birth] = numbers(&ctx, &sql).await[..] else {
                unreachable!()
            };
            assert!(rows > 10_000.0, "{table}.{date}: only {rows} dated rows");
            assert_eq!(
                after_end, 0.0,
                "{table}.{date}: rows after the person's end"
            );
            assert_eq!(before_birth, 0.0, "{table}.{date}: rows before birth");
        }
    }
}

// --- Conditions -----------------------------------------------------------------------

/// QOF: type 2 diabetes is rare in young adults and common in old age.
#[tokio::test]
async fn type_2_diabetes_prevalence_rises_with_age() {
    let by_band = prevalence_by_age_band("DM_T2").await;
    assert_rising("type 2 diabetes prevalence", &by_band);
}

/// QOF: hypertension rises from a few per cent of young adults to about half of people in
/// their late seventies.
#[tokio::test]
async fn hypertension_prevalence_rises_with_age() {
    let by_band = prevalence_by_age_band("HYP").await;
    assert_rising("hypertension prevalence", &by_band);
}

/// QOF: atrial fibrillation is a disease of old age (about 1 in 8 at 75-84).
#[tokio::test]
async fn af_prevalence_rises_with_age() {
    let by_band = prevalence_by_age_band("AF").await;
    assert_rising("AF prevalence", &by_band);
}

/// England QOF 2023/24 register prevalence (DATA.md), each within ±40%: Wessex is older, so
/// its registers of age-related conditions run somewhat above England's.
#[tokio::test]
async fn register_prevalence_is_within_40_percent_of_england_qof() {
    // (register, England prevalence, minimum age of the QOF denominator)
    const QOF: [(&str, f64, u32); 15] = [
        ("HYP", 0.145, 0),
        ("DM", 0.077, 17),
        ("AF", 0.022, 0),
        ("DEP", 0.13, 18),
        ("AST", 0.065, 0),
        ("CKD", 0.044, 18),
        ("CAN", 0.035, 0),
        ("CHD", 0.03, 0),
        ("COPD", 0.019, 0),
        ("STIA", 0.019, 0),
        ("HF", 0.011, 0),
        ("SMI", 0.01, 0),
        ("DEM", 0.008, 0),
        ("EPIL", 0.008, 0),
        ("LD", 0.006, 0),
    ];
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE}
         SELECT CASE WHEN a.condition_group IN ('DM_T1', 'DM_T2') THEN 'DM'
                     ELSE a.condition_group END AS register,
                COUNT(DISTINCT r.person_id),
                COUNT(DISTINCT CASE WHEN r.age >= 17 THEN r.person_id END),
                COUNT(DISTINCT CASE WHEN r.age >= 18 THEN r.person_id END)
         FROM reg r JOIN active a ON a.person_id = r.person_id
         GROUP BY 1"
    );
    let cases = rows(&ctx, &sql).await;
    let population = numbers(
        &ctx,
        &format!(
            "WITH {REG} SELECT COUNT(*), SUM(CASE WHEN age >= 17 THEN 1 ELSE 0 END),
                               SUM(CASE WHEN age >= 18 THEN 1 ELSE 0 END) FROM reg"
        ),
    )
    .await;
    let mut report = String::new();
    let mut failed = false;
    for (register, england, min_age) in QOF {
        let column = match min_age {
            0 => 0,
            17 => 1,
            _ => 2,
        };
        let prevalence = row(&cases, register)[column] / population[column];
        let ratio = prevalence / england;
        let ok = (0.6..=1.4).contains(&ratio);
        failed |= !ok;
        report += &format!(
            "\n  {register:5} {:6.2}% vs England {:5.2}% (x{ratio:.2}){}",
            100.0 * prevalence,
            100.0 * england,
            if ok { "" } else { "  <-- outside x0.6-1.4" }
        );
    }
    assert!(!failed, "register prevalence:{report}");
}

/// DATA.md: sparse cells (rare conditions in small PCNs) so that suppression is exercised.
#[tokio::test]
async fn some_pcn_by_condition_cells_hold_1_to_7_people() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         cells AS (SELECT r.pcn_code, a.condition_group, COUNT(DISTINCT r.person_id) AS n
                   FROM reg r JOIN active a ON a.person_id = r.person_id
                   GROUP BY r.pcn_code, a.condition_group)
         SELECT COUNT(*), SUM(CASE WHEN n BETWEEN 1 AND 7 THEN 1 ELSE 0 END) FROM cells"
    );
    let [cells, sparse] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert!(
        sparse >= 20.0 && sparse <= cells / 3.0,
        "{sparse} of {cells} PCN x condition cells hold 1-7 people"
    );
}

/// DATA.md: 95+ women per PCN are a sparse cell.
#[tokio::test]
async fn women_aged_95_plus_are_sparse_in_pcns() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, cells AS (SELECT pcn_code, COUNT(*) AS n FROM reg
                               WHERE age >= 95 AND sex = 'F' GROUP BY pcn_code)
         SELECT SUM(CASE WHEN n BETWEEN 1 AND 7 THEN 1 ELSE 0 END) FROM cells"
    );
    let sparse = numbers(&ctx, &sql).await[0];
    assert!(sparse >= 10.0, "PCNs with 1-7 women aged 95+: {sparse}");
}

/// DATA.md clusters: COPD + smoking. Among people 40+, COPD is several times as common in
/// current smokers as in never-smokers (latest recorded status).
#[tokio::test]
async fn copd_is_concentrated_in_smokers() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         smk AS (SELECT person_id, value_code,
                        ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY obs_date DESC) AS rn
                 FROM observation WHERE obs_type = 'SMOKING'),
         copd AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'COPD')
         SELECT s.value_code, AVG(CASE WHEN c.person_id IS NOT NULL THEN 1.0 ELSE 0.0 END)
         FROM reg r JOIN smk s ON s.person_id = r.person_id AND s.rn = 1
         LEFT JOIN copd c ON c.person_id = r.person_id
         WHERE r.age >= 40 GROUP BY s.value_code"
    );
    let by_status = rows(&ctx, &sql).await;
    let current = row(&by_status, "CURRENT")[0];
    let never = row(&by_status, "NEVER")[0];
    assert!(
        current > 3.0 * never,
        "COPD prevalence 40+: current smokers {current:.4}, never {never:.4}"
    );
}

/// DATA.md clusters: AF + heart failure. Among people 65+, HF is several times as common
/// with AF as without.
#[tokio::test]
async fn heart_failure_clusters_with_af() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         af AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'AF'),
         hf AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'HF')
         SELECT CASE WHEN af.person_id IS NULL THEN 'no AF' ELSE 'AF' END,
                AVG(CASE WHEN hf.person_id IS NOT NULL THEN 1.0 ELSE 0.0 END)
         FROM reg r LEFT JOIN af ON af.person_id = r.person_id
         LEFT JOIN hf ON hf.person_id = r.person_id
         WHERE r.age >= 65 GROUP BY 1"
    );
    let by_af = rows(&ctx, &sql).await;
    let (with, without) = (row(&by_af, "AF")[0], row(&by_af, "no AF")[0]);
    assert!(
        with > 3.0 * without,
        "HF prevalence 65+: with AF {with:.4}, without {without:.4}"
    );
}

/// DATA.md clusters: hypertension + diabetes + CKD. Among people 65+, CKD is more common
/// with both hypertension and type 2 diabetes than with neither.
#[tokio::test]
async fn ckd_clusters_with_hypertension_and_diabetes() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         per_person AS (
           SELECT person_id,
                  MAX(CASE WHEN condition_group = 'HYP' THEN 1 ELSE 0 END) AS hyp,
                  MAX(CASE WHEN condition_group = 'DM_T2' THEN 1 ELSE 0 END) AS dm,
                  MAX(CASE WHEN condition_group = 'CKD' THEN 1 ELSE 0 END) AS ckd
           FROM active GROUP BY person_id)
         SELECT CAST(COALESCE(p.hyp, 0) + COALESCE(p.dm, 0) AS VARCHAR),
                AVG(CAST(COALESCE(p.ckd, 0) AS DOUBLE)), COUNT(*)
         FROM reg r LEFT JOIN per_person p ON p.person_id = r.person_id
         WHERE r.age >= 65 GROUP BY 1"
    );
    let by_count = rows(&ctx, &sql).await;
    let (both, neither) = (row(&by_count, "2")[0], row(&by_count, "0")[0]);
    assert!(
        both > 2.0 * neither,
        "CKD prevalence 65+: with HYP and T2DM {both:.4}, with neither {neither:.4}"
    );
}

/// DATA.md clusters: dementia + frailty + care home. Most care-home residents aged 65+ are
/// frail and many have dementia (England: roughly 70% of residents live with dementia, not
/// all diagnosed); few of those living at home do.
#[tokio::test]
async fn dementia_and_frailty_cluster_in_care_homes() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         dem AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'DEM')
         SELECT CAST(r.care_home_resident AS VARCHAR),
                AVG(CASE WHEN d.person_id IS NOT NULL THEN 1.0 ELSE 0.0 END),
                AVG(CASE WHEN r.efi_category IN ('moderate', 'severe') THEN 1.0 ELSE 0.0 END)
         FROM reg r LEFT JOIN dem d ON d.person_id = r.person_id
         WHERE r.age >= 65 GROUP BY 1"
    );
    let by_home = rows(&ctx, &sql).await;
    let (home, away) = (row(&by_home, "true"), row(&by_home, "false"));
    assert!(
        home[0] > 0.25 && home[0] > 5.0 * away[0],
        "dementia 65+: care home {:.4}, at home {:.4}",
        home[0],
        away[0]
    );
    assert!(
        home[1] > away[1] + 0.2,
        "moderate/severe frailty 65+: care home {:.4}, at home {:.4}",
        home[1],
        away[1]
    );
}

// --- Activity -------------------------------------------------------------------------

/// DATA.md: emergency admissions about 100-110 per 1,000 a year, rising steeply with age (≈
/// 250 per 1,000 at 75-84, 450+ at 85+).
#[tokio::test]
async fn emergency_admissions_per_1000_rise_with_age() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}
         SELECT r.age_band, COUNT(DISTINCT r.person_id), COUNT(e.encounter_id)
         FROM reg r LEFT JOIN encounter e
           ON e.person_id = r.person_id AND e.setting = 'APC'
          AND e.admission_method = 'EMERGENCY' AND {}
         GROUP BY r.age_band",
        last_12_months("e.start_date")
    );
    let by_band = rows(&ctx, &sql).await;
    let rate = |band: &str| {
        let v = row(&by_band, band);
        1000.0 * v[1] / v[0]
    };
    let rising: Vec<_> = ["18-39", "40-64", "65-74", "75-84", "85+"]
        .into_iter()
        .map(|band| (band, rate(band)))
        .collect();
    assert_rising("emergency admissions per 1,000", &rising);
    assert_within(
        "emergency admissions per 1,000 at 75-84",
        rate("75-84"),
        175.0..=350.0,
    );
    assert_within(
        "emergency admissions per 1,000 at 85+",
        rate("85+"),
        350.0..=700.0,
    );
    let (population, admissions) = by_band
        .iter()
        .fold((0.0, 0.0), |(p, a), (_, v)| (p + v[0], a + v[1]));
    let overall = 1000.0 * admissions / population;
    assert_within("emergency admissions per 1,000", overall, 85.0..=130.0);
}

/// DATA.md: mean length of stay about 5 days, right-skewed with a tail past 21 days (NHS
/// England: a few per cent of emergency spells are "super-stranded", 21+ days). Spells
/// ending in 2024/25.
#[tokio::test]
async fn emergency_length_of_stay_averages_about_5_days_with_a_tail_past_21() {
    let ctx = extract().await;
    let sql = format!(
        "SELECT AVG(CAST(los_days AS DOUBLE)), median(CAST(los_days AS DOUBLE)),
                AVG(CASE WHEN los_days > 21 THEN 1.0 ELSE 0.0 END)
         FROM encounter
         WHERE setting = 'APC' AND admission_method = 'EMERGENCY' AND los_days IS NOT NULL
           AND {}",
        last_12_months("end_date")
    );
    let [mean, median, over_21] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert_within("mean emergency length of stay", mean, 4.0..=6.0);
    assert!(median < mean, "right skew: median {median}, mean {mean:.2}");
    assert_within(
        "share of emergency spells over 21 days",
        over_21,
        0.01..=0.08,
    );
}

/// DATA.md: type 1 A&E about 190-210 attendances per 1,000 a year.
#[tokio::test]
async fn type_1_ae_attendances_are_about_200_per_1000() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}
         SELECT 1000.0 * COUNT(e.encounter_id) / COUNT(DISTINCT r.person_id)
         FROM reg r LEFT JOIN encounter e
           ON e.person_id = r.person_id AND e.setting = 'AE' AND {}",
        last_12_months("e.start_date")
    );
    let rate = numbers(&ctx, &sql).await[0];
    assert_within("A&E attendances per 1,000", rate, 150.0..=250.0);
}

/// DATA.md: heavy-tailed use, a few high-intensity users with dozens of A&E visits (NHS
/// High Intensity Use programme: 5+ attendances a year).
#[tokio::test]
async fn a_few_high_intensity_users_have_dozens_of_ae_attendances() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG},
         ae AS (SELECT person_id, COUNT(*) AS n FROM encounter
                WHERE setting = 'AE' AND {} GROUP BY person_id)
         SELECT AVG(CASE WHEN a.n >= 5 THEN 1.0 ELSE 0.0 END),
                SUM(CASE WHEN a.n >= 5 THEN a.n ELSE 0 END) * 1.0 / SUM(COALESCE(a.n, 0)),
                SUM(CASE WHEN a.n >= 20 THEN 1 ELSE 0 END),
                MAX(COALESCE(a.n, 0))
         FROM reg r LEFT JOIN ae a ON a.person_id = r.person_id",
        last_12_months("start_date")
    );
    let [hiu_share, hiu_attendances, over_20, most] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert_within(
        "share of people with 5+ attendances",
        hiu_share,
        0.0005..=0.01,
    );
    assert_within("their share of attendances", hiu_attendances, 0.05..=0.25);
    assert!(
        over_20 >= 5.0 && most >= 30.0,
        "people with 20+ attendances: {over_20}; most attendances: {most}"
    );
}

/// DATA.md: winter peaks. In England winter pressure shows in emergency admissions (about
/// a fifth more a day in December-February than in June-August), while type 1 A&E
/// attendances are roughly flat through the year. Both years of the activity window (181
/// winter and 184 summer days).
#[tokio::test]
async fn winter_peaks_in_emergency_admissions_not_in_ae_attendances() {
    let ctx = extract().await;
    let per_day = |condition: &str| {
        format!(
            "SELECT SUM(CASE WHEN EXTRACT(MONTH FROM start_date) IN (12, 1, 2) THEN 1 ELSE 0 END) / 181.0,
                    SUM(CASE WHEN EXTRACT(MONTH FROM start_date) IN (6, 7, 8) THEN 1 ELSE 0 END) / 184.0
             FROM encounter WHERE {condition}
               AND start_date BETWEEN DATE '2023-04-01' AND DATE '2025-03-31'"
        )
    };
    let [winter, summer] = numbers(
        &ctx,
        &per_day("setting = 'APC' AND admission_method = 'EMERGENCY'"),
    )
    .await[..] else {
        unreachable!()
    };
    assert!(
        winter > 1.1 * summer && winter < 1.5 * summer,
        "emergency admissions a day: winter {winter:.1}, summer {summer:.1}"
    );
    let [winter, summer] = numbers(&ctx, &per_day("setting = 'AE'")).await[..] else {
        unreachable!()
    };
    assert!(
        winter > 0.85 * summer && winter < 1.15 * summer,
        "A&E attendances a day: winter {winter:.1}, summer {summer:.1}"
    );
}

/// Outpatient DNA rates are about 7-8% in England and higher in deprived areas (DATA.md,
/// shared/QUERIES.md Q9). 2024/25.
#[tokio::test]
async fn outpatient_dna_rate_is_higher_in_the_most_deprived_decile() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}
         SELECT r.imd_decile, COUNT(*),
                SUM(CASE WHEN e.attendance_status = 'DNA' THEN 1 ELSE 0 END)
         FROM reg r JOIN encounter e ON e.person_id = r.person_id
         WHERE e.setting = 'OP' AND {}
         GROUP BY r.imd_decile",
        last_12_months("e.start_date")
    );
    let by_decile = rows(&ctx, &sql).await;
    let dna = |decile: &str| {
        let v = row(&by_decile, decile);
        v[1] / v[0]
    };
    let (most, least) = (dna("1"), dna("10"));
    assert!(
        most > 1.5 * least,
        "OP DNA rate: IMD decile 1 {most:.4}, decile 10 {least:.4}"
    );
    let (appointments, dnas) = by_decile
        .iter()
        .fold((0.0, 0.0), |(n, d), (_, v)| (n + v[0], d + v[1]));
    assert_within("OP DNA rate", dnas / appointments, 0.05..=0.11);
}

// --- Treatments and measurements ------------------------------------------------------

/// DATA.md: HbA1c higher in diabetes (diagnostic ≥ 48 mmol/mol; normal below 42). Readings
/// in the window.
#[tokio::test]
async fn hba1c_is_higher_in_people_with_diabetes() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {ACTIVE},
         dm AS (SELECT DISTINCT person_id FROM active WHERE condition_group IN ('DM_T1', 'DM_T2'))
         SELECT AVG(CASE WHEN dm.person_id IS NOT NULL THEN o.value_num END),
                AVG(CASE WHEN dm.person_id IS NULL THEN o.value_num END)
         FROM observation o LEFT JOIN dm ON dm.person_id = o.person_id
         WHERE o.obs_type = 'HBA1C'"
    );
    let [diabetes, no_diabetes] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert!(
        diabetes > 50.0 && no_diabetes < 42.0,
        "mean HbA1c: with diabetes {diabetes:.1}, without {no_diabetes:.1}"
    );
}

/// DATA.md: BP higher in hypertension. Among people 40+, mean systolic readings of people
/// on the register are well above others' (controlled-on-treatment plus uncontrolled).
#[tokio::test]
async fn systolic_bp_is_higher_in_people_with_hypertension() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {ACTIVE},
         hyp AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'HYP')
         SELECT AVG(CASE WHEN h.person_id IS NOT NULL THEN o.value_num END),
                AVG(CASE WHEN h.person_id IS NULL THEN o.value_num END)
         FROM observation o JOIN person p ON p.person_id = o.person_id
         LEFT JOIN hyp h ON h.person_id = o.person_id
         WHERE o.obs_type = 'SBP' AND 2025 - p.year_of_birth >= 40"
    );
    let [hypertensive, other] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert_within(
        "SBP excess in hypertension",
        hypertensive - other,
        10.0..=35.0,
    );
}

/// DATA.md: DOAC/warfarin for AF. National audits (QOF, GRASP-AF) find roughly 80-90% of
/// eligible AF patients anticoagulated; DOACs are rare without AF. Adults, issues in the
/// last 12 months.
#[tokio::test]
async fn af_patients_are_mostly_anticoagulated_and_others_rarely_get_doacs() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG}, {ACTIVE},
         af AS (SELECT DISTINCT person_id FROM active WHERE condition_group = 'AF'),
         any_af AS (SELECT DISTINCT person_id FROM condition WHERE condition_group = 'AF'),
         anticoag AS (SELECT DISTINCT person_id FROM medication
                      WHERE drug_class IN ('ANTICOAG_DOAC', 'WARFARIN') AND {window}),
         doac AS (SELECT DISTINCT person_id FROM medication
                  WHERE drug_class = 'ANTICOAG_DOAC' AND {window})
         SELECT
           COUNT(DISTINCT CASE WHEN ac.person_id IS NOT NULL THEN af.person_id END) * 1.0
             / COUNT(DISTINCT af.person_id),
           COUNT(DISTINCT CASE WHEN any_af.person_id IS NULL AND d.person_id IS NOT NULL
                               THEN r.person_id END) * 1.0
             / COUNT(DISTINCT CASE WHEN any_af.person_id IS NULL THEN r.person_id END)
         FROM reg r
         LEFT JOIN af ON af.person_id = r.person_id
         LEFT JOIN any_af ON any_af.person_id = r.person_id
         LEFT JOIN anticoag ac ON ac.person_id = r.person_id
         LEFT JOIN doac d ON d.person_id = r.person_id
         WHERE r.age >= 18",
        window = last_12_months("issue_date")
    );
    let [af_anticoagulated, others_on_doac] = numbers(&ctx, &sql).await[..] else {
        unreachable!()
    };
    assert_within("share of AF anticoagulated", af_anticoagulated, 0.70..=0.95);
    assert!(
        others_on_doac < 0.005,
        "share of adults with no AF code issued a DOAC: {others_on_doac:.5}"
    );
}

/// DATA.md: statins with age (primary prevention plus CVD and diabetes). Issued in the last
/// 12 months.
#[tokio::test]
async fn statin_use_rises_with_age() {
    let ctx = extract().await;
    let sql = format!(
        "WITH {REG},
         statin AS (SELECT DISTINCT person_id FROM medication
                    WHERE drug_class = 'STATIN' AND {})
         SELECT r.age_band, AVG(CASE WHEN s.person_id IS NOT NULL THEN 1.0 ELSE 0.0 END)
         FROM reg r LEFT JOIN statin s ON s.person_id = r.person_id
         GROUP BY r.age_band",
        last_12_months("issue_date")
    );
    let by_band = rows(&ctx, &sql).await;
    let rising: Vec<_> = ADULT_BANDS
        .iter()
        .map(|&band| (band, row(&by_band, band)[0]))
        .collect();
    assert_rising("statin use", &rising);
    assert_within("statin use at 75-84", rising[3].1, 0.35..=0.80);
}
