//! The `.slt`-style SQL tests in `tests/slt/` (format: `tests/slt/README.md`), run through
//! the engine against the committed sample extract.

use std::fs;

use carelens_engine::{ColumnRole, Engine, QueryError, Release};
use serde_json::Value;

use crate::common::{repo, sample_data};
use crate::slt_records::{Record, error_chain, parse};

fn role_name(role: ColumnRole) -> String {
    serde_json::to_value(role)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Under `nhs`: no released count in 1..=7, every released count a multiple of 5.
pub(crate) fn check_nhs_counts(name: &str, release: &Release) -> Result<(), String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_files_accept_and_reject_as_recorded() {
    let catalog = carelens_catalog::load(&sample_data().join("carelens.toml")).unwrap();
    let engine = Engine::open(&catalog).await.unwrap();
    let mut files: Vec<_> = fs::read_dir(repo().join("tests/slt"))
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
                        Err(e) => failures.push(format!("{name}: error: {:#}", error_chain(&e))),
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
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(accepted >= 30, "only {accepted} accepted shapes");
    assert!(rejected >= 30, "only {rejected} rejected shapes");
}
