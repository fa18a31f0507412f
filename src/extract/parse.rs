//! What both parsers share: finding columns by header name, strict field validation,
//! duplicate detection and the day-to-day decrease warnings. (The JHU parser's record
//! reader is [`super::records::Records`].)

use super::records::Records;
use crate::error::{EtlError, Result};
use crate::record::{DailyRecord, iso};
use chrono::NaiveDate;
use csv::ByteRecord;
use std::collections::HashMap;

/// Locates required columns by name; extra columns are ignored and order does not matter,
/// but a name twice is refused: which of the two holds the data would be a guess.
pub(crate) struct Columns<'a> {
    source_name: &'a str,
    headers: ByteRecord,
}

impl<'a> Columns<'a> {
    pub(crate) fn new(source_name: &'a str, headers: ByteRecord) -> Result<Self> {
        let names: Vec<&[u8]> = headers.iter().map(trim_bom).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(EtlError::SchemaError {
                    source_name: source_name.to_string(),
                    reason: format!(
                        "column \"{}\" appears twice in the header ({})",
                        shown(name, 40),
                        describe(&header_line(&headers), 200)
                    ),
                });
            }
        }
        Ok(Self {
            source_name,
            headers,
        })
    }

    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.headers
            .iter()
            .position(|h| trim_bom(h) == name.as_bytes())
            .ok_or_else(|| EtlError::SchemaError {
                source_name: self.source_name.to_string(),
                reason: format!(
                    "missing required column \"{name}\" ({})",
                    describe(&header_line(&self.headers), 200)
                ),
            })
    }
}

/// The header as it was written, fields joined by commas.
fn header_line(headers: &ByteRecord) -> Vec<u8> {
    headers.iter().collect::<Vec<_>>().join(&b","[..])
}

/// What an error may say about a source's bytes: a short excerpt of them when they are CSV
/// text (`header: date,cases`), otherwise only what kind of body they are, never its
/// content — a file that is not CSV (`/proc/self/environ`, an HTML error page, a binary)
/// may hold secrets, and the error goes to the execution history, the ledger and every
/// subscriber of the failure notification.
pub(crate) fn describe(bytes: &[u8], max_chars: usize) -> String {
    match classify(bytes) {
        Some(kind) => format!("the body is {kind}, not CSV text"),
        None => format!("header: {}", excerpt(bytes, max_chars)),
    }
}

/// What kind of body `bytes` (its first record) is, when it is not CSV text.
fn classify(bytes: &[u8]) -> Option<&'static str> {
    let text = bytes.trim_ascii_start();
    let starts = |prefix: &str| {
        text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some("gzip-compressed")
    } else if starts("<!doctype html") || starts("<html") || starts("<") {
        Some("HTML")
    } else if starts("{") || starts("[") {
        Some("JSON")
    } else if std::str::from_utf8(bytes).is_err() {
        Some("not UTF-8")
    } else if bytes
        .iter()
        .any(|&b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n'))
    {
        Some("binary")
    } else {
        None
    }
}

/// At most `max_chars` characters of CSV text, control characters escaped.
fn excerpt(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(max_chars)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// A field value as an error shows it: its excerpt when it is text, else what it is.
fn shown(value: &[u8], max_chars: usize) -> String {
    match classify(value) {
        Some(kind) => format!("({} bytes, {kind})", value.len()),
        None => excerpt(value, max_chars),
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
            value: shown(value, 40),
            reason: reason.to_string(),
        }
    }

    /// A real calendar date written exactly `YYYY-MM-DD`.
    pub(crate) fn date(&self, column: &str, v: &[u8]) -> Result<NaiveDate> {
        crate::record::parse_iso(v).map_err(|e| self.reject(column, v, e.reason()))
    }

    /// A non-negative whole number no larger than [`MAX_COUNT`]. An integral value in decimal
    /// notation (`227685.0`, as JHU wrote the US deaths of 2020-10-28) is a whole number; a
    /// fraction (`227685.5`) is not.
    pub(crate) fn count(&self, column: &str, v: &[u8]) -> Result<u64> {
        if v.is_empty() {
            return Err(self.reject(column, v, "is empty"));
        }
        let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
        let integer = match v.iter().position(|&b| b == b'.') {
            Some(dot) if digits(&v[dot + 1..]) && v[dot + 1..].iter().all(|&b| b == b'0') => {
                &v[..dot]
            }
            _ => v,
        };
        if integer.first() == Some(&b'-') && digits(&integer[1..]) {
            return Err(self.reject(column, v, "is negative"));
        }
        if !digits(integer) {
            return Err(self.reject(column, v, "is not a whole number"));
        }
        integer
            .iter()
            .try_fold(0u64, |acc, b| {
                acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
            })
            .filter(|&n| n <= MAX_COUNT)
            .ok_or_else(|| self.reject(column, v, TOO_LARGE))
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

/// The largest count a store holds: SQLite integers and the i64 of every consumer are
/// signed, so a larger one would come back negative.
pub(crate) const MAX_COUNT: u64 = i64::MAX as u64;
const TOO_LARGE: &str = "is larger than 9223372036854775807, the largest count stored";

/// Reads every row `rows` yields into a source's series: `day` makes a row's record from its
/// fields, reading them through the [`FieldReader`] that names the row's line in any error.
pub(crate) fn read_series<R: std::io::Read>(
    source_name: &str,
    rows: &mut Records<'_, R>,
    date_column: &str,
    day: impl Fn(&FieldReader<'_>, &Records<'_, R>) -> Result<DailyRecord>,
) -> Result<super::SourceSeries> {
    let mut series = SeriesBuilder::new(source_name);
    while rows.next()? {
        let f = FieldReader {
            source_name,
            line: rows.line(),
        };
        series.push(f.line, date_column, day(&f, rows)?)?;
    }
    Ok(series.finish())
}

/// Collects a source's rows, refusing a date seen twice or a date in the future, and sorts
/// them at the end.
pub(crate) struct SeriesBuilder<'a> {
    source_name: &'a str,
    records: Vec<DailyRecord>,
    first_line: HashMap<NaiveDate, u64>,
    /// The latest date a row may have: tomorrow in UTC (a source a few hours ahead of UTC
    /// may already publish today's numbers, none can publish the day after tomorrow's).
    latest: NaiveDate,
}

impl<'a> SeriesBuilder<'a> {
    pub(crate) fn new(source_name: &'a str) -> Self {
        let today = chrono::Utc::now().date_naive();
        Self {
            source_name,
            records: Vec::with_capacity(1024),
            first_line: HashMap::with_capacity(1024),
            latest: today.succ_opt().unwrap_or(today),
        }
    }

    pub(crate) fn push(&mut self, line: u64, date_column: &str, record: DailyRecord) -> Result<()> {
        if record.date > self.latest {
            return Err(EtlError::DataQualityError {
                source_name: self.source_name.to_string(),
                line,
                column: date_column.to_string(),
                value: iso(record.date),
                reason: format!(
                    "is in the future (after tomorrow, {}, UTC)",
                    iso(self.latest)
                ),
            });
        }
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
            // Recovered falling to 0 is JHU no longer reporting it, not a revision: the merge
            // stores it as absent and says when reporting stopped.
            let stopped = column == "recovered" && after == Some(0);
            if let (Some(before), Some(after)) = (before, after)
                && after < before
                && !stopped
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
        assert_eq!(f.count("deaths", b"227685.0").unwrap(), 227_685);
        assert_eq!(f.count("deaths", b"227685.000").unwrap(), 227_685);
        assert_eq!(f.count("cases", b"9223372036854775807").unwrap(), MAX_COUNT);
        for (bad, reason) in [
            ("-88", "is negative"),
            ("12.5", "is not a whole number"),
            ("abc", "is not a whole number"),
            ("-", "is not a whole number"),
            ("", "is empty"),
            (" 5", "is not a whole number"),
            ("99999999999999999999999", TOO_LARGE),
            ("9223372036854775808", TOO_LARGE),
            ("12.50", "is not a whole number"),
            ("12.", "is not a whole number"),
            ("-3.0", "is negative"),
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
            // Recovered at 0 after positive values: reporting stopped, no revision.
            DailyRecord::new(d(6), 12, 7, Some(3)),
            DailyRecord::new(d(7), 13, 8, Some(0)),
        ];
        assert_eq!(
            decreases("nyt", &recs),
            [
                "nyt cases fell from 10 on 2021-06-03 to 9 on 2021-06-04",
                "nyt recovered fell from 2 on 2021-06-03 to 1 on 2021-06-04",
            ]
        );
    }

    #[test]
    fn a_date_after_tomorrow_is_refused_and_tomorrow_is_not() {
        let mut series = SeriesBuilder::new("nyt");
        let day = |d| NaiveDate::from_ymd_opt(2020, 3, d).unwrap();
        series.latest = day(2);
        series
            .push(2, "date", DailyRecord::new(day(2), 1, 0, None))
            .unwrap();
        let e = series
            .push(3, "date", DailyRecord::new(day(3), 1, 0, None))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nyt line 3 column \"date\": \"2020-03-03\" is in the future (after tomorrow, 2020-03-02, UTC)"
        );
    }
}
