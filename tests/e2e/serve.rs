//! `carelens serve` as an operator runs it: it refuses plain HTTP off loopback, and a
//! `kill -9` in the middle of charges loses or doubles none of them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{carelens, repo, run, sample_data};

/// Starts `carelens serve` on a free loopback port over `ledger`; the child and its
/// address (read from its first line on standard error).
/// A running `carelens serve`, killed when dropped (also when a test panics).
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(ledger: &Path) -> (Serving, SocketAddr) {
    let mut child = carelens()
        .arg("serve")
        .arg("--config")
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(ledger)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Keep reading the log so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    (Serving(child), address)
}

/// A `method path` call's bytes, with `body` as JSON (empty for a GET).
fn request(method: &str, path: &str, token: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// One HTTP/1.1 call; the status and the body, or `None` if the connection failed.
fn call(address: SocketAddr, path: &str, token: &str, body: &Value) -> Option<(u16, Vec<u8>)> {
    exchange(address, &request("POST", path, token, &body.to_string()))
}

/// One `GET path`; the status and the body as JSON.
fn get(address: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let (status, body) = exchange(address, &request("GET", path, token, "")).unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn exchange(address: SocketAddr, request: &str) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&bytes[..split])
        .split(' ')
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, bytes[split + 4..].to_vec()))
}

fn issue_token(ledger: &Path, user: &str) -> String {
    let (output, stdout, stderr) = run(carelens()
        .args(["token", "issue", "--user", user, "--config"])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(ledger));
    assert!(output.status.success(), "{stderr}");
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("carelens_"))
        .unwrap_or_else(|| panic!("no token in {stdout:?}"))
        .to_owned()
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(carelens()
        .arg("serve")
        .arg("--config")
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "0.0.0.0:0"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve plain HTTP"), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");
    assert!(
        !dir.path().join("ledger.sqlite").exists(),
        "nothing is created before the refusal"
    );

    let mut child = carelens()
        .arg("serve")
        .arg("--config")
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(dir.path().join("ledger.sqlite"))
        .args(["--listen", "0.0.0.0:0", "--insecure-http"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.starts_with("WARNING"), "{line}");
    assert!(line.contains("UNENCRYPTED"), "{line}");
}

#[test]
fn a_killed_server_loses_and_doubles_no_charge() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let token = issue_token(&ledger, "analyst");
    let queries: Vec<Value> = (0..8)
        .map(|i| {
            json!({ "sql": format!(
                "-- carelens: epsilon=0.25\nSELECT sex, COUNT(*) AS n FROM person \
                 WHERE year_of_birth >= {} GROUP BY sex",
                1930 + i
            )})
        })
        .collect();

    // Eight queries in flight at once; the server is killed while they run (each is held
    // to the one-second response quantum, so most are mid-flight at 600 ms).
    let (server, address) = start(&ledger);
    let clients: Vec<_> = queries
        .iter()
        .cloned()
        .map(|body| {
            let token = token.clone();
            std::thread::spawn(move || call(address, "/api/v1/queries", &token, &body))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    drop(server); // SIGKILL (`Child::kill`): nothing is finished or flushed
    for client in clients {
        // Answered before the kill, or cut off by it; never a failure on our side.
        if let Some((status, body)) = client.join().unwrap() {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
    }

    // After a restart the log is intact and every query is answered; each was charged
    // exactly once in all, whether it was answered before the kill, interrupted by it,
    // or not yet charged.
    let (server, address) = start(&ledger);
    for body in &queries {
        let (status, answer) = call(address, "/api/v1/queries", &token, body).unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    }
    for body in &queries {
        let (status, _) = call(address, "/api/v1/queries", &token, body).unwrap();
        assert_eq!(status, 200);
    }
    drop(server);

    let (output, stdout, stderr) = run(carelens()
        .args(["audit", "verify", "--config"])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("intact"), "{stdout}");
    let (output, stdout, stderr) = run(carelens()
        .args([
            "budget", "--user", "analyst", "--format", "json", "--config",
        ])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger));
    assert!(output.status.success(), "{stderr}");
    let lines: Value = serde_json::from_str(&stdout).unwrap();
    let own = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "analyst")
        .unwrap();
    let spent = own["spent"]["epsilon"].as_f64().unwrap();
    assert!(
        (spent - 8.0 * 0.25).abs() < 1e-9,
        "spent {spent}, not 2: {own}"
    );
}

#[test]
fn the_client_answers_as_local_mode_does() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let token = issue_token(&ledger, "analyst");
    let count = dir.path().join("count.sql");
    std::fs::write(
        &count,
        "-- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS n FROM person GROUP BY sex\n",
    )
    .unwrap();
    let rejected = dir.path().join("rows.sql");
    std::fs::write(&rejected, "SELECT COUNT(*) AS n\nFROM persons\n").unwrap();
    let (server, address) = start(&ledger);
    let url = format!("http://{address}");
    let local = |args: &[&str], file: &Path| {
        run(carelens()
            .args(args)
            .arg(file)
            .args(["--user", "analyst", "--config"])
            .arg(sample_data().join("carelens.toml"))
            .arg("--ledger")
            .arg(&ledger))
    };
    let remote = |args: &[&str], file: &Path| {
        run(carelens()
            .args(args)
            .arg(file)
            .args(["--server", &url])
            .env("CARELENS_TOKEN", &token)
            .current_dir(dir.path()))
    };

    // Released here, then answered again by the server: the same bytes.
    let (output, here, stderr) = local(&["query", "--format", "json"], &count);
    assert!(output.status.success(), "{stderr}");
    let (output, there, stderr) = remote(&["query", "--format", "json"], &count);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("at no cost"), "{stderr}");
    assert_eq!(here, there, "the client's JSON differs from local mode's");
    for format in ["table", "csv"] {
        let (_, here, _) = local(&["query", "--format", format], &count);
        let (_, there, _) = remote(&["query", "--format", format], &count);
        assert_eq!(here, there, "--format {format}");
    }
    // `explain` spends nothing and names no user or ledger.
    let (output, here, stderr) = run(carelens()
        .arg("explain")
        .arg(&count)
        .arg("--config")
        .arg(sample_data().join("carelens.toml")));
    assert!(output.status.success(), "{stderr}");
    let (output, there, stderr) = remote(&["explain"], &count);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(here, there, "explain");

    // A rejection: exit 1 and the same message, with its place in the file.
    let (output, _, here) = local(&["query"], &rejected);
    assert_eq!(output.status.code(), Some(1));
    let (output, _, there) = remote(&["query"], &rejected);
    assert_eq!(output.status.code(), Some(1), "{there}");
    assert_eq!(here, there);
    assert!(there.contains("rows.sql:2:6"), "{there}");

    // The budget as the server sees it, the same numbers as here.
    let budget = |extra: &[&str]| {
        let mut cmd = carelens();
        cmd.args(["budget", "--format", "json"]).args(extra);
        run(cmd.env("CARELENS_TOKEN", &token))
    };
    let (_, here, _) = budget(&[
        "--user",
        "analyst",
        "--config",
        sample_data().join("carelens.toml").to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    let (output, there, stderr) = budget(&["--server", &url]);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(here, there, "budget");

    // The audit log and its check, as here.
    let here_args = |args: &[&str]| {
        run(carelens()
            .args(args)
            .args(["--user", "analyst", "--config"])
            .arg(sample_data().join("carelens.toml"))
            .arg("--ledger")
            .arg(&ledger))
    };
    let there_args = |args: &[&str]| {
        run(carelens()
            .args(args)
            .args(["--server", &url])
            .env("CARELENS_TOKEN", &token))
    };
    let (output, here, stderr) = here_args(&["audit", "log", "--event", "released"]);
    assert!(output.status.success(), "{stderr}");
    let (output, there, stderr) = there_args(&["audit", "log", "--event", "released"]);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(here, there, "audit log");
    assert!(here.contains("released"), "{here}");
    let (output, here, stderr) = run(carelens()
        .args(["audit", "verify", "--config"])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger));
    assert!(output.status.success(), "{stderr}");
    let (output, there, stderr) = there_args(&["audit", "verify"]);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(here, there, "audit verify");
    let head = here
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .expect("a head")
        .to_owned();
    let (output, there, stderr) = there_args(&["audit", "verify", "--expect-head", &head]);
    assert!(output.status.success(), "{stderr}");
    assert!(
        there.contains("the recorded head is still in the log"),
        "{there}"
    );
    let other = format!("{}:{}", 1, "0".repeat(64));
    let (output, _, stderr) = there_args(&["audit", "verify", "--expect-head", &other]);
    assert!(
        !output.status.success(),
        "a head the log never held is reported"
    );
    assert!(stderr.contains("broken"), "{stderr}");

    // A wrong token is an error (exit 2) that says which variable to check.
    let (output, _, stderr) = run(carelens()
        .args(["query"])
        .arg(&count)
        .args(["--server", &url])
        .env("CARELENS_TOKEN", "clt_not-a-token"));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CARELENS_TOKEN"), "{stderr}");
    drop(server);
}

#[test]
fn the_request_workflow_runs_over_the_server_as_it_does_here() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let researcher = issue_token(&ledger, "researcher");
    let approver = issue_token(&ledger, "approver");
    let cohort = repo().join("queries/cohort_t2dm_high_hba1c.sql");
    let (server, address) = start(&ledger);
    let url = format!("http://{address}");
    let there = |token: &str, args: &[&str]| {
        run(carelens()
            .arg("request")
            .args(args)
            .args(["--server", &url])
            .env("CARELENS_TOKEN", token)
            .current_dir(dir.path()))
    };
    let here = |user: &str, args: &[&str]| {
        run(carelens()
            .arg("request")
            .args(args)
            .args(["--user", user, "--config"])
            .arg(sample_data().join("carelens.toml"))
            .arg("--ledger")
            .arg(&ledger))
    };

    let (output, submitted, stderr) = there(
        &researcher,
        &[
            "submit",
            cohort.to_str().unwrap(),
            "--purpose",
            "Feasibility of a trial",
        ],
    );
    assert!(output.status.success(), "{stderr}");
    let id = submitted
        .split_whitespace()
        .nth(1)
        .expect("request N — submitted")
        .to_owned();
    assert!(submitted.contains("— submitted"), "{submitted}");
    assert!(submitted.contains("95% error"), "{submitted}");

    // The researcher cannot decide their own; the approver can.
    let (output, _, stderr) = there(&researcher, &["approve", &id]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let (output, approved, stderr) = there(
        &approver,
        &["approve", &id, "--epsilon", "0.4", "--note", "checked"],
    );
    assert!(output.status.success(), "{stderr}");
    assert!(approved.contains("— approved"), "{approved}");

    // What the approver sees, there as here; the list as JSON for programs too.
    for args in [
        vec!["list"],
        vec!["list", "--format", "json"],
        vec!["show", id.as_str()],
    ] {
        let (output, remote, stderr) = there(&approver, &args);
        assert!(output.status.success(), "{stderr}");
        let (_, local, _) = here("approver", &args);
        assert_eq!(remote, local, "request {args:?}");
    }

    // The researcher's own copy of the SQL is checked against the approved query there as
    // here: another query is refused with nothing spent.
    let other = dir.path().join("other.sql");
    std::fs::write(
        &other,
        "SELECT COUNT(DISTINCT person_id) AS people FROM person\n",
    )
    .unwrap();
    let (output, _, stderr) = there(
        &researcher,
        &["release", &id, "--sql", other.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("not the query approved in request {id}")),
        "{stderr}"
    );

    let (_, listed, _) = here("approver", &["list", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["id"].to_string(), id, "{listed}");
    assert_eq!(listed[0]["purpose"], "Feasibility of a trial");

    // Released once (charged to the researcher) from the researcher's copy, then the same
    // answer at no cost.
    let (output, first, stderr) = there(
        &researcher,
        &[
            "release",
            &id,
            "--sql",
            cohort.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(output.status.success(), "{stderr}");
    let (output, again, stderr) = there(&researcher, &["release", &id, "--format", "json"]);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("at no cost"), "{stderr}");
    assert_eq!(first, again);
    let (_, local, _) = here("researcher", &["release", &id, "--format", "json"]);
    assert_eq!(first, local, "the stored release, byte for byte");
    drop(server);
}

#[test]
fn a_batch_runs_and_is_explained_over_the_server_as_here() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let token = issue_token(&ledger, "analyst");
    let queries = dir.path().join("q");
    std::fs::create_dir_all(&queries).unwrap();
    for (name, sql) in [
        (
            "a_by_sex.sql",
            "-- People by sex\n-- carelens: epsilon=0.5\nSELECT sex, COUNT(*) AS n FROM person GROUP BY sex\n",
        ),
        ("b_rows.sql", "SELECT COUNT(*) AS n\nFROM persons\n"),
        (
            "c_birth.sql",
            "-- carelens: epsilon=0.25\nSELECT place, AVG(year_of_birth) AS born FROM person GROUP BY place\n",
        ),
    ] {
        std::fs::write(queries.join(name), sql).unwrap();
    }
    let (server, address) = start(&ledger);
    let url = format!("http://{address}");
    let there = |args: &[&str]| {
        run(carelens()
            .args(args)
            .arg(&queries)
            .args(["--server", &url])
            .env("CARELENS_TOKEN", &token))
    };
    let here = |args: &[&str]| {
        run(carelens()
            .args(args)
            .arg(&queries)
            .args(["--user", "analyst", "--config"])
            .arg(sample_data().join("carelens.toml"))
            .arg("--ledger")
            .arg(&ledger))
    };

    // Explained: each query's cost and the total, the rejection with its place; exit 1.
    let (output, remote, stderr) = there(&["explain"]);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let (output, local, stderr) = run(carelens()
        .arg("explain")
        .arg(&queries)
        .arg("--config")
        .arg(sample_data().join("carelens.toml")));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(remote, local, "explain of a folder");
    assert!(remote.contains("b_rows.sql:2:6"), "{remote}");
    assert!(remote.contains("total: epsilon 0.75"), "{remote}");

    // Run on the server: two released and written, one rejected (exit 1), an earlier
    // result of the rejected one moved aside.
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::write(first.join("b_rows.csv"), "stale\n").unwrap();
    fn out(folder: &Path) -> [&str; 2] {
        ["--out", folder.to_str().unwrap()]
    }
    let (output, summary, stderr) = there(&[&["run"][..], &out(&first)].concat());
    assert_eq!(output.status.code(), Some(1), "{summary}{stderr}");
    assert!(
        summary.contains("2 of 3 released; epsilon 0.75"),
        "{summary}"
    );
    assert!(stderr.contains("b_rows.sql:2:6"), "{stderr}");
    assert!(!first.join("b_rows.csv").exists());
    assert_eq!(
        std::fs::read_to_string(first.join("b_rows.previous.csv")).unwrap(),
        "stale\n"
    );
    let report = std::fs::read_to_string(first.join("report.html")).unwrap();
    for needle in ["People by sex", "c_birth", "b_rows.sql"] {
        assert!(report.contains(needle), "the report lacks {needle:?}");
    }

    // Again on the server and here: the same answers at no cost, the same files and
    // summary byte for byte (but for the folder's name).
    let (second, third) = (dir.path().join("second"), dir.path().join("third"));
    let (output, remote, remote_err) = there(&[&["run"][..], &out(&second)].concat());
    assert_eq!(output.status.code(), Some(1), "{remote_err}");
    let (output, local, local_err) = here(&[&["run"][..], &out(&third)].concat());
    assert_eq!(output.status.code(), Some(1), "{local_err}");
    assert!(remote.contains("epsilon 0 and delta 0 spent"), "{remote}");
    assert_eq!(
        remote.replace(second.to_str().unwrap(), "OUT"),
        local.replace(third.to_str().unwrap(), "OUT"),
        "the summary"
    );
    assert_eq!(remote_err, local_err);
    for file in [
        "a_by_sex.json",
        "a_by_sex.csv",
        "c_birth.json",
        "c_birth.csv",
    ] {
        let bytes = |folder: &Path| std::fs::read(folder.join(file)).unwrap();
        assert_eq!(bytes(&first), bytes(&second), "{file}");
        assert_eq!(bytes(&second), bytes(&third), "{file}");
    }
    drop(server);
}

/// Asks `sql` and hangs up once the server has read the call and begun (long enough for
/// it to have read the call; then gone).
fn hang_up_on(address: SocketAddr, token: &str, sql: &str) {
    let body = json!({ "sql": sql }).to_string();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(request("POST", "/api/v1/queries", token, &body).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.shutdown(std::net::Shutdown::Both).unwrap();
}

/// A caller who hangs up while a query runs does not cut its release short: the charge,
/// the run and the stored release happen as if they had waited, and asking again gets
/// that release at no cost — never a second charge, never a lost one.
#[test]
fn a_caller_who_hangs_up_does_not_cut_a_release_short() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.sqlite");
    let token = issue_token(&ledger, "analyst");
    let (server, address) = start(&ledger);
    let sql =
        std::fs::read_to_string(repo().join("queries/emergency_los_by_provider.sql")).unwrap();
    hang_up_on(address, &token, &sql);

    let released = || {
        let (status, entries) = get(address, "/api/v1/audit?event=released", &token);
        assert_eq!(status, 200, "{entries}");
        entries.as_array().unwrap().len()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while released() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the release of the abandoned call was never stored"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = call(address, "/api/v1/queries", &token, &json!({ "sql": sql })).unwrap();
    assert_eq!(status, 200);
    assert_eq!(released(), 1, "asked again, it must be answered at no cost");
    let (_, lines) = get(address, "/api/v1/budget", &token);
    let own = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "analyst")
        .unwrap();
    assert_eq!(own["spent"]["epsilon"], 1.0, "charged exactly once: {own}");

    // Hung up on, then the server told to stop at once: the call still ends, and is
    // stored, before the process does.
    let mut server = server;
    let sql = std::fs::read_to_string(repo().join("queries/emergency_admissions.sql")).unwrap();
    hang_up_on(address, &token, &sql);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = server.0.wait().unwrap();
    assert!(stopped.success(), "{stopped:?}");
    let (output, log, stderr) = run(carelens()
        .args(["audit", "log", "--event", "released", "--format", "json"])
        .args(["--user", "analyst", "--config"])
        .arg(sample_data().join("carelens.toml"))
        .arg("--ledger")
        .arg(&ledger));
    assert!(output.status.success(), "{stderr}");
    let entries: Value = serde_json::from_str(&log).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2, "{log}");
}
