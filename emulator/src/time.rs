//! Wall-clock time and the ISO-8601 timestamps GuardDuty writes into findings
//! (`2024-06-10T12:34:56.789Z`), converted to and from Unix epoch milliseconds, the
//! unit `updatedAt` criteria use.

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Formats epoch milliseconds the way GuardDuty does: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn format_iso8601(epoch_ms: i64) -> String {
    let days = epoch_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = epoch_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        ms_of_day % 1000
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)` into epoch milliseconds.
pub(crate) fn parse_iso8601(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let separators_ok =
        bytes[4] == b'-' && bytes[7] == b'-' && bytes[13] == b':' && bytes[16] == b':';
    if !separators_ok {
        return None;
    }
    let year = digits(&bytes[0..4])?;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid {
        return None;
    }
    let (millis, zone) = split_fraction(&bytes[19..])?;
    let offset_minutes = parse_zone(zone)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// Splits an optional `.fraction` off the front; returns milliseconds and the rest.
fn split_fraction(rest: &[u8]) -> Option<(i64, &[u8])> {
    let Some(after_dot) = rest.strip_prefix(b".") else {
        return Some((0, rest));
    };
    let count = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 {
        return None;
    }
    let mut millis = 0;
    for position in 0..3 {
        let digit = after_dot
            .get(position)
            .filter(|_| position < count)
            .map_or(0, |b| i64::from(b - b'0'));
        millis = millis * 10 + digit;
    }
    Some((millis, &after_dot[count..]))
}

/// `Z`, `+HH:MM`, `-HH:MM`, `+HHMM` → offset east of UTC in minutes.
fn parse_zone(zone: &[u8]) -> Option<i64> {
    match zone {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            let magnitude = hours * 60 + minutes;
            Some(if *sign == b'-' { -magnitude } else { magnitude })
        }
        _ => None,
    }
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0_i64, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardduty_timestamps_parse_to_epoch_milliseconds() {
        assert_eq!(
            parse_iso8601("2017-02-10T00:09:35.000Z"),
            Some(1_486_685_375_000)
        );
        assert_eq!(
            parse_iso8601("2017-02-10T00:09:35Z"),
            Some(1_486_685_375_000)
        );
        assert_eq!(
            parse_iso8601("2017-02-10T00:09:35.5Z"),
            Some(1_486_685_375_500)
        );
        assert_eq!(
            parse_iso8601("2017-02-10T02:09:35.000+02:00"),
            Some(1_486_685_375_000)
        );
        assert_eq!(
            parse_iso8601("2017-02-09T23:09:35-0100"),
            Some(1_486_685_375_000)
        );
    }

    #[test]
    fn malformed_timestamps_are_rejected() {
        for text in [
            "",
            "2017-02-10",
            "2017-13-10T00:00:00Z",
            "2017-02-30T00:00:00Z",
            "2017-02-10T00:00:00",
            "2017-02-10T00:00:00.Z",
            "yesterday at noon!!",
        ] {
            assert_eq!(parse_iso8601(text), None, "{text}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for ms in [
            0,
            951_782_400_123,
            1_486_685_375_000,
            1_718_000_000_999,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_iso8601(&format_iso8601(ms)), Some(ms));
        }
        assert_eq!(
            format_iso8601(1_486_685_375_000),
            "2017-02-10T00:09:35.000Z"
        );
    }
}
