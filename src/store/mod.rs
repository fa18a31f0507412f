//! Where the merged series lives. The domain sees only [`Store`]; the embedded SQLite store,
//! the in-memory store for tests and the DynamoDB store implement it side by side.

pub mod dynamodb;
mod executions;
mod memory;
pub mod sqlite;

pub use dynamodb::DynamoStore;
pub use executions::ExecutionRecord;
pub use memory::MemoryStore;
pub use sqlite::SqliteDb;

use crate::error::Result;
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
