//! The HTML report of a batch: one self-contained file (inline CSS and SVG, no scripts,
//! nothing fetched) that someone who has never heard of differential privacy can read.
//!
//! It is rendered from the released results only — the same protected values as the CSV
//! and JSON beside it.

use std::fmt::Write as _;

pub use carelens_engine::Header;
use carelens_engine::{ColumnRole, Release};
use carelens_ledger::{Amount, BudgetLine, DATASET_USER, StoredFailure};
use carelens_service::{BatchItem, ServiceError};
use serde_json::Value;

use crate::number;

/// One query of a batch as the report names it.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Its short name (a file's stem), unique in the batch: the report links
    /// `NAME.csv` and `NAME.json` beside it.
    pub name: String,
    /// Where it came from (a file's path), shown with its SQL.
    pub source: String,
    /// What its header comment says about it.
    pub header: Header,
}

/// Everything the report shows.
pub struct Report<'a> {
    /// When the run started.
    pub generated: chrono::DateTime<chrono::Utc>,
    /// Who ran it.
    pub user: &'a str,
    /// The catalog file.
    pub catalog: &'a str,
    /// The disclosure policy's name.
    pub policy_name: &'a str,
    /// Its rules in plain English.
    pub policy: &'a str,
    /// The text shown for a hidden cell.
    pub marker: &'a str,
    /// Whether it hides or rounds small numbers at all.
    pub small_number_rules: bool,
    /// The queries, in order.
    pub files: &'a [ReportQuery],
    /// What became of each.
    pub outcomes: &'a [Outcome],
    /// The user's and the dataset's budget after the run.
    pub budget: &'a [BudgetLine],
}

/// Most series (values of a second key) drawn side by side in one chart, each in its
/// colour ([`CHART_STYLE`]).
const SERIES_COLOURS: usize = 4;

/// Most bars in one chart; the table always has every row.
const MAX_BARS: usize = 40;

/// How the charts are drawn ([`release_chart`]): for any page that shows one, after a
/// style that defines `--ink` and `--muted`.
pub const CHART_STYLE: &str = r#"
svg text { font: 11.5px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--ink); }
svg .bar { fill: #7fa9d9; }
svg .bar.s0 { fill: #4f86c6; }
svg .bar.s1 { fill: #e08a3c; }
svg .bar.s2 { fill: #4fa36f; }
svg .bar.s3 { fill: #9b7ad1; }
svg .err { stroke: #1d2433; stroke-width: 1.4; }
svg .axis { stroke: #9aa3b2; stroke-width: 1; }
svg .grid { stroke: #e6e9ef; stroke-width: 1; }
svg .muted { fill: var(--muted); }
"#;

const STYLE: &str = r#"
:root { --ink: #1d2433; --muted: #5b6475; --line: #d9dde5; --accent: #005eb8; --soft: #eef4fb; --warn: #8a4b00; --bad: #a00d2b; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: var(--ink); margin: 0; background: #f7f8fa; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 0 0 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); font-size: 13px; }
.explainer { background: var(--soft); border-left: 5px solid var(--accent); padding: 12px 18px; margin: 18px 0; }
.explainer h2 { font-size: 17px; }
.explainer ul { margin: 6px 0; padding-left: 20px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13.5px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td .ci { display: block; color: var(--muted); font-size: 11.5px; white-space: nowrap; }
td.suppressed { color: var(--warn); font-weight: 600; }
.summary td, .summary th { padding: 4px 12px; }
section.query { border-top: 2px solid var(--line); padding-top: 18px; margin-top: 28px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 9px; font-size: 12px; font-weight: 600; white-space: nowrap; vertical-align: middle; }
.badge.released { background: #e3f3e8; color: #11632c; }
.badge.cached { background: #e8eef8; color: #174a8b; }
.badge.rejected, .badge.refused, .badge.failed { background: #fbe6ea; color: var(--bad); }
.purpose p { margin: 4px 0; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13.5px; margin: 10px 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
.notes { color: var(--muted); font-size: 13px; }
pre.why { background: #fdf3f5; border: 1px solid #f0c6cf; padding: 10px; white-space: pre-wrap; font-size: 13px; }
.scroll { max-height: 560px; overflow: auto; border: 1px solid var(--line); display: inline-block; max-width: 100%; }
.scroll table { margin: 0; }
.scroll th { position: sticky; top: 0; }
a { color: var(--accent); }
@media print {
  body { font-size: 11pt; }
  .scroll { max-height: none; overflow: visible; display: block; border: 0; }
  .scroll th { position: static; }
  section.query { break-before: page; border-top: 0; margin-top: 0; }
  tr, .explainer, svg, pre.why { break-inside: avoid; }
  thead { display: table-header-group; }
  a { color: inherit; text-decoration: none; }
}
"#;

/// The report as one HTML document.
pub fn render(r: &Report<'_>) -> String {
    let mut h = String::new();
    let released = r
        .outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Released { .. }))
        .count();
    let spent = r
        .outcomes
        .iter()
        .fold(Amount::default(), |acc, o| acc.plus(o.spent()));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>carelens report — {date}</title>\n<style>{STYLE}{CHART_STYLE}</style>\n</head>\n<body>\n<main>\n\
         <p class=\"meta\">carelens · privacy-protected population health report</p>\n\
         <h1>Population health results</h1>\n\
         <p class=\"meta\">Run by <b>{user}</b> on {time} UTC · catalog {catalog} · \
         disclosure policy <b>{policy_name}</b></p>\n",
        date = r.generated.format("%Y-%m-%d"),
        user = esc(r.user),
        time = r.generated.format("%Y-%m-%d %H:%M"),
        catalog = esc(r.catalog),
        policy_name = esc(r.policy_name),
    );
    explainer(&mut h, r);

    // Summary. Under zCDP accounting the queries' ε do not add up: say what they are.
    let zcdp = r.budget.iter().any(|line| line.zcdp.is_some());
    let _ = write!(
        h,
        "<h2>Summary</h2>\n<p>{released} of {n} queries released. {costs} \
         <b>ε {eps}</b> (δ {delta}); answers identical to earlier releases cost nothing.</p>\n",
        n = r.outcomes.len(),
        costs = if zcdp {
            "The budget composes in zCDP (Gaussian noise): the budgets below add up ρ, and the \
             ε they show spent is its conversion. Each query's own ε, added up, is"
        } else {
            "This run spent privacy budget"
        },
        eps = number(spent.epsilon_value()),
        delta = number(spent.delta_value()),
    );
    h.push_str(
        "<table class=\"summary\"><tr><th>Budget</th><th class=\"num\">ε spent</th>\
         <th class=\"num\">ε left</th><th class=\"num\">ε total</th><th class=\"num\">δ left</th></tr>\n",
    );
    for line in r.budget {
        let who = if line.name == DATASET_USER {
            "the whole dataset (everyone)".to_owned()
        } else {
            format!("{} (you)", line.name)
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&who),
            number(line.spent.epsilon_value()),
            number(line.remaining.epsilon_value()),
            number(line.budget.epsilon_value()),
            number(line.remaining.delta_value()),
        );
    }
    h.push_str("</table>\n");
    h.push_str(
        "<table class=\"summary\"><tr><th>Query</th><th>Outcome</th><th class=\"num\">ε spent</th>\
         <th class=\"num\">Rows</th></tr>\n",
    );
    for (i, (file, outcome)) in r.files.iter().zip(r.outcomes).enumerate() {
        let eps = number(outcome.spent().epsilon_value());
        let rows = match outcome {
            Outcome::Released { release, .. } => release.rows.len().to_string(),
            _ => "–".into(),
        };
        let _ = writeln!(
            h,
            "<tr><td><a href=\"#q{i}\">{}</a></td><td>{}</td><td class=\"num\">{eps}</td><td class=\"num\">{rows}</td></tr>",
            esc(title(file)),
            badge(outcome),
        );
    }
    h.push_str("</table>\n");

    for (i, (file, outcome)) in r.files.iter().zip(r.outcomes).enumerate() {
        query_section(&mut h, i, file, outcome, r.policy_name, r.policy);
    }
    h.push_str(
        "<p class=\"meta\" style=\"margin-top:40px\">Made by carelens from released, \
         privacy-protected results only. Each query's results are also in NAME.csv and \
         NAME.json beside this file.</p>\n</main>\n</body>\n</html>\n",
    );
    h
}

fn title(file: &ReportQuery) -> &str {
    if file.header.title.is_empty() {
        &file.name
    } else {
        &file.header.title
    }
}

fn badge(outcome: &Outcome) -> String {
    let class = match outcome {
        Outcome::Released { cached: false, .. } => "released",
        Outcome::Released { cached: true, .. } => "cached",
        Outcome::Rejected(_) => "rejected",
        Outcome::Refused(_) => "refused",
        Outcome::Failed { .. } => "failed",
    };
    format!(
        "<span class=\"badge {class}\">{}</span>",
        esc(outcome.label())
    )
}

/// The plain-English box.
fn explainer(h: &mut String, r: &Report<'_>) {
    let marker = if r.marker.is_empty() {
        "An empty cell".to_owned()
    } else {
        format!("A <b>{}</b>", esc(r.marker))
    };
    let rules = if r.small_number_rules {
        format!(
            "<li><b>Rounded and hidden numbers.</b> Following the rules UK output checkers \
             use, {}. {marker} therefore means “a small number, not shown”, not zero or missing \
             data.</li>\n",
            esc(r.policy)
        )
    } else {
        format!(
            "<li><b>No rounding or hiding.</b> The disclosure policy here is “{}”: {}; the \
             random changes alone protect people.</li>\n",
            esc(r.policy_name),
            esc(r.policy)
        )
    };
    let _ = write!(
        h,
        "<div class=\"explainer\">\n<h2>How to read these numbers</h2>\n\
         <p>These results come from the health and care records of real people. To make sure \
         that nobody can learn anything about any one person from them, every number drawn \
         from those records has been changed a little before it was released (numbers from \
         public reference lists alone are exact):</p>\n<ul>\n\
         <li><b>Small random changes.</b> A small random amount is added to or taken from each \
         number, so no single person's record can be seen in it. Big numbers are hardly \
         affected; small ones are, relatively, much more.</li>\n{rules}\
         <li><b>The range under a number</b> (“95%: 120–150”) is where the true number lies, \
         with 95% confidence, for the question as each query states it: some queries count \
         at most a few records per person or cap a value (their “Per person” line and \
         privacy settings say so), and the range does not cover what those limits leave \
         out. Where two groups' ranges overlap a lot, do not read much into the difference \
         between them.</li>\n\
         <li><b>Rates and percentages</b> are worked out from the protected numbers, so they \
         carry the same uncertainty, shown in their own range.</li>\n</ul>\n\
         <p>Every query spends some of a limited “privacy budget” (the Greek letter ε, \
         epsilon): the more questions are asked of the same records, the more could be pieced \
         together, so the total is capped and logged.</p>\n</div>\n",
    );
}

fn query_section(
    h: &mut String,
    i: usize,
    file: &ReportQuery,
    outcome: &Outcome,
    policy_name: &str,
    policy: &str,
) {
    let _ = write!(
        h,
        "<section class=\"query\" id=\"q{i}\">\n<h2>{} {}</h2>\n<p class=\"meta\">{}</p>\n<div class=\"purpose\">\n",
        esc(title(file)),
        badge(outcome),
        esc(&file.source),
    );
    for (label, text) in &file.header.paragraphs {
        let label = match label.as_str() {
            "What" => "What it answers",
            "Who" => "Who uses it",
            "DP" => "Technical note on its privacy settings",
            other => other,
        };
        if label.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", esc(text));
        } else {
            let _ = writeln!(h, "<p><b>{}:</b> {}</p>", esc(label), esc(text));
        }
    }
    h.push_str("</div>\n");
    match outcome {
        Outcome::Released {
            release,
            spent,
            cached,
        } => {
            let cost = if *cached {
                format!(
                    "none now — the same question was answered before (release {}), and that answer is shown again",
                    release.release_id.unwrap_or_default()
                )
            } else {
                format!(
                    "ε {}, δ {} (release {})",
                    number(spent.epsilon_value()),
                    number(spent.delta_value()),
                    release.release_id.unwrap_or_default()
                )
            };
            let _ = writeln!(
                h,
                "<dl class=\"facts\"><dt>Privacy spent</dt><dd>{}</dd>\
                 <dt>Disclosure policy</dt><dd>{} — {}</dd>\
                 <dt>Per person</dt><dd>counted in at most {} group{}, at most {} record{} per group</dd>\
                 <dt>Files</dt><dd><a href=\"./{link}.csv\">{name}.csv</a> · <a href=\"./{link}.json\">{name}.json</a></dd></dl>",
                esc(&cost),
                esc(policy_name),
                esc(policy),
                release.privacy.max_groups,
                if release.privacy.max_groups == 1 {
                    ""
                } else {
                    "s"
                },
                release.privacy.max_rows,
                if release.privacy.max_rows == 1 {
                    ""
                } else {
                    "s"
                },
                name = esc(&file.name),
                link = url_path(&file.name),
            );
            if let Some(svg) = chart(release, file.header.chart.as_deref()) {
                h.push_str(&svg);
            }
            table(h, release);
            if !release.notes.is_empty() {
                h.push_str("<ul class=\"notes\">\n");
                for note in &release.notes {
                    let _ = writeln!(h, "<li>{}</li>", esc(note));
                }
                h.push_str("</ul>\n");
            }
        }
        Outcome::Rejected(why) | Outcome::Refused(why) => {
            let _ = write!(
                h,
                "<p>This query was <b>not released</b>; nothing was spent on it. The reason:</p>\n\
                 <pre class=\"why\">{}</pre>\n",
                esc(why.trim_end())
            );
        }
        Outcome::Failed { why, spent } => {
            let cost = if spent.epsilon_value() > 0.0 || spent.delta_value() > 0.0 {
                format!(
                    "Its privacy cost, ε {} (δ {}), was spent: the budget is charged before a \
                     query runs, so that a failure cannot reveal anything for free.",
                    number(spent.epsilon_value()),
                    number(spent.delta_value())
                )
            } else {
                "Nothing was spent on it.".to_owned()
            };
            let _ = write!(
                h,
                "<p>This query <b>failed</b> and nothing was released. {}</p>\n\
                 <pre class=\"why\">{}</pre>\n",
                esc(&cost),
                esc(why.trim_end())
            );
        }
    }
    h.push_str("</section>\n");
}

/// `v` with as many decimals as its 95% interval makes meaningful: two significant
/// digits of the interval's half-width (a rate of 69.18239 ± 15 is shown as 69). The CSV
/// and JSON keep the full value.
fn fixed(v: f64, [lo, hi]: [f64; 2]) -> String {
    let half = (hi - lo) / 2.0;
    let decimals = if half > 0.0 && half.is_finite() {
        (1.0 - half.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        return number(v);
    };
    format!("{v:.decimals$}")
}

/// A cell's text: the value, or the policy's marker when suppressed.
fn shown(value: &Value, marker: &str) -> String {
    match value {
        Value::Null => marker.to_owned(),
        Value::Number(n) => n.as_f64().map(number).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A release as the report's HTML table (escaped; suppressed cells marked, 95% intervals
/// under their values), for a page to embed.
pub fn release_table(release: &Release) -> String {
    let mut h = String::new();
    table(&mut h, release);
    h
}

/// The report's SVG chart of a release (escaped), if it has one: of the column `asked`
/// (a `chart=` directive) when the release has it, else by the report's rule.
pub fn release_chart(release: &Release, asked: Option<&str>) -> Option<String> {
    chart(release, asked)
}

fn table(h: &mut String, release: &Release) {
    let marker = &release.privacy.marker;
    // A header row of its own (`thead`), so a printed table repeats it on every page.
    h.push_str("<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Results\"><table>\n<thead><tr>");
    for c in &release.columns {
        let class = if c.role == ColumnRole::Key {
            ""
        } else {
            " class=\"num\""
        };
        let _ = write!(h, "<th{class}>{}</th>", esc(&c.name));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (row, cells) in release.rows.iter().zip(&release.cells) {
        h.push_str("<tr>");
        for c in &release.columns {
            let value = row.get(&c.name).unwrap_or(&Value::Null);
            if c.role == ColumnRole::Key {
                let _ = write!(h, "<td>{}</td>", esc(&shown(value, "(none)")));
                continue;
            }
            if value.is_null() {
                let _ = write!(
                    h,
                    "<td class=\"num suppressed\" title=\"hidden: a small number\">{}</td>",
                    esc(marker)
                );
                continue;
            }
            let interval = cells.get(&c.name).and_then(|m| m.interval);
            // Counts are whole numbers; fractions (rates, means) get the digits their
            // interval supports; a quantile is a value of the catalog's grid, shown whole.
            let (text, ci) = match (value.as_f64(), interval) {
                (Some(v), Some(i @ [lo, hi]))
                    if value.is_f64() && c.role != ColumnRole::Quantile =>
                {
                    (fixed(v, i), format!("{}–{}", fixed(lo, i), fixed(hi, i)))
                }
                (_, Some([lo, hi])) => (
                    shown(value, marker),
                    format!("{}–{}", number(lo), number(hi)),
                ),
                (_, None) => (shown(value, marker), String::new()),
            };
            let why = cells.get(&c.name).and_then(|m| m.no_interval.as_deref());
            let ci = match (ci.is_empty(), why) {
                (false, _) => format!("<span class=\"ci\">95%: {ci}</span>"),
                (true, Some(why)) => format!("<span class=\"ci\">no interval: {}</span>", esc(why)),
                (true, None) => ci,
            };
            let _ = write!(h, "<td class=\"num\">{}{ci}</td>", esc(&text));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
}

/// The column a chart shows, chosen by the query and the columns' roles, never by the
/// values: the column a `-- carelens: chart=COLUMN` directive names; else the first
/// derived column (a rate or ratio of released values, what such a query is about); else
/// the first mean; else the first quantile (a median, drawn with its 95% interval as the
/// whisker); else the first count or sum (queries list a numerator before its
/// denominator).
fn chart_column<'a>(release: &'a Release, asked: Option<&str>) -> Option<&'a str> {
    let measures = || release.columns.iter().filter(|c| c.role != ColumnRole::Key);
    let first = |roles: &[ColumnRole]| measures().find(|c| roles.contains(&c.role));
    asked
        .and_then(|name| measures().find(|c| c.name == name))
        .or_else(|| first(&[ColumnRole::Derived]))
        .or_else(|| first(&[ColumnRole::Mean]))
        .or_else(|| first(&[ColumnRole::Quantile]))
        .or_else(|| first(&[ColumnRole::Count, ColumnRole::Sum]))
        .map(|c| c.name.as_str())
}

/// A horizontal bar chart of one column by group, with 95% intervals as error bars.
/// Only for grouped results with at least two groups.
fn chart(release: &Release, asked: Option<&str>) -> Option<String> {
    let keys = release.key_names();
    if keys.is_empty() || release.rows.len() < 2 {
        return None;
    }
    let column = chart_column(release, asked)?;
    let marker = &release.privacy.marker;
    struct Bar {
        label: String,
        /// The label drawn beside the bar: the whole label, or in a grouped chart the
        /// group's name on its first bar only.
        drawn: String,
        value: Option<f64>,
        fraction: bool,
        interval: Option<[f64; 2]>,
        /// In a grouped chart, the bar's series (the second key's value) and whether it
        /// starts a group.
        series: Option<usize>,
        starts_group: bool,
    }
    let key_text = |row: &std::collections::BTreeMap<String, Value>, key: &str| {
        shown(row.get(key).unwrap_or(&Value::Null), "(none)")
    };
    // Two keys whose second has a few values (sex, care-home residence): one group of
    // bars per value of the first key, side by side, a colour per value of the second.
    let series: Vec<String> = match keys.as_slice() {
        [_, second] => {
            let mut values: Vec<String> = Vec::new();
            for row in &release.rows {
                let v = key_text(row, second);
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            if values.len() <= SERIES_COLOURS {
                values
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    };
    let mut previous_group: Option<String> = None;
    let bars: Vec<Bar> = release
        .rows
        .iter()
        .zip(&release.cells)
        .take(MAX_BARS)
        .map(|(row, cells)| {
            let label = keys
                .iter()
                .map(|k| key_text(row, k))
                .collect::<Vec<_>>()
                .join(" · ");
            let (drawn, series_index, starts_group) = if series.is_empty() {
                (label.clone(), None, false)
            } else {
                let group = key_text(row, keys[0]);
                let index = series.iter().position(|v| *v == key_text(row, keys[1]));
                let starts = previous_group.as_ref() != Some(&group);
                previous_group = Some(group.clone());
                (if starts { group } else { String::new() }, index, starts)
            };
            Bar {
                label,
                drawn,
                value: row.get(column).and_then(Value::as_f64),
                fraction: row.get(column).is_some_and(Value::is_f64),
                interval: cells.get(column).and_then(|m| m.interval),
                series: series_index,
                starts_group,
            }
        })
        .collect();
    // A gap before each group but the first; a legend line above a grouped chart.
    let gap = 8.0;
    let groups = bars.iter().filter(|b| b.starts_group).count();
    let (lo, hi) = axis_range(
        &bars
            .iter()
            .map(|b| (b.value, b.interval))
            .collect::<Vec<_>>(),
    );
    let step = tick_step(hi - lo);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let (label_w, plot_w, row_h) = (190.0, 560.0, 20.0);
    let top = if series.is_empty() { 26.0 } else { 48.0 };
    let height = top + row_h * bars.len() as f64 + gap * groups.saturating_sub(1) as f64 + 24.0;
    let width = label_w + plot_w + 70.0;
    let x = |v: f64| label_w + (v - lo) / span * plot_w;
    let mut s = String::new();
    let _ = write!(
        s,
        "<h3>{col} by {keys}</h3>\n<svg role=\"img\" aria-label=\"bar chart of {col}\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
         xmlns=\"http://www.w3.org/2000/svg\">\n",
        col = esc(column),
        keys = esc(&keys.join(" and ")),
    );
    if !series.is_empty() {
        let mut lx = label_w;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"16\" text-anchor=\"end\">{}:</text>",
            lx - 8.0,
            esc(keys[1])
        );
        for (n, name) in series.iter().enumerate() {
            let _ = write!(
                s,
                "<rect class=\"bar s{n}\" x=\"{lx:.1}\" y=\"6\" width=\"12\" height=\"12\"/>\
                 <text x=\"{:.1}\" y=\"16\">{}</text>",
                lx + 16.0,
                esc(name)
            );
            lx += 32.0 + 7.0 * name.chars().count() as f64;
        }
        s.push('\n');
    }
    let ticks = ((hi - lo) / step).round() as i64;
    for k in 0..=ticks {
        let v = lo + step * k as f64;
        let gx = x(v);
        let _ = writeln!(
            s,
            "<line class=\"grid\" x1=\"{gx:.1}\" y1=\"{top}\" x2=\"{gx:.1}\" y2=\"{:.1}\"/>\
             <text class=\"muted\" x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            height - 20.0,
            height - 6.0,
            esc(&number((v / step).round() * step))
        );
    }
    let mut y = top - row_h;
    for (i, b) in bars.iter().enumerate() {
        y += row_h + if b.starts_group && i > 0 { gap } else { 0.0 };
        let label: String = b.drawn.chars().take(30).collect();
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y + row_h * 0.68,
            esc(&label)
        );
        match b.value {
            Some(v) => {
                let (x0, x1) = (x(0.0_f64.max(lo)), x(v));
                let _ = write!(
                    s,
                    "<rect class=\"bar{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
                    b.series.map(|n| format!(" s{n}")).unwrap_or_default(),
                    x0.min(x1),
                    y + 3.0,
                    (x1 - x0).abs().max(0.5),
                    row_h - 6.0,
                    esc(&b.label),
                    esc(&number(v))
                );
                if let Some([ilo, ihi]) = b.interval {
                    // An interval wider than the axis is drawn to its edge; the label
                    // beside the bar gives its ends.
                    let (a, c, m) = (x(ilo.max(lo)), x(ihi.min(hi)), y + row_h / 2.0);
                    let _ = write!(
                        s,
                        "<line class=\"err\" x1=\"{a:.1}\" y1=\"{m:.1}\" x2=\"{c:.1}\" y2=\"{m:.1}\"/>\
                         <line class=\"err\" x1=\"{a:.1}\" y1=\"{:.1}\" x2=\"{a:.1}\" y2=\"{:.1}\"/>\
                         <line class=\"err\" x1=\"{c:.1}\" y1=\"{:.1}\" x2=\"{c:.1}\" y2=\"{:.1}\"/>",
                        m - 4.0,
                        m + 4.0,
                        m - 4.0,
                        m + 4.0
                    );
                }
                let _ = write!(
                    s,
                    "<text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                    x(b.interval.map_or(v, |i| i[1]).max(v).min(hi)) + 5.0,
                    y + row_h * 0.68,
                    esc(&match b.interval {
                        Some(i) if b.fraction => fixed(v, i),
                        _ => number(v),
                    })
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text class=\"muted\" x=\"{:.1}\" y=\"{:.1}\">{}{} hidden (small number)</text>",
                    x(0.0_f64.max(lo)) + 4.0,
                    y + row_h * 0.68,
                    b.series
                        .and_then(|n| series.get(n))
                        .map(|name| format!("{}: ", esc(name)))
                        .unwrap_or_default(),
                    esc(marker)
                );
            }
        }
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "<line class=\"axis\" x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\"/>\n</svg>",
        x(0.0_f64.max(lo)),
        height - 20.0
    );
    let _ = writeln!(
        s,
        "<p class=\"notes\">Bars show the released value; the black lines its 95% range.{}</p>",
        if release.rows.len() > MAX_BARS {
            format!(
                " The first {MAX_BARS} of {} groups are drawn; the table has them all.",
                release.rows.len()
            )
        } else {
            String::new()
        }
    );
    Some(s)
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `span` into about 4 to 8 parts.
/// The span a chart's axis covers: zero and every released value, widened by the 95%
/// intervals to at most twice the values' own span. One cell with a tiny noisy
/// denominator (a rate over a group just above the suppression threshold) can have an
/// interval hundreds of times wider than the values; scaled to it, every other bar would
/// be a sliver.
fn axis_range(bars: &[(Option<f64>, Option<[f64; 2]>)]) -> (f64, f64) {
    let values = bars.iter().filter_map(|b| b.0).filter(|v| v.is_finite());
    let (vlo, vhi) = values.fold((0.0_f64, 0.0_f64), |(l, h), v| (l.min(v), h.max(v)));
    let reach = (vhi - vlo).max(f64::MIN_POSITIVE);
    let ends = bars.iter().filter_map(|b| b.1).flatten();
    ends.filter(|v| v.is_finite())
        .fold((vlo, vhi), |(l, h), v| {
            (l.min(v.max(vlo - reach)), h.max(v.min(vhi + reach)))
        })
}

fn tick_step(span: f64) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| span / step <= 8.0)
        .unwrap_or(10.0 * power)
}

/// A file name as a relative URL path segment: every byte but the unreserved characters
/// percent-encoded, so no name can become a `javascript:` link or break the path.
fn url_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What became of one query of a batch.
pub enum Outcome {
    /// Released now (`spent` debited) or answered from an earlier release (`cached`).
    Released {
        /// The release.
        release: Box<Release>,
        /// What was debited for it now.
        spent: Amount,
        /// An identical earlier query's release, answered again at no cost.
        cached: bool,
    },
    /// The privacy analysis or the policy rejected it (the rendered rejection).
    Rejected(String),
    /// A budget could not cover it when its turn came.
    Refused(String),
    /// It failed: to plan (nothing spent), or to run after it was charged (`spent`).
    Failed {
        /// Why.
        why: String,
        /// What was debited for it now.
        spent: Amount,
    },
}

impl Outcome {
    /// The outcome in a few words.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Released { cached: false, .. } => "released",
            Outcome::Released { cached: true, .. } => "released (earlier answer, no cost)",
            Outcome::Rejected(_) => "rejected",
            Outcome::Refused(_) => "refused (budget)",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// What this run spent on the query (a failure after the charge spent it too).
    pub fn spent(&self) -> Amount {
        match self {
            Outcome::Released { spent, .. } | Outcome::Failed { spent, .. } => *spent,
            _ => Amount::default(),
        }
    }
}

impl Outcome {
    /// What the service's answer for one query of a batch means for its report;
    /// `source` names the query in a rejection's message (a file's path).
    pub fn of(source: &str, item: BatchItem) -> Outcome {
        match item {
            Ok(released) => Outcome::Released {
                release: Box::new(released.release),
                spent: released.spent,
                cached: released.cached,
            },
            Err(ServiceError::Rejected(r)) => Outcome::Rejected(r.render(source)),
            Err(ServiceError::OverBudget(refusal)) => Outcome::Refused(refusal.to_string()),
            Err(ServiceError::FailedAfterCharge { message, spent }) => Outcome::Failed {
                why: message,
                spent,
            },
            Err(ServiceError::FailedBefore(failure)) => Outcome::Failed {
                why: failed_before(&failure),
                spent: Amount::default(),
            },
            Err(other) => Outcome::Failed {
                why: with_causes(&other),
                spent: Amount::default(),
            },
        }
    }
}

/// A failure after the charge, as it is first told: what it was and that the charge
/// stays.
pub fn failed_after_charge(message: &str, spent: Amount) -> String {
    format!(
        "{message} (epsilon {} was spent: the budget is charged before a query runs; asking \
         it again gets this failure from the ledger at no cost)",
        number(spent.epsilon_value())
    )
}

/// A failure after the charge, served again from the ledger: what it was and why it is
/// not run again.
pub fn failed_before(failure: &StoredFailure) -> String {
    format!(
        "{} (served from the ledger at no cost: this query failed after its charge in entry \
         {}, and a failure is kept as the query's answer like a release, so it is not run \
         again; change the query or its parameters to ask a new question)",
        failure.message, failure.charge_seq
    )
}

/// An error and its causes on one line: `what: why: why`.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(why) = cause {
        let _ = write!(text, ": {why}");
        cause = why.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On paper every row is printed: the scroll boxes open up, each query starts a page,
    /// and tables repeat their header row on each page.
    #[test]
    fn the_print_stylesheet_prints_whole_tables() {
        let print = &STYLE[STYLE.find("@media print").expect("a print stylesheet")..];
        for rule in [
            ".scroll { max-height: none; overflow: visible;",
            "section.query { break-before: page;",
            "thead { display: table-header-group; }",
        ] {
            assert!(print.contains(rule), "{rule}");
        }
        let mut h = String::new();
        table(&mut h, &Release::example());
        assert!(
            h.contains("<thead><tr>") && h.contains("</tr></thead>\n<tbody>"),
            "{h}"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn values_show_the_digits_their_interval_supports() {
        assert_eq!(fixed(69.18239, [54.0, 84.0]), "69");
        assert_eq!(fixed(6.918239, [5.4, 8.4]), "6.9");
        assert_eq!(fixed(0.0691823, [0.054, 0.084]), "0.069");
        assert_eq!(fixed(1590.25, [1581.5, 1598.5]), "1590.2");
        assert_eq!(fixed(12.0, [12.0, 12.0]), "12");
    }

    #[test]
    fn file_links_cannot_become_scripts() {
        assert_eq!(url_path("q1_rates-2.v1"), "q1_rates-2.v1");
        assert_eq!(url_path("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(url_path("a b#?%é"), "a%20b%23%3F%25%C3%A9");
    }

    #[test]
    fn one_wide_interval_does_not_flatten_the_chart() {
        let bars = [
            (Some(60.0), Some([50.0, 70.0])),
            (Some(80.0), Some([-900.0, 40_000.0])),
            (None, None),
        ];
        assert_eq!(axis_range(&bars), (-80.0, 160.0));
        let narrow = [
            (Some(10.0), Some([8.0, 12.5])),
            (Some(5.0), Some([4.0, 6.0])),
        ];
        assert_eq!(axis_range(&narrow), (0.0, 12.5));
        assert_eq!(axis_range(&[(None, None)]), (0.0, 0.0));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(33.5), 5.0);
        assert_eq!(tick_step(100.0), 20.0);
        assert_eq!(tick_step(540.0), 100.0);
        assert_eq!(tick_step(0.3), 0.05);
        assert_eq!(tick_step(0.0), 1.0);
        for span in [0.7, 3.0, 17.0, 250.0, 9_999.0, 123_456.0] {
            let n = span / tick_step(span);
            assert!((2.0..=8.0).contains(&n), "{span}: {n} ticks");
        }
    }

    /// A release column's description, for building releases in tests.
    fn column(name: &str, role: ColumnRole, data_type: &str) -> carelens_engine::ColumnMeta {
        carelens_engine::ColumnMeta {
            name: name.to_owned(),
            role,
            data_type: data_type.to_owned(),
        }
    }

    #[test]
    fn the_charted_column_is_the_querys_choice_or_the_rule_never_the_values() {
        let column = |name: &str, role| column(name, role, "Float64");
        let mut release = Release::example();
        release.columns = vec![
            column("locality", ColumnRole::Key),
            column("people", ColumnRole::Count),
            column("population", ColumnRole::Count),
            column("median_age", ColumnRole::Quantile),
            column("mean_age", ColumnRole::Mean),
            column("rate", ColumnRole::Derived),
        ];
        assert_eq!(chart_column(&release, None), Some("rate"));
        assert_eq!(chart_column(&release, Some("people")), Some("people"));
        // A directive naming a key or no column of the release falls back to the rule.
        assert_eq!(chart_column(&release, Some("locality")), Some("rate"));
        assert_eq!(chart_column(&release, Some("nonesuch")), Some("rate"));
        release.columns.pop();
        assert_eq!(chart_column(&release, None), Some("mean_age"));
        release.columns.pop();
        assert_eq!(chart_column(&release, None), Some("median_age"));
        release.columns.pop();
        assert_eq!(chart_column(&release, None), Some("people"));
        // Whatever the values: every row of `people` suppressed changes nothing.
        for row in &mut release.rows {
            row.insert("people".to_owned(), Value::Null);
        }
        assert_eq!(chart_column(&release, None), Some("people"));
    }

    #[test]
    fn two_keys_with_few_values_are_drawn_as_groups_side_by_side() {
        use std::collections::BTreeMap;
        let column = |name: &str, role| column(name, role, "Int64");
        let mut release = Release::example();
        release.columns = vec![
            column("band", ColumnRole::Key),
            column("sex", ColumnRole::Key),
            column("n", ColumnRole::Count),
        ];
        release.rows.clear();
        release.cells.clear();
        for band in ["0-17", "18-64"] {
            for (sex, n) in [("F", Value::from(100)), ("M", Value::Null)] {
                let mut row = BTreeMap::new();
                row.insert("band".to_owned(), Value::from(band));
                row.insert("sex".to_owned(), Value::from(sex));
                row.insert("n".to_owned(), n);
                release.rows.push(row);
                release.cells.push(BTreeMap::new());
            }
        }
        let svg = release_chart(&release, None).unwrap();
        // A legend naming the second key and each of its values, a colour each.
        assert!(svg.contains(">sex:</text>"), "{svg}");
        assert!(svg.contains("class=\"bar s0\"") && svg.contains("class=\"bar s1\""));
        // Each group named once; a hidden bar says whose it is.
        assert_eq!(svg.matches(">0-17</text>").count(), 1, "{svg}");
        assert!(svg.contains("M: * hidden"), "{svg}");
        // One key: no legend, no series.
        release.columns.remove(1);
        let svg = release_chart(&release, None).unwrap();
        assert!(!svg.contains("bar s0") && !svg.contains("sex:"), "{svg}");
    }

    #[test]
    fn a_quantile_is_shown_as_the_grid_value_it_is_with_its_interval() {
        use std::collections::BTreeMap;
        let mut release = Release::example();
        release.columns = vec![
            column("place", ColumnRole::Key, "Utf8"),
            column("median_age", ColumnRole::Quantile, "Float64"),
        ];
        release.rows.clear();
        release.cells.clear();
        for (place, median, interval) in [("A", 53.0, [44.0, 61.0]), ("B", 33.0, [0.0, 110.0])] {
            let mut row = BTreeMap::new();
            row.insert("place".to_owned(), Value::from(place));
            row.insert("median_age".to_owned(), Value::from(median));
            release.rows.push(row);
            let cell = carelens_engine::CellMeta {
                status: carelens_privacy::CellStatus::Released,
                interval: Some(interval),
                no_interval: None,
            };
            release
                .cells
                .push(BTreeMap::from([("median_age".to_owned(), cell)]));
        }
        let html = release_table(&release);
        assert!(
            html.contains(">53<span class=\"ci\">95%: 44–61</span>"),
            "{html}"
        );
        assert!(
            html.contains(">33<span class=\"ci\">95%: 0–110</span>"),
            "{html}"
        );
        // A released cell with no interval says why.
        let b = release.cells[1].get_mut("median_age").unwrap();
        b.interval = None;
        b.no_interval = Some("a < b".into());
        let html = release_table(&release);
        assert!(
            html.contains(">33<span class=\"ci\">no interval: a &lt; b</span>"),
            "{html}"
        );
        release.cells[1].get_mut("median_age").unwrap().interval = Some([0.0, 110.0]);
        // The chart draws the medians with their intervals as whiskers.
        assert_eq!(chart_column(&release, None), Some("median_age"));
        let svg = release_chart(&release, None).unwrap();
        assert!(svg.contains("A: 53") && svg.contains("B: 33"), "{svg}");
    }
}
