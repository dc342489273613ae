//! How far a released value may be from the exact one: the (1 − α) half-width of each
//! mechanism's noise, and an interval for a ratio of two noisy values.
//!
//! The half-widths are exact (for the integer distributions opendp samples), not normal
//! approximations: `P(|Z| > h) ≤ α` and `h` is the smallest integer for which that holds.

use opendp::accuracy::{discrete_gaussian_scale_to_accuracy, gaussian_scale_to_accuracy};
use serde::{Deserialize, Serialize};

use crate::params::Alpha;

/// Up to this σ the discrete Gaussian half-width is summed exactly (O(σ) steps); above it,
/// a tail bound that is at most about one unit wider is used.
const EXACT_GAUSSIAN_MAX_SCALE: f64 = 10_000.0;

/// The distribution of the noise added to an integer aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "snake_case")]
pub enum NoiseDistribution {
    /// Discrete Laplace: `P(Z = z) ∝ exp(−|z| / scale)`.
    DiscreteLaplace {
        /// The scale `t`.
        scale: f64,
    },
    /// Discrete Gaussian: `P(Z = z) ∝ exp(−z² / (2·scale²))`.
    DiscreteGaussian {
        /// The scale `σ`.
        scale: f64,
    },
}

/// Why an accuracy could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AccuracyError {
    /// The scale was not a finite positive number.
    #[error("noise scale must be a finite number greater than 0, got {scale}")]
    BadScale {
        /// The scale.
        scale: f64,
    },
    /// opendp could not compute the discrete Gaussian tail.
    #[error("could not compute the accuracy of the discrete Gaussian: {0}")]
    Opendp(#[source] opendp::error::Error),
}

impl NoiseDistribution {
    /// The smallest integer `h` with `P(|Z| > h) ≤ α`: the noise lies in `[−h, h]` with
    /// probability at least `1 − α`.
    ///
    /// Discrete Laplace, with `q = exp(−1/t)`: `P(|Z| ≥ k) = 2qᵏ / (1 + q)` for `k ≥ 1`, so
    /// `h = ⌈t·ln(2 / (α(1 + q)))⌉ − 1` (at least 0). Discrete Gaussian: opendp's
    /// `discrete_gaussian_scale_to_accuracy`, which sums the normalised pmf outwards.
    pub fn half_width(self, alpha: Alpha) -> Result<u64, AccuracyError> {
        match self {
            NoiseDistribution::DiscreteLaplace { scale } => {
                let t = checked_scale(scale)?;
                let q = (-1.0 / t).exp();
                // ln P(|Z| > h) = ln 2 − (h + 1)/t − ln(1 + q), for h ≥ 0.
                let ln_tail = |h: u64| 2f64.ln() - (h as f64 + 1.0) / t - q.ln_1p();
                let ln_alpha = alpha.value().ln();
                // Closed form for the start, then step to the exact smallest h, so that
                // float rounding in the formula can never under-cover.
                let k = t * (2.0 / (alpha.value() * (1.0 + q))).ln();
                let mut h = float_to_u64(k.ceil() - 1.0);
                while ln_tail(h) > ln_alpha {
                    h += 1;
                }
                while h > 0 && ln_tail(h - 1) <= ln_alpha {
                    h -= 1;
                }
                Ok(h)
            }
            NoiseDistribution::DiscreteGaussian { scale } => {
                let s = checked_scale(scale)?;
                if s <= EXACT_GAUSSIAN_MAX_SCALE {
                    let accuracy = discrete_gaussian_scale_to_accuracy(s, alpha.value())
                        .map_err(AccuracyError::Opendp)?;
                    // opendp returns `a` with P(|Z| ≥ a) ≤ α.
                    Ok(float_to_u64(accuracy.ceil() - 1.0))
                } else {
                    // opendp's exact sum takes O(σ) steps (and overflows an i32 counter
                    // near σ = 6·10⁷). For large σ use P(X ≥ m) ≤ P(N(0, σ²) ≥ m − 1)
                    // (Canonne, Kamath & Steinke 2020, Prop. 25): P(|X| > h) ≤
                    // 2·P(N ≥ h) ≤ α when h ≥ σ·z(α/2). At most about one unit wider than
                    // exact, never narrower.
                    let z = gaussian_scale_to_accuracy(s, alpha.value())
                        .map_err(AccuracyError::Opendp)?;
                    Ok(float_to_u64(z.ceil()))
                }
            }
        }
    }

    /// The standard deviation of the noise (for explanations; intervals use
    /// [`NoiseDistribution::half_width`]).
    pub fn standard_deviation(self) -> f64 {
        match self {
            NoiseDistribution::DiscreteLaplace { scale } => {
                let q = (-1.0 / scale).exp();
                (2.0 * q).sqrt() / (1.0 - q)
            }
            // The discrete Gaussian's variance is below σ² (Canonne et al. 2020, Prop. 19).
            NoiseDistribution::DiscreteGaussian { scale } => scale,
        }
    }
}

fn checked_scale(scale: f64) -> Result<f64, AccuracyError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(scale)
    } else {
        Err(AccuracyError::BadScale { scale })
    }
}

/// A non-negative float to `u64`, saturating (the input is an integer-valued float).
fn float_to_u64(x: f64) -> u64 {
    if x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x as u64
    }
}

/// A closed interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// `centre ± half_width`.
    pub fn around(centre: f64, half_width: f64) -> Self {
        Self {
            lo: centre - half_width,
            hi: centre + half_width,
        }
    }

    /// Whether `x` lies in the interval.
    pub fn contains(self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// An interval for the ratio `num / den` of two quantities, from intervals for each.
///
/// If `num` and `den` each hold their true values with probability at least `1 − α/2`
/// (compute their half-widths with [`Alpha::halved`]), then by the union bound both hold
/// together with probability at least `1 − α`, and whenever they do the true ratio lies
/// in the interval returned: the range of `n / d` over the two boxes (interval
/// arithmetic). It is conservative — the true coverage is usually above `1 − α` — and it
/// needs no normal approximation.
///
/// Returns `None` when the denominator's interval contains 0 (or is not finite): the ratio
/// is then unbounded and no finite interval is honest.
pub fn ratio_interval(num: Interval, den: Interval) -> Option<Interval> {
    if !(den.lo > 0.0 || den.hi < 0.0)
        || ![num.lo, num.hi, den.lo, den.hi]
            .iter()
            .all(|v| v.is_finite())
    {
        return None;
    }
    let candidates = [
        num.lo / den.lo,
        num.lo / den.hi,
        num.hi / den.lo,
        num.hi / den.hi,
    ];
    let lo = candidates.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = candidates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Interval { lo, hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `P(|Z| > h)` for the discrete Laplace, summing the pmf directly.
    fn laplace_tail(t: f64, h: u64) -> f64 {
        let q = (-1.0 / t).exp();
        let p0 = (1.0 - q) / (1.0 + q);
        let inside: f64 = p0 + (1..=h).map(|k| 2.0 * p0 * q.powf(k as f64)).sum::<f64>();
        1.0 - inside
    }

    #[test]
    fn laplace_half_width_is_the_smallest_that_covers() {
        for t in [0.2, 1.0, 2.5, 10.0, 40.0, 333.3] {
            for a in [0.5, 0.1, 0.05, 0.01, 0.001] {
                let alpha = Alpha::new(a).unwrap();
                let h = NoiseDistribution::DiscreteLaplace { scale: t }
                    .half_width(alpha)
                    .unwrap();
                assert!(laplace_tail(t, h) <= a * (1.0 + 1e-9), "t={t} a={a} h={h}");
                if h > 0 {
                    assert!(
                        laplace_tail(t, h - 1) > a,
                        "t={t} a={a}: {h} is not the smallest"
                    );
                }
            }
        }
    }

    #[test]
    fn laplace_half_width_matches_the_continuous_rule_of_thumb() {
        // For large t the discrete Laplace is close to the continuous one, whose 95%
        // half-width is t·ln(20) ≈ 3.0·t.
        let h = NoiseDistribution::DiscreteLaplace { scale: 100.0 }
            .half_width(Alpha::FIVE_PERCENT)
            .unwrap();
        assert!((h as f64 - 100.0 * 20f64.ln()).abs() < 2.0, "{h}");
    }

    #[test]
    fn gaussian_half_width_is_close_to_the_normal_quantile() {
        for sigma in [3.0, 10.0, 50.0] {
            let h = NoiseDistribution::DiscreteGaussian { scale: sigma }
                .half_width(Alpha::FIVE_PERCENT)
                .unwrap();
            // The continuous normal's 95% half-width is 1.96σ; the discrete one is within
            // one unit of it (rounded to an integer).
            assert!((h as f64 - 1.96 * sigma).abs() <= 1.5, "σ={sigma}: {h}");
        }
    }

    #[test]
    fn gaussian_half_width_is_fast_and_safe_at_large_scales() {
        // Fixed-point sums in pence reach σ ≈ 4·10⁸; opendp's exact sum would take minutes
        // or overflow. The bound is within a unit or two of 1.96σ.
        for sigma in [10_001.0, 4e8, 1e12] {
            let h = NoiseDistribution::DiscreteGaussian { scale: sigma }
                .half_width(Alpha::FIVE_PERCENT)
                .unwrap() as f64;
            assert!(
                h >= 1.959_963_9 * sigma && h <= 1.959_964_1 * sigma + 2.0,
                "σ={sigma}: {h}"
            );
        }
        // Either side of the switch agree to within a unit.
        let exact = NoiseDistribution::DiscreteGaussian { scale: 10_000.0 }
            .half_width(Alpha::FIVE_PERCENT)
            .unwrap();
        let bound = NoiseDistribution::DiscreteGaussian {
            scale: 10_000.000_001,
        }
        .half_width(Alpha::FIVE_PERCENT)
        .unwrap();
        assert!(bound >= exact && bound <= exact + 2, "{exact} vs {bound}");
    }

    #[test]
    fn laplace_half_width_is_exact_at_huge_scales() {
        let t = 3e11;
        let h = NoiseDistribution::DiscreteLaplace { scale: t }
            .half_width(Alpha::FIVE_PERCENT)
            .unwrap();
        let q = (-1.0 / t).exp();
        let ln_tail = |h: u64| 2f64.ln() - (h as f64 + 1.0) / t - q.ln_1p();
        assert!(ln_tail(h) <= 0.05f64.ln());
        assert!(ln_tail(h - 1) > 0.05f64.ln());
    }

    #[test]
    fn bad_scales_are_errors() {
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                NoiseDistribution::DiscreteLaplace { scale }
                    .half_width(Alpha::FIVE_PERCENT)
                    .is_err()
            );
        }
    }

    #[test]
    fn ratio_interval_covers_every_ratio_in_the_boxes() {
        let num = Interval::around(50.0, 10.0);
        let den = Interval::around(1_000.0, 100.0);
        let r = ratio_interval(num, den).unwrap();
        assert!((r.lo - 40.0 / 1_100.0).abs() < 1e-12);
        assert!((r.hi - 60.0 / 900.0).abs() < 1e-12);
        for n in [40.0, 45.0, 50.0, 60.0] {
            for d in [900.0, 1_000.0, 1_100.0] {
                assert!(r.contains(n / d));
            }
        }
        // A negative numerator (a sum may be negative) is handled by the four corners.
        let r = ratio_interval(Interval::around(-5.0, 10.0), den).unwrap();
        assert!(r.contains(-15.0 / 900.0) && r.contains(5.0 / 900.0));
        // A denominator that may be 0 has no finite interval.
        assert_eq!(ratio_interval(num, Interval::around(3.0, 5.0)), None);
    }
}
