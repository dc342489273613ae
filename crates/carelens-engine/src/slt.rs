//! The engine's SQL tests: the sqllogictest-style records in this crate's `tests/slt/`
//! (format: `tests/slt/README.md`), run through the engine against the committed sample
//! extract (`sample-data/` at the repository root). They run as a unit test of this
//! library (`cargo test --workspace`), so they need no test binary of their own.
//!
//! The record format, the one-line error text failures are reported with, and the check
//! that released counts follow the `nhs` rules are also test support for the end-to-end
//! tests and the benchmark in the root crate (feature `testing`), which read the same
//! records.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::{ColumnRole, Release};

/// The folder of the `.slt` files.
pub fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/slt"))
}

/// One record of an `.slt` file.
#[derive(Debug)]
pub enum Record {
    /// A query that must be released.
    Accept {
        /// The record's name.
        name: String,
        /// The query, `{{name}}` expanded.
        sql: String,
        /// The released columns and their roles, `column:role, ...`.
        columns: String,
    },
    /// A query that must be refused.
    Reject {
        /// The record's name.
        name: String,
        /// The rejection's kind (`person_column`, `aggregate`, `join`, ...).
        kind: String,
        /// The query, `{{name}}` expanded.
        sql: String,
        /// The rejection's message, exactly.
        message: String,
    },
}

/// The records of one `.slt` file, with `{{name}}` expanded from `define` records.
///
/// # Panics
///
/// If the file cannot be read or holds a record that is not in the format.
#[allow(clippy::unwrap_used)] // test support: a malformed record fails the test
pub fn parse(path: &Path) -> Vec<Record> {
    let text = fs::read_to_string(path).unwrap();
    let mut defines: HashMap<String, String> = HashMap::new();
    let mut records = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block
            .lines()
            .skip_while(|l| l.trim().is_empty() || l.starts_with('#'))
            .collect();
        let Some(head) = lines.first() else { continue };
        let body = &lines[1..];
        let expand = |s: String| {
            defines
                .iter()
                .fold(s, |s, (k, v)| s.replace(&format!("{{{{{k}}}}}"), v))
        };
        if let Some(name) = head.strip_prefix("define ") {
            defines.insert(name.trim().to_owned(), body.join("\n"));
            continue;
        }
        let split = body
            .iter()
            .position(|l| *l == "----")
            .unwrap_or_else(|| panic!("{}: record `{head}` has no ----", path.display()));
        let sql = expand(body[..split].join("\n"));
        let expected = body[split + 1..].join("\n");
        if let Some(name) = head.strip_prefix("accept ") {
            records.push(Record::Accept {
                name: name.to_owned(),
                sql,
                columns: expected,
            });
        } else if let Some(rest) = head.strip_prefix("reject ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap();
            records.push(Record::Reject {
                name: name.to_owned(),
                kind: kind.to_owned(),
                sql,
                message: expected,
            });
        } else {
            panic!("{}: unknown record `{head}`", path.display());
        }
    }
    records
}

/// An error and its causes on one line, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Under `nhs`: no released count in 1..=7, every released count a multiple of 5.
///
/// # Errors
///
/// What is wrong, prefixed with `name`.
///
/// # Panics
///
/// If a released count is not a number.
#[allow(clippy::unwrap_used)] // test support: a count that is not a number fails the test
pub fn check_nhs_counts(name: &str, release: &Release) -> Result<(), String> {
    for (row, cells) in release.rows.iter().zip(&release.cells) {
        for column in release
            .columns
            .iter()
            .filter(|c| c.role == ColumnRole::Count)
        {
            let value = &row[&column.name];
            match value {
                Value::Null => {
                    let status = &cells[&column.name].status;
                    if *status != carelens_privacy::CellStatus::Suppressed {
                        return Err(format!(
                            "{name}: null {} not marked suppressed",
                            column.name
                        ));
                    }
                }
                v => {
                    let x = v.as_f64().unwrap();
                    if (1.0..=7.0).contains(&x) || x % 5.0 != 0.0 {
                        return Err(format!("{name}: released count {x} in {}", column.name));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::{Record, check_nhs_counts, dir, error_chain, parse};
    use crate::{ColumnRole, Engine, QueryError};

    fn role_name(role: ColumnRole) -> String {
        serde_json::to_value(role)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slt_files_accept_and_reject_as_recorded() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sample-data/carelens.toml");
        let catalog = carelens_catalog::load(&sample).unwrap();
        let engine = Engine::open(&catalog).await.unwrap();
        let mut files: Vec<_> = fs::read_dir(dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "slt"))
            .collect();
        files.sort();
        let (mut accepted, mut rejected, mut failures) = (0, 0, Vec::new());
        for file in &files {
            for record in parse(file) {
                match record {
                    Record::Accept { name, sql, columns } => {
                        accepted += 1;
                        let result = match engine.prepare(&sql).await {
                            Ok(p) => p.execute(&engine).await,
                            Err(e) => Err(e),
                        };
                        match result {
                            Ok(release) => {
                                let got: Vec<String> = release
                                    .columns
                                    .iter()
                                    .map(|c| format!("{}:{}", c.name, role_name(c.role)))
                                    .collect();
                                let got = got.join(", ");
                                if got != columns.trim() {
                                    failures.push(format!(
                                        "{name}: columns\n  expected {columns}\n  got      {got}"
                                    ));
                                }
                                if let Err(e) = check_nhs_counts(&name, &release) {
                                    failures.push(e);
                                }
                            }
                            Err(QueryError::Rejected(r)) => {
                                failures.push(format!("{name}: rejected: {} ({})", r.what, r.kind))
                            }
                            Err(e) => {
                                failures.push(format!("{name}: error: {:#}", error_chain(&e)))
                            }
                        }
                    }
                    Record::Reject {
                        name,
                        kind,
                        sql,
                        message,
                    } => {
                        rejected += 1;
                        match engine.prepare(&sql).await {
                            Err(QueryError::Rejected(r)) => {
                                if r.kind.to_string() != kind || r.what != message.trim() {
                                    failures.push(format!(
                                        "{name}: expected {kind}: {message}\n  got {}: {}",
                                        r.kind, r.what
                                    ));
                                }
                                assert!(!r.hint.is_empty(), "{name}: rejection without a hint");
                            }
                            Err(e) => failures.push(format!(
                                "{name}: error instead of rejection: {}",
                                error_chain(&e)
                            )),
                            Ok(_) => failures.push(format!("{name}: accepted")),
                        }
                    }
                }
            }
        }
        eprintln!(
            "{accepted} accepted and {rejected} rejected records in {} files",
            files.len()
        );
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(accepted >= 30, "only {accepted} accepted shapes");
        assert!(rejected >= 30, "only {rejected} rejected shapes");
    }
}
