//! The Johns Hopkins combined time series from datasets/covid-19:
//! `Date,Country/Region,Province/State,Confirmed,Recovered,Deaths` (older snapshots also
//! carry `Lat,Long`). Only country-level US rows count: `Country/Region` is `US` and
//! `Province/State` is empty.

use super::SourceSeries;
use super::parse::{Columns, FieldReader, SeriesBuilder};
use crate::error::Result;
use crate::record::DailyRecord;
use std::io::Read;

pub const SOURCE_NAME: &str = "jhu";
pub const DEFAULT_URL: &str = "https://raw.githubusercontent.com/datasets/covid-19/main/data/time-series-19-covid-combined.csv";

/// Streams the file; rows of other countries are skipped without being kept, so memory does
/// not grow with them. They must still be well-formed CSV records.
pub fn parse(reader: impl Read) -> Result<SourceSeries> {
    let mut csv = super::csv_reader(reader);
    let columns = Columns::new(SOURCE_NAME, super::headers(SOURCE_NAME, &mut csv)?);
    let date = columns.index("Date")?;
    let country = columns.index("Country/Region")?;
    let province = columns.index("Province/State")?;
    let confirmed = columns.index("Confirmed")?;
    let recovered = columns.index("Recovered")?;
    let deaths = columns.index("Deaths")?;
    let mut series = SeriesBuilder::new(SOURCE_NAME);
    let mut row = csv::ByteRecord::new();
    while super::next_record(SOURCE_NAME, &mut csv, &mut row)? {
        if &row[country] != b"US" || !row[province].is_empty() {
            continue;
        }
        let line = row.position().map_or(0, |p| p.line());
        let f = FieldReader {
            source_name: SOURCE_NAME,
            line,
        };
        let record = DailyRecord::new(
            f.date("Date", &row[date])?,
            f.count("Confirmed", &row[confirmed])?,
            f.count("Deaths", &row[deaths])?,
            f.optional_count("Recovered", &row[recovered])?,
        );
        series.push(line, "Date", record)?;
    }
    Ok(series.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\n";

    #[test]
    fn keeps_only_country_level_us_rows() {
        let text = format!(
            "{HEADER}2020-01-22,US,,1,,0\n2020-01-22,US,Washington,1,0,0\n\
             2020-01-22,\"Korea, South\",,1,0,0\n2020-01-23,US,,2,0,1\n"
        );
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_string(&s.records).unwrap(),
            r#"[["2020-01-22",1,0],["2020-01-23",2,1,0]]"#
        );
    }

    #[test]
    fn older_schema_with_lat_long_is_read_by_name() {
        let text = "Date,Country/Region,Province/State,Lat,Long,Confirmed,Recovered,Deaths\n\
                    2020-01-22,US,,40.0,-100.0,1,0,0\n";
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_string(&s.records).unwrap(),
            r#"[["2020-01-22",1,0,0]]"#
        );
    }

    #[test]
    fn bad_values_in_us_rows_are_rejected_with_their_place() {
        let text = format!("{HEADER}2020-01-22,US,,1,0,0\n2020-22-01,US,,1,0,0\n");
        let e = parse(text.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "jhu line 3 column \"Date\": \"2020-22-01\" is not a real calendar date"
        );
        let text = format!("{HEADER}2020-01-22,US,,1,0,0\n2020-01-22,Peru,,1,0\n");
        let e = parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.name(), "DataQualityError");
        assert!(e.to_string().starts_with("jhu line 3"), "{e}");
    }
}
