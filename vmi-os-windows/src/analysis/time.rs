//! FILETIME (100 ns since 1601-01-01 UTC) to Unix nanoseconds and ISO 8601.

/// FILETIME of the Unix epoch.
pub const UNIX_EPOCH_FILETIME: u64 = 116_444_736_000_000_000;

/// Nanoseconds since the Unix epoch, 0 for 0 or a time before 1970 (or one that overflows).
pub fn filetime_to_unix_ns(ft: u64) -> u64 {
    ft.checked_sub(UNIX_EPOCH_FILETIME)
        .and_then(|t| t.checked_mul(100))
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.fffffffZ`, or `None` for 0.
pub fn filetime_to_iso(ft: u64) -> Option<String> {
    if ft == 0 {
        return None;
    }
    let secs = ft / 10_000_000;
    let frac = ft % 10_000_000;
    // Days since 1601-01-01, then the civil date (Howard Hinnant's algorithm, shifted to 1601).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days - 134_774);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// (year, month, day) of `z` days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(filetime_to_unix_ns(UNIX_EPOCH_FILETIME), 0);
        assert_eq!(filetime_to_unix_ns(0), 0);
        // 2021-06-01T12:34:56.1234567Z
        let ft = UNIX_EPOCH_FILETIME + 1_622_550_896 * 10_000_000 + 1_234_567;
        assert_eq!(filetime_to_unix_ns(ft), 1_622_550_896_123_456_700);
        assert_eq!(filetime_to_iso(ft).unwrap(), "2021-06-01T12:34:56.1234567Z");
        assert_eq!(filetime_to_iso(1).unwrap(), "1601-01-01T00:00:00.0000001Z");
        assert_eq!(filetime_to_iso(0), None);
        assert!(filetime_to_iso(u64::MAX).is_some());
    }
}
