//! Times shown to people: the one formatter for the module's messages and the CLI's output,
//! so that a stored time, whatever its value, prints the same everywhere and never panics.

/// First second of year 0000 and last second of year 9999: the range RFC 3339 can write.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

/// Unix time `t` as RFC 3339 in UTC (`2026-12-01T20:47:23Z`). A value outside years
/// 0000..=9999 (a clock that was wrong when it was stored, or a damaged record) is shown as
/// `@<seconds>`, the form `date -d` reads.
pub fn display(t: i64) -> String {
    if !(FIRST..=LAST).contains(&t) {
        return format!("@{t}");
    }
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::display;

    #[test]
    fn rfc3339_in_utc_and_a_fallback_outside_it() {
        assert_eq!(display(0), "1970-01-01T00:00:00Z");
        assert_eq!(display(1_795_985_243), "2026-11-29T20:47:23Z");
        assert_eq!(display(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(display(-1), "1969-12-31T23:59:59Z");
        assert_eq!(display(super::FIRST), "0000-01-01T00:00:00Z");
        assert_eq!(display(super::LAST), "9999-12-31T23:59:59Z");
        assert_eq!(display(super::LAST + 1), "@253402300800");
        assert_eq!(display(315_000_000_000), "@315000000000");
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, super::FIRST - 1] {
            assert_eq!(display(t), format!("@{t}"));
        }
    }

    #[test]
    fn agrees_with_a_day_by_day_count() {
        // Every day from 1969 to 2101 (leap years, 2000, 2100) against a plain count.
        let mut t = -365 * 86_400 + 43_210;
        for y in 1969..=2101i64 {
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let lens = [
                31,
                28 + i64::from(leap),
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            for (m, len) in lens.iter().enumerate() {
                for d in 1..=*len {
                    let want = format!("{y:04}-{:02}-{d:02}T12:00:10Z", m + 1);
                    assert_eq!(display(t), want);
                    t += 86_400;
                }
            }
        }
    }
}
