//! Statistical disclosure control on noisy values: the small-number suppression and
//! rounding rules that UK output checkers apply (DESIGN.md §3.4).
//!
//! Everything here is post-processing of differentially private outputs, so it costs no
//! privacy — *provided* it only ever sees noisy values. Suppressing on a true count would
//! make whether a cell is shown depend on one person, which breaks the guarantee; the
//! counts and sums here are [`Noisy`] values, which only the mechanisms of this crate can
//! make, so no caller can pass a true one.
//!
//! Presets:
//!
//! | preset | suppress when the noisy count is | rounding | zeros | marker |
//! |--------|----------------------------------|----------|-------|--------|
//! | `nhs`  | ≤ 7 (NHS England / OpenSAFELY sub-national rule) | nearest 5 | suppressed | `*` |
//! | `ons`  | < 10 (ONS small-cell rule)       | nearest 5 | suppressed | `[c]` |
//! | `none` | never                            | none      | shown | `*` |
//!
//! Rounding to a base is to the nearest multiple, halves away from zero (12.5 → 15). The
//! midpoint-6 option (OpenSAFELY) maps 0 to 0 and any other count to the middle of its
//! block of six: 1–6 → 3, 7–12 → 9, 13–18 → 15.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::accuracy::{AccuracyError, Interval, NoiseDistribution, ratio_interval};
use crate::noise::Noisy;
use crate::params::{Alpha, Precision};

/// How released counts are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Rounding {
    /// Released as they are (already integers).
    None,
    /// To the nearest multiple of `base`, halves away from zero.
    Nearest {
        /// The base, at least 1 (0 is refused when the policy is read).
        base: NonZeroU32,
    },
    /// OpenSAFELY's midpoint-6: `⌈x/6⌉·6 − 3` for `x > 0`, and 0 for 0.
    Midpoint6,
}

impl Rounding {
    /// `x` rounded (counts are first clamped at 0 by the caller).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Rounding::None => x,
            Rounding::Nearest { base } => {
                let base = f64::from(base.get());
                (x / base).round() * base
            }
            Rounding::Midpoint6 => {
                if x <= 0.0 {
                    0.0
                } else {
                    (x / 6.0).ceil() * 6.0 - 3.0
                }
            }
        }
    }

    /// The largest distance between a value and its rounded value.
    pub fn max_error(self) -> f64 {
        match self {
            Rounding::None => 0.0,
            Rounding::Nearest { base } => f64::from(base.get()) / 2.0,
            Rounding::Midpoint6 => 3.0,
        }
    }
}

/// What to do with a count that is 0 after noise and rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroPolicy {
    /// Suppress it like any small number (with noise, a released 0 is not a true zero).
    Suppress,
    /// Show 0.
    Show,
}

/// The text shown in place of a suppressed cell in tables and CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Marker {
    /// `*`
    Asterisk,
    /// `[REDACTED]`
    Redacted,
    /// `[c]` (confidential; the ONS convention)
    Confidential,
    /// An empty cell.
    Empty,
}

impl Marker {
    /// The marker text.
    pub fn as_str(self) -> &'static str {
        match self {
            Marker::Asterisk => "*",
            Marker::Redacted => "[REDACTED]",
            Marker::Confidential => "[c]",
            Marker::Empty => "",
        }
    }
}

/// Rounding base of the presets.
const FIVE: NonZeroU32 = NonZeroU32::new(5).expect("5 is not zero");

/// The rules applied to noisy values before they are released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosurePolicy {
    /// Suppress a count whose noisy value is at or below this (`None`: never).
    pub suppress_at_or_below: Option<i64>,
    /// Rounding of released counts.
    pub rounding: Rounding,
    /// What to do with a released count of 0.
    pub zero: ZeroPolicy,
    /// Text for suppressed cells.
    pub marker: Marker,
}

/// An unknown preset name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disclosure policy preset `{name}`: use `nhs`, `ons` or `none`")]
pub struct UnknownPreset {
    /// The name given.
    pub name: String,
}

impl DisclosurePolicy {
    /// NHS England / OpenSAFELY sub-national: suppress ≤ 7, round to 5.
    pub const NHS: DisclosurePolicy = DisclosurePolicy {
        suppress_at_or_below: Some(7),
        rounding: Rounding::Nearest { base: FIVE },
        zero: ZeroPolicy::Suppress,
        marker: Marker::Asterisk,
    };

    /// ONS: suppress < 10, round to 5.
    pub const ONS: DisclosurePolicy = DisclosurePolicy {
        suppress_at_or_below: Some(9),
        rounding: Rounding::Nearest { base: FIVE },
        zero: ZeroPolicy::Suppress,
        marker: Marker::Confidential,
    };

    /// No suppression or rounding: differential privacy alone.
    pub const NONE: DisclosurePolicy = DisclosurePolicy {
        suppress_at_or_below: None,
        rounding: Rounding::None,
        zero: ZeroPolicy::Show,
        marker: Marker::Asterisk,
    };

    /// The preset called `name` (`nhs`, `ons`, `none`).
    pub fn preset(name: &str) -> Result<Self, UnknownPreset> {
        match name {
            "nhs" => Ok(Self::NHS),
            "ons" => Ok(Self::ONS),
            "none" => Ok(Self::NONE),
            _ => Err(UnknownPreset { name: name.into() }),
        }
    }

    /// The rules in plain English, for reports: "counts of 7 or fewer are hidden (shown
    /// as *); counts are rounded to the nearest 5".
    pub fn describe(&self) -> String {
        let marker = match self.marker {
            Marker::Empty => "left blank".to_owned(),
            m => format!("shown as {}", m.as_str()),
        };
        let mut rules = Vec::new();
        if let Some(t) = self.suppress_at_or_below {
            rules.push(format!("counts of {t} or fewer are hidden ({marker})"));
        }
        rules.push(match self.rounding {
            Rounding::None => "counts are not rounded".to_owned(),
            Rounding::Nearest { base } => {
                format!("counts are rounded to the nearest {base}")
            }
            Rounding::Midpoint6 => {
                "counts are rounded to the midpoint of their block of six (1–6 → 3, 7–12 → 9)"
                    .to_owned()
            }
        });
        if self.zero == ZeroPolicy::Suppress && self.suppress_at_or_below.is_none_or(|t| t < 0) {
            rules.push(format!("a count of 0 is hidden ({marker})"));
        }
        rules.join("; ")
    }

    /// Whether a noisy count is small enough to be suppressed.
    pub fn suppresses(&self, noisy_count: Noisy) -> bool {
        self.suppress_at_or_below
            .is_some_and(|t| noisy_count.value() <= t)
    }

    /// A count cell from its noisy value and the distribution of its noise.
    ///
    /// Suppressed if the noisy value is at or below the threshold; otherwise clamped at 0,
    /// rounded, and suppressed if that gives 0 under [`ZeroPolicy::Suppress`].
    pub fn count_cell(&self, noisy: Noisy, noise: NoiseDistribution) -> Cell {
        if self.suppresses(noisy) {
            return Cell::Suppressed;
        }
        let value = self.rounding.apply(noisy.value().max(0) as f64);
        if value == 0.0 && self.zero == ZeroPolicy::Suppress {
            return Cell::Suppressed;
        }
        Cell::Released(Released {
            value,
            error: ErrorModel::Additive {
                noise,
                unit: 1.0,
                rounding: self.rounding.max_error(),
                non_negative: true,
            },
        })
    }

    /// A sum cell from a noisy fixed-point sum in units of `precision`, released unless
    /// its group is suppressed. Sums are not rounded to the count base: their noise is
    /// already far coarser than the precision.
    pub fn sum_cell(
        &self,
        group_suppressed: bool,
        noisy: Noisy,
        precision: Precision,
        noise: NoiseDistribution,
    ) -> Cell {
        if group_suppressed {
            return Cell::Suppressed;
        }
        Cell::Released(Released {
            value: precision.from_fixed(noisy.value()),
            error: ErrorModel::Additive {
                noise,
                unit: precision.unit(),
                rounding: 0.0,
                non_negative: false,
            },
        })
    }
}

/// A released or suppressed cell of a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Shown, with what is known of its error.
    Released(Released),
    /// Hidden; shown as the policy's marker.
    Suppressed,
}

/// The status of a cell, as the wire formats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// The value is shown.
    Released,
    /// The value is hidden.
    Suppressed,
}

/// A released value and the error model its interval comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// The value shown.
    pub value: f64,
    /// Where its error comes from.
    pub error: ErrorModel,
}

/// Where a released value's error comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorModel {
    /// A noisy aggregate: noise (in integer units, times `unit`) plus rounding.
    Additive {
        /// The noise distribution, in integer units.
        noise: NoiseDistribution,
        /// The size of one integer unit in the value's scale.
        unit: f64,
        /// The most rounding moved the value.
        rounding: f64,
        /// Whether the true value cannot be negative (counts): the interval is cut at 0.
        non_negative: bool,
    },
    /// `per · num / den` of two released values.
    Ratio {
        /// Numerator.
        num: Box<Released>,
        /// Denominator.
        den: Box<Released>,
        /// Multiplier (1 for a mean, 1,000 for a rate per 1,000).
        per: f64,
    },
    /// A quantile by the exponential mechanism: its error is a number of ranks — with
    /// probability at least 95% the quantile's rank in the group is within `rank_error`
    /// values of the ranks the released value holds — and its 95% interval in values is
    /// `[low, high]`, two more selections aimed below and above the quantile
    /// (`quantile::QuantileRelease`). The interval is for 95% only.
    Rank {
        /// The 95% rank error, in values of the group.
        rank_error: f64,
        /// The interval's low end.
        low: f64,
        /// The interval's high end.
        high: f64,
    },
    /// A value known to lie in `[lo, hi]` whatever the data (a mean of values clamped to
    /// a range, a sum of non-negative values), shown clamped to that range.
    Within {
        /// The value before clamping, with its own error.
        inner: Box<Released>,
        /// Least possible true value.
        lo: f64,
        /// Greatest possible true value.
        hi: f64,
    },
}

impl Cell {
    /// The cell's status.
    pub fn status(&self) -> CellStatus {
        match self {
            Cell::Released(_) => CellStatus::Released,
            Cell::Suppressed => CellStatus::Suppressed,
        }
    }

    /// The value, if released.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Released(r) => Some(r.value),
            Cell::Suppressed => None,
        }
    }

    /// `per · num / den`, computed from the protected values: suppressed if either input
    /// is suppressed or the denominator is 0.
    pub fn ratio(num: &Cell, den: &Cell, per: f64) -> Cell {
        match (num, den) {
            (Cell::Released(n), Cell::Released(d)) if d.value != 0.0 => Cell::Released(Released {
                value: per * n.value / d.value,
                error: ErrorModel::Ratio {
                    num: Box::new(n.clone()),
                    den: Box::new(d.clone()),
                    per,
                },
            }),
            _ => Cell::Suppressed,
        }
    }

    /// The cell clamped to `[lo, hi]`, the range its true value cannot leave: noise can
    /// push a mean of stays in `[0, 30]` days to −1.3 or a sum of counts below 0, which
    /// nobody could believe. Clamping is post-processing (it reads only the protected
    /// value), so it costs no privacy; the interval is cut to the range too.
    pub fn within(self, lo: f64, hi: f64) -> Cell {
        match self {
            Cell::Released(r) if lo <= hi => Cell::Released(Released {
                value: r.value.clamp(lo, hi),
                error: ErrorModel::Within {
                    inner: Box::new(r),
                    lo,
                    hi,
                },
            }),
            other => other,
        }
    }
}

impl Released {
    /// An interval that holds the true value with probability at least `1 − α`, or
    /// `None` if no finite interval does (a ratio whose denominator may be 0).
    ///
    /// For an aggregate: `value ± (h·unit + rounding)` where `h` is the noise's exact
    /// half-width, cut at 0 for counts. For a ratio: each input at `α/2` and interval
    /// arithmetic (see [`ratio_interval`]), scaled by `per`.
    pub fn interval(&self, alpha: Alpha) -> Result<Option<Interval>, AccuracyError> {
        match &self.error {
            ErrorModel::Additive {
                noise,
                unit,
                rounding,
                non_negative,
            } => {
                let h = noise.half_width(alpha)? as f64 * unit + rounding;
                let mut interval = Interval::around(self.value, h);
                if *non_negative {
                    interval.lo = interval.lo.max(0.0);
                }
                Ok(Some(interval))
            }
            ErrorModel::Ratio { num, den, per } => {
                let half = alpha.halved();
                let (Some(n), Some(d)) = (num.interval(half)?, den.interval(half)?) else {
                    return Ok(None);
                };
                Ok(ratio_interval(n, d).map(|r| {
                    let (a, b) = (r.lo * per, r.hi * per);
                    Interval {
                        lo: a.min(b),
                        hi: a.max(b),
                    }
                }))
            }
            ErrorModel::Rank { low, high, .. } => {
                Ok((alpha == Alpha::FIVE_PERCENT).then_some(Interval {
                    lo: *low,
                    hi: *high,
                }))
            }
            ErrorModel::Within { inner, lo, hi } => {
                let Some(i) = inner.interval(alpha)? else {
                    return Ok(
                        (lo.is_finite() && hi.is_finite()).then_some(Interval { lo: *lo, hi: *hi })
                    );
                };
                let cut = Interval {
                    lo: i.lo.max(*lo),
                    hi: i.hi.min(*hi),
                };
                // The true value is in [lo, hi] and, with probability 1 − α, in the noisy
                // interval, so then in their overlap. When they do not overlap (the α
                // case), any interval keeps the guarantee: the noisy interval's width is
                // kept, moved to the nearest end of the range.
                let width = i.hi - i.lo;
                Ok(Some(if cut.lo <= cut.hi {
                    cut
                } else if i.hi < *lo {
                    Interval {
                        lo: *lo,
                        hi: (*lo + width).min(*hi),
                    }
                } else {
                    Interval {
                        lo: (*hi - width).max(*lo),
                        hi: *hi,
                    }
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOISE: NoiseDistribution = NoiseDistribution::DiscreteLaplace { scale: 2.0 };

    fn shown(policy: &DisclosurePolicy, noisy: i64) -> Option<f64> {
        policy.count_cell(Noisy::new(noisy), NOISE).value()
    }

    #[test]
    fn nhs_table() {
        let p = DisclosurePolicy::NHS;
        // noisy count → released value (None = suppressed)
        let table: &[(i64, Option<f64>)] = &[
            (-3, None),
            (0, None),
            (1, None),
            (5, None),
            (7, None),
            (8, Some(10.0)),
            (9, Some(10.0)),
            (10, Some(10.0)),
            (12, Some(10.0)),
            (13, Some(15.0)),
            (17, Some(15.0)),
            (18, Some(20.0)),
            (1_234, Some(1_235.0)),
            (1_232, Some(1_230.0)),
        ];
        for &(noisy, expected) in table {
            assert_eq!(shown(&p, noisy), expected, "nhs, noisy {noisy}");
        }
    }

    #[test]
    fn ons_table() {
        let p = DisclosurePolicy::ONS;
        let table: &[(i64, Option<f64>)] = &[
            (0, None),
            (7, None),
            (8, None),
            (9, None),
            (10, Some(10.0)),
            (12, Some(10.0)),
            (13, Some(15.0)),
            (101, Some(100.0)),
        ];
        for &(noisy, expected) in table {
            assert_eq!(shown(&p, noisy), expected, "ons, noisy {noisy}");
        }
        assert_eq!(p.marker.as_str(), "[c]");
    }

    #[test]
    fn none_table_clamps_negatives_and_shows_zeros() {
        let p = DisclosurePolicy::NONE;
        let table: &[(i64, Option<f64>)] = &[
            (-4, Some(0.0)),
            (0, Some(0.0)),
            (1, Some(1.0)),
            (7, Some(7.0)),
            (8, Some(8.0)),
            (13, Some(13.0)),
        ];
        for &(noisy, expected) in table {
            assert_eq!(shown(&p, noisy), expected, "none, noisy {noisy}");
        }
    }

    #[test]
    fn halves_round_away_from_zero() {
        let five = Rounding::Nearest { base: FIVE };
        assert_eq!(five.apply(12.5), 15.0);
        assert_eq!(five.apply(12.4999), 10.0);
        assert_eq!(five.apply(7.5), 10.0);
        assert_eq!(five.apply(2.5), 5.0);
        assert_eq!(five.apply(2.4), 0.0);
        assert_eq!(
            Rounding::Nearest {
                base: NonZeroU32::new(10).unwrap()
            }
            .apply(15.0),
            20.0
        );
        assert_eq!(five.max_error(), 2.5);
    }

    #[test]
    fn midpoint6_table() {
        let m = Rounding::Midpoint6;
        let table = [
            (0.0, 0.0),
            (1.0, 3.0),
            (6.0, 3.0),
            (7.0, 9.0),
            (12.0, 9.0),
            (13.0, 15.0),
            (18.0, 15.0),
            (19.0, 21.0),
        ];
        for (x, expected) in table {
            assert_eq!(m.apply(x), expected, "midpoint6({x})");
        }
        let p = DisclosurePolicy {
            suppress_at_or_below: None,
            rounding: Rounding::Midpoint6,
            zero: ZeroPolicy::Show,
            marker: Marker::Redacted,
        };
        assert_eq!(shown(&p, -2), Some(0.0));
        assert_eq!(shown(&p, 4), Some(3.0));
    }

    #[test]
    fn zero_policy_suppresses_rounded_zeros_when_asked() {
        let p = DisclosurePolicy {
            suppress_at_or_below: None,
            rounding: Rounding::Nearest { base: FIVE },
            zero: ZeroPolicy::Suppress,
            marker: Marker::Empty,
        };
        assert_eq!(shown(&p, 2), None, "2 rounds to 0");
        assert_eq!(shown(&p, 3), Some(5.0));
        assert_eq!(p.marker.as_str(), "");
    }

    #[test]
    fn presets_by_name() {
        assert_eq!(
            DisclosurePolicy::preset("nhs").unwrap(),
            DisclosurePolicy::NHS
        );
        assert_eq!(
            DisclosurePolicy::preset("ons").unwrap(),
            DisclosurePolicy::ONS
        );
        assert_eq!(
            DisclosurePolicy::preset("none").unwrap(),
            DisclosurePolicy::NONE
        );
        let e = DisclosurePolicy::preset("NHS ").unwrap_err();
        assert!(e.to_string().contains("`nhs`, `ons` or `none`"), "{e}");
    }

    #[test]
    fn released_counts_carry_intervals_widened_by_rounding() {
        let cell = DisclosurePolicy::NHS.count_cell(Noisy::new(103), NOISE);
        assert_eq!(cell.status(), CellStatus::Released);
        let Cell::Released(r) = &cell else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        let h = NOISE.half_width(Alpha::FIVE_PERCENT).unwrap() as f64;
        assert_eq!(r.value, 105.0);
        assert_eq!((i.lo, i.hi), (105.0 - h - 2.5, 105.0 + h + 2.5));
        // Cut at 0 for counts.
        let small = DisclosurePolicy::NONE.count_cell(
            Noisy::new(1),
            NoiseDistribution::DiscreteLaplace { scale: 50.0 },
        );
        let Cell::Released(r) = small else {
            panic!("released")
        };
        assert_eq!(r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap().lo, 0.0);
    }

    #[test]
    fn derived_values_are_suppressed_with_their_inputs() {
        let p = DisclosurePolicy::NHS;
        let people = p.count_cell(Noisy::new(2_000), NOISE);
        let small = p.count_cell(Noisy::new(6), NOISE);
        let admissions = p.count_cell(Noisy::new(212), NOISE);
        assert_eq!(Cell::ratio(&small, &people, 1_000.0), Cell::Suppressed);
        assert_eq!(Cell::ratio(&admissions, &small, 1.0), Cell::Suppressed);
        let rate = Cell::ratio(&admissions, &people, 1_000.0);
        // Computed from the protected (rounded) values: 210 / 2,000 per 1,000.
        assert_eq!(rate.value(), Some(105.0));
        let Cell::Released(r) = &rate else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert!(i.lo < 105.0 && 105.0 < i.hi);
        // A sum in a suppressed group is suppressed; otherwise released with its unit.
        let pence = Precision::new(0.01).unwrap();
        let cost = p.sum_cell(true, Noisy::new(123_450), pence, NOISE);
        assert_eq!(cost, Cell::Suppressed);
        let cost = p.sum_cell(false, Noisy::new(123_450), pence, NOISE);
        let Cell::Released(r) = &cost else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        let h = NOISE.half_width(Alpha::FIVE_PERCENT).unwrap() as f64 * 0.01;
        assert!((i.hi - 1234.5 - h).abs() < 1e-9);
    }

    #[test]
    fn ratio_with_a_denominator_that_may_be_zero_has_no_interval() {
        let p = DisclosurePolicy::NONE;
        let wide = NoiseDistribution::DiscreteLaplace { scale: 100.0 };
        let rate = Cell::ratio(
            &p.count_cell(Noisy::new(50), wide),
            &p.count_cell(Noisy::new(20), wide),
            1.0,
        );
        let Cell::Released(r) = &rate else {
            panic!("released")
        };
        assert_eq!(r.interval(Alpha::FIVE_PERCENT).unwrap(), None);
    }

    #[test]
    fn a_value_is_kept_within_its_possible_range() {
        let p = DisclosurePolicy::NHS;
        let sum = |noisy| {
            p.sum_cell(
                false,
                Noisy::new(noisy),
                Precision::new(1.0).unwrap(),
                NOISE,
            )
        };
        let h = NOISE.half_width(Alpha::FIVE_PERCENT).unwrap() as f64;
        // Noise took a sum of non-negative values below 0: shown as 0, interval cut at 0.
        let Cell::Released(r) = sum(-3).within(0.0, f64::INFINITY) else {
            panic!("released")
        };
        assert_eq!(r.value, 0.0);
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((i.lo, i.hi), (0.0, -3.0 + h));
        // Inside the range nothing changes.
        let Cell::Released(r) = sum(12).within(0.0, 30.0) else {
            panic!("released")
        };
        assert_eq!(r.value, 12.0);
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((i.lo, i.hi), (12.0 - h, 12.0 + h));
        // An interval that misses the range keeps its width at the range's nearest end.
        let Cell::Released(r) = sum(-1000).within(0.0, 30.0) else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((r.value, i.lo, i.hi), (0.0, 0.0, 2.0 * h));
        let Cell::Released(r) = sum(-1000).within(0.0, f64::INFINITY) else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((r.value, i.lo, i.hi), (0.0, 0.0, 2.0 * h));
        let Cell::Released(r) = sum(1000).within(0.0, 30.0) else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((r.value, i.lo, i.hi), (30.0, 30.0 - 2.0 * h, 30.0));
        // A mean whose count may be 0 has no noisy interval: the range is the answer.
        let wide = NoiseDistribution::DiscreteLaplace { scale: 100.0 };
        let none = DisclosurePolicy::NONE;
        let mean = Cell::ratio(
            &none.count_cell(Noisy::new(50), wide),
            &none.count_cell(Noisy::new(20), wide),
            1.0,
        )
        .within(0.0, 60.0);
        let Cell::Released(r) = mean else {
            panic!("released")
        };
        let i = r.interval(Alpha::FIVE_PERCENT).unwrap().unwrap();
        assert_eq!((r.value, i.lo, i.hi), (2.5, 0.0, 60.0));
        // Suppressed stays suppressed.
        assert_eq!(Cell::Suppressed.within(0.0, 1.0), Cell::Suppressed);
    }

    #[test]
    fn policies_describe_themselves_in_plain_english() {
        assert_eq!(
            DisclosurePolicy::NHS.describe(),
            "counts of 7 or fewer are hidden (shown as *); counts are rounded to the nearest 5"
        );
        assert_eq!(DisclosurePolicy::NONE.describe(), "counts are not rounded");
    }
}
