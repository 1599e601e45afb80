//! Durations and sizes as written in the config file: `"500ms"`, `"30s"`, `"16KiB"`.

use std::time::Duration;

/// The units a duration may use, for error messages.
pub(crate) const DURATION_UNITS: &str = "ms, s, m, h, d";

/// The units a size may use, for error messages.
pub(crate) const SIZE_UNITS: &str =
    "B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of 1024)";

/// Parses `"<integer><unit>"` with unit `ms`, `s`, `m`, `h` or `d`. `"0s"` parses as zero;
/// whether zero is allowed is the caller's business.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration {text:?}: write a whole number and a unit ({DURATION_UNITS}), e.g. \"500ms\", \"30s\", \"2m\""
        )
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(invalid)?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Parses a size string: a whole number and an optional unit (bytes when absent). Units are
/// case-insensitive; a space between number and unit is allowed.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid size {text:?}: write bytes as an integer, or a whole number and a unit ({SIZE_UNITS}), e.g. \"16KiB\""
        )
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(invalid)?;
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Formats a byte count the way the defaults are written (`16KiB`), for messages.
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes % factor == 0 {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes} bytes")
}

/// Splits leading ASCII digits from the rest; `None` when there are no digits or the number
/// overflows.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let (number, unit) = text.split_at(digits);
    Some((number.parse().ok()?, unit))
}
