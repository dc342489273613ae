//! What a release costs: splitting a query's (ε, δ) across its noisy aggregates, and the
//! charge the ledger stores.
//!
//! Within one release, carelens composes by **basic sequential composition**: releasing
//! mechanisms that are (ε₁, δ₁)-, …, (εₖ, δₖ)-DP on the same people is (Σεᵢ, Σδᵢ)-DP
//! (Dwork & Roth 2014, Theorem 3.16). A release's (ε, δ) is what it costs alone.
//!
//! Across releases, a budget is spent by one of two rules, [`Accounting`]: the ledger's,
//! chosen from the policy's noise when the ledger is made and kept for its life:
//!
//! * **Basic** (Laplace noise, the default): a budget's spend is (Σε, Σδ) over its
//!   releases. Simple for a governance board to read and check, and tight for pure ε-DP
//!   workloads of a few large queries.
//! * **zCDP** (Gaussian noise): every release is also stated in *approximate zCDP*
//!   ([`ZcdpCost`]): a Gaussian part is ρ-zCDP with ρ = Δ₂²/2σ² (Canonne, Kamath &
//!   Steinke 2020, Theorem 14); a pure ε-DP part (Laplace, a quantile's selections) is
//!   ε²/2-zCDP (Bun & Steinke 2016, Proposition 1.4); a part that is (ε, δ)-DP because
//!   of a bad event of probability δ (key selection: a group of too few people passing
//!   its threshold) is δ-approximately ε²/2-zCDP (Bun & Steinke 2016, Definition 8.1:
//!   outside the event it is pure ε-DP). Approximate zCDP composes by adding ρ and δ
//!   (Bun & Steinke 2016, Lemma 8.2), also when each release's parameters are chosen
//!   after the answers before it (Whitehouse, Ramdas, Rogers & Wu 2023, Theorem 1 — the
//!   ledger is such a filter). A budget's spend (Σρ, Σδ) is shown and capped as (ε, δ)
//!   with [`zcdp_epsilon`] at the budget's own δ: k Gaussian releases cost about √k
//!   times one, not k times.

use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::core::{Function, Measurement, PrivacyMap};
use opendp::domains::AtomDomain;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::AbsoluteDistance;
use serde::{Deserialize, Serialize};

use crate::noise::{MechanismError, NoiseKind};
use crate::numbers::bisect;
use crate::params::{Delta, Epsilon, ParamError};

/// Split `total` across parts in proportion to `weights` so that the shares never add up to
/// more than `total` (floating-point rounding is always taken off the shares, never added).
///
/// A weight of 0 gives that part no share (`None`): it needs no budget of this kind.
pub fn split_epsilon(total: Epsilon, weights: &[f64]) -> Result<Vec<Option<Epsilon>>, ParamError> {
    let shares = split(total.value(), weights)?;
    shares
        .into_iter()
        .map(|s| {
            if s > 0.0 {
                Epsilon::new(s).map(Some)
            } else {
                Ok(None)
            }
        })
        .collect()
}

/// Split `total` δ across parts in proportion to `weights`, as [`split_epsilon`]; parts
/// with weight 0 (mechanisms that need no δ) get δ = 0.
pub fn split_delta(total: Delta, weights: &[f64]) -> Result<Vec<Delta>, ParamError> {
    if total.is_zero() {
        return Ok(vec![Delta::ZERO; weights.len()]);
    }
    split(total.value(), weights)?
        .into_iter()
        .map(Delta::new)
        .collect()
}

/// Equal weights for `n` parts, for [`split_epsilon`] and [`split_delta`].
pub fn equal_weights(n: usize) -> Vec<f64> {
    vec![1.0; n]
}

fn split(total: f64, weights: &[f64]) -> Result<Vec<f64>, ParamError> {
    let bad = || ParamError::BadWeights {
        weights: weights.to_vec(),
    };
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(bad());
    }
    let sum: f64 = weights.iter().sum();
    if !(sum > 0.0 && sum.is_finite()) {
        return Err(bad());
    }
    let mut shares: Vec<f64> = weights.iter().map(|w| total * (w / sum)).collect();
    // A positive weight must get a positive share: 0 would mean "needs no budget".
    if weights
        .iter()
        .zip(&shares)
        .any(|(w, s)| *w > 0.0 && *s <= 0.0)
    {
        return Err(bad());
    }
    // Rounding may push the sum of shares a few ulps above the total: shave every share
    // down until it does not. Converges in a handful of steps.
    while shares.iter().sum::<f64>() > total {
        for s in shares.iter_mut().filter(|s| **s > 0.0) {
            *s = s.next_down();
        }
    }
    Ok(shares)
}

/// The mechanism a part of a release used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MechanismKind {
    /// Discrete Laplace (geometric) noise on integers: pure ε-DP.
    DiscreteLaplace,
    /// Discrete Gaussian noise on integers: ρ-zCDP, converted to (ε, δ).
    DiscreteGaussian,
    /// Discrete Laplace noise with a threshold, for releasing group keys: (ε, δ)-DP.
    LaplaceThreshold,
    /// A quantile by the exponential mechanism over a grid of candidates (report-noisy-min
    /// with exponential noise, `quantile.rs`): pure ε-DP. Its sensitivity and scale are
    /// in score units (the quantile's denominator times values).
    ExponentialQuantile,
}

/// One noisy part of a release (one aggregate column, or the key selection), with enough
/// detail for an auditor to recompute its privacy loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeItem {
    /// What was released, e.g. `count(*)` or `key selection`.
    pub label: String,
    /// The mechanism.
    pub mechanism: MechanismKind,
    /// ε spent by this part.
    pub epsilon: f64,
    /// δ spent by this part.
    pub delta: f64,
    /// L0: groups one person may change.
    pub max_groups: u32,
    /// The most one person can change one group's value, in the mechanism's integer units.
    pub per_group_sensitivity: u64,
    /// The noise scale, in the same units.
    pub scale: f64,
    /// The release threshold τ (key selection only).
    pub threshold: Option<i64>,
    /// ρ of a part that is ρ-zCDP (Gaussian noise): opendp's zCDP map of the measurement
    /// at its L2 sensitivity. `None` for the others, which are ε-DP or (ε, δ)-DP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
}

impl ChargeItem {
    /// This part in approximate zCDP (see the module's documentation): its ρ if it has
    /// one. A part that is ε-DP because each of the L0 groups one person reaches is
    /// (ε/L0)-DP on its own (independent noise or selections per group: discrete Laplace,
    /// a quantile) is L0·(ε/L0)²/2 = ε²/(2·L0)-zCDP, as zCDP adds over the groups. Key
    /// selection is taken whole: δ-approximately ε²/2-zCDP.
    pub fn zcdp(&self) -> ZcdpCost {
        let pure = |groups: u32| self.epsilon * self.epsilon / (2.0 * f64::from(groups.max(1)));
        match (self.rho, self.mechanism) {
            (Some(rho), _) => ZcdpCost { rho, delta: 0.0 },
            (None, MechanismKind::DiscreteLaplace | MechanismKind::ExponentialQuantile) => {
                ZcdpCost {
                    rho: pure(self.max_groups),
                    delta: self.delta,
                }
            }
            (None, MechanismKind::LaplaceThreshold | MechanismKind::DiscreteGaussian) => ZcdpCost {
                rho: pure(1),
                delta: self.delta,
            },
        }
    }
}

/// A cost in approximate zCDP: δ-approximately ρ-zCDP (Bun & Steinke 2016, §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ZcdpCost {
    /// ρ.
    pub rho: f64,
    /// δ of the parts that are only approximately zCDP (key selection).
    pub delta: f64,
}

/// How a budget composes the releases charged to it (see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    /// (Σε, Σδ): basic composition.
    #[default]
    Basic,
    /// (Σρ, Σδ) in approximate zCDP, converted to (ε, δ) at the budget's δ.
    Zcdp,
}

impl Accounting {
    /// The rule for a policy's noise: zCDP for Gaussian noise, basic for Laplace.
    pub fn for_noise(noise: NoiseKind) -> Self {
        match noise {
            NoiseKind::Laplace => Accounting::Basic,
            NoiseKind::Gaussian => Accounting::Zcdp,
        }
    }
}

/// The smallest ε such that a ρ-zCDP interaction is (ε, `delta`)-DP, by opendp's
/// conversion (Canonne, Kamath & Steinke 2020, Corollary 13, which is tighter than Bun &
/// Steinke 2016's ε = ρ + 2√(ρ·ln(1/δ))). 0 for ρ = 0; infinite — no budget holds it —
/// for a ρ that is negative or not finite, or a δ outside (0, 1).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> Result<f64, MechanismError> {
    if !(rho.is_finite() && rho >= 0.0 && delta > 0.0 && delta < 1.0) {
        return Ok(f64::INFINITY);
    }
    if rho == 0.0 {
        return Ok(0.0);
    }
    // A measurement whose privacy map is the constant ρ: only its map is used.
    let stated = Measurement::new(
        AtomDomain::<i64>::default(),
        AbsoluteDistance::<i64>::default(),
        ZeroConcentratedDivergence,
        Function::new(|x: &i64| *x),
        PrivacyMap::new(move |_: &i64| rho),
    )?;
    let fixed = make_fix_delta(&make_zCDP_to_approxDP(stated)?, delta)?;
    Ok(fixed.map(&1)?.0)
}

/// The largest ρ (to one part in 10⁹, rounded down) whose [`zcdp_epsilon`] at `delta` is
/// at most `epsilon`: what a budget of (`epsilon`, `delta`) holds in ρ.
pub fn zcdp_rho_within(epsilon: f64, delta: f64) -> Result<f64, MechanismError> {
    if !(epsilon > 0.0 && delta > 0.0 && delta < 1.0) {
        return Ok(0.0);
    }
    // ε(ρ) ≥ ρ, so the answer lies below ε.
    let over = |rho: f64| zcdp_epsilon(rho, delta).map(|e| e > epsilon);
    Ok(bisect(0.0, epsilon, over)?.0)
}

/// The privacy cost of one release: its parts and their sum under basic composition.
///
/// This is the value the ledger checks against the budgets and stores in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyCharge {
    epsilon: f64,
    delta: f64,
    items: Vec<ChargeItem>,
}

impl PrivacyCharge {
    /// The charge of a release made of `items` (the sum of their ε and of their δ).
    pub fn new(items: Vec<ChargeItem>) -> Self {
        let epsilon = items.iter().map(|i| i.epsilon).sum();
        let delta = items.iter().map(|i| i.delta).sum();
        Self {
            epsilon,
            delta,
            items,
        }
    }

    /// Total ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Total δ.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// The parts.
    pub fn items(&self) -> &[ChargeItem] {
        &self.items
    }

    /// The release in approximate zCDP: the sum of its parts' [`ChargeItem::zcdp`].
    pub fn zcdp(&self) -> ZcdpCost {
        self.items.iter().fold(ZcdpCost::default(), |sum, item| {
            let part = item.zcdp();
            ZcdpCost {
                rho: sum.rho + part.rho,
                delta: sum.delta + part.delta,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(v: f64) -> Epsilon {
        Epsilon::new(v).unwrap()
    }

    #[test]
    fn equal_split_never_exceeds_the_total() {
        // Awkward totals and part counts where naive division rounds up.
        for total in [0.1, 0.3, 0.7, 1.0, 1.1, 2.9, 1e-3, 7.77] {
            for n in 1..=40 {
                let shares = split_epsilon(eps(total), &equal_weights(n)).unwrap();
                assert_eq!(shares.len(), n);
                let sum: f64 = shares.iter().map(|s| s.unwrap().value()).sum();
                assert!(sum <= total, "{total} over {n}: {sum}");
                assert!(
                    sum >= total * (1.0 - 1e-12),
                    "{total} over {n}: {sum} lost too much"
                );
            }
        }
    }

    #[test]
    fn weighted_split_is_proportional_and_zero_weight_gets_nothing() {
        let shares = split_epsilon(eps(1.0), &[3.0, 1.0, 0.0]).unwrap();
        assert!((shares[0].unwrap().value() - 0.75).abs() < 1e-12);
        assert!((shares[1].unwrap().value() - 0.25).abs() < 1e-12);
        assert_eq!(shares[2], None);
        let deltas = split_delta(Delta::new(1e-6).unwrap(), &[0.0, 1.0, 1.0]).unwrap();
        assert_eq!(deltas[0], Delta::ZERO);
        assert!((deltas[1].value() - 5e-7).abs() < 1e-18);
        let none = split_delta(Delta::ZERO, &[1.0, 1.0]).unwrap();
        assert!(none.iter().all(|d| d.is_zero()));
    }

    #[test]
    fn bad_weights_are_rejected() {
        for weights in [
            vec![],
            vec![0.0, 0.0],
            vec![1.0, -1.0],
            vec![f64::NAN],
            vec![f64::INFINITY],
            // A positive weight so small that its share underflows to 0.
            vec![1e300, 1e-300],
        ] {
            let e = split_epsilon(eps(1.0), &weights).unwrap_err();
            assert!(matches!(e, ParamError::BadWeights { .. }), "{weights:?}");
        }
    }

    #[test]
    fn charge_sums_its_parts_and_round_trips_as_json() {
        let item = |label: &str, epsilon, delta| ChargeItem {
            label: label.into(),
            mechanism: MechanismKind::DiscreteLaplace,
            epsilon,
            delta,
            max_groups: 1,
            per_group_sensitivity: 1,
            scale: 1.0 / epsilon,
            threshold: None,
            rho: None,
        };
        let charge = PrivacyCharge::new(vec![item("count", 0.25, 0.0), item("keys", 0.25, 1e-6)]);
        assert_eq!(charge.epsilon(), 0.5);
        assert_eq!(charge.delta(), 1e-6);
        let json = serde_json::to_string(&charge).unwrap();
        assert!(json.contains(r#""mechanism":"discrete_laplace""#), "{json}");
        let back: PrivacyCharge = serde_json::from_str(&json).unwrap();
        assert_eq!(back, charge);
    }

    /// δ of Canonne, Kamath & Steinke 2020, Corollary 13, computed here over a fine grid
    /// of Rényi orders, independently of opendp: ρ-zCDP is (ε, δ)-DP for
    /// δ = inf over α > 1 of exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α.
    fn cks_delta(rho: f64, epsilon: f64) -> f64 {
        let mut best = 1.0f64;
        let mut alpha = 1.0001f64;
        while alpha < 5_000.0 {
            let log = (alpha - 1.0) * (alpha * rho - epsilon) - (alpha - 1.0).ln()
                + alpha * (1.0 - 1.0 / alpha).ln();
            best = best.min(log.exp());
            alpha *= 1.0005;
        }
        best
    }

    #[test]
    fn zcdp_conversion_is_the_tight_one_and_below_bun_steinke() {
        for (rho, delta) in [
            (0.5, 1e-5),
            (0.05, 1e-5),
            (1e-4, 1e-6),
            (2.0, 1e-8),
            (0.3, 0.1),
        ] {
            let epsilon = zcdp_epsilon(rho, delta).unwrap();
            // Valid: the independent δ at opendp's ε is within the δ asked for.
            assert!(
                cks_delta(rho, epsilon) <= delta * (1.0 + 1e-6),
                "{rho} {delta}"
            );
            // Tight: 0.1% less ε needs more δ.
            assert!(
                cks_delta(rho, epsilon * 0.999) > delta,
                "{rho} {delta} {epsilon}"
            );
            // Never looser than Bun & Steinke 2016, Proposition 1.3.
            let bun_steinke = rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt();
            assert!(
                epsilon <= bun_steinke,
                "{rho} {delta}: {epsilon} > {bun_steinke}"
            );
        }
        assert_eq!(zcdp_epsilon(0.0, 1e-6).unwrap(), 0.0);
        // Outside its domain it fails safe: an ε no budget holds.
        for (rho, delta) in [(0.5, 1.0), (0.5, 0.0), (-1.0, 1e-6), (f64::NAN, 1e-6)] {
            assert_eq!(
                zcdp_epsilon(rho, delta).unwrap(),
                f64::INFINITY,
                "{rho} {delta}"
            );
        }
    }

    #[test]
    fn rho_within_is_the_largest_rho_a_budget_holds() {
        for (epsilon, delta) in [(1.0, 1e-5), (10.0, 1e-6), (0.1, 1e-9), (15.0, 1e-4)] {
            let rho = zcdp_rho_within(epsilon, delta).unwrap();
            assert!(rho > 0.0);
            assert!(zcdp_epsilon(rho, delta).unwrap() <= epsilon);
            assert!(zcdp_epsilon(rho * (1.0 + 1e-6), delta).unwrap() > epsilon);
        }
        // No δ, no zCDP budget.
        assert_eq!(zcdp_rho_within(1.0, 0.0).unwrap(), 0.0);
    }

    fn item(mechanism: MechanismKind, epsilon: f64, delta: f64, max_groups: u32) -> ChargeItem {
        ChargeItem {
            label: "part".into(),
            mechanism,
            epsilon,
            delta,
            max_groups,
            per_group_sensitivity: 1,
            scale: 1.0,
            threshold: None,
            rho: None,
        }
    }

    #[test]
    fn each_kind_of_part_has_its_zcdp_cost() {
        // A Gaussian part: its own ρ, no δ.
        let gaussian = ChargeItem {
            rho: Some(0.05),
            ..item(MechanismKind::DiscreteGaussian, 1.3, 1e-5, 1)
        };
        assert_eq!(
            gaussian.zcdp(),
            ZcdpCost {
                rho: 0.05,
                delta: 0.0
            }
        );
        // Laplace over 4 groups: ε = 1 is 0.25 per group, 4 × 0.25²/2 = 1/8.
        let laplace = item(MechanismKind::DiscreteLaplace, 1.0, 0.0, 4);
        assert_eq!(
            laplace.zcdp(),
            ZcdpCost {
                rho: 0.125,
                delta: 0.0
            }
        );
        let quantile = item(MechanismKind::ExponentialQuantile, 0.5, 0.0, 1);
        assert_eq!(
            quantile.zcdp(),
            ZcdpCost {
                rho: 0.125,
                delta: 0.0
            }
        );
        // Key selection, whole: ε²/2 and its δ.
        let keys = item(MechanismKind::LaplaceThreshold, 0.2, 1e-6, 3);
        let z = keys.zcdp();
        assert!((z.rho - 0.02).abs() < 1e-15 && z.delta == 1e-6, "{z:?}");
        // A Gaussian part stored before ρ was: its (ε, δ) whole.
        let old = item(MechanismKind::DiscreteGaussian, 1.0, 1e-6, 1);
        assert_eq!(
            old.zcdp(),
            ZcdpCost {
                rho: 0.5,
                delta: 1e-6
            }
        );
    }

    /// The example in docs/privacy.md, by hand: ten Gaussian releases of ρ = 0.05 each
    /// (σ = √10 at L2 sensitivity 1) cost ε ≈ 1.308 each at δ = 10⁻⁵. Basic composition
    /// charges them ε ≈ 13.08 and δ = 10⁻⁴; zCDP charges ρ = 0.5, which is ε ≈ 4.728 at
    /// δ = 10⁻⁵ (and 5.299 by Bun & Steinke's simpler bound).
    #[test]
    fn ten_gaussian_releases_compose_in_zcdp_as_computed_by_hand() {
        let one = zcdp_epsilon(0.05, 1e-5).unwrap();
        assert!((one - 1.3081).abs() < 1e-3, "{one}");
        let charges: Vec<PrivacyCharge> = (0..10)
            .map(|_| {
                PrivacyCharge::new(vec![ChargeItem {
                    rho: Some(0.05),
                    ..item(MechanismKind::DiscreteGaussian, one, 1e-5, 1)
                }])
            })
            .collect();
        let basic: f64 = charges.iter().map(PrivacyCharge::epsilon).sum();
        assert!((basic - 13.081).abs() < 1e-2, "{basic}");
        let rho: f64 = charges.iter().map(|c| c.zcdp().rho).sum();
        assert!((rho - 0.5).abs() < 1e-12, "{rho}");
        let zcdp = zcdp_epsilon(rho, 1e-5).unwrap();
        assert!((zcdp - 4.7284).abs() < 1e-3, "{zcdp}");
        assert!(zcdp < 5.2986);

        // Mixed: a Laplace count (ε 1, one group: ρ 0.5), key selection (ε 0.2, δ 10⁻⁶:
        // ρ 0.02) and one Gaussian part (ρ 0.05) add up to ρ 0.57 and δ 10⁻⁶; a budget of
        // δ 10⁻⁵ converts it at the 9·10⁻⁶ left.
        let mixed = PrivacyCharge::new(vec![
            item(MechanismKind::DiscreteLaplace, 1.0, 0.0, 1),
            item(MechanismKind::LaplaceThreshold, 0.2, 1e-6, 1),
            ChargeItem {
                rho: Some(0.05),
                ..item(MechanismKind::DiscreteGaussian, one, 1e-5, 1)
            },
        ]);
        let z = mixed.zcdp();
        assert!((z.rho - 0.57).abs() < 1e-12 && z.delta == 1e-6, "{z:?}");
        let epsilon = zcdp_epsilon(z.rho, 1e-5 - z.delta).unwrap();
        assert!(cks_delta(0.57, epsilon) <= 9e-6 * (1.0 + 1e-6));
        assert!((epsilon - 5.124).abs() < 0.01, "{epsilon}");
    }
}
