//! An in-memory store for tests: a map, plus a count of write calls.

use super::{Applied, Load, LoadMarker, MarkerState, Store, WriteReport};
use crate::error::Result;
use crate::ledger::{RunLedger, RunRecord};
use crate::record::DailyRecord;
use async_trait::async_trait;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<BTreeMap<NaiveDate, DailyRecord>>,
    write_calls: Mutex<u64>,
    marker: Mutex<Option<LoadMarker>>,
    runs: Mutex<Vec<RunRecord>>,
}

impl MemoryStore {
    /// How many times [`Store::write`] was called.
    pub fn write_calls(&self) -> u64 {
        *self.write_calls.lock().unwrap()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn series(&self) -> Result<Vec<DailyRecord>> {
        Ok(self.rows.lock().unwrap().values().copied().collect())
    }

    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport> {
        *self.write_calls.lock().unwrap() += 1;
        let mut rows = self.rows.lock().unwrap();
        for r in records {
            rows.insert(r.date, *r);
        }
        Ok(WriteReport {
            requests: 1,
            write_units: 0,
        })
    }

    /// Under the marker's lock: one load at a time.
    async fn load(&self, load: &Load) -> Result<Applied> {
        let mut marker = self.marker.lock().unwrap();
        let mut rows = self.rows.lock().unwrap();
        let plan = load.plan(&rows.values().copied().collect::<Vec<_>>());
        if !plan.writes.is_empty() {
            *self.write_calls.lock().unwrap() += 1;
        }
        rows.extend(plan.writes.iter().map(|r| (r.date, *r)));
        *marker = Some(load.marker(&plan, MarkerState::Loaded));
        Ok(Applied::in_one_transaction(plan))
    }

    async fn marker(&self) -> Result<Option<LoadMarker>> {
        Ok(self.marker.lock().unwrap().clone())
    }
}

#[async_trait]
impl RunLedger for MemoryStore {
    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let mut runs = self.runs.lock().unwrap();
        runs.retain(|r| r.execution_id != run.execution_id);
        runs.push(run.clone());
        runs.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        Ok(())
    }

    async fn run(&self, execution_id: &str) -> Result<Option<RunRecord>> {
        let runs = self.runs.lock().unwrap();
        Ok(runs
            .iter()
            .find(|r| r.execution_id == execution_id)
            .cloned())
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        Ok(self
            .runs
            .lock()
            .unwrap()
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }
}
