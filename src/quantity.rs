//! Kubernetes resource quantities (`"100m"`, `"0.5"`, `"64Mi"`, `"1e3"`) as exact integers.
//!
//! CPU is counted in millicores and memory in MiB, both rounded **up**, so a request is never
//! under-reserved. The arithmetic is exact: the decimal mantissa is kept as integer digits and a
//! power-of-ten scale, never as a float, so `"0.1"` is exactly 100 millicores.
//!
//! The grammar is that of Kubernetes' `resource.Quantity`:
//! `[+-]digits[.digits][suffix]` where the suffix is a binary one (`Ki` … `Ei`), a decimal one
//! (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent (`e3`, `E-2`).

use std::fmt;

use thiserror::Error;

/// Longest input accepted; anything longer is not a quantity a person wrote.
pub const MAX_QUANTITY_LEN: usize = 64;

/// Which resource a quantity was parsed for; it names the unit in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantityKind {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in MiB.
    Memory,
}

impl QuantityKind {
    fn unit(self) -> &'static str {
        match self {
            QuantityKind::Cpu => "millicores",
            QuantityKind::Memory => "MiB",
        }
    }
}

impl fmt::Display for QuantityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantityKind::Cpu => "cpu",
            QuantityKind::Memory => "memory",
        })
    }
}

/// A string that is not a usable quantity. The message quotes the input:
/// `invalid memory quantity "12Qi": unknown suffix "Qi"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} quantity {input:?}: {reason}")]
pub struct QuantityError {
    /// The resource the quantity was for.
    pub kind: QuantityKind,
    /// The input, cut to [`MAX_QUANTITY_LEN`] characters (with `…`) when longer.
    pub input: String,
    /// What is wrong with it.
    pub reason: QuantityErrorReason,
}

/// Why a quantity was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityErrorReason {
    /// The empty string.
    #[error("empty quantity, expected a number such as \"500m\", \"0.5\" or \"64Mi\"")]
    Empty,
    /// Spaces, tabs or newlines anywhere in the input.
    #[error("whitespace is not allowed")]
    Whitespace,
    /// Longer than [`MAX_QUANTITY_LEN`].
    #[error("longer than {max} characters", max = MAX_QUANTITY_LEN)]
    TooLong,
    /// A negative, non-zero value.
    #[error("negative quantities are not allowed")]
    Negative,
    /// `NaN`, `inf` or `Infinity`.
    #[error("not a finite number")]
    NotFinite,
    /// Not of the form `digits[.digits]` followed by a suffix.
    #[error(
        "expected a decimal number followed by an optional suffix, such as \"500m\" or \"64Mi\""
    )]
    InvalidNumber,
    /// A suffix that is neither binary, decimal SI nor an exponent.
    #[error("unknown suffix {0:?} (expected one of Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E, or an exponent such as e3)")]
    UnknownSuffix(String),
    /// `e` or `E` followed by something other than a signed integer.
    #[error("invalid exponent {0:?}, expected an integer such as e3 or e-2")]
    InvalidExponent(String),
    /// The value does not fit in a `u64` of the unit.
    #[error("too large: more than {max} {unit}", max = u64::MAX)]
    Overflow {
        /// `millicores` or `MiB`.
        unit: &'static str,
    },
}

/// Parses a Kubernetes CPU quantity into millicores, rounded up: `"100m"` → 100, `"0.5"` → 500,
/// `"2"` → 2000, `"1e3"` → 1 000 000, `"0.0001"` → 1. Zero is accepted; callers decide.
pub fn parse_cpu_millis(input: &str) -> Result<u64, QuantityError> {
    parse(input, QuantityKind::Cpu)
}

/// Parses a Kubernetes memory quantity (bytes with an optional suffix) into MiB, rounded up:
/// `"64Mi"` → 64, `"1Gi"` → 1024, `"512M"` → 489, `"128974848"` → 123, `"1e3"` → 1.
/// Zero is accepted; callers decide.
pub fn parse_memory_mib(input: &str) -> Result<u64, QuantityError> {
    parse(input, QuantityKind::Memory)
}

/// Formats millicores as a Kubernetes quantity that [`parse_cpu_millis`] reads back: 500 → `"500m"`.
pub fn format_cpu_millis(millis: u64) -> String {
    format!("{millis}m")
}

/// Formats MiB as a Kubernetes quantity that [`parse_memory_mib`] reads back: 512 → `"512Mi"`.
pub fn format_memory_mib(mib: u64) -> String {
    format!("{mib}Mi")
}

/// A suffix's multiplier: `10^dec * 2^bin`.
struct Scale {
    dec: i64,
    bin: i64,
}

fn suffix_scale(suffix: &str) -> Option<Scale> {
    let (dec, bin) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => return None,
    };
    Some(Scale { dec, bin })
}

/// Exponents beyond this are clamped; the early-outs in [`to_unit`] decide them anyway.
const EXPONENT_CLAMP: i64 = 1_000_000;

fn parse(input: &str, kind: QuantityKind) -> Result<u64, QuantityError> {
    let fail = |reason| QuantityError {
        kind,
        input: clip(input),
        reason,
    };
    if input.is_empty() {
        return Err(fail(QuantityErrorReason::Empty));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(fail(QuantityErrorReason::Whitespace));
    }
    if input.len() > MAX_QUANTITY_LEN {
        return Err(fail(QuantityErrorReason::TooLong));
    }

    let (negative, body) = match input.as_bytes()[0] {
        b'-' => (true, &input[1..]),
        b'+' => (false, &input[1..]),
        _ => (false, input),
    };
    if ["nan", "inf", "infinity"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
    {
        return Err(fail(QuantityErrorReason::NotFinite));
    }

    // digits[.digits]
    let int_len = body.bytes().take_while(u8::is_ascii_digit).count();
    let int_digits = &body[..int_len];
    let mut rest = &body[int_len..];
    let mut frac_digits = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        frac_digits = &after_dot[..frac_len];
        rest = &after_dot[frac_len..];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(fail(QuantityErrorReason::InvalidNumber));
    }
    if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '+' || c == '-') {
        return Err(fail(QuantityErrorReason::InvalidNumber));
    }

    // suffix: a table entry ("E" is exa), else an exponent, else unknown.
    let scale = match suffix_scale(rest) {
        Some(scale) => scale,
        None => match rest.strip_prefix(['e', 'E']) {
            Some(exp) => Scale {
                dec: parse_exponent(exp)
                    .ok_or_else(|| fail(QuantityErrorReason::InvalidExponent(rest.to_owned())))?,
                bin: 0,
            },
            None => return Err(fail(QuantityErrorReason::UnknownSuffix(rest.to_owned()))),
        },
    };

    // Mantissa as significant digits times a power of ten.
    let digits = format!("{int_digits}{frac_digits}");
    let significant = digits.trim_start_matches('0');
    let trimmed = significant.trim_end_matches('0');
    if trimmed.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err(fail(QuantityErrorReason::Negative));
    }
    let trailing_zeros = (significant.len() - trimmed.len()) as i64;
    let (unit_dec, unit_bin) = match kind {
        QuantityKind::Cpu => (3, 0),
        QuantityKind::Memory => (0, -20),
    };
    let dec = scale.dec + trailing_zeros - frac_digits.len() as i64 + unit_dec;
    let bin = scale.bin + unit_bin;
    to_unit(trimmed, dec, bin)
        .ok_or_else(|| fail(QuantityErrorReason::Overflow { unit: kind.unit() }))
}

/// A signed decimal integer, clamped to ±[`EXPONENT_CLAMP`]; `None` if not one.
fn parse_exponent(s: &str) -> Option<i64> {
    let (sign, digits) = match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0i64, |acc, b| {
        (acc * 10 + i64::from(b - b'0')).min(EXPONENT_CLAMP)
    });
    Some(sign * magnitude)
}

/// `ceil(mantissa * 10^dec * 2^bin)` as a `u64`, or `None` when it does not fit.
/// `mantissa` is non-empty ASCII digits without leading or trailing zeros.
fn to_unit(mantissa: &str, dec: i64, bin: i64) -> Option<u64> {
    // The value lies in [10^(n-1+dec), 10^(n+dec)) * 2^bin, and bin is within [-20, 60].
    let n = mantissa.len() as i64;
    if n - 1 + dec >= 40 {
        return None; // ≥ 10^40 * 2^-20 > u64::MAX
    }
    if n + dec <= -40 {
        return Some(1); // < 10^-40 * 2^60 < 1, and positive
    }

    let mut num = BigUint::from_decimal(mantissa);
    for _ in 0..dec.max(0) {
        num.mul_small(10);
    }
    for _ in 0..bin.max(0) {
        num.mul_small(2);
    }
    let mut inexact = false;
    for _ in 0..(-dec).max(0) {
        inexact |= num.div_small(10) != 0;
    }
    for _ in 0..(-bin).max(0) {
        inexact |= num.div_small(2) != 0;
    }
    num.to_u64()?.checked_add(u64::from(inexact))
}

/// Just enough of an unsigned big integer for [`to_unit`]: base 2^32, least significant first.
struct BigUint(Vec<u32>);

impl BigUint {
    fn from_decimal(digits: &str) -> Self {
        let mut n = BigUint(Vec::new());
        for b in digits.bytes() {
            n.mul_small(10);
            n.add_small(u32::from(b - b'0'));
        }
        n
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    fn add_small(&mut self, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            if carry == 0 {
                return;
            }
            let v = u64::from(*limb) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    /// Divides in place and returns the remainder.
    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*limb);
            *limb = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        rem as u32
    }

    fn to_u64(&self) -> Option<u64> {
        if self.0.iter().skip(2).any(|&l| l != 0) {
            return None;
        }
        let lo = u64::from(self.0.first().copied().unwrap_or(0));
        let hi = u64::from(self.0.get(1).copied().unwrap_or(0));
        Some((hi << 32) | lo)
    }
}

/// The input for an error message, cut so a huge garbage string cannot flood the logs.
fn clip(input: &str) -> String {
    if input.chars().count() <= MAX_QUANTITY_LEN {
        input.to_owned()
    } else {
        let mut s: String = input.chars().take(MAX_QUANTITY_LEN).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpu(s: &str) -> u64 {
        parse_cpu_millis(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn mem(s: &str) -> u64 {
        parse_memory_mib(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn cpu_reason(s: &str) -> QuantityErrorReason {
        parse_cpu_millis(s).unwrap_err().reason
    }

    fn mem_reason(s: &str) -> QuantityErrorReason {
        parse_memory_mib(s).unwrap_err().reason
    }

    #[test]
    fn cpu_plain_and_milli() {
        assert_eq!(cpu("100m"), 100);
        assert_eq!(cpu("50m"), 50);
        assert_eq!(cpu("2500m"), 2500);
        assert_eq!(cpu("0.5"), 500);
        assert_eq!(cpu("2"), 2000);
        assert_eq!(cpu("1.5"), 1500);
        assert_eq!(cpu("0.1"), 100);
        assert_eq!(cpu(".5"), 500);
        assert_eq!(cpu("5."), 5000);
        assert_eq!(cpu("+1"), 1000);
        assert_eq!(cpu("007"), 7000);
        assert_eq!(cpu("0.250"), 250);
    }

    #[test]
    fn cpu_rounds_up_to_whole_millicores() {
        assert_eq!(cpu("0.0001"), 1);
        assert_eq!(cpu("0.0015"), 2);
        assert_eq!(cpu("1.0001"), 1001);
        assert_eq!(cpu("100.5m"), 101);
        assert_eq!(cpu("1n"), 1);
        assert_eq!(cpu("250000000n"), 250);
        assert_eq!(cpu("250000001n"), 251);
        assert_eq!(cpu("1500u"), 2);
        assert_eq!(cpu("1e-100"), 1);
        assert_eq!(cpu("1e-999999999999"), 1);
    }

    #[test]
    fn cpu_exponents_and_suffixes() {
        assert_eq!(cpu("1e3"), 1_000_000);
        assert_eq!(cpu("1E3"), 1_000_000);
        assert_eq!(cpu("1e+3"), 1_000_000);
        assert_eq!(cpu("5e-1"), 500);
        assert_eq!(cpu("25e-3"), 25);
        assert_eq!(cpu("1k"), 1_000_000);
        assert_eq!(cpu("1Ki"), 1_024_000);
        assert_eq!(cpu("1P"), 1_000_000_000_000_000_000);
        assert_eq!(mem("1E"), 953_674_316_407); // 10^18 / 2^20 = 953674316406.25
        assert!(matches!(
            cpu_reason("1E"),
            QuantityErrorReason::Overflow { .. }
        ));
    }

    #[test]
    fn memory_binary_and_decimal_suffixes() {
        assert_eq!(mem("64Mi"), 64);
        assert_eq!(mem("1Gi"), 1024);
        assert_eq!(mem("1.5Gi"), 1536);
        assert_eq!(mem("1Ti"), 1_048_576);
        assert_eq!(mem("1Pi"), 1 << 30);
        assert_eq!(mem("1Ei"), 1 << 40);
        assert_eq!(mem("1Ki"), 1);
        assert_eq!(mem("1024Ki"), 1);
        assert_eq!(mem("1025Ki"), 2);
        assert_eq!(mem("512M"), 489); // 512e6 / 2^20 = 488.28
        assert_eq!(mem("1G"), 954); // 1e9 / 2^20 = 953.67
        assert_eq!(mem("500k"), 1);
        assert_eq!(mem("1048576k"), 1000); // 1.048576e9 / 2^20, exact
    }

    #[test]
    fn memory_bytes_and_exponents() {
        assert_eq!(mem("128974848"), 123); // exactly 123 MiB
        assert_eq!(mem("128974849"), 124);
        assert_eq!(mem("1048576"), 1);
        assert_eq!(mem("1"), 1);
        assert_eq!(mem("1e3"), 1);
        assert_eq!(mem("129e6"), 124); // 123.02
        assert_eq!(mem("1.048576e6"), 1);
        assert_eq!(mem("128974848000m"), 123);
    }

    #[test]
    fn zero_is_accepted_in_every_spelling() {
        for s in [
            "0",
            "0m",
            "0.0",
            "000",
            "0Mi",
            "0e9",
            "0e99999999",
            "-0",
            "+0",
            ".0",
        ] {
            assert_eq!(cpu(s), 0, "{s}");
            assert_eq!(mem(s), 0, "{s}");
        }
    }

    #[test]
    fn large_values_up_to_the_limit() {
        assert_eq!(cpu("18446744073709551615m"), u64::MAX);
        assert_eq!(mem("18446744073709551615Mi"), u64::MAX);
        assert_eq!(cpu("18446744073709551.615"), 18_446_744_073_709_551_615);
        assert_eq!(
            parse_cpu_millis("18446744073709551616m")
                .unwrap_err()
                .reason,
            QuantityErrorReason::Overflow { unit: "millicores" }
        );
        assert_eq!(
            parse_memory_mib("18446744073709551616Mi")
                .unwrap_err()
                .reason,
            QuantityErrorReason::Overflow { unit: "MiB" }
        );
        // Rounding up past the maximum overflows too.
        assert!(matches!(
            cpu_reason("18446744073709551.6151"),
            QuantityErrorReason::Overflow { .. }
        ));
        for s in ["1e100", "1e999999999999999999999", "99999Ei", "1e19"] {
            assert!(
                matches!(cpu_reason(s), QuantityErrorReason::Overflow { .. }),
                "{s}"
            );
        }
        assert!(matches!(
            mem_reason("1e40"),
            QuantityErrorReason::Overflow { .. }
        ));
        assert_eq!(mem("16Ei"), 16 << 40);
    }

    #[test]
    fn empty_and_whitespace_are_rejected() {
        assert_eq!(cpu_reason(""), QuantityErrorReason::Empty);
        assert_eq!(mem_reason(""), QuantityErrorReason::Empty);
        for s in [" ", "\t", " 100m", "100m ", "1 Gi", "\n"] {
            assert_eq!(cpu_reason(s), QuantityErrorReason::Whitespace, "{s:?}");
            assert_eq!(mem_reason(s), QuantityErrorReason::Whitespace, "{s:?}");
        }
    }

    #[test]
    fn negative_values_are_rejected() {
        for s in ["-1", "-100m", "-0.5", "-1Gi", "-1e3"] {
            assert_eq!(cpu_reason(s), QuantityErrorReason::Negative, "{s}");
            assert_eq!(mem_reason(s), QuantityErrorReason::Negative, "{s}");
        }
    }

    #[test]
    fn non_finite_values_are_rejected() {
        for s in ["NaN", "nan", "inf", "-inf", "+Infinity", "INF"] {
            assert_eq!(cpu_reason(s), QuantityErrorReason::NotFinite, "{s}");
            assert_eq!(mem_reason(s), QuantityErrorReason::NotFinite, "{s}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for s in [
            "abc", "m", "Mi", ".", "-", "+", "1.2.3", "1..2", "--1", "+-1", "0x10", "1,5",
        ] {
            assert!(parse_cpu_millis(s).is_err(), "{s}");
            assert!(parse_memory_mib(s).is_err(), "{s}");
        }
        assert_eq!(cpu_reason("abc"), QuantityErrorReason::InvalidNumber);
        assert_eq!(cpu_reason("1.2.3"), QuantityErrorReason::InvalidNumber);
        assert_eq!(
            mem_reason("12Qi"),
            QuantityErrorReason::UnknownSuffix("Qi".into())
        );
        assert_eq!(
            mem_reason("1mi"),
            QuantityErrorReason::UnknownSuffix("mi".into())
        );
        assert_eq!(
            mem_reason("1KiB"),
            QuantityErrorReason::UnknownSuffix("KiB".into())
        );
        assert_eq!(
            cpu_reason("1e"),
            QuantityErrorReason::InvalidExponent("e".into())
        );
        assert_eq!(
            cpu_reason("1e3Mi"),
            QuantityErrorReason::InvalidExponent("e3Mi".into())
        );
        assert_eq!(
            cpu_reason("1e-"),
            QuantityErrorReason::InvalidExponent("e-".into())
        );
        assert_eq!(
            cpu_reason("1ü"),
            QuantityErrorReason::UnknownSuffix("ü".into())
        );
    }

    #[test]
    fn too_long_input_is_rejected_and_clipped_in_the_message() {
        let long = "1".repeat(MAX_QUANTITY_LEN + 1);
        assert_eq!(cpu_reason(&long), QuantityErrorReason::TooLong);
        let huge = "x".repeat(10_000);
        let err = parse_memory_mib(&huge).unwrap_err();
        assert!(err.to_string().len() < 300);
        assert!(err.input.ends_with('…'));
        let max = format!("{}m", "0".repeat(MAX_QUANTITY_LEN - 2) + "5");
        assert_eq!(cpu(&max), 5);
    }

    #[test]
    fn messages_quote_the_input() {
        assert_eq!(
            parse_memory_mib("12Qi").unwrap_err().to_string(),
            "invalid memory quantity \"12Qi\": unknown suffix \"Qi\" (expected one of Ki, Mi, Gi, \
             Ti, Pi, Ei, n, u, m, k, M, G, T, P, E, or an exponent such as e3)"
        );
        assert_eq!(
            parse_cpu_millis("-1").unwrap_err().to_string(),
            "invalid cpu quantity \"-1\": negative quantities are not allowed"
        );
        assert_eq!(
            parse_cpu_millis("").unwrap_err().to_string(),
            "invalid cpu quantity \"\": empty quantity, expected a number such as \"500m\", \
             \"0.5\" or \"64Mi\""
        );
        assert_eq!(
            parse_cpu_millis("1e30").unwrap_err().to_string(),
            "invalid cpu quantity \"1e30\": too large: more than 18446744073709551615 millicores"
        );
        let err = parse_cpu_millis("  ").unwrap_err();
        assert_eq!(err.kind, QuantityKind::Cpu);
        assert_eq!(err.input, "  ");
        assert!(err.to_string().contains("\"  \""));
    }

    #[test]
    fn formatting() {
        assert_eq!(format_cpu_millis(500), "500m");
        assert_eq!(format_cpu_millis(0), "0m");
        assert_eq!(format_cpu_millis(2000), "2000m");
        assert_eq!(format_memory_mib(512), "512Mi");
        assert_eq!(format_memory_mib(0), "0Mi");
    }

    /// `ceil(num / den)` computed independently of the parser, for the property tests.
    fn ceil_div(num: u128, den: u128) -> u128 {
        num.div_ceil(den)
    }

    proptest! {
        #[test]
        fn cpu_format_then_parse_round_trips(millis: u64) {
            prop_assert_eq!(parse_cpu_millis(&format_cpu_millis(millis)), Ok(millis));
        }

        #[test]
        fn memory_format_then_parse_round_trips(mib: u64) {
            prop_assert_eq!(parse_memory_mib(&format_memory_mib(mib)), Ok(mib));
        }

        #[test]
        fn cpu_decimal_fraction_is_exact(int in 0u64..1_000_000, frac in 0u64..1_000_000) {
            // int.frac with six fractional digits → ceil(value * 1000) millicores.
            let s = format!("{int}.{frac:06}");
            let micro = u128::from(int) * 1_000_000 + u128::from(frac);
            let expected = ceil_div(micro, 1000) as u64;
            prop_assert_eq!(parse_cpu_millis(&s), Ok(expected));
        }

        #[test]
        fn memory_bytes_round_up(bytes: u64) {
            let expected = ceil_div(u128::from(bytes), 1 << 20) as u64;
            prop_assert_eq!(parse_memory_mib(&bytes.to_string()), Ok(expected));
        }

        #[test]
        fn memory_suffixes_agree_with_bytes(n in 0u64..1_000_000_000, i in 0usize..6) {
            let (suffix, factor) = [
                ("k", 1_000u128),
                ("M", 1_000_000),
                ("G", 1_000_000_000),
                ("Ki", 1 << 10),
                ("Mi", 1 << 20),
                ("Gi", 1 << 30),
            ][i];
            let expected = ceil_div(u128::from(n) * factor, 1 << 20) as u64;
            prop_assert_eq!(parse_memory_mib(&format!("{n}{suffix}")), Ok(expected));
        }

        #[test]
        fn exponent_equals_shifted_digits(m in 1u64..100_000, e in 0u32..10) {
            let expanded = format!("{m}{}", "0".repeat(e as usize));
            prop_assert_eq!(
                parse_memory_mib(&format!("{m}e{e}")),
                parse_memory_mib(&expanded)
            );
            prop_assert_eq!(
                parse_cpu_millis(&format!("{m}e{e}")),
                parse_cpu_millis(&expanded)
            );
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
            let _ = parse_cpu_millis(&s);
            let _ = parse_memory_mib(&s);
        }

        #[test]
        fn quantity_like_strings_never_panic(s in "[-+]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{0,25}|[numkMGTPE]|[KMGTPE]i)?") {
            let _ = parse_cpu_millis(&s);
            let _ = parse_memory_mib(&s);
        }
    }
}
