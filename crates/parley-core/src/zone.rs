//! Workspace time zones (issue 16): IANA names (`Europe/Berlin`) with their DST rules, from the
//! tz database bundled into the binary by the `jiff` crate, and the calendar arithmetic the
//! insights need in such a zone (local midnights, local hours, Monday-started weeks). Times are
//! Parley's [`Timestamp`]s (UTC milliseconds).

use jiff::ToSpan;
use jiff::tz::TimeZone;

use crate::Timestamp;

/// The default workspace time zone.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// A named time zone, checked against the bundled tz database.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Zone {
    /// The zone named `name`: an IANA name such as `Europe/Berlin` or `America/New_York`
    /// (matched case-insensitively, answered in the database's spelling), or `UTC`; the text
    /// is taken as it is (no trimming).
    /// Errors: a message naming the value when the database has no such zone.
    pub fn parse(name: &str) -> Result<Zone, String> {
        let bad = || format!("{name:?} is not an IANA time zone name such as Europe/Berlin");
        // Fixed offsets and POSIX TZ strings are not names: refuse them here.
        if name.is_empty() || name.len() > 64 || name.starts_with(['+', '-']) {
            return Err(bad());
        }
        let tz = jiff::tz::db().get(name).map_err(|_| bad())?;
        let canonical = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone {
            name: canonical,
            tz,
        })
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: DEFAULT_TIME_ZONE.to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// The IANA name, e.g. `Europe/Berlin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn zoned(&self, t: Timestamp) -> jiff::Zoned {
        jiff::Timestamp::from_millisecond(t.0)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(self.tz.clone())
    }

    /// The zone's offset from UTC at `t`, in minutes east (e.g. 120 for Berlin in July).
    pub fn offset_minutes(&self, t: Timestamp) -> i32 {
        self.tz
            .to_offset(jiff::Timestamp::from_millisecond(t.0).unwrap_or_default())
            .seconds()
            / 60
    }

    /// The first instant of the local day `date` (`YYYY-MM-DD`): local midnight, or the first
    /// instant after it when a DST gap skips midnight. Errors: not a valid date.
    pub fn day_start(&self, date: &str) -> Result<Timestamp, String> {
        let d: jiff::civil::Date = date
            .parse()
            .map_err(|_| format!("{date:?} is not a date (YYYY-MM-DD)"))?;
        self.date_start(d)
            .ok_or_else(|| format!("{date:?} is out of range"))
    }

    fn date_start(&self, d: jiff::civil::Date) -> Option<Timestamp> {
        let z = d.to_zoned(self.tz.clone()).ok()?.start_of_day().ok()?;
        Some(Timestamp(z.timestamp().as_millisecond()))
    }

    /// The start of the local bucket holding `t`: `hour` (the local hour, so the two 02:00
    /// hours of an autumn night are two buckets), `day` (local midnight) or `week` (the
    /// Monday's midnight). `None` for another interval.
    pub fn bucket_start(&self, t: Timestamp, interval: &str) -> Option<Timestamp> {
        let z = self.zoned(t);
        match interval {
            "hour" => {
                let into_hour = (i64::from(z.minute()) * 60 + i64::from(z.second())) * 1000
                    + i64::from(z.millisecond());
                Some(Timestamp(t.0 - into_hour))
            }
            "day" => self.date_start(z.date()),
            "week" => {
                let back = i64::from(z.weekday().to_monday_zero_offset());
                self.date_start(z.date().checked_sub(back.days()).ok()?)
            }
            _ => None,
        }
    }

    /// The start of the bucket after the one starting at `start` (see
    /// [`Zone::bucket_start`]): 23, 24 or 25 hours later for a day across a DST change.
    pub fn next_bucket(&self, start: Timestamp, interval: &str) -> Option<Timestamp> {
        match interval {
            "hour" => self.bucket_start(start.add_millis(3_600_000), "hour"),
            "day" | "week" => {
                let days: i64 = if interval == "day" { 1 } else { 7 };
                let d = self.zoned(start).date().checked_add(days.days()).ok()?;
                self.date_start(d)
            }
            _ => None,
        }
    }

    /// The local weekday (Monday 0 .. Sunday 6) and hour (0..23) of `t`.
    pub fn weekday_hour(&self, t: Timestamp) -> (u8, u8) {
        let z = self.zoned(t);
        (
            z.weekday().to_monday_zero_offset() as u8,
            z.hour().clamp(0, 23) as u8,
        )
    }

    /// `YYYY-MM-DD` of `t` in the zone.
    pub fn date_iso(&self, t: Timestamp) -> String {
        self.zoned(t).date().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp(s.parse::<jiff::Timestamp>().unwrap().as_millisecond())
    }

    #[test]
    fn names_are_checked_and_canonical() {
        assert_eq!(
            Zone::parse("Europe/Berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(
            Zone::parse("europe/berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(Zone::parse("UTC").unwrap().name(), "UTC");
        for bad in [
            "",
            "Mars/Olympus",
            "+02:00",
            "Europe/Berlin\u{0}",
            "../../etc/passwd",
        ] {
            assert!(Zone::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days_follow_local_midnight_across_dst() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-29: clocks go from 02:00 to 03:00 (CET +1 to CEST +2).
        let d = berlin.day_start("2026-03-29").unwrap();
        assert_eq!(d, at("2026-03-28T23:00:00Z"));
        let next = berlin.next_bucket(d, "day").unwrap();
        assert_eq!(next, at("2026-03-29T22:00:00Z"), "a 23-hour day");
        assert_eq!(
            berlin.bucket_start(at("2026-03-29T22:30:00Z"), "day"),
            Some(next)
        );
        // 2026-10-25: back from +2 to +1, a 25-hour day.
        let d = berlin.day_start("2026-10-25").unwrap();
        assert_eq!(
            berlin.next_bucket(d, "day").unwrap().0 - d.0,
            25 * 3_600_000
        );
        // Weeks start on the local Monday.
        let w = berlin
            .bucket_start(at("2026-04-01T12:00:00Z"), "week")
            .unwrap();
        assert_eq!(w, at("2026-03-29T22:00:00Z"));
        assert_eq!(berlin.weekday_hour(at("2026-03-29T22:30:00Z")), (0, 0));
        assert_eq!(berlin.offset_minutes(at("2026-07-01T00:00:00Z")), 120);
        // The repeated hour of the autumn night is two buckets.
        let a = berlin
            .bucket_start(at("2026-10-25T00:30:00Z"), "hour")
            .unwrap();
        let b = berlin
            .bucket_start(at("2026-10-25T01:30:00Z"), "hour")
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(berlin.next_bucket(a, "hour"), Some(b));
        // Half-hour zones bucket by their own hours.
        let kolkata = Zone::parse("Asia/Kolkata").unwrap();
        assert_eq!(
            kolkata.bucket_start(at("2026-01-01T00:10:00Z"), "hour"),
            Some(at("2025-12-31T23:30:00Z"))
        );
    }
}
