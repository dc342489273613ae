//! The engine against plain DataFusion on the sample extract: released values are close to
//! the exact bounded answers, and one person with 10,000 rows moves the bounded
//! aggregates by no more than their stated sensitivity.

use std::collections::HashMap;
use std::path::Path;

use carelens_engine::{Engine, PreparedQuery, Release};
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use serde_json::Value;

use crate::common::{repo, sample_data, sample_with_catalog_edit};

async fn sample_engine() -> Engine {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    Engine::open(&catalog).await.unwrap()
}

/// `sql` prepared and released on `engine` (no ledger).
async fn released(engine: &Engine, sql: &str) -> Release {
    engine
        .prepare(sql)
        .await
        .unwrap()
        .execute(engine)
        .await
        .unwrap()
}

/// A plain DataFusion session over the extract in `dir`.
async fn plain(dir: &Path) -> SessionContext {
    crate::common::session(dir).await
}

/// Rows of a plain query as `key -> values`, the key being the first column as text.
async fn exact(ctx: &SessionContext, sql: &str) -> HashMap<String, Vec<f64>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = HashMap::new();
    for batch in &batches {
        for r in 0..batch.num_rows() {
            let key = ScalarValue::try_from_array(batch.column(0), r)
                .unwrap()
                .to_string();
            let values = (1..batch.num_columns())
                .map(|c| {
                    let v = ScalarValue::try_from_array(batch.column(c), r).unwrap();
                    match v
                        .cast_to(&datafusion::arrow::datatypes::DataType::Float64)
                        .unwrap()
                    {
                        ScalarValue::Float64(Some(x)) => x,
                        _ => 0.0,
                    }
                })
                .collect();
            out.insert(key, values);
        }
    }
    out
}

fn cell(release: &Release, row: usize, column: &str) -> Option<f64> {
    release.rows[row].get(column).and_then(Value::as_f64)
}

/// The largest noise scale of a prepared query's mechanisms, in output units for counts.
fn largest_scale(prepared: &PreparedQuery) -> f64 {
    prepared
        .charge()
        .items()
        .iter()
        .map(|i| i.scale)
        .fold(0.0, f64::max)
}

/// Released minus exact values are noise (discrete Laplace with `scale`) plus at most
/// `rounding`, checked so that a correct engine fails with probability below about 1e-6:
/// each error within `scale · ln(2n / 1e-6) + 1` (a union bound over the `n` cells), and
/// the mean absolute error within `mean_scales · scale` (for Laplace noise it is about one
/// scale; a bias or a wrong scale shows here long before any single cell is extreme).
fn assert_within_noise(errors: &[(String, f64)], scale: f64, rounding: f64, mean_scales: f64) {
    let n = errors.len() as f64;
    let each = scale * (2.0 * n / 1e-6).ln() + 1.0 + rounding;
    for (what, e) in errors {
        assert!(
            e.abs() <= each,
            "{what}: error {e}, bound {each} (scale {scale})"
        );
    }
    let mean = errors.iter().map(|(_, e)| e.abs()).sum::<f64>() / n;
    assert!(
        mean <= mean_scales * scale + rounding,
        "mean absolute error {mean} over {n} cells, bound {} (scale {scale})",
        mean_scales * scale + rounding
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_person_counts_match_plain_datafusion_within_the_noise() {
    let engine = sample_engine().await;
    let ctx = plain(&sample_data()).await;
    let sql = "SELECT locality, COUNT(DISTINCT person_id) AS people, \
               COUNT(DISTINCT CASE WHEN care_home_resident THEN person_id END) AS care_home, \
               COUNT(*) AS rows_ \
               FROM person GROUP BY locality";
    let prepared = engine.prepare(sql).await.unwrap();
    let release = prepared.execute(&engine).await.unwrap();
    let truth = exact(&ctx, sql).await;
    let mut errors = Vec::new();
    for (r, row) in release.rows.iter().enumerate() {
        let locality = row["locality"].as_str().unwrap();
        let Some(t) = truth.get(locality) else {
            continue;
        };
        for (c, column) in ["people", "care_home", "rows_"].iter().enumerate() {
            if t[c] < 50.0 {
                continue;
            }
            let released = cell(&release, r, column)
                .unwrap_or_else(|| panic!("{locality} {column} ({}) suppressed", t[c]));
            errors.push((
                format!("{locality} {column} exact {}", t[c]),
                released - t[c],
            ));
        }
    }
    assert!(errors.len() >= 20, "only {} cells compared", errors.len());
    // Rounding to the nearest 5 moves a count by at most 2.5.
    assert_within_noise(&errors, largest_scale(&prepared), 2.5, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_bounded_sums_match_an_independent_bounded_query() {
    let engine = sample_engine().await;
    let ctx = plain(&sample_data()).await;
    let sql = "SELECT p.place, SUM(LEAST(GREATEST(m.quantity, 0), 200)) AS items \
               FROM medication m JOIN person p ON p.person_id = m.person_id GROUP BY p.place";
    let prepared = engine.prepare(sql).await.unwrap();
    let params = prepared.params().unwrap();
    // The same bounding written by hand: values clamped, each person's total capped at
    // L∞ · 200 (quantity is an integer: fixed-point unit 1).
    let bounded = format!(
        "WITH per AS (SELECT p.place, m.person_id, SUM(LEAST(GREATEST(m.quantity, 0), 200)) AS s \
         FROM medication m JOIN person p ON p.person_id = m.person_id GROUP BY p.place, m.person_id) \
         SELECT place, SUM(LEAST(s, {})) FROM per GROUP BY place",
        200 * params.max_rows
    );
    let truth = exact(&ctx, &bounded).await;
    let release = prepared.execute(&engine).await.unwrap();
    let mut errors = Vec::new();
    for (r, row) in release.rows.iter().enumerate() {
        let place = row["place"].as_str().unwrap();
        let t = truth[place][0];
        let released = cell(&release, r, "items").unwrap();
        errors.push((format!("{place} exact bounded {t}"), released - t));
    }
    assert!(errors.len() >= 5, "only {} places", errors.len());
    // The mean of 6 |Laplace| errors over 4 scales happens 3e-6 of the time; over 5,
    // 2e-8.
    assert_within_noise(&errors, largest_scale(&prepared), 0.0, 5.0);
}

/// Writes what `sql` returns on `ctx` to the Parquet file `path`.
async fn write_parquet(ctx: &SessionContext, sql: &str, path: &Path) {
    ctx.sql(sql)
        .await
        .unwrap()
        .write_parquet(
            path.to_str().unwrap(),
            DataFrameWriteOptions::new().with_single_file_output(true),
            None,
        )
        .await
        .unwrap();
}

/// Copies the sample extract's files (the catalog and its Parquet files, not the ledger
/// folder) to `dir`, but for those named in `except`.
fn copy_sample(dir: &Path, except: &[&str]) {
    for entry in std::fs::read_dir(sample_data()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_file() && !except.iter().any(|e| name == *e) {
            std::fs::copy(&path, dir.join(name)).unwrap();
        }
    }
}

/// Copies the sample extract to `dir` with `practice_lookup` a folder table holding one
/// file, the sample's lookup, named `file`; returns the folder and the catalog's path.
fn sample_with_lookup_folder(dir: &Path, file: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    copy_sample(dir, &["practice_lookup.parquet"]);
    let folder = dir.join("practice_lookup");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        sample_data().join("practice_lookup.parquet"),
        folder.join(file),
    )
    .unwrap();
    let toml = dir.join("carelens.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text = text.replace(
        "path = \"practice_lookup.parquet\"",
        "path = \"practice_lookup\"",
    );
    std::fs::write(&toml, text).unwrap();
    (folder, toml)
}

/// Copies the sample extract to `dir`, adding one person with `rows` encounters spread over
/// settings and providers.
async fn extract_with_heavy_user(dir: &Path, rows: u64) -> i64 {
    let source = sample_data();
    copy_sample(dir, &[]);
    let ctx = plain(&source).await;
    let new_id: i64 = {
        let b = ctx
            .sql("SELECT MAX(person_id) + 1 FROM person")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        match ScalarValue::try_from_array(b[0].column(0), 0).unwrap() {
            ScalarValue::Int64(Some(x)) => x,
            other => panic!("{other:?}"),
        }
    };
    let person_cols = ctx.table("person").await.unwrap().schema().clone();
    let select: Vec<String> = person_cols
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "person_id" {
                format!("CAST({new_id} AS BIGINT) AS person_id")
            } else {
                format!("\"{}\"", f.name())
            }
        })
        .collect();
    let person_sql = format!(
        "SELECT * FROM person UNION ALL (SELECT {} FROM person WHERE imd_decile = 1 LIMIT 1)",
        select.join(", ")
    );
    let encounter_cols = ctx.table("encounter").await.unwrap().schema().clone();
    let select: Vec<String> = encounter_cols
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "person_id" => format!("CAST({new_id} AS BIGINT) AS person_id"),
            "encounter_id" => "CAST(9000000000 + i AS BIGINT) AS encounter_id".into(),
            "setting" => "CASE i % 4 WHEN 0 THEN 'AE' WHEN 1 THEN 'APC' WHEN 2 THEN 'OP' ELSE 'GP' END AS setting".into(),
            "start_date" => "CAST(DATE '2024-06-01' + CAST(i % 300 AS INT) AS DATE) AS start_date".into(),
            "end_date" => "CAST(DATE '2024-06-05' + CAST(i % 300 AS INT) AS DATE) AS end_date".into(),
            "admission_method" => "CAST('EMERGENCY' AS VARCHAR) AS admission_method".into(),
            "attendance_status" => "CAST('DNA' AS VARCHAR) AS attendance_status".into(),
            "provider_code" => "(SELECT MIN(provider_code) FROM encounter) AS provider_code".into(),
            "los_days" => "CAST(500 AS INT) AS los_days".into(),
            "cost_gbp" => "CAST(99999.0 AS DOUBLE) AS cost_gbp".into(),
            other => format!("CAST(NULL AS {}) AS \"{other}\"", sql_type(f.data_type())),
        })
        .collect();
    let encounter_sql = format!(
        "SELECT * FROM encounter UNION ALL (SELECT {} FROM (SELECT value AS i FROM generate_series(1, {rows})))",
        select.join(", ")
    );
    for (table, sql) in [("person", person_sql), ("encounter", encounter_sql)] {
        let target = dir.join(format!("{table}.parquet"));
        std::fs::remove_file(&target).unwrap();
        write_parquet(&ctx, &sql, &target).await;
    }
    new_id
}

fn sql_type(t: &datafusion::arrow::datatypes::DataType) -> &'static str {
    use datafusion::arrow::datatypes::DataType::*;
    match t {
        Int32 => "INT",
        Int64 => "BIGINT",
        Float64 => "DOUBLE",
        Boolean => "BOOLEAN",
        Date32 => "DATE",
        _ => "VARCHAR",
    }
}

/// The exact output of a prepared query's bounded plan, keyed by its group keys.
async fn bounded_output(prepared: &PreparedQuery) -> (HashMap<String, Vec<i64>>, usize) {
    let plan = prepared.rewritten_plan().unwrap().clone();
    let n_keys = plan
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name().starts_with("__k"))
        .count();
    let batches: Vec<RecordBatch> = SessionContext::new()
        .execute_logical_plan(plan)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut out = HashMap::new();
    for batch in &batches {
        for r in 0..batch.num_rows() {
            let key: Vec<String> = (0..n_keys)
                .map(|k| {
                    ScalarValue::try_from_array(batch.column(k), r)
                        .unwrap()
                        .to_string()
                })
                .collect();
            let values = (n_keys..batch.num_columns())
                .map(|c| {
                    let a = batch.column(c);
                    if a.is_null(r) {
                        0
                    } else {
                        match ScalarValue::try_from_array(a, r).unwrap() {
                            ScalarValue::Int64(Some(x)) => x,
                            other => panic!("{other:?}"),
                        }
                    }
                })
                .collect();
            out.insert(key.join("|"), values);
        }
    }
    (out, n_keys)
}

/// Engines on the sample and on the sample plus one person with 10,000 encounters (whose
/// extract lives as long as the folder).
async fn engines_without_and_with_a_heavy_user() -> (tempfile::TempDir, Engine, Engine) {
    let dir = tempfile::tempdir().unwrap();
    extract_with_heavy_user(dir.path(), 10_000).await;
    let catalog = carelens_catalog::load(&dir.path().join("carelens.toml")).unwrap();
    let with = Engine::open(&catalog).await.unwrap();
    (dir, sample_engine().await, with)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_with_10000_rows_moves_bounded_aggregates_by_at_most_their_sensitivity() {
    let (_dir, without, with) = engines_without_and_with_a_heavy_user().await;
    let secret = "00112233445566778899aabbccddeeff";
    let queries = [
        // Key not constant per person: L0 sampling.
        "SELECT setting, COUNT(*) AS n, COUNT(DISTINCT person_id) AS people, \
         SUM(los_days) AS bed_days, AVG(cost_gbp) AS mean_cost FROM encounter GROUP BY setting",
        // Not constant per person, one group each: the arg-min plan.
        "-- carelens: max_groups=1\nSELECT setting, COUNT(*) AS n, SUM(los_days) AS bed_days \
         FROM encounter GROUP BY setting",
        // Reference-table keys through the lookup's unique key: person-constant.
        "SELECT pl.place, COUNT(e.encounter_id) AS contacts, SUM(e.los_days) AS bed_days \
         FROM person p JOIN practice_lookup pl ON pl.practice_code = p.practice_code \
         LEFT JOIN encounter e ON e.person_id = p.person_id GROUP BY pl.place",
        // Person-constant keys: L0 = 1.
        "SELECT p.sex, p.imd_decile, COUNT(e.encounter_id) AS contacts, \
         COUNT(DISTINCT CASE WHEN e.attendance_status = 'DNA' THEN p.person_id END) AS dna_people \
         FROM person p LEFT JOIN encounter e ON e.person_id = p.person_id GROUP BY p.sex, p.imd_decile",
        // Key selection key.
        "SELECT provider_code, COUNT(*) AS n, SUM(cost_gbp) AS cost FROM encounter GROUP BY provider_code",
    ];
    for sql in queries {
        let a = without.prepare_with_secret(sql, secret).await.unwrap();
        let b = with.prepare_with_secret(sql, secret).await.unwrap();
        let (before, _) = bounded_output(&a).await;
        let (after, _) = bounded_output(&b).await;
        let items = b.charge().items().to_vec();
        // Columns: one per part, then the person count; items: person-count mechanism first.
        let n_values = after.values().next().unwrap().len();
        let mut per_group = Vec::new();
        for part in 0..n_values - 1 {
            per_group.push(items[part + 1].per_group_sensitivity as i64);
        }
        per_group.push(1);
        let max_groups = i64::from(items[0].max_groups);
        let mut totals = vec![0i64; n_values];
        let mut moved = false;
        let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let x = before.get(key).cloned().unwrap_or(vec![0; n_values]);
            let y = after.get(key).cloned().unwrap_or(vec![0; n_values]);
            for c in 0..n_values {
                let d = (y[c] - x[c]).abs();
                assert!(
                    d <= per_group[c],
                    "{sql}\n group {key} column {c}: moved {d} > {}",
                    per_group[c]
                );
                totals[c] += d;
                moved |= d > 0;
            }
        }
        for c in 0..n_values {
            assert!(
                totals[c] <= max_groups * per_group[c],
                "{sql}\n column {c}: total {} > L0 {max_groups} x {}",
                totals[c],
                per_group[c]
            );
        }
        assert!(moved, "{sql}: the added person changed nothing");
    }
}

/// Regression (privacy review): columns from the NULL-extended side of a LEFT JOIN with a
/// condition beyond the person are not constant per person, so keys built from them are
/// sampled to L0 groups per person.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_nullable_side_of_a_conditional_left_join_are_sampled() {
    let engine = sample_engine().await;
    let sql = "SELECT CASE WHEN g.sex IS NOT NULL THEN 'GP' ELSE 'other' END AS k, \
               COUNT(DISTINCT e.person_id) AS persons FROM encounter e \
               LEFT JOIN person g ON e.person_id = g.person_id AND e.setting = 'GP' GROUP BY 1";
    let explain = engine.prepare(sql).await.unwrap().explain();
    let protection = explain.private.unwrap();
    assert!(
        protection.groups_sampled && protection.max_groups == 4,
        "{protection:?}"
    );
    // With the person alone in the join condition the person's columns stay constant.
    let sql = "SELECT CASE WHEN g.sex IS NOT NULL THEN 'known' ELSE 'other' END AS k, \
               COUNT(DISTINCT e.person_id) AS persons FROM encounter e \
               LEFT JOIN person g ON e.person_id = g.person_id GROUP BY 1";
    let explain = engine.prepare(sql).await.unwrap().explain();
    let protection = explain.private.unwrap();
    assert!(
        !protection.groups_sampled && protection.max_groups == 1,
        "{protection:?}"
    );
}

/// Regression (second privacy review): a value computed from a suppressed cell is
/// suppressed too, even when the expression turns NULL into a number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_derived_from_suppressed_cells_are_suppressed() {
    let engine = sample_engine().await;
    // People born before 1916: none or almost none, so suppressed with overwhelming
    // probability in every group.
    let sql = "SELECT sex, \
               COALESCE(COUNT(DISTINCT CASE WHEN year_of_birth < 1916 THEN person_id END), 0) AS n0, \
               COUNT(DISTINCT CASE WHEN year_of_birth < 1916 THEN person_id END) AS n \
               FROM person GROUP BY sex";
    let release = released(&engine, sql).await;
    let mut suppressed = 0;
    for (row, cells) in release.rows.iter().zip(&release.cells) {
        if row["n"].is_null() {
            suppressed += 1;
            assert!(row["n0"].is_null(), "{row:?}");
            assert_eq!(cells["n0"].status, carelens_privacy::CellStatus::Suppressed);
        }
    }
    assert!(
        suppressed >= 1,
        "sex I or U should be suppressed in the sample"
    );
}

/// Rates and percentages computed from released counts carry a 95% interval around the
/// released value, also under ORDER BY and ROUND; a mean stays within its bounds, and so
/// does its interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_rates_carry_intervals() {
    let engine = sample_engine().await;
    let sql = "SELECT place, COUNT(DISTINCT person_id) AS population, \
               COUNT(DISTINCT CASE WHEN care_home_resident THEN person_id END) AS in_care_home, \
               1000.0 * COUNT(DISTINCT CASE WHEN care_home_resident THEN person_id END) \
                 / COUNT(DISTINCT person_id) AS per_1000, \
               ROUND(100.0 * COUNT(DISTINCT CASE WHEN care_home_resident THEN person_id END) \
                 / COUNT(DISTINCT person_id), 1) AS pct, \
               AVG(year_of_birth) AS mean_birth_year \
               FROM person GROUP BY place ORDER BY place";
    let release = released(&engine, sql).await;
    let mut with_interval = 0;
    for (row, cells) in release.rows.iter().zip(&release.cells) {
        for column in ["per_1000", "pct"] {
            let Some(value) = row[column].as_f64() else {
                continue;
            };
            let [lo, hi] = cells[column]
                .interval
                .unwrap_or_else(|| panic!("{column} has no interval: {row:?} {cells:?}"));
            assert!(
                lo <= value && value <= hi,
                "{column}: {value} not in [{lo}, {hi}]"
            );
            with_interval += 1;
        }
        // year_of_birth is declared in [1915, 2025].
        if let Some(mean) = row["mean_birth_year"].as_f64() {
            assert!((1915.0..=2025.0).contains(&mean), "{mean}");
            if let Some([lo, hi]) = cells["mean_birth_year"].interval {
                assert!(
                    1915.0 <= lo && lo <= mean && mean <= hi && hi <= 2025.0,
                    "[{lo}, {hi}]"
                );
            }
        }
    }
    // Dorset and Hampshire hold 57 and 81 care-home residents, BCP 31, far above the
    // suppression threshold at this noise (scale 4): fewer than two of the three are
    // released 7e-11 of the time (BCP alone is suppressed 1.4e-3 of the time); the other
    // places hold 8-11 and are suppressed about a third of the time each. Every released
    // rate has its interval (checked above), two places' rates at least.
    assert!(with_interval >= 4, "{:?}", release.rows);
}

/// A query's identity covers the whole plan: a code list differing only in its sixth item
/// (the plan's display shows five), and a literal that spells plan text (the display
/// prints literals unescaped), are other queries — never answered with each other's
/// release, never released under each other's approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_whose_plans_display_alike_have_different_identities() {
    let engine = sample_engine().await;
    let ctx = plain(&sample_data()).await;
    let codes = |sixth: &str| {
        format!(
            "WITH codes(code) AS (VALUES ('E10'), ('E11'), ('E12'), ('E13'), ('E14'), ('{sixth}')) \
             SELECT COUNT(DISTINCT c.person_id) AS people FROM condition c \
             JOIN codes ON c.code = codes.code"
        )
    };
    let pairs = [
        (codes("I10"), codes("J44")),
        (
            "SELECT COUNT(*) AS n FROM person WHERE sex = 'F\") OR person.sex = Utf8(\"M'"
                .to_owned(),
            "SELECT COUNT(*) AS n FROM person WHERE sex = 'F' OR sex = 'M'".to_owned(),
        ),
    ];
    for (a, b) in pairs {
        // The old identity, the plan's display text, is the same for both.
        let display = async |sql: &str| {
            let plan = ctx.sql(sql).await.unwrap().into_unoptimized_plan();
            plan.display_indent().to_string()
        };
        assert_eq!(display(&a).await, display(&b).await, "{a}\n{b}");
        let hash = async |sql: &str| engine.prepare(sql).await.unwrap().plan_hash().to_owned();
        assert_ne!(hash(&a).await, hash(&b).await, "{a}\n{b}");
        // And the identity is a function of the query: the same SQL, the same identity.
        assert_eq!(hash(&a).await, hash(&a).await);
    }
}

/// Secondary suppression: where a person count of a subpopulation is suppressed, every
/// aggregate over the same people (the same CASE condition) is suppressed with it — the
/// library's high-intensity A&E users released a locality's suppressed user count beside
/// their attendances (`*` / 26), which tells the count to within a few people.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_over_a_suppressed_count_are_suppressed_with_it() {
    let engine = sample_engine().await;
    let sql = std::fs::read_to_string(repo().join("queries/ae_high_intensity_users.sql")).unwrap();
    let mut suppressed = 0;
    for _ in 0..5 {
        let release = released(&engine, &sql).await;
        for (row, cells) in release.rows.iter().zip(&release.cells) {
            if row["hiu_persons"].is_null() {
                suppressed += 1;
                assert!(
                    row["hiu_attendances"].is_null(),
                    "{row:?} {:?}",
                    cells["hiu_attendances"]
                );
            }
        }
        assert!(
            release
                .notes
                .iter()
                .any(|n| n.contains("same CASE condition")),
            "{:?}",
            release.notes
        );
    }
    assert!(
        suppressed > 0,
        "no locality's count was suppressed: the test shows nothing"
    );
}

/// Text columns have one type name in the wire format, however DataFusion holds them
/// (Parquet strings are read as `Utf8View`; CASE labels are `Utf8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_columns_are_utf8_in_the_wire_format() {
    let engine = sample_engine().await;
    let sql = "SELECT sex, CASE WHEN year_of_birth < 1960 THEN 'older' ELSE 'younger' END AS age, \
               COUNT(*) AS n FROM person GROUP BY 1, 2";
    let release = released(&engine, sql).await;
    let types: Vec<(&str, &str)> = release
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str()))
        .collect();
    assert_eq!(types, [("sex", "Utf8"), ("age", "Utf8"), ("n", "Int64")]);
}

/// The ε split follows what each mechanism is for: under the NHS policy a person count
/// that only decides suppression of counts gets a fifth of ε, and an equal share when it is
/// what suppresses a sum; under `disclosure = "none"` nothing uses it, so there is none,
/// the count gets all of ε, and the release still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_count_is_made_only_when_something_uses_it() {
    let sql = "SELECT sex, COUNT(*) AS n FROM person GROUP BY sex";
    let nhs = sample_engine().await.prepare(sql).await.unwrap();
    let items = nhs.charge().items().to_vec();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].label.contains("decides suppression"), "{items:?}");
    assert!((items[0].epsilon - 0.2 * nhs.charge().epsilon()).abs() < 1e-12);
    assert!((items[1].epsilon - 0.8 * nhs.charge().epsilon()).abs() < 1e-12);
    // A sum's cells in small groups are suppressed only through the person count.
    let sums = sample_engine()
        .await
        .prepare(
            "SELECT sex, COUNT(*) AS n, SUM(year_of_birth - 1960) AS s FROM person GROUP BY sex",
        )
        .await
        .unwrap();
    let items = sums.charge().items().to_vec();
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[0].label.contains("decides suppression"), "{items:?}");
    assert!(
        items
            .iter()
            .all(|i| (i.epsilon - items[0].epsilon).abs() < 1e-15),
        "{items:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path(), &[]);
    let toml = dir.path().join("carelens.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("disclosure = \"nhs\""));
    std::fs::write(
        &toml,
        text.replace("disclosure = \"nhs\"", "disclosure = \"none\""),
    )
    .unwrap();
    let engine = Engine::open(&carelens_catalog::load(&toml).unwrap())
        .await
        .unwrap();
    let prepared = engine.prepare(sql).await.unwrap();
    let items = prepared.charge().items().to_vec();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].label, "count(Int64(1))");
    assert!((items[0].epsilon - prepared.charge().epsilon()).abs() < 1e-15);
    let split = prepared.explain().private.unwrap().split;
    assert!(split.contains("none is made"), "{split}");
    let release = prepared.execute(&engine).await.unwrap();
    // Every public sex is released, none suppressed: the policy suppresses nothing.
    assert!(release.rows.len() >= 2, "{:?}", release.rows);
    for cells in &release.cells {
        assert_eq!(cells["n"].status, carelens_privacy::CellStatus::Released);
    }
    // A query that releases the person count has one, at an equal share.
    let prepared = engine
        .prepare("SELECT sex, COUNT(DISTINCT person_id) AS people, COUNT(*) AS n FROM person GROUP BY sex")
        .await
        .unwrap();
    let items = prepared.charge().items().to_vec();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        (items[0].epsilon - items[1].epsilon).abs() < 1e-15,
        "{items:?}"
    );
    prepared.execute(&engine).await.unwrap();
    // Keys alone: the person count is all there is to release them by.
    let prepared = engine
        .prepare("SELECT sex FROM person GROUP BY sex")
        .await
        .unwrap();
    assert_eq!(prepared.charge().items().len(), 1);
    prepared.execute(&engine).await.unwrap();
}

/// A join on a public table's checked `unique_key`, matched on a person-constant column
/// with no other condition, keeps the table's columns constant per person (no sampling);
/// every other join of a reference table leaves its keys sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_keys_are_person_constant_only_through_a_unique_key() {
    let engine = sample_engine().await;
    let sampled = |sql: &'static str| {
        let engine = &engine;
        async move {
            let explain = engine
                .prepare(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .explain();
            explain.private.unwrap().groups_sampled
        }
    };
    let constant = [
        "SELECT pl.pcn_name, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN practice_lookup pl ON pl.practice_code = p.practice_code GROUP BY pl.pcn_name",
        "SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         LEFT JOIN practice_lookup pl ON p.practice_code = pl.practice_code GROUP BY pl.place",
        "SELECT l.rural_urban, COUNT(e.encounter_id) AS contacts FROM encounter e \
         JOIN person p ON p.person_id = e.person_id JOIN lsoa_lookup l ON l.lsoa21 = p.lsoa21 \
         GROUP BY l.rural_urban",
        "SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN (SELECT * FROM practice_lookup WHERE icb IS NOT NULL) pl \
           ON pl.practice_code = p.practice_code GROUP BY pl.place",
        // Every condition an equality of a person-constant value with the lookup.
        "SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN practice_lookup pl ON pl.practice_code = p.practice_code AND pl.icb = p.icb \
         GROUP BY pl.place",
        "WITH pl AS (SELECT practice_code AS code, place FROM practice_lookup) \
         SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN pl ON pl.code = p.practice_code GROUP BY pl.place",
    ];
    for sql in constant {
        assert!(!sampled(sql).await, "should need no sampling: {sql}");
    }
    let not_constant = [
        // Not the unique key.
        "SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN practice_lookup pl ON pl.pcn_code = p.pcn_code GROUP BY pl.place",
        // The private side is not constant per person.
        "SELECT pl.place, COUNT(*) AS n FROM encounter e \
         JOIN practice_lookup pl ON pl.practice_code = e.provider_code GROUP BY pl.place",
        // Another condition beside the key, on a column that is not constant per person:
        // some of a person's rows match, others do not.
        "SELECT pl.place, COUNT(*) AS n FROM encounter e \
         JOIN person p ON p.person_id = e.person_id \
         LEFT JOIN practice_lookup pl ON pl.practice_code = p.practice_code AND e.setting = 'GP' \
         GROUP BY pl.place",
        // A function of the key is not known to be unique.
        "SELECT pl.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN practice_lookup pl ON upper(pl.practice_code) = p.practice_code GROUP BY pl.place",
        // Joined to another table first: rows may repeat.
        "SELECT x.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN (SELECT a.practice_code, a.place FROM practice_lookup a \
               JOIN lsoa_lookup b ON a.locality = b.locality) x \
           ON x.practice_code = p.practice_code GROUP BY x.place",
        // A union repeats rows.
        "SELECT x.place, COUNT(DISTINCT p.person_id) AS people FROM person p \
         JOIN (SELECT practice_code, place FROM practice_lookup UNION ALL \
               SELECT practice_code, place FROM practice_lookup) x \
           ON x.practice_code = p.practice_code GROUP BY x.place",
    ];
    for sql in not_constant {
        assert!(sampled(sql).await, "should be sampled: {sql}");
    }
}

/// `unique_key` is checked against the file by `carelens catalog` and whenever the engine
/// opens: a lookup with a code in two rows is refused, naming the table, the column and the
/// code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_with_a_repeated_value_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    copy_sample(dir.path(), &[]);
    let ctx = plain(&sample_data()).await;
    let lookup = dir.path().join("practice_lookup.parquet");
    std::fs::remove_file(&lookup).unwrap();
    write_parquet(
        &ctx,
        "SELECT * FROM practice_lookup UNION ALL \
         (SELECT * FROM practice_lookup ORDER BY practice_code LIMIT 1)",
        &lookup,
    )
    .await;
    let catalog = carelens_catalog::load(&dir.path().join("carelens.toml")).unwrap();
    // `carelens catalog` and the engine run the same check.
    let report = catalog.check_files().unwrap_err().to_string();
    assert!(
        report.contains("tables.practice_lookup.unique_key")
            && report.contains("`practice_code` is declared unique, but the value '"),
        "{report}"
    );
    let error = match Engine::open(&catalog).await {
        Ok(_) => panic!("a repeated unique key was accepted"),
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!("\n{s}"));
                source = s.source();
            }
            chain
        }
    };
    assert!(
        error.contains("no longer matches the catalog")
            && error.contains("tables.practice_lookup.unique_key"),
        "{error}"
    );
}

/// A table that is a folder is read as exactly the files the catalog listed and checked:
/// a `_`-named file beside them (which DataFusion would read if given the folder) holding
/// a second row for every code declared unique is not read, and a file added later changes
/// the extract's version, so nothing is charged against files nobody checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_table_is_read_as_the_files_the_catalog_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, toml) = sample_with_lookup_folder(dir.path(), "a.parquet");
    let ctx = plain(&sample_data()).await;
    for shadow in ["_shadow.parquet", ".shadow.parquet"] {
        write_parquet(&ctx, "SELECT * FROM practice_lookup", &folder.join(shadow)).await;
    }
    let catalog = carelens_catalog::load(&toml).unwrap();
    let engine = Engine::open(&catalog).await.unwrap();
    let release = released(
        &engine,
        "SELECT COUNT(*) AS n, COUNT(DISTINCT practice_code) AS codes FROM practice_lookup",
    )
    .await;
    assert_eq!(
        release.rows[0]["n"], release.rows[0]["codes"],
        "{:?}",
        release.rows
    );
    assert_eq!(release.rows[0]["n"], Value::from(336));
    let version = catalog.data_version().unwrap();
    std::fs::copy(
        sample_data().join("practice_lookup.parquet"),
        folder.join("b.parquet"),
    )
    .unwrap();
    assert_ne!(
        catalog.data_version().unwrap(),
        version,
        "an added file changes the version"
    );
}

/// A file is registered by its name, not as a glob or a URL: `p[x].parquet` is that file
/// (as a glob it would stand for `px.parquet`, so the checked file would go unread and
/// another could be read in its place), and so is every name with characters that globs
/// or URLs treat specially (`*`, `?`, `{}`, `%`, `#`, spaces, `;`, non-ASCII).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_name_with_glob_or_url_characters_is_read_as_that_file() {
    for name in [
        "p[x].parquet",
        "p*.parquet",
        "p?.parquet",
        "p{a,b}.parquet",
        "p%41.parquet",
        "p%.parquet",
        "p #1.parquet",
        "p;q=1.parquet",
        "pé ü.parquet",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (_, toml) = sample_with_lookup_folder(dir.path(), name);
        let catalog = carelens_catalog::load(&toml).unwrap();
        let engine = Engine::open(&catalog)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let release = released(&engine, "SELECT COUNT(*) AS n FROM practice_lookup").await;
        assert_eq!(
            release.rows[0]["n"],
            Value::from(336),
            "{name}: {:?}",
            release.rows
        );
    }
}

/// How many values of `column` in the rows of `from` (a FROM … WHERE …) lie below `v`, and
/// on it, and in all.
async fn ranks(ctx: &SessionContext, column: &str, from: &str, v: f64) -> (f64, f64, f64) {
    let sql = format!(
        "SELECT CAST(SUM(CASE WHEN {column} < {v} THEN 1 ELSE 0 END) AS DOUBLE), \
                CAST(SUM(CASE WHEN {column} = {v} THEN 1 ELSE 0 END) AS DOUBLE), \
                CAST(COUNT({column}) AS DOUBLE) {from}"
    );
    let b = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let at = |c: usize| match ScalarValue::try_from_array(b[0].column(c), 0).unwrap() {
        ScalarValue::Float64(Some(x)) => x,
        other => panic!("{other:?}"),
    };
    (at(0), at(1), at(2))
}

/// A released quantile's rank in the true data is within the mechanism's rank error of the
/// quantile's: with `r` the rank error at β = 1e-9 (from `explain`'s noise scale in ranks,
/// `r = scale · ln(m / β)` for m candidates), the released value `v` with `b` values below
/// it and `on` on it satisfies `b − r ≤ α·n ≤ b + on + r`. Checked for the large groups,
/// where `r` is a small share of the group (so the check can fail), over 5 releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_quantiles_are_within_their_rank_error_of_the_true_quantile() {
    let engine = sample_engine().await;
    let ctx = plain(&sample_data()).await;
    let sql = "-- carelens: epsilon=1\nSELECT sex, COUNT(DISTINCT person_id) AS n, \
               MEDIAN(year_of_birth) AS m, \
               PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY year_of_birth) AS p90 \
               FROM person GROUP BY sex";
    let prepared = engine.prepare(sql).await.unwrap();
    let mechanisms = prepared.mechanisms();
    let candidates = (2025 - 1915 + 1) as f64;
    let rank_error = |label: &str| {
        let m = mechanisms
            .iter()
            .find(|m| m.label.starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {mechanisms:?}"));
        assert_eq!(m.error_unit, carelens_engine::ErrorUnit::Rank);
        m.noise_scale * (candidates / 1e-9).ln()
    };
    let (r50, r90) = (rank_error("median"), rank_error("percentile_cont"));
    let (mut checked, mut covered) = (0, 0);
    for _ in 0..5 {
        let release = prepared.execute(&engine).await.unwrap();
        for (row, cells) in release.rows.iter().zip(&release.cells) {
            let sex = row["sex"].as_str().unwrap();
            if !matches!(sex, "F" | "M") {
                continue;
            }
            let from = format!("FROM person WHERE sex = '{sex}'");
            for (column, alpha, r) in [("m", 0.5, r50), ("p90", 0.9, r90)] {
                let v = row[column].as_f64().unwrap();
                assert_eq!(v.fract(), 0.0, "a year of birth on the grid: {v}");
                let (below, on, n) = ranks(&ctx, "year_of_birth", &from, v).await;
                assert!(r < n / 20.0, "the check is informative: r {r}, n {n}");
                let target = alpha * n;
                assert!(
                    below - r <= target && target <= below + on + r,
                    "{sex} {column} = {v}: ranks [{below}, {}] vs αn = {target} ± {r}",
                    below + on
                );
                checked += 1;
                // The 95% interval holds the value, and (most times) the true quantile: at
                // most αn values below its low end, at least αn up to its high end.
                let [lo, hi] = cells[column].interval.expect("a quantile has an interval");
                assert!(
                    lo <= v && v <= hi,
                    "{sex} {column}: {v} outside [{lo}, {hi}]"
                );
                let (below_lo, _, _) = ranks(&ctx, "year_of_birth", &from, lo).await;
                let (below_hi, on_hi, _) = ranks(&ctx, "year_of_birth", &from, hi).await;
                covered += usize::from(below_lo <= target && target <= below_hi + on_hi);
            }
        }
    }
    assert_eq!(checked, 5 * 2 * 2);
    // Each interval covers with probability at least 95%: 13 or more of 20 fail to happen
    // with probability below 1e-6 (binomial), unless the coverage is below its claim.
    assert!(covered >= 13, "{covered} of 20 intervals held the quantile");
}

/// An engine on a copy of the sample whose policy has the response quantum off, for tests that release many times; the folder lives as long
/// as the engine is used.
async fn sample_engine_without_quantum() -> (tempfile::TempDir, Engine) {
    let dir = sample_with_catalog_edit("response_quantum_ms = 1000\n", "response_quantum_ms = 0\n");
    let catalog = carelens_catalog::load(&dir.path().join("carelens.toml")).unwrap();
    let engine = Engine::open(&catalog).await.unwrap();
    (dir, engine)
}

/// That `covered` of `intervals` 95% intervals is at least 95% less five binomial standard
/// errors: a coverage below the claim fails it, bar a 5σ fluke.
fn assert_covers_95_percent(covered: usize, intervals: usize, what: &str) {
    let n = intervals as f64;
    let limit = 0.95 * n - 5.0 * (n * 0.95 * 0.05).sqrt();
    assert!(
        covered as f64 >= limit,
        "{covered} of {intervals} {what} held the true value (at least {limit} expected)"
    );
}

/// Coverage of the quantiles' 95% intervals on the sample: over 40 releases of the median
/// and the 10th percentile of year of birth in every locality, the share of intervals that
/// hold the true quantile (at most αn values below the low end, at least αn up to the high
/// end, the values clamped to the catalog's bounds as released) is at least 95% less five
/// binomial standard errors. The intervals are checked to be narrower than the bounds, so
/// the check is about the ends, not the fallback to the grid's ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantile_intervals_cover_the_true_quantile_at_least_95_percent_on_the_sample() {
    let (_dir, engine) = sample_engine_without_quantum().await;
    let ctx = plain(&sample_data()).await;
    // Per locality, how many people were born in each year (clamped to 1915-2025).
    let truth = exact(
        &ctx,
        "SELECT locality || '/' || CAST(LEAST(GREATEST(year_of_birth, 1915), 2025) AS VARCHAR), \
                CAST(COUNT(*) AS DOUBLE) FROM person \
         WHERE year_of_birth IS NOT NULL AND locality IS NOT NULL GROUP BY 1",
    )
    .await;
    let mut histograms: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
    for (key, counts) in &truth {
        let (locality, year) = key.rsplit_once('/').unwrap();
        histograms
            .entry(locality.to_owned())
            .or_default()
            .push((year.parse().unwrap(), counts[0]));
    }
    // Values below `v`, and at or below it.
    let ranks = |h: &[(f64, f64)], v: f64| {
        let below: f64 = h.iter().filter(|(y, _)| *y < v).map(|(_, c)| c).sum();
        let up_to: f64 = h.iter().filter(|(y, _)| *y <= v).map(|(_, c)| c).sum();
        (below, up_to)
    };
    let sql = "-- carelens: epsilon=2\nSELECT locality, COUNT(DISTINCT person_id) AS n, \
               MEDIAN(year_of_birth) AS m, \
               PERCENTILE_CONT(0.1) WITHIN GROUP (ORDER BY year_of_birth) AS p10 \
               FROM person GROUP BY locality";
    let prepared = engine.prepare(sql).await.unwrap();
    let (mut intervals, mut covered, mut narrow) = (0usize, 0usize, 0usize);
    for _ in 0..40 {
        let release = prepared.execute(&engine).await.unwrap();
        for (row, cells) in release.rows.iter().zip(&release.cells) {
            let Some(h) = row["locality"].as_str().and_then(|l| histograms.get(l)) else {
                continue;
            };
            let n: f64 = h.iter().map(|(_, c)| c).sum();
            for (column, alpha) in [("m", 0.5), ("p10", 0.1)] {
                if row[column].is_null() {
                    continue;
                }
                let [lo, hi] = cells[column].interval.expect("a quantile has an interval");
                let (below_lo, _) = ranks(h, lo);
                let (_, up_to_hi) = ranks(h, hi);
                intervals += 1;
                covered += usize::from(below_lo <= alpha * n && alpha * n <= up_to_hi);
                narrow += usize::from(lo > 1915.0 && hi < 2025.0);
            }
        }
    }
    assert!(intervals >= 40 * 2 * 5, "{intervals} intervals");
    assert!(
        narrow * 2 > intervals,
        "{narrow} of {intervals} intervals inside the bounds"
    );
    assert_covers_95_percent(covered, intervals, "quantile intervals");
}

/// Derived columns get 95% intervals by interval arithmetic over the cells they read: a
/// difference, a product with a constant, a ROUND of a ratio and a CASE over released
/// values, each holding its released value, and together covering the true values at least
/// 95% of the time less five binomial standard errors over 20 releases in every locality.
/// A value carelens cannot bound says why in the wire format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_columns_have_intervals_that_cover_their_true_values() {
    let (_dir, engine) = sample_engine_without_quantum().await;
    let ctx = plain(&sample_data()).await;
    let over_65 = "SUM(CASE WHEN year_of_birth <= 1960 THEN 1 ELSE 0 END)";
    let truth = exact(
        &ctx,
        &format!(
            "SELECT locality, CAST(COUNT(*) AS DOUBLE), CAST({over_65} AS DOUBLE) \
             FROM person GROUP BY locality"
        ),
    )
    .await;
    let sql = format!(
        "SELECT locality, COUNT(*) AS n, {over_65} AS old, \
                COUNT(*) - {over_65} AS young, \
                2 * {over_65} AS twice_old, \
                ROUND(100.0 * {over_65} / COUNT(*) - 10, 1) AS pct_less_10, \
                CASE WHEN {over_65} > 300 THEN 1 ELSE 0 END AS many_old, \
                LN(COUNT(*)) AS log_n \
         FROM person GROUP BY locality"
    );
    let prepared = engine.prepare(&sql).await.unwrap();
    let (mut intervals, mut covered) = (0usize, 0usize);
    for _ in 0..20 {
        let release = prepared.execute(&engine).await.unwrap();
        for (row, cells) in release.rows.iter().zip(&release.cells) {
            let Some(t) = row["locality"].as_str().and_then(|l| truth.get(l)) else {
                continue;
            };
            if row["n"].is_null() || row["old"].is_null() {
                continue;
            }
            let (n, old) = (t[0], t[1]);
            let truths = [
                ("young", n - old),
                ("twice_old", 2.0 * old),
                ("pct_less_10", 100.0 * old / n - 10.0),
                ("many_old", f64::from(u8::from(old > 300.0))),
            ];
            for (column, true_value) in truths {
                let v = row[column].as_f64().unwrap();
                let [lo, hi] = cells[column]
                    .interval
                    .unwrap_or_else(|| panic!("{column}: {:?}", cells[column]));
                assert!(lo <= v && v <= hi, "{column}: {v} outside [{lo}, {hi}]");
                assert!(cells[column].no_interval.is_none());
                intervals += 1;
                covered += usize::from(lo <= true_value && true_value <= hi);
            }
            let log_n = &cells["log_n"];
            assert!(log_n.interval.is_none(), "{log_n:?}");
            assert!(
                log_n
                    .no_interval
                    .as_deref()
                    .is_some_and(|why| why.contains("does not bound this expression")),
                "{log_n:?}"
            );
        }
    }
    assert!(intervals >= 20 * 4 * 20, "{intervals} intervals");
    assert_covers_95_percent(covered, intervals, "derived intervals");
}

/// A quantile of a group whose noisy person count is suppressed is suppressed; of a large
/// group, released. Groups of people born after 2010 with sex `I` or `U` are a handful of
/// people at most, so over ten releases some are suppressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantile_is_suppressed_with_its_groups_person_count() {
    let engine = sample_engine().await;
    let sql = "SELECT sex, COUNT(DISTINCT person_id) AS n, MEDIAN(year_of_birth) AS m \
               FROM person WHERE year_of_birth > 2010 GROUP BY sex";
    let prepared = engine.prepare(sql).await.unwrap();
    let (mut suppressed, mut shown) = (0, 0);
    for _ in 0..10 {
        let release = prepared.execute(&engine).await.unwrap();
        for row in &release.rows {
            assert_eq!(row["n"].is_null(), row["m"].is_null(), "{row:?}");
            if row["n"].is_null() {
                suppressed += 1;
            } else {
                shown += 1;
            }
        }
    }
    assert!(
        suppressed > 0 && shown > 0,
        "{suppressed} suppressed, {shown} shown"
    );
}

/// One person with 10,000 encounters moves a quantile's histogram (the exact counts per
/// group and candidate the mechanism scores) by at most L∞ values in each group, in at
/// most L0 groups — the bound its sensitivity is calibrated to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_with_10000_rows_moves_a_quantiles_histogram_by_at_most_l_inf_in_l0_groups() {
    let (_dir, without, with) = engines_without_and_with_a_heavy_user().await;
    let secret = "00112233445566778899aabbccddeeff";
    let queries = [
        // Keys not constant per person: L0 sampling; L∞ from the catalog.
        "SELECT setting, MEDIAN(los_days) AS m FROM encounter GROUP BY setting",
        "-- carelens: max_groups=2, max_rows=3\nSELECT provider_code, \
         PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY cost_gbp) AS p FROM encounter \
         GROUP BY provider_code",
        // No keys: one group.
        "-- carelens: max_rows=7\nSELECT MEDIAN(los_days) AS m FROM encounter",
        // Person-constant keys: L0 = 1, no sampling.
        "SELECT p.sex, MEDIAN(e.los_days) AS m FROM encounter e \
         JOIN person p ON p.person_id = e.person_id GROUP BY p.sex",
    ];
    let histogram = |plan: datafusion::logical_expr::LogicalPlan| async move {
        let batches: Vec<RecordBatch> = SessionContext::new()
            .execute_logical_plan(plan)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out: HashMap<String, HashMap<i64, i64>> = HashMap::new();
        for batch in &batches {
            let n_keys = batch.num_columns() - 2;
            for r in 0..batch.num_rows() {
                let key: Vec<String> = (0..n_keys)
                    .map(|k| {
                        ScalarValue::try_from_array(batch.column(k), r)
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                let int = |c: usize| match ScalarValue::try_from_array(batch.column(c), r).unwrap()
                {
                    ScalarValue::Int64(Some(x)) => x,
                    other => panic!("{other:?}"),
                };
                out.entry(key.join("|"))
                    .or_default()
                    .insert(int(n_keys), int(n_keys + 1));
            }
        }
        out
    };
    for sql in queries {
        let a = without.prepare_with_secret(sql, secret).await.unwrap();
        let b = with.prepare_with_secret(sql, secret).await.unwrap();
        let protection = b.explain().private.unwrap();
        let (l0, l_inf) = (
            i64::from(protection.max_groups),
            i64::from(protection.max_rows),
        );
        let before = histogram(a.histogram_plans()[0].clone()).await;
        let after = histogram(b.histogram_plans()[0].clone()).await;
        let groups: std::collections::BTreeSet<&String> =
            before.keys().chain(after.keys()).collect();
        let mut changed = 0;
        for group in groups {
            let empty = HashMap::new();
            let (x, y) = (
                before.get(group).unwrap_or(&empty),
                after.get(group).unwrap_or(&empty),
            );
            let bins: std::collections::BTreeSet<&i64> = x.keys().chain(y.keys()).collect();
            let moved: i64 = bins
                .into_iter()
                .map(|bin| (y.get(bin).unwrap_or(&0) - x.get(bin).unwrap_or(&0)).abs())
                .sum();
            assert!(
                moved <= l_inf,
                "{sql}\n group {group}: {moved} values > L∞ {l_inf}"
            );
            changed += i64::from(moved > 0);
        }
        assert!(changed > 0, "{sql}: the added person changed nothing");
        assert!(changed <= l0, "{sql}: {changed} groups changed > L0 {l0}");
    }
}

/// A NULL is no value: not one at the bound in a mean's count, a sum or a quantile (the
/// clamp's `GREATEST(NULL, lo)` is `lo`, which counted every non-woman as aged 0 — a
/// mean age of women of 23 instead of 46 — before the fix). Aggregates of
/// `CASE WHEN sex = 'F' THEN … END` over everyone match the same aggregates over women.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nulls_count_in_no_mean_sum_or_quantile() {
    let engine = sample_engine().await;
    let ctx = plain(&sample_data()).await;
    let sql = "-- carelens: epsilon=1\nSELECT \
               AVG(CASE WHEN sex = 'F' THEN 2025 - year_of_birth END) AS mean_age, \
               SUM(CASE WHEN sex = 'F' THEN year_of_birth - 2000 END) AS offset_sum, \
               MEDIAN(CASE WHEN sex = 'F' THEN year_of_birth END) AS median_yob \
               FROM person";
    let prepared = engine.prepare(sql).await.unwrap();
    let scale = largest_scale(&prepared);
    let truth = exact(
        &ctx,
        "SELECT 'all', AVG(CAST(2025 - year_of_birth AS DOUBLE)), \
         CAST(SUM(year_of_birth - 2000) AS DOUBLE) FROM person WHERE sex = 'F'",
    )
    .await["all"]
        .clone();
    let median_noise = prepared
        .mechanisms()
        .iter()
        .find(|m| m.label.starts_with("median"))
        .unwrap()
        .noise_scale;
    for _ in 0..3 {
        let release = prepared.execute(&engine).await.unwrap();
        let mean = cell(&release, 0, "mean_age").unwrap();
        assert!(
            (mean - truth[0]).abs() < 1.0,
            "mean age {mean} vs {}",
            truth[0]
        );
        let sum = cell(&release, 0, "offset_sum").unwrap();
        assert!(
            (sum - truth[1]).abs() <= 25.0 * scale + 5.0,
            "sum {sum} vs {} (scale {scale})",
            truth[1]
        );
        let v = cell(&release, 0, "median_yob").unwrap();
        let (below, on, n) = ranks(&ctx, "year_of_birth", "FROM person WHERE sex = 'F'", v).await;
        let r = median_noise * (111.0f64 / 1e-9).ln();
        assert!(
            below - r <= n / 2.0 && n / 2.0 <= below + on + r,
            "median {v}: ranks [{below}, {}] of {n} ± {r}",
            below + on
        );
    }
}
