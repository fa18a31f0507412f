//! The daily record every stage passes along, and its compact wire form.

use chrono::NaiveDate;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
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

/// State payloads are limited to 256 KiB, so a record travels as a bare array:
/// `["2020-03-01",75,1]`, with a fourth element when `recovered` is known.
impl Serialize for DailyRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = if self.recovered.is_some() { 4 } else { 3 };
        let mut seq = s.serialize_seq(Some(len))?;
        seq.serialize_element(&self.date.format("%Y-%m-%d").to_string())?;
        seq.serialize_element(&self.cases)?;
        seq.serialize_element(&self.deaths)?;
        if let Some(r) = self.recovered {
            seq.serialize_element(&r)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for DailyRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RecordVisitor;
        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = DailyRecord;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("[date, cases, deaths] or [date, cases, deaths, recovered]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DailyRecord, A::Error> {
                let date: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let date =
                    NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(de::Error::custom)?;
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
        d.deserialize_seq(RecordVisitor)
    }
}

/// Formats a date the one way this project writes dates.
pub fn iso(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_a_short_array_and_round_trips() {
        let d = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        for (rec, text) in [
            (DailyRecord::new(d, 75, 1, None), r#"["2020-03-01",75,1]"#),
            (
                DailyRecord::new(d, 75, 1, Some(7)),
                r#"["2020-03-01",75,1,7]"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&rec).unwrap(), text);
            assert_eq!(serde_json::from_str::<DailyRecord>(text).unwrap(), rec);
        }
        assert_eq!(
            serde_json::from_str::<DailyRecord>(r#"["2020-03-01",75,1,null]"#).unwrap(),
            DailyRecord::new(d, 75, 1, None)
        );
        assert!(serde_json::from_str::<DailyRecord>(r#"["2020-02-30",1,1]"#).is_err());
    }
}
