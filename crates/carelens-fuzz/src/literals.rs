//! The literals the generator writes: ordinary values beside the extreme ones (the
//! largest and smallest integers, NaN and infinities via casts, empty, odd and long
//! strings, dates at the ends of the calendar, zero, negative and huge intervals, invalid
//! units and broken patterns), and the one helper that picks among them.

use rand::seq::IndexedRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

pub(crate) const INTS: &[&str] = &[
    "0",
    "1",
    "(-1)",
    "2",
    "7",
    "10",
    "100",
    "2025",
    "2147483647",
    "(-2147483648)",
    "9223372036854775807",
    "(-9223372036854775808)",
    "4294967296",
    "1000000",
    "CAST(NULL AS BIGINT)",
];

pub(crate) const FLOATS: &[&str] = &[
    "0.5",
    "1.0",
    "(-0.0)",
    "0.0",
    "1e308",
    "(-1e308)",
    "1.7976931348623157e308",
    "5e-324",
    "CAST('NaN' AS DOUBLE)",
    "CAST('inf' AS DOUBLE)",
    "CAST('-inf' AS DOUBLE)",
    "3.14159",
    "2.5e-10",
    "9.223372036854776e18",
    "CAST(NULL AS DOUBLE)",
];

pub(crate) const TEXTS: &[&str] = &[
    "",
    "a",
    "F",
    "(",
    "\\",
    "%",
    "_",
    "[",
    "*",
    "Ünïcødé ✓ 🧬",
    "ǅ",
    "  padded  ",
    "2024-02-30",
    "9999-12-31",
    "-9223372036854775808",
    "NaN",
    "1e400",
    "e\u{301}",
    "\u{202e}rtl",
];

pub(crate) const DATES: &[&str] = &[
    "DATE '2024-01-01'",
    "DATE '1970-01-01'",
    "DATE '0001-01-01'",
    "DATE '9999-12-31'",
    "DATE '2025-03-31'",
    "DATE '1900-02-28'",
    "CAST(2147483647 AS DATE)",
    "CAST((-2147483648) AS DATE)",
    "CAST(NULL AS DATE)",
];

pub(crate) const TIMESTAMPS: &[&str] = &[
    "TIMESTAMP '2024-01-01 00:00:00'",
    "TIMESTAMP '1970-01-01 00:00:00'",
    "TIMESTAMP '1677-09-21 00:12:44'",
    "TIMESTAMP '2262-04-11 23:47:16'",
    "TIMESTAMP '2025-03-31 12:30:00'",
];

/// Interval literals: ordinary, zero, negative and near the analysis's 1,000-year limit
/// (which checks months and days, not the nanoseconds part).
pub(crate) const INTERVALS: &[&str] = &[
    "INTERVAL '1 day'",
    "INTERVAL '0 days'",
    "INTERVAL '1 month'",
    "INTERVAL '7 days'",
    "INTERVAL '999 years'",
    "INTERVAL '-999 years'",
    "INTERVAL '1000 years'",
    "INTERVAL '365999 days'",
    "INTERVAL '-365999 days'",
    "INTERVAL '1 microsecond'",
    "INTERVAL '2562047 hours'",
    "INTERVAL '-2562047 hours'",
    "INTERVAL '9223372036 seconds'",
    "INTERVAL '1 year -400 days'",
];

pub(crate) const UNITS: &[&str] = &[
    "year",
    "month",
    "day",
    "week",
    "quarter",
    "hour",
    "minute",
    "second",
    "millisecond",
    "microsecond",
    "nanosecond",
    "dow",
    "doy",
    "epoch",
    "isodow",
    "YEAR",
    "fortnight",
    "",
    "century",
];

/// Regular expressions, valid and not, and one over the default size limit.
pub(crate) const REGEXES: &[&str] = &[
    "^a",
    "(",
    "[",
    "\\",
    "a{2,1}",
    "(?i)ü",
    "\\p{Greek}",
    "\\p{Nope}",
    ".*",
    "",
    "((a{100}){100}){100}",
    "^[0-9]+$",
];

pub(crate) const LIKES: &[&str] = &[
    "%", "_", "a%", "%\\", "\\", "%%_%", "", "[a-z]%", "F", "%ü%", "\\%",
];

pub(crate) const SIMILAR: &[&str] = &["(", "a|b", "%(b|c)%", "[", "\\", "", "_*", "(a{100}){100}"];

pub(crate) const INT_TYPES: &[&str] = &["INT", "BIGINT", "SMALLINT", "TINYINT", "BIGINT UNSIGNED"];
pub(crate) const FLOAT_TYPES: &[&str] = &["DOUBLE", "REAL", "FLOAT"];

pub(crate) fn pick<'a, T>(rng: &mut Xoshiro256PlusPlus, items: &'a [T]) -> &'a T {
    items
        .choose(rng)
        .expect("the generator's literal lists are not empty")
}
