//! The analysts' query page: a SQL editor with the catalog beside it, "Explain" before
//! "Release", the released table with its intervals and suppressed cells marked, the
//! report's chart, downloads, and the budget left. A rejection shows its place in the SQL.

use carelens_engine::{Explain, Rejection, Release};
use carelens_ledger::{Amount, BudgetLine, DATASET_USER};
use carelens_privacy::number;
use carelens_service::CatalogView;
use maud::{Markup, PreEscaped, html};

use crate::{Nav, Viewer, signed_in_page};

/// What the page shows under the editor.
pub enum Outcome<'a> {
    /// What the query would cost and how accurate it would be; nothing spent.
    Explained(&'a Explain),
    /// Released now, or answered again at no cost.
    Released {
        /// The release.
        release: &'a Release,
        /// Its stored wire-format bytes (the JSON download).
        bytes: &'a [u8],
        /// Its Parquet rendering, when it could be made.
        parquet: Option<&'a [u8]>,
        /// What was spent now.
        spent: Amount,
        /// Whether it was an earlier release's answer.
        cached: bool,
    },
    /// The privacy checks or the policy would not run it; nothing spent.
    Rejected(&'a Rejection),
    /// Anything else that stopped it, in the words the command line uses, and a hint.
    Refused {
        /// What happened.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
}

/// Everything the query page shows.
pub struct QueryPage<'a> {
    /// Who is signed in.
    pub viewer: Viewer<'a>,
    /// The SQL in the editor.
    pub sql: &'a str,
    /// The tables and columns, for the side panel.
    pub catalog: &'a CatalogView,
    /// Their budget and the dataset's.
    pub budget: &'a [BudgetLine],
    /// What the last action gave.
    pub outcome: Option<Outcome<'a>>,
}

/// The query page.
pub fn page(p: &QueryPage<'_>) -> String {
    let body = html! {
        h1 { "Query" }
        div.columns {
            div.editor {
                form method="post" action="/query" {
                    input type="hidden" name="csrf" value=(p.viewer.csrf);
                    label for="sql" { "SQL" }
                    p #sql-help .muted { "One SELECT over the tables listed. Explain shows the cost and the \
                        expected error without spending anything; Release spends your budget and shows the result." }
                    textarea #sql name="sql" rows="14" spellcheck="false" aria-describedby="sql-help" { (p.sql) }
                    div.actions {
                        button type="submit" name="action" value="explain" { "Explain" }
                        button.primary type="submit" name="action" value="release" { "Release" }
                    }
                }
                @if let Some(outcome) = &p.outcome {
                    (outcome_section(outcome, p.sql))
                }
            }
            aside aria-labelledby="tables-heading" {
                h2 #tables-heading { "Tables" }
                (catalog(p.catalog))
                h2 { "Budget" }
                (budget(p.budget))
            }
        }
    };
    signed_in_page("Query", Nav::Query, &p.viewer, body)
}

pub(crate) fn outcome_section(outcome: &Outcome<'_>, sql: &str) -> Markup {
    match outcome {
        Outcome::Explained(explain) => html! {
            section.result aria-labelledby="result-heading" {
                h2 #result-heading { "Explain: what releasing it would cost" }
                p { "Releasing this query would spend " strong { "ε " (number(explain.epsilon)) }
                    " and δ " (number(explain.delta)) ". Nothing has been spent." }
                p { "The public transparency register would list it with "
                    @match carelens_service::published_title(sql) {
                        Some(title) => { "the purpose “" (title) "” (its title)." }
                        None => { "no purpose (it has no title with a " code { "-- What:" } " line under it)." }
                    }
                    " It never shows the SQL or the result." }
                pre.explain tabindex="0" aria-label="The full explanation" { (carelens_render::explain(explain)) }
            }
        },
        Outcome::Released {
            release,
            bytes,
            parquet,
            spent,
            cached,
        } => {
            let id = release
                .release_id
                .map(|id| id.to_string())
                .unwrap_or_default();
            html! {
                section.result aria-labelledby="result-heading" {
                    h2 #result-heading { "Release " (id) }
                    p role="status" {
                        @if *cached {
                            "Answered again at no cost: an identical query was released before (release " (id) ")."
                        } @else {
                            "Released. Spent now: ε " (number(spent.epsilon_value())) " and δ " (number(spent.delta_value())) "."
                        }
                    }
                    (PreEscaped(carelens_render::report::release_table(release)))
                    @if let Some(svg) = carelens_render::report::release_chart(release, carelens_engine::Header::parse(sql).chart.as_deref()) {
                        figure.chart { (PreEscaped(svg)) }
                    }
                    @if !release.notes.is_empty() {
                        ul.notes { @for note in &release.notes { li { (note) } } }
                    }
                    p.downloads {
                        "Download: "
                        a download=(format!("release-{id}.csv")) href=(data_url("text/csv", carelens_render::csv(release).as_bytes())) { "CSV" }
                        " · "
                        a download=(format!("release-{id}.json")) href=(data_url("application/json", bytes)) { "JSON" }
                        @if let Some(parquet) = parquet {
                            " · "
                            a download=(format!("release-{id}.parquet")) href=(data_url("application/vnd.apache.parquet", parquet)) { "Parquet" }
                        }
                    }
                }
            }
        }
        Outcome::Rejected(rejection) => html! {
            section.result.rejected aria-labelledby="result-heading" role="alert" {
                h2 #result-heading { "Not run: the query was rejected" }
                p { (rejection.what) " " span.muted { "(rule: " (rejection.kind) ")" } }
                @if let Some(place) = rejection.location {
                    p { "At line " (place.line) ", column " (place.column) ":" }
                    (marked_sql(sql, place.line, place.column))
                }
                p { strong { "Hint: " } (rejection.hint) }
                p.muted { "Nothing was spent." }
            }
        },
        Outcome::Refused { message, hint } => html! {
            section.result.rejected aria-labelledby="result-heading" role="alert" {
                h2 #result-heading { "Not released" }
                p { (message) }
                @if let Some(hint) = hint { p { strong { "Hint: " } (hint) } }
            }
        },
    }
}

/// The SQL with line `line` marked and a caret under column `column`.
fn marked_sql(sql: &str, line: u64, column: u64) -> Markup {
    html! {
        pre.sql tabindex="0" aria-label="The SQL, with the place marked" {
            @for (n, text) in sql.lines().enumerate() {
                @let here = n as u64 + 1 == line;
                @if here {
                    mark { (format!("{:>3} | {text}", n + 1)) } "\n"
                    span.caret aria-hidden="true" { (format!("    | {}^", " ".repeat(column.saturating_sub(1) as usize))) } "\n"
                } @else {
                    (format!("{:>3} | {text}", n + 1)) "\n"
                }
            }
        }
    }
}

fn catalog(catalog: &CatalogView) -> Markup {
    html! {
        @for table in &catalog.tables {
            details {
                summary { code { (table.name) } " " span.muted { "(" (table.kind.as_str()) ")" } }
                @if let Some(description) = &table.description { p.muted { (description) } }
                ul.columns-list {
                    @for column in &table.columns {
                        li { code { (column.name) } " " span.muted { (column.data_type.as_str()) } }
                    }
                }
            }
        }
    }
}

fn budget(lines: &[BudgetLine]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Privacy budget left" }
            thead { tr { th scope="col" { "Whose" } th.num scope="col" { "ε left" } th.num scope="col" { "of" } } }
            tbody {
                @for line in lines {
                    tr {
                        td { @if line.name == DATASET_USER { "The dataset" } @else { (line.name) " (you)" } }
                        td.num { (number(line.remaining.epsilon_value())) }
                        td.num { (number(line.budget.epsilon_value())) }
                    }
                }
            }
        }
    }
}

/// `bytes` as a `data:` URL, for a download the page carries itself (the result is on the
/// page already; nothing is fetched or stored again).
fn data_url(media_type: &str, bytes: &[u8]) -> String {
    format!("data:{media_type};base64,{}", base64(bytes))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
