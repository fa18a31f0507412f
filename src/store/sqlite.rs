//! The embedded store: one SQLite file holds the series, the notification outbox, and the
//! local engine's executions and their history, so a laptop needs nothing else.
//!
//! SQLite (via rusqlite, bundled) because it is the embedded database every operator can
//! open with a standard tool, writes a whole run in one atomic transaction, and costs about
//! a millisecond to open.

use super::{Store, WriteReport};
use crate::error::{EtlError, Result};
use crate::ledger::{RunLedger, RunRecord};
use crate::record::{DailyRecord, iso};
use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS series (
    date      TEXT PRIMARY KEY,
    cases     INTEGER NOT NULL,
    deaths    INTEGER NOT NULL,
    recovered INTEGER             -- NULL when the source did not report it
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message    TEXT NOT NULL,
    attributes TEXT NOT NULL      -- JSON object
);
CREATE TABLE IF NOT EXISTS executions (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    input         TEXT NOT NULL,
    output        TEXT,
    error         TEXT,
    cause         TEXT,
    failed_state  TEXT,
    redrive_state TEXT,
    redrive_input TEXT,
    redrive_count INTEGER NOT NULL DEFAULT 0,
    ledger        TEXT            -- JSON run summary
);
CREATE TABLE IF NOT EXISTS runs (
    execution_id TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    loaded       INTEGER NOT NULL, -- 1: a success with fingerprints (what the next run compares)
    record       TEXT NOT NULL     -- JSON RunRecord
);
CREATE TABLE IF NOT EXISTS history (
    execution_id TEXT NOT NULL REFERENCES executions(id),
    event_id     INTEGER NOT NULL,
    event        TEXT NOT NULL,   -- JSON, shaped like a Step Functions history event
    PRIMARY KEY (execution_id, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS payloads ( -- an execution's large event payloads, each once
    execution_id TEXT NOT NULL REFERENCES executions(id),
    payload_id   INTEGER NOT NULL,
    payload      TEXT NOT NULL,   -- JSON text
    PRIMARY KEY (execution_id, payload_id)
) WITHOUT ROWID;
";

/// A handle on the database file; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self> {
        // WAL with NORMAL sync: a crash can lose the last transaction but never corrupts the
        // file or leaves half a run, and each commit costs one fsync fewer.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A brand-new file holds nothing to lose yet: create it without syncing (saves
        // several fsyncs on a first run), then sync every later transaction as usual.
        let fresh: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if fresh == 0 {
            conn.pragma_update(None, "synchronous", "OFF")?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction: all of it is written or none.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// One stored day, if present.
    pub fn record(&self, date: NaiveDate) -> Result<Option<DailyRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT date, cases, deaths, recovered FROM series WHERE date = ?1",
                [iso(date)],
                row_to_record,
            )
            .optional()?)
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<DailyRecord> {
    let date: String = row.get(0)?;
    let date = crate::record::parse_iso(date.as_bytes()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let count = |i| row.get::<_, i64>(i).map(|v| v as u64);
    Ok(DailyRecord::new(
        date,
        count(1)?,
        count(2)?,
        row.get::<_, Option<i64>>(3)?.map(|v| v as u64),
    ))
}

#[async_trait]
impl Store for SqliteDb {
    async fn series(&self) -> Result<Vec<DailyRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT date, cases, deaths, recovered FROM series ORDER BY date")?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport> {
        self.transaction(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO series (date, cases, deaths, recovered) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(date) DO UPDATE SET
                   cases = excluded.cases, deaths = excluded.deaths, recovered = excluded.recovered",
            )?;
            for r in records {
                stmt.execute(params![
                    iso(r.date),
                    r.cases as i64,
                    r.deaths as i64,
                    r.recovered.map(|v| v as i64)
                ])?;
            }
            Ok(())
        })?;
        Ok(WriteReport {
            requests: 1,
            write_units: 0,
        })
    }
}

#[async_trait]
impl RunLedger for SqliteDb {
    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let text = serde_json::to_string(run).map_err(EtlError::store)?;
        self.conn().execute(
            "INSERT INTO runs (execution_id, started_at, loaded, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(execution_id) DO UPDATE SET
               started_at = excluded.started_at, loaded = excluded.loaded, record = excluded.record",
            params![
                run.execution_id,
                run.started_at,
                run.is_success() && run.fingerprints.is_some(),
                text
            ],
        )?;
        Ok(())
    }

    async fn last_success(&self) -> Result<Option<RunRecord>> {
        self.query_runs(
            "WHERE loaded = 1 ORDER BY started_at DESC LIMIT 1",
            params![],
        )
        .map(|mut v| v.pop())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upserts_by_date_and_keeps_absent_recovered_as_null() {
        let db = SqliteDb::in_memory().unwrap();
        let d = |day| NaiveDate::from_ymd_opt(2020, 5, day).unwrap();
        db.write(&[
            DailyRecord::new(d(2), 5, 1, None),
            DailyRecord::new(d(1), 3, 0, Some(1)),
        ])
        .await
        .unwrap();
        db.write(&[DailyRecord::new(d(2), 6, 1, None)])
            .await
            .unwrap();
        assert_eq!(
            db.series().await.unwrap(),
            [
                DailyRecord::new(d(1), 3, 0, Some(1)),
                DailyRecord::new(d(2), 6, 1, None)
            ]
        );
        let recovered: Option<i64> = db
            .conn()
            .query_row(
                "SELECT recovered FROM series WHERE date = '2020-05-02'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(recovered, None);
    }
}
