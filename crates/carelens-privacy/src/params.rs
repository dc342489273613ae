//! Validated privacy parameters.
//!
//! Each type can only hold a valid value: the constructors check, and deserialising goes
//! through the same constructors (`#[serde(try_from = ...)]`), so a bad value in a
//! configuration file is rejected with the same message as one built in code.

use serde::{Deserialize, Serialize};

/// Why a privacy parameter could not be built. Each message names the value and the rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// ε was NaN or infinite.
    #[error("epsilon must be a finite number, got {value}")]
    EpsilonNotFinite {
        /// The rejected value.
        value: f64,
    },
    /// ε was zero or negative.
    #[error("epsilon must be greater than 0, got {value}")]
    EpsilonNotPositive {
        /// The rejected value.
        value: f64,
    },
    /// δ was outside [0, 1) or NaN.
    #[error("delta must be at least 0 and less than 1, got {value}")]
    DeltaOutOfRange {
        /// The rejected value.
        value: f64,
    },
    /// A bound was NaN or infinite.
    #[error("bounds must be finite numbers, got [{lo}, {hi}]")]
    BoundsNotFinite {
        /// The lower bound given.
        lo: f64,
        /// The upper bound given.
        hi: f64,
    },
    /// The lower bound was above the upper bound.
    #[error("the lower bound {lo} is greater than the upper bound {hi}")]
    BoundsReversed {
        /// The lower bound given.
        lo: f64,
        /// The upper bound given.
        hi: f64,
    },
    /// `max_groups` was 0.
    #[error("max_groups (groups a person may contribute to) must be at least 1, got 0")]
    MaxGroupsZero,
    /// `max_rows_per_group` was 0.
    #[error(
        "max_rows_per_group (rows a person may contribute to one group) must be at least 1, got 0"
    )]
    MaxRowsZero,
    /// The precision was not a power of ten in the supported range.
    #[error(
        "precision must be a power of ten between 1e-9 and 1e9 (such as 1, 0.1 or 0.01), got {value}"
    )]
    PrecisionNotPowerOfTen {
        /// The rejected value.
        value: f64,
    },
    /// A weight given to split a budget was negative, NaN or infinite, or all were zero.
    #[error("budget weights must be finite, non-negative and not all zero, got {weights:?}")]
    BadWeights {
        /// The rejected weights.
        weights: Vec<f64>,
    },
    /// A value is too large to be held exactly as a fixed-point integer.
    #[error(
        "{value} at precision {precision} does not fit a fixed-point integer (at most 2^53 units)"
    )]
    FixedPointOverflow {
        /// The value that did not fit.
        value: f64,
        /// The precision it was scaled by.
        precision: f64,
    },
    /// The significance level of an interval was not in (0, 1).
    #[error("alpha (1 - confidence) must be greater than 0 and less than 1, got {value}")]
    AlphaOutOfRange {
        /// The rejected value.
        value: f64,
    },
}

/// The privacy-loss parameter ε of a release: finite and greater than 0.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Epsilon(f64);

impl Epsilon {
    /// ε, if `value` is finite and greater than 0.
    pub const fn new(value: f64) -> Result<Self, ParamError> {
        if !value.is_finite() {
            return Err(ParamError::EpsilonNotFinite { value });
        }
        if value <= 0.0 {
            return Err(ParamError::EpsilonNotPositive { value });
        }
        Ok(Self(value))
    }

    /// ε from a constant written in the code, checked at compile time when assigned to a
    /// `const` (`const E: Epsilon = Epsilon::constant(1.0);`). For values from input or
    /// configuration use [`Epsilon::new`], which returns an error instead.
    pub const fn constant(value: f64) -> Self {
        assert!(
            value.is_finite() && value > 0.0,
            "epsilon constant must be finite and > 0"
        );
        Self(value)
    }

    /// The value.
    pub const fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Epsilon {
    type Error = ParamError;
    fn try_from(value: f64) -> Result<Self, ParamError> {
        Self::new(value)
    }
}

impl From<Epsilon> for f64 {
    fn from(e: Epsilon) -> f64 {
        e.0
    }
}

/// The failure probability δ of an (ε, δ) release: at least 0 and less than 1.
///
/// δ = 0 is pure differential privacy; key selection and the Gaussian mechanism need δ > 0.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Delta(f64);

impl Delta {
    /// δ = 0: pure differential privacy.
    pub const ZERO: Delta = Delta(0.0);

    /// δ, if `value` is in [0, 1).
    pub const fn new(value: f64) -> Result<Self, ParamError> {
        // Both comparisons are false for NaN.
        #[allow(clippy::manual_range_contains)] // `contains` is not const
        if !(value >= 0.0 && value < 1.0) {
            return Err(ParamError::DeltaOutOfRange { value });
        }
        Ok(Self(value))
    }

    /// The value.
    pub fn value(self) -> f64 {
        self.0
    }

    /// δ from a constant written in the code, checked at compile time when assigned to a
    /// `const`. For values from input or configuration use [`Delta::new`].
    pub const fn constant(value: f64) -> Self {
        assert!(
            value >= 0.0 && value < 1.0,
            "delta constant must be in [0, 1)"
        );
        Self(value)
    }

    /// Whether δ is 0.
    pub fn is_zero(self) -> bool {
        self.0 == 0.0
    }
}

impl TryFrom<f64> for Delta {
    type Error = ParamError;
    fn try_from(value: f64) -> Result<Self, ParamError> {
        Self::new(value)
    }
}

impl From<Delta> for f64 {
    fn from(d: Delta) -> f64 {
        d.0
    }
}

/// Closed value bounds `[lo, hi]` for a column: finite, `lo <= hi`.
///
/// Values outside are clamped into the bounds before they are aggregated; the bounds set
/// the sensitivity of sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f64; 2]", into = "[f64; 2]")]
pub struct Bounds {
    lo: f64,
    hi: f64,
}

impl Bounds {
    /// `[lo, hi]`, if both are finite and `lo <= hi`.
    pub fn new(lo: f64, hi: f64) -> Result<Self, ParamError> {
        if !lo.is_finite() || !hi.is_finite() {
            return Err(ParamError::BoundsNotFinite { lo, hi });
        }
        if lo > hi {
            return Err(ParamError::BoundsReversed { lo, hi });
        }
        Ok(Self { lo, hi })
    }

    /// The lower bound.
    pub fn lo(self) -> f64 {
        self.lo
    }

    /// The upper bound.
    pub fn hi(self) -> f64 {
        self.hi
    }

    /// `x` clamped into the bounds (NaN becomes `lo`, so it can never escape them).
    pub fn clamp(self, x: f64) -> f64 {
        if x.is_nan() {
            self.lo
        } else {
            x.clamp(self.lo, self.hi)
        }
    }

    /// The bounds in fixed-point units of `precision`: `[round(lo / unit), round(hi / unit)]`.
    ///
    /// Rounding is monotone, so a value clamped to `[lo, hi]` and then rounded lies in the
    /// returned range: it is the range the sensitivity of a fixed-point sum is taken from.
    pub fn to_fixed(self, precision: Precision) -> Result<FixedBounds, ParamError> {
        Ok(FixedBounds {
            lo: precision.to_fixed(self.lo)?,
            hi: precision.to_fixed(self.hi)?,
        })
    }
}

impl TryFrom<[f64; 2]> for Bounds {
    type Error = ParamError;
    fn try_from([lo, hi]: [f64; 2]) -> Result<Self, ParamError> {
        Self::new(lo, hi)
    }
}

impl From<Bounds> for [f64; 2] {
    fn from(b: Bounds) -> [f64; 2] {
        [b.lo, b.hi]
    }
}

/// Bounds in fixed-point units (see [`Bounds::to_fixed`]); `lo <= hi` by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedBounds {
    lo: i64,
    hi: i64,
}

impl FixedBounds {
    /// The lower bound, in units.
    pub fn lo(self) -> i64 {
        self.lo
    }

    /// The upper bound, in units.
    pub fn hi(self) -> i64 {
        self.hi
    }

    /// The largest magnitude a clamped value can have: `max(|lo|, |hi|)`, in units.
    pub fn magnitude(self) -> u64 {
        self.lo.unsigned_abs().max(self.hi.unsigned_abs())
    }
}

/// How much one person may contribute to a release (DESIGN.md §3.1).
///
/// `max_groups` is L0, the number of groups of one aggregation a person may appear in;
/// `max_rows_per_group` is L∞, the number of rows a person may contribute to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawContributionBounds", into = "RawContributionBounds")]
pub struct ContributionBounds {
    max_groups: u32,
    max_rows_per_group: u32,
}

impl ContributionBounds {
    /// L0 = `max_groups`, L∞ = `max_rows_per_group`, both at least 1.
    pub fn new(max_groups: u32, max_rows_per_group: u32) -> Result<Self, ParamError> {
        if max_groups == 0 {
            return Err(ParamError::MaxGroupsZero);
        }
        if max_rows_per_group == 0 {
            return Err(ParamError::MaxRowsZero);
        }
        Ok(Self {
            max_groups,
            max_rows_per_group,
        })
    }

    /// L0: groups per person.
    pub fn max_groups(self) -> u32 {
        self.max_groups
    }

    /// L∞: rows per person per group.
    pub fn max_rows_per_group(self) -> u32 {
        self.max_rows_per_group
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContributionBounds {
    max_groups: u32,
    max_rows_per_group: u32,
}

impl TryFrom<RawContributionBounds> for ContributionBounds {
    type Error = ParamError;
    fn try_from(raw: RawContributionBounds) -> Result<Self, ParamError> {
        Self::new(raw.max_groups, raw.max_rows_per_group)
    }
}

impl From<ContributionBounds> for RawContributionBounds {
    fn from(c: ContributionBounds) -> Self {
        Self {
            max_groups: c.max_groups,
            max_rows_per_group: c.max_rows_per_group,
        }
    }
}

/// The fixed-point unit sums are computed in: a power of ten, `10^exponent`.
///
/// A column of costs in pounds with precision 0.01 is summed as integer pence, noised as
/// an integer and scaled back, so no floating-point rounding can leak through the sum
/// (DESIGN.md §3). Only powers of ten are accepted, so that the scale factor is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Precision {
    exponent: i8,
}

/// Largest magnitude, in units, a fixed-point value may have: every integer up to it is
/// exactly representable as an `f64`.
const MAX_FIXED: f64 = 9_007_199_254_740_992.0; // 2^53

impl Precision {
    /// Whole units (`1`).
    pub const ONE: Precision = Precision { exponent: 0 };

    /// The precision `unit`, if it is a power of ten from 1e-9 to 1e9.
    pub fn new(unit: f64) -> Result<Self, ParamError> {
        if unit.is_finite() && unit > 0.0 {
            let exponent = unit.log10().round();
            if (-9.0..=9.0).contains(&exponent) {
                // Exact for integer exponents within ±9: the cast cannot truncate.
                let exponent = exponent as i8;
                let candidate = Self { exponent };
                if (candidate.unit() - unit).abs() <= unit * 1e-9 {
                    return Ok(candidate);
                }
            }
        }
        Err(ParamError::PrecisionNotPowerOfTen { value: unit })
    }

    /// The unit, e.g. `0.01`.
    pub fn unit(self) -> f64 {
        10f64.powi(i32::from(self.exponent))
    }

    /// `x` in units, rounded to the nearest (half away from zero).
    pub fn to_fixed(self, x: f64) -> Result<i64, ParamError> {
        let scaled = if self.exponent <= 0 {
            x * 10f64.powi(-i32::from(self.exponent))
        } else {
            x / 10f64.powi(i32::from(self.exponent))
        }
        .round();
        if !scaled.is_finite() || scaled.abs() > MAX_FIXED {
            return Err(ParamError::FixedPointOverflow {
                value: x,
                precision: self.unit(),
            });
        }
        // In range and integral after the check above: the cast is exact.
        Ok(scaled as i64)
    }

    /// `units` scaled back to the column's scale.
    pub fn from_fixed(self, units: i64) -> f64 {
        let units = units as f64;
        if self.exponent <= 0 {
            units / 10f64.powi(-i32::from(self.exponent))
        } else {
            units * 10f64.powi(i32::from(self.exponent))
        }
    }
}

impl TryFrom<f64> for Precision {
    type Error = ParamError;
    fn try_from(value: f64) -> Result<Self, ParamError> {
        Self::new(value)
    }
}

impl From<Precision> for f64 {
    fn from(p: Precision) -> f64 {
        p.unit()
    }
}

/// The significance level α of an interval: the interval holds the true value with
/// probability at least `1 - α`. In (0, 1).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Alpha(f64);

impl Alpha {
    /// α = 0.05: 95% intervals, the ones carelens reports.
    pub const FIVE_PERCENT: Alpha = Alpha(0.05);

    /// α, if in (0, 1).
    pub fn new(value: f64) -> Result<Self, ParamError> {
        if !(value > 0.0 && value < 1.0) {
            return Err(ParamError::AlphaOutOfRange { value });
        }
        Ok(Self(value))
    }

    /// The value.
    pub fn value(self) -> f64 {
        self.0
    }

    /// α / 2: each of two inputs of a derived value gets half, so that by the union bound
    /// both hold together with probability at least `1 - α`.
    pub fn halved(self) -> Alpha {
        Alpha(self.0 / 2.0)
    }

    /// α / k: each of `k` inputs of a derived value gets an equal part, so that by the
    /// union bound all of them hold together with probability at least `1 - α`.
    pub fn split(self, k: usize) -> Alpha {
        Alpha(self.0 / k.max(1) as f64)
    }
}

impl TryFrom<f64> for Alpha {
    type Error = ParamError;
    fn try_from(value: f64) -> Result<Self, ParamError> {
        Self::new(value)
    }
}

impl From<Alpha> for f64 {
    fn from(a: Alpha) -> f64 {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsilon_rejects_each_bad_value_and_says_why() {
        for bad in [0.0, -0.0, -1.0, -f64::MIN_POSITIVE] {
            let e = Epsilon::new(bad).unwrap_err();
            assert!(
                matches!(e, ParamError::EpsilonNotPositive { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("greater than 0"), "{e}");
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = Epsilon::new(bad).unwrap_err();
            assert!(
                matches!(e, ParamError::EpsilonNotFinite { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("finite"), "{e}");
        }
        assert_eq!(Epsilon::new(0.5).unwrap().value(), 0.5);
        assert_eq!(
            Epsilon::new(f64::MIN_POSITIVE).unwrap().value(),
            f64::MIN_POSITIVE
        );
    }

    #[test]
    fn delta_accepts_zero_up_to_below_one() {
        for bad in [-1e-12, 1.0, 1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = Delta::new(bad).unwrap_err();
            assert!(
                matches!(e, ParamError::DeltaOutOfRange { .. }),
                "{bad}: {e}"
            );
            assert!(e.to_string().contains("less than 1"), "{e}");
        }
        assert!(Delta::new(0.0).unwrap().is_zero());
        assert_eq!(Delta::new(1e-6).unwrap().value(), 1e-6);
        assert_eq!(
            Delta::new(1.0f64.next_down()).unwrap().value(),
            1.0f64.next_down()
        );
    }

    #[test]
    fn bounds_reject_reversed_and_non_finite() {
        let e = Bounds::new(5.0, 1.0).unwrap_err();
        assert_eq!(e, ParamError::BoundsReversed { lo: 5.0, hi: 1.0 });
        assert_eq!(
            e.to_string(),
            "the lower bound 5 is greater than the upper bound 1"
        );
        for (lo, hi) in [
            (f64::NAN, 1.0),
            (0.0, f64::INFINITY),
            (f64::NEG_INFINITY, 0.0),
        ] {
            assert!(matches!(
                Bounds::new(lo, hi).unwrap_err(),
                ParamError::BoundsNotFinite { .. }
            ));
        }
        let b = Bounds::new(-2.0, 2.0).unwrap();
        assert_eq!(
            (b.clamp(-7.0), b.clamp(1.5), b.clamp(9.0), b.clamp(f64::NAN)),
            (-2.0, 1.5, 2.0, -2.0)
        );
        let point = Bounds::new(3.0, 3.0).unwrap();
        assert_eq!((point.lo(), point.hi()), (3.0, 3.0));
    }

    #[test]
    fn contribution_bounds_reject_zeros() {
        assert_eq!(
            ContributionBounds::new(0, 1).unwrap_err(),
            ParamError::MaxGroupsZero
        );
        assert_eq!(
            ContributionBounds::new(1, 0).unwrap_err(),
            ParamError::MaxRowsZero
        );
        assert!(ParamError::MaxGroupsZero.to_string().contains("max_groups"));
        assert!(
            ParamError::MaxRowsZero
                .to_string()
                .contains("max_rows_per_group")
        );
        let c = ContributionBounds::new(3, 10).unwrap();
        assert_eq!((c.max_groups(), c.max_rows_per_group()), (3, 10));
    }

    #[test]
    fn precision_accepts_powers_of_ten_only() {
        for good in [1.0, 0.1, 0.01, 0.001, 10.0, 1000.0, 1e-9, 1e9] {
            let p = Precision::new(good).unwrap();
            assert!((p.unit() - good).abs() <= good * 1e-12, "{good}");
        }
        for bad in [
            0.0,
            -0.01,
            0.03,
            0.5,
            2.0,
            1e-10,
            1e10,
            f64::NAN,
            f64::INFINITY,
        ] {
            let e = Precision::new(bad).unwrap_err();
            assert!(
                matches!(e, ParamError::PrecisionNotPowerOfTen { .. }),
                "{bad}"
            );
            assert!(e.to_string().contains("power of ten"), "{e}");
        }
    }

    #[test]
    fn fixed_point_round_trips_and_refuses_overflow() {
        let pence = Precision::new(0.01).unwrap();
        assert_eq!(pence.to_fixed(123.45).unwrap(), 12_345);
        assert_eq!(pence.to_fixed(-0.005).unwrap(), -1, "half away from zero");
        assert_eq!(pence.to_fixed(0.1 + 0.2).unwrap(), 30);
        assert_eq!(pence.from_fixed(12_345), 123.45);
        let thousands = Precision::new(1000.0).unwrap();
        assert_eq!(thousands.to_fixed(2_600_000.0).unwrap(), 2_600);
        assert_eq!(thousands.from_fixed(2_600), 2_600_000.0);
        let e = pence.to_fixed(1e14).unwrap_err();
        assert!(matches!(e, ParamError::FixedPointOverflow { .. }), "{e}");
        assert!(pence.to_fixed(f64::NAN).is_err());
        let b = Bounds::new(-1.5, 20_000.0)
            .unwrap()
            .to_fixed(pence)
            .unwrap();
        assert_eq!(
            (b.lo(), b.hi(), b.magnitude()),
            (-150, 2_000_000, 2_000_000)
        );
    }

    #[test]
    fn alpha_is_strictly_between_zero_and_one() {
        for bad in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(
                Alpha::new(bad).unwrap_err(),
                ParamError::AlphaOutOfRange { .. }
            ));
        }
        assert_eq!(Alpha::FIVE_PERCENT.halved().value(), 0.025);
    }

    #[test]
    fn deserialising_goes_through_the_same_checks() {
        #[derive(Debug, Deserialize)]
        struct Policy {
            epsilon: Epsilon,
            delta: Delta,
            bounds: Bounds,
            contribution: ContributionBounds,
            precision: Precision,
        }
        let ok: Policy = from_json(
            r#"{"epsilon":1.0,"delta":1e-6,"bounds":[0,5],"contribution":{"max_groups":2,"max_rows_per_group":3},"precision":0.01}"#,
        )
        .unwrap();
        assert_eq!(ok.epsilon.value(), 1.0);
        assert_eq!(ok.delta.value(), 1e-6);
        assert_eq!(ok.bounds.hi(), 5.0);
        assert_eq!(ok.contribution.max_rows_per_group(), 3);
        assert_eq!(ok.precision, Precision::new(0.01).unwrap());
        let bad = from_json::<Policy>(
            r#"{"epsilon":-1.0,"delta":0,"bounds":[0,5],"contribution":{"max_groups":2,"max_rows_per_group":3},"precision":0.01}"#,
        )
        .unwrap_err();
        assert!(bad.contains("epsilon must be greater than 0"), "{bad}");
        let bad = from_json::<Policy>(
            r#"{"epsilon":1,"delta":0,"bounds":[0,5],"contribution":{"max_groups":0,"max_rows_per_group":3},"precision":0.01}"#,
        )
        .unwrap_err();
        assert!(bad.contains("max_groups"), "{bad}");
    }

    fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}
