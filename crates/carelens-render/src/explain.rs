//! A prepared query's cost and protection as text: `carelens explain` in full, and the
//! few lines a batch or a request shows per query.

use std::fmt::Write as _;

use carelens_engine::{ErrorUnit, Explain, Groups};
use carelens_privacy::number;

/// What `carelens explain` prints: ε and δ, which groups are released, the limits, every
/// mechanism with its sensitivity, noise scale and expected 95% error, the clamping
/// bounds and the rewritten plan.
pub fn explain(explain: &Explain) -> String {
    let mut out = String::new();
    let Some(p) = &explain.private else {
        out.push_str("reads only public reference tables: released exactly, no privacy cost\n");
        return out;
    };
    let _ = writeln!(
        out,
        "privacy: epsilon {} and delta {} (basic composition over {} mechanism{})",
        number(explain.epsilon),
        number(explain.delta),
        p.mechanisms.len(),
        if p.mechanisms.len() == 1 { "" } else { "s" }
    );
    if let Some(z) = &explain.zcdp {
        let _ = writeln!(out, "{}", zcdp_charge(z));
    }
    match &p.groups {
        Groups::Public { keys, sizes } => {
            let shown: Vec<String> = sizes.iter().map(usize::to_string).collect();
            let _ = writeln!(
                out,
                "groups: GROUP BY {} — public domains, {} = {} groups, all released (empty ones too)",
                keys.join(", "),
                shown.join(" x "),
                sizes.iter().product::<usize>()
            );
        }
        Groups::One => {
            let _ = writeln!(out, "groups: one (no GROUP BY)");
        }
        Groups::Selected { keys, threshold } => {
            let _ = writeln!(
                out,
                "groups: GROUP BY {} — not all keys public: DP key selection, a group is released if its noisy person count reaches {threshold}",
                keys.join(", ")
            );
        }
    }
    let limits = if p.groups_sampled {
        format!(
            "L0 = {0}: some group key is not constant per person, so each person's groups are sampled to at most {0} by a keyed hash",
            p.max_groups
        )
    } else {
        "L0 = 1: every group key is constant per person, so each person is in one group".to_owned()
    };
    let _ = writeln!(
        out,
        "limits: {limits}; L∞ = {} rows per person per group",
        p.max_rows
    );
    let _ = writeln!(
        out,
        "\n{:<48} {:>10} {:>12} {:>12} {:>12}",
        "mechanism", "epsilon", "sensitivity", "noise scale", "95% error"
    );
    for m in &p.mechanisms {
        let label = fit(&m.label, 48);
        let _ = writeln!(
            out,
            "{:<48} {:>10} {:>12} {:>12} {:>12}",
            label,
            number(m.epsilon),
            number(m.sensitivity),
            number(m.noise_scale),
            error_95(m.error_95, m.error_unit)
        );
    }
    if p.mechanisms.iter().any(|m| m.error_unit == ErrorUnit::Rank) {
        let _ = writeln!(
            out,
            "a quantile's sensitivity, noise scale and 95% error count ranks: with 95% \
             probability at most that many of the group's values lie between the released \
             value and the true quantile (for an end of its 95% interval, which is aimed \
             beyond the quantile on its side, between the end and the quantile)"
        );
    }
    let _ = writeln!(out, "split: {}", p.split);
    for b in &p.bounds {
        let _ = writeln!(
            out,
            "bounds: {} clamps each value to [{}, {}] in units of {}",
            b.aggregate,
            number(b.lo),
            number(b.hi),
            number(b.unit)
        );
    }
    let _ = writeln!(
        out,
        "\nrewritten plan (the group-sampling secret is drawn per query):\n{}",
        p.rewritten_plan
    );
    out
}

/// A query's cost and each mechanism's expected 95% error, indented by `indent` (a
/// batch's or a request's view of one query).
pub fn cost_summary(explain: &Explain, indent: &str) -> String {
    let mut out = format!(
        "{indent}epsilon {}, delta {}\n",
        number(explain.epsilon),
        number(explain.delta)
    );
    if let Some(z) = &explain.zcdp {
        let _ = writeln!(out, "{indent}{}", zcdp_charge(z));
    }
    for m in explain.private.iter().flat_map(|p| &p.mechanisms) {
        let label = fit(&m.label, 60);
        let _ = writeln!(
            out,
            "{indent}  {label:<60}  95% error {}",
            error_95(m.error_95, m.error_unit)
        );
    }
    out
}

/// What a budget composed in zCDP is charged for a query (or a batch's queries
/// together): ρ (and δ), not their (ε, δ).
pub fn zcdp_charge(z: &carelens_privacy::ZcdpCost) -> String {
    format!(
        "budget charge in zCDP: rho {} and delta {} (Gaussian noise: a ledger that composes \
         in zCDP adds up rho and converts the total to epsilon at the budget's delta)",
        number(z.rho),
        number(z.delta)
    )
}

fn error_95(error: Option<f64>, unit: ErrorUnit) -> String {
    match (error, unit) {
        (None, _) => "?".into(),
        // A number of values: a bound on it is a whole number, rounded up.
        (Some(e), ErrorUnit::Rank) => format!("±{} ranks", number(e.ceil())),
        (Some(e), _) => format!("±{}", number(e)),
    }
}

/// `label` in at most `width` characters: a longer one keeps its start and its last whole
/// words (where a quantile's interval end says which end it is) around an ellipsis.
fn fit(label: &str, width: usize) -> String {
    let chars: Vec<char> = label.chars().collect();
    if chars.len() <= width {
        return label.to_string();
    }
    let mut tail = chars.len() - width / 3;
    while tail < chars.len() && !chars[tail - 1].is_whitespace() {
        tail += 1;
    }
    if tail == chars.len() {
        // No whole word fits: cut where it falls.
        tail = chars.len() - width / 3;
    }
    let head = width - (chars.len() - tail) - 1;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_label_keeps_its_start_and_its_end() {
        let label = "percentile_cont(Float64(0.1)) WITHIN GROUP [hb.hba1c ASC NULLS LAST]: \
                     95% interval, low end";
        let fitted = fit(label, 48);
        assert_eq!(fitted.chars().count(), 48);
        assert!(
            fitted.starts_with("percentile_cont(Float64(0.1))"),
            "{fitted}"
        );
        assert!(fitted.ends_with("…low end"), "{fitted}");
        assert_eq!(fit("median(x)", 48), "median(x)");
        // A tail with no space in it is cut where it falls.
        let fitted = fit(&"x".repeat(100), 48);
        assert_eq!(fitted.chars().count(), 48);
        assert!(
            fitted.ends_with(&format!("…{}", "x".repeat(16))),
            "{fitted}"
        );
    }

    #[test]
    fn a_rank_error_is_a_whole_number_of_ranks_rounded_up() {
        assert_eq!(error_95(Some(623.377624), ErrorUnit::Rank), "±624 ranks");
        assert_eq!(error_95(Some(6.0), ErrorUnit::Rank), "±6 ranks");
        assert_eq!(error_95(None, ErrorUnit::Rank), "?");
    }
}
