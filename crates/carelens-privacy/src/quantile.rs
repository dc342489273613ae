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
            // Too many values below c for it to be the quantile, or too many above.
            let too_high = (den - num) * b - num * (above + on_c);
            let too_low = num * above - (den - num) * (b + on_c);
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

    /// What opendp's privacy map gives for scores that move by Δ in either direction.
    fn loss(&self) -> Result<f64, QuantileError> {
        Ok(self.measurement()?.map(&self.sensitivity()?)?)
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
}
