//! Diff: compare the merged series with what the store holds and plan the writes.
//!
//! New dates are inserted, changed dates are updated, everything else is left alone and
//! nothing is ever deleted: a date that disappears from a source keeps its last known values.

use crate::merge::DateSpan;
use crate::record::DailyRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What a load will write, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Records to write, sorted by date: the inserts and updates, or every record on a full reload.
    pub writes: Vec<DailyRecord>,
    pub counts: LoadCounts,
    /// The records that are new or changed, with the value the store held before (if any).
    pub changed: Vec<(DailyRecord, Option<DailyRecord>)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// Plans the writes that bring the store up to `merged`. With `full_reload`, every merged
/// record is written again (the counts still say what actually differed).
pub fn plan(stored: &[DailyRecord], merged: &[DailyRecord], full_reload: bool) -> LoadPlan {
    let held: HashMap<_, _> = stored.iter().map(|r| (r.date, r)).collect();
    let mut plan = LoadPlan::default();
    for record in merged {
        match held.get(&record.date) {
            None => {
                plan.counts.inserted += 1;
                plan.changed.push((*record, None));
            }
            Some(old) if *old != record => {
                plan.counts.updated += 1;
                plan.changed.push((*record, Some(**old)));
            }
            Some(_) => {
                plan.counts.unchanged += 1;
                if !full_reload {
                    continue;
                }
            }
        }
        plan.writes.push(*record);
    }
    plan
}

/// From this many dates moved back to smaller counts, a load says its sources look older
/// than what the store holds. Real revisions touch a few days; an old snapshot loaded over
/// a newer one moves back every date it shares (116 with the 2021 snapshot over 2023's).
pub const OLDER_SOURCES_DATES: usize = 7;

/// The warning for sources older than the store, when at least [`OLDER_SOURCES_DATES`] of
/// the updated dates get a smaller `cases` or `deaths` than stored.
pub fn older_sources_warning(
    plan: &LoadPlan,
    latest: Option<crate::record::DailyRecord>,
) -> Option<String> {
    let back: Vec<_> = plan
        .changed
        .iter()
        .filter_map(|(new, old)| {
            let old = old.as_ref()?;
            (new.cases < old.cases || new.deaths < old.deaths).then_some(new.date)
        })
        .collect();
    if back.len() < OLDER_SOURCES_DATES {
        return None;
    }
    let spans = DateSpan::group(back.iter().copied());
    Some(format!(
        "the sources look older than what is stored: {} dates move back to smaller counts ({}{}); the sources' newest date is {}",
        back.len(),
        spans
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        if spans.len() > 3 { ", …" } else { "" },
        latest.map_or("none".to_string(), |r| crate::record::iso(r.date))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn rec(d: u32, cases: u64) -> DailyRecord {
        DailyRecord::new(NaiveDate::from_ymd_opt(2020, 4, d).unwrap(), cases, 0, None)
    }

    #[test]
    fn inserts_updates_and_leaves_the_rest() {
        let stored = [rec(1, 10), rec(2, 20), rec(3, 30)];
        let merged = [rec(2, 21), rec(3, 30), rec(4, 40)];
        let p = plan(&stored, &merged, false);
        assert_eq!(
            p.counts,
            LoadCounts {
                inserted: 1,
                updated: 1,
                unchanged: 1
            }
        );
        assert_eq!(p.writes, [rec(2, 21), rec(4, 40)]);
        assert_eq!(
            p.changed,
            [(rec(2, 21), Some(rec(2, 20))), (rec(4, 40), None)]
        );
    }

    #[test]
    fn an_identical_series_writes_nothing_and_full_reload_writes_everything() {
        let s = [rec(1, 10), rec(2, 20)];
        let p = plan(&s, &s, false);
        assert!(p.writes.is_empty());
        assert_eq!(p.counts.unchanged, 2);
        let p = plan(&s, &s, true);
        assert_eq!(p.writes, s);
        assert_eq!(p.counts.unchanged, 2);
    }

    #[test]
    fn recovered_becoming_known_is_an_update() {
        let mut after = rec(1, 10);
        after.recovered = Some(3);
        let p = plan(&[rec(1, 10)], &[after], false);
        assert_eq!(p.counts.updated, 1);
    }
}
