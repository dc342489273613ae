//! The audit page: the log with filters (one's own entries; everyone's for approvers and
//! admins), the check of its hash chain, every budget, and the dataset's privacy loss over
//! time against its cap.

use carelens_engine::query_line;
use carelens_ledger::{Amount, AuditEntry, BudgetLine, DATASET_USER, Event, Verification};
use carelens_privacy::number;
use carelens_service::Register;
use maud::{Markup, html};

use crate::{Nav, Viewer, signed_in_page};

/// Most entries the page lists; filters narrow the rest.
pub const MAX_SHOWN: usize = 500;

/// The filters, as typed.
#[derive(Default)]
pub struct Filter<'a> {
    /// From this date (`YYYY-MM-DD`).
    pub since: &'a str,
    /// Only this user's entries.
    pub of: &'a str,
    /// Only this kind.
    pub event: &'a str,
}

/// Everything the audit page shows.
pub struct AuditPage<'a> {
    /// Who is looking.
    pub viewer: Viewer<'a>,
    /// The filters applied.
    pub filter: Filter<'a>,
    /// The entries that pass them, oldest first.
    pub entries: &'a [AuditEntry],
    /// Why the filters were refused, if they were.
    pub problem: Option<String>,
    /// The log's check (approvers and admins).
    pub verification: Option<&'a Verification>,
    /// Budgets: one's own and the dataset's, or every user's.
    pub budget: &'a [BudgetLine],
    /// The dataset's charges over time (approvers and admins).
    pub register: Option<&'a Register>,
}

/// The audit page.
pub fn page(p: &AuditPage<'_>) -> String {
    let body = html! {
        h1 { "Audit" }
        @if let Some(verification) = p.verification {
            h2 { "The log's check" }
            (verified(verification))
        }
        h2 { "Budgets" }
        (budgets(p.budget))
        @if let Some(register) = p.register {
            h2 { "The dataset's privacy loss over time" }
            (crate::register::chart(register))
        }
        h2 #entries { "Entries" }
        (filters(p))
        @if let Some(problem) = &p.problem {
            p.error role="alert" { (problem) }
        }
        (entries(p.entries))
    };
    signed_in_page("Audit", Nav::Audit, &p.viewer, body)
}

fn verified(verification: &Verification) -> Markup {
    match verification {
        Verification::Intact {
            entries,
            head_seq,
            head_hash,
        } => html! {
            p { span.ok { "Intact." } " " (entries) " entries, each sealed with the hash of the one before. Head: "
                code { (head_seq) ":" (head_hash) } }
            p.muted { "Keep the head outside the ledger; " code { "carelens audit verify --expect-head" }
                " shows later that the log still holds it." }
        },
        Verification::Broken { seq, problem } => html! {
            p.error role="alert" { span.bad { "Broken at entry " (seq) ": " } (problem)
                ". Nothing can be spent until the ledger is restored from a copy; see docs/ledger.md." }
        },
    }
}

fn budgets(lines: &[BudgetLine]) -> Markup {
    html! {
        div.scroll role="region" aria-label="Budgets" tabindex="0" {
            table {
                caption.visually-hidden { "Privacy budgets" }
                thead { tr {
                    th scope="col" { "Whose" } th scope="col" { "Role" }
                    th.num scope="col" { "ε spent" } th.num scope="col" { "ε left" } th.num scope="col" { "ε budget" }
                    th.num scope="col" { "δ left" } th.num scope="col" { "Failed after charge" }
                } }
                tbody {
                    @for line in lines {
                        tr {
                            td { @if line.name == DATASET_USER { "The dataset (everyone)" } @else { (line.name) } }
                            td { (line.role) }
                            td.num { (number(line.spent.epsilon_value())) }
                            td.num { (number(line.remaining.epsilon_value())) }
                            td.num { (number(line.budget.epsilon_value())) }
                            td.num { (number(line.remaining.delta_value())) }
                            td.num { @match &line.failed { Some(f) => (f.count), None => "–" } }
                        }
                    }
                }
            }
        }
    }
}

fn filters(p: &AuditPage<'_>) -> Markup {
    html! {
        form method="get" action="/audit" .filters {
            div {
                label for="since" { "From (YYYY-MM-DD)" }
                input #since type="text" name="since" value=(p.filter.since) inputmode="numeric";
            }
            @if p.viewer.oversees {
                div {
                    label for="of" { "User" }
                    input #of type="text" name="of" value=(p.filter.of);
                }
            }
            div {
                label for="event" { "Kind" }
                select #event name="event" {
                    option value="" selected[p.filter.event.is_empty()] { "every kind" }
                    @for event in Event::ALL {
                        option value=(event.as_str()) selected[p.filter.event == event.as_str()] { (event.as_str()) }
                    }
                }
            }
            div.actions { button type="submit" { "Filter" } }
        }
    }
}

fn entries(entries: &[AuditEntry]) -> Markup {
    if entries.is_empty() {
        return html! { p { "No entries." } };
    }
    let shown = &entries[entries.len().saturating_sub(MAX_SHOWN)..];
    html! {
        @if shown.len() < entries.len() {
            p.muted { "The newest " (shown.len()) " of " (entries.len()) " entries; filter to see others." }
        }
        div.scroll role="region" aria-label="Audit entries" tabindex="0" {
            table {
                caption.visually-hidden { "Audit entries, newest first" }
                thead { tr {
                    th.num scope="col" { "Entry" } th scope="col" { "When (UTC)" } th scope="col" { "Who" }
                    th scope="col" { "What" } th.num scope="col" { "ε" } th scope="col" { "Query or detail" }
                } }
                tbody {
                    @for e in shown.iter().rev() {
                        @let spent = Amount { epsilon: e.epsilon_units, delta: e.delta_units };
                        tr {
                            td.num { (e.seq) }
                            td.date { (e.at.get(..19).unwrap_or(&e.at).replace('T', " ")) }
                            td { @if e.user == DATASET_USER { "(dataset)" } @else { (e.user) } " " span.muted { (e.role) } }
                            td { (e.event.as_str()) @if let Some(r) = e.refers_to { " " span.muted { "(of " (r) ")" } } }
                            td.num { @if e.epsilon_units > 0 { (number(spent.epsilon_value())) } }
                            td {
                                @let sql = query_line(&e.sql);
                                @if !sql.is_empty() { code { (sql.chars().take(160).collect::<String>()) @if sql.chars().count() > 160 { "…" } } }
                                @if !e.detail.is_empty() { div.muted { (e.detail) } }
                            }
                        }
                    }
                }
            }
        }
    }
}
