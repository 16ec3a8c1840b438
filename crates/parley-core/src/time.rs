//! Time. Parley stores every instant as UTC milliseconds since the Unix epoch (an `i64`) and
//! writes it on the wire as RFC 3339 with exactly three fractional digits and a `Z` suffix
//! (`2026-08-01T09:30:00.000Z`). Input accepts any RFC 3339 offset and is converted to UTC;
//! precision beyond milliseconds is truncated.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// An instant in UTC, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// Text that is neither RFC 3339 nor (where allowed) a `YYYY-MM-DD` date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

impl fmt::Display for BadTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an RFC 3339 date-time (like 2026-08-01T09:30:00Z)",
            self.0
        )
    }
}

impl std::error::Error for BadTime {}

const MS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// The current time, truncated to the millisecond.
    pub fn now() -> Self {
        Self((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant plus `ms` milliseconds (negative to go back), saturating.
    pub fn add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses an RFC 3339 date-time with any offset, e.g. `2026-08-01T11:30:00+02:00`.
    pub fn parse_rfc3339(s: &str) -> Result<Self, BadTime> {
        let dt = OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| BadTime(s.to_owned()))?;
        Ok(Self((dt.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    /// Parses a filter bound: RFC 3339, or a calendar date `YYYY-MM-DD` meaning that day's
    /// first millisecond (UTC). With `end_of_day`, a bare date means the *next* day's first
    /// millisecond, so `to=2026-08-01` includes the whole of 1 August.
    pub fn parse_bound(s: &str, end_of_day: bool) -> Result<Self, BadTime> {
        let s = s.trim();
        if s.len() == 10 {
            let date = Date::parse(s, format_description!("[year]-[month]-[day]"))
                .map_err(|_| BadTime(s.to_owned()))?;
            let start = date.midnight().assume_utc().unix_timestamp() * 1000;
            return Ok(Self(if end_of_day {
                start + MS_PER_DAY
            } else {
                start
            }));
        }
        Self::parse_rfc3339(s)
    }

    /// The first millisecond of this instant's UTC day.
    pub fn start_of_day(self) -> Self {
        Self(self.0.div_euclid(MS_PER_DAY) * MS_PER_DAY)
    }

    /// As a `time` value in UTC; `None` outside the representable range.
    pub fn to_offset_datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .ok()
            .map(|t| t.to_offset(UtcOffset::UTC))
    }

    /// RFC 3339 in UTC with milliseconds: `2026-08-01T09:30:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match self.to_offset_datetime() {
            Some(t) => t
                .format(format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                ))
                .unwrap_or_else(|_| self.0.to_string()),
            None => self.0.to_string(),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_in_utc_with_millis() {
        let t = Timestamp::parse_rfc3339("2026-08-01T11:30:00.123456+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-08-01T09:30:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn date_bounds_cover_whole_days() {
        let from = Timestamp::parse_bound("2026-08-01", false).unwrap();
        let to = Timestamp::parse_bound("2026-08-01", true).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-08-01T00:00:00.000Z");
        assert_eq!(to.to_rfc3339(), "2026-08-02T00:00:00.000Z");
        assert_eq!(to.add_millis(-1).start_of_day(), from);
        assert!(Timestamp::parse_bound("2026-13-01", false).is_err());
    }
}
