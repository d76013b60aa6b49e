//! Time as mltrail speaks it: milliseconds since the Unix epoch (MLflow's unit), UTC calendar
//! days for the prediction-log archive, RFC 3339 for people, and the durations and instants a
//! user types (`--since 6h`, a monitor's `--window 15m`). The calendar math is jiff's: a date
//! that does not exist (February 31, hour 25) is refused rather than rolled over.

use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

/// Milliseconds since the Unix epoch, the time unit of every MLflow timestamp.
pub fn now_millis() -> i64 {
    Timestamp::now().as_millisecond()
}

/// What a user typed that is not a time or a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("`{text}` is not a duration such as 30s, 15m, 1h or 1d")]
    Duration { text: String },
    #[error(
        "`{text}` is not a date (2026-11-27), a time (2026-11-27T10:00:00Z, or with an offset such as +02:00) or a duration (6h)"
    )]
    Instant { text: String },
    #[error("`{text}` is outside the range of representable times")]
    OutOfRange { text: String },
}

/// Milliseconds in a duration: `90s`, `15m`, `1h`, `7d`, or terms of those together such as
/// `1h30m`. Days are 24 hours; anything else (weeks, fractions, `6h ago`, ISO 8601 `PT1H`, a
/// sign) is refused, so a duration always means a span forward of that many whole units.
pub fn parse_duration_ms(text: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::Duration {
        text: text.to_string(),
    };
    let t = text.trim();
    // The grammar is ours (whole numbers, each with one of s, m, h, d); jiff does the arithmetic,
    // with its range checks.
    let mut terms = 0;
    let mut digits = 0;
    for c in t.chars() {
        match c {
            '0'..='9' => digits += 1,
            's' | 'm' | 'h' | 'd' if digits > 0 => {
                digits = 0;
                terms += 1;
            }
            _ => return Err(bad()),
        }
    }
    if terms == 0 || digits > 0 {
        return Err(bad());
    }
    let span: Span = t.parse().map_err(|_| bad())?;
    let duration: SignedDuration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| bad())?;
    i64::try_from(duration.as_millis()).map_err(|_| bad())
}

/// A duration as [`parse_duration_ms`] reads it back, in its largest whole unit (`1h`, `90s`;
/// below a second, whole seconds).
pub fn duration_text(ms: i64) -> String {
    match ms {
        m if m % 86_400_000 == 0 && m > 0 => format!("{}d", m / 86_400_000),
        m if m % 3_600_000 == 0 && m > 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 && m > 0 => format!("{}m", m / 60_000),
        m => format!("{}s", m / 1000),
    }
}

/// Milliseconds since the epoch for an instant a user typed: a UTC date (`2026-11-27`, its
/// midnight), a time (`2026-11-27T10:00:00Z`, `…+02:00`; without an offset it is UTC), or a
/// duration before `now_ms` (`90m`, `6h`, `7d`).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let t = text.trim();
    // Text in the duration alphabet is a duration or an error about one (`9999999d` is too long,
    // not "not a date").
    let duration_like = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 's' | 'm' | 'h' | 'd'));
    if duration_like {
        let ago = parse_duration_ms(t)?;
        return now_ms
            .checked_sub(ago)
            .ok_or_else(|| TimeError::OutOfRange {
                text: text.to_string(),
            });
    }
    let instant = if let Ok(ts) = t.parse::<Timestamp>() {
        ts
    } else if let Ok(dt) = t.parse::<DateTime>() {
        Offset::UTC
            .to_timestamp(dt)
            .map_err(|_| TimeError::OutOfRange {
                text: text.to_string(),
            })?
    } else if let Ok(date) = t.parse::<Date>() {
        Offset::UTC
            .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| TimeError::OutOfRange {
                text: text.to_string(),
            })?
    } else {
        return Err(TimeError::Instant {
            text: text.to_string(),
        });
    };
    Ok(instant.as_millisecond())
}

fn timestamp(time_ms: i64) -> Timestamp {
    // Out-of-range milliseconds clamp to jiff's limits (years -9999 and 9999): the archive and
    // the reports never hold such times, and a printed time must not fail.
    Timestamp::from_millisecond(time_ms).unwrap_or(if time_ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `yyyy-mm-dd`, the UTC calendar day of a millisecond timestamp (the archive's folder names).
pub fn utc_date(time_ms: i64) -> String {
    timestamp(time_ms).strftime("%Y-%m-%d").to_string()
}

/// `2026-11-27T10:00:00Z`: a millisecond timestamp in UTC, to the second.
pub fn rfc3339_seconds(time_ms: i64) -> String {
    timestamp(time_ms.div_euclid(1000) * 1000)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `2026-11-27T10:00:00.123Z`: a millisecond timestamp in UTC, to the millisecond.
pub fn rfc3339_millis(time_ms: i64) -> String {
    timestamp(time_ms)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("90s"), Ok(90_000));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        for bad in [
            "1w",
            "-5m",
            "",
            "5",
            "1mo",
            "x",
            "99999999999999999d",
            "6h ago",
            "PT1H",
            "1.5h",
            "500ms",
            "h",
            "1h30",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_print_as_they_are_read() {
        for ms in [86_400_000, 7_200_000, 90_000, 5_400_000, 0] {
            assert_eq!(parse_duration_ms(&duration_text(ms)), Ok(ms));
        }
        assert_eq!(duration_text(3_600_000), "1h");
    }

    #[test]
    fn instants_are_real_calendar_times() {
        assert_eq!(parse_since("1970-01-02", 0), Ok(86_400_000));
        assert_eq!(
            parse_since("2026-11-27T00:00:00Z", 0),
            Ok(1_795_737_600_000)
        );
        assert_eq!(parse_since("2026-11-27T00:00:00", 0), Ok(1_795_737_600_000));
        assert_eq!(
            parse_since("2026-11-27T02:00:00+02:00", 0),
            Ok(1_795_737_600_000)
        );
        assert_eq!(parse_since("6h", 10 * 3_600_000), Ok(4 * 3_600_000));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-02-31",
            "2026-11-27T25:00:00Z",
            "2026-11-27T10:61:00Z",
        ] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
        assert_eq!(parse_since("10d", 0), Ok(-864_000_000));
        assert!(matches!(
            parse_since("9999999d", 0),
            Err(TimeError::Duration { .. })
        ));
        assert!(matches!(
            parse_since("7000000d", i64::MIN + 1),
            Err(TimeError::OutOfRange { .. })
        ));
    }

    #[test]
    fn printed_in_utc() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_745_151_565), "2026-11-27");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(rfc3339_seconds(1_795_754_710_999), "2026-11-27T04:45:10Z");
        assert_eq!(
            rfc3339_millis(1_795_754_710_042),
            "2026-11-27T04:45:10.042Z"
        );
    }
}
