//! `carelens request` on the sample data: the whole workflow from the command line, four
//! eyes, a changed query refused, one charge for any number of releases (also concurrent
//! ones), and the differencing flag.

use std::fs;
use std::path::Path;

use crate::common::{repo, run};
use crate::query::{cmd, spent, write_sql};

const C1: &str = "queries/cohort_t2dm_high_hba1c.sql";

/// Runs `carelens request ARGS` as `user`; returns (exit code, stdout, stderr).
fn request(ledger: &Path, user: &str, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["request"];
    full.extend_from_slice(args);
    let (out, stdout, stderr) = run(&mut cmd(ledger, user, &full));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// The id in `request N — …`.
fn id_of(stdout: &str) -> String {
    stdout
        .strip_prefix("request ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no request id in {stdout}"))
        .to_owned()
}

fn submit(ledger: &Path, user: &str, file: &str) -> (String, String) {
    let (code, stdout, stderr) = request(
        ledger,
        user,
        &["submit", file, "--purpose", "feasibility of a trial"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    (id_of(&stdout), stdout)
}

/// The id of C1, submitted by the researcher and approved by the approver.
fn approved_c1(ledger: &Path) -> String {
    let c1 = repo().join(C1);
    let (id, _) = submit(ledger, "researcher", c1.to_str().unwrap());
    let (code, _, stderr) = request(ledger, "approver", &["approve", &id]);
    assert_eq!(code, 0, "{stderr}");
    id
}

#[test]
fn a_cohort_count_is_submitted_approved_and_released_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let c1 = repo().join(C1);
    let (id, stdout) = submit(&ledger, "researcher", c1.to_str().unwrap());
    assert!(stdout.contains("— submitted"), "{stdout}");
    assert!(
        stdout.contains("95% error ±6"),
        "the cost is shown: {stdout}"
    );
    assert_eq!(
        spent(&ledger, "researcher"),
        0.0,
        "submitting spends nothing"
    );

    // Not before approval, not by someone else (who does not learn it exists), and not
    // approved by its requester.
    let (code, _, stderr) = request(&ledger, "researcher", &["release", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot be released"), "{stderr}");
    let (code, _, stderr) = request(&ledger, "analyst", &["release", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no cohort request"), "{stderr}");
    let (code, _, stderr) = request(&ledger, "researcher", &["approve", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("only an approver or admin"), "{stderr}");

    let (code, stdout, stderr) = request(
        &ledger,
        "approver",
        &[
            "approve",
            &id,
            "--epsilon",
            "0.4",
            "--note",
            "definition checked",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("— approved") && stdout.contains("for epsilon 0.4"),
        "{stdout}"
    );

    let (code, first, stderr) =
        request(&ledger, "researcher", &["release", &id, "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    let n: f64 = first.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(n > 100.0 && n % 5.0 == 0.0, "{first}");
    assert!((spent(&ledger, "researcher") - 0.4).abs() < 1e-9);

    // Again: the same answer, no cost.
    let (code, second, stderr) =
        request(&ledger, "researcher", &["release", &id, "--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first, second);
    assert!((spent(&ledger, "researcher") - 0.4).abs() < 1e-9);
    let (code, _, stderr) = request(&ledger, "approver", &["reject", &id, "--note", "late"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is released"), "{stderr}");

    let (_, listed, _) = request(&ledger, "approver", &["list"]);
    assert!(listed.contains("released"), "{listed}");
    let (out, log, _) = run(&mut cmd(&ledger, "approver", &["audit", "log"]));
    assert!(out.status.success());
    for event in [
        "request_submitted",
        "request_approved",
        "charged",
        "released",
        "request_released",
        "cached",
    ] {
        assert!(
            log.contains(event),
            "{event} missing from the audit log:\n{log}"
        );
    }
    let (out, verified, _) = run(&mut cmd(&ledger, "approver", &["audit", "verify"]));
    assert!(out.status.success(), "{verified}");
}

#[test]
fn an_approver_cannot_approve_their_own_request() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let c1 = repo().join(C1);
    let (id, _) = submit(&ledger, "approver", c1.to_str().unwrap());
    let (code, _, stderr) = request(&ledger, "approver", &["approve", &id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("four eyes"), "{stderr}");
    let (code, stdout, stderr) = request(&ledger, "admin", &["approve", &id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn a_query_changed_after_approval_is_refused_and_nothing_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let c1 = repo().join(C1);
    let id = approved_c1(&ledger);
    let sql = fs::read_to_string(&c1).unwrap();
    let widened = write_sql(
        dir.path(),
        "widened.sql",
        &sql.replace("BETWEEN 40 AND 70", "BETWEEN 30 AND 70"),
    );
    let (code, stdout, stderr) =
        request(&ledger, "researcher", &["release", &id, "--sql", &widened]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stderr.contains("not the query approved"), "{stderr}");
    assert_eq!(spent(&ledger, "researcher"), 0.0);
    // Other DP parameters in the file's directives are not what was approved either.
    let loosened = write_sql(
        dir.path(),
        "loosened.sql",
        &sql.replace(
            "-- carelens: epsilon=0.5",
            "-- carelens: epsilon=0.5, max_rows=20",
        ),
    );
    let (code, _, stderr) = request(&ledger, "researcher", &["release", &id, "--sql", &loosened]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("was approved with the DP parameters"),
        "{stderr}"
    );
    assert_eq!(spent(&ledger, "researcher"), 0.0);
    // Comments may change: the plan is what was approved.
    let recommented = write_sql(dir.path(), "same.sql", &format!("-- my copy\n{sql}"));
    let (code, _, stderr) = request(
        &ledger,
        "researcher",
        &["release", &id, "--sql", &recommented],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn concurrent_releases_of_one_request_charge_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let id = approved_c1(&ledger);
    let children: Vec<_> = (0..3)
        .map(|_| {
            cmd(
                &ledger,
                "researcher",
                &["request", "release", &id, "--format", "csv"],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let answers: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .collect();
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert!(
        (spent(&ledger, "researcher") - 0.5).abs() < 1e-9,
        "charged once"
    );
    let (_, log, _) = run(&mut cmd(&ledger, "approver", &["audit", "log"]));
    assert_eq!(log.matches("request_released").count(), 1, "{log}");
}

#[test]
fn a_near_duplicate_cohort_is_flagged_and_an_unrelated_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let c1 = repo().join(C1);
    let (id, _) = submit(&ledger, "researcher", c1.to_str().unwrap());
    request(&ledger, "approver", &["approve", &id]);
    let (code, _, stderr) = request(&ledger, "researcher", &["release", &id]);
    assert_eq!(code, 0, "{stderr}");

    let sql = fs::read_to_string(&c1).unwrap();
    let near = write_sql(dir.path(), "c1_57.sql", &sql.replace("> 58", "> 57"));
    let (near_id, stdout) = submit(&ledger, "researcher", &near);
    assert!(
        stdout.contains(&format!(
            "FLAG: possible differencing: the definition differs from request {id}"
        )) && stdout.contains("58 became 57"),
        "{stdout}"
    );
    // The approver sees the flag, and must give a reason to approve.
    let (_, shown, _) = request(&ledger, "approver", &["show", &near_id]);
    assert!(shown.contains("FLAG:"), "{shown}");
    let (code, _, stderr) = request(&ledger, "approver", &["approve", &near_id]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is flagged"), "{stderr}");

    let unrelated = repo().join("queries/cohort_af_no_anticoagulant.sql");
    let (_, stdout) = submit(&ledger, "researcher", unrelated.to_str().unwrap());
    assert!(!stdout.contains("FLAG"), "{stdout}");
}

#[test]
fn researchers_ask_through_requests_not_queries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let c1 = repo().join(C1);
    let (out, _, stderr) = run(&mut cmd(
        &ledger,
        "researcher",
        &["query", c1.to_str().unwrap()],
    ));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("carelens request submit"), "{stderr}");
    let (out, _, stderr) = run(&mut cmd(
        &ledger,
        "researcher",
        &[
            "run",
            c1.to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("carelens request submit"), "{stderr}");
    assert_eq!(spent(&ledger, "researcher"), 0.0);
}

/// The README's request example runs as shown: its second file exists, is flagged as
/// possible differencing against the first, and cannot be approved without a note.
#[test]
fn the_readme_request_example_runs_as_shown() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("request submit examples/requests/hba1c_57.sql"));
    approved_c1(&ledger);
    let variant = repo().join("examples/requests/hba1c_57.sql");
    let (id, stdout) = submit(&ledger, "researcher", variant.to_str().unwrap());
    assert!(
        stdout.contains("FLAG: possible differencing") && stdout.contains("(58 became 57)"),
        "{stdout}"
    );
    let (code, _, stderr) = request(&ledger, "approver", &["approve", &id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is flagged"), "{stderr}");
}
