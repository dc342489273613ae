//! `carelens budget` and `carelens audit` on the committed sample data, with the ledger in
//! a temporary folder (never inside `sample-data/`).

use std::path::Path;
use std::process::Command;

use crate::common::{carelens, run, sample_data};

/// `carelens <args>` against the sample catalog and a ledger at `ledger`.
fn ledger_cmd(ledger: &Path, args: &[&str]) -> Command {
    let mut cmd = carelens();
    cmd.args(args)
        .arg("--config")
        .arg(sample_data().join("carelens.toml"))
        .env("CARELENS_LEDGER", ledger)
        .env_remove("CARELENS_USER");
    cmd
}

/// A new ledger at `path`, with the sample catalog's budgets, as the first command that
/// spends makes it.
fn new_ledger(path: &Path) {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    let ledger = carelens_ledger::Ledger::open(
        path,
        carelens_ledger::Budgets::from_catalog(catalog.catalog()),
    )
    .unwrap();
    assert!(ledger.created());
}

#[test]
fn budget_shows_a_fresh_ledger_for_the_acting_user() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    new_ledger(&ledger);
    let (out, stdout, stderr) =
        run(ledger_cmd(&ledger, &["budget"]).env("CARELENS_USER", "analyst"));
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("who"), "{stdout}");
    assert!(
        lines[1].starts_with("(dataset)") && lines[1].contains("20"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("analyst") && lines[2].contains("15"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("researcher"),
        "an analyst sees only their own line: {stdout}"
    );

    // An admin sees everyone, as JSON too.
    let (out, stdout, _) = run(&mut ledger_cmd(
        &ledger,
        &["budget", "--user", "admin", "--format", "json"],
    ));
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["dataset", "analyst", "researcher", "approver", "admin"]
    );
    assert_eq!(json[1]["remaining"]["epsilon"], 15.0);
    assert_eq!(json[1]["spent"]["epsilon"], 0.0);
}

#[test]
fn unknown_or_missing_users_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let (out, _, stderr) = run(&mut ledger_cmd(&ledger, &["budget", "--user", "mallory"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unknown user `mallory`"), "{stderr}");
    let (out, _, stderr) = run(&mut ledger_cmd(&ledger, &["budget"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--user NAME or CARELENS_USER"), "{stderr}");
    assert!(!ledger.exists(), "nothing is created for a refused user");
}

#[test]
fn audit_verify_and_log_on_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    new_ledger(&ledger);
    let (out, stdout, stderr) = run(&mut ledger_cmd(&ledger, &["audit", "verify"]));
    assert!(out.status.success(), "{stderr}");
    // Five budget grants: the dataset and four users.
    assert!(
        stdout.starts_with("audit log intact: 5 entries"),
        "{stdout}"
    );
    let head = stdout
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap()
        .to_owned();
    assert!(head.starts_with("5:"), "{stdout}");
    let (out, stdout, _) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "verify", "--expect-head", &head],
    ));
    assert!(out.status.success());
    assert!(
        stdout.contains("the recorded head is still in the log"),
        "{stdout}"
    );
    let wrong = format!("5:{}", "0".repeat(64));
    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "verify", "--expect-head", &wrong],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("rewritten"), "{stderr}");
    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "verify", "--expect-head", "five"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("SEQ:HASH"), "{stderr}");

    let (out, stdout, _) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "log", "--user", "analyst"],
    ));
    assert!(out.status.success());
    // An analyst sees only their own entries: their budget grant.
    let entries: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("       "))
        .collect();
    assert_eq!(entries.len(), 1, "{stdout}");
    assert!(entries[0].contains("analyst (analyst)  budget"), "{stdout}");

    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "log", "--user", "analyst", "--of", "admin"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("only approvers and admins"), "{stderr}");

    let (out, stdout, _) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "log", "--user", "admin", "--format", "json"],
    ));
    assert!(out.status.success());
    let entries: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 5);
    assert_eq!(entries[0]["event"], "budget");

    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "log", "--user", "admin", "--since", "26/11/2026"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("YYYY-MM-DD"), "{stderr}");
}

#[test]
fn a_tampered_ledger_fails_verify_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    new_ledger(&ledger);
    assert!(
        run(&mut ledger_cmd(&ledger, &["audit", "verify"]))
            .0
            .status
            .success()
    );
    // Edit an entry behind carelens' back: a budget raised in the log itself.
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET params = replace(params, '10000000000000', '99000000000000') WHERE seq = 2;",
    )
    .unwrap();
    drop(conn);
    let (out, _, stderr) = run(&mut ledger_cmd(&ledger, &["audit", "verify"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("broken at entry 2"), "{stderr}");
}

/// `carelens token`: the secret is printed once, on standard output alone; the list and
/// the log hold no secret; a revoked token is marked; an unknown user gets no token.
#[test]
fn tokens_are_issued_once_listed_without_secrets_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let (out, secret, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["token", "issue", "--user", "analyst", "--expires", "30d"],
    ));
    assert!(out.status.success(), "{stderr}");
    let secret = secret.trim();
    assert!(
        secret.starts_with("carelens_") && secret.len() == 9 + 64,
        "{secret}"
    );
    assert!(
        !stderr.contains(secret) && stderr.contains("shown only now"),
        "{stderr}"
    );
    // The first command that spends creates the ledger, and says so.
    assert!(stderr.starts_with("note: created a new ledger"), "{stderr}");
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("token "))
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();

    let (out, listed, _) = run(&mut ledger_cmd(&ledger, &["token", "list"]));
    assert!(out.status.success());
    assert!(
        listed.contains("analyst") && !listed.contains(&secret[9..]),
        "{listed}"
    );
    let (out, revoked, stderr) = run(&mut ledger_cmd(&ledger, &["token", "revoke", &id]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        revoked.contains(&format!("token {id} of analyst revoked")),
        "{revoked}"
    );

    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["token", "issue", "--user", "mallory"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("unknown user `mallory`"), "{stderr}");
    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["token", "issue", "--user", "analyst", "--expires", "soon"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("not a duration"), "{stderr}");

    let (out, log, _) = run(&mut ledger_cmd(
        &ledger,
        &["audit", "log", "--user", "admin", "--format", "json"],
    ));
    assert!(out.status.success());
    assert!(log.contains("token_issued") && log.contains("token_revoked"));
    assert!(!log.contains(&secret[9..]), "the log holds no secret");
    let (out, _, _) = run(&mut ledger_cmd(&ledger, &["audit", "verify"]));
    assert!(out.status.success());
}

/// Commands that only read a ledger never create one: a mistyped path is an error naming
/// it, not a fresh "intact" ledger with full budgets; the first command that spends
/// creates it and says so.
#[test]
fn reading_a_missing_ledger_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("typo").join("ledger.sqlite");
    for args in [
        &["budget", "--user", "analyst"][..],
        &["audit", "verify"],
        &["audit", "log", "--user", "admin"],
        &["request", "list", "--user", "approver"],
        &["token", "list"],
        &[
            "register",
            "--out",
            dir.path().join("site").to_str().unwrap(),
        ],
    ] {
        let (out, _, stderr) = run(&mut ledger_cmd(&ledger, args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("there is no ledger at"),
            "{args:?}: {stderr}"
        );
        assert!(!dir.path().join("typo").exists(), "{args:?} made folders");
    }
    let query = dir.path().join("n.sql");
    std::fs::write(&query, "SELECT COUNT(*) AS n FROM person").unwrap();
    let (out, _, stderr) = run(ledger_cmd(&ledger, &["query", "--user", "analyst"]).arg(&query));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("note: created a new ledger at"), "{stderr}");
    let (out, _, stderr) = run(ledger_cmd(&ledger, &["query", "--user", "analyst"]).arg(&query));
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("created a new ledger"), "{stderr}");
}

/// `carelens register --out`: the register's page, CSV and JSON as files to publish, with
/// the charge just made and its title; other files in the folder are left alone; a log
/// that fails its check is said so on the page, and the command fails.
#[test]
fn register_writes_the_public_register_as_static_files() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let query = dir.path().join("n.sql");
    std::fs::write(
        &query,
        "-- Registered people born before 1960\n-- What: a count of them.\n-- carelens: epsilon=0.5\n\
         SELECT COUNT(*) AS n FROM person WHERE year_of_birth < 1960",
    )
    .unwrap();
    let (out, _, stderr) = run(ledger_cmd(&ledger, &["query", "--user", "analyst"]).arg(&query));
    assert!(out.status.success(), "{stderr}");
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("about.html"), "kept").unwrap();
    let (out, stdout, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["register", "--out", site.to_str().unwrap()],
    ));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("1 charges; ε 0.5 spent of the cap of ε 20"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(site.join("register.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["charges"][0]["purpose"],
        "Registered people born before 1960"
    );
    assert_eq!(json["charges"][0]["outcome"], "released");
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();
    let head = format!(
        "{}:{}",
        json["log"]["head_seq"],
        json["log"]["head_hash"].as_str().unwrap()
    );
    assert!(stdout.contains(&head), "{stdout}");
    assert!(page.contains(&format!("--expect-head {head}")));
    assert!(page.contains("Registered people born before 1960"));
    let csv = std::fs::read_to_string(site.join("register.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert_eq!(
        std::fs::read_to_string(site.join("about.html")).unwrap(),
        "kept"
    );

    // An entry edited behind carelens' back.
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET role = 'admin' WHERE event = 'charged';",
    )
    .unwrap();
    drop(conn);
    let (out, _, stderr) = run(&mut ledger_cmd(
        &ledger,
        &["register", "--out", site.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the audit log failed its check"),
        "{stderr}"
    );
    let page = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(page.contains("The audit log failed its check"));
    assert!(!page.contains("--expect-head"));
}

/// A SQLite file that is not a ledger is refused before anything in it changes (it was
/// switched to WAL, rewriting its header, before the refusal).
#[test]
fn a_foreign_sqlite_file_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("practice.sqlite");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE visits (id INTEGER); INSERT INTO visits VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let query = dir.path().join("n.sql");
    std::fs::write(&query, "SELECT COUNT(*) AS n FROM person").unwrap();
    for args in [
        &["query", "--user", "analyst"][..],
        &["budget", "--user", "analyst"],
    ] {
        let mut cmd = ledger_cmd(&foreign, args);
        if args[0] == "query" {
            cmd.arg(&query);
        }
        let (out, _, stderr) = run(&mut cmd);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("not a carelens ledger"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&foreign).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
    let wal = dir.path().join("practice.sqlite-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

/// A copy of the sample extract in `dir`, to damage.
fn sample_copy(dir: &Path) -> std::path::PathBuf {
    let copy = dir.join("extract");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(sample_data()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    copy
}

/// Files that no longer match the catalog are refused before anything is charged: a table
/// replaced by a file of other columns stops every query at once, naming the fix, and the
/// budget is untouched.
#[test]
fn an_extract_that_no_longer_matches_the_catalog_is_refused_before_the_charge() {
    let dir = tempfile::tempdir().unwrap();
    let extract = sample_copy(dir.path());
    std::fs::copy(
        extract.join("condition.parquet"),
        extract.join("person.parquet"),
    )
    .unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let query = dir.path().join("n.sql");
    std::fs::write(&query, "SELECT COUNT(*) AS n FROM medication").unwrap();
    let (out, _, stderr) = run(carelens()
        .args(["query", "--user", "analyst", "--config"])
        .arg(extract.join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger)
        .arg(&query));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the extract no longer matches the catalog; nothing was run or spent"),
        "{stderr}"
    );
    assert!(stderr.contains("person.parquet"), "{stderr}");
}

/// Random bytes in a data page pass the footer check but not `catalog --deep`, which
/// names the damaged file; on the intact extract it prints each file's fingerprint.
#[test]
fn catalog_deep_finds_a_damaged_page_the_footer_check_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let extract = sample_copy(dir.path());
    let catalog = |deep: bool| {
        let mut cmd = carelens();
        cmd.arg("catalog")
            .arg("--config")
            .arg(extract.join("carelens.toml"));
        if deep {
            cmd.arg("--deep");
        }
        run(&mut cmd)
    };
    let (out, stdout, stderr) = catalog(true);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("every page read"), "{stdout}");
    assert!(stdout.contains("  person.parquet  20000 rows"), "{stdout}");
    // The check is recorded, with the person table found to hold one row per person (the
    // engine then does not count it again at every start).
    let record = std::fs::read_to_string(extract.join(".carelens/checked.toml")).unwrap();
    assert!(
        record.contains("one_row_per_person = [\"person\"]"),
        "{record}"
    );

    // Bytes overwritten at the start of a column's data page (its header), as a bad disk
    // block would; the footer is untouched. (Damage inside compressed values can decode
    // to other values unnoticed: the files carry no page checksums.)
    let file = extract.join("encounter.parquet");
    let offset = {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        let chunk = reader.metadata().row_group(0).column(1).clone();
        usize::try_from(chunk.data_page_offset()).unwrap()
    };
    let original = std::fs::read(&file).unwrap();
    let mut bytes = original.clone();
    for (i, b) in bytes[offset..offset + 64].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(89);
    }
    std::fs::write(&file, bytes).unwrap();
    let (out, _, stderr) = catalog(false);
    assert!(out.status.success(), "the footers are intact: {stderr}");
    let (out, _, stderr) = catalog(true);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("encounter.parquet is damaged: a page of it cannot be read"),
        "{stderr}"
    );

    // The first check was recorded: a query on the changed files is refused before its
    // charge, also after the failed check, and after the file is restored until it is
    // checked again.
    let ledger = dir.path().join("ledger.sqlite");
    let query = dir.path().join("q.sql");
    std::fs::write(&query, "SELECT COUNT(*) AS n FROM encounter").unwrap();
    let ask = || {
        run(carelens()
            .arg("query")
            .arg(&query)
            .arg("--config")
            .arg(extract.join("carelens.toml"))
            .arg("--ledger")
            .arg(&ledger)
            .arg("--user")
            .arg("analyst"))
    };
    let (out, _, stderr) = ask();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("changed since `carelens catalog --deep` checked them"),
        "{stderr}"
    );
    assert!(!ledger.exists(), "nothing was charged or created");
    std::fs::write(&file, &original).unwrap();
    let (out, _, stderr) = ask();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let (out, stdout, stderr) = catalog(true);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("recorded in "), "{stdout}");
    let (out, _, stderr) = ask();
    assert!(out.status.success(), "{stderr}");
}

/// With `noise = "gaussian"` every budget composes in zCDP: explain states what a query
/// adds in ρ, the ledger stores each charge's ρ beside its (ε, δ), and `budget` shows ρ
/// spent with ε spent as its conversion at the budget's δ — less than the charges' ε
/// added up.
#[test]
fn gaussian_noise_budgets_compose_in_zcdp() {
    let dir =
        crate::common::sample_with_catalog_edit("noise = \"laplace\"", "noise = \"gaussian\"");
    let catalog = dir.path().join("carelens.toml");
    let ledger = dir.path().join("ledger.sqlite");
    let cmd = |args: &[&str]| {
        let mut cmd = carelens();
        cmd.args(args)
            .arg("--config")
            .arg(&catalog)
            .env("CARELENS_LEDGER", &ledger)
            .env("CARELENS_USER", "analyst");
        cmd
    };
    let sql = |i: usize| {
        let path = dir.path().join(format!("q{i}.sql"));
        std::fs::write(
            &path,
            format!(
                "-- carelens: epsilon=0.5\nSELECT COUNT(*) AS n FROM person WHERE year_of_birth < {}",
                1950 + 10 * i
            ),
        )
        .unwrap();
        path
    };
    let (out, stdout, stderr) = run(cmd(&["explain"]).arg(sql(0)));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("budget charge in zCDP: rho "), "{stdout}");

    for i in 0..4 {
        let (out, _, stderr) = run(cmd(&["query"]).arg(sql(i)));
        assert!(out.status.success(), "{stderr}");
    }
    // The charges as logged: each ε 0.5 alone, and its ρ.
    let (out, stdout, stderr) = run(&mut cmd(&[
        "audit", "log", "--user", "admin", "--format", "json",
    ]));
    assert!(out.status.success(), "{stderr}");
    let entries: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let charges: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "charged")
        .collect();
    assert_eq!(charges.len(), 4);
    let units = |e: &serde_json::Value, key: &str| e[key].as_i64().unwrap();
    let epsilon: i64 = charges.iter().map(|e| units(e, "epsilon_units")).sum();
    let rho: i64 = charges.iter().map(|e| units(e, "rho_units")).sum();
    assert_eq!(epsilon, 2_000_000_000_000, "four charges of ε 0.5");
    assert!(charges.iter().all(|e| units(e, "rho_delta_units") == 0));

    let (out, stdout, stderr) = run(&mut cmd(&["budget", "--format", "json"]));
    assert!(out.status.success(), "{stderr}");
    let lines: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let analyst = &lines.as_array().unwrap()[1];
    assert_eq!(analyst["name"], "analyst");
    // ρ spent is the charges' ρ exactly; ε spent is its conversion at the analyst's δ
    // 10⁻⁵, well below the 2.0 the four charges add up to.
    let rho_spent = analyst["rho"]["spent"].as_f64().unwrap();
    assert_eq!(rho_spent, rho as f64 / 1e12);
    let converted = carelens_privacy::zcdp_epsilon(rho_spent, 1e-5).unwrap();
    let spent = analyst["spent"]["epsilon"].as_f64().unwrap();
    assert!((spent - converted).abs() <= 1e-12, "{spent} vs {converted}");
    assert!(spent > 0.0 && spent < 1.5, "{spent}");
    assert_eq!(analyst["spent"]["delta"], 1e-5);
    let left = analyst["rho"]["remaining"].as_f64().unwrap();
    let holds = analyst["rho"]["budget"].as_f64().unwrap();
    assert!((holds - carelens_privacy::zcdp_rho_within(15.0, 1e-5).unwrap()).abs() < 1e-9);
    assert!((left - (holds - rho_spent)).abs() < 1e-9);

    let (out, stdout, stderr) = run(&mut cmd(&["budget"]));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("ρ spent") && stdout.contains("composed in zCDP"),
        "{stdout}"
    );
}
