//! Calibrating one release: how its (ε, δ) is composed from its mechanisms.
//!
//! A release has one noise mechanism per noisy part (an aggregate's bounded sum or
//! count) and, when something needs them, a mechanism on the per-group person counts: DP
//! key selection when the group keys are not all public, else noise on the counts of
//! every public group. Under basic composition ([`crate::budget`]) the release's ε is
//! split by what each mechanism is for ([`PersonCounts`], [`epsilon_weights`]); its δ over
//! those that need one ([`split_delta`]): key selection, and every mechanism under
//! Gaussian noise. The engine only describes the release's shape; every share, scale and
//! threshold is decided here.
//!
//! ## The split
//!
//! A released cell's relative error is its noise scale over its value:
//! `L0·b_i / (ε_i·v_i)` for a part whose one person changes a group by at most `b_i` and
//! whose group value is `v_i`. Nothing about `v_i` may be read from the data before the
//! release, and the only thing known about it is that it sums the people's contributions,
//! each within `[0, b_i]` in magnitude; taking a typical contribution as the same fraction
//! of its bound for every part (`v_i ∝ n·b_i`), every released part's relative error is
//! proportional to `1/ε_i`, and the sum of their squares under `Σ ε_i = ε` is least when
//! the shares are equal. So every released part — and the person count when the query
//! releases it, or when it chooses the groups (key selection) — gets an equal share.
//!
//! A person count that only decides suppression is never released; its error matters
//! only as a wrong decision for groups near the threshold. When every released part is a
//! count, each count cell is also suppressed on its own noisy value, so the person count
//! only adds the rule "and the group has more than the threshold of people": it gets
//! [`SUPPRESSION_SHARE`] of ε and the counts share the rest. When some released part is a
//! sum or a mean, the person count is the only thing that suppresses that part's cells in
//! small or empty groups, and it keeps an equal share. A person count that nothing uses
//! (public keys, not released, a policy without suppression) has no mechanism and no
//! share — unless the release has no part at all, when it is all there is.

use crate::accuracy::NoiseDistribution;
use crate::budget::{PrivacyCharge, split_delta, split_epsilon};
use crate::key_selection::KeySelection;
use crate::noise::{MechanismError, NoiseKind, NoiseMechanism, Sensitivity};
use crate::params::{Delta, Epsilon, ParamError};
use crate::quantile::{Grid, QuantileError, QuantileRelease};

/// The share of ε a person count gets when it only decides suppression of count cells
/// (which are suppressed on their own noisy values too): a fifth. At ε = 1 and L0 = 1 its
/// discrete Laplace scale is 5, so a group of 30 people is wrongly suppressed with
/// probability below 1% (P(Z ≤ −23) = q²³/(1 + q), q = e^(−1/5)), while the released
/// counts keep four fifths of ε instead of `k/(k + 1)` for `k` of them. The scale grows
/// with L0 and shrinks with ε like every other scale; `explain` shows it.
pub const SUPPRESSION_SHARE: f64 = 0.2;

/// What a release is made of, as calibration needs it.
#[derive(Debug, Clone, Copy)]
pub struct ReleaseShape<'a> {
    /// The noise the policy asks for.
    pub noise: NoiseKind,
    /// Whether every group key has a public domain (then every group is released and
    /// person counts get plain noise); otherwise groups are chosen by key selection.
    pub public_keys: bool,
    /// What the per-group person counts are for when the keys are public.
    pub persons: PersonCounts,
    /// L0: the groups one person may count in.
    pub max_groups: u32,
    /// Per noisy part, the most one person changes one group's value, in the part's
    /// integer units (at least 1).
    pub parts: &'a [u64],
    /// The quantiles released, each in every group (after the parts in the charge).
    pub quantiles: &'a [QuantileShape],
    /// How many of `parts` are counts of a quantile argument's values, which only bound
    /// its intervals' ends and are not released (`explain` says so).
    pub interval_counts: usize,
}

/// One released quantile, as calibration needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileShape {
    /// Its candidates.
    pub grid: Grid,
    /// Which quantile (0.5 for a median).
    pub alpha: f64,
    /// L∞: the most values one person has in one group.
    pub values_per_person: u32,
}

/// What a release does with its per-group person counts, apart from key selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonCounts {
    /// The query releases them (`COUNT(DISTINCT person)`).
    Released,
    /// They only decide which groups are suppressed, and every released part is a count
    /// (suppressed on its own noisy value too).
    SuppressCounts,
    /// They only decide which groups are suppressed, and some released part is a sum or a
    /// mean, whose cells nothing else suppresses.
    SuppressSums,
    /// Nothing uses them: not released, and the policy suppresses nothing.
    Unused,
}

/// What the person-count mechanism of a release is for, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersonsRole {
    /// Key selection: it chooses which groups are released (and decides suppression).
    SelectsGroups,
    /// Released as a column of the result (and decides suppression).
    Released,
    /// Only decides suppression, of groups whose released cells are all counts; never
    /// released. A small share.
    SuppressesCounts,
    /// Only decides suppression, of groups with a released sum or mean; never released.
    /// An equal share.
    SuppressesSums,
}

impl ReleaseShape<'_> {
    /// What the person-count mechanism is for, or `None` when the release has none.
    pub fn persons_role(&self) -> Option<PersonsRole> {
        if !self.public_keys {
            return Some(PersonsRole::SelectsGroups);
        }
        match self.persons {
            PersonCounts::Released => Some(PersonsRole::Released),
            PersonCounts::SuppressCounts => Some(PersonsRole::SuppressesCounts),
            PersonCounts::SuppressSums => Some(PersonsRole::SuppressesSums),
            // A release with no part (`SELECT key … GROUP BY key`): the person count is
            // all there is to calibrate, as before the split followed its use.
            PersonCounts::Unused if self.released() == 0 => Some(PersonsRole::SuppressesSums),
            PersonCounts::Unused => None,
        }
    }

    /// How many released columns have a mechanism of their own: the parts and the
    /// quantiles.
    pub fn released(&self) -> usize {
        self.parts.len() + self.quantiles.len()
    }

    /// The ε weights of the release's mechanisms: the person-count mechanism first (if
    /// any), then one per part, then one per quantile. See the module's documentation for
    /// why: a quantile is a released column like the others, with an equal share.
    pub fn epsilon_weights(&self) -> Vec<f64> {
        let k = self.released();
        let mut weights = Vec::with_capacity(k + 1);
        match self.persons_role() {
            None => {}
            // share = w / (w + k) = SUPPRESSION_SHARE.
            Some(PersonsRole::SuppressesCounts) if k > 0 => {
                weights.push(k as f64 * SUPPRESSION_SHARE / (1.0 - SUPPRESSION_SHARE));
            }
            Some(_) => weights.push(1.0),
        }
        weights.extend(std::iter::repeat_n(1.0, k));
        weights
    }
}

/// The calibrated mechanisms of one release.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// Key selection on person counts, or `None` when the keys are public.
    pub key_selection: Option<KeySelection>,
    /// Noise on person counts when the keys are public and something uses them.
    pub persons: Option<NoiseMechanism>,
    /// What the person-count mechanism is for, if there is one.
    pub persons_role: Option<PersonsRole>,
    /// Noise per part, in the order of [`ReleaseShape::parts`].
    pub parts: Vec<NoiseMechanism>,
    /// Per quantile, in the order of [`ReleaseShape::quantiles`], the selections of one
    /// group (its value and its interval's ends) at the quantile's share of ε over L0 (one
    /// person's values are in at most L0 groups).
    pub quantiles: Vec<QuantileRelease>,
    /// L0, which each quantile's charge multiplies its per-group ε by.
    pub max_groups: u32,
    /// [`ReleaseShape::interval_counts`].
    pub interval_counts: usize,
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
    /// A quantile cannot be calibrated.
    #[error(transparent)]
    Quantile(#[from] QuantileError),
}

/// Calibrates every mechanism of a release of `shape` so that together they are
/// (`epsilon`, `delta`)-DP under basic composition.
pub fn calibrate(
    shape: &ReleaseShape<'_>,
    epsilon: Epsilon,
    delta: Delta,
) -> Result<Calibration, CalibrationError> {
    let role = shape.persons_role();
    let weights = shape.epsilon_weights();
    let epsilons: Vec<Epsilon> = split_epsilon(epsilon, &weights)?
        .into_iter()
        .map(|share| {
            share.ok_or(ParamError::BadWeights {
                weights: weights.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    // The person-count mechanism, if any, comes first.
    let first_part = usize::from(role.is_some());
    // A quantile is pure ε-DP whatever the noise: no δ.
    let first_quantile = first_part + shape.parts.len();
    let needs_delta = |i: usize| {
        let key_selection = i == 0 && role == Some(PersonsRole::SelectsGroups);
        i < first_quantile && (key_selection || shape.noise == NoiseKind::Gaussian)
    };
    let delta_weights: Vec<f64> = (0..weights.len())
        .map(|i| f64::from(u8::from(needs_delta(i))))
        .collect();
    let deltas = if delta_weights.iter().any(|w| *w > 0.0) {
        split_delta(delta, &delta_weights)?
    } else {
        vec![Delta::ZERO; weights.len()]
    };
    let (key_selection, persons) = match role {
        None => (None, None),
        Some(PersonsRole::SelectsGroups) => {
            let selection = KeySelection::calibrate(epsilons[0], deltas[0], shape.max_groups)?;
            (Some(selection), None)
        }
        Some(
            PersonsRole::Released | PersonsRole::SuppressesCounts | PersonsRole::SuppressesSums,
        ) => {
            let sensitivity = Sensitivity {
                max_groups: shape.max_groups,
                per_group: 1,
            };
            let persons =
                NoiseMechanism::calibrate(shape.noise, sensitivity, epsilons[0], deltas[0])?;
            (None, Some(persons))
        }
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
            let j = first_part + i;
            NoiseMechanism::calibrate(shape.noise, sensitivity, epsilons[j], deltas[j])
        })
        .collect::<Result<_, _>>()?;
    let quantiles = shape
        .quantiles
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let share = epsilons[first_part + shape.parts.len() + i];
            let per_group = per_group_epsilon(share, shape.max_groups)?;
            Ok(QuantileRelease::new(
                q.grid.candidates().to_vec(),
                q.alpha,
                q.values_per_person,
                per_group,
            )?)
        })
        .collect::<Result<_, CalibrationError>>()?;
    Ok(Calibration {
        key_selection,
        persons,
        persons_role: role,
        parts,
        quantiles,
        max_groups: shape.max_groups,
        interval_counts: shape.interval_counts,
    })
}

/// The ε of one group's release when one person is in at most `max_groups` groups:
/// `share / max_groups`, lowered until `max_groups` of them are within `share` in floats.
fn per_group_epsilon(share: Epsilon, max_groups: u32) -> Result<Epsilon, ParamError> {
    let groups = f64::from(max_groups.max(1));
    let mut each = share.value() / groups;
    while each * groups > share.value() {
        each = each.next_down();
    }
    Epsilon::new(each)
}

impl Calibration {
    /// The release's privacy charge: one item per mechanism, the parts then the quantiles
    /// labelled by `part_labels` (in order); a quantile's three selections are three items.
    pub fn charge(&self, part_labels: impl IntoIterator<Item = String>) -> PrivacyCharge {
        let mut items = Vec::new();
        if let Some(k) = &self.key_selection {
            items.push(k.charge_item());
        }
        if let Some(p) = &self.persons {
            let label = if matches!(
                self.persons_role,
                Some(PersonsRole::SuppressesCounts | PersonsRole::SuppressesSums)
            ) {
                "distinct persons per group (decides suppression; not released)"
            } else {
                "distinct persons per group"
            };
            items.push(p.charge_item(label));
        }
        let mut labels = part_labels.into_iter();
        for (m, label) in self.parts.iter().zip(labels.by_ref()) {
            items.push(m.charge_item(label));
        }
        for (q, label) in self.quantiles.iter().zip(labels) {
            items.extend(q.charge_items(&label, self.max_groups));
        }
        PrivacyCharge::new(items)
    }

    /// The noise on the per-group person counts, if the release has any.
    pub fn persons_distribution(&self) -> Option<NoiseDistribution> {
        match (&self.key_selection, &self.persons) {
            (Some(k), _) => Some(k.distribution()),
            (None, Some(p)) => Some(p.distribution()),
            (None, None) => None,
        }
    }

    /// How ε was split and why, in a sentence (`explain`).
    pub fn describe_split(&self) -> String {
        let shares = self.describe_shares();
        if self.quantiles.is_empty() {
            shares
        } else {
            format!(
                "{shares}; each quantile's share goes half to its value and a quarter to each \
                 end of its 95% interval"
            )
        }
    }

    fn describe_shares(&self) -> String {
        let shares = self.describe_released_shares();
        match self.interval_counts {
            0 => shares,
            1 => format!(
                "{shares}, with one more equal share for the number of values the quantiles \
                 are of, which bounds their intervals and is not released"
            ),
            n => format!(
                "{shares}, with {n} more equal shares for the numbers of values the \
                 quantiles are of, which bound their intervals and are not released"
            ),
        }
    }

    fn describe_released_shares(&self) -> String {
        let k = self.parts.len() + self.quantiles.len() - self.interval_counts;
        let columns = match (k, self.quantiles.len()) {
            (1, 1) => "the one released quantile".to_owned(),
            (1, _) => "the one released sum or count".to_owned(),
            (k, 0) => format!("the {k} released sums and counts"),
            (k, q) if q == k => format!("the {k} released quantiles"),
            (k, _) => format!("the {k} released sums, counts and quantiles"),
        };
        match self.persons_role {
            None => format!(
                "equal shares over {columns}; no person count is needed (none is released and \
                 the disclosure policy suppresses nothing), so none is made"
            ),
            Some(PersonsRole::SelectsGroups) if k == 0 => {
                "all of it to the person count that chooses the groups (key selection) and is \
                 released"
                    .to_owned()
            }
            Some(PersonsRole::SelectsGroups) => format!(
                "equal shares over {columns} and the person count that chooses the groups \
                 (key selection)"
            ),
            Some(PersonsRole::Released) if k == 0 => {
                "all of it to the released person count".to_owned()
            }
            Some(PersonsRole::Released) => {
                format!("equal shares over {columns} and the released person count")
            }
            Some(PersonsRole::SuppressesCounts | PersonsRole::SuppressesSums) if k == 0 => {
                "all of it to the person count".to_owned()
            }
            Some(PersonsRole::SuppressesCounts) => format!(
                "{}% to the person count, which only decides suppression and is not \
                 released; equal shares of the rest over {} (a count is also suppressed \
                 on its own noisy value)",
                (SUPPRESSION_SHARE * 100.0).round(),
                if k == 1 {
                    "the one released count".to_owned()
                } else {
                    format!("the {k} released counts")
                }
            ),
            Some(PersonsRole::SuppressesSums) => format!(
                "equal shares over {columns} and the person count, which is not released \
                 but is what suppresses sums and means in small groups"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::MechanismKind;

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
            for persons in [
                PersonCounts::Released,
                PersonCounts::SuppressCounts,
                PersonCounts::SuppressSums,
                PersonCounts::Unused,
            ] {
                for parts in [&[][..], &[1], &[3, 100, 1]] {
                    let shape = ReleaseShape {
                        noise,
                        public_keys,
                        persons,
                        max_groups: 3,
                        parts,
                        quantiles: &[],
                        interval_counts: 0,
                    };
                    let what = format!(
                        "{noise:?}, public keys {public_keys}, {persons:?}, parts {parts:?}"
                    );
                    // With no part at all the person count is all there is.
                    let has_persons =
                        !public_keys || persons != PersonCounts::Unused || parts.is_empty();
                    let c = charge(&shape, 0.7, 1e-6);
                    let n = parts.len() + usize::from(has_persons);
                    assert_eq!(c.items().len(), n, "{what}");
                    assert!(
                        c.epsilon() <= 0.7 && c.epsilon() > 0.7 * (1.0 - 1e-12),
                        "{what}"
                    );
                    assert!(c.delta() <= 1e-6, "{what}");
                    // The shares: equal, but for a person count that only decides
                    // suppression, which gets exactly SUPPRESSION_SHARE.
                    let suppression_only =
                        public_keys && persons == PersonCounts::SuppressCounts && !parts.is_empty();
                    let released = if suppression_only {
                        let share = c.items()[0].epsilon;
                        assert!((share - 0.7 * SUPPRESSION_SHARE).abs() < 1e-12, "{what}");
                        &c.items()[1..]
                    } else {
                        c.items()
                    };
                    let each = released[0].epsilon;
                    assert!(
                        released.iter().all(|i| (i.epsilon - each).abs() < 1e-15),
                        "equal ε shares: {what}"
                    );
                    // δ only where needed: key selection, and everything under Gaussian
                    // noise.
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
    }

    #[test]
    fn a_suppression_only_person_count_leaves_the_released_columns_less_noise() {
        // One released count: equal shares would give it ε/2 (discrete Laplace scale
        // L0/(ε/2) = 2 at ε = 1); with the person count at a fifth it gets 4ε/5 (scale
        // 1.25), and the person count's scale is 5.
        let shape = |persons| ReleaseShape {
            noise: NoiseKind::Laplace,
            public_keys: true,
            persons,
            max_groups: 1,
            parts: &[1],
            quantiles: &[],
            interval_counts: 0,
        };
        let released = charge(&shape(PersonCounts::Released), 1.0, 0.0);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(released.items()[0].scale, 2.0));
        assert!(close(released.items()[1].scale, 2.0));
        let suppression = charge(&shape(PersonCounts::SuppressCounts), 1.0, 0.0);
        assert!(close(suppression.items()[0].scale, 5.0));
        assert!(close(suppression.items()[1].scale, 1.25));
        assert!(suppression.items()[0].label.contains("not released"));
        // A sum's cells are suppressed only through the person count: it keeps its share.
        let sums = charge(&shape(PersonCounts::SuppressSums), 1.0, 0.0);
        assert!(close(sums.items()[0].scale, 2.0));
        assert!(close(sums.items()[1].scale, 2.0));
        assert!(sums.items()[0].label.contains("not released"));
        let unused = charge(&shape(PersonCounts::Unused), 1.0, 0.0);
        assert_eq!(unused.items().len(), 1);
        assert!(close(unused.items()[0].scale, 1.0));
    }

    #[test]
    fn the_split_is_described_with_its_reason() {
        let c = |public_keys, persons, parts: &[u64]| {
            calibrate(
                &ReleaseShape {
                    noise: NoiseKind::Laplace,
                    public_keys,
                    persons,
                    max_groups: 1,
                    parts,
                    quantiles: &[],
                    interval_counts: 0,
                },
                Epsilon::new(1.0).unwrap(),
                Delta::new(1e-6).unwrap(),
            )
            .unwrap()
            .describe_split()
        };
        assert_eq!(
            c(true, PersonCounts::SuppressCounts, &[1, 1]),
            "20% to the person count, which only decides suppression and is not released; \
             equal shares of the rest over the 2 released counts (a count is also \
             suppressed on its own noisy value)"
        );
        assert!(c(false, PersonCounts::Unused, &[1]).contains("key selection"));
        assert!(c(true, PersonCounts::Unused, &[1]).contains("none is made"));
        assert!(c(true, PersonCounts::SuppressSums, &[1]).contains("suppresses sums"));
        assert_eq!(
            c(true, PersonCounts::Unused, &[]),
            "all of it to the person count"
        );
        assert!(c(true, PersonCounts::Released, &[1]).contains("released person count"));
    }

    #[test]
    fn a_part_with_a_wider_sensitivity_gets_proportionally_more_noise() {
        let shape = ReleaseShape {
            noise: NoiseKind::Laplace,
            public_keys: true,
            persons: PersonCounts::SuppressCounts,
            max_groups: 1,
            parts: &[1, 10],
            quantiles: &[],
            interval_counts: 0,
        };
        let c = charge(&shape, 1.0, 0.0);
        let (narrow, wide) = (c.items()[1].scale, c.items()[2].scale);
        assert!((wide / narrow - 10.0).abs() < 1e-9, "{narrow} vs {wide}");
    }

    #[test]
    fn a_quantile_gets_an_equal_share_per_group_over_l0_and_no_delta() {
        let grid = Grid::new(0.0, 120.0, 1.0).unwrap();
        let quantiles = [
            QuantileShape {
                grid: grid.clone(),
                alpha: 0.5,
                values_per_person: 2,
            },
            QuantileShape {
                grid,
                alpha: 0.9,
                values_per_person: 2,
            },
        ];
        for noise in [NoiseKind::Laplace, NoiseKind::Gaussian] {
            for max_groups in [1, 3] {
                let shape = ReleaseShape {
                    noise,
                    public_keys: true,
                    persons: PersonCounts::Released,
                    max_groups,
                    parts: &[1],
                    quantiles: &quantiles,
                    // The part is the number of values the quantiles are of.
                    interval_counts: 1,
                };
                let what = format!("{noise:?}, L0 {max_groups}");
                let c = calibrate(
                    &shape,
                    Epsilon::new(0.8).unwrap(),
                    Delta::new(1e-6).unwrap(),
                )
                .unwrap();
                let charge = c.charge(["part".to_owned(), "q50".into(), "q90".into()]);
                let items = charge.items();
                // The person count, the part, and three selections per quantile.
                assert_eq!(items.len(), 2 + 2 * 3, "{what}");
                assert!(charge.epsilon() <= 0.8, "{what}");
                for q in 0..2 {
                    let three = &items[2 + 3 * q..5 + 3 * q];
                    let share: f64 = three.iter().map(|i| i.epsilon).sum();
                    // Four equal shares: the person count, the part, two quantiles.
                    assert!(
                        share <= 0.2 && share > 0.2 * (1.0 - 1e-11),
                        "{what}: {share}"
                    );
                    assert!((three[0].epsilon - share / 2.0).abs() < 1e-15, "{what}");
                    assert!((three[1].epsilon - share / 4.0).abs() < 1e-15, "{what}");
                    for item in three {
                        assert_eq!(item.mechanism, MechanismKind::ExponentialQuantile);
                        assert_eq!(item.delta, 0.0, "a quantile is pure ε-DP: {what}");
                        assert_eq!(item.max_groups, max_groups);
                    }
                }
                assert_eq!(items[2].label, "q50");
                assert_eq!(items[3].label, "q50: 95% interval, low end");
                assert_eq!(items[7].label, "q90: 95% interval, high end");
                // Each group's release spends the share over L0.
                for q in &c.quantiles {
                    let per_group = q.value.epsilon().value()
                        + q.low.epsilon().value()
                        + q.high.epsilon().value();
                    assert!(per_group * f64::from(max_groups) <= 0.2, "{what}");
                    assert!(
                        per_group > 0.2 / f64::from(max_groups) * (1.0 - 1e-11),
                        "{what}"
                    );
                    assert!(q.reach() > 0 && q.low.offset() == -q.reach(), "{what}");
                }
                // Sensitivity k·max(num, den − num): 2·1 for the median, 2·9 for 0.9.
                assert_eq!(items[2].per_group_sensitivity, 2);
                assert_eq!(items[5].per_group_sensitivity, 18);
                let split = c.describe_split();
                assert!(split.contains("a quarter to each end"), "{what}: {split}");
                assert!(
                    split.starts_with(
                        "equal shares over the 2 released quantiles and the released person \
                         count, with one more equal share for the number of values"
                    ),
                    "{what}: {split}"
                );
            }
        }
    }
}
