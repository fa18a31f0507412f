//! The embedded store: one SQLite file holds the series, the notification outbox, and the
//! local engine's executions and their history, so a laptop needs nothing else.
//!
//! SQLite (via rusqlite, bundled) because it is the embedded database every operator can
//! open with a standard tool, writes a whole run in one atomic transaction, and costs about
//! a millisecond to open.

use super::{Applied, Load, LoadMarker, MarkerState, Store, WriteReport};
use crate::error::{EtlError, Result};
use crate::ledger::{RunLedger, RunRecord};
use crate::record::{DailyRecord, iso};
use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
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
    ledger        TEXT            -- dropped by migration 1
);
CREATE TABLE IF NOT EXISTS runs (
    execution_id TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    loaded       INTEGER NOT NULL, -- dropped by migration 1
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

/// Changes to [`SCHEMA`], in order; `PRAGMA user_version` counts those applied. A database made
/// by an older version gets the missing ones when it is opened.
const MIGRATIONS: &[&str] = &[
    // 1: the load marker (what the series holds), and who runs each execution.
    "CREATE TABLE load_marker (
        id     INTEGER PRIMARY KEY CHECK (id = 1),
        marker TEXT NOT NULL          -- JSON LoadMarker
     );
     ALTER TABLE executions ADD COLUMN owner_host TEXT;
     ALTER TABLE executions ADD COLUMN owner_pid INTEGER;
     ALTER TABLE executions ADD COLUMN owner_started TEXT;
     ALTER TABLE executions ADD COLUMN heartbeat_at TEXT;
     ALTER TABLE executions DROP COLUMN ledger;
     ALTER TABLE runs DROP COLUMN loaded;",
];

/// A handle on the database file; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteDb {
    /// Opens (or creates) the database, brings its schema up to date, and turns the
    /// executions of processes that died into `ABORTED` ones ([`SqliteDb::reconcile_orphans`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        let db = Self::init(conn)?;
        db.reconcile_orphans()?;
        Ok(db)
    }

    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
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
        migrate(&mut conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction: all of it is written or none. It takes the database's
    /// write lock when it begins (`BEGIN IMMEDIATE`), so what `f` reads cannot change under it
    /// before it commits, even from another process.
    pub(crate) fn transaction<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
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

/// Creates the schema and applies the [`MIGRATIONS`] it lacks, under the write lock so two
/// processes opening a new file at once do not both apply them.
fn migrate(conn: &mut Connection) -> Result<()> {
    let latest = MIGRATIONS.len() as i64;
    let version = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if version(conn)? == latest {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(SCHEMA)?;
    let applied = version(&tx)?;
    for migration in MIGRATIONS.iter().skip(applied as usize) {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", latest)?;
    tx.commit()?;
    Ok(())
}

fn upsert(tx: &rusqlite::Transaction<'_>, records: &[DailyRecord]) -> Result<()> {
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
}

fn read_series(conn: &Connection) -> Result<Vec<DailyRecord>> {
    let mut stmt =
        conn.prepare_cached("SELECT date, cases, deaths, recovered FROM series ORDER BY date")?;
    let rows = stmt.query_map([], row_to_record)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        read_series(&self.conn())
    }

    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport> {
        self.transaction(|tx| upsert(tx, records))?;
        Ok(WriteReport {
            requests: 1,
            write_units: 0,
        })
    }

    /// Read, diff, write and marker in one `BEGIN IMMEDIATE` transaction: a concurrent load
    /// waits for the write lock (the busy timeout) and then diffs against what this one
    /// committed; a crash at any point leaves either all of it or none.
    async fn load(&self, load: &Load) -> Result<Applied> {
        let plan = self
            .transaction(|tx| {
                let plan = load.plan(&read_series(tx)?);
                upsert(tx, &plan.writes)?;
                let marker = load.marker(&plan, MarkerState::Loaded);
                let text = serde_json::to_string(&marker).map_err(EtlError::store)?;
                tx.execute(
                    "INSERT INTO load_marker (id, marker) VALUES (1, ?1)
                     ON CONFLICT(id) DO UPDATE SET marker = excluded.marker",
                    [text],
                )?;
                Ok(plan)
            })
            .map_err(|e| match e {
                // The busy timeout passed while another execution held the write lock.
                EtlError::StoreThrottled(m) => EtlError::LoadInProgress(m),
                other => other,
            })?;
        Ok(Applied::in_one_transaction(plan))
    }

    async fn marker(&self) -> Result<Option<LoadMarker>> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT marker FROM load_marker WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(EtlError::store))
            .transpose()
    }
}

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
