//! What both parsers share: finding columns by header name, strict field validation,
//! duplicate detection and the day-to-day decrease warnings.

use crate::error::{EtlError, Result};
use crate::record::{DailyRecord, iso};
use chrono::NaiveDate;
use csv::ByteRecord;
use std::collections::HashMap;

/// Locates required columns by name; extra columns are ignored and order does not matter.
pub(crate) struct Columns<'a> {
    source_name: &'a str,
    headers: ByteRecord,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(source_name: &'a str, headers: ByteRecord) -> Self {
        Self {
            source_name,
            headers,
        }
    }

    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| trim_bom(h) == name.as_bytes())
            .ok_or_else(|| EtlError::SchemaError {
                source_name: self.source_name.to_string(),
                reason: format!(
                    "missing required column \"{name}\" (header: {})",
                    String::from_utf8_lossy(self.headers.as_slice())
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            })
    }
}

fn trim_bom(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
}

/// Validates one row's fields and reports the first offending value with its place.
pub(crate) struct FieldReader<'a> {
    pub(crate) source_name: &'a str,
    pub(crate) line: u64,
}

impl FieldReader<'_> {
    fn reject(&self, column: &str, value: &[u8], reason: &str) -> EtlError {
        EtlError::DataQualityError {
            source_name: self.source_name.to_string(),
            line: self.line,
            column: column.to_string(),
            value: String::from_utf8_lossy(value).into_owned(),
            reason: reason.to_string(),
        }
    }

    /// A real calendar date written exactly `YYYY-MM-DD`.
    pub(crate) fn date(&self, column: &str, v: &[u8]) -> Result<NaiveDate> {
        let shape_ok = v.len() == 10
            && v[4] == b'-'
            && v[7] == b'-'
            && v.iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shape_ok {
            return Err(self.reject(column, v, "is not a date in YYYY-MM-DD form"));
        }
        let num = |r: std::ops::Range<usize>| {
            v[r].iter()
                .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
        };
        NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
            .ok_or_else(|| self.reject(column, v, "is not a real calendar date"))
    }

    /// A non-negative whole number.
    pub(crate) fn count(&self, column: &str, v: &[u8]) -> Result<u64> {
        if v.is_empty() {
            return Err(self.reject(column, v, "is empty"));
        }
        if v[0] == b'-' && v.len() > 1 && v[1..].iter().all(u8::is_ascii_digit) {
            return Err(self.reject(column, v, "is negative"));
        }
        if !v.iter().all(u8::is_ascii_digit) {
            return Err(self.reject(column, v, "is not a whole number"));
        }
        v.iter()
            .try_fold(0u64, |acc, b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .ok_or_else(|| self.reject(column, v, "is too large"))
    }

    /// Like [`count`](Self::count), but an empty field means "not reported".
    pub(crate) fn optional_count(&self, column: &str, v: &[u8]) -> Result<Option<u64>> {
        if v.is_empty() {
            Ok(None)
        } else {
            self.count(column, v).map(Some)
        }
    }
}

/// Collects a source's rows, refusing a date seen twice, and sorts them at the end.
pub(crate) struct SeriesBuilder<'a> {
    source_name: &'a str,
    records: Vec<DailyRecord>,
    first_line: HashMap<NaiveDate, u64>,
}

impl<'a> SeriesBuilder<'a> {
    pub(crate) fn new(source_name: &'a str) -> Self {
        Self {
            source_name,
            records: Vec::with_capacity(1024),
            first_line: HashMap::with_capacity(1024),
        }
    }

    pub(crate) fn push(&mut self, line: u64, date_column: &str, record: DailyRecord) -> Result<()> {
        if let Some(first) = self.first_line.insert(record.date, line) {
            return Err(EtlError::DataQualityError {
                source_name: self.source_name.to_string(),
                line,
                column: date_column.to_string(),
                value: iso(record.date),
                reason: format!("appears twice (first on line {first})"),
            });
        }
        self.records.push(record);
        Ok(())
    }

    pub(crate) fn finish(mut self) -> super::SourceSeries {
        self.records.sort_unstable_by_key(|r| r.date);
        let warnings = decreases(self.source_name, &self.records);
        super::SourceSeries {
            records: self.records,
            warnings,
        }
    }
}

/// Cumulative counts that fall from one day to the next: real revisions, worth a warning.
fn decreases(source_name: &str, records: &[DailyRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for pair in records.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let columns = [
            ("cases", Some(a.cases), Some(b.cases)),
            ("deaths", Some(a.deaths), Some(b.deaths)),
            ("recovered", a.recovered, b.recovered),
        ];
        for (column, before, after) in columns {
            if let (Some(before), Some(after)) = (before, after)
                && after < before
            {
                out.push(format!(
                    "{source_name} {column} fell from {before} on {} to {after} on {}",
                    iso(a.date),
                    iso(b.date)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field() -> FieldReader<'static> {
        FieldReader {
            source_name: "nyt",
            line: 7,
        }
    }

    #[test]
    fn dates_must_be_real_and_iso() {
        let f = field();
        assert_eq!(
            f.date("date", b"2020-02-29").unwrap(),
            NaiveDate::from_ymd_opt(2020, 2, 29).unwrap()
        );
        for (bad, reason) in [
            ("2021-02-29", "is not a real calendar date"),
            ("2020-13-05", "is not a real calendar date"),
            ("2020-04-31", "is not a real calendar date"),
            ("05/13/2020", "is not a date in YYYY-MM-DD form"),
            ("2020-5-13", "is not a date in YYYY-MM-DD form"),
            ("2020-05-13T00", "is not a date in YYYY-MM-DD form"),
            ("", "is not a date in YYYY-MM-DD form"),
        ] {
            let e = f.date("date", bad.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("nyt line 7 column \"date\": \"{bad}\" {reason}"),
            );
        }
    }

    #[test]
    fn counts_are_non_negative_whole_numbers() {
        let f = field();
        assert_eq!(f.count("cases", b"0").unwrap(), 0);
        assert_eq!(f.count("cases", b"80000000").unwrap(), 80_000_000);
        for (bad, reason) in [
            ("-88", "is negative"),
            ("12.5", "is not a whole number"),
            ("abc", "is not a whole number"),
            ("-", "is not a whole number"),
            ("", "is empty"),
            (" 5", "is not a whole number"),
            ("99999999999999999999999", "is too large"),
        ] {
            let e = f.count("cases", bad.as_bytes()).unwrap_err();
            assert_eq!(e.name(), "DataQualityError");
            assert!(e.to_string().ends_with(reason), "{bad}: {e}");
        }
        assert_eq!(f.optional_count("Recovered", b"").unwrap(), None);
        assert_eq!(f.optional_count("Recovered", b"3").unwrap(), Some(3));
    }

    #[test]
    fn decreases_become_warnings() {
        let d = |day| NaiveDate::from_ymd_opt(2021, 6, day).unwrap();
        let recs = [
            DailyRecord::new(d(3), 10, 5, Some(2)),
            DailyRecord::new(d(4), 9, 5, Some(1)),
            DailyRecord::new(d(5), 11, 6, None),
        ];
        assert_eq!(
            decreases("nyt", &recs),
            [
                "nyt cases fell from 10 on 2021-06-03 to 9 on 2021-06-04",
                "nyt recovered fell from 2 on 2021-06-03 to 1 on 2021-06-04",
            ]
        );
    }
}
