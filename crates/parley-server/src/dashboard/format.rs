//! How the dashboard writes numbers, money, times and durations.

use parley_core::Timestamp;
use time::{OffsetDateTime, UtcOffset};

/// `1234567` -> `1,234,567`.
pub fn int(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nano-USD as dollars: `$0` for nothing, 2 decimals from a dollar up, else enough decimals to
/// show the first significant digits (`$0.0075`, `$0.000012`).
pub fn cost(nano: i64) -> String {
    if nano == 0 {
        return "$0".into();
    }
    let usd = nano as f64 / 1e9;
    if usd >= 1.0 {
        return format!(
            "${}.{:02}",
            int(nano / 1_000_000_000),
            (nano % 1_000_000_000) / 10_000_000
        );
    }
    let mut s = format!("{usd:.9}");
    while s.ends_with('0') {
        s.pop();
    }
    // Keep at most 4 significant digits after the leading zeros.
    let (int_part, frac) = s.split_once('.').unwrap_or((&s, ""));
    let zeros = frac.chars().take_while(|c| *c == '0').count();
    let keep = (zeros + 4).min(frac.len());
    let frac = &frac[..keep.max(2.min(frac.len()))];
    format!("${int_part}.{frac}")
}

/// A millisecond duration: `45s`, `2m 37s`, `1h 05m`, `3d 4h`.
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn local(t: Timestamp, offset_minutes: i32) -> Option<OffsetDateTime> {
    let offset = UtcOffset::from_whole_seconds(offset_minutes * 60).ok()?;
    Some(t.to_offset_datetime()?.to_offset(offset))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Short date and time in the viewer's offset: `Nov 20, 14:03`, with the year when it is not
/// the current one (`Nov 20 2025, 14:03`).
pub fn datetime(t: Timestamp, offset_minutes: i32) -> String {
    let (Some(d), Some(now)) = (
        local(t, offset_minutes),
        local(Timestamp::now(), offset_minutes),
    ) else {
        return t.to_rfc3339();
    };
    let month = MONTHS[d.month() as usize - 1];
    if d.year() == now.year() {
        format!("{month} {}, {:02}:{:02}", d.day(), d.hour(), d.minute())
    } else {
        format!(
            "{month} {} {}, {:02}:{:02}",
            d.day(),
            d.year(),
            d.hour(),
            d.minute()
        )
    }
}

/// Time of day with seconds, for chat bubbles: `14:03:05`.
pub fn clock(t: Timestamp, offset_minutes: i32) -> String {
    match local(t, offset_minutes) {
        Some(d) => format!("{:02}:{:02}:{:02}", d.hour(), d.minute(), d.second()),
        None => t.to_rfc3339(),
    }
}

/// Full date and time with the offset, for tooltips: `2026-11-20 14:03:05 UTC+01:00`.
pub fn full(t: Timestamp, offset_minutes: i32) -> String {
    match local(t, offset_minutes) {
        Some(d) => {
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let m = offset_minutes.unsigned_abs();
            format!(
                "{}-{:02}-{:02} {:02}:{:02}:{:02} UTC{sign}{:02}:{:02}",
                d.year(),
                d.month() as u8,
                d.day(),
                d.hour(),
                d.minute(),
                d.second(),
                m / 60,
                m % 60
            )
        }
        None => t.to_rfc3339(),
    }
}

/// The viewer's calendar date of `t`: `2026-11-20`.
pub fn date_iso(t: Timestamp, offset_minutes: i32) -> String {
    match local(t, offset_minutes) {
        Some(d) => format!("{}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
        None => t.to_rfc3339()[..10].to_owned(),
    }
}

/// A calendar date for chips: `2026-11-01` -> `Nov 1`.
pub fn day_label(iso: &str) -> String {
    let parts: Vec<&str> = iso.split('-').collect();
    match parts.as_slice() {
        [_, m, d] => match (m.parse::<usize>(), d.parse::<u32>()) {
            (Ok(m @ 1..=12), Ok(d)) => format!("{} {d}", MONTHS[m - 1]),
            _ => iso.to_owned(),
        },
        _ => iso.to_owned(),
    }
}

/// `text` between U+2068 FIRST STRONG ISOLATE and U+2069 POP DIRECTIONAL ISOLATE (Unicode
/// UAX #9), for user-controlled text inside a sentence built here: the plain-text twin of the
/// templates' `<bdi>`, so bidi controls in it cannot reorder the rest of the sentence.
pub fn isolate(text: &str) -> String {
    format!("\u{2068}{text}\u{2069}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_money_and_durations() {
        assert_eq!(int(0), "0");
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(-1000), "-1,000");
        assert_eq!(cost(0), "$0");
        assert_eq!(cost(7_500_000), "$0.0075");
        assert_eq!(cost(12_345), "$0.00001234");
        assert_eq!(cost(2_500_000_000), "$2.50");
        assert_eq!(cost(123_456_789_000), "$123.45");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(157_360), "2m 37s");
        assert_eq!(duration(3_900_000), "1h 05m");
        assert_eq!(duration(2 * 86_400_000 + 3_600_000), "2d 1h");
    }

    #[test]
    fn times_in_the_viewers_offset() {
        let t = Timestamp::parse_rfc3339("2025-11-20T23:30:05Z").unwrap();
        assert_eq!(datetime(t, 0), "Nov 20 2025, 23:30");
        assert_eq!(datetime(t, 60), "Nov 21 2025, 00:30");
        assert_eq!(clock(t, -300), "18:30:05");
        assert_eq!(full(t, 60), "2025-11-21 00:30:05 UTC+01:00");
        assert_eq!(date_iso(t, 60), "2025-11-21");
        assert_eq!(day_label("2026-11-01"), "Nov 1");
    }
}
