//! Durations and byte sizes as people write and read them: parsing what they write, writing
//! settings back the same way, and printing sizes for them.
//!
//! [`format_duration`] and [`format_bytes`] write a value in the shortest form its parser
//! reads back exactly (`30s`, `2m`, `500ms`; `512m`, `64k`), so `doctor` shows a setting as
//! a user would type it; [`human_bytes`] is for reports (`18.2 MB`).

use std::time::Duration;

/// Split `30s` into `("30", "s")`: the leading number and the unit after it.
fn number_and_unit(text: &str) -> (&str, &str) {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text.split_at(split)
}

/// Parse `30`, `30s`, `2m`, `500ms`, `1h`, `7d`, `1.5s` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = number_and_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30, 30s, 2m, 500ms or 7d, got {text:?}"))?;
    let seconds = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}; use ms, s, m, h or d"
            ));
        }
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parse a byte size: `512m`, `1g`, `64k`, `512MiB`, `1GB`, `1048576` (binary multiples).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = number_and_unit(text);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a size like 512m, 1g or 65536, got {text:?}"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?}; use k, m or g"
            ));
        }
    };
    #[allow(clippy::cast_precision_loss, reason = "sizes are far below 2^52")]
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || !(0.0..=1e18).contains(&bytes) {
        return Err(format!("size {text:?} is out of range"));
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "range checked"
    )]
    Ok(bytes as u64)
}

/// Write a duration as `parse_duration` reads it: the largest of `h`, `m`, `s`, `ms` that
/// divides it, else seconds with a fraction (`1.5s`).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}s", duration.as_secs_f64());
    }
    match millis {
        0 => "0s".to_string(),
        _ if millis.is_multiple_of(86_400_000) => format!("{}d", millis / 86_400_000),
        _ if millis.is_multiple_of(3_600_000) => format!("{}h", millis / 3_600_000),
        _ if millis.is_multiple_of(60_000) => format!("{}m", millis / 60_000),
        _ if millis.is_multiple_of(1_000) => format!("{}s", millis / 1_000),
        _ => format!("{millis}ms"),
    }
}

/// Write a byte size as `parse_bytes` reads it: the largest of `g`, `m`, `k` that divides
/// it, else plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    match bytes {
        0 => "0".to_string(),
        _ if bytes.is_multiple_of(1 << 30) => format!("{}g", bytes >> 30),
        _ if bytes.is_multiple_of(1 << 20) => format!("{}m", bytes >> 20),
        _ if bytes.is_multiple_of(1 << 10) => format!("{}k", bytes >> 10),
        _ => bytes.to_string(),
    }
}

/// Human size: `812 B`, `4.0 KB`, `18.2 MB`.
pub fn human_bytes(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} KB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} GB", b / 1e9)
    }
}

/// `[year, month, day, hour, minute, second]` in UTC of `secs` seconds after the Unix epoch.
pub fn utc_fields(secs: u64) -> [u64; 6] {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    [year, month, day, rem / 3600, rem % 3600 / 60, rem % 60]
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339, UTC) of `secs` seconds after the Unix epoch.
pub fn format_utc(secs: u64) -> String {
    let [year, month, day, hour, minute, second] = utc_fields(secs);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_documented_form() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_mins(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for bad in ["", "abc", "30x", "-1", "1e400", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_in_every_documented_form() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("64k").unwrap(), 64 << 10);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        for bad in ["", "lots", "5x", "-5m"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_written_back_in_the_form_they_are_read() {
        for (duration, text) in [
            (Duration::from_secs(30), "30s"),
            (Duration::from_mins(2), "2m"),
            (Duration::from_hours(1), "1h"),
            (Duration::from_hours(48), "2d"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
        let odd = Duration::from_nanos(1_500_000_001);
        let back = parse_duration(&format_duration(odd)).unwrap();
        assert!(back.abs_diff(odd) <= Duration::from_nanos(1), "{back:?}");
        for (bytes, text) in [
            (512 << 20, "512m"),
            (1 << 30, "1g"),
            (64 << 10, "64k"),
            (1000, "1000"),
        ] {
            assert_eq!(format_bytes(bytes), text);
            assert_eq!(parse_bytes(text), Ok(bytes));
        }
    }

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(18_200_000), "18.2 MB");
    }

    #[test]
    fn utc_times_are_calendar_times() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
