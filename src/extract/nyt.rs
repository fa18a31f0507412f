//! The New York Times national file `us.csv`: `date,cases,deaths`.

use super::SourceSeries;
use super::parse::{Columns, read_series};
use super::records::Records;
use crate::error::Result;
use crate::record::DailyRecord;
use std::io::Read;

pub const SOURCE_NAME: &str = "nyt";
pub const DEFAULT_URL: &str =
    "https://raw.githubusercontent.com/nytimes/covid-19-data/master/us.csv";

/// Reads the whole file as a stream; every row must be valid.
pub fn parse(reader: impl Read) -> Result<SourceSeries> {
    let mut rows = Records::new(SOURCE_NAME, reader);
    let columns = Columns::new(SOURCE_NAME, rows.headers()?)?;
    let (date, cases, deaths) = (
        columns.index("date")?,
        columns.index("cases")?,
        columns.index("deaths")?,
    );
    read_series(SOURCE_NAME, &mut rows, "date", |f, row| {
        Ok(DailyRecord::new(
            f.date("date", row.field(date))?,
            f.count("cases", row.field(cases))?,
            f.count("deaths", row.field(deaths))?,
            None,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_by_name_in_any_order_and_ignores_extras() {
        let s = parse("deaths,extra,date,cases\n0,x,2020-01-22,1\n1,y,2020-01-21,1\n".as_bytes())
            .unwrap();
        assert_eq!(
            serde_json::to_string(&s.records).unwrap(),
            r#"["2020-01-21,1,1","2020-01-22,1,0"]"#
        );
        assert_eq!(
            s.warnings,
            ["nyt deaths fell from 1 on 2020-01-21 to 0 on 2020-01-22"]
        );
    }

    #[test]
    fn names_the_missing_column() {
        let e = parse("date,cases\n2020-01-21,1\n".as_bytes()).unwrap_err();
        assert_eq!(e.name(), "SchemaError");
        assert!(
            e.to_string().contains("missing required column \"deaths\""),
            "{e}"
        );
    }

    #[test]
    fn names_the_physical_line_on_a_crlf_file() {
        let e = parse("date,cases,deaths\r\n2020-01-21,1,0\r\n\r\n2020-01-22,x,0\r\n".as_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "nyt line 4 column \"cases\": \"x\" is not a whole number"
        );
    }

    #[test]
    fn names_line_column_and_value() {
        let e =
            parse("date,cases,deaths\n2020-01-21,1,0\n2020-01-22,-3,0\n".as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nyt line 3 column \"cases\": \"-3\" is negative"
        );
        let e =
            parse("date,cases,deaths\n2020-01-21,1,0\n2020-01-21,2,0\n".as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nyt line 3 column \"date\": \"2020-01-21\" appears twice (first on line 2)"
        );
    }
}
