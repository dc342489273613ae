//! Privacy amounts as exact integers.
//!
//! Budgets are compared by adding up every charge ever made, so the arithmetic must be
//! exact and must not depend on the order of the additions. ε is kept in integer
//! pico-units (10⁻¹²) and δ in atto-units (10⁻¹⁸). A charge is rounded *up* to a whole
//! unit and a budget *down*, except that a value within one part in 10¹³ of a whole unit is
//! taken as that unit (so ten charges of 0.1 fit a budget of 1.0).

use serde::{Deserialize, Serialize};

/// ε units per 1.0.
pub const EPSILON_UNITS: f64 = 1e12;
/// δ units per 1.0.
pub const DELTA_UNITS: f64 = 1e18;

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
}

fn to_units(x: f64, per_unit: f64, direction: Direction) -> i64 {
    let v = (x * per_unit).max(0.0);
    let nearest = v.round();
    let units = if (v - nearest).abs() <= v * 1e-13 {
        nearest
    } else {
        match direction {
            Direction::Up => v.ceil(),
            Direction::Down => v.floor(),
        }
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
