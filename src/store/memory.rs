//! An in-memory store for tests: a map, plus a count of write calls.

use super::{Store, WriteReport};
use crate::error::Result;
use crate::record::DailyRecord;
use async_trait::async_trait;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    rows: Mutex<BTreeMap<NaiveDate, DailyRecord>>,
    write_calls: Mutex<u64>,
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
}
