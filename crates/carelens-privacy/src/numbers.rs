//! Numbers for people: ε, δ, scales and errors in messages, hints and every rendering, so
//! that a value reads the same wherever carelens shows it.

/// Bisection on a predicate that is false at `lo`, true at `hi` and turns true once
/// between them: the bracket `(lo, hi)` narrowed to one part in 10⁹ of `hi`, with the
/// predicate still false at `lo` and true at `hi`.
pub(crate) fn bisect<E>(
    mut lo: f64,
    mut hi: f64,
    mut true_at: impl FnMut(f64) -> Result<bool, E>,
) -> Result<(f64, f64), E> {
    while hi - lo > hi * 1e-9 {
        let mid = lo + (hi - lo) / 2.0;
        if true_at(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok((lo, hi))
}

/// A number for people, without float noise or trailing zeros: `0`, `0.25`, `1e-5`.
pub fn number(x: f64) -> String {
    if x == 0.0 {
        "0".to_owned()
    } else if x.abs() < 1e-3 {
        let s = format!("{x:e}");
        // 1.0000000000000002e-5 -> 1e-5 when float noise is all there is.
        match s.split_once('e') {
            Some((m, e)) => {
                let m: f64 = m.parse().unwrap_or(0.0);
                let m = format!("{m:.6}");
                let m = m.trim_end_matches('0').trim_end_matches('.');
                format!("{m}e{e}")
            }
            None => s,
        }
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e-6), "1e-6");
        assert_eq!(number(1.0000000000000002e-5), "1e-5");
        assert_eq!(number(0.0), "0");
    }
}
