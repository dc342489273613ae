//! carelens-web: the HTML pages of carelens, rendered on the server — plain HTML and CSS
//! that work without JavaScript, meant to meet WCAG 2.2 AA (headings in order, labelled
//! tables and charts, visible focus, contrast of at least 4.5:1, usable at phone width).
//!
//! Layer: a face, beside the command line and the HTTP API. Pages are rendered from what
//! the service hands over (already protected, already restricted to what the reader may
//! see) and decide nothing about privacy or governance themselves. Templates are
//! [`maud`]'s: checked at compile time, every interpolated string escaped.
//!
//! Here: the citizens' transparency register ([`register`]), served at `/register` by
//! `carelens serve` and written as static files by `carelens register --out`; sign-in
//! ([`signin`]); the analysts' query page ([`query`]); requests and approvals
//! ([`requests`]); the audit log, budgets and the log's check ([`audit`]); the query
//! library, run as a batch with its report ([`library`]).

pub mod audit;
pub mod library;
pub mod query;
pub mod register;
pub mod requests;

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The style every page shares: system fonts, dark text on white (contrast above 12:1),
/// tables that scroll sideways inside their own box on a phone, a visible focus ring.
const STYLE: &str = r#"
:root { --ink: #1b1b1b; --muted: #4a4a4a; --line: #c8c8c8; --accent: #1d4e89; --soft: #f2f5f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #fff; }
.skip { position: absolute; left: -9999px; }
.skip:focus { left: 8px; top: 8px; background: #fff; padding: 8px; z-index: 1; }
header.site { background: var(--accent); color: #fff; padding: 12px 20px; }
header.site a { color: #fff; }
header.site p { margin: 0; font-weight: 600; }
main { max-width: 60rem; margin: 0 auto; padding: 16px 20px 48px; }
h1 { font-size: 1.9rem; line-height: 1.2; margin: 16px 0 8px; }
h2 { font-size: 1.35rem; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, textarea:focus, select:focus, [tabindex]:focus { outline: 3px solid #ffbf47; outline-offset: 2px; }
.lead { font-size: 1.1rem; }
.muted { color: var(--muted); }
.figures { display: flex; flex-wrap: wrap; gap: 12px; padding: 0; list-style: none; }
.figures li { background: var(--soft); border-left: 4px solid var(--accent); padding: 8px 12px; min-width: 11rem; }
.figures b { display: block; font-size: 1.4rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); }
td.date { white-space: nowrap; }
td .ci { display: block; color: var(--muted); font-size: 0.8rem; white-space: nowrap; }
td.suppressed { color: #a4000f; font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
nav.site { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: center; }
nav.site a { padding: 4px 0; }
nav.site a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
nav.site form { margin-left: auto; }
.columns { display: grid; grid-template-columns: minmax(0, 3fr) minmax(14rem, 1fr); gap: 24px; }
@media (max-width: 48rem) { .columns { grid-template-columns: minmax(0, 1fr); } }
label { display: block; font-weight: 600; margin-top: 12px; }
textarea, input[type=password], input[type=text] { width: 100%; font: 15px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; padding: 8px; border: 2px solid #6b6b6b; border-radius: 4px; }
button { font: inherit; padding: 8px 16px; border: 2px solid var(--accent); background: #fff; color: var(--accent); border-radius: 4px; cursor: pointer; }
button.primary { background: var(--accent); color: #fff; }
button.link { border: none; background: none; color: #fff; text-decoration: underline; padding: 4px 0; }
.actions { display: flex; gap: 12px; margin: 12px 0; }
pre { background: var(--soft); padding: 12px; overflow-x: auto; font-size: 0.85rem; }
pre.sql mark { background: #ffdd57; color: var(--ink); }
.result { margin-top: 16px; }
.rejected h2 { color: #a4000f; }
.error { border-left: 4px solid #a4000f; padding: 4px 12px; }
details { margin: 4px 0; }
summary { cursor: pointer; }
ul.notes { color: var(--muted); font-size: 0.9rem; }
.side-by-side { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 16px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
form.filters { display: flex; flex-wrap: wrap; gap: 0 16px; align-items: flex-end; }
form.filters input, form.filters select { font: inherit; padding: 6px; border: 2px solid #6b6b6b; border-radius: 4px; }
ul.columns-list { margin: 4px 0 8px; padding-left: 20px; font-size: 0.9rem; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 8px 0; }
figure svg { width: 100%; height: auto; max-width: 44rem; }
figcaption { color: var(--muted); }
code { overflow-wrap: anywhere; }
.ok { color: #0b6b2a; font-weight: 600; }
.bad { color: #a4000f; font-weight: 600; }
footer { color: var(--muted); margin-top: 40px; font-size: 0.9rem; }
@media print { header.site { background: none; color: var(--ink); } .scroll { overflow: visible; } }
"#;

/// A whole page: `title` in the tab and as the page's only `h1` is up to `body`.
pub(crate) fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) (PreEscaped(carelens_render::report::CHART_STYLE)) }
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.site { p { "carelens · privacy-protected analytics of shared care records" } }
                main #main { (body) }
            }
        }
    }
    .into_string()
}

/// Where a signed-in page is in the site's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// The query page.
    Query,
    /// Requests (one's own, or everyone's).
    Requests,
    /// The approvers' queue.
    Approvals,
    /// The audit log.
    Audit,
    /// The query library.
    Library,
}

/// Who is looking at a signed-in page.
pub struct Viewer<'a> {
    /// Their name.
    pub user: &'a str,
    /// Their role.
    pub role: &'a str,
    /// Whether the role oversees others (approvers and admins): the queue is in their
    /// navigation.
    pub oversees: bool,
    /// The session's CSRF secret, carried by every form.
    pub csrf: &'a str,
}

/// A page for a signed-in person: the navigation, who they are, and sign-out (a form
/// carrying the session's CSRF secret).
pub(crate) fn signed_in_page(title: &str, here: Nav, viewer: &Viewer<'_>, body: Markup) -> String {
    let current = |nav: Nav| (nav == here).then_some("page");
    let body = html! {
        nav.site aria-label="carelens" {
            a href="/query" aria-current=[current(Nav::Query)] { "Query" }
            a href="/library" aria-current=[current(Nav::Library)] { "Library" }
            a href="/requests" aria-current=[current(Nav::Requests)] { "Requests" }
            @if viewer.oversees {
                a href="/requests/queue" aria-current=[current(Nav::Approvals)] { "Approvals" }
            }
            a href="/audit" aria-current=[current(Nav::Audit)] { "Audit" }
            a href="/register" { "Transparency register" }
            span.muted { "Signed in as " strong { (viewer.user) } " (" (viewer.role) ")" }
            form method="post" action="/signout" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button type="submit" { "Sign out" }
            }
        }
        (body)
    };
    page(title, body)
}

/// The sign-in page: a token, its form's CSRF secret, and why the last try failed.
pub fn signin(csrf: &str, problem: Option<&str>) -> String {
    let body = html! {
        h1 { "Sign in" }
        p { "Sign in with the token your carelens administrator issued you (it starts "
            code { "carelens_" } "). The token stays on the server; your browser keeps only a session "
            "that ends when you sign out, after 30 minutes without use, or after 8 hours." }
        @if let Some(problem) = problem {
            p.error role="alert" #problem { (problem) }
        }
        form method="post" action="/signin" {
            input type="hidden" name="csrf" value=(csrf);
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="off" required
                aria-describedby=[problem.map(|_| "problem")];
            div.actions { button.primary type="submit" { "Sign in" } }
        }
        p { a href="/register" { "The transparency register" } " needs no sign-in." }
    };
    page("Sign in", body)
}

/// A page that says why a signed-in page cannot be shown (forbidden, or failed).
pub fn problem(title: &str, message: &str) -> String {
    page(
        title,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/query" { "Back to the query page" } }
        },
    )
}
