//! What a release costs: splitting a query's (ε, δ) across its noisy aggregates, and the
//! charge the ledger stores.
//!
//! carelens composes by **basic sequential composition**: releasing mechanisms that are
//! (ε₁, δ₁)-, …, (εₖ, δₖ)-DP on the same people is (Σεᵢ, Σδᵢ)-DP (Dwork & Roth 2014,
//! Theorem 3.16). It is looser than advanced or zCDP composition but simple for a
//! governance board to read and check: the cost of a query is the sum of its parts, and a
//! budget is spent by adding.

use serde::{Deserialize, Serialize};

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
        };
        let charge = PrivacyCharge::new(vec![item("count", 0.25, 0.0), item("keys", 0.25, 1e-6)]);
        assert_eq!(charge.epsilon(), 0.5);
        assert_eq!(charge.delta(), 1e-6);
        let json = serde_json::to_string(&charge).unwrap();
        assert!(json.contains(r#""mechanism":"discrete_laplace""#), "{json}");
        let back: PrivacyCharge = serde_json::from_str(&json).unwrap();
        assert_eq!(back, charge);
    }
}
