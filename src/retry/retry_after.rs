//! The server's own word on when to retry: `retry-after-ms` (OpenAI), `Retry-After`
//! (seconds or an HTTP date, RFC 9110 §10.2.3) and `x-should-retry`. Pure parsing, no clock:
//! the caller passes `now`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The server's requested wait, from `retry-after-ms` (milliseconds, OpenAI's header) or
/// else `Retry-After` (seconds or an HTTP date, RFC 9110 §10.2.3). A date in the past
/// means "now". Unparseable values (negative, NaN, words) are ignored; a number too large
/// for a [`Duration`] (`1e21`, `1e300`, `inf`) is [`Duration::MAX`]: the server asked for a
/// wait far longer than any policy honours, which is not the same as saying nothing.
pub fn server_delay(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| seconds(v, 1000.0)) {
        return Some(ms);
    }
    let value = retry_after?.trim();
    if value.parse::<f64>().is_ok() {
        return seconds(value, 1.0);
    }
    let at = parse_http_date(value, now)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A non-negative decimal number of `1/per_second` seconds, saturating at [`Duration::MAX`].
fn seconds(text: &str, per_second: f64) -> Option<Duration> {
    let n = text.trim().parse::<f64>().ok()?;
    if n.is_nan() || n < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(n / per_second).unwrap_or(Duration::MAX))
}

/// `x-should-retry: true|false` (case-insensitive); anything else is no opinion.
pub fn should_retry_header(value: Option<&str>) -> Option<bool> {
    match value?.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Parses the three HTTP date formats: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// `now` places RFC 850's two-digit years (RFC 9110 §5.6.7: a year more than 50 years in the
/// future is the most recent past year with those digits).
pub fn parse_http_date(text: &str, now: SystemTime) -> Option<SystemTime> {
    let words: Vec<&str> = text
        .split([' ', ',', '-'])
        .filter(|w| !w.is_empty())
        .collect();
    let (day, month, year, time) = match words.as_slice() {
        // IMF-fixdate and RFC 850: weekday, day, month, year, time, "GMT".
        [_, day, month, year, time, zone] if zone.eq_ignore_ascii_case("GMT") => {
            (*day, *month, *year, *time)
        }
        // asctime: weekday, month, day, time, year.
        [_, month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u32 + 1;
    // HTTP dates have four-digit years (two in RFC 850); a longer one is garbage, and would
    // overflow the day arithmetic below.
    let mut year: i64 = year.parse().ok().filter(|y| (0..=9999).contains(y))?;
    if year < 100 {
        let this_year = 1970
            + now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| (d.as_secs() / 31_556_952) as i64);
        year += this_year - this_year % 100;
        if year > this_year + 50 {
            year -= 100;
        }
    }
    let mut hms = time.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days.checked_mul(86_400)? + (h * 3600 + m * 60 + s) as i64;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn server_delay_table() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (None, None, None),
            (Some("1500"), None, Some(ms(1500))),
            (Some("1.5"), None, Some(Duration::from_micros(1500))),
            (Some("1500"), Some("9"), Some(ms(1500))),
            (Some("junk"), Some("2"), Some(ms(2000))),
            (Some("-5"), Some("2"), Some(ms(2000))),
            (None, Some("1"), Some(ms(1000))),
            (None, Some(" 0 "), Some(ms(0))),
            (None, Some("0.25"), Some(ms(250))),
            (None, Some("-1"), None),
            (None, Some("NaN"), None),
            (None, Some("inf"), Some(Duration::MAX)),
            (None, Some("1e400"), Some(Duration::MAX)),
            (None, Some("1e21"), Some(Duration::MAX)),
            (None, Some("1e300"), Some(Duration::MAX)),
            (Some("1e300"), Some("2"), Some(Duration::MAX)),
            (Some("1e9"), None, Some(ms(1_000_000_000))),
            (Some("NaN"), Some("2"), Some(ms(2000))),
            (None, Some("soon"), None),
            (
                None,
                Some("Sun, 06 Nov 1994 08:49:47 GMT"),
                Some(ms(10_000)),
            ),
            (
                None,
                Some("Sunday, 06-Nov-94 08:50:37 GMT"),
                Some(ms(60_000)),
            ),
            (None, Some("Sun Nov  6 08:49:38 1994"), Some(ms(1000))),
            (None, Some("Sun, 06 Nov 1994 08:00:00 GMT"), Some(ms(0))),
            (None, Some("Sun, 06 Nov 1994 08:49:47 PST"), None),
            (None, Some("Sun, 32 Nov 1994 08:49:47 GMT"), None),
            (None, Some("Sun, 06 Foo 1994 08:49:47 GMT"), None),
            (None, Some("Sun, 06 Nov 1994 24:00:00 GMT"), None),
            (None, Some("Sun, 06 Nov 1994 08:49 GMT"), None),
        ];
        for (ms_header, header, want) in table {
            assert_eq!(
                server_delay(*ms_header, *header, now),
                *want,
                "{ms_header:?} {header:?}"
            );
        }
    }

    #[test]
    fn http_dates_match_known_timestamps() {
        let table = [
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Tue, 29 Feb 2000 12:00:00 GMT", 951_825_600),
            ("Sun, 29 Nov 2026 12:00:00 GMT", 1_795_953_600),
            ("Wednesday, 01-Jan-70 00:00:01 GMT", 1),
            ("Fri Dec 31 23:59:59 1999", 946_684_799),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_http_date(text, UNIX_EPOCH),
                Some(UNIX_EPOCH + Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(
            parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT", UNIX_EPOCH),
            None
        );
        assert_eq!(
            parse_http_date("Wed, 01 Jan 99999999999999 00:00:00 GMT", UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn two_digit_years_follow_the_fifty_year_rule() {
        let year_2026 = UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        let table = [
            ("76", 2076),
            ("77", 1977),
            ("00", 2000),
            ("26", 2026),
            ("99", 1999),
        ];
        for (yy, year) in table {
            let text = format!("Thursday, 01-Jan-{yy} 00:00:00 GMT");
            let parsed = parse_http_date(&text, year_2026).expect("valid date");
            let want = parse_http_date(&format!("Thu, 01 Jan {year} 00:00:00 GMT"), year_2026);
            assert_eq!(Some(parsed), want, "{yy}");
        }
    }

    #[test]
    fn should_retry_header_table() {
        let table = [
            (None, None),
            (Some("true"), Some(true)),
            (Some(" TRUE "), Some(true)),
            (Some("false"), Some(false)),
            (Some("1"), None),
            (Some(""), None),
        ];
        for (value, want) in table {
            assert_eq!(should_retry_header(value), want, "{value:?}");
        }
    }
}
