// SPDX-License-Identifier: Apache-2.0
//! Exact comparison of an observation rate with a minimum (docs/contracts/verification.md section 7).
//!
//! A minimum such as `0.95` is stored as the binary64 value nearest to 95/100, which is slightly below
//! it (0.9499999999999999555910790149937...), while `0.1` is stored slightly above 1/10. Comparing
//! `observed as f64 / total as f64 >= min` therefore gives answers that depend on the rounding direction
//! of each constant. We compare against the decimal the user wrote instead: Rust's `Display` for `f64`
//! prints the shortest decimal that reads back as the same value (never an exponent), which for a
//! number written in a JSON file is the number as written.

/// `min` as `n / 10^k`, or `None` for a value that is not a finite non-negative number.
fn decimal(min: f64) -> Option<(u128, u32)> {
    if !min.is_finite() || min < 0.0 {
        return None;
    }
    let text = format!("{min}");
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let digits: String = [int, frac].concat();
    // Leading zeros carry no value; 17 significant digits always fit in a u128.
    let n = digits.trim_start_matches('0').parse::<u128>().unwrap_or(0);
    Some((n, u32::try_from(frac.len()).unwrap_or(u32::MAX)))
}

/// Whether `observed / total` is at least `min`, decided in integers. A rate over zero paths meets no
/// minimum; a negative minimum is met by any rate; NaN is met by none.
pub(crate) fn meets(observed: u64, total: u64, min: f64) -> bool {
    if total == 0 {
        return false;
    }
    if min <= 0.0 {
        return true;
    }
    let Some((n, k)) = decimal(min) else {
        return false;
    };
    // n has at most 17 significant digits (< 10^18 for a minimum up to 10), total < 2^64: no overflow.
    let Some(need) = n.checked_mul(u128::from(total)) else {
        return false;
    };
    match 10u128
        .checked_pow(k)
        .and_then(|scale| u128::from(observed).checked_mul(scale))
    {
        Some(have) => have >= need,
        // observed * 10^k exceeds u128::MAX > need: only possible when observed > 0.
        None => true,
    }
}

/// `observed / total` for people; `None` when there is nothing to divide.
pub(crate) fn ratio(observed: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| observed as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_19_of_20_meets_095_and_18_does_not() {
        assert!(meets(19, 20, 0.95));
        assert!(!meets(18, 20, 0.95));
        assert!(meets(1, 10, 0.1));
        assert!(meets(3, 10, 0.3));
    }

    #[test]
    fn no_float_rounding_in_the_verdict() {
        let (observed, total) = (949_999_999_999_999_999_u64, 1_000_000_000_000_000_000_u64);
        // In binary64 the rate rounds to exactly the minimum...
        assert!(observed as f64 / total as f64 >= 0.95);
        // ...but it is below 95/100.
        assert!(!meets(observed, total, 0.95));
        assert!(meets(observed + 1, total, 0.95));
    }

    #[test]
    fn exactness_beyond_float_resolution() {
        // 2/3 = 0.666...67 > 0.6666666666666666 but < 0.6666666666666667 as decimals.
        assert!(meets(2, 3, 0.6666666666666666));
        assert!(!meets(2, 3, 0.6666666666666667));
        assert!(meets(999_999, 1_000_000, 0.999999));
        assert!(!meets(999_998, 1_000_000, 0.999999));
    }

    #[test]
    fn edges() {
        assert!(meets(0, 5, 0.0));
        assert!(!meets(0, 0, 0.0), "nothing to observe meets no minimum");
        assert!(meets(5, 5, 1.0));
        assert!(!meets(4, 5, 1.0));
        assert!(!meets(5, 5, 1.0000000000000002));
        assert!(!meets(5, 5, f64::NAN));
        assert!(meets(1, u64::MAX, 1e-30));
        assert!(!meets(0, u64::MAX, 1e-30));
        assert!(meets(1, 1, 5e-324));
    }

    #[test]
    fn decimal_is_the_number_as_written() {
        assert_eq!(decimal(0.95), Some((95, 2)));
        assert_eq!(decimal(1.0), Some((1, 0)));
        assert_eq!(decimal(0.0), Some((0, 0)));
        assert_eq!(decimal(0.125), Some((125, 3)));
        assert_eq!(decimal(1e-7), Some((1, 7)));
    }
}
