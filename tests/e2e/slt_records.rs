//! The record format of the `.slt` files in `tests/slt/` (described in
//! `tests/slt/README.md`), shared by the SQL tests (`tests/e2e/slt.rs`) and the benchmark
//! (`benches/engine.rs`, which includes this file with `#[path]`), and the one-line error
//! text both report failures with.

use std::collections::HashMap;
use std::fs;

/// One record of an `.slt` file.
#[derive(Debug)]
pub enum Record {
    Accept {
        name: String,
        sql: String,
        columns: String,
    },
    Reject {
        name: String,
        kind: String,
        sql: String,
        message: String,
    },
}

/// The records of one `.slt` file, with `{{name}}` expanded from `define` records.
pub fn parse(path: &std::path::Path) -> Vec<Record> {
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
