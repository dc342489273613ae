//! Quantiles of one group's bounded values (a median, a percentile): the exponential
//! mechanism over a grid of candidates (Smith 2011), run as report-noisy-min over integer
//! scores with opendp's `make_noisy_max` — exponential noise, that is permute-and-flip
//! (McKenna & Sheldon 2020), which is never less accurate than the exponential mechanism.
//!
//! **Candidates.** The values the release can take: a strictly increasing grid, in
//! practice the catalog's bounds at its precision (ages 0, 1, …, 120; lengths of stay 0,
//! 1, …, 60). The caller snaps every value onto the grid (clamping to the bounds and
//! rounding to the precision, as for sums) and hands over how many values fall on each
//! candidate — a histogram, which DataFusion computes per group without collecting the
//! values.
//!
//! **Scores.** For a quantile α = num/den and candidate c, with b values below c, `on` on
//! it and a above it, the score is
//! `max(0, (den − num)·b − num·(a + on), num·a − (den − num)·(b + on))`: `den` times the
//! distance, counted in values, from the quantile's rank αn to the ranks c holds,
//! [b, b + on] — zero for the candidate the quantile falls on, even when many values are
//! tied there (as snapping onto the grid makes them), and growing by `den` for each value
//! between c and the quantile. Adding or removing one value moves each of the three terms
//! by at most max(num, den − num) (by den − num when it is below c, num when above, and at
//! most the larger when on c), so a person with at most `k` values in the group moves every
//! score by at most Δ = k·max(num, den − num) — the L∞ sensitivity. The scores move in
//! both directions (candidates below the quantile gain where those above lose), so the
//! noisy minimum with exponential noise of scale 2Δ/ε is ε-DP; opendp's privacy map for a
//! non-monotonic L∞ input says so, and is checked before every release.
//!
//! **Accuracy.** With probability at least 1 − β the released candidate's score is within
//! `scale · ln(m/β)` of the best candidate's, which is 0 (m candidates; permute-and-flip
//! looks at each candidate once, accepting one `g` worse than the best with probability
//! exp(−g/scale), and a union bound gives the exponential mechanism's bound, Dwork & Roth
//! 2014 Thm 3.11). Divided by `den` this is a statement about ranks: the quantile's rank αn
//! is within [`QuantileMechanism::rank_error`] = 2k·max(α, 1 − α)·ln(m/β)/ε values of the
//! ranks the released candidate holds — a rank-based interval, not an interval of values.

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_noisy_max;
use opendp::measures::MaxDivergence;
use opendp::metrics::LInfDistance;

use crate::budget::{ChargeItem, MechanismKind};
use crate::noise::check_loss;
use crate::{Epsilon, MechanismError};

/// opendp's noisy minimum over a vector of integer scores, returning the index.
type NoisyMin = opendp::core::Measurement<
    VectorDomain<AtomDomain<u64>>,
    LInfDistance<u64>,
    MaxDivergence,
    usize,
>;

/// The finest quantile carelens releases: α is a multiple of 1/10,000 (a percentile to
/// two decimals).
pub const ALPHA_DENOMINATOR: u64 = 10_000;

/// The most candidates a quantile's grid has: finer grids are coarsened (see [`Grid`]).
pub const MAX_CANDIDATES: usize = 10_001;

/// The candidates of a quantile over values in `[lo, hi]`: `lo, lo + step, …` up to `hi`,
/// where `step` is the values' precision times the smallest of 1, 2, 5,
/// 10, 20, 50, … that keeps the grid within [`MAX_CANDIDATES`] (ages 0–120 by 1 are 121
/// candidates; dates over a century by the day would be 36,525, so they go by 5 days).
/// Chosen from the catalog alone, never from the data. A value is snapped to the nearest
/// candidate: index `round((clamp(x, lo, hi) − lo) / step)`, at most `len − 1` (when `hi`
/// is not on the grid, values above the last candidate snap down to it).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    lo: f64,
    step: f64,
    candidates: Vec<f64>,
}

impl Grid {
    /// The grid over `[lo, hi]` at precision `unit`.
    pub fn new(lo: f64, hi: f64, unit: f64) -> Result<Self, QuantileError> {
        let usable = lo.is_finite()
            && hi.is_finite()
            && unit.is_finite()
            && unit > 0.0
            && lo < hi
            && (hi - lo).is_finite();
        if !usable {
            return Err(QuantileError::Candidates);
        }
        let mut multiple: f64 = 1.0;
        let step = loop {
            let step = unit * multiple;
            if !step.is_finite() {
                return Err(QuantileError::Candidates);
            }
            if (hi - lo) / step < (MAX_CANDIDATES - 1) as f64 {
                break step;
            }
            // 1, 2, 5, 10, 20, 50, …
            let mantissa = multiple / 10f64.powi(multiple.log10().floor() as i32);
            multiple *= if (mantissa - 2.0).abs() < 1e-9 {
                2.5
            } else {
                2.0
            };
        };
        // The grid's points within the bounds (a hair of tolerance, so 0.1 + 6 × 0.1 is
        // taken as 0.7): every candidate is a value snapping lands on exactly.
        let last = ((hi - lo) / step + 1e-9).floor() as u32;
        let mut candidates: Vec<f64> = Vec::with_capacity(last as usize + 1);
        for i in 0..=last {
            let c = (lo + f64::from(i) * step).min(hi);
            if candidates.last().is_none_or(|previous| c > *previous) {
                candidates.push(c);
            }
        }
        // Far from 0 a float cannot tell neighbouring steps apart (1e16 + 1 is 1e16): the
        // grid would hold fewer candidates than the snapping counts.
        if candidates.len() < 2 || candidates.len() != last as usize + 1 {
            return Err(QuantileError::Candidates);
        }
        Ok(Self {
            lo,
            step,
            candidates,
        })
    }

    /// The lowest candidate.
    pub fn lo(&self) -> f64 {
        self.lo
    }

    /// The distance between neighbouring candidates (the last may be closer).
    pub fn step(&self) -> f64 {
        self.step
    }

    /// The candidates, increasing.
    pub fn candidates(&self) -> &[f64] {
        &self.candidates
    }

    /// The number of candidates.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    /// Whether the grid is empty (never: a grid has at least two candidates).
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }
}

/// Why a quantile mechanism could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QuantileError {
    /// α outside (0, 1), or not a multiple of 1/10,000.
    #[error(
        "the quantile {alpha} is not strictly between 0 and 1 in steps of 0.0001; \
         for a minimum or maximum use a low or high percentile"
    )]
    Alpha {
        /// The α asked for.
        alpha: f64,
    },
    /// Fewer than two candidates, or not strictly increasing and finite.
    #[error("the candidate values must be at least two, finite and strictly increasing")]
    Candidates,
    /// A person may contribute no values.
    #[error("a person's values per group must be at least 1")]
    NoContribution,
    /// The histogram does not have one count per candidate.
    #[error("{counts} counts for {candidates} candidates")]
    Histogram {
        /// Counts given.
        counts: usize,
        /// Candidates.
        candidates: usize,
    },
    /// A score or the sensitivity does not fit 64 bits (more than about 10^15 values).
    #[error("too many values for the quantile's integer scores")]
    Overflow,
    /// The noise library refused, or its privacy map disagreed.
    #[error(transparent)]
    Mechanism(#[from] MechanismError),
    /// A share of ε is out of range.
    #[error(transparent)]
    Param(#[from] crate::ParamError),
}

impl From<opendp::error::Error> for QuantileError {
    fn from(e: opendp::error::Error) -> Self {
        QuantileError::Mechanism(MechanismError::from(e))
    }
}

/// A calibrated ε-DP quantile of one group's values.
///
/// Holds only numbers; the opendp measurement (not `Send`) is built per release.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileMechanism {
    candidates: Vec<f64>,
    alpha_num: u64,
    alpha_den: u64,
    values_per_person: u64,
    epsilon: Epsilon,
    scale: f64,
    /// Where the selection aims, in values from the quantile's rank αn: 0 for the
    /// quantile itself, ∓R for the ends of its interval ([`QuantileRelease`]).
    offset: i64,
}

impl QuantileMechanism {
    /// The `alpha`-quantile over `candidates` (strictly increasing) at `epsilon`, for
    /// groups in which one person has at most `values_per_person` values. The noise scale
    /// is the smallest at which opendp's privacy map gives at most ε.
    pub fn new(
        candidates: Vec<f64>,
        alpha: f64,
        values_per_person: u32,
        epsilon: Epsilon,
    ) -> Result<Self, QuantileError> {
        let (alpha_num, alpha_den) = alpha_fraction(alpha)?;
        if candidates.len() < 2
            || candidates.iter().any(|c| !c.is_finite())
            || candidates.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(QuantileError::Candidates);
        }
        if values_per_person == 0 {
            return Err(QuantileError::NoContribution);
        }
        let mut mechanism = Self {
            candidates,
            alpha_num,
            alpha_den,
            values_per_person: u64::from(values_per_person),
            epsilon,
            scale: 0.0,
            offset: 0,
        };
        let sensitivity = mechanism.sensitivity()?;
        let mut scale = 2.0 * sensitivity as f64 / epsilon.value();
        // The map is exact rational arithmetic; nudge the float scale up until opendp
        // agrees it is within ε (at most a few ulps).
        for _ in 0..64 {
            mechanism.scale = scale;
            if mechanism.loss()? <= epsilon.value() {
                return Ok(mechanism);
            }
            scale = scale.next_up();
        }
        Err(MechanismError::Uncalibrated {
            epsilon: epsilon.value(),
            delta: 0.0,
        }
        .into())
    }

    /// The candidate values, in increasing order.
    pub fn candidates(&self) -> &[f64] {
        &self.candidates
    }

    /// α as released (a multiple of 1/10,000).
    pub fn alpha(&self) -> f64 {
        self.alpha_num as f64 / self.alpha_den as f64
    }

    /// The same mechanism aimed `offset` values above the quantile's rank (below when
    /// negative): it selects the candidate whose ranks hold αn + offset. The offset must
    /// not come from the data; the interval's ends use the rank error of their own scale.
    pub fn aimed_at(mut self, offset: i64) -> Self {
        self.offset = offset;
        self
    }

    /// Where the selection aims, in values from αn.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The denominator of α: scores count this many per value of rank.
    pub fn denominator(&self) -> u64 {
        self.alpha_den
    }

    /// ε charged for one release (one group).
    pub fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The exponential noise's scale, in score units.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Δ: the most one person's values move any candidate's score.
    pub fn sensitivity(&self) -> Result<u64, QuantileError> {
        self.values_per_person
            .checked_mul(self.alpha_num.max(self.alpha_den - self.alpha_num))
            .ok_or(QuantileError::Overflow)
    }

    /// The score of every candidate (lower is better) from `counts[i]`, the number of
    /// values on candidate i.
    pub fn scores(&self, counts: &[u64]) -> Result<Vec<u64>, QuantileError> {
        if counts.len() != self.candidates.len() {
            return Err(QuantileError::Histogram {
                counts: counts.len(),
                candidates: self.candidates.len(),
            });
        }
        let total = counts
            .iter()
            .try_fold(0u64, |s, &c| s.checked_add(c))
            .ok_or(QuantileError::Overflow)?;
        let (num, den) = (i128::from(self.alpha_num), i128::from(self.alpha_den));
        let mut below = 0u64;
        let mut scores = Vec::with_capacity(counts.len());
        for &on in counts {
            let above = i128::from(total - below - on);
            let (b, on_c) = (i128::from(below), i128::from(on));
            // Too many values below c for it to be the quantile, or too many above (with an
            // offset R, for rank αn + R: den·R is a constant, so Δ is unchanged).
            let aim = den * i128::from(self.offset);
            let too_high = (den - num) * b - num * (above + on_c) - aim;
            let too_low = num * above - (den - num) * (b + on_c) + aim;
            let score =
                u64::try_from(too_high.max(too_low).max(0)).map_err(|_| QuantileError::Overflow)?;
            scores.push(score);
            below += on;
        }
        Ok(scores)
    }

    /// One release: the candidate the noisy minimum picks, from the histogram `counts`
    /// (one count per candidate).
    pub fn release(&self, counts: &[u64]) -> Result<f64, QuantileError> {
        let scores = self.scores(counts)?;
        let measurement = self.measurement()?;
        check_loss(measurement.map(&self.sensitivity()?)?, self.epsilon)?;
        let index = measurement.invoke(&scores)?;
        Ok(self.candidates[index])
    }

    /// With probability at least `1 - beta`, the released candidate's score is at most
    /// `scale · ln(m / beta)` (the best candidate's is 0); in values of the group, that is
    /// `2k·max(α, 1 − α)·ln(m/β)/ε` (k values per person) — how far, counted in the
    /// group's values, the quantile's rank can be from the ranks the release holds.
    pub fn rank_error(&self, beta: f64) -> f64 {
        self.score_error(beta) / self.alpha_den as f64
    }

    /// [`Self::rank_error`] in score units.
    pub fn score_error(&self, beta: f64) -> f64 {
        self.scale * (self.candidates.len() as f64 / beta).ln()
    }

    fn measurement(&self) -> Result<NoisyMin, QuantileError> {
        Ok(make_noisy_max(
            VectorDomain::new(AtomDomain::<u64>::default()).with_size(self.candidates.len()),
            LInfDistance::<u64>::default(),
            MaxDivergence,
            self.scale,
            true,
        )?)
    }

    /// `n` releases from one histogram, as candidate indices (the statistical tests).
    #[cfg(test)]
    pub(crate) fn release_indices(
        &self,
        counts: &[u64],
        n: usize,
    ) -> Result<Vec<usize>, QuantileError> {
        let scores = self.scores(counts)?;
        let measurement = self.measurement()?;
        (0..n).map(|_| Ok(measurement.invoke(&scores)?)).collect()
    }

    /// The same mechanism with its noise scale multiplied by `factor`, charged as before:
    /// a deliberately broken mechanism for the statistical tests.
    #[cfg(test)]
    pub(crate) fn with_scale_times(&self, factor: f64) -> Self {
        Self {
            scale: self.scale * factor,
            ..self.clone()
        }
    }

    /// The charge of releasing this quantile in every group when one person's values are
    /// in at most `max_groups` groups: `max_groups` times the per-group ε.
    pub fn charge_item(&self, label: impl Into<String>, max_groups: u32) -> ChargeItem {
        ChargeItem {
            label: label.into(),
            mechanism: MechanismKind::ExponentialQuantile,
            epsilon: self.epsilon.value() * f64::from(max_groups),
            delta: 0.0,
            max_groups,
            per_group_sensitivity: self.sensitivity().unwrap_or(u64::MAX),
            scale: self.scale,
            threshold: None,
            rho: None,
        }
    }

    /// What opendp's privacy map gives for scores that move by Δ in either direction.
    fn loss(&self) -> Result<f64, QuantileError> {
        Ok(self.measurement()?.map(&self.sensitivity()?)?)
    }
}

/// A quantile released with a 95% interval: three selections, each from its own noise —
/// the value (half of the quantile's ε) and the two ends of the interval (a quarter each).
///
/// **The interval.** The low end is aimed `R` values below the quantile's rank αn and the
/// high end `R` above, where `R` is the ends' own rank error at β = 2% (rounded up), a
/// number of values fixed by ε, L∞, α and the grid, never by the data. When the low end's
/// target αn − R is a rank of the group (αn ≥ R), some candidate's ranks hold it (score 0),
/// so with probability at least 98% the low end's ranks reach down to within `R` of it: at
/// most αn values lie below the low end. Likewise the high end when (1 − α)n ≥ R. The
/// group's number of values `n` is not known; the caller passes a lower bound that holds
/// with probability at least 99% (a noisy count minus its 99% half-width), and an end whose
/// condition that bound cannot show is put at the grid's end instead — always on its side
/// of the quantile, and honest: a group too small for the noise gets an interval as wide as
/// the bounds. Then the interval holds a candidate whose ranks hold αn, the α-quantile of
/// the group's values (capped and snapped as released), with probability at least
/// 1 − 2% − 2% − 1% = 95% (a union bound). The rank bound is the exponential mechanism's
/// union bound over the candidates, which is loose: the interval covers more often than
/// 95% and is wider than it need be.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileRelease {
    /// The quantile.
    pub value: QuantileMechanism,
    /// The interval's low end.
    pub low: QuantileMechanism,
    /// The interval's high end.
    pub high: QuantileMechanism,
}

/// The β of the interval: 5% in all.
pub const INTERVAL_BETA: f64 = 0.05;

/// The part of [`INTERVAL_BETA`] each end of an interval may miss by.
pub const END_BETA: f64 = 0.02;

/// The part of [`INTERVAL_BETA`] the lower bound on a group's number of values may be
/// wrong by: the caller's bound must hold with probability at least `1 − COUNT_BETA`.
pub const COUNT_BETA: f64 = 0.01;

impl QuantileRelease {
    /// The `alpha`-quantile over `candidates` with its interval, at `epsilon` per group in
    /// all (one person's values in a group: at most `values_per_person`).
    pub fn new(
        candidates: Vec<f64>,
        alpha: f64,
        values_per_person: u32,
        epsilon: Epsilon,
    ) -> Result<Self, QuantileError> {
        // A hair under ε, so the three charges summed in any order stay within it.
        let total = epsilon.value() * (1.0 - 1e-12);
        let value = QuantileMechanism::new(
            candidates.clone(),
            alpha,
            values_per_person,
            Epsilon::new(total * 0.5)?,
        )?;
        let end = QuantileMechanism::new(
            candidates,
            alpha,
            values_per_person,
            Epsilon::new(total * 0.25)?,
        )?;
        let reach = end.rank_error(END_BETA).ceil();
        if !(reach.is_finite() && reach < 1e15) {
            return Err(QuantileError::Overflow);
        }
        let reach = reach as i64;
        Ok(Self {
            value,
            low: end.clone().aimed_at(-reach),
            high: end.aimed_at(reach),
        })
    }

    /// One group's release: the value and the interval's ends, given `values_at_least`, a
    /// lower bound on the group's number of values that holds with probability at least
    /// `1 − COUNT_BETA`. An end the bound cannot place within the group's ranks is the
    /// grid's end. (The caller puts several quantiles of one value in order, and each end
    /// on its side of its value.) All three selections run whatever the bound, so the work
    /// does not depend on it.
    pub fn release(
        &self,
        counts: &[u64],
        values_at_least: u64,
    ) -> Result<(f64, f64, f64), QuantileError> {
        let value = self.value.release(counts)?;
        let mut low = self.low.release(counts)?;
        let mut high = self.high.release(counts)?;
        let (num, den) = (
            u128::from(self.value.alpha_num),
            u128::from(self.value.alpha_den),
        );
        let (n, reach) = (u128::from(values_at_least), self.reach_units());
        let candidates = self.value.candidates();
        // αn ≥ R, checked as num·n ≥ den·R; (1 − α)n ≥ R likewise.
        if num.saturating_mul(n) < den.saturating_mul(reach) {
            low = candidates[0];
        }
        if (den - num).saturating_mul(n) < den.saturating_mul(reach) {
            high = candidates[candidates.len() - 1];
        }
        Ok((value, low, high))
    }

    fn reach_units(&self) -> u128 {
        u128::try_from(self.reach()).unwrap_or(u128::MAX / 4)
    }

    /// The three selections' charges, labelled after `label`.
    pub fn charge_items(&self, label: &str, max_groups: u32) -> [ChargeItem; 3] {
        [
            self.value.charge_item(label, max_groups),
            self.low
                .charge_item(format!("{label}: 95% interval, low end"), max_groups),
            self.high
                .charge_item(format!("{label}: 95% interval, high end"), max_groups),
        ]
    }

    /// The interval's reach R, in values on each side of αn.
    pub fn reach(&self) -> i64 {
        self.high.offset()
    }
}

/// α as `num / den` with `den` dividing [`ALPHA_DENOMINATOR`], in lowest terms.
fn alpha_fraction(alpha: f64) -> Result<(u64, u64), QuantileError> {
    let scaled = alpha * ALPHA_DENOMINATOR as f64;
    let num = scaled.round();
    if !(alpha > 0.0 && alpha < 1.0) || (scaled - num).abs() > 1e-6 {
        return Err(QuantileError::Alpha { alpha });
    }
    let num = num as u64;
    // α within 1/20,000 of 0 or 1 would round to the minimum or the maximum.
    if num == 0 || num >= ALPHA_DENOMINATOR {
        return Err(QuantileError::Alpha { alpha });
    }
    let divisor = gcd(num, ALPHA_DENOMINATOR);
    Ok((num / divisor, ALPHA_DENOMINATOR / divisor))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median(candidates: usize, k: u32, epsilon: f64) -> QuantileMechanism {
        QuantileMechanism::new(
            (0..candidates).map(|c| c as f64).collect(),
            0.5,
            k,
            Epsilon::new(epsilon).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn an_end_falls_back_to_the_grid_exactly_when_the_count_bound_cannot_place_it() {
        // A median: the low end is placed when n/2 ≥ R, the high end likewise.
        let m: u32 = 2_000;
        let q = QuantileRelease::new(
            (0..m).map(f64::from).collect(),
            0.5,
            1,
            Epsilon::new(2.0).unwrap(),
        )
        .unwrap();
        let reach = u64::try_from(q.reach()).unwrap();
        assert!(reach > 0 && 8 * reach <= u64::from(m), "R = {reach}");
        // 8R values, one per candidate from the start: αn − R = 3R, far from both ends.
        let counts: Vec<u64> = (0..u64::from(m))
            .map(|i| u64::from(i < 8 * reach))
            .collect();
        let (first, last) = (0.0, f64::from(m - 1));
        let mut placed = 0;
        for _ in 0..20 {
            let (_, low, high) = q.release(&counts, 2 * reach - 1).unwrap();
            assert_eq!(
                (low, high),
                (first, last),
                "n/2 < R: both ends at the grid's ends"
            );
            let (_, low, high) = q.release(&counts, 2 * reach).unwrap();
            placed += usize::from(low > first && high < last);
        }
        assert!(
            placed >= 15,
            "n/2 = R: the ends were placed {placed} times of 20"
        );
    }

    #[test]
    fn alpha_is_a_fraction_in_lowest_terms() {
        assert_eq!(alpha_fraction(0.5).unwrap(), (1, 2));
        assert_eq!(alpha_fraction(0.9).unwrap(), (9, 10));
        assert_eq!(alpha_fraction(0.25).unwrap(), (1, 4));
        assert_eq!(alpha_fraction(0.0001).unwrap(), (1, 10_000));
        for bad in [
            0.0,
            1.0,
            -0.5,
            1.5,
            0.00005,
            1e-12,
            1.0 - 1e-12,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(alpha_fraction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scores_are_zero_at_the_quantile_and_grow_by_the_values_it_is_off() {
        let m = median(5, 1, 1.0);
        // Values 0, 1, 1, 2, 4: the median is 1.
        let counts = [1, 2, 1, 0, 1];
        // Below / on / above each candidate: 0/1/4, 1/2/2, 3/1/1, 4/0/1, 4/1/0. The median
        // (rank 2.5 of 5) is on candidate 1; 2 holds ranks [3, 4], half a value away (den 2
        // times 0.5); 0 holds [0, 1], 1.5 values away.
        assert_eq!(m.scores(&counts).unwrap(), vec![3, 0, 1, 3, 3]);
        let p90 = QuantileMechanism::new(
            (0..5).map(f64::from).collect(),
            0.9,
            1,
            Epsilon::new(1.0).unwrap(),
        )
        .unwrap();
        // Rank 4.5 of 5 is on candidate 4.
        assert_eq!(p90.scores(&counts).unwrap(), vec![35, 15, 5, 5, 0]);
        assert!(m.scores(&[1, 2]).is_err());
    }

    #[test]
    fn one_persons_values_move_every_score_by_at_most_the_sensitivity() {
        // Every histogram on 4 candidates with up to 3 values, and every way to add one
        // person's k = 2 values to it.
        for alpha in [0.5, 0.1, 0.75] {
            let m = QuantileMechanism::new(
                vec![0.0, 1.0, 2.0, 3.0],
                alpha,
                2,
                Epsilon::new(1.0).unwrap(),
            )
            .unwrap();
            let delta = m.sensitivity().unwrap();
            let mut histograms = vec![vec![0u64; 4]];
            for _ in 0..3 {
                let next: Vec<Vec<u64>> = histograms
                    .iter()
                    .flat_map(|h| {
                        (0..4).map(move |i| {
                            let mut h = h.clone();
                            h[i] += 1;
                            h
                        })
                    })
                    .collect();
                histograms.extend(next);
            }
            let mut tight = false;
            for h in &histograms {
                let before = m.scores(h).unwrap();
                for i in 0..4 {
                    for j in 0..4 {
                        let mut g = h.clone();
                        g[i] += 1;
                        g[j] += 1;
                        let after = m.scores(&g).unwrap();
                        for (x, y) in before.iter().zip(&after) {
                            assert!(x.abs_diff(*y) <= delta, "α {alpha}: {h:?} -> {g:?}");
                            tight |= x.abs_diff(*y) == delta;
                        }
                    }
                }
            }
            assert!(tight, "α {alpha}: the sensitivity {delta} is never reached");
        }
    }

    #[test]
    fn scale_is_twice_the_sensitivity_over_epsilon() {
        let m = median(10, 3, 0.5);
        assert_eq!(m.sensitivity().unwrap(), 3);
        assert!((m.scale() - 12.0).abs() < 1e-9, "{}", m.scale());
        assert!(m.loss().unwrap() <= 0.5);
        // Rank error: 2k·max(α, 1 − α)·ln(m/β)/ε = 2·3·0.5·ln(200)/0.5.
        assert!((m.rank_error(0.05) - 6.0 * (200f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let e = Epsilon::new(1.0).unwrap();
        assert!(QuantileMechanism::new(vec![1.0], 0.5, 1, e).is_err());
        assert!(QuantileMechanism::new(vec![1.0, 1.0], 0.5, 1, e).is_err());
        assert!(QuantileMechanism::new(vec![2.0, 1.0], 0.5, 1, e).is_err());
        assert!(QuantileMechanism::new(vec![0.0, f64::NAN], 0.5, 1, e).is_err());
        assert!(QuantileMechanism::new(vec![0.0, 1.0], 0.5, 0, e).is_err());
        assert!(QuantileMechanism::new(vec![0.0, 1.0], 1.0, 1, e).is_err());
    }

    #[test]
    fn a_quantile_charged_less_than_its_map_refuses_to_release() {
        let mut m = median(5, 1, 1.0);
        m.epsilon = Epsilon::new(0.5).unwrap();
        let e = m.release(&[1, 1, 1, 1, 1]).unwrap_err();
        assert!(
            matches!(
                e,
                QuantileError::Mechanism(MechanismError::Overspend { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn a_quantile_on_tied_values_scores_zero_there() {
        // 10 values at 0, 1,000 at 5, 90 at 10: the 90th percentile (the 990th value) is
        // 5. A score that ignored the values on a candidate would prefer the empty 6..9.
        let p90 = QuantileMechanism::new(
            (0..=10).map(f64::from).collect(),
            0.9,
            1,
            Epsilon::new(1.0).unwrap(),
        )
        .unwrap();
        let mut counts = vec![0u64; 11];
        counts[0] = 10;
        counts[5] = 1_000;
        counts[10] = 90;
        let scores = p90.scores(&counts).unwrap();
        assert_eq!(scores[5], 0, "{scores:?}");
        assert!(
            scores.iter().enumerate().all(|(i, &s)| i == 5 || s >= 90),
            "{scores:?}"
        );
        for _ in 0..20 {
            assert_eq!(p90.release(&counts).unwrap(), 5.0);
        }
    }

    #[test]
    fn a_clear_median_is_released_at_a_large_epsilon() {
        let m = median(11, 1, 50.0);
        let mut counts = vec![0u64; 11];
        counts[2] = 100;
        counts[7] = 301;
        counts[9] = 100;
        for _ in 0..20 {
            assert_eq!(m.release(&counts).unwrap(), 7.0);
        }
    }

    #[test]
    fn a_grid_is_the_precision_grid_coarsened_to_at_most_max_candidates() {
        let ages = Grid::new(0.0, 120.0, 1.0).unwrap();
        assert_eq!(ages.len(), 121);
        assert_eq!((ages.candidates()[0], ages.candidates()[120]), (0.0, 120.0));
        assert_eq!(ages.step(), 1.0);
        // A century of days: 36,525 candidates by the day, so by 5 days.
        let days = Grid::new(0.0, 36_524.0, 1.0).unwrap();
        assert_eq!(days.step(), 5.0);
        assert_eq!(days.len(), 7_305);
        // 60 days at 0.001: 60,001 by the unit; 0.002 gives 30,001, 0.005 12,001, 0.01.
        let fine = Grid::new(0.0, 60.0, 0.001).unwrap();
        assert!((fine.step() - 0.01).abs() < 1e-12, "{}", fine.step());
        assert_eq!(fine.len(), 6_001);
        // A range that is not a whole number of steps ends at its last step.
        let odd = Grid::new(0.5, 10.0, 2.0).unwrap();
        assert_eq!(odd.candidates(), &[0.5, 2.5, 4.5, 6.5, 8.5]);
        let tenths = Grid::new(0.1, 0.7, 0.1).unwrap();
        assert_eq!(
            tenths.candidates(),
            &[0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7]
        );
        for (lo, hi, unit) in [
            (0.0, 120.0, 1.0),
            (0.0, 250.0, 0.1),
            (-1e9, 1e9, 1e-9),
            (1915.0, 2025.0, 1.0),
            (0.0, 1.0, 0.3),
            (0.1, 0.7, 0.1),
        ] {
            let g = Grid::new(lo, hi, unit).unwrap();
            assert!(
                g.len() >= 2 && g.len() <= MAX_CANDIDATES,
                "{lo} {hi} {unit}"
            );
            assert!(
                g.candidates().windows(2).all(|w| w[0] < w[1]),
                "{lo} {hi} {unit}"
            );
            assert_eq!(g.candidates()[0], lo);
            let top = *g.candidates().last().unwrap();
            assert!(top <= hi && hi - top < g.step(), "{lo} {hi} {unit}: {top}");
            // The engine snaps a value to index round((x − lo) / step), at most len − 1:
            // every candidate snaps to itself.
            for (i, c) in g.candidates().iter().enumerate() {
                let index = (((c - lo) / g.step()).round() as usize).min(g.len() - 1);
                assert_eq!(index, i, "{lo} {hi} {unit}: candidate {c}");
            }
        }
        for (lo, hi, unit) in [
            (1.0, 1.0, 1.0),
            (2.0, 1.0, 1.0),
            (0.0, f64::INFINITY, 1.0),
            (0.0, 1.0, 0.0),
            (0.0, 1.0, f64::NAN),
            // The span overflows; the steps cannot be told apart at this magnitude.
            (-1e308, 1e308, 1e9),
            (1e16, 1e16 + 100.0, 1.0),
        ] {
            assert!(Grid::new(lo, hi, unit).is_err(), "{lo} {hi} {unit}");
        }
    }

    #[test]
    fn a_quantiles_charge_is_its_per_group_epsilon_times_l0() {
        let m = median(11, 3, 0.25);
        let item = m.charge_item("median(x)", 4);
        assert_eq!(item.mechanism, MechanismKind::ExponentialQuantile);
        assert_eq!((item.epsilon, item.delta, item.max_groups), (1.0, 0.0, 4));
        assert_eq!(item.per_group_sensitivity, 3);
        assert_eq!(item.scale, m.scale());
    }
}
