//! Statistical tests of the mechanisms: they draw from the real (OpenSSL-seeded) samplers,
//! so every threshold is set so that a false failure has probability below about 1e-6,
//! and each check is shown to fail on a deliberately broken mechanism.

use std::collections::BTreeMap;

use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::make_laplace;
use opendp::measures::MaxDivergence;
use opendp::metrics::L1Distance;

use crate::{
    Alpha, Delta, Epsilon, KeySelection, NoiseDistribution, NoiseKind, NoiseMechanism,
    QuantileMechanism, QuantileRelease, Sensitivity,
};

/// z-score used for every one-sided check: P(N(0,1) > 5) ≈ 2.9e-7.
const Z: f64 = 5.0;

const DRAWS: usize = 100_000;

fn histogram(draws: &[i64]) -> BTreeMap<i64, u64> {
    let mut h = BTreeMap::new();
    for &d in draws {
        *h.entry(d).or_insert(0) += 1;
    }
    h
}

/// Noise draws from the carelens count mechanism (sensitivity 1) at `scale`, centred.
fn count_noise(kind: NoiseKind, scale: f64, n: usize) -> Vec<i64> {
    let sens = Sensitivity {
        max_groups: 1,
        per_group: 1,
    };
    let m = match kind {
        NoiseKind::Laplace => NoiseMechanism::laplace(sens, Epsilon::new(1.0 / scale).unwrap()),
        NoiseKind::Gaussian => {
            NoiseMechanism::gaussian(sens, Epsilon::new(1.0).unwrap(), Delta::new(1e-6).unwrap())
        }
    }
    .unwrap();
    const C: i64 = 1_000;
    m.release(&vec![C; n])
        .unwrap()
        .into_iter()
        .map(|v| v.value() - C)
        .collect()
}

/// Draws straight from opendp's discrete Laplace at any scale, bypassing carelens'
/// calibration: the way to build a broken mechanism for the tests.
fn raw_laplace(scale: f64, centre: i64, n: usize) -> Vec<i64> {
    let m = make_laplace::<_, _, MaxDivergence>(
        VectorDomain::new(AtomDomain::<i64>::default()),
        L1Distance::<i64>::default(),
        scale,
        None,
    )
    .unwrap();
    m.invoke(&vec![centre; n]).unwrap()
}

fn laplace_pmf(scale: f64) -> impl Fn(i64) -> f64 {
    let q = (-1.0 / scale).exp();
    move |z| (1.0 - q) / (1.0 + q) * q.powf(z.unsigned_abs() as f64)
}

fn gaussian_pmf(sigma: f64) -> impl Fn(i64) -> f64 {
    let kernel = move |z: i64| (-(z as f64).powi(2) / (2.0 * sigma * sigma)).exp();
    let reach = (sigma * 40.0).ceil() as i64 + 10;
    let norm: f64 = (-reach..=reach).map(kernel).sum();
    move |z| kernel(z) / norm
}

/// Upper `Z`-sigma quantile of χ² with `df` degrees of freedom (Wilson–Hilferty).
fn chi2_critical(df: usize, z: f64) -> f64 {
    let k = df as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + z * a.sqrt()).powi(3)
}

/// Pearson's χ² of `draws` against `pmf`, with the tails pooled so that every bin expects
/// at least 20 draws. Returns (statistic, degrees of freedom).
fn chi_squared(draws: &[i64], pmf: &dyn Fn(i64) -> f64) -> (f64, usize) {
    let n = draws.len() as f64;
    let h = histogram(draws);
    // The central range where each value expects >= 20 draws.
    let mut k = 0i64;
    while pmf(k + 1) * n >= 20.0 {
        k += 1;
    }
    let count = |z: i64| *h.get(&z).unwrap_or(&0) as f64;
    let mut stat = 0.0;
    let mut bins = 0;
    let mut central_mass = 0.0;
    for z in -k..=k {
        let e = pmf(z) * n;
        central_mass += pmf(z);
        stat += (count(z) - e).powi(2) / e;
        bins += 1;
    }
    // Two tails, symmetric: each has (1 - central) / 2.
    let tail_e = (1.0 - central_mass) / 2.0 * n;
    let lower: f64 = h.range(..-k).map(|(_, c)| *c as f64).sum();
    let upper: f64 = h.range(k + 1..).map(|(_, c)| *c as f64).sum();
    if tail_e > 0.0 {
        stat += (lower - tail_e).powi(2) / tail_e + (upper - tail_e).powi(2) / tail_e;
        bins += 2;
    }
    (stat, bins - 1)
}

/// Whether `draws` fit `pmf` at the χ² critical value of z-score `z` (Wilson–Hilferty).
fn fits(draws: &[i64], pmf: &dyn Fn(i64) -> f64, z: f64) -> Result<(), String> {
    let (stat, df) = chi_squared(draws, pmf);
    chi2_within(stat, df, z)
}

/// Whether a χ² statistic with `df` degrees of freedom is within the critical value at
/// z-score `z`.
fn chi2_within(stat: f64, df: usize, z: f64) -> Result<(), String> {
    let critical = chi2_critical(df, z);
    if stat <= critical {
        Ok(())
    } else {
        Err(format!("chi2 = {stat:.1} > {critical:.1} with {df} df"))
    }
}

#[test]
fn count_mechanism_matches_the_discrete_laplace_pmf() {
    // Four tests in one: at z 5 each would fail falsely about 2.5e-7 of the time, 1e-6
    // together; at 5.5 about 2e-8 each. A scale 15% too narrow is still far beyond it.
    for scale in [0.7, 2.0, 10.0, 45.0] {
        let draws = count_noise(NoiseKind::Laplace, scale, DRAWS);
        fits(&draws, &laplace_pmf(scale), 5.5).unwrap_or_else(|e| panic!("scale {scale}: {e}"));
    }
}

#[test]
fn gaussian_mechanism_matches_the_discrete_gaussian_pmf() {
    let sens = Sensitivity {
        max_groups: 1,
        per_group: 1,
    };
    let m = NoiseMechanism::gaussian(sens, Epsilon::new(1.0).unwrap(), Delta::new(1e-6).unwrap())
        .unwrap();
    let draws = count_noise(NoiseKind::Gaussian, 0.0, DRAWS);
    fits(&draws, &gaussian_pmf(m.scale()), Z).unwrap_or_else(|e| panic!("σ {}: {e}", m.scale()));
}

#[test]
fn goodness_of_fit_rejects_the_wrong_scale() {
    // The same test must fail when the noise is 15% narrower than claimed.
    let draws = raw_laplace(2.0 * 0.85, 0, DRAWS);
    assert!(
        fits(&draws, &laplace_pmf(2.0), Z).is_err(),
        "a 15% scale error went unnoticed"
    );
}

#[test]
fn intervals_cover_at_least_their_confidence() {
    for (kind, scale) in [
        (NoiseKind::Laplace, 3.0),
        (NoiseKind::Laplace, 25.0),
        (NoiseKind::Gaussian, 0.0),
    ] {
        let draws = count_noise(kind, scale, DRAWS);
        let distribution = match kind {
            NoiseKind::Laplace => NoiseDistribution::DiscreteLaplace { scale },
            NoiseKind::Gaussian => {
                let sens = Sensitivity {
                    max_groups: 1,
                    per_group: 1,
                };
                NoiseMechanism::gaussian(
                    sens,
                    Epsilon::new(1.0).unwrap(),
                    Delta::new(1e-6).unwrap(),
                )
                .unwrap()
                .distribution()
            }
        };
        for alpha in [0.05, 0.01] {
            let h = distribution.half_width(Alpha::new(alpha).unwrap()).unwrap() as i64;
            let inside = draws.iter().filter(|z| z.abs() <= h).count() as f64 / DRAWS as f64;
            let se = (alpha * (1.0 - alpha) / DRAWS as f64).sqrt();
            assert!(
                inside >= 1.0 - alpha - Z * se,
                "{kind:?} α={alpha}: coverage {inside}"
            );
        }
    }
}

/// z-score for the per-bin privacy check: with Bonferroni over at most ~100 bins per
/// comparison, a false failure has probability below 1e-7.
const Z_BIN: f64 = 6.0;

/// The largest excess, in standard errors, of an empirical log-likelihood ratio between
/// the outputs on two neighbouring inputs over ε, across the output values that both
/// samples hit at least 1,000 times (where the log of a count is close to normal with
/// variance 1/count). A correct ε-DP mechanism has every true ratio within e^±ε.
fn worst_privacy_excess(a: &[i64], b: &[i64], epsilon: f64) -> f64 {
    let (ha, hb) = (histogram(a), histogram(b));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let mut worst = f64::NEG_INFINITY;
    for (value, &ca) in &ha {
        let Some(&cb) = hb.get(value) else { continue };
        if ca < 1_000 || cb < 1_000 {
            continue;
        }
        let (ca, cb) = (ca as f64, cb as f64);
        let log_ratio = ((ca / na) / (cb / nb)).ln().abs();
        let se = (1.0 / ca + 1.0 / cb).sqrt();
        worst = worst.max((log_ratio - epsilon) / se);
    }
    worst
}

#[test]
fn empirical_privacy_loss_is_within_epsilon() {
    // Counts (sensitivity 1) and a fixed-point sum (sensitivity 3).
    for (per_group, epsilon) in [(1u64, 1.0), (3, 1.0), (1, 0.3)] {
        let sens = Sensitivity {
            max_groups: 1,
            per_group,
        };
        let m = NoiseMechanism::laplace(sens, Epsilon::new(epsilon).unwrap()).unwrap();
        let c = 200i64;
        let values =
            |noisy: Vec<crate::Noisy>| noisy.into_iter().map(|v| v.value()).collect::<Vec<_>>();
        let a = values(m.release(&vec![c; 2 * DRAWS]).unwrap());
        let b = values(m.release(&vec![c + per_group as i64; 2 * DRAWS]).unwrap());
        let excess = worst_privacy_excess(&a, &b, epsilon);
        // Per bin, the true |log ratio| is exactly ε for discrete Laplace, so each of the
        // ~20 bins' excess is about N(0, 1): at Z (5) together they fail 1.3e-5 of the
        // time, at Z_BIN 4.5e-8; 20% too little noise is ~39 standard errors.
        assert!(
            excess <= Z_BIN,
            "Δ={per_group} ε={epsilon}: excess {excess:.1} standard errors"
        );
    }
}

#[test]
fn empirical_privacy_check_catches_a_mechanism_with_too_little_noise() {
    let epsilon = 1.0;
    let c = 200i64;
    // Half the noise: the true loss is 2ε.
    let a = raw_laplace(0.5 / epsilon, c, 2 * DRAWS);
    let b = raw_laplace(0.5 / epsilon, c + 1, 2 * DRAWS);
    let excess = worst_privacy_excess(&a, &b, epsilon);
    assert!(excess > Z_BIN, "half the noise went unnoticed: {excess:.1}");
    // Even 20% too little noise (true loss 1.25ε) is caught.
    let a = raw_laplace(0.8 / epsilon, c, 2 * DRAWS);
    let b = raw_laplace(0.8 / epsilon, c + 1, 2 * DRAWS);
    let excess = worst_privacy_excess(&a, &b, epsilon);
    assert!(
        excess > Z,
        "20% too little noise went unnoticed: {excess:.1}"
    );
}

/// Release rate of one-person keys: `trials` people, each alone in `max_groups` groups;
/// returns (people with any key released, the most δ allows plus Z standard errors).
fn one_person_leaks(ks: &KeySelection, max_groups: u32, delta: f64, trials: usize) -> (f64, f64) {
    let counts = vec![1i64; trials * max_groups as usize];
    let selected = ks.select(&counts).unwrap();
    let leaked = selected
        .chunks(max_groups as usize)
        .filter(|person| person.iter().any(Option::is_some))
        .count() as f64;
    let expected_max = delta * trials as f64;
    (leaked, expected_max + Z * expected_max.sqrt())
}

#[test]
fn a_one_person_key_is_released_no_more_often_than_delta_allows() {
    // δ large enough for the rate to be measured; (ε, δ, L0) chosen so that the threshold
    // one lower would leak clearly more than δ (checked by the next test).
    for (epsilon, delta, max_groups, trials) in
        [(1.0, 1e-3, 1u32, 200_000), (3.0, 1e-2, 3, 100_000)]
    {
        let ks = KeySelection::calibrate(
            Epsilon::new(epsilon).unwrap(),
            Delta::new(delta).unwrap(),
            max_groups,
        )
        .unwrap();
        let (leaked, limit) = one_person_leaks(&ks, max_groups, delta, trials);
        assert!(
            leaked <= limit,
            "L0={max_groups}: {leaked} of {trials} one-person keys released (δ allows {limit:.0})"
        );
    }
}

#[test]
fn release_rate_check_catches_a_threshold_one_too_low_with_several_groups() {
    // For L0 = 3 at ε = 3, δ = 1e-2 the scale is 1 and τ − 1 leaks e ≈ 2.7 times as often;
    // the same check must fail on it.
    let (epsilon, delta, max_groups, trials) = (3.0, 1e-2, 3u32, 100_000usize);
    let ks = KeySelection::calibrate(
        Epsilon::new(epsilon).unwrap(),
        Delta::new(delta).unwrap(),
        max_groups,
    )
    .unwrap();
    let too_low = ks.threshold() - 1;
    let noisy = raw_laplace(ks.scale(), 1, trials * max_groups as usize);
    let leaked = noisy
        .chunks(max_groups as usize)
        .filter(|person| person.iter().any(|&v| v >= too_low))
        .count() as f64;
    let expected_max = delta * trials as f64;
    let limit = expected_max + Z * expected_max.sqrt();
    assert!(
        leaked > limit,
        "τ − 1 went unnoticed for L0 = 3: {leaked} ≤ {limit:.0}"
    );
}

#[test]
fn key_selection_check_catches_the_threshold_opendp_alone_would_choose() {
    // opendp 0.16's map leaves out the mass at τ (issue #2922) and so accepts τ − 1 for
    // these parameters; at τ − 1 a one-person key leaks with probability P(Z ≥ 6) ≈ 1.8δ,
    // which the same check must catch (400,000 trials: missing it is an 8σ event). This is how the bug was found.
    let epsilon = Epsilon::new(1.0).unwrap();
    let delta = 1e-3;
    let ks = KeySelection::calibrate(epsilon, Delta::new(delta).unwrap(), 1).unwrap();
    assert_eq!(ks.threshold(), 8);
    let trials = 400_000usize;
    let too_low = ks.threshold() - 1;
    let noisy = raw_laplace(ks.scale(), 1, trials);
    let leaked = noisy.iter().filter(|&&v| v >= too_low).count() as f64;
    let expected_max = delta * trials as f64;
    assert!(
        leaked > expected_max + Z * expected_max.sqrt(),
        "τ − 1 went unnoticed: {leaked}"
    );
}

#[test]
fn a_large_key_is_always_released() {
    let ks =
        KeySelection::calibrate(Epsilon::new(1.0).unwrap(), Delta::new(1e-6).unwrap(), 2).unwrap();
    // 40 noise scales above τ: missing one has probability about e^-40 per key.
    let big = ks.threshold() + (40.0 * ks.scale()).ceil() as i64;
    let selected = ks.select(&vec![big; DRAWS]).unwrap();
    assert!(selected.iter().all(Option::is_some));
}

/// A median over candidates 0..5 with `k` values per person, and two neighbouring
/// histograms: `base`, and `base` plus one person's `k` values on the lowest candidate
/// (which moves the scores of candidates below the median down and those above it up —
/// the direction that uses the whole 2Δ/scale of the privacy map).
fn quantile_neighbours(k: u32) -> (QuantileMechanism, Vec<u64>, Vec<u64>) {
    let m = QuantileMechanism::new(
        (0..5).map(f64::from).collect(),
        0.5,
        k,
        Epsilon::new(1.0).unwrap(),
    )
    .unwrap();
    let base = vec![0, 2, 1, 2, 0];
    let mut neighbour = base.clone();
    neighbour[0] += u64::from(k);
    (m, base, neighbour)
}

fn as_i64(indices: Vec<usize>) -> Vec<i64> {
    indices.into_iter().map(|i| i as i64).collect()
}

#[test]
fn quantile_privacy_loss_is_within_epsilon() {
    for k in [1, 2] {
        let (m, base, neighbour) = quantile_neighbours(k);
        let a = as_i64(m.release_indices(&base, 2 * DRAWS).unwrap());
        let b = as_i64(m.release_indices(&neighbour, 2 * DRAWS).unwrap());
        let excess = worst_privacy_excess(&a, &b, m.epsilon().value());
        assert!(excess <= Z_BIN, "k={k}: excess {excess:.1} standard errors");
    }
}

#[test]
fn quantile_privacy_check_catches_half_the_noise() {
    let (m, base, neighbour) = quantile_neighbours(1);
    let broken = m.with_scale_times(0.5);
    let a = as_i64(broken.release_indices(&base, 2 * DRAWS).unwrap());
    let b = as_i64(broken.release_indices(&neighbour, 2 * DRAWS).unwrap());
    let excess = worst_privacy_excess(&a, &b, m.epsilon().value());
    assert!(excess > Z_BIN, "half the noise went unnoticed: {excess:.1}");
}

/// The exact output distribution of permute-and-flip over `scores` (lower is better) at
/// `scale`: P(r) = p_r ∫₀¹ Π_{j≠r} (1 − t·p_j) dt with p_j = exp(−(s_j − s_min)/scale)
/// (each candidate's turn a uniform time t; McKenna & Sheldon 2020), by Simpson's rule.
fn permute_and_flip_pmf(scores: &[u64], scale: f64) -> Vec<f64> {
    let best = *scores.iter().min().unwrap();
    let p: Vec<f64> = scores
        .iter()
        .map(|&s| (-((s - best) as f64) / scale).exp())
        .collect();
    const STEPS: usize = 2_000;
    (0..p.len())
        .map(|r| {
            let f = |t: f64| {
                p.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != r)
                    .map(|(_, pj)| 1.0 - t * pj)
                    .product::<f64>()
            };
            let h = 1.0 / STEPS as f64;
            let inner: f64 = (1..STEPS)
                .map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h))
                .sum();
            p[r] * h / 3.0 * (f(0.0) + inner + f(1.0))
        })
        .collect()
}

/// Pearson's χ² of `draws` (candidate indices) against `pmf`, and whether it is within the
/// critical value at `Z` for `pmf.len() − 1` degrees of freedom.
fn fits_indices(draws: &[usize], pmf: &[f64]) -> Result<(), String> {
    let n = draws.len() as f64;
    let mut observed = vec![0f64; pmf.len()];
    for &d in draws {
        observed[d] += 1.0;
    }
    let stat: f64 = observed
        .iter()
        .zip(pmf)
        .map(|(o, p)| (o - p * n).powi(2) / (p * n))
        .sum();
    chi2_within(stat, pmf.len() - 1, Z)
}

#[test]
fn quantile_releases_follow_the_exact_permute_and_flip_distribution() {
    // Every probability of the five candidates is at least ~5%, so each bin expects
    // thousands of the 100,000 draws.
    let (m, base, _) = quantile_neighbours(1);
    let scores = m.scores(&base).unwrap();
    let pmf = permute_and_flip_pmf(&scores, m.scale());
    assert!((pmf.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{pmf:?}");
    let draws = m.release_indices(&base, DRAWS).unwrap();
    fits_indices(&draws, &pmf).unwrap();
    // The same check fails on a mechanism with 20% less noise than claimed.
    let broken = m
        .with_scale_times(0.8)
        .release_indices(&base, DRAWS)
        .unwrap();
    assert!(
        fits_indices(&broken, &pmf).is_err(),
        "20% too little noise went unnoticed"
    );
}

/// The share of `releases` whose score exceeds the best candidate's by more than the
/// mechanism's 95% bound.
fn quantile_misses(m: &QuantileMechanism, claimed: &QuantileMechanism, counts: &[u64]) -> f64 {
    const RELEASES: usize = 20_000;
    let scores = claimed.scores(counts).unwrap();
    let best = *scores.iter().min().unwrap() as f64;
    let bound = claimed.score_error(0.05);
    let released = m.release_indices(counts, RELEASES).unwrap();
    let misses = released
        .iter()
        .filter(|&&i| scores[i] as f64 - best > bound)
        .count();
    misses as f64 / RELEASES as f64
}

/// About 8,500 values over 60 candidates, most of them low (skewed like lengths of stay).
fn skewed_counts() -> Vec<u64> {
    (0..60u64).map(|i| 60 * (60 - i) / (i + 3)).collect()
}

/// 600 values, 10 on each of 60 candidates: scores rise slowly away from the quantile, so
/// the noise decides more than with skewed data.
fn uniform_counts() -> Vec<u64> {
    vec![10; 60]
}

#[test]
fn quantile_error_bound_covers_at_least_95_percent() {
    // The bound is a tail bound (usually loose): a miss rate above 5% + Z standard errors
    // (20,000 releases) would be an error in it or in the calibration.
    for counts in [skewed_counts(), uniform_counts()] {
        for (alpha, k, epsilon) in [(0.5, 1, 0.1), (0.9, 3, 0.5), (0.1, 1, 1.0)] {
            let m = QuantileMechanism::new(
                (0..60).map(f64::from).collect(),
                alpha,
                k,
                Epsilon::new(epsilon).unwrap(),
            )
            .unwrap();
            let miss = quantile_misses(&m, &m, &counts);
            let limit = 0.05 + Z * (0.05f64 * 0.95 / 20_000.0).sqrt();
            assert!(miss <= limit, "α {alpha} k {k} ε {epsilon}: {miss}");
        }
    }
}

#[test]
fn quantile_error_check_catches_an_understated_scale() {
    // A mechanism with 5 times the noise it claims misses its claimed bound often.
    let m = QuantileMechanism::new(
        (0..60).map(f64::from).collect(),
        0.5,
        1,
        Epsilon::new(0.1).unwrap(),
    )
    .unwrap();
    let miss = quantile_misses(&m.with_scale_times(5.0), &m, &uniform_counts());
    let limit = 0.05 + Z * (0.05f64 * 0.95 / 20_000.0).sqrt();
    assert!(miss > limit, "five times the noise went unnoticed: {miss}");
}

/// The share of `releases` of `q` whose interval (after the engine's ordering: the low end
/// no higher than the value, the high end no lower) holds a candidate whose ranks hold αn.
fn interval_coverage(q: &QuantileRelease, counts: &[u64], releases: usize) -> f64 {
    let n: u64 = counts.iter().sum();
    let alpha = q.value.alpha();
    let candidates = q.value.candidates();
    // The candidates the quantile falls on: b ≤ αn ≤ b + on.
    let mut below = 0u64;
    let mut quantile = Vec::new();
    for (i, &on) in counts.iter().enumerate() {
        let (b, top) = (below as f64, (below + on) as f64);
        if b <= alpha * n as f64 && alpha * n as f64 <= top {
            quantile.push(candidates[i]);
        }
        below += on;
    }
    // The exact count as the lower bound: this checks the ends, given a bound that holds.
    let covered = (0..releases)
        .filter(|_| {
            let (v, l, h) = q.release(counts, n).unwrap();
            let (lo, hi) = (l.min(v), h.max(v));
            quantile.iter().any(|c| lo <= *c && *c <= hi)
        })
        .count();
    covered as f64 / releases as f64
}

#[test]
fn quantile_intervals_cover_at_least_95_percent() {
    // 4,000 releases per case; coverage below 95% − Z standard errors would be an error in
    // the reach or the calibration. One value per candidate is the hardest case (every
    // rank is its own candidate); skewed data ties many values on a few candidates.
    const RELEASES: usize = 4_000;
    let one_each = vec![1u64; 200];
    // 29 values over 200 candidates (every seventh): too few for the noise, so the ends
    // go to the grid's ends (the case that failed before the count's bound).
    let few: Vec<u64> = (0..200u64).map(|i| u64::from(i % 7 == 0)).collect();
    let limit = 0.95 - Z * (0.95f64 * 0.05 / RELEASES as f64).sqrt();
    for (counts, m) in [(one_each, 200), (skewed_counts(), 60), (few, 200)] {
        for (alpha, k, epsilon) in [(0.5, 1, 0.5), (0.9, 2, 1.0), (0.25, 1, 2.0)] {
            let q = QuantileRelease::new(
                (0..m).map(f64::from).collect(),
                alpha,
                k,
                Epsilon::new(epsilon).unwrap(),
            )
            .unwrap();
            let coverage = interval_coverage(&q, &counts, RELEASES);
            assert!(
                coverage >= limit,
                "α {alpha} k {k} ε {epsilon}, {m} candidates: coverage {coverage}"
            );
        }
    }
}

#[test]
fn quantile_interval_check_catches_ends_aimed_at_the_quantile_itself() {
    // Without the reach (both ends aimed at αn) each end falls on either side of the
    // quantile about as often: the interval misses it far more often than 5%.
    const RELEASES: usize = 4_000;
    let one_each = vec![1u64; 200];
    let q = QuantileRelease::new(
        (0..200).map(f64::from).collect(),
        0.5,
        1,
        Epsilon::new(0.5).unwrap(),
    )
    .unwrap();
    let broken = QuantileRelease {
        low: q.low.clone().aimed_at(0),
        high: q.high.clone().aimed_at(0),
        ..q
    };
    let coverage = interval_coverage(&broken, &one_each, RELEASES);
    let limit = 0.95 - Z * (0.95f64 * 0.05 / RELEASES as f64).sqrt();
    assert!(
        coverage < limit,
        "ends without reach went unnoticed: {coverage}"
    );
}
