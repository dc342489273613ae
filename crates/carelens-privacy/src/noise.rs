//! Noise for counts and fixed-point sums: discrete Laplace (the default) and discrete
//! Gaussian (behind the policy switch [`NoiseKind::Gaussian`]).
//!
//! Both sample integers exactly, from the `opendp` crate's samplers, with randomness from
//! OpenSSL's CSPRNG. Textbook floating-point Laplace noise leaks the input through the
//! low bits of its output (Mironov 2012); integer noise on integer aggregates has no such
//! channel, which is why carelens sums in fixed point (DESIGN.md §3).
//!
//! **Sensitivity.** An aggregate column is a vector with one entry per group. After
//! contribution bounding one person changes at most `L0` entries (the groups they appear
//! in), each by at most a per-group bound `b` (`L∞` for `COUNT(*)`, 1 for a distinct-person
//! count, `L∞·max(|lo|, |hi|)` units for a fixed-point sum). So the vector's L1 sensitivity
//! is `L0·b` and its L2 sensitivity `√L0·b`.
//!
//! * Discrete Laplace with scale `t` on an L1-sensitivity-`Δ₁` vector is `Δ₁/t`-DP
//!   (Canonne, Kamath & Steinke 2020, §5.2; Ghosh, Roughgarden & Sundararajan 2012).
//! * Discrete Gaussian with scale `σ` on an L2-sensitivity-`Δ₂` vector is
//!   `Δ₂²/(2σ²)`-zCDP (Canonne, Kamath & Steinke 2020, Theorem 14), converted to
//!   (ε, δ)-DP with the optimal conversion of their Corollary 13 as opendp implements it.
//!
//! In both cases the scale is chosen here and then the privacy map of the opendp
//! measurement itself is evaluated: a mechanism whose map exceeds the ε it is charged for
//! is never built.

use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use serde::{Deserialize, Serialize};

use crate::accuracy::NoiseDistribution;
use crate::budget::{ChargeItem, MechanismKind};
use crate::params::{Delta, Epsilon};

/// A number that came out of a noise mechanism (in its integer units).
///
/// Only the mechanisms of this crate can make one, and the disclosure policy accepts
/// nothing else: suppression and rounding can never be decided on a true value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Noisy(i64);

impl Noisy {
    /// Wraps a mechanism's output. Crate-private: outside code cannot forge one.
    pub(crate) fn new(value: i64) -> Self {
        Noisy(value)
    }

    /// The noisy value.
    pub fn value(self) -> i64 {
        self.0
    }
}

/// Which noise the policy uses for counts and sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// Discrete Laplace: pure ε-DP, δ = 0. The default.
    #[default]
    Laplace,
    /// Discrete Gaussian: lighter tails and better for releases of many groups per person
    /// (L2 grows with √L0), at the price of a δ > 0.
    Gaussian,
}

/// How much one person can change an aggregate column: at most `max_groups` entries, each
/// by at most `per_group` integer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sensitivity {
    /// L0: the groups one person may appear in.
    pub max_groups: u32,
    /// The most one person can change one group's value, in integer units.
    pub per_group: u64,
}

impl Sensitivity {
    /// L1 sensitivity `L0 · per_group`, if it fits an `i64`.
    pub fn l1(self) -> Result<i64, MechanismError> {
        u64::from(self.max_groups)
            .checked_mul(self.per_group)
            .and_then(|v| i64::try_from(v).ok())
            .ok_or(MechanismError::SensitivityOverflow { sensitivity: self })
    }

    /// L2 sensitivity `√L0 · per_group`, rounded up so that float rounding can only
    /// over-state it.
    pub fn l2(self) -> f64 {
        (f64::from(self.max_groups).sqrt().next_up() * (self.per_group as f64).next_up()).next_up()
    }
}

/// Why a mechanism could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum MechanismError {
    /// The L1 sensitivity does not fit a 64-bit integer.
    #[error(
        "sensitivity too large: {} groups x {} units per group does not fit a 64-bit integer; \
         tighten the bounds or the contribution limits",
        sensitivity.max_groups,
        sensitivity.per_group
    )]
    SensitivityOverflow {
        /// The sensitivity.
        sensitivity: Sensitivity,
    },
    /// The per-group sensitivity or the number of groups is 0, so there is nothing to
    /// calibrate against.
    #[error(
        "sensitivity is zero ({} groups x {} units per group): nothing would be protected \
         (a bug in the caller)",
        sensitivity.max_groups,
        sensitivity.per_group
    )]
    ZeroSensitivity {
        /// The sensitivity.
        sensitivity: Sensitivity,
    },
    /// The Gaussian mechanism and key selection need δ > 0.
    #[error("{what} needs delta greater than 0; set a delta in the policy or the query")]
    NeedsDelta {
        /// Which mechanism.
        what: &'static str,
    },
    /// No noise scale (or key-selection threshold) up to the search limit meets the
    /// requested (ε, δ), e.g. a δ far below 1e-16.
    #[error(
        "no noise scale or threshold meets epsilon = {epsilon} at delta = {delta}; \
         ask for a larger delta or epsilon"
    )]
    Uncalibrated {
        /// The ε asked for.
        epsilon: f64,
        /// The δ asked for.
        delta: f64,
    },
    /// The mechanism's own privacy map claims more loss than it is charged for.
    #[error(
        "refusing to release: the mechanism's privacy map gives {what} = {actual}, \
         above the {charged} it is charged for"
    )]
    Overspend {
        /// `epsilon`, `delta` or `rho`.
        what: &'static str,
        /// What the privacy map gives.
        actual: f64,
        /// What was charged.
        charged: f64,
    },
    /// A key-selection threshold below 2 (the smallest that can hold back a one-person key).
    #[error("key-selection threshold {threshold} is below the minimum of 2")]
    ThresholdTooLow {
        /// The threshold.
        threshold: i64,
    },
    /// opendp refused to build or run the measurement.
    #[error("the noise library refused the measurement: {0}")]
    Opendp(#[source] opendp::error::Error),
}

impl From<opendp::error::Error> for MechanismError {
    fn from(e: opendp::error::Error) -> Self {
        MechanismError::Opendp(e)
    }
}

/// A calibrated noise mechanism for one aggregate column: integers in, noisy integers out.
///
/// Holds only numbers: the opendp measurement (which is not `Send`) is built inside
/// [`NoiseMechanism::release`], so this value can cross threads and be stored.
///
/// Deliberately not `Deserialize`: a mechanism is only ever made by calibration, never read
/// back from storage (the ledger stores its [`ChargeItem`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoiseMechanism {
    kind: NoiseKind,
    sensitivity: Sensitivity,
    scale: f64,
    epsilon: Epsilon,
    delta: Delta,
    /// ρ of a Gaussian mechanism (its zCDP map at the L2 sensitivity); `None` for Laplace.
    rho: Option<f64>,
}

impl NoiseMechanism {
    /// A mechanism of `kind` for `sensitivity` that is (`epsilon`, `delta`)-DP. Laplace
    /// ignores `delta` (it is pure DP and charges δ = 0).
    pub fn calibrate(
        kind: NoiseKind,
        sensitivity: Sensitivity,
        epsilon: Epsilon,
        delta: Delta,
    ) -> Result<Self, MechanismError> {
        match kind {
            NoiseKind::Laplace => Self::laplace(sensitivity, epsilon),
            NoiseKind::Gaussian => Self::gaussian(sensitivity, epsilon, delta),
        }
    }

    /// Discrete Laplace with the smallest scale whose privacy map is at most `epsilon`
    /// (about `L1 / ε`).
    pub fn laplace(sensitivity: Sensitivity, epsilon: Epsilon) -> Result<Self, MechanismError> {
        let l1 = nonzero(sensitivity)?.l1()?;
        let mut scale = l1 as f64 / epsilon.value();
        // The map is evaluated in exact rational arithmetic; nudge the float scale up
        // until opendp agrees it is within ε (at most a few ulps).
        for _ in 0..64 {
            if laplace_loss(scale, l1)? <= epsilon.value() {
                return Ok(Self {
                    kind: NoiseKind::Laplace,
                    sensitivity,
                    scale,
                    epsilon,
                    delta: Delta::ZERO,
                    rho: None,
                });
            }
            scale = scale.next_up();
        }
        Err(MechanismError::Uncalibrated {
            epsilon: epsilon.value(),
            delta: 0.0,
        })
    }

    /// Discrete Gaussian with the smallest scale (to about one part in 10⁹) whose
    /// zCDP-to-(ε, δ) conversion at `delta` gives at most `epsilon`.
    pub fn gaussian(
        sensitivity: Sensitivity,
        epsilon: Epsilon,
        delta: Delta,
    ) -> Result<Self, MechanismError> {
        let l2 = nonzero(sensitivity)?.l2();
        if delta.is_zero() {
            return Err(MechanismError::NeedsDelta {
                what: "the Gaussian mechanism",
            });
        }
        let fits = |scale: f64| -> Result<bool, MechanismError> {
            Ok(gaussian_loss(scale, l2, delta.value())? <= epsilon.value())
        };
        let uncalibrated = || MechanismError::Uncalibrated {
            epsilon: epsilon.value(),
            delta: delta.value(),
        };
        // Bracket: grow `hi` until it fits, then bisect.
        let mut hi = l2 / epsilon.value();
        let mut grown = 0;
        while !fits(hi)? {
            hi *= 2.0;
            grown += 1;
            if grown > 200 || !hi.is_finite() {
                return Err(uncalibrated());
            }
        }
        let (_, hi) = crate::numbers::bisect(0.0, hi, fits)?;
        Ok(Self {
            kind: NoiseKind::Gaussian,
            sensitivity,
            scale: hi,
            epsilon,
            delta,
            rho: Some(gaussian_rho(hi, l2)?),
        })
    }

    /// The noise kind.
    pub fn kind(&self) -> NoiseKind {
        self.kind
    }

    /// The noise scale in integer units: `t` of the discrete Laplace (standard deviation
    /// ≈ `√2·t`), or `σ` of the discrete Gaussian.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The sensitivity it was calibrated for.
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }

    /// ε charged.
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// δ charged (0 for Laplace).
    pub fn delta(&self) -> Delta {
        self.delta
    }

    /// The distribution of the noise it adds, for accuracy.
    pub fn distribution(&self) -> NoiseDistribution {
        match self.kind {
            NoiseKind::Laplace => NoiseDistribution::DiscreteLaplace { scale: self.scale },
            NoiseKind::Gaussian => NoiseDistribution::DiscreteGaussian { scale: self.scale },
        }
    }

    /// The charge of this part of a release, labelled `label`.
    pub fn charge_item(&self, label: impl Into<String>) -> ChargeItem {
        ChargeItem {
            label: label.into(),
            mechanism: match self.kind {
                NoiseKind::Laplace => MechanismKind::DiscreteLaplace,
                NoiseKind::Gaussian => MechanismKind::DiscreteGaussian,
            },
            epsilon: self.epsilon.value(),
            delta: self.delta.value(),
            max_groups: self.sensitivity.max_groups,
            per_group_sensitivity: self.sensitivity.per_group,
            scale: self.scale,
            threshold: None,
            rho: self.rho,
        }
    }

    /// Noisy copies of `exact` (one per group), each with independent noise.
    ///
    /// The opendp measurement is built here, its privacy map re-checked against the
    /// charge, and then invoked; outputs saturate at the `i64` range.
    pub fn release(&self, exact: &[i64]) -> Result<Vec<Noisy>, MechanismError> {
        let input = exact.to_vec();
        match self.kind {
            NoiseKind::Laplace => {
                let l1 = self.sensitivity.l1()?;
                let m = make_laplace::<_, _, MaxDivergence>(
                    VectorDomain::new(AtomDomain::<i64>::default()),
                    L1Distance::<i64>::default(),
                    self.scale,
                    None,
                )?;
                check_loss(m.map(&l1)?, self.epsilon)?;
                Ok(m.invoke(&input)?.into_iter().map(Noisy::new).collect())
            }
            NoiseKind::Gaussian => {
                let m = gaussian_measurement(self.scale, self.delta.value())?;
                check_loss(m.map(&self.sensitivity.l2())?.0, self.epsilon)?;
                // And ρ, what a ledger composing in zCDP is charged.
                let rho = gaussian_rho(self.scale, self.sensitivity.l2())?;
                if self.rho.is_none_or(|charged| rho > charged) {
                    return Err(MechanismError::Overspend {
                        what: "rho",
                        actual: rho,
                        charged: self.rho.unwrap_or(0.0),
                    });
                }
                Ok(m.invoke(&input)?.into_iter().map(Noisy::new).collect())
            }
        }
    }
}

fn nonzero(sensitivity: Sensitivity) -> Result<Sensitivity, MechanismError> {
    if sensitivity.per_group == 0 || sensitivity.max_groups == 0 {
        return Err(MechanismError::ZeroSensitivity { sensitivity });
    }
    Ok(sensitivity)
}

/// Refuses a release whose privacy map, `actual`, exceeds the ε it is `charged`.
pub(crate) fn check_loss(actual: f64, charged: Epsilon) -> Result<(), MechanismError> {
    if actual > charged.value() {
        return Err(MechanismError::Overspend {
            what: "epsilon",
            actual,
            charged: charged.value(),
        });
    }
    Ok(())
}

/// ε of discrete Laplace with `scale` at L1 sensitivity `l1`, by opendp's privacy map.
fn laplace_loss(scale: f64, l1: i64) -> Result<f64, MechanismError> {
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )?;
    Ok(m.map(&l1)?)
}

type GaussianMeasurement = opendp::core::Measurement<
    VectorDomain<AtomDomain<i64>>,
    L2Distance<f64>,
    opendp::measures::Approximate<MaxDivergence>,
    Vec<i64>,
>;

type ZcdpGaussian = opendp::core::Measurement<
    VectorDomain<AtomDomain<i64>>,
    L2Distance<f64>,
    ZeroConcentratedDivergence,
    Vec<i64>,
>;

/// opendp's discrete Gaussian with `scale`, stated in zCDP.
fn zcdp_gaussian(scale: f64) -> Result<ZcdpGaussian, MechanismError> {
    Ok(make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L2Distance::<f64>::default(),
        scale,
        None,
    )?)
}

fn gaussian_measurement(scale: f64, delta: f64) -> Result<GaussianMeasurement, MechanismError> {
    let approx = make_zCDP_to_approxDP(zcdp_gaussian(scale)?)?;
    Ok(make_fix_delta(&approx, delta)?)
}

/// ρ of discrete Gaussian with `scale` at L2 sensitivity `l2`: opendp's zCDP map,
/// Δ₂²/2σ² rounded up.
fn gaussian_rho(scale: f64, l2: f64) -> Result<f64, MechanismError> {
    Ok(zcdp_gaussian(scale)?.map(&l2)?)
}

/// ε of discrete Gaussian with `scale` at L2 sensitivity `l2` and the given δ.
fn gaussian_loss(scale: f64, l2: f64, delta: f64) -> Result<f64, MechanismError> {
    if scale <= 0.0 {
        return Ok(f64::INFINITY);
    }
    Ok(gaussian_measurement(scale, delta)?.map(&l2)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sens(max_groups: u32, per_group: u64) -> Sensitivity {
        Sensitivity {
            max_groups,
            per_group,
        }
    }

    #[test]
    fn laplace_scale_is_sensitivity_over_epsilon() {
        let eps = Epsilon::new(0.5).unwrap();
        let m = NoiseMechanism::laplace(sens(3, 2), eps).unwrap();
        assert!((m.scale() - 12.0).abs() < 1e-9, "{}", m.scale());
        assert!(laplace_loss(m.scale(), 6).unwrap() <= 0.5);
        assert_eq!(m.delta(), Delta::ZERO);
        let item = m.charge_item("count(*)");
        assert_eq!(
            (
                item.epsilon,
                item.delta,
                item.max_groups,
                item.per_group_sensitivity
            ),
            (0.5, 0.0, 3, 2)
        );
    }

    #[test]
    fn gaussian_needs_delta_and_meets_epsilon() {
        let eps = Epsilon::new(1.0).unwrap();
        let e = NoiseMechanism::gaussian(sens(1, 1), eps, Delta::ZERO).unwrap_err();
        assert!(e.to_string().contains("needs delta"), "{e}");
        let delta = Delta::new(1e-6).unwrap();
        let m = NoiseMechanism::gaussian(sens(4, 1), eps, delta).unwrap();
        let l2 = 2.0;
        assert!(gaussian_loss(m.scale(), l2, 1e-6).unwrap() <= 1.0);
        // Minimal: 1% less noise would overspend.
        assert!(gaussian_loss(m.scale() * 0.99, l2, 1e-6).unwrap() > 1.0);
        // Sanity against the classical bound σ ≤ Δ₂·√(2 ln(1.25/δ))/ε.
        assert!(m.scale() < l2 * (2.0 * (1.25f64 / 1e-6).ln()).sqrt());
        // Its ρ is Δ₂²/2σ² (opendp rounds it up by at most a few ulps), and ρ-zCDP at
        // δ converts to no more than the ε it is charged.
        let rho = m.charge_item("count").rho.unwrap();
        let exact = l2 * l2 / (2.0 * m.scale() * m.scale());
        assert!(
            rho >= exact && rho <= exact * (1.0 + 1e-12),
            "{rho} vs {exact}"
        );
        assert!(crate::budget::zcdp_epsilon(rho, 1e-6).unwrap() <= 1.0);
    }

    #[test]
    fn release_keeps_length_and_adds_noise_of_the_right_size() {
        let m = NoiseMechanism::laplace(sens(1, 1), Epsilon::new(1.0).unwrap()).unwrap();
        let exact = vec![1_000i64; 10_000];
        let noisy = m.release(&exact).unwrap();
        assert_eq!(noisy.len(), exact.len());
        let mean_abs = noisy
            .iter()
            .map(|v| (v.value() - 1_000).abs() as f64)
            .sum::<f64>()
            / 1e4;
        // E|X| for discrete Laplace with t = 1 is 2e^{-1}/(1-e^{-2}) ≈ 0.851; the standard
        // error of the mean of 10,000 draws is about 0.01.
        assert!((mean_abs - 0.851).abs() < 0.08, "{mean_abs}");
    }

    #[test]
    fn zero_and_huge_sensitivities_are_refused() {
        let eps = Epsilon::new(1.0).unwrap();
        assert!(matches!(
            NoiseMechanism::laplace(sens(1, 0), eps).unwrap_err(),
            MechanismError::ZeroSensitivity { .. }
        ));
        assert!(matches!(
            NoiseMechanism::laplace(sens(u32::MAX, u64::MAX / 2), eps).unwrap_err(),
            MechanismError::SensitivityOverflow { .. }
        ));
    }

    #[test]
    fn a_mechanism_charged_less_than_its_map_refuses_to_release() {
        let mut m = NoiseMechanism::laplace(sens(1, 1), Epsilon::new(1.0).unwrap()).unwrap();
        m.epsilon = Epsilon::new(0.5).unwrap();
        let e = m.release(&[10]).unwrap_err();
        assert!(matches!(e, MechanismError::Overspend { .. }), "{e}");
    }
}
