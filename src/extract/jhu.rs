//! The Johns Hopkins combined time series from datasets/covid-19:
//! `Date,Country/Region,Province/State,Confirmed,Recovered,Deaths` (older snapshots also
//! carry `Lat,Long`). Only country-level US rows count: `Country/Region` is `US` and
//! `Province/State` is empty.

use super::SourceSeries;
use super::parse::{Columns, read_series};
use super::records::Records;
use crate::error::Result;
use crate::record::DailyRecord;
use std::io::Read;

pub const SOURCE_NAME: &str = "jhu";
pub const DEFAULT_URL: &str = "https://raw.githubusercontent.com/datasets/covid-19/main/data/time-series-19-covid-combined.csv";

/// Streams the file; rows of other countries are skipped without being kept, so memory does
/// not grow with them. They must still be well-formed CSV records.
///
/// The skipping is a prefilter ([`Records::keep_only`]): a row whose `Country/Region` is not
/// `US`, or whose `Province/State` is not empty, is only scanned for its end and its field
/// count (the one rule the `csv` crate applies to every record), never copied; the rows it
/// keeps are read with full CSV semantics, quoted fields included.
pub fn parse(reader: impl Read) -> Result<SourceSeries> {
    let mut rows = Records::new(SOURCE_NAME, reader);
    let columns = Columns::new(SOURCE_NAME, rows.headers()?)?;
    let date = columns.index("Date")?;
    let country = columns.index("Country/Region")?;
    let province = columns.index("Province/State")?;
    let confirmed = columns.index("Confirmed")?;
    let recovered = columns.index("Recovered")?;
    let deaths = columns.index("Deaths")?;
    rows.keep_only(&[(country, b"US"), (province, b"")]);
    read_series(SOURCE_NAME, &mut rows, "Date", |f, row| {
        Ok(DailyRecord::new(
            f.date("Date", row.field(date))?,
            f.count("Confirmed", row.field(confirmed))?,
            f.count("Deaths", row.field(deaths))?,
            f.optional_count("Recovered", row.field(recovered))?,
        ))
    })
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
            r#"["2020-01-22,1,0","2020-01-23,2,1,0"]"#
        );
    }

    #[test]
    fn older_schema_with_lat_long_is_read_by_name() {
        let text = "Date,Country/Region,Province/State,Lat,Long,Confirmed,Recovered,Deaths\n\
                    2020-01-22,US,,40.0,-100.0,1,0,0\n";
        let s = parse(text.as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_string(&s.records).unwrap(),
            r#"["2020-01-22,1,0,0"]"#
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

    fn json(text: &str) -> String {
        serde_json::to_string(&parse(text.as_bytes()).unwrap().records).unwrap()
    }

    #[test]
    fn prefilter_reads_quoted_fields_as_csv_does() {
        // A quoted "US" is the value US; a quoted field that merely contains US, or a
        // province that is a quoted empty string, is judged on its unquoted value.
        let text = format!(
            "{HEADER}2020-01-22,\"US\",,1,,0\n2020-01-23,\"US, Minor Outlying\",,9,9,9\n\
             2020-01-23,US,\"\",2,0,1\n2020-01-24,US,\"Washington, D.C.\",9,9,9\n\
             2020-01-24,\"U\"\"S\",,9,9,9\n2020-01-25,US,\"a\nb\",9,9,9\n2020-01-24,US,,3,1,1\n"
        );
        assert_eq!(
            json(&text),
            r#"["2020-01-22,1,0","2020-01-23,2,1,0","2020-01-24,3,1,1"]"#
        );
    }

    #[test]
    fn prefilter_handles_crlf_and_a_missing_final_line_break() {
        let crlf = "Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\r\n\
                    2020-01-22,US,,1,0,0\r\n2020-01-22,Peru,,5,0,0\r\n2020-01-23,US,,2,0,1";
        assert_eq!(json(crlf), r#"["2020-01-22,1,0,0","2020-01-23,2,1,0"]"#);
        let last_skipped = format!("{HEADER}2020-01-22,US,,1,0,0\n2020-01-22,Peru,,5,0,0");
        assert_eq!(json(&last_skipped), r#"["2020-01-22,1,0,0"]"#);
        // A bad value on a CRLF file is reported at its physical line.
        let e = parse("Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\r\n2020-01-22,US,,x,0,0\r\n".as_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "jhu line 2 column \"Confirmed\": \"x\" is not a whole number"
        );
    }

    #[test]
    fn prefilter_finds_its_columns_by_name_among_extras_in_any_order() {
        let text = "Lat,Province/State,Deaths,Long,Recovered,Country/Region,Confirmed,Date\n\
                    1,,0,2,,Peru,5,2020-01-22\n1,,3,2,1,US,7,2020-01-22\n\
                    1,Guam,9,2,9,US,9,2020-01-22\n1,,9,2,9,USA,9,2020-01-23\n";
        assert_eq!(json(text), r#"["2020-01-22,7,3,1"]"#);
    }

    #[test]
    fn prefilter_still_rejects_malformed_rows_of_other_countries() {
        for (row, fields) in [
            ("2020-01-22,Peru,,1,0", 5),
            ("2020-01-22,Peru,,1,0,0,7", 7),
            ("2020-01-22,\"Korea, South\",,1,0", 5),
            ("2020-01-22,US,Guam,1,0,0,0", 7),
        ] {
            let text = format!("{HEADER}2020-01-22,US,,1,0,0\n{row}\n2020-01-23,US,,2,0,1\n");
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "jhu line 3 column \"(row)\": \"{fields} fields\" does not match the header's 6 fields"
                ),
                "{row}"
            );
        }
    }
}
