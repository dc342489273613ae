//! DP key selection: which group keys may appear in a release when the keys themselves
//! are not public.
//!
//! A key that only one person has (a rare code, a street) would reveal that person just by
//! appearing in the output. Each key's distinct-person count gets discrete Laplace noise,
//! and the key is released only if the noisy count reaches a threshold τ (Korolova et al.
//! 2009; Wilson et al., "Differentially Private SQL with Bounded User Contribution", 2020;
//! Desfontaines et al., "Differentially private partition selection", 2022 — Google's
//! partition-selection paper, for why a threshold on a noisy count is near-optimal).
//!
//! **Guarantee.** After contribution bounding one person is in at most `L0` groups and adds
//! at most 1 to each group's distinct-person count. opendp's `make_laplace_threshold`
//! privacy map (Rogers 2023) gives the (ε, δ) of releasing the noisy counts above τ for
//! `(L0, L1 = L0, L∞ = 1)`: ε = L0 / scale, and δ bounds the probability that a key
//! present only because of one person crosses τ (over all `L0` of their groups). Here the
//! scale is set from ε and τ is the smallest integer at which that map gives at most δ.
//!
//! The noisy person counts of the released keys are themselves DP outputs: the engine uses
//! them for suppression, so suppression never looks at a true count.

use std::collections::HashMap;

use opendp::domains::{AtomDomain, MapDomain};
use opendp::measurements::make_laplace_threshold;
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L01InfDistance};
use serde::Serialize;

use crate::accuracy::NoiseDistribution;
use crate::budget::{ChargeItem, MechanismKind};
use crate::noise::{MechanismError, Noisy, check_loss};
use crate::params::{Delta, Epsilon};

/// A calibrated key-selection mechanism: the noise scale and the threshold τ.
///
/// Deliberately not `Deserialize`: it is only ever made by [`KeySelection::calibrate`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeySelection {
    max_groups: u32,
    scale: f64,
    threshold: i64,
    epsilon: Epsilon,
    delta: Delta,
}

type ThresholdMeasurement = opendp::core::Measurement<
    MapDomain<AtomDomain<u64>, AtomDomain<i64>>,
    L01InfDistance<AbsoluteDistance<i64>>,
    Approximate<MaxDivergence>,
    HashMap<u64, i64>,
>;

fn measurement(scale: f64, threshold: i64) -> Result<ThresholdMeasurement, MechanismError> {
    Ok(make_laplace_threshold(
        MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default()),
        L01InfDistance::<AbsoluteDistance<i64>>::default(),
        scale,
        threshold,
        None,
    )?)
}

/// (ε, δ) of the threshold mechanism with threshold τ for one person in up to `l0` groups.
///
/// opendp 0.16's privacy map for `make_laplace_threshold` computes δ as `P(Z > τ − L∞)`,
/// but the mechanism keeps noisy counts *equal to* τ, so a one-person key is released with
/// probability `P(1 + Z ≥ τ) = P(Z > τ − 2)`: the map under-reports δ by the mass at one
/// point (opendp issue #2922, found here by the release-rate test). The true δ at τ is
/// therefore opendp's map at τ − 1, which is what this returns; τ must be at least 2.
fn loss(scale: f64, threshold: i64, l0: u32) -> Result<(f64, f64), MechanismError> {
    let l0_i = i64::from(l0);
    let shifted = threshold
        .checked_sub(1)
        .filter(|t| *t >= 1)
        .ok_or(MechanismError::ThresholdTooLow { threshold })?;
    Ok(measurement(scale, shifted)?.map(&(l0, l0_i, 1))?)
}

/// The largest τ searched for: beyond it the requested δ is unreachable in practice.
const MAX_THRESHOLD: i64 = 1 << 40;

impl KeySelection {
    /// Key selection that is (`epsilon`, `delta`)-DP when each person is in at most
    /// `max_groups` groups. Needs `delta > 0`.
    pub fn calibrate(
        epsilon: Epsilon,
        delta: Delta,
        max_groups: u32,
    ) -> Result<Self, MechanismError> {
        if delta.is_zero() {
            return Err(MechanismError::NeedsDelta {
                what: "key selection (releasing group keys that are not public)",
            });
        }
        if max_groups == 0 {
            return Err(MechanismError::ZeroSensitivity {
                sensitivity: crate::noise::Sensitivity {
                    max_groups,
                    per_group: 1,
                },
            });
        }
        let mut scale = f64::from(max_groups) / epsilon.value();
        // Nudge the scale until opendp's exact map agrees on ε (as for Laplace).
        let mut nudges = 0;
        while loss(scale, MAX_THRESHOLD, max_groups)?.0 > epsilon.value() {
            scale = scale.next_up();
            nudges += 1;
            if nudges > 64 {
                return Err(MechanismError::Uncalibrated {
                    epsilon: epsilon.value(),
                    delta: delta.value(),
                });
            }
        }
        let fits = |tau: i64| -> Result<bool, MechanismError> {
            let (e, d) = loss(scale, tau, max_groups)?;
            Ok(e <= epsilon.value() && d <= delta.value())
        };
        // τ − 1 must be at least L∞ = 1. Grow, then bisect to the smallest τ that fits.
        let mut hi: i64 = 2;
        while !fits(hi)? {
            if hi >= MAX_THRESHOLD {
                return Err(MechanismError::Uncalibrated {
                    epsilon: epsilon.value(),
                    delta: delta.value(),
                });
            }
            hi *= 2;
        }
        let mut lo = hi / 2; // does not fit (or is 1, below the minimum)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(Self {
            max_groups,
            scale,
            threshold: hi,
            epsilon,
            delta,
        })
    }

    /// The threshold τ a noisy person count must reach for its key to be released.
    pub fn threshold(&self) -> i64 {
        self.threshold
    }

    /// The noise scale of the person counts.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The noise on the released person counts, for their intervals.
    pub fn distribution(&self) -> NoiseDistribution {
        NoiseDistribution::DiscreteLaplace { scale: self.scale }
    }

    /// The charge of this part of a release.
    pub fn charge_item(&self) -> ChargeItem {
        ChargeItem {
            label: "key selection (distinct-person count per group)".into(),
            mechanism: MechanismKind::LaplaceThreshold,
            epsilon: self.epsilon.value(),
            delta: self.delta.value(),
            max_groups: self.max_groups,
            per_group_sensitivity: 1,
            scale: self.scale,
            threshold: Some(self.threshold),
            rho: None,
        }
    }

    /// Noisy distinct-person counts for the groups whose exact counts are `person_counts`
    /// (indexed by group); `None` for a group whose key is not released.
    pub fn select(&self, person_counts: &[i64]) -> Result<Vec<Option<Noisy>>, MechanismError> {
        let (e, d) = loss(self.scale, self.threshold, self.max_groups)?;
        let m = measurement(self.scale, self.threshold)?;
        check_loss(e, self.epsilon)?;
        if d > self.delta.value() {
            return Err(MechanismError::Overspend {
                what: "delta",
                actual: d,
                charged: self.delta.value(),
            });
        }
        let input: HashMap<u64, i64> = (0u64..).zip(person_counts.iter().copied()).collect();
        let kept = m.invoke(&input)?;
        Ok((0u64..person_counts.len() as u64)
            .map(|i| kept.get(&i).copied().map(Noisy::new))
            .collect())
    }
}

/// A fresh 128-bit secret from opendp's CSPRNG (OpenSSL), as 32 hex digits.
///
/// The engine keys the hash that orders a person's groups when it keeps at most `L0` of
/// them. Which groups are kept depends only on that person's own rows and this secret, so
/// bounding stays a per-person transformation; the secret keeps the choice from favouring
/// any key an analyst could aim at. It is drawn per query and never shown.
pub fn selection_secret() -> Result<String, MechanismError> {
    random_hex(16)
}

/// `n` fresh random bytes from opendp's CSPRNG (OpenSSL), as `2n` lowercase hex digits:
/// for secrets (the sampling key, API tokens), never for noise.
pub fn random_hex(n: usize) -> Result<String, MechanismError> {
    let mut bytes = vec![0u8; n];
    opendp::traits::samplers::fill_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_secrets_are_fresh_128_bit_hex() {
        let a = selection_secret().unwrap();
        let b = selection_secret().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn threshold_grows_with_l0_and_shrinking_delta() {
        let eps = Epsilon::new(1.0).unwrap();
        let t = |delta: f64, l0| {
            KeySelection::calibrate(eps, Delta::new(delta).unwrap(), l0)
                .unwrap()
                .threshold()
        };
        let base = t(1e-6, 1);
        // For one group, δ ≈ P(1 + Z ≥ τ) ≈ e^{-(τ-1)ε}/2: τ ≈ 1 + ln(1/(2δ))/ε ≈ 14.
        assert!((12..=16).contains(&base), "{base}");
        assert!(t(1e-9, 1) > base);
        assert!(t(1e-6, 4) > base);
    }

    #[test]
    fn calibrated_threshold_is_the_smallest_that_meets_delta() {
        let (eps, delta) = (Epsilon::new(0.5).unwrap(), Delta::new(1e-5).unwrap());
        let ks = KeySelection::calibrate(eps, delta, 3).unwrap();
        let (e, d) = loss(ks.scale(), ks.threshold(), 3).unwrap();
        assert!(e <= 0.5 && d <= 1e-5, "({e}, {d})");
        let (_, d_below) = loss(ks.scale(), ks.threshold() - 1, 3).unwrap();
        assert!(d_below > 1e-5, "τ - 1 also fits: {d_below}");
        let item = ks.charge_item();
        assert_eq!(item.threshold, Some(ks.threshold()));
        assert_eq!(item.mechanism, MechanismKind::LaplaceThreshold);
    }

    /// Regression: opendp#2922 (the map leaves out the mass at τ). For one group the
    /// release probability of a one-person key is exactly `P(Z ≥ τ − 1) = q^(τ−1)/(1+q)`.
    #[test]
    fn one_person_release_probability_is_within_delta_exactly() {
        for (eps, delta) in [(1.0, 1e-3), (0.5, 1e-5), (2.0, 1e-8), (0.1, 1e-6)] {
            let ks =
                KeySelection::calibrate(Epsilon::new(eps).unwrap(), Delta::new(delta).unwrap(), 1)
                    .unwrap();
            let q = (-1.0 / ks.scale()).exp();
            let p_release = q.powf((ks.threshold() - 1) as f64) / (1.0 + q);
            assert!(
                p_release <= delta,
                "ε={eps} δ={delta}: τ={} releases with {p_release}",
                ks.threshold()
            );
            // And τ is not needlessly high: one less would leak more than δ.
            assert!(
                p_release / q > delta,
                "ε={eps} δ={delta}: τ={} is not the smallest",
                ks.threshold()
            );
        }
    }

    #[test]
    fn key_selection_needs_delta() {
        let e = KeySelection::calibrate(Epsilon::new(1.0).unwrap(), Delta::ZERO, 1).unwrap_err();
        assert!(matches!(e, MechanismError::NeedsDelta { .. }));
        assert!(e.to_string().contains("delta"));
    }

    #[test]
    fn select_keeps_the_index_of_each_group() {
        // δ 1e-9: a one-person key crosses τ with probability below 1e-9 (at δ 1e-6 it
        // did 6e-7 of the time, a false failure).
        let ks = KeySelection::calibrate(Epsilon::new(1.0).unwrap(), Delta::new(1e-9).unwrap(), 1)
            .unwrap();
        let counts = [1_000_000, 1, 500_000, 0];
        let out = ks.select(&counts).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[0].is_some_and(|c| (c.value() - 1_000_000).abs() < 100));
        assert!(out[2].is_some_and(|c| (c.value() - 500_000).abs() < 100));
        assert_eq!(out[1], None);
    }
}
