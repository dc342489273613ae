//! The library page: the query library as a list, each query's purpose and cost, the
//! whole library's cost; run it as one batch and read its report; the earlier runs.

use carelens_engine::Header;
use carelens_ledger::Amount;
use carelens_privacy::number;
use maud::html;

use crate::{Nav, Viewer, signed_in_page};

/// One query of the library.
pub struct LibraryQuery<'a> {
    /// Its file's name without `.sql`.
    pub name: &'a str,
    /// What its header says.
    pub header: &'a Header,
    /// Its cost (ε, δ), or why it would be rejected; `repeat` when an earlier query of the
    /// library is the same question (it costs nothing more).
    pub cost: Result<(f64, f64, bool), String>,
}

/// An earlier run of the library.
pub struct RunSummary<'a> {
    /// Its number on this server.
    pub id: usize,
    /// Who ran it.
    pub user: &'a str,
    /// When (UTC, `YYYY-MM-DD HH:MM`).
    pub at: &'a str,
    /// Queries released (now or again).
    pub released: usize,
    /// Queries in it.
    pub queries: usize,
    /// ε spent by it.
    pub epsilon: f64,
}

/// Everything the library page shows.
pub struct LibraryPage<'a> {
    /// Who is looking.
    pub viewer: Viewer<'a>,
    /// The library's folder is configured (`carelens serve --library DIR`).
    pub configured: bool,
    /// Its queries, in file-name order.
    pub queries: &'a [LibraryQuery<'a>],
    /// What running all of them would spend (identical questions once).
    pub total: Amount,
    /// Whether the viewer may run it (researchers spend only through requests).
    pub may_run: bool,
    /// Earlier runs the viewer may read, newest first.
    pub runs: &'a [RunSummary<'a>],
    /// Why the last run was refused, and its hint.
    pub problem: Option<(String, Option<String>)>,
}

/// The library page.
pub fn page(p: &LibraryPage<'_>) -> String {
    let body = html! {
        h1 { "Query library" }
        @if !p.configured {
            p { "No library is configured on this server: start it with " code { "carelens serve --library DIR" }
                " (a folder of SQL files, such as the bundled " code { "queries" } ")." }
        } @else {
            p { "The library's queries, run together as one batch: the whole batch is checked against your "
                "budget first, then each query is released in turn and the report shows them all. "
                "Queries released before are answered again at no cost." }
            @if let Some((message, hint)) = &p.problem {
                div.error role="alert" {
                    p { (message) }
                    @if let Some(hint) = hint { p { strong { "Hint: " } (hint) } }
                }
            }
            @if p.may_run {
                form method="post" action="/library/run" {
                    input type="hidden" name="csrf" value=(p.viewer.csrf);
                    div.actions { button.primary type="submit" {
                        "Run the library (up to ε " (number(p.total.epsilon_value())) ")"
                    } }
                }
            } @else {
                p.muted { "Researchers ask for counts through requests; the library is run by analysts and commissioners." }
            }
            div.scroll role="region" aria-label="The library's queries" tabindex="0" {
                table {
                    caption.visually-hidden { "The library's queries" }
                    thead { tr {
                        th scope="col" { "Query" } th scope="col" { "What it is for" } th.num scope="col" { "ε" }
                    } }
                    tbody {
                        @for q in p.queries {
                            tr {
                                td { strong { (title(q)) } br; span.muted { code { (q.name) } } }
                                td {
                                    @for (label, text) in &q.header.paragraphs {
                                        @if label == "What" || label == "Who" {
                                            p { strong { (label) ": " } (text) }
                                        }
                                    }
                                }
                                td.num {
                                    @match &q.cost {
                                        Ok((epsilon, _, false)) => (number(*epsilon)),
                                        Ok((_, _, true)) => span.muted { "0 (a repeat)" },
                                        Err(why) => span.bad { "rejected: " (why) },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Earlier runs" }
        @if p.runs.is_empty() {
            p { "None since the server started." }
        } @else {
            ul {
                @for run in p.runs {
                    li { a href=(format!("/library/runs/{}", run.id)) { "Run " (run.id) } " by " (run.user) " at " (run.at)
                         " UTC: " (run.released) " of " (run.queries) " released, ε " (number(run.epsilon)) " spent" }
                }
            }
            p.muted { "Runs are kept until the server restarts; every release stays in the ledger, and running the \
                       library again answers released queries at no cost." }
        }
    };
    signed_in_page("Query library", Nav::Library, &p.viewer, body)
}

fn title<'a>(q: &'a LibraryQuery<'_>) -> &'a str {
    if q.header.title.is_empty() {
        q.name
    } else {
        &q.header.title
    }
}
