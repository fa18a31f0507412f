//! What the API derives from the stored cumulative series: daily new counts, and their sums
//! per ISO week or calendar month.
//!
//! # Daily new counts
//! A day's new cases are its cumulative cases minus those of the *previous stored day* (the
//! merged series only has days both sources report, so that is usually, not always, the day
//! before). The first stored day has no previous day: its new counts are `null`, not its
//! cumulative total. New recovered is `null` when either day lacks a recovered count.
//!
//! # Revisions (negative days)
//! When a source revises a cumulative count downwards, that day's new count is negative. It
//! is kept as it is — never clamped to 0 or dropped — so a period's sum is exactly the net
//! change of the cumulative count over the period (the sums telescope: summing the daily new
//! cases of a whole series gives last cases minus first cases). Each period reports how many
//! of its days were such revisions (`revisions`), so a reader can tell a small sum caused by
//! a correction from a quiet week.

use crate::record::DailyRecord;
use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

/// One stored day with its derived daily new counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyPoint {
    pub date: NaiveDate,
    pub cases: u64,
    pub deaths: u64,
    pub recovered: Option<u64>,
    pub new_cases: Option<i64>,
    pub new_deaths: Option<i64>,
    pub new_recovered: Option<i64>,
}

fn delta(now: u64, before: u64) -> i64 {
    now as i64 - before as i64
}

/// The series (sorted by date) with each day's new counts against the previous stored day.
pub fn daily(series: &[DailyRecord]) -> Vec<DailyPoint> {
    let mut previous: Option<&DailyRecord> = None;
    series
        .iter()
        .map(|r| {
            let point = DailyPoint {
                date: r.date,
                cases: r.cases,
                deaths: r.deaths,
                recovered: r.recovered,
                new_cases: previous.map(|p| delta(r.cases, p.cases)),
                new_deaths: previous.map(|p| delta(r.deaths, p.deaths)),
                new_recovered: previous.and_then(|p| Some(delta(r.recovered?, p.recovered?))),
            };
            previous = Some(r);
            point
        })
        .collect()
}

/// How days are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// ISO 8601 weeks, Monday to Sunday, labelled `2020-W10` (the ISO week-numbering year,
    /// which can differ from the calendar year around New Year).
    Week,
    /// Calendar months, labelled `2020-03`.
    Month,
}

impl Granularity {
    /// The period holding `date`: its label and its first and last calendar day.
    pub fn period(self, date: NaiveDate) -> (String, NaiveDate, NaiveDate) {
        match self {
            Granularity::Week => {
                let week = date.iso_week();
                let monday = date - Duration::days(date.weekday().num_days_from_monday() as i64);
                (
                    format!("{}-W{:02}", week.year(), week.week()),
                    monday,
                    monday + Duration::days(6),
                )
            }
            Granularity::Month => {
                let first = date.with_day(1).expect("day 1 exists");
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .expect("a valid month");
                (
                    format!("{:04}-{:02}", first.year(), first.month()),
                    first,
                    next - Duration::days(1),
                )
            }
        }
    }
}

/// The sums of one week or month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeriodSum {
    /// `2020-W10` or `2020-03`.
    pub period: String,
    /// The period's first and last calendar day.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// The first and last stored day inside the period (and inside the requested range).
    pub first_date: NaiveDate,
    pub last_date: NaiveDate,
    /// Stored days summed; fewer than the period's length at the series' (or the range's)
    /// ends and where a source skipped days.
    pub days: u32,
    /// Sums of the days' new counts; a day without a previous stored day adds nothing.
    pub new_cases: i64,
    pub new_deaths: i64,
    /// Days whose new cases or new deaths were negative: downward revisions, included in
    /// the sums as they are.
    pub revisions: u32,
}

/// Groups `points` (sorted by date) into periods and sums their new counts.
pub fn sums(points: &[DailyPoint], granularity: Granularity) -> Vec<PeriodSum> {
    let mut out: Vec<PeriodSum> = Vec::new();
    for p in points {
        let (label, start, end) = granularity.period(p.date);
        let current = match out.last_mut() {
            Some(last) if last.period == label => last,
            _ => {
                out.push(PeriodSum {
                    period: label,
                    start,
                    end,
                    first_date: p.date,
                    last_date: p.date,
                    days: 0,
                    new_cases: 0,
                    new_deaths: 0,
                    revisions: 0,
                });
                out.last_mut().expect("just pushed")
            }
        };
        current.last_date = p.date;
        current.days += 1;
        current.new_cases += p.new_cases.unwrap_or(0);
        current.new_deaths += p.new_deaths.unwrap_or(0);
        if p.new_cases.is_some_and(|n| n < 0) || p.new_deaths.is_some_and(|n| n < 0) {
            current.revisions += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn daily_new_counts_are_against_the_previous_stored_day() {
        let series = [
            DailyRecord::new(d(2020, 3, 1), 10, 1, Some(2)),
            DailyRecord::new(d(2020, 3, 2), 15, 1, None),
            DailyRecord::new(d(2020, 3, 4), 12, 2, Some(5)),
        ];
        let p = daily(&series);
        assert_eq!(
            p.iter()
                .map(|p| (p.new_cases, p.new_deaths, p.new_recovered))
                .collect::<Vec<_>>(),
            [
                (None, None, None),
                (Some(5), Some(0), None),
                (Some(-3), Some(1), None)
            ]
        );
    }

    #[test]
    fn periods_follow_iso_weeks_and_months_and_keep_revisions_in_the_sums() {
        // 2020-12-28 (Mon) .. 2021-01-05 (Tue): ISO week 2020-W53 spans the new year.
        let series: Vec<_> = (0..9)
            .map(|i| {
                let cases = if i == 5 { 40 } else { 10 * (i + 1) };
                DailyRecord::new(d(2020, 12, 28) + Duration::days(i as i64), cases, 0, None)
            })
            .collect();
        let points = daily(&series);
        let weeks = sums(&points, Granularity::Week);
        assert_eq!(
            weeks
                .iter()
                .map(|w| (w.period.as_str(), w.days, w.new_cases, w.revisions))
                .collect::<Vec<_>>(),
            // W53: 10 (no delta), 20, 30, 40, 50, 40 (-10), 70 → 60 = 70 - 10.
            [("2020-W53", 7, 60, 1), ("2021-W01", 2, 20, 0)]
        );
        assert_eq!(
            (weeks[0].start, weeks[0].end),
            (d(2020, 12, 28), d(2021, 1, 3))
        );
        let months = sums(&points, Granularity::Month);
        assert_eq!(
            months
                .iter()
                .map(|m| (m.period.as_str(), m.start, m.end, m.new_cases))
                .collect::<Vec<_>>(),
            [
                ("2020-12", d(2020, 12, 1), d(2020, 12, 31), 30),
                ("2021-01", d(2021, 1, 1), d(2021, 1, 31), 50)
            ]
        );
        let total: i64 = months.iter().map(|m| m.new_cases).sum();
        assert_eq!(total, 90 - 10, "sums telescope to last minus first");
    }
}
