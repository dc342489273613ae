//! `carelens query` and `carelens explain` on the sample data, with the ledger in a
//! temporary folder: exit codes, output formats, the charge-then-release order, the release
//! cache, rejections and the security closures of the session.

use std::path::Path;
use std::process::Command;

use crate::common::{carelens, run, sample_data, sample_with_catalog_edit};

const SEX_QUERY: &str = "-- carelens: epsilon=0.5\n\
    SELECT sex, COUNT(DISTINCT person_id) AS people FROM person GROUP BY sex\n";

/// `carelens <args>` against the sample catalog and a ledger at `ledger`, as `user`.
pub(crate) fn cmd(ledger: &Path, user: &str, args: &[&str]) -> Command {
    let mut cmd = carelens();
    cmd.args(args)
        .arg("--config")
        .arg(sample_data().join("carelens.toml"))
        .env("CARELENS_LEDGER", ledger)
        .env("CARELENS_USER", user);
    cmd
}

pub(crate) fn write_sql(dir: &Path, name: &str, sql: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, sql).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) fn spent(ledger: &Path, user: &str) -> f64 {
    let (out, stdout, stderr) = run(&mut cmd(ledger, user, &["budget", "--format", "json"]));
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == user)
        .unwrap()["spent"]["epsilon"]
        .as_f64()
        .unwrap()
}

#[test]
fn query_charges_once_releases_and_serves_repeats_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(dir.path(), "sex.sql", SEX_QUERY);

    let (out, stdout, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["query", &sql, "--format", "json"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(first["format"], "carelens.release/1");
    assert_eq!(first["privacy"]["epsilon"], 0.5);
    assert_eq!(
        first["rows"].as_array().unwrap().len(),
        4,
        "every sex, empty ones too"
    );
    let id = first["release_id"].as_i64().unwrap();
    let female = &first["rows"][0];
    assert_eq!(female["sex"], "F");
    let n = female["people"].as_f64().unwrap();
    assert!(n > 9000.0 && n % 5.0 == 0.0, "{n}");
    let interval = first["cells"][0]["people"]["interval"].as_array().unwrap();
    assert!(interval[0].as_f64().unwrap() < n && n < interval[1].as_f64().unwrap());
    assert!((spent(&ledger, "analyst") - 0.5).abs() < 1e-9);

    // The same question again: the same answer, the same release, no new spend.
    let (out, stdout, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["query", &sql, "--format", "json"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let second: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(second["release_id"].as_i64(), Some(id));
    assert_eq!(second["rows"], first["rows"]);
    assert!(stderr.contains("at no cost"), "{stderr}");
    assert!((spent(&ledger, "analyst") - 0.5).abs() < 1e-9);

    // Other formats render the same release.
    let (out, stdout, _) = run(&mut cmd(
        &ledger,
        "analyst",
        &["query", &sql, "--format", "csv"],
    ));
    assert!(out.status.success());
    assert!(stdout.starts_with("sex,people\nF,"), "{stdout}");
    let parquet = dir.path().join("out.parquet");
    let (out, _, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &[
            "query",
            &sql,
            "--format",
            "parquet",
            "--output",
            parquet.to_str().unwrap(),
        ],
    ));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(&std::fs::read(&parquet).unwrap()[..4], b"PAR1");
    let (out, stdout, _) = run(&mut cmd(&ledger, "analyst", &["query", &sql]));
    assert!(out.status.success());
    // Served again: nothing spent now, and what it cost when it was made.
    assert!(
        stdout.contains("nothing spent now: the answer of release")
            && stdout.contains("which cost epsilon 0.5 and delta 0"),
        "{stdout}"
    );
}

#[test]
fn rejected_queries_exit_1_with_what_where_and_hint_and_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(
        dir.path(),
        "bad.sql",
        "SELECT sex,\n       COUNT(*) AS n\nFROM person\nWHERE person_id = 42\nGROUP BY sex\n",
    );
    let (out, stdout, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &sql]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    let stderr = after_creation_note(&stderr);
    assert!(
        stderr.starts_with(
            "error: query rejected: the person column `person_id` cannot be used in a filter\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.sql:4:7"),
        "the place of `person_id`: {stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    assert_eq!(spent(&ledger, "analyst"), 0.0);
    let (_, log, _) = run(&mut cmd(&ledger, "analyst", &["audit", "log"]));
    assert!(log.contains("rejected"), "{log}");
}

/// The person column in the output is rejected with its place, in a plain projection and
/// among other columns.
#[test]
fn the_person_column_in_the_output_is_rejected_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    for (sql, place) in [
        ("SELECT person_id FROM person\n", "p.sql:1:8"),
        ("SELECT sex,\n  person_id\nFROM person\n", "p.sql:2:3"),
    ] {
        let file = write_sql(dir.path(), "p.sql", sql);
        let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &file]));
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("the person column cannot appear in the output"),
            "{stderr}"
        );
        assert!(stderr.contains(place), "{sql}: {stderr}");
    }
}

#[test]
fn the_session_reads_no_files_and_changes_no_settings() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let person = sample_data().join("person.parquet");
    let attempts = [
        format!("SELECT COUNT(*) FROM '{}'", person.display()),
        format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}'",
            person.display()
        ),
        format!(
            "COPY (SELECT * FROM person) TO '{}/leak.csv'",
            dir.path().display()
        ),
        "SET datafusion.catalog.information_schema = true".to_owned(),
        "SELECT COUNT(*) FROM information_schema.tables".to_owned(),
        "SELECT COUNT(*) FROM datafusion.public.person".to_owned(),
        "SELECT COUNT(*) FROM read_parquet('x.parquet')".to_owned(),
        "EXPLAIN ANALYZE SELECT COUNT(*) FROM person".to_owned(),
    ];
    for (i, attempt) in attempts.iter().enumerate() {
        let sql = write_sql(dir.path(), &format!("a{i}.sql"), attempt);
        let (out, stdout, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &sql]));
        assert_eq!(out.status.code(), Some(1), "{attempt}: {stderr}");
        assert!(stdout.is_empty(), "{attempt}: {stdout}");
        assert!(stderr.contains("query rejected"), "{attempt}: {stderr}");
    }
    assert!(!dir.path().join("leak.csv").exists());
    assert_eq!(spent(&ledger, "analyst"), 0.0);
}

#[test]
fn a_query_beyond_the_budget_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    // The approver's budget is epsilon 1.
    let a = write_sql(
        dir.path(),
        "a.sql",
        "-- carelens: epsilon=0.75\nSELECT COUNT(*) AS n FROM person\n",
    );
    let b = write_sql(
        dir.path(),
        "b.sql",
        "-- carelens: epsilon=0.75\nSELECT COUNT(*) AS n FROM encounter\n",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "approver", &["query", &a]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (out, stdout, stderr) = run(&mut cmd(&ledger, "approver", &["query", &b]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("error: query refused: the query needs epsilon 0.75"),
        "{stderr}"
    );
    assert!((spent(&ledger, "approver") - 0.75).abs() < 1e-9);
}

#[test]
fn explain_shows_cost_and_error_and_spends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(dir.path(), "sex.sql", SEX_QUERY);
    let (out, stdout, stderr) = run(&mut cmd(&ledger, "analyst", &["explain", &sql]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("privacy: epsilon 0.5 and delta 0"),
        "{stdout}"
    );
    assert!(stdout.contains("95% error"), "{stdout}");
    assert!(stdout.contains("L0 = 1"), "{stdout}");
    assert!(stdout.contains("rewritten plan"), "{stdout}");
    assert!(!ledger.exists(), "explain does not touch the ledger");

    let bad = write_sql(
        dir.path(),
        "bad.sql",
        "SELECT MAX(year_of_birth) FROM person",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["explain", &bad]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("one person's value"), "{stderr}");
}

#[test]
fn a_cast_that_fails_on_some_rows_does_not_fail_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    // Casting an LSOA code (E01…) to an integer fails on every row; whether a query fails
    // must not depend on the data (it would be an answer without noise), so casts are
    // TRY_CASTs and the failing rows are NULL.
    let sql = write_sql(
        dir.path(),
        "cast.sql",
        "SELECT COUNT(*) AS n FROM person WHERE CAST(lsoa21 AS INT) > 0 OR 1 / (imd_decile - imd_decile) > 0",
    );
    let (out, stdout, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["query", &sql, "--format", "csv"],
    ));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.starts_with("n\n"), "{stdout}");
}

/// Charges `user` for the query in `sql` through the ledger, as `carelens query` would,
/// and logs that it failed while running: the engine is total, so a failure after the
/// charge cannot be provoked with SQL. Returns the charge's sequence number.
fn charge_and_fail(ledger: &Path, user: &str, sql: &str, message: &str) -> i64 {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    let prepared = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let engine = carelens_engine::Engine::open(&catalog).await.unwrap();
        engine.prepare(sql).await.unwrap()
    });
    let cache_key = prepared.cache_key(&catalog.data_version().unwrap());
    let record = carelens_ledger::QueryRecord {
        sql,
        plan_hash: prepared.plan_hash(),
        cache_key: &cache_key,
    };
    let mut ledger = carelens_ledger::Ledger::open(
        ledger,
        carelens_ledger::Budgets::from_catalog(catalog.catalog()),
    )
    .unwrap();
    let carelens_ledger::ChargeOutcome::Charged(receipt) =
        ledger.charge(user, &record, &prepared.charge()).unwrap()
    else {
        panic!("a fresh budget covers the query");
    };
    ledger.record_error(&receipt, message).unwrap();
    receipt.seq
}

#[test]
fn a_failed_charged_query_asked_again_is_served_from_the_ledger_at_no_cost() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(dir.path(), "sex.sql", SEX_QUERY);
    let message = "the query failed while running (out of memory); details are withheld \
                   because they could show values from records";
    let charge = charge_and_fail(&ledger, "analyst", SEX_QUERY, message);
    assert!((spent(&ledger, "analyst") - 0.5).abs() < 1e-9);

    // Asked again, by the same analyst and by someone else: the failure, not a new run.
    for user in ["analyst", "approver"] {
        let (out, stdout, stderr) = run(&mut cmd(&ledger, user, &["query", &sql]));
        assert_eq!(out.status.code(), Some(2), "{user}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains(message)
                && stderr.contains("served from the ledger at no cost")
                && stderr.contains(&format!("failed after its charge in entry {charge}")),
            "{user}: {stderr}"
        );
    }
    // `carelens run` answers it the same way.
    let out_dir = dir.path().join("out");
    let (out, stdout, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["run", &sql, "--out", out_dir.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stdout.contains("0 of 1 released"), "{stdout}");
    assert!(
        stderr.contains("failed (epsilon 0 spent)")
            && stderr.contains("served from the ledger at no cost"),
        "{stderr}"
    );
    assert!(!out_dir.join("sex.csv").exists());
    assert!((spent(&ledger, "analyst") - 0.5).abs() < 1e-9, "paid once");
    assert_eq!(spent(&ledger, "approver"), 0.0);

    // Approvers see who had charged queries fail, and list the failures.
    let (out, stdout, _) = run(&mut cmd(
        &ledger,
        "approver",
        &["budget", "--format", "json"],
    ));
    assert!(out.status.success());
    let lines: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let line = |name: &str| {
        lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(line("analyst")["failed"]["count"], 1);
    assert_eq!(line("analyst")["failed"]["epsilon"], 0.5);
    assert_eq!(line("approver")["failed"]["count"], 0);
    assert_eq!(line("dataset")["failed"]["count"], 1);
    let (_, table, _) = run(&mut cmd(&ledger, "admin", &["budget"]));
    let analyst = table.lines().find(|l| l.starts_with("analyst")).unwrap();
    assert!(analyst.ends_with("1          0.5"), "{table}");
    // An analyst sees their own count, not the dataset's.
    let (_, stdout, _) = run(&mut cmd(
        &ledger,
        "analyst",
        &["budget", "--format", "json"],
    ));
    let own: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(own[0]["failed"], serde_json::Value::Null);
    assert_eq!(own[1]["failed"]["count"], 1);

    let (out, log, stderr) = run(&mut cmd(
        &ledger,
        "approver",
        &["audit", "log", "--event", "error"],
    ));
    assert!(out.status.success(), "{stderr}");
    let entries: Vec<&str> = log.lines().filter(|l| !l.starts_with("       ")).collect();
    assert_eq!(entries.len(), 1, "{log}");
    assert!(
        entries[0].contains(&format!("analyst (analyst)  error (of entry {charge})")),
        "{log}"
    );
    assert!(log.contains("SELECT sex, COUNT(DISTINCT person_id)") && log.contains(message));
    let (_, served, _) = run(&mut cmd(
        &ledger,
        "approver",
        &[
            "audit",
            "log",
            "--event",
            "cached_failure",
            "--format",
            "json",
        ],
    ));
    let served: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(served.as_array().unwrap().len(), 3, "{served}");
    let (out, _, stderr) = run(&mut cmd(
        &ledger,
        "approver",
        &["audit", "log", "--event", "failure"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("cached_failure"),
        "the kinds are listed: {stderr}"
    );
    let (out, _, _) = run(&mut cmd(&ledger, "approver", &["audit", "verify"]));
    assert!(out.status.success());
}

#[test]
fn an_epsilon_below_the_policy_minimum_is_rejected_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(
        dir.path(),
        "tiny.sql",
        "-- carelens: epsilon=0.001\nSELECT COUNT(*) AS n FROM person\n",
    );
    let (out, stdout, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &sql]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    let stderr = after_creation_note(&stderr);
    assert!(
        stderr.starts_with(
            "error: query rejected: epsilon = 0.001 is below the policy's minimum of 0.01\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: ask for epsilon of at least 0.01"),
        "{stderr}"
    );
    // The minimum itself is allowed.
    let at_min = write_sql(
        dir.path(),
        "min.sql",
        "-- carelens: epsilon=0.01\nSELECT COUNT(*) AS n FROM person\n",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &at_min]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!((spent(&ledger, "analyst") - 0.01).abs() < 1e-9);

    // An ε set from outside the query (a cohort request's) meets the same minimum.
    let cohort = crate::common::repo().join("queries/cohort_t2dm_high_hba1c.sql");
    let (out, _, stderr) = run(&mut cmd(
        &ledger,
        "researcher",
        &[
            "request",
            "submit",
            cohort.to_str().unwrap(),
            "--purpose",
            "feasibility",
            "--epsilon",
            "0.005",
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("below the policy's minimum of 0.01"),
        "{stderr}"
    );
}

#[test]
fn a_catalog_whose_minimum_epsilon_is_above_its_default_is_refused() {
    let dir = sample_with_catalog_edit("\nepsilon_min = 0.01\n", "\nepsilon_min = 1.5\n");
    let config = dir.path().join("carelens.toml");
    let (out, _, stderr) = run(carelens().arg("catalog").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("policy.epsilon_min")
            && stderr.contains("the per-query minimum epsilon 1.5 is above the default 1")
            && stderr.contains("lower `epsilon_min` or raise `epsilon_default`"),
        "{stderr}"
    );
    let dir = sample_with_catalog_edit("\nepsilon_min = 0.01\n", "\nepsilon_min = 0\n");
    let config = dir.path().join("carelens.toml");
    let (out, _, stderr) = run(carelens().arg("catalog").arg("--config").arg(&config));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("epsilon must be greater than 0"),
        "{stderr}"
    );
}

/// The wire format's promise (docs/wire-format.md): the JSON a caller receives is exactly
/// the stored release, whose SHA-256 is in its `released` audit entry — for a new release,
/// for the same answer given again, and for a file written with `--output` — and
/// `audit check-release` vouches for those bytes and for no others.
#[test]
fn a_printed_release_hashes_to_its_audit_entry() {
    use sha2::{Digest, Sha256};

    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(dir.path(), "sex.sql", SEX_QUERY);
    let query = |extra: &[&str]| {
        let mut args = vec!["query", sql.as_str(), "--format", "json"];
        args.extend_from_slice(extra);
        let (out, stdout, stderr) = run(&mut cmd(&ledger, "analyst", &args));
        assert!(out.status.success(), "{stderr}");
        stdout
    };
    let printed = query(&[]);
    let hash: String = Sha256::digest(printed.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let release_id = serde_json::from_str::<serde_json::Value>(&printed).unwrap()["release_id"]
        .as_i64()
        .unwrap();

    let (out, log, stderr) = run(&mut cmd(
        &ledger,
        "analyst",
        &["audit", "log", "--event", "released", "--format", "json"],
    ));
    assert!(out.status.success(), "{stderr}");
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{log:#}");
    assert_eq!(entries[0]["result_hash"], hash.as_str());
    assert_eq!(entries[0]["seq"].as_i64(), Some(release_id));

    // Asked again: the same bytes, not a re-rendering.
    assert_eq!(query(&[]), printed);

    // A file written with --output, checked by anyone holding it and the ledger.
    let file = dir.path().join("release.json");
    query(&["--output", file.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    let check = |path: &Path| {
        run(&mut cmd(
            &ledger,
            "analyst",
            &["audit", "check-release", path.to_str().unwrap()],
        ))
    };
    let (out, stdout, stderr) = check(&file);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("is release {release_id} of"))
            && stdout.contains(&hash)
            && stdout.contains("the log is intact"),
        "{stdout}"
    );

    // The same release re-formatted, or with one value changed, is not vouched for.
    let value: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let compact = dir.path().join("compact.json");
    std::fs::write(&compact, serde_json::to_string(&value).unwrap()).unwrap();
    let changed = dir.path().join("changed.json");
    std::fs::write(&changed, printed.replacen("\"F\"", "\"M\"", 1)).unwrap();
    for path in [&compact, &changed] {
        let (out, _, stderr) = check(path);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("is not a release of"), "{stderr}");
    }
}

/// `stderr` after the note that the first command over a new ledger created it.
fn after_creation_note(stderr: &str) -> &str {
    let (note, rest) = stderr.split_once('\n').unwrap_or(("", stderr));
    assert!(
        note.starts_with("note: created a new ledger at"),
        "{stderr}"
    );
    rest
}

/// A result that cannot be written is not paid for: a missing folder or a folder given as
/// the output is refused before anything runs; a write that fails after the release (a
/// full disk: /dev/full) says the release is stored, what it cost, and how to get it again
/// at no cost — and asking again does.
#[test]
fn an_unwritable_output_is_refused_before_the_charge() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(
        dir.path(),
        "n.sql",
        "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person\n",
    );
    let missing = dir.path().join("no").join("such").join("out.csv");
    for output in [missing.as_path(), dir.path()] {
        let (out, _, stderr) = run(cmd(&ledger, "analyst", &["query", &sql, "--format", "csv"])
            .arg("--output")
            .arg(output));
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("nothing was run or spent"), "{stderr}");
    }
    assert!(
        !ledger.exists(),
        "refused before the ledger was even opened"
    );

    if std::path::Path::new("/dev/full").exists() {
        let (out, _, stderr) = run(cmd(&ledger, "analyst", &["query", &sql, "--format", "csv"])
            .args(["--output", "/dev/full"]));
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("the release is stored in the ledger all the same as release")
                && stderr.contains("epsilon 0.5")
                && stderr.contains("at no cost"),
            "{stderr}"
        );
        assert!((spent(&ledger, "analyst") - 0.5).abs() < 1e-9);
        // (`--out`, as `run` spells it, is the same option.)
        let written = dir.path().join("n.csv");
        let (out, _, stderr) = run(cmd(&ledger, "analyst", &["query", &sql, "--format", "csv"])
            .arg("--out")
            .arg(&written));
        assert!(out.status.success(), "{stderr}");
        assert!(
            std::fs::read_to_string(&written)
                .unwrap()
                .starts_with("n\n")
        );
        assert!(
            (spent(&ledger, "analyst") - 0.5).abs() < 1e-9,
            "charged once"
        );
    }
}

/// A misspelt column and a syntax error are rejections like any other: their place in the
/// file, what is wrong, a hint (DataFusion's suggestion for the column), exit 1, logged
/// at no cost — said once, not as a chain of causes.
#[test]
fn unknown_columns_and_syntax_errors_are_rejections_with_a_place() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let misspelt = write_sql(
        dir.path(),
        "misspelt.sql",
        "SELECT sex, COUNT(*) AS n\nFROM person\nWHERE year_of_brith > 1950\nGROUP BY sex\n",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &misspelt]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let stderr = after_creation_note(&stderr);
    assert!(
        stderr.starts_with("error: query rejected: there is no column `year_of_brith` here\n"),
        "{stderr}"
    );
    assert!(stderr.contains("misspelt.sql:3:7"), "{stderr}");
    assert!(
        stderr.contains("did you mean 'person.year_of_birth'?"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("year_of_brith").count(),
        1,
        "said once: {stderr}"
    );

    let broken = write_sql(
        dir.path(),
        "broken.sql",
        "SELECT sex, COUNT(*) AS n\nFROM person\nWHERE year_of_birth > \nGROUP BY sex\n",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &broken]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: query rejected: the SQL does not parse: Expected:"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.sql:4:7"), "{stderr}");
    assert!(!stderr.contains("ParserError"), "{stderr}");

    // Where DataFusion gives no place: a name only in GROUP BY is placed at its first
    // appearance as a name (not in the comment or the string before it) ...
    let grouped = write_sql(
        dir.path(),
        "grouped.sql",
        "-- people by sexx
SELECT COUNT(*) AS n
FROM person WHERE sex <> 'sexx'
GROUP BY  sexx
",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &grouped]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("there is no column `sexx` here"),
        "{stderr}"
    );
    assert!(stderr.contains("grouped.sql:4:11"), "{stderr}");
    // ... and SQL that stops short is placed just after its last token.
    let cut = write_sql(
        dir.path(),
        "cut.sql",
        "SELECT sex, COUNT(*) AS n
FROM person
GROUP BY -- the key

",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &cut]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("found: EOF"), "{stderr}");
    assert!(stderr.contains("cut.sql:3:9"), "{stderr}");

    let (_, log, _) = run(&mut cmd(
        &ledger,
        "analyst",
        &["audit", "log", "--event", "rejected"],
    ));
    assert_eq!(log.matches("query rejected:").count(), 4, "{log}");
    assert_eq!(spent(&ledger, "analyst"), 0.0);
}

/// The audit log shows the query, not its header comment.
#[test]
fn the_audit_log_shows_the_query_not_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let sql = write_sql(
        dir.path(),
        "titled.sql",
        "-- People in the sample\n-- What: a headcount.\n-- carelens: epsilon=0.5\n\nSELECT COUNT(*) AS n\nFROM person\n",
    );
    let (out, _, stderr) = run(&mut cmd(&ledger, "analyst", &["query", &sql]));
    assert!(out.status.success(), "{stderr}");
    let (_, log, _) = run(&mut cmd(
        &ledger,
        "analyst",
        &["audit", "log", "--event", "released"],
    ));
    assert!(log.contains("SELECT COUNT(*) AS n FROM person"), "{log}");
    assert!(!log.contains("People in the sample"), "{log}");
}
