//! `carelens run` and `carelens explain` of a folder: the query library releases on the
//! sample data, a batch is checked whole before anything is spent, a rejected query does
//! not stop the others, and the report is one self-contained file.

use std::fs;
use std::path::Path;
use std::process::Output;

use carelens_engine::slt::check_nhs_counts;
use carelens_engine::{FORMAT, Release};

use crate::common::{repo, run};
use crate::query::{cmd, spent, write_sql};

/// The library's `.sql` files, by stem.
fn library() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo().join("queries"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `carelens run PATH --out OUT` as `user`, against the sample catalog and `ledger`.
fn run_batch(ledger: &Path, user: &str, path: &Path, out: &Path) -> (Output, String, String) {
    run(&mut cmd(
        ledger,
        user,
        &[
            "run",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    ))
}

fn release_in(out: &Path, name: &str) -> Release {
    let text = fs::read_to_string(out.join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}.json: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

#[test]
fn the_query_library_releases_every_query_with_a_report() {
    let names = library();
    assert!(names.len() >= 12, "the library has {} queries", names.len());
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let out = dir.path().join("report");
    let queries = repo().join("queries");
    let (status, stdout, stderr) = run_batch(&ledger, "analyst", &queries, &out);
    assert!(status.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{0} of {0} released", names.len())),
        "{stdout}"
    );

    // One CSV and one JSON per query; every JSON a release under the nhs rules, every
    // header documented.
    let mut epsilon = 0.0;
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    for name in &names {
        let release = release_in(&out, name);
        assert_eq!(release.format, FORMAT);
        assert!(!release.rows.is_empty(), "{name} released no rows");
        check_nhs_counts(name, &release).unwrap();
        epsilon += release.privacy.epsilon;
        let csv = fs::read_to_string(out.join(format!("{name}.csv"))).unwrap();
        assert_eq!(csv.lines().count(), release.rows.len() + 1, "{name}.csv");
        let sql = fs::read_to_string(queries.join(format!("{name}.sql"))).unwrap();
        for field in ["-- What:", "-- Who:", "-- DP:", "-- carelens:"] {
            assert!(sql.contains(field), "{name}.sql has no `{field}` line");
        }
        let title = sql.lines().next().unwrap().trim_start_matches("-- ");
        let escaped = title.replace('&', "&amp;");
        assert!(html.contains(&escaped), "the report lacks {title:?}");
        assert!(html.contains(&format!("href=\"./{name}.csv\"")), "{name}");
    }
    assert!((spent(&ledger, "analyst") - epsilon).abs() < 1e-9);
    assert!(epsilon <= 15.0, "the library fits an analyst's budget");

    // Self-contained: no scripts, nothing fetched; suppressed cells marked; intervals,
    // charts and the plain-English box present; the budget summary is there.
    for banned in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(banned), "the report contains {banned}");
    }
    assert!(html.contains("How to read these numbers"));
    assert!(html.contains("class=\"num suppressed\""));
    assert!(html.contains("95%: "));
    assert!(html.matches("<svg").count() >= 5, "charts");
    assert!(html.contains("ε spent"));

    // Again: everything answered from the ledger, nothing spent, same results.
    let before = release_in(&out, "emergency_admissions");
    let (status, stdout, stderr) = run_batch(&ledger, "analyst", &queries, &out);
    assert!(status.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("epsilon 0 and delta 0 spent by this run"),
        "{stdout}"
    );
    assert!((spent(&ledger, "analyst") - epsilon).abs() < 1e-9);
    let after = release_in(&out, "emergency_admissions");
    assert_eq!(before.rows, after.rows);
    assert_eq!(before.release_id, after.release_id);
}

#[test]
fn a_batch_beyond_the_budget_is_refused_whole_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let out = dir.path().join("out");
    // The approver has epsilon 1; the library needs more.
    let queries = repo().join("queries");
    let (status, stdout, stderr) = run_batch(&ledger, "approver", &queries, &out);
    assert_eq!(status.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("batch refused, nothing was run or spent"),
        "{stderr}"
    );
    assert!(stderr.contains("your budget has epsilon 1"), "{stderr}");
    assert_eq!(spent(&ledger, "approver"), 0.0);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing written");
    let (_, log, _) = run(&mut cmd(&ledger, "approver", &["audit", "log"]));
    assert!(log.contains("batch of"), "{log}");
}

#[test]
fn a_rejected_query_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let out = dir.path().join("out");
    let queries = dir.path().join("queries");
    fs::create_dir_all(&queries).unwrap();
    write_sql(
        &queries,
        "a_oldest.sql",
        "-- Latest year of birth\nSELECT MAX(year_of_birth) AS m FROM person\n",
    );
    write_sql(
        &queries,
        "b_by_sex.sql",
        "-- People by sex\n-- carelens: epsilon=0.25\n\
         SELECT sex, COUNT(DISTINCT person_id) AS people FROM person GROUP BY sex\n",
    );
    // Results of the rejected query from an earlier run are moved aside, not left to be
    // taken for this run's.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("a_oldest.csv"), "m\n1950\n").unwrap();
    fs::write(out.join("a_oldest.json"), "{}\n").unwrap();
    let (status, stdout, stderr) = run_batch(&ledger, "analyst", &queries, &out);
    assert_eq!(status.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 of 2 released"), "{stdout}");
    assert!(
        stderr.contains("1 of 2 queries were not released") && stderr.contains("a_oldest"),
        "{stderr}"
    );
    assert!(stderr.contains("one person's value"), "{stderr}");
    assert!(out.join("b_by_sex.csv").exists() && out.join("b_by_sex.json").exists());
    assert!(!out.join("a_oldest.csv").exists() && !out.join("a_oldest.json").exists());
    assert_eq!(
        fs::read_to_string(out.join("a_oldest.previous.csv")).unwrap(),
        "m\n1950\n"
    );
    assert!(out.join("a_oldest.previous.json").exists());
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("not released") && html.contains("one person&#39;s value"));
    assert!((spent(&ledger, "analyst") - 0.25).abs() < 1e-9);
}

#[test]
fn explain_of_a_folder_totals_the_cost_and_spends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let queries = repo().join("queries");
    let (status, stdout, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["explain", queries.to_str().unwrap()],
    ));
    assert!(status.status.success(), "{stderr}");
    for name in library() {
        assert!(stdout.contains(&format!("{name} (")), "{name}: {stdout}");
    }
    assert!(stdout.contains("95% error ±"), "{stdout}");
    let total = stdout
        .lines()
        .find_map(|l| l.strip_prefix("total: epsilon "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|e| e.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no total: {stdout}"));
    assert!(total > 5.0 && total <= 15.0, "{total}");
    assert!(!ledger.exists(), "explain does not touch the ledger");
}

#[test]
fn a_query_failing_after_its_charge_is_reported_with_its_cost() {
    // A copy of the sample whose encounter data pages are garbage (the footer intact, so
    // the query plans and is charged, then fails while reading).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for entry in fs::read_dir(crate::common::sample_data()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
        }
    }
    let encounter = data.join("encounter.parquet");
    let mut bytes = fs::read(&encounter).unwrap();
    let end = bytes.len() - 70_000;
    bytes[8..end].fill(0x5A);
    fs::write(&encounter, bytes).unwrap();

    let queries = dir.path().join("queries");
    fs::create_dir_all(&queries).unwrap();
    write_sql(
        &queries,
        "a_encounters.sql",
        "-- Encounters by setting\n-- carelens: epsilon=0.3\n\
         SELECT setting, COUNT(*) AS n FROM encounter GROUP BY setting\n",
    );
    write_sql(
        &queries,
        "b_by_sex.sql",
        "-- People by sex\n-- carelens: epsilon=0.2\n\
         SELECT sex, COUNT(DISTINCT person_id) AS people FROM person GROUP BY sex\n",
    );
    let ledger = dir.path().join("ledger.sqlite");
    let out = dir.path().join("out");
    let mut command = crate::common::carelens();
    command
        .args([
            "run",
            queries.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--config")
        .arg(data.join("carelens.toml"))
        .env("CARELENS_LEDGER", &ledger)
        .env("CARELENS_USER", "analyst");
    let (status, stdout, stderr) = run(&mut command);
    assert_eq!(status.status.code(), Some(2), "{stdout}\n{stderr}");
    // The failed query's charge is counted wherever spending is reported.
    assert!(
        stdout.contains("epsilon 0.5 and delta 0 spent by this run"),
        "{stdout}"
    );
    assert!(stderr.contains("failed (epsilon 0.3 spent)"), "{stderr}");
    assert!(stderr.contains("details are withheld"), "{stderr}");
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<b>failed</b>") && html.contains("ε 0.3 (δ 0), was spent"));
    assert!(
        html.contains("<b>ε 0.5</b>"),
        "the run's total includes the failure"
    );
    assert!(out.join("b_by_sex.csv").exists() && !out.join("a_encounters.csv").exists());
}

#[test]
fn an_unwritable_out_folder_is_refused_before_anything_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let not_a_folder = dir.path().join("taken");
    fs::write(&not_a_folder, "a file").unwrap();
    let query = repo().join("queries/cohort_af_no_anticoagulant.sql");
    let (status, _, stderr) = run_batch(&ledger, "analyst", &query, &not_a_folder);
    assert_eq!(status.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("could not create"), "{stderr}");
    assert!(
        !ledger.exists(),
        "nothing was charged: the ledger was not even opened"
    );
}

#[test]
fn hostile_names_and_headers_are_inert_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let queries = dir.path().join("queries");
    fs::create_dir_all(&queries).unwrap();
    write_sql(
        &queries,
        "javascript:alert(1) <b>.sql",
        "-- <script>alert('title')</script>\n-- What: <img src=x onerror=alert(1)>\n\
         -- carelens: epsilon=0.1\n\
         SELECT sex, COUNT(DISTINCT person_id) AS people FROM person GROUP BY sex\n",
    );
    let out = dir.path().join("out");
    let (status, stdout, stderr) = run_batch(&ledger, "analyst", &queries, &out);
    assert!(status.status.success(), "{stdout}\n{stderr}");
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    for live in ["<script", "<img", "href=\"javascript", "<b>.csv"] {
        assert!(!html.contains(live), "the report contains {live}");
    }
    assert!(html.contains("&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;"));
    assert!(html.contains("href=\"./javascript%3Aalert%281%29%20%3Cb%3E.csv\""));
    assert!(out.join("javascript:alert(1) <b>.csv").exists());
}
