//! The run ledger: one JSON record per execution, in the `runs` table.

use super::SqliteDb;
use crate::error::{EtlError, Result};
use crate::ledger::{RunLedger, RunRecord};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl RunLedger for SqliteDb {
    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let text = serde_json::to_string(run).map_err(EtlError::store)?;
        self.conn().execute(
            "INSERT INTO runs (execution_id, started_at, record) VALUES (?1, ?2, ?3)
             ON CONFLICT(execution_id) DO UPDATE SET
               started_at = excluded.started_at, record = excluded.record",
            params![run.execution_id, run.started_at, text],
        )?;
        Ok(())
    }

    async fn run(&self, execution_id: &str) -> Result<Option<RunRecord>> {
        self.query_runs("WHERE execution_id = ?1", params![execution_id])
            .map(|mut v| v.pop())
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.query_runs("ORDER BY started_at DESC LIMIT ?1", params![limit as i64])
    }
}

impl SqliteDb {
    fn query_runs(&self, tail: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT record FROM runs {tail}"))?;
        let rows = stmt.query_map(args, |r| r.get::<_, String>(0))?;
        rows.map(|text| serde_json::from_str(&text?).map_err(EtlError::store))
            .collect()
    }
}
