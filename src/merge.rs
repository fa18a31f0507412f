//! Merge: join the two sources on date.
//!
//! Only dates present in both sources are kept (one source is often a day ahead of the other).
//! A merged record takes `cases` and `deaths` from the NYT and `recovered` from JHU, the only
//! source that reports it; JHU's own confirmed and deaths counts are used for nothing else.
//!
//! JHU stopped counting US recoveries on 2020-12-14 and writes `Recovered` = 0 from then on. A
//! cumulative count cannot fall to 0: a 0 after positive values means "not reported", and
//! is kept absent, never stored as 0 ([`Joined::unreported_recovered`] says where).

use crate::error::{EtlError, Result};
use crate::record::{DailyRecord, iso};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Dates left out because only one source had them, as compact spans.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dropped {
    /// Dates only the NYT had (JHU had no row for them).
    pub nyt_only: Vec<DateSpan>,
    /// Dates only JHU had.
    pub jhu_only: Vec<DateSpan>,
}

/// A run of consecutive dates, written `2020-01-21` or `2020-01-21..2020-01-25`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpan {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DateSpan {
    pub fn days(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// Groups sorted dates into runs of consecutive days.
    pub fn group(dates: impl IntoIterator<Item = NaiveDate>) -> Vec<DateSpan> {
        let mut spans: Vec<DateSpan> = Vec::new();
        for d in dates {
            match spans.last_mut() {
                Some(span) if span.last.succ_opt() == Some(d) => span.last = d,
                _ => spans.push(DateSpan { first: d, last: d }),
            }
        }
        spans
    }
}

impl std::fmt::Display for DateSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            f.write_str(&iso(self.first))
        } else {
            write!(f, "{}..{}", iso(self.first), iso(self.last))
        }
    }
}

impl Serialize for DateSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DateSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let date =
            |t: &str| crate::record::parse_iso(t.as_bytes()).map_err(serde::de::Error::custom);
        let (first, last) = match text.split_once("..") {
            Some((a, b)) => (date(a)?, date(b)?),
            None => (date(&text)?, date(&text)?),
        };
        Ok(DateSpan { first, last })
    }
}

/// The joined series and what was left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Joined {
    pub records: Vec<DailyRecord>,
    pub dropped: Dropped,
    /// JHU dates whose `Recovered` of 0 after positive values was taken as not reported.
    pub unreported_recovered: Vec<DateSpan>,
}

/// JHU's `Recovered` as reported, date by date: a 0 after a positive value is absent.
fn reported_recovered(jhu: &[DailyRecord]) -> (Vec<Option<u64>>, Vec<NaiveDate>) {
    let mut counting = false;
    let mut stopped = Vec::new();
    let recovered = jhu
        .iter()
        .map(|h| match h.recovered {
            Some(0) if counting => {
                stopped.push(h.date);
                None
            }
            Some(v) => {
                counting |= v > 0;
                Some(v)
            }
            None => None,
        })
        .collect();
    (recovered, stopped)
}

/// Inner join on date of two date-sorted series (the extracts sort them).
pub fn join(nyt: &[DailyRecord], jhu: &[DailyRecord]) -> Result<Joined> {
    let mut out = Joined {
        records: Vec::with_capacity(nyt.len().min(jhu.len())),
        ..Joined::default()
    };
    let (mut nyt_only, mut jhu_only) = (Vec::new(), Vec::new());
    let (recovered, unreported) = reported_recovered(jhu);
    let (mut i, mut j) = (0, 0);
    while i < nyt.len() || j < jhu.len() {
        match (nyt.get(i), jhu.get(j)) {
            (Some(n), Some(h)) if n.date == h.date => {
                out.records
                    .push(DailyRecord::new(n.date, n.cases, n.deaths, recovered[j]));
                i += 1;
                j += 1;
            }
            (Some(n), Some(h)) if n.date < h.date => {
                nyt_only.push(n.date);
                i += 1;
            }
            (Some(n), None) => {
                nyt_only.push(n.date);
                i += 1;
            }
            (_, Some(h)) => {
                jhu_only.push(h.date);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    if out.records.is_empty() {
        return Err(EtlError::NoOverlap(format!(
            "the sources share no date (nyt has {} days, jhu has {})",
            nyt.len(),
            jhu.len()
        )));
    }
    out.dropped = Dropped {
        nyt_only: DateSpan::group(nyt_only),
        jhu_only: DateSpan::group(jhu_only),
    };
    out.unreported_recovered = DateSpan::group(unreported);
    Ok(out)
}

/// The thresholds behind the merge step's data-quality warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityPolicy {
    /// A source whose newest date is older than this many days is reported as stale (both
    /// real sources stopped updating in March 2023: a run must say so, not succeed quietly).
    pub stale_after_days: i64,
    /// Fewer common dates than this is reported (none at all is an error).
    pub min_overlap_days: usize,
}

impl Default for QualityPolicy {
    fn default() -> Self {
        Self {
            stale_after_days: 3,
            min_overlap_days: 30,
        }
    }
}

/// The cross-source data-quality warnings of a merge: stale sources (against `today`,
/// injected so it is testable), JHU's `Recovered` no longer reported, a short overlap, and
/// `Recovered` missing on the latest days.
pub fn quality_warnings(
    nyt: &[DailyRecord],
    jhu: &[DailyRecord],
    joined: &Joined,
    policy: &QualityPolicy,
    today: NaiveDate,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, records) in [("nyt", nyt), ("jhu", jhu)] {
        if let Some(newest) = records.last().map(|r| r.date) {
            let age = (today - newest).num_days();
            if age > policy.stale_after_days {
                warnings.push(format!(
                    "{name} is stale: its newest date {} is {age} days old (limit {} days); the source may have stopped updating",
                    crate::record::iso(newest),
                    policy.stale_after_days
                ));
            }
        }
    }
    if let (Some(first), Some(last)) = (
        joined.unreported_recovered.first(),
        joined.unreported_recovered.last(),
    ) {
        let days: i64 = joined.unreported_recovered.iter().map(DateSpan::days).sum();
        warnings.push(format!(
            "jhu stopped reporting Recovered on {}: its 0 after positive values on {days} days (to {}) is stored as not reported",
            crate::record::iso(first.first),
            crate::record::iso(last.last)
        ));
    }
    if joined.records.len() < policy.min_overlap_days {
        warnings.push(format!(
            "the sources overlap on only {} days (fewer than {})",
            joined.records.len(),
            policy.min_overlap_days
        ));
    }
    let missing_recovered = joined
        .records
        .iter()
        .rev()
        .take_while(|r| r.recovered.is_none())
        .count();
    if missing_recovered > 0 {
        let since = joined.records[joined.records.len() - missing_recovered].date;
        warnings.push(format!(
            "jhu Recovered is not reported for the latest {missing_recovered} days (since {})",
            crate::record::iso(since)
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 3, d).unwrap()
    }
    fn nyt(d: u32, cases: u64) -> DailyRecord {
        DailyRecord::new(day(d), cases, 1, None)
    }
    fn jhu(d: u32, recovered: Option<u64>) -> DailyRecord {
        DailyRecord::new(day(d), 999, 999, recovered)
    }

    #[test]
    fn keeps_common_dates_with_nyt_counts_and_jhu_recovered() {
        // NYT one day ahead at the end, JHU one day earlier at the start.
        let n = [nyt(2, 20), nyt(3, 30), nyt(4, 40)];
        let h = [jhu(1, Some(0)), jhu(2, Some(2)), jhu(3, None)];
        let j = join(&n, &h).unwrap();
        assert_eq!(
            j.records,
            [
                DailyRecord::new(day(2), 20, 1, Some(2)),
                DailyRecord::new(day(3), 30, 1, None)
            ]
        );
        assert_eq!(
            serde_json::to_string(&j.dropped).unwrap(),
            r#"{"nytOnly":["2020-03-04"],"jhuOnly":["2020-03-01"]}"#
        );
    }

    #[test]
    fn the_reverse_jhu_ahead_and_gaps_become_spans() {
        let n = [nyt(1, 1), nyt(5, 5)];
        let h = [
            jhu(1, None),
            jhu(2, None),
            jhu(3, None),
            jhu(4, None),
            jhu(6, None),
        ];
        let j = join(&n, &h).unwrap();
        assert_eq!(j.records.len(), 1);
        let text = serde_json::to_string(&j.dropped).unwrap();
        assert_eq!(
            text,
            r#"{"nytOnly":["2020-03-05"],"jhuOnly":["2020-03-02..2020-03-04","2020-03-06"]}"#
        );
        assert_eq!(serde_json::from_str::<Dropped>(&text).unwrap(), j.dropped);
    }

    #[test]
    fn a_recovered_of_zero_after_positive_values_is_not_reported() {
        // Zeros before the first recovery are real zeros; after it, JHU stopped counting.
        let n: Vec<_> = (1..=6).map(|d| nyt(d, d as u64)).collect();
        let h = [
            jhu(1, Some(0)),
            jhu(2, Some(5)),
            jhu(3, Some(7)),
            jhu(4, Some(0)),
            jhu(5, None),
            jhu(6, Some(0)),
        ];
        let j = join(&n, &h).unwrap();
        let recovered: Vec<_> = j.records.iter().map(|r| r.recovered).collect();
        assert_eq!(recovered, [Some(0), Some(5), Some(7), None, None, None]);
        assert_eq!(
            serde_json::to_value(&j.unreported_recovered).unwrap(),
            serde_json::json!(["2020-03-04", "2020-03-06"])
        );
    }

    #[test]
    fn no_common_date_is_an_error() {
        let e = join(&[nyt(1, 1)], &[jhu(2, None)]).unwrap_err();
        assert_eq!(e.name(), "NoOverlap");
    }
}
