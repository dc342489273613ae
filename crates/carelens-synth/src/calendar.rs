//! Dates as Arrow `Date32` values (days since 1970-01-01), and the extract's fixed calendar.
//!
//! The civil-date conversions are Howard Hinnant's `days_from_civil` / `civil_from_days`
//! algorithms: exact for the proleptic Gregorian calendar, and `const`, so the extract's
//! key dates are compile-time constants.

/// Days since 1970-01-01 of a calendar date.
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i32;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The calendar date `(year, month, day)` of a day number.
pub const fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

/// The first day of the month that contains `days`.
pub const fn first_of_month(days: i32) -> i32 {
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1)
}

/// The extract date: everything in the extract happened on or before it. Queries use it
/// as their index date, and ages are `2025 - year_of_birth`.
pub const INDEX_DATE: i32 = days_from_civil(2025, 3, 31);
/// Start of the activity window: encounters, prescriptions and measurements are recorded
/// for the two financial years 2023/24 and 2024/25.
pub const WINDOW_START: i32 = days_from_civil(2023, 4, 1);
/// Diagnoses reach back to this date at the earliest.
pub const EARLIEST_RECORD: i32 = days_from_civil(1990, 1, 1);

/// Relative amplitude of the winter peak in urgent care.
pub const WINTER_AMPLITUDE: f64 = 0.12;

/// Seasonal weight of a day in `[0.88, 1.12]`, peaking in mid-January: winter pressure on
/// urgent care.
pub fn winter_weight(days: i32) -> f64 {
    let day_of_year = (days - days_from_civil(2000, 1, 15)).rem_euclid(365) as f64;
    1.0 + WINTER_AMPLITUDE * (std::f64::consts::TAU * day_of_year / 365.0).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_match_the_unix_calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(INDEX_DATE, 20_178);
        assert_eq!(WINDOW_START, 19_448);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(1915, 1, 1), -20_089);
    }

    #[test]
    fn civil_round_trips_over_a_century() {
        for days in -20_000..25_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(INDEX_DATE), (2025, 3, 31));
        assert_eq!(first_of_month(INDEX_DATE), days_from_civil(2025, 3, 1));
    }

    #[test]
    fn winter_is_busier_than_summer() {
        let january = winter_weight(days_from_civil(2024, 1, 15));
        let july = winter_weight(days_from_civil(2024, 7, 15));
        assert!(january > 1.11 && july < 0.89, "{january} {july}");
    }
}
