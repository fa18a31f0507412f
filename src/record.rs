//! The daily record every stage passes along, and its compact wire form.

use chrono::{Datelike, NaiveDate};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Cumulative US totals for one day.
///
/// `recovered` is `None` when the source does not report it (NYT never does; JHU leaves the
/// field empty on some days). Absent is never stored as zero: SQLite holds `NULL`, DynamoDB
/// omits the attribute, CSV export leaves the field empty and JSON shows `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DailyRecord {
    pub date: NaiveDate,
    pub cases: u64,
    pub deaths: u64,
    pub recovered: Option<u64>,
}

impl DailyRecord {
    pub fn new(date: NaiveDate, cases: u64, deaths: u64, recovered: Option<u64>) -> Self {
        Self {
            date,
            cases,
            deaths,
            recovered,
        }
    }
}

/// State payloads are limited to 256 KiB, and the engine copies them from state to state, so
/// a record travels as one short string, a CSV line: `"2020-03-01,75,1"`, with a fourth
/// field when `recovered` is known. (One JSON string per record, not an array of four
/// values: a fifth of the allocations wherever a payload is copied or parsed.) The array
/// form of earlier versions, `["2020-03-01",75,1]`, is still read.
impl Serialize for DailyRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        let mut line = iso(self.date);
        let _ = write!(line, ",{},{}", self.cases, self.deaths);
        if let Some(r) = self.recovered {
            let _ = write!(line, ",{r}");
        }
        s.serialize_str(&line)
    }
}

impl<'de> Deserialize<'de> for DailyRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = DailyRecord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"date,cases,deaths\" or \"date,cases,deaths,recovered\"")
            }
            fn visit_str<E: de::Error>(self, line: &str) -> Result<DailyRecord, E> {
                let bad = || E::invalid_value(de::Unexpected::Str(line), &self);
                let mut fields = line.split(',');
                let date = fields.next().ok_or_else(bad)?;
                let date = parse_iso(date.as_bytes())
                    .map_err(|e| E::custom(format_args!("date {date:?} {}", e.reason())))?;
                let mut count = || -> Result<Option<u64>, E> {
                    fields
                        .next()
                        .map(|v| v.parse().map_err(|_| bad()))
                        .transpose()
                };
                let (cases, deaths) = (count()?.ok_or_else(bad)?, count()?.ok_or_else(bad)?);
                let recovered = count()?;
                if count()?.is_some() {
                    return Err(bad());
                }
                Ok(DailyRecord::new(date, cases, deaths, recovered))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DailyRecord, A::Error> {
                let date: std::borrow::Cow<'de, str> = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let date = parse_iso(date.as_bytes())
                    .map_err(|e| de::Error::custom(format_args!("date {date:?} {}", e.reason())))?;
                let cases = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let deaths = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                let recovered = seq.next_element::<Option<u64>>()?.flatten();
                Ok(DailyRecord::new(date, cases, deaths, recovered))
            }
        }
        d.deserialize_any(RecordVisitor)
    }
}

/// Formats a date the one way this project writes dates, `YYYY-MM-DD`. With `format!`, not
/// chrono's `format`: this runs for every record of every payload, and chrono re-reads its
/// format string each time.
pub fn iso(date: NaiveDate) -> String {
    let (y, m, d) = (date.year(), date.month(), date.day());
    if !(0..=9999).contains(&y) {
        return date.format("%Y-%m-%d").to_string();
    }
    format!("{y:04}-{m:02}-{d:02}")
}

/// Why a text is not a date [`parse_iso`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// Not exactly `YYYY-MM-DD`.
    Shape,
    /// The right shape, but no such day (`2020-02-30`).
    NotInCalendar,
}

impl DateError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Shape => "is not a date in YYYY-MM-DD form",
            Self::NotInCalendar => "is not a real calendar date",
        }
    }
}

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for DateError {}

/// A real calendar date written exactly `YYYY-MM-DD` (the strict reading every source and
/// payload gets).
pub fn parse_iso(v: &[u8]) -> Result<NaiveDate, DateError> {
    let shape_ok = v.len() == 10
        && v[4] == b'-'
        && v[7] == b'-'
        && v.iter()
            .enumerate()
            .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
    if !shape_ok {
        return Err(DateError::Shape);
    }
    let num = |r: std::ops::Range<usize>| {
        v[r].iter()
            .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
    };
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10)).ok_or(DateError::NotInCalendar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_a_csv_line_and_round_trips() {
        let d = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        for (rec, text) in [
            (DailyRecord::new(d, 75, 1, None), r#""2020-03-01,75,1""#),
            (
                DailyRecord::new(d, 75, 1, Some(7)),
                r#""2020-03-01,75,1,7""#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&rec).unwrap(), text);
            assert_eq!(serde_json::from_str::<DailyRecord>(text).unwrap(), rec);
        }
        // The array form of earlier versions is still read.
        assert_eq!(
            serde_json::from_str::<DailyRecord>(r#"["2020-03-01",75,1,null]"#).unwrap(),
            DailyRecord::new(d, 75, 1, None)
        );
        for bad in [
            r#""2020-02-30,1,1""#,
            r#""2020-3-01,1,1""#,
            r#""2020-03-01,1""#,
            r#""2020-03-01,1,-1""#,
            r#""2020-03-01,1,1,1,1""#,
            r#""2020-03-01,1,1,""#,
            r#"["2020-02-30",1,1]"#,
        ] {
            assert!(serde_json::from_str::<DailyRecord>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iso_writes_what_chrono_writes() {
        for (y, m, d) in [
            (2020, 1, 22),
            (999, 12, 31),
            (9999, 1, 1),
            (10000, 1, 1),
            (-1, 6, 9),
        ] {
            let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(iso(date), date.format("%Y-%m-%d").to_string());
        }
        assert_eq!(parse_iso(b"2020-02-30"), Err(DateError::NotInCalendar));
        assert_eq!(parse_iso(b"2020-2-03"), Err(DateError::Shape));
        assert_eq!(
            parse_iso(b"2020-02-03").map(iso).as_deref(),
            Ok("2020-02-03")
        );
    }
}
