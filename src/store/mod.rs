//! Where the merged series lives. The domain sees only [`Store`]; the embedded SQLite store,
//! the in-memory store for tests and the DynamoDB store implement it side by side.
//!
//! A store also holds its [`LoadMarker`]: which sources its last load applied. It is written
//! with the load itself (in the load's transaction in SQLite; marked `Loading` before the
//! first batch and `Loaded` after the last in DynamoDB), so it can never claim data the store
//! does not hold, and the no-new-data decision reads it rather than the run ledger.

pub mod dynamodb;
mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use dynamodb::DynamoStore;
pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{HEARTBEAT_EVERY, HistoryWriter, SqliteDb};

use crate::diff::{self, LoadCounts, LoadPlan};
use crate::error::Result;
use crate::payload::Fingerprints;
use crate::record::DailyRecord;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The series table: read it whole, write records by date.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync {
    /// Every stored record, sorted by date.
    async fn series(&self) -> Result<Vec<DailyRecord>>;

    /// Upserts `records` by date. Idempotent: writing a record twice leaves one row with its
    /// values, so a rerun after a partial failure is safe. The embedded store writes all of
    /// them in one transaction; DynamoDB writes batches of 25.
    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport>;

    /// Brings the series up to `load.records` and records the [`LoadMarker`], one load at a
    /// time per store: the read, the diff and the writes of two concurrent loads never
    /// interleave. A load that cannot get its turn in time fails with the retryable
    /// [`crate::EtlError::LoadInProgress`].
    async fn load(&self, load: &Load) -> Result<Applied>;

    /// The marker of the last load, if any load ever started.
    async fn marker(&self) -> Result<Option<LoadMarker>>;
}

/// One load: the merged series of an execution and the sources it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub execution_id: String,
    pub records: Vec<DailyRecord>,
    pub fingerprints: Fingerprints,
    /// Rewrite every record, changed or not.
    pub full_reload: bool,
}

impl Load {
    /// The writes that bring `stored` up to this load.
    pub fn plan(&self, stored: &[DailyRecord]) -> LoadPlan {
        diff::plan(stored, &self.records, self.full_reload)
    }

    /// The marker this load leaves, in `state`.
    pub fn marker(&self, plan: &LoadPlan, state: MarkerState) -> LoadMarker {
        LoadMarker {
            execution_id: self.execution_id.clone(),
            state,
            fingerprints: self.fingerprints.clone(),
            counts: plan.counts,
        }
    }
}

/// What a load did: its plan (counts and changed dates) and what writing it cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub plan: LoadPlan,
    pub cost: WriteReport,
}

impl Applied {
    /// A load applied in one local transaction: one request, no capacity units.
    pub fn in_one_transaction(plan: LoadPlan) -> Self {
        Self {
            plan,
            cost: WriteReport {
                requests: 1,
                write_units: 0,
            },
        }
    }
}

/// Which sources the store's last load applied, and by which execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadMarker {
    pub execution_id: String,
    pub state: MarkerState,
    pub fingerprints: Fingerprints,
    /// What the load changed (for `Loading`, what it set out to change).
    pub counts: LoadCounts,
}

impl LoadMarker {
    /// The sources the store holds exactly, if its last load completed.
    pub fn loaded(&self) -> Option<&Fingerprints> {
        (self.state == MarkerState::Loaded).then_some(&self.fingerprints)
    }
}

/// Whether the last load finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MarkerState {
    /// Writes started and may be partly applied: the store matches no sources.
    Loading,
    /// Every write is applied: the store holds the join of `fingerprints`.
    Loaded,
}

/// The cost of a write, as the backend counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteReport {
    /// Requests sent to the backend (transactions for SQLite, BatchWriteItem calls for DynamoDB).
    pub requests: u64,
    /// DynamoDB write capacity units (1 per started KB per item); 0 for the embedded store.
    pub write_units: u64,
}
/// What a failed execution left in the store, as its load marker tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Not a failure: the request itself says what was loaded.
    NotAsked,
    /// The store's last load is this execution's (finished, or cut short mid-way). Boxed: the
    /// marker carries both sources' fingerprints, much larger than the other variants.
    Load(Box<LoadMarker>),
    /// The last load is another execution's, or none ever ran.
    Nothing,
    /// The marker could not be read.
    Unknown(String),
}

impl Committed {
    pub async fn read(store: &dyn Store, execution_id: &str) -> Self {
        match store.marker().await {
            Ok(Some(m)) if !execution_id.is_empty() && m.execution_id == execution_id => {
                Self::Load(Box::new(m))
            }
            Ok(_) => Self::Nothing,
            Err(e) => Self::Unknown(e.to_string()),
        }
    }
}
