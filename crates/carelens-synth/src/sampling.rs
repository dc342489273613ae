//! Small sampling helpers shared by the generators: Poisson counts, days in a period,
//! weighted choices and age curves.

use rand::RngExt;
use rand_distr::{Distribution, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::calendar::{WINTER_AMPLITUDE, winter_weight};

/// The generator's random source: fast, seedable, and stable across `rand` releases.
pub type SynthRng = Xoshiro256PlusPlus;

/// Midpoints of the age bands that rate tables are given for:
/// 0-17, 18-39, 40-64, 65-74, 75-84, 85+.
const BAND_MIDPOINTS: [f64; 6] = [9.0, 29.0, 52.0, 70.0, 80.0, 90.0];

/// A rate given per age band, interpolated linearly between band midpoints so that it
/// rises smoothly with age instead of jumping at band edges.
pub fn by_age(rates: &[f64; 6], age: u32) -> f64 {
    let age = f64::from(age);
    if age <= BAND_MIDPOINTS[0] {
        return rates[0];
    }
    for i in 1..6 {
        if age <= BAND_MIDPOINTS[i] {
            let t = (age - BAND_MIDPOINTS[i - 1]) / (BAND_MIDPOINTS[i] - BAND_MIDPOINTS[i - 1]);
            return rates[i - 1] + t * (rates[i] - rates[i - 1]);
        }
    }
    rates[5]
}

/// A Poisson count with mean `lambda` (zero for a non-positive or non-finite mean).
pub fn poisson(rng: &mut SynthRng, lambda: f64) -> u32 {
    if !(lambda > 0.0 && lambda.is_finite()) {
        return 0;
    }
    if lambda < 30.0 {
        // Knuth's multiplication method: exact, and fast for the small means used here.
        let limit = (-lambda).exp();
        let mut product: f64 = rng.random();
        let mut count = 0;
        while product > limit {
            product *= rng.random::<f64>();
            count += 1;
        }
        return count;
    }
    match Poisson::new(lambda) {
        Ok(p) => p.sample(rng) as u32,
        Err(_) => 0,
    }
}

/// A day drawn uniformly from `[first, last]` (both included).
pub fn day_between(rng: &mut SynthRng, first: i32, last: i32) -> i32 {
    if last <= first {
        first
    } else {
        rng.random_range(first..=last)
    }
}

/// A day in `[first, last]`, more likely in winter (urgent care's seasonal peak).
pub fn winter_day_between(rng: &mut SynthRng, first: i32, last: i32) -> i32 {
    loop {
        let day = day_between(rng, first, last);
        if rng.random::<f64>() * (1.0 + WINTER_AMPLITUDE) <= winter_weight(day) {
            return day;
        }
    }
}

/// An index drawn with probability proportional to `weights` (cumulative, ascending).
pub fn pick_cumulative(rng: &mut SynthRng, cumulative: &[f64]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

/// Running sums of `weights`, for [`pick_cumulative`].
pub fn cumulative(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut total = 0.0;
    weights
        .into_iter()
        .map(|w| {
            total += w;
            total
        })
        .collect()
}

/// One of `items`, uniformly.
pub fn pick<T: Copy>(rng: &mut SynthRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// The deprivation multiplier `exp(strength * (5.5 - decile) / 4.5)`: `e^strength` in the
/// most deprived decile, `e^-strength` in the least.
pub fn deprivation(strength: f64, imd_decile: u8) -> f64 {
    (strength * (5.5 - f64::from(imd_decile)) / 4.5).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn poisson_mean_and_variance_match() {
        let mut rng = SynthRng::seed_from_u64(1);
        for lambda in [0.3, 4.0, 45.0] {
            let n = 200_000;
            let draws: Vec<f64> = (0..n)
                .map(|_| f64::from(poisson(&mut rng, lambda)))
                .collect();
            let mean = draws.iter().sum::<f64>() / n as f64;
            let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            // Standard error of the mean is sqrt(lambda / n); allow 6 of them.
            let tolerance = 6.0 * (lambda / n as f64).sqrt();
            assert!((mean - lambda).abs() < tolerance, "{lambda}: mean {mean}");
            assert!(
                (var / lambda - 1.0).abs() < 0.05,
                "{lambda}: variance {var}"
            );
        }
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }

    #[test]
    fn age_curve_interpolates_between_bands() {
        let rates = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(by_age(&rates, 0), 0.0);
        assert_eq!(by_age(&rates, 29), 1.0);
        assert!((by_age(&rates, 75) - 3.5).abs() < 1e-12);
        assert_eq!(by_age(&rates, 104), 5.0);
    }

    #[test]
    fn cumulative_pick_follows_weights() {
        let mut rng = SynthRng::seed_from_u64(2);
        let cum = cumulative([1.0, 0.0, 3.0]);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[pick_cumulative(&mut rng, &cum)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }
}
