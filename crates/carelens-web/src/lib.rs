//! carelens-web: the HTML pages of carelens, rendered on the server — plain HTML and CSS
//! that work without JavaScript, meant to meet WCAG 2.2 AA (headings in order, labelled
//! tables and charts, visible focus, contrast of at least 4.5:1, usable at phone width).
//!
//! Layer: a face, beside the command line and the HTTP API. Pages are rendered from what
//! the service hands over (already protected, already restricted to what the reader may
//! see) and decide nothing about privacy or governance themselves. Templates are
//! [`maud`]'s: checked at compile time, every interpolated string escaped.
//!
//! Now here: the citizens' transparency register ([`register`]), served at `/register` by
//! `carelens serve` and written as static files by `carelens register --out`.

pub mod register;

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
                style { (PreEscaped(STYLE)) }
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
