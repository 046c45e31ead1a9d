//! HLC stamps (nanoseconds since the Unix epoch) as UTC times a person can read.

use oplog_store::protocol::Hlc;

/// `2026-11-28T21:30:01.123Z` for a stamp; the calendar is the proleptic Gregorian one.
pub fn format_hlc(hlc: Hlc) -> String {
    let ns = hlc.0;
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Year, month, day of the day `days` after 1970-01-01 (Howard Hinnant's days-to-civil
/// algorithm, restricted to days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_hlc(Hlc(0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789
        assert_eq!(
            format_hlc(Hlc(951_827_696_789_000_000)),
            "2000-02-29T12:34:56.789Z"
        );
        // 2026-11-28 00:00:00
        assert_eq!(
            format_hlc(Hlc(1_795_824_000_000_000_000)),
            "2026-11-28T00:00:00.000Z"
        );
        assert!(format_hlc(Hlc(u64::MAX)).starts_with("2554-07-21T23:34:33"));
    }
}
