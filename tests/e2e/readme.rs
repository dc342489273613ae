//! The README's examples, run so that they cannot drift: every `$ carelens …` and
//! `$ cargo run --release -- …` line of its console blocks, in order, as the `carelens`
//! binary under test, in a scratch folder that holds `queries`, `examples` and
//! `sample-data` (read only: the ledger is in the scratch folder). Outputs are noisy, so
//! they are not compared; what is checked is that each command runs, and exits 1 exactly
//! where the README shows a refusal (`error: …`) and 0 elsewhere.
//!
//! Changed on the way, and only these: `/tmp/` is the scratch folder; a synthetic extract
//! of 100,000 people is made with 2,000 (the debug build); the request ids the README
//! shows are those the commands above it in this run gave. Left out: the server's examples
//! (`serve`, `--server`, `curl`; `tests/e2e/serve.rs` runs the same commands against a
//! server) and lines that are not carelens (`export`, `head`).

use std::collections::HashMap;

use crate::common::{carelens, repo, run};

/// One command of the README, with what the README shows it printing.
struct Example {
    line: String,
    shown: Vec<String>,
}

fn examples(readme: &str) -> Vec<Example> {
    let mut examples: Vec<Example> = Vec::new();
    let (mut console, mut pending) = (false, String::new());
    for line in readme.lines() {
        if line.starts_with("```") {
            console = line == "```console";
            continue;
        }
        if !console {
            continue;
        }
        if let Some(command) = line
            .strip_prefix("$ ")
            .or((!pending.is_empty()).then_some(line))
        {
            pending.push_str(command.trim_end_matches('\\'));
            if !command.ends_with('\\') {
                examples.push(Example {
                    line: std::mem::take(&mut pending),
                    shown: Vec::new(),
                });
            }
        } else if let Some(last) = examples.last_mut() {
            last.shown.push(line.to_owned());
        }
    }
    examples
}

/// `line` split as a shell would (double and single quotes; no expansions), its comment
/// left off.
fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '#') if !any => break,
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[test]
fn the_readme_examples_run_as_shown() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let here = scratch.path();
    for shared in ["queries", "examples", "sample-data"] {
        std::os::unix::fs::symlink(repo().join(shared), here.join(shared)).unwrap();
    }
    let ledger = here.join("ledger.sqlite");
    let tmp = format!("{}/", here.display());
    // The README's request ids, as this run numbered them.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut ran = 0;
    for example in examples(&readme) {
        let mut args = words(&example.line);
        match args.first().map(String::as_str) {
            Some("carelens") => {
                args.remove(0);
            }
            Some("cargo")
                if args.get(1..4) == Some(&["run".into(), "--release".into(), "--".into()]) =>
            {
                args.drain(..4);
            }
            _ => continue,
        }
        if args.first().is_some_and(|a| a == "serve") || args.iter().any(|a| a == "--server") {
            continue;
        }
        let is_request = args.first().is_some_and(|a| a == "request");
        for arg in &mut args {
            if let Some(rest) = arg.strip_prefix("/tmp/") {
                *arg = format!("{tmp}{rest}");
            }
            if arg == "100000" {
                *arg = "2000".into();
            }
            if is_request && let Some(id) = ids.get(arg.as_str()) {
                *arg = id.clone();
            }
        }
        let mut cmd = carelens();
        cmd.args(&args).current_dir(here);
        let own_catalog = args.iter().any(|a| a.starts_with(&tmp));
        if !own_catalog {
            // The sample's catalog, as the README's sections set it, and a scratch ledger.
            cmd.env("CARELENS_CONFIG", repo().join("sample-data/carelens.toml"))
                .env("CARELENS_LEDGER", &ledger);
        }
        let (out, stdout, stderr) = run(&mut cmd);
        let refused = example.shown.iter().any(|l| l.starts_with("error:"));
        let expected = if refused { 1 } else { 0 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "README: `{}` (ran as {args:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            example.line
        );
        // A request the README names by its id: the id this run gave it.
        if args.get(..2) == Some(&["request".into(), "submit".into()])
            && let (Some(shown), Some(given)) = (
                example.shown.first().and_then(|l| request_id(l)),
                request_id(&stdout),
            )
        {
            ids.insert(shown, given);
        }
        ran += 1;
    }
    assert!(ran >= 15, "only {ran} README examples ran");
    assert!(
        !ids.is_empty(),
        "the README's request examples were not followed"
    );
}

/// The id in `request N — …`.
fn request_id(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix("request ")?;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}
