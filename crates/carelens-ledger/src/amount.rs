//! Privacy amounts as exact integers.
//!
//! Budgets are compared by adding up every charge ever made, so the arithmetic must be
//! exact and must not depend on the order of the additions. ε is kept in integer
//! pico-units (10⁻¹²) and δ in atto-units (10⁻¹⁸). A charge is rounded *up* to a whole
//! unit and a budget *down*, except that a value within one part in 10¹³ of a whole unit is
//! taken as that unit (so ten charges of 0.1 fit a budget of 1.0).
//!
//! ρ (zCDP, [`ZcdpAmount`]) is kept in integer pico-units like ε, beside the δ of the
//! parts that are only approximately zCDP. [`Spend`] is a charge, or a sum of charges, in
//! both forms; which one a budget is held to is its [`Accounting`].

use carelens_privacy::{Accounting, ZcdpCost, zcdp_epsilon, zcdp_rho_within};
use serde::{Deserialize, Serialize};

/// ε units per 1.0.
pub const EPSILON_UNITS: f64 = 1e12;
/// δ units per 1.0.
pub const DELTA_UNITS: f64 = 1e18;
/// ρ units per 1.0.
pub const RHO_UNITS: f64 = 1e12;

/// An (ε, δ) amount in integer units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Amount {
    /// ε in 10⁻¹² units.
    pub epsilon: i64,
    /// δ in 10⁻¹⁸ units.
    pub delta: i64,
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
    /// Up, with no allowance for float noise: for values that come out of a privacy map
    /// or a conversion already rounded up (ρ, a converted ε).
    Ceiling,
}

fn to_units(x: f64, per_unit: f64, direction: Direction) -> i64 {
    let v = (x * per_unit).max(0.0);
    let nearest = v.round();
    let units = match direction {
        Direction::Ceiling => v.ceil(),
        _ if (v - nearest).abs() <= v * 1e-13 => nearest,
        Direction::Up => v.ceil(),
        Direction::Down => v.floor(),
    };
    // Saturates: amounts beyond i64 (ε > 9·10⁶) are not meaningful budgets.
    if units >= i64::MAX as f64 {
        i64::MAX
    } else {
        units as i64
    }
}

impl Amount {
    /// A charge of (ε, δ), rounded up.
    pub fn charge(epsilon: f64, delta: f64) -> Self {
        Self {
            epsilon: to_units(epsilon, EPSILON_UNITS, Direction::Up),
            delta: to_units(delta, DELTA_UNITS, Direction::Up),
        }
    }

    /// A budget of (ε, δ), rounded down.
    pub fn budget(epsilon: f64, delta: f64) -> Self {
        Self {
            epsilon: to_units(epsilon, EPSILON_UNITS, Direction::Down),
            delta: to_units(delta, DELTA_UNITS, Direction::Down),
        }
    }

    /// ε as a number.
    pub fn epsilon_value(self) -> f64 {
        self.epsilon as f64 / EPSILON_UNITS
    }

    /// δ as a number.
    pub fn delta_value(self) -> f64 {
        self.delta as f64 / DELTA_UNITS
    }

    /// The sum, saturating.
    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            epsilon: self.epsilon.saturating_add(other.epsilon),
            delta: self.delta.saturating_add(other.delta),
        }
    }

    /// What is left of `self` after `spent`, never below 0.
    pub fn minus(self, spent: Amount) -> Amount {
        Amount {
            epsilon: self.epsilon.saturating_sub(spent.epsilon).max(0),
            delta: self.delta.saturating_sub(spent.delta).max(0),
        }
    }

    /// Whether `self` fits within `limit` in both ε and δ.
    pub fn fits(self, limit: Amount) -> bool {
        self.epsilon <= limit.epsilon && self.delta <= limit.delta
    }
}

/// An approximate-zCDP amount in integer units: δ-approximately ρ-zCDP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ZcdpAmount {
    /// ρ in 10⁻¹² units.
    pub rho: i64,
    /// δ of the parts that are only approximately zCDP, in 10⁻¹⁸ units.
    pub delta: i64,
}

impl ZcdpAmount {
    /// A charge of `cost`, rounded up.
    pub fn charge(cost: ZcdpCost) -> Self {
        Self {
            rho: to_units(cost.rho, RHO_UNITS, Direction::Ceiling),
            delta: to_units(cost.delta, DELTA_UNITS, Direction::Up),
        }
    }

    /// A charge logged before the ledger stored ρ (schema 4 and older), read as
    /// approximate zCDP from its (ε, δ) taken whole: δ-approximately ε²/2-zCDP, with ρ
    /// rounded up exactly in integers (ε²/2 in ρ units is `units² / (2·10¹²)`).
    pub fn of_basic(amount: Amount) -> Self {
        let e = u128::from(amount.epsilon.max(0).unsigned_abs());
        let two_units = 2 * 1_000_000_000_000u128;
        let rho = (e * e).div_ceil(two_units);
        Self {
            rho: i64::try_from(rho).unwrap_or(i64::MAX),
            delta: amount.delta,
        }
    }

    /// ρ as a number.
    pub fn rho_value(self) -> f64 {
        self.rho as f64 / RHO_UNITS
    }

    /// δ as a number.
    pub fn delta_value(self) -> f64 {
        self.delta as f64 / DELTA_UNITS
    }

    /// The sum, saturating.
    pub fn plus(self, other: ZcdpAmount) -> ZcdpAmount {
        ZcdpAmount {
            rho: self.rho.saturating_add(other.rho),
            delta: self.delta.saturating_add(other.delta),
        }
    }

    /// As (ε, δ) against a budget of `cap`: δ is the cap's, and ε the conversion of ρ at
    /// what the approximate parts leave of it ([`zcdp_epsilon`]). Nothing spent is (0, 0);
    /// ρ with no δ left to convert at (or a conversion that fails) is an ε no budget
    /// holds.
    pub fn as_epsilon_delta(self, cap: Amount) -> Amount {
        if self.rho == 0 {
            return Amount {
                epsilon: 0,
                delta: self.delta,
            };
        }
        let over = Amount {
            epsilon: i64::MAX,
            delta: self.delta.max(cap.delta),
        };
        let Some(left) = self.delta_left(cap) else {
            return over;
        };
        match zcdp_epsilon(self.rho_value(), left) {
            Ok(epsilon) if epsilon.is_finite() => Amount {
                epsilon: to_units(epsilon, EPSILON_UNITS, Direction::Ceiling),
                delta: cap.delta,
            },
            _ => over,
        }
    }

    /// The ρ a budget of `cap` holds when the approximate parts have used this amount's
    /// δ: the largest ρ whose conversion fits the cap's ε ([`zcdp_rho_within`]), rounded
    /// down.
    pub fn capacity(self, cap: Amount) -> i64 {
        let Some(left) = self.delta_left(cap) else {
            return 0;
        };
        zcdp_rho_within(cap.epsilon_value(), left)
            .map_or(0, |rho| to_units(rho, RHO_UNITS, Direction::Down))
    }

    /// The δ of `cap` that this amount's approximate parts leave for the conversion, if
    /// any.
    fn delta_left(self, cap: Amount) -> Option<f64> {
        let left = cap.delta.saturating_sub(self.delta);
        (left > 0).then(|| left as f64 / DELTA_UNITS)
    }
}

/// A charge, or a sum of charges, in both forms: (ε, δ) under basic composition, and
/// approximate zCDP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    /// (Σε, Σδ).
    pub basic: Amount,
    /// (Σρ, Σδ) of approximate zCDP.
    pub zcdp: ZcdpAmount,
}

impl Spend {
    /// A charge as the audit log holds it: its (ε, δ) units, and its ρ units when it was
    /// logged at schema 5 or later; an earlier charge is read as δ-approximately
    /// ε²/2-zCDP ([`ZcdpAmount::of_basic`]).
    pub fn of_logged(
        epsilon_units: i64,
        delta_units: i64,
        rho_units: Option<i64>,
        rho_delta_units: Option<i64>,
    ) -> Spend {
        let basic = Amount {
            epsilon: epsilon_units,
            delta: delta_units,
        };
        let zcdp = match (rho_units, rho_delta_units) {
            (Some(rho), Some(delta)) => ZcdpAmount { rho, delta },
            _ => ZcdpAmount::of_basic(basic),
        };
        Spend { basic, zcdp }
    }

    /// The sum, saturating.
    pub fn plus(self, other: Spend) -> Spend {
        Spend {
            basic: self.basic.plus(other.basic),
            zcdp: self.zcdp.plus(other.zcdp),
        }
    }

    /// What this spend amounts to against a budget of `cap`, as (ε, δ), under
    /// `accounting`.
    pub fn against(self, accounting: Accounting, cap: Amount) -> Amount {
        match accounting {
            Accounting::Basic => self.basic,
            Accounting::Zcdp => self.zcdp.as_epsilon_delta(cap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_tenths_fit_one_whole() {
        let tenth = Amount::charge(0.1, 0.0);
        let mut spent = Amount::default();
        for _ in 0..10 {
            spent = spent.plus(tenth);
        }
        assert!(spent.fits(Amount::budget(1.0, 0.0)));
        assert!(
            !spent
                .plus(Amount::charge(1e-12, 0.0))
                .fits(Amount::budget(1.0, 0.0))
        );
    }

    #[test]
    fn charges_round_up_and_budgets_down() {
        assert_eq!(Amount::charge(1.5e-12, 0.0).epsilon, 2);
        assert_eq!(Amount::budget(1.5e-12, 0.0).epsilon, 1);
        assert_eq!(Amount::charge(0.0, 1e-6).delta, 1_000_000_000_000);
        assert_eq!(Amount::charge(1.0 / 3.0, 0.0).epsilon, 333_333_333_334);
        assert_eq!(Amount::budget(1.0 / 3.0, 0.0).epsilon, 333_333_333_333);
    }

    #[test]
    fn remaining_never_goes_negative() {
        let left = Amount::budget(1.0, 0.0).minus(Amount::charge(2.0, 1e-9));
        assert_eq!(left, Amount::default());
        assert_eq!(
            Amount::budget(2.0, 1e-6)
                .minus(Amount::charge(0.5, 0.0))
                .epsilon_value(),
            1.5
        );
    }
}
