//! Durations as Go's `time.ParseDuration` reads them, and so as Kubernetes users
//! write them: `30s`, `5m`, `1h30m`.

use std::time::Duration;

/// Parses a duration as Go's `time.ParseDuration` does (and so Kubernetes users
/// write them): decimal numbers, each followed by a unit (`ns`, `us`, `µs`, `ms`,
/// `s`, `m`, `h`), such as `90s`, `1h30m` or `1.5h`; a bare `0` is zero.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    const NANOS_PER_SECOND: u128 = 1_000_000_000;
    const UNITS: [(&str, u128); 7] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", NANOS_PER_SECOND),
        ("m", 60 * NANOS_PER_SECOND),
        ("h", 3_600 * NANOS_PER_SECOND),
    ];
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() {
        return None;
    }
    let is_number_char = |c: char| c.is_ascii_digit() || c == '.';
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let (number, after) =
            rest.split_at(rest.find(|c| !is_number_char(c)).unwrap_or(rest.len()));
        let (unit, after) = after.split_at(after.find(is_number_char).unwrap_or(after.len()));
        let (_, scale) = UNITS.iter().find(|(name, _)| *name == unit)?;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return None;
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        nanos = nanos.checked_add(whole.checked_mul(*scale)?)?;
        let mut place = *scale;
        for digit in fraction.bytes() {
            place /= 10;
            nanos = nanos.checked_add(u128::from(digit - b'0') * place)?;
        }
        rest = after;
    }
    let seconds = u64::try_from(nanos / NANOS_PER_SECOND).ok()?;
    let subsecond = u32::try_from(nanos % NANOS_PER_SECOND).ok()?;
    Some(Duration::new(seconds, subsecond))
}
