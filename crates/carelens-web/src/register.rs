//! The citizens' transparency register as a page, as CSV and as JSON — all three from the
//! service's [`Register`], which holds only the fields decided public there. The page
//! links `register.csv` and `register.json` beside it, so that it reads the same served
//! at `/register` and written as static files into a folder.

use std::fmt::Write as _;

use carelens_privacy::{Accounting, DisclosurePolicy, Rounding, number};
use carelens_service::{Basis, Charge, ChargeStatus, Register};
use chrono::NaiveDate;
use maud::{Markup, html};

use crate::page;

/// The register as one HTML page.
pub fn html(register: &Register) -> String {
    let title = format!("Transparency register — {}", register.dataset);
    let released = register
        .charges
        .iter()
        .filter(|c| c.outcome == ChargeStatus::Released)
        .count();
    let used = share(register.spent.epsilon, register.cap.epsilon);
    let body = html! {
        h1 { "Transparency register" }
        p.lead {
            "Every time anyone was given numbers from the records in " strong { (register.dataset) }
            ", it is listed here: when, in what role, for what purpose, and how much of the records' \
             privacy budget it spent. No result, no query text and no one's name is shown."
        }
        ul.figures aria-label="The register in figures" {
            li { b { (released) } (plural(released, "release", "releases")) " made" }
            li { b { "ε " (number(register.spent.epsilon)) } "spent of the cap of ε " (number(register.cap.epsilon)) " (" (used) ")" }
            li { b { (register.answered_again) } "answers given again at no cost" }
            li { b { (register.rejected + register.refused) } "queries stopped by the privacy checks or budgets" }
        }

        h2 #loss { "Privacy loss over time" }
        (chart(register))

        h2 #promise { "What carelens promises you" }
        (promises(register))

        h2 #releases { "Every release" }
        (charges_table(register))

        h2 #check { "Check this register" }
        (check(register))

        footer {
            p { "Made " (register.made_at) " by carelens from the public fields of its audit log. "
                "Open data: " a href="register.csv" { "register.csv" } " · " a href="register.json" { "register.json" } "." }
        }
    };
    page(&title, body)
}

/// `part` of `whole` as a percentage, for people.
fn share(part: f64, whole: f64) -> String {
    if whole <= 0.0 {
        return "no cap set".into();
    }
    let percent = 100.0 * part / whole;
    if percent > 0.0 && percent < 0.1 {
        "under 0.1%".into()
    } else {
        format!("{percent:.1}%")
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// The cumulative ε spent, day by day, against the cap: an SVG step line with a title and
/// a description for screen readers (the table below has every value).
pub(crate) fn chart(register: &Register) -> Markup {
    let Some(first) = register.charges.first() else {
        return html! { p { "Nothing has been spent yet: no release has been made from these records." } };
    };
    let day = |charge: &Charge| NaiveDate::parse_from_str(&charge.date, "%Y-%m-%d").ok();
    let (Some(start), Some(end)) = (day(first), register.charges.last().and_then(day)) else {
        return html! {};
    };
    let days = (end - start).num_days().max(1) as f64;
    let top = register
        .cap
        .epsilon
        .max(register.spent.epsilon)
        .max(f64::MIN_POSITIVE)
        * 1.08;
    let (width, height, left, right, up, down) = (640.0, 260.0, 56.0, 16.0, 16.0, 40.0);
    let x =
        |date: NaiveDate| left + (width - left - right) * (date - start).num_days() as f64 / days;
    let y = |epsilon: f64| up + (height - up - down) * (1.0 - epsilon / top);
    let mut path = format!("M{:.1},{:.1}", x(start), y(0.0));
    for charge in &register.charges {
        let Some(date) = day(charge) else { continue };
        let _ = write!(
            path,
            " H{:.1} V{:.1}",
            x(date),
            y(charge.cumulative_epsilon)
        );
    }
    let _ = write!(path, " H{:.1}", x(end).max(width - right));
    let cap_y = y(register.cap.epsilon);
    let period = if start == end {
        format!("on {end}")
    } else {
        format!("between {start} and {end}")
    };
    let description = format!(
        "Cumulative privacy loss rose from ε 0 to ε {} {period}: {} of the cap of ε {}.",
        number(register.spent.epsilon),
        share(register.spent.epsilon, register.cap.epsilon),
        number(register.cap.epsilon),
    );
    html! {
        figure {
            svg viewBox=(format!("0 0 {width} {height}")) role="img" aria-labelledby="loss-title loss-desc" {
                title #loss-title { "Cumulative privacy loss (ε) over time, against the cap" }
                desc #loss-desc { (description) }
                line x1=(left) y1=(y(0.0)) x2=(width - right) y2=(y(0.0)) stroke="#4a4a4a" {}
                line x1=(left) y1=(up) x2=(left) y2=(y(0.0)) stroke="#4a4a4a" {}
                line x1=(left) y1=(cap_y) x2=(width - right) y2=(cap_y) stroke="#a4000f" stroke-dasharray="6 4" {}
                text x=(width - right) y=(cap_y - 6.0) text-anchor="end" fill="#a4000f" font-size="13" { "cap ε " (number(register.cap.epsilon)) }
                text x=(left - 6.0) y=(y(0.0) + 4.0) text-anchor="end" font-size="12" fill="#1b1b1b" { "0" }
                text x=(left - 6.0) y=(cap_y + 4.0) text-anchor="end" font-size="12" fill="#1b1b1b" { (number(register.cap.epsilon)) }
                path d=(path) fill="none" stroke="#1d4e89" stroke-width="2.5" {}
                text x=(left) y=(height - 14.0) font-size="12" fill="#1b1b1b" { (start.to_string()) }
                text x=(width - right) y=(height - 14.0) text-anchor="end" font-size="12" fill="#1b1b1b" { (end.to_string()) }
            }
            figcaption { (description) }
        }
    }
}

/// The guarantees in plain English, with the policy's own numbers.
fn promises(register: &Register) -> Markup {
    let rules = rules(&register.disclosure);
    html! {
        p { "carelens never shows anyone a record. Analysts send it questions; it answers only with totals, "
            "averages and rates over many people, made safe in three ways before they leave it." }
        ol {
            li { strong { "Differential privacy." } " Every number is changed by a small random amount, chosen so "
                "that the answer would have been almost as likely whether or not your records were in the data. "
                "How close is measured by " i { "ε" } " (epsilon): the smaller, the closer. Each release spends some ε, "
                "and all releases from these records together may never spend more than the cap of ε "
                (number(register.cap.epsilon)) ". "
                @if register.accounting == Accounting::Zcdp {
                    "These releases use Gaussian noise, whose effects add up more slowly than their ε: carelens adds up "
                    "each release's " i { "ρ" } " (rho, zero-concentrated differential privacy) and turns the total into "
                    "the ε spent so far. That total is still the worst case: it assumes someone combines every "
                    "release against you."
                } @else {
                    "Adding up the ε of every release is the worst case: "
                    "it assumes someone combines them all against you."
                } }
            li { strong { "Small numbers are hidden." } " " (rules) }
            li { strong { "Everything is recorded." } " Each person who uses carelens has their own account and "
                "their own limit. Every question — answered, refused or failed — is written to a log that cannot "
                "be changed without it showing, and every use of the budget is listed on this page." }
        }
        h3 { "What carelens cannot promise" }
        ul {
            li { "It protects individuals, not groups. A release can show something true of many people — "
                "say, that smoking is more common in one area — and that can still be about you as one of them." }
            li { "The promise is about what carelens publishes. It does not cover copies of the data held "
                "elsewhere, or what others publish from other sources." }
            li { "Each ε is a bound, not a measurement: the real risk is usually much smaller, but carelens "
                "cannot say how much smaller for you." }
            @if register.spent.delta > 0.0 || register.cap.delta > 0.0 {
                li { "Some releases also carry a very small chance, " i { "δ" } " (delta, at most "
                    (number(register.cap.delta)) " for all releases together), that the promise does not hold." }
            }
            li { "It depends on the people who run it keeping the extract and the log safe. You can check that "
                "the log has not been rewritten (below); you cannot check what you cannot see." }
        }
    }
}

/// The disclosure policy in words.
fn rules(policy: &DisclosurePolicy) -> String {
    let mut words = match policy.suppress_at_or_below {
        Some(limit) => format!(
            "Any count of {limit} or fewer is never shown, and nor is any total or average over those few people."
        ),
        None => "Counts are not hidden however small; the random changes still apply.".into(),
    };
    match policy.rounding {
        Rounding::Nearest { base } if base.get() > 1 => {
            let _ = write!(
                words,
                " Other counts are rounded to the nearest {}.",
                base.get()
            );
        }
        _ => {}
    }
    words.push_str(" Both are decided on the changed numbers, never the true ones.");
    words
}

/// Every charge as a table, newest first.
fn charges_table(register: &Register) -> Markup {
    if register.charges.is_empty() {
        return html! { p { "No release yet." } };
    }
    html! {
        div.scroll role="region" aria-labelledby="releases" tabindex="0" {
            table {
                caption { "Every use of the privacy budget, newest first. ε and δ measure the privacy spent." }
                thead { tr {
                    th scope="col" { "Date" }
                    th scope="col" { "Asked by" }
                    th scope="col" { "Purpose" }
                    th scope="col" { "Outcome" }
                    th.num scope="col" { "ε spent" }
                    th.num scope="col" { "δ spent" }
                    th.num scope="col" { "ε in total" }
                } }
                tbody {
                    @for charge in register.charges.iter().rev() {
                        tr {
                            td.date { (charge.date) }
                            td { (asked_by(charge)) }
                            td { @match &charge.purpose {
                                Some(purpose) => (purpose),
                                None => span.muted { "Not stated (an analyst's own query)" },
                            } }
                            td { (outcome(charge)) }
                            td.num { (number(charge.spent.epsilon)) }
                            td.num { (number(charge.spent.delta)) }
                            td.num { (number(charge.cumulative_epsilon)) }
                        }
                    }
                }
            }
        }
    }
}

fn asked_by(charge: &Charge) -> String {
    let role = &charge.role;
    let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    };
    match charge.basis {
        Basis::Query => format!("{article} {role}"),
        Basis::ApprovedRequest => format!("{article} {role} (approved request)"),
    }
}

fn outcome(charge: &Charge) -> String {
    match (charge.outcome, charge.release) {
        (ChargeStatus::Released, Some(id)) => format!("Released (release {id})"),
        (ChargeStatus::Released, None) => "Released".into(),
        (ChargeStatus::Failed, _) => "Failed — nothing released, budget spent".into(),
        (ChargeStatus::Pending, _) => "Charged, outcome not yet logged".into(),
    }
}

/// How to check that the log behind the register is whole.
fn check(register: &Register) -> Markup {
    let log = &register.log;
    html! {
        @if log.intact {
            p { span.ok { "The audit log was checked when this page was made: intact." } " "
                (log.entries) " entries, each sealed with the hash of the one before." }
            p { "The log's last entry, its " em { "head" } ", is:" }
            p { code { (log.head_seq) ":" (log.head_hash) } }
            p { "Keep a copy of it. Whoever runs carelens can show at any later time that the log still holds "
                "this entry unchanged, with every entry before it, by running" }
            p { code { "carelens audit verify --expect-head " (log.head_seq) ":" (log.head_hash) } }
            p { "It fails if any entry up to this one was changed, removed or put out of order. The same head "
                "in copies of this page kept by different people shows they all saw the same log." }
        } @else {
            p { span.bad { "The audit log failed its check when this page was made." }
                " Whoever runs carelens has been told; no budget is spent until the log is restored." }
        }
        p { "Download the register as open data: " a href="register.csv" { "CSV" } " or " a href="register.json" { "JSON" }
            ". Both hold exactly the fields on this page." }
    }
}

/// The register as CSV, one line per charge, oldest first. A purpose that starts with a
/// character a spreadsheet would take for a formula is prefixed with `'`.
pub fn csv(register: &Register) -> String {
    let mut out = String::from(
        "entry,date,role,basis,purpose,epsilon,delta,cumulative_epsilon,outcome,release,rho\n",
    );
    for c in &register.charges {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            c.entry,
            c.date,
            field(&c.role),
            match c.basis {
                Basis::Query => "query",
                Basis::ApprovedRequest => "approved_request",
            },
            field(c.purpose.as_deref().unwrap_or("")),
            number(c.spent.epsilon),
            number(c.spent.delta),
            number(c.cumulative_epsilon),
            match c.outcome {
                ChargeStatus::Released => "released",
                ChargeStatus::Failed => "failed",
                ChargeStatus::Pending => "pending",
            },
            c.release.map(|r| r.to_string()).unwrap_or_default(),
            c.rho.map(number).unwrap_or_default(),
        );
    }
    out
}

fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The register as JSON (pretty-printed, a final newline).
pub fn json(register: &Register) -> String {
    let mut text = serde_json::to_string_pretty(register).unwrap_or_else(|e| {
        // Serialising plain data cannot fail; say so rather than publish nothing.
        format!("{{\"error\": \"the register could not be written as JSON: {e}\"}}")
    });
    text.push('\n');
    text
}
