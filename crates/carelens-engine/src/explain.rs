//! What `explain` shows of a prepared query, as data: its cost, how its groups are
//! chosen, each person's contribution limits, every noise mechanism with its expected
//! error, the clamping bounds and the rewritten plan. The faces render it
//! (`carelens-render`); nothing here is prose.

use datafusion::logical_expr::Expr;
use serde::{Deserialize, Serialize};

use crate::analysis::{AggKind, Quantile};
use crate::rewrite::Source;
use crate::{MechanismSummary, Prepared, PreparedQuery};

/// A prepared query's cost and protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explain {
    /// ε of the release (0 for a query over public tables only).
    pub epsilon: f64,
    /// δ of the release.
    pub delta: f64,
    /// How it is protected; `None` for a query over public tables only, which is released
    /// exactly at no cost.
    pub private: Option<Protection>,
    /// When the policy's budgets compose in zCDP (Gaussian noise), what the release adds
    /// to them: ρ, and the δ of its parts that are only approximately zCDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zcdp: Option<carelens_privacy::ZcdpCost>,
}

/// How a query over private tables is protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Protection {
    /// Which groups are released.
    pub groups: Groups,
    /// L0: the groups one person's rows may count in.
    pub max_groups: u32,
    /// Whether L0 is enforced by sampling each person's groups (some key is not constant
    /// per person); otherwise each person is in one group.
    pub groups_sampled: bool,
    /// L∞: the rows one person's may count in one group.
    pub max_rows: u32,
    /// Every noise mechanism (basic composition over them gives ε and δ).
    pub mechanisms: Vec<MechanismSummary>,
    /// How ε is split over the mechanisms, and why.
    pub split: String,
    /// The bounds each summed or averaged value is clamped to.
    pub bounds: Vec<Clamp>,
    /// The rewritten (bounded) plan, indented; the group-sampling secret is drawn per
    /// query.
    pub rewritten_plan: String,
}

/// Which groups a release shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Groups {
    /// One (no GROUP BY).
    One,
    /// Every combination of the keys' public domains, empty ones too.
    Public {
        /// The GROUP BY keys.
        keys: Vec<String>,
        /// The size of each key's domain.
        sizes: Vec<usize>,
    },
    /// DP key selection: a group is released if its noisy person count reaches
    /// `threshold`.
    Selected {
        /// The GROUP BY keys.
        keys: Vec<String>,
        /// The noisy person count a group needs.
        threshold: i64,
    },
}

/// The bounds a summed or averaged value is clamped to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clamp {
    /// The aggregate, as the query writes it.
    pub aggregate: String,
    /// Lowest value counted.
    pub lo: f64,
    /// Highest value counted.
    pub hi: f64,
    /// The unit values are counted in (the column's precision).
    pub unit: f64,
}

impl PreparedQuery {
    /// What the query costs and how it is protected.
    pub fn explain(&self) -> Explain {
        let charge = self.charge();
        let Prepared::Private(p) = &self.kind else {
            return Explain {
                epsilon: 0.0,
                delta: 0.0,
                private: None,
                zcdp: None,
            };
        };
        let keys: Vec<String> =
            p.dp.aggregate
                .group_expr
                .iter()
                .map(|g| g.schema_name().to_string())
                .collect();
        let groups = match &p.domains {
            Some(d) if !keys.is_empty() => Groups::Public {
                keys,
                sizes: d.iter().map(Vec::len).collect(),
            },
            Some(_) => Groups::One,
            None => Groups::Selected {
                keys,
                threshold: p
                    .mechanisms
                    .key_selection
                    .as_ref()
                    .map_or(0, |k| k.threshold()),
            },
        };
        let bounds =
            p.dp.aggregates
                .iter()
                .zip(&p.dp.aggregate.aggr_expr)
                .zip(&p.bounded.sources)
                .filter_map(|((kind, expr), source): ((&AggKind, &Expr), &Source)| {
                    let unit = match (kind, source) {
                        (AggKind::Sum(b) | AggKind::Avg(b), _) => b.precision.unit(),
                        // A quantile's values are snapped onto its candidates' grid.
                        (AggKind::Quantile(_), Source::Quantile(q)) => {
                            let histogram = p.bounded.quantiles[*q].histogram;
                            p.bounded.histograms[histogram].grid.step()
                        }
                        _ => return None,
                    };
                    let (AggKind::Sum(b)
                    | AggKind::Avg(b)
                    | AggKind::Quantile(Quantile { value: b, .. })) = kind
                    else {
                        return None;
                    };
                    Some(Clamp {
                        aggregate: expr.schema_name().to_string(),
                        lo: b.lo,
                        hi: b.hi,
                        unit,
                    })
                })
                .collect();
        Explain {
            epsilon: charge.epsilon(),
            delta: charge.delta(),
            private: Some(Protection {
                groups,
                max_groups: p.limits.max_groups,
                groups_sampled: p.limits.sample_groups,
                max_rows: p.limits.max_rows,
                mechanisms: self.mechanisms(),
                split: p.mechanisms.describe_split(),
                bounds,
                rewritten_plan: p.bounded.plan.display_indent().to_string(),
            }),
            zcdp: (p.accounting == carelens_privacy::Accounting::Zcdp).then(|| charge.zcdp()),
        }
    }
}
