//! Differential-privacy primitives for carelens: everything needed to turn exact, bounded
//! aggregates into a safe release.
//!
//! Layer: the bottom of the workspace. It knows nothing of DataFusion, tokio or files, and
//! depends only on `opendp` (for noise) and `serde` (so that parameters, charges and
//! policies can be configured and stored). The engine computes exact per-group aggregates
//! under contribution bounds; this crate decides how much noise they get, adds it, says how
//! accurate the result is, and applies the disclosure policy (see `docs/privacy.md`).
//!
//! * [`params`]: validated [`Epsilon`], [`Delta`], [`Bounds`], [`ContributionBounds`],
//!   [`Precision`] (fixed point for sums) and [`Alpha`]. A bad value is unrepresentable.
//! * [`budget`]: splitting a query's (ε, δ) across its aggregates under basic sequential
//!   composition, the [`PrivacyCharge`] the ledger stores, and how budgets compose
//!   releases ([`Accounting`]: basic, or zCDP for Gaussian noise).
//! * [`noise`]: discrete Laplace (default) and discrete Gaussian ([`NoiseKind`]) for
//!   counts and fixed-point sums — [`NoiseMechanism`].
//! * [`key_selection`]: releasing group keys that are not public — [`KeySelection`].
//! * [`accuracy`]: exact (1 − α) half-widths of the noise, and intervals for ratios.
//! * [`disclosure`]: suppression, rounding and markers on noisy values — the `nhs`, `ons`
//!   and `none` presets of [`DisclosurePolicy`].
//!
//! # Guarantees
//!
//! The privacy unit is the person (all their rows in every table). Each mechanism is
//! built from the `opendp` crate's vetted constructors and samplers, with randomness from
//! OpenSSL's CSPRNG; there is no seed and no way to turn noise off. Before every release
//! the opendp measurement's own privacy map is evaluated at the mechanism's sensitivity,
//! and a release whose map exceeds its charge is refused.
//!
//! | mechanism | guarantee | sensitivity argument | reference |
//! |-----------|-----------|----------------------|-----------|
//! | discrete Laplace, scale `t` | `Δ₁/t`-DP | one person changes ≤ L0 groups, each by ≤ b: `Δ₁ = L0·b` | Canonne, Kamath & Steinke 2020 §5.2; Ghosh et al. 2012 |
//! | discrete Gaussian, scale `σ` | `Δ₂²/2σ²`-zCDP → (ε, δ) | `Δ₂ = √L0·b` | Canonne, Kamath & Steinke 2020 |
//! | Laplace threshold, τ | (ε, δ)-DP key release | person counts: L0 groups, +1 each | Rogers 2023; Desfontaines et al. 2022 |
//!
//! Integer noise is used throughout because floating-point implementations of the textbook
//! Laplace mechanism leak through the low bits of their output (Mironov, "On significance
//! of the least significant bits for differential privacy", CCS 2012); sums are therefore
//! computed in fixed point ([`Precision`]) and noised as integers.
//!
//! Suppression and rounding are post-processing of noisy values and cost nothing; they
//! must never see a true count ([`disclosure`]).
//!
//! # Example
//!
//! ```
//! use carelens_privacy::{
//!     Alpha, Cell, Delta, DisclosurePolicy, Epsilon, NoiseKind, NoiseMechanism, Sensitivity,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A count of people per locality: each person is in one locality and counts once.
//! let sensitivity = Sensitivity { max_groups: 1, per_group: 1 };
//! let epsilon = Epsilon::new(0.5)?;
//! let mechanism = NoiseMechanism::calibrate(NoiseKind::Laplace, sensitivity, epsilon, Delta::ZERO)?;
//! assert_eq!(mechanism.scale(), 2.0);
//!
//! let noisy = mechanism.release(&[48_213, 5])?;
//! let policy = DisclosurePolicy::NHS;
//! let cells: Vec<Cell> = noisy.iter().map(|&n| policy.count_cell(n, mechanism.distribution())).collect();
//!
//! // The large count is released, rounded to 5, with a 95% interval; the small one is
//! // almost surely suppressed (its noisy value would have to exceed 7).
//! let big = cells[0].value().expect("a count of 48,213 is released");
//! assert_eq!(big % 5.0, 0.0);
//! assert!((big - 48_213.0).abs() < 60.0);
//! if let Cell::Released(released) = &cells[0] {
//!     let interval = released.interval(Alpha::FIVE_PERCENT)?.expect("counts have intervals");
//!     assert!(interval.contains(big));
//! }
//! # Ok(())
//! # }
//! ```

pub mod accuracy;
pub mod budget;
pub mod calibration;
pub mod differencing;
pub mod disclosure;
pub mod key_selection;
pub mod noise;
mod numbers;
pub mod params;
pub mod quantile;

#[cfg(test)]
mod statistical_tests;

pub use accuracy::{AccuracyError, Interval, NoiseDistribution, ratio_interval};
pub use budget::{
    Accounting, ChargeItem, MechanismKind, PrivacyCharge, ZcdpCost, equal_weights, split_delta,
    split_epsilon, zcdp_epsilon, zcdp_rho_within,
};
pub use calibration::{
    Calibration, CalibrationError, PersonCounts, PersonsRole, QuantileShape, ReleaseShape,
    SUPPRESSION_SHARE, calibrate,
};
pub use differencing::{DefinitionToken, Difference, near_duplicate};
pub use disclosure::{
    Cell, CellStatus, DisclosurePolicy, ErrorModel, Marker, Released, Rounding, UnknownPreset,
    ZeroPolicy,
};
pub use key_selection::{KeySelection, random_hex, selection_secret};
pub use noise::{MechanismError, NoiseKind, NoiseMechanism, Noisy, Sensitivity};
pub use numbers::number;
pub use params::{
    Alpha, Bounds, ContributionBounds, Delta, Epsilon, FixedBounds, ParamError, Precision,
};
pub use quantile::{
    COUNT_BETA, END_BETA, Grid, INTERVAL_BETA, MAX_CANDIDATES, QuantileError, QuantileMechanism,
    QuantileRelease,
};
