//! Calibrating one release: how its (ε, δ) is composed from its mechanisms.
//!
//! A release has one mechanism on the per-group person counts — DP key selection when
//! the group keys are not all public, else noise on the counts of every public group —
//! and one noise mechanism per noisy part (an aggregate's bounded sum or count). Under
//! basic composition ([`crate::budget`]) the release's ε is split equally over all of
//! them ([`split_epsilon`]); its δ over those that need one ([`split_delta`]): key
//! selection, and every mechanism under Gaussian noise. The engine only describes the
//! release's shape; every share, scale and threshold is decided here.

use crate::accuracy::NoiseDistribution;
use crate::budget::{PrivacyCharge, split_delta, split_epsilon};
use crate::key_selection::KeySelection;
use crate::noise::{MechanismError, NoiseKind, NoiseMechanism, Sensitivity};
use crate::params::{Delta, Epsilon, ParamError};

/// What a release is made of, as calibration needs it.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseShape<'a> {
    /// The noise the policy asks for.
    pub noise: NoiseKind,
    /// Whether every group key has a public domain (then every group is released and
    /// person counts get plain noise); otherwise groups are chosen by key selection.
    pub public_keys: bool,
    /// L0: the groups one person may count in.
    pub max_groups: u32,
    /// Per noisy part, the most one person changes one group's value, in the part's
    /// integer units (at least 1).
    pub parts: &'a [u64],
}

/// The calibrated mechanisms of one release.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Key selection on person counts, or `None` when the keys are public.
    pub key_selection: Option<KeySelection>,
    /// Noise on person counts when the keys are public.
    pub persons: Option<NoiseMechanism>,
    /// Noise per part, in the order of [`ReleaseShape::parts`].
    pub parts: Vec<NoiseMechanism>,
}

/// Why a release cannot be calibrated.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// ε or δ cannot be split over this many mechanisms.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A mechanism cannot be calibrated at its share.
    #[error(transparent)]
    Mechanism(#[from] MechanismError),
}

/// Calibrates every mechanism of a release of `shape` so that together they are
/// (`epsilon`, `delta`)-DP under basic composition.
pub fn calibrate(
    shape: &ReleaseShape<'_>,
    epsilon: Epsilon,
    delta: Delta,
) -> Result<Calibration, CalibrationError> {
    // Mechanism 0 is on the person counts, then one per part.
    let n = shape.parts.len() + 1;
    let epsilons: Vec<Epsilon> = split_epsilon(epsilon, &vec![1.0; n])?
        .into_iter()
        .map(|share| {
            share.ok_or(ParamError::BadWeights {
                weights: vec![1.0; n],
            })
        })
        .collect::<Result<_, _>>()?;
    let needs_delta = |i: usize| {
        let key_selection = i == 0 && !shape.public_keys;
        key_selection || shape.noise == NoiseKind::Gaussian
    };
    let delta_weights: Vec<f64> = (0..n)
        .map(|i| f64::from(u8::from(needs_delta(i))))
        .collect();
    let deltas = if delta_weights.iter().any(|w| *w > 0.0) {
        split_delta(delta, &delta_weights)?
    } else {
        vec![Delta::ZERO; n]
    };
    let (key_selection, persons) = if shape.public_keys {
        let sensitivity = Sensitivity {
            max_groups: shape.max_groups,
            per_group: 1,
        };
        let persons = NoiseMechanism::calibrate(shape.noise, sensitivity, epsilons[0], deltas[0])?;
        (None, Some(persons))
    } else {
        let selection = KeySelection::calibrate(epsilons[0], deltas[0], shape.max_groups)?;
        (Some(selection), None)
    };
    let parts = shape
        .parts
        .iter()
        .enumerate()
        .map(|(i, per_group)| {
            let sensitivity = Sensitivity {
                max_groups: shape.max_groups,
                per_group: (*per_group).max(1),
            };
            NoiseMechanism::calibrate(shape.noise, sensitivity, epsilons[i + 1], deltas[i + 1])
        })
        .collect::<Result<_, _>>()?;
    Ok(Calibration {
        key_selection,
        persons,
        parts,
    })
}

impl Calibration {
    /// The release's privacy charge: one item per mechanism, the parts labelled by
    /// `part_labels` (in order).
    pub fn charge(&self, part_labels: impl IntoIterator<Item = String>) -> PrivacyCharge {
        let mut items = Vec::new();
        if let Some(k) = &self.key_selection {
            items.push(k.charge_item());
        }
        if let Some(p) = &self.persons {
            items.push(p.charge_item("distinct persons per group"));
        }
        for (m, label) in self.parts.iter().zip(part_labels) {
            items.push(m.charge_item(label));
        }
        PrivacyCharge::new(items)
    }

    /// The noise on the per-group person counts.
    pub fn persons_distribution(&self) -> NoiseDistribution {
        match (&self.key_selection, &self.persons) {
            (Some(k), _) => k.distribution(),
            (None, Some(p)) => p.distribution(),
            (None, None) => NoiseDistribution::DiscreteLaplace { scale: 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(shape: &ReleaseShape<'_>, epsilon: f64, delta: f64) -> PrivacyCharge {
        let labels = (0..shape.parts.len()).map(|i| format!("part {i}"));
        calibrate(
            shape,
            Epsilon::new(epsilon).unwrap(),
            Delta::new(delta).unwrap(),
        )
        .unwrap()
        .charge(labels)
    }

    #[test]
    fn a_release_costs_at_most_its_epsilon_and_delta_split_over_what_needs_them() {
        for (noise, public_keys) in [
            (NoiseKind::Laplace, true),
            (NoiseKind::Laplace, false),
            (NoiseKind::Gaussian, true),
            (NoiseKind::Gaussian, false),
        ] {
            for parts in [&[][..], &[1], &[3, 100, 1]] {
                let shape = ReleaseShape {
                    noise,
                    public_keys,
                    max_groups: 3,
                    parts,
                };
                let c = charge(&shape, 0.7, 1e-6);
                let what = format!("{noise:?}, public keys {public_keys}, parts {parts:?}");
                assert_eq!(c.items().len(), parts.len() + 1, "{what}");
                assert!(
                    c.epsilon() <= 0.7 && c.epsilon() > 0.7 * (1.0 - 1e-12),
                    "{what}"
                );
                assert!(c.delta() <= 1e-6, "{what}");
                let first = c.items()[0].epsilon;
                assert!(
                    c.items().iter().all(|i| (i.epsilon - first).abs() < 1e-15),
                    "equal ε shares: {what}"
                );
                // δ only where needed: key selection, and everything under Gaussian noise.
                for (i, item) in c.items().iter().enumerate() {
                    let needs = (i == 0 && !public_keys) || noise == NoiseKind::Gaussian;
                    assert_eq!(item.delta > 0.0, needs, "item {i}: {what}");
                }
                if !public_keys || noise == NoiseKind::Gaussian {
                    assert!(c.delta() > 1e-6 * (1.0 - 1e-12), "{what}");
                } else {
                    assert_eq!(c.delta(), 0.0, "{what}");
                }
            }
        }
    }

    #[test]
    fn a_part_with_a_wider_sensitivity_gets_proportionally_more_noise() {
        let shape = ReleaseShape {
            noise: NoiseKind::Laplace,
            public_keys: true,
            max_groups: 1,
            parts: &[1, 10],
        };
        let c = charge(&shape, 1.0, 0.0);
        let (narrow, wide) = (c.items()[1].scale, c.items()[2].scale);
        assert!((wide / narrow - 10.0).abs() < 1e-9, "{narrow} vs {wide}");
    }
}
