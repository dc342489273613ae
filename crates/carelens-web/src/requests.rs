//! The request pages: researchers submit a cohort count with its purpose and follow it;
//! approvers see a queue, and each request's definition, cost and expected error beside
//! the earlier request it resembles, and approve (possibly at a lower ε) or reject it with
//! a note; the requester releases it once approved. The service decides who may do what;
//! these pages only leave out the buttons a person could not use.

use carelens_engine::Explain;
use carelens_ledger::{Request, RequestState};
use carelens_privacy::number;
use maud::{Markup, html};

use crate::query::{Outcome, outcome_section};
use crate::{Nav, Viewer, signed_in_page};

/// What was typed into the submit form, kept when it is refused.
#[derive(Default)]
pub struct Draft<'a> {
    /// The SQL.
    pub sql: &'a str,
    /// Why the count is needed.
    pub purpose: &'a str,
    /// The ε asked for, as typed.
    pub epsilon: &'a str,
}

/// A list of requests: the viewer's, everyone's, or the approvers' queue.
pub struct ListPage<'a> {
    /// Who is looking.
    pub viewer: Viewer<'a>,
    /// `Requests` or `Approvals`.
    pub queue: bool,
    /// The requests, oldest first.
    pub requests: &'a [Request],
    /// The submit form, for those who ask for counts (researchers).
    pub submit: Option<Draft<'a>>,
    /// Why the last submission was refused, and its hint.
    pub problem: Option<(String, Option<String>)>,
}

/// A list of requests.
pub fn list(p: &ListPage<'_>) -> String {
    let (title, nav) = if p.queue {
        ("Approvals", Nav::Approvals)
    } else {
        ("Requests", Nav::Requests)
    };
    let body = html! {
        h1 { (title) }
        @if p.queue {
            p { "Requests waiting for a decision. You cannot decide a request you made yourself." }
        } @else {
            p { "Cohort counts asked for by researchers: each is released once, to the researcher who asked, \
                 after an approver who is not them has approved it." }
        }
        @if let Some(draft) = &p.submit {
            (submit_form(p.viewer.csrf, draft, p.problem.as_ref()))
        }
        @if p.requests.is_empty() {
            p { @if p.queue { "Nothing is waiting." } @else { "No requests yet." } }
        } @else {
            div.scroll role="region" aria-label=(title) tabindex="0" {
                table {
                    caption.visually-hidden { (title) }
                    thead { tr {
                        th scope="col" { "Request" } th scope="col" { "State" } th scope="col" { "Asked by" }
                        th scope="col" { "Purpose" } th.num scope="col" { "ε" } th scope="col" { "Flag" }
                    } }
                    tbody {
                        @for r in p.requests {
                            tr {
                                td { a href=(format!("/requests/{}", r.id)) { "Request " (r.id) } }
                                td { (r.state.as_str()) }
                                td { (r.requester) }
                                td { (r.purpose) }
                                td.num { (number(r.epsilon)) }
                                td { @if r.flag.is_some() { strong { "resembles an earlier one" } } }
                            }
                        }
                    }
                }
            }
        }
    };
    signed_in_page(title, nav, &p.viewer, body)
}

fn submit_form(
    csrf: &str,
    draft: &Draft<'_>,
    problem: Option<&(String, Option<String>)>,
) -> Markup {
    html! {
        h2 { "Ask for a cohort count" }
        @if let Some((message, hint)) = problem {
            div.error role="alert" {
                p { (message) }
                @if let Some(hint) = hint { p { strong { "Hint: " } (hint) } }
            }
        }
        form method="post" action="/requests" {
            input type="hidden" name="csrf" value=(csrf);
            label for="sql" { "SQL" }
            textarea #sql name="sql" rows="10" spellcheck="false" required { (draft.sql) }
            label for="purpose" { "Purpose" }
            p #purpose-help .muted { "Why the count is needed. The approver reads it, and it is published in the \
                transparency register once the count is released." }
            textarea #purpose name="purpose" rows="3" required aria-describedby="purpose-help" { (draft.purpose) }
            label for="epsilon" { "ε asked for (optional)" }
            input #epsilon type="text" name="epsilon" inputmode="decimal" value=(draft.epsilon);
            div.actions { button.primary type="submit" { "Submit the request" } }
        }
    }
}

/// One request in full.
pub struct RequestPage<'a> {
    /// Who is looking.
    pub viewer: Viewer<'a>,
    /// The request.
    pub request: &'a Request,
    /// Its cost as it plans today, or why it cannot be planned.
    pub cost: Result<&'a Explain, String>,
    /// Whether it still plans as it did when submitted.
    pub plans_as_submitted: bool,
    /// The earlier request it resembles, when the viewer may see it.
    pub earlier: Option<&'a Request>,
    /// Whether the viewer may approve or reject it (an approver who did not ask).
    pub may_decide: bool,
    /// Whether the viewer may release it (its requester, once approved).
    pub may_release: bool,
    /// A release just made, or why an action was refused.
    pub outcome: Option<Outcome<'a>>,
}

/// A request's page.
pub fn show(p: &RequestPage<'_>) -> String {
    let r = p.request;
    let title = format!("Request {}", r.id);
    let body = html! {
        h1 { (title) }
        dl.facts {
            dt { "State" } dd { strong { (r.state.as_str()) } }
            dt { "Asked by" } dd { (r.requester) " on " (r.submitted_at.get(..10).unwrap_or(&r.submitted_at)) }
            dt { "Purpose" } dd { (r.purpose) }
            dt { "ε asked for" } dd { (number(r.epsilon)) }
            @if let Some(d) = &r.decision {
                dt { @if r.state == RequestState::Rejected { "Rejected by" } @else { "Approved by" } }
                dd {
                    (d.by) " on " (d.at.get(..10).unwrap_or(&d.at))
                    @if let Some(e) = d.epsilon { " at ε " (number(e)) }
                    @if !d.note.is_empty() { ": “" (d.note) "”" }
                }
            }
        }
        h2 { "Cost and expected error" }
        @match &p.cost {
            Ok(explain) => {
                pre tabindex="0" aria-label="Cost and expected error" { (carelens_render::cost_summary(explain, "")) }
                @if !p.plans_as_submitted {
                    p.error { "The query no longer plans as it did when submitted (the catalog or the data changed): \
                               it cannot be released as it stands." }
                }
            }
            Err(why) => p.error { "It cannot be planned now: " (why) },
        }
        @if let Some(flag) = &r.flag {
            h2 { "It resembles an earlier request" }
            p.error { "Flag: " (flag.to_string()) ". Two near-identical counts can be subtracted to learn about the \
                       few people between them; approving needs a note saying why that is safe." }
        }
        @if let Some(earlier) = p.earlier {
            div.side-by-side {
                div { h3 { "This request" } pre tabindex="0" aria-label="This request's SQL" { (r.sql) } }
                div { h3 { a href=(format!("/requests/{}", earlier.id)) { "Request " (earlier.id) } " (" (earlier.state.as_str()) ")" }
                      pre tabindex="0" aria-label="The earlier request's SQL" { (earlier.sql) } }
            }
        } @else {
            h2 { "Definition" }
            pre tabindex="0" aria-label="The request's SQL" { (r.sql) }
        }
        @if p.may_decide {
            h2 { "Decide" }
            div.side-by-side {
                form method="post" action=(format!("/requests/{}/approve", r.id)) {
                    input type="hidden" name="csrf" value=(p.viewer.csrf);
                    label for="approve-epsilon" { "Approve at ε (at most " (number(r.epsilon)) "; empty for that)" }
                    input #approve-epsilon type="text" name="epsilon" inputmode="decimal";
                    label for="approve-note" { "Note" @if r.flag.is_some() { " (required: the request is flagged)" } }
                    textarea #approve-note name="note" rows="2" {}
                    div.actions { button.primary type="submit" { "Approve" } }
                }
                form method="post" action=(format!("/requests/{}/reject", r.id)) {
                    input type="hidden" name="csrf" value=(p.viewer.csrf);
                    label for="reject-note" { "Why it is rejected" }
                    textarea #reject-note name="note" rows="2" required {}
                    div.actions { button type="submit" { "Reject" } }
                }
            }
        }
        @if p.may_release {
            form method="post" action=(format!("/requests/{}/release", r.id)) {
                input type="hidden" name="csrf" value=(p.viewer.csrf);
                div.actions { button.primary type="submit" {
                    @if r.state == RequestState::Released { "Show the release again" } @else { "Release the count" }
                } }
            }
        }
        @if let Some(outcome) = &p.outcome {
            (outcome_section(outcome, &r.sql))
        }
    };
    signed_in_page(&title, Nav::Requests, &p.viewer, body)
}
