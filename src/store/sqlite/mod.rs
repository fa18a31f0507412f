//! The embedded store: one SQLite file holds the series ([`series`]), the run ledger
//! ([`ledger`]), the notification outbox ([`outbox`]), and the local engine's executions and
//! their history ([`executions`], [`owner`]), so a laptop needs nothing else. This module
//! opens the file and keeps its schema; each role is its own file. Compiled only with the
//! `sqlite` feature: no Lambda function links SQLite.
//!
//! SQLite (via rusqlite, bundled) because it is the embedded database every operator can
//! open with a standard tool, writes a whole run in one atomic transaction, and costs about
//! a millisecond to open.

use crate::error::Result;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

mod executions;
mod ledger;
mod outbox;
mod owner;
mod series;

pub use executions::HistoryWriter;
pub use outbox::OutboxEntry;
pub use owner::HEARTBEAT_EVERY;
use std::sync::{Arc, Mutex, MutexGuard};

/// The schema of a new database: what [`VERSION_0`] and every one of [`MIGRATIONS`] make of
/// an old one (`a_new_database_has_the_schema_an_old_one_is_migrated_to` compares the two).
/// Created as it is, a new file skips the migrations' `ALTER TABLE`s, each of which
/// re-reads the whole schema (about 0.9 ms of a first run).
const SCHEMA: &str = "
CREATE TABLE series (
    date      TEXT PRIMARY KEY,
    cases     INTEGER NOT NULL,
    deaths    INTEGER NOT NULL,
    recovered INTEGER             -- NULL when the source did not report it
) WITHOUT ROWID;
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message    TEXT NOT NULL,
    attributes TEXT NOT NULL      -- JSON object
);
CREATE TABLE executions (
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
    owner_host    TEXT,           -- the process running it (NULL once it ended)
    owner_pid     INTEGER,
    owner_started TEXT,
    heartbeat_at  TEXT
);
CREATE TABLE runs (
    execution_id TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    record       TEXT NOT NULL     -- JSON RunRecord
);
CREATE TABLE history (
    execution_id TEXT NOT NULL REFERENCES executions(id),
    event_id     INTEGER NOT NULL,
    event        TEXT NOT NULL,   -- JSON, shaped like a Step Functions history event
    PRIMARY KEY (execution_id, event_id)
) WITHOUT ROWID;
CREATE TABLE payloads ( -- an execution's large event payloads, each once
    execution_id TEXT NOT NULL REFERENCES executions(id),
    payload_id   INTEGER NOT NULL,
    payload      TEXT NOT NULL,   -- JSON text
    PRIMARY KEY (execution_id, payload_id)
) WITHOUT ROWID;
CREATE TABLE load_marker (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    marker TEXT NOT NULL          -- JSON LoadMarker
);
";

/// The schema of version 0 (before `PRAGMA user_version` counted migrations), frozen: a file
/// written by such a version may lack any of these tables, so they are created if missing
/// before the migrations run.
const VERSION_0: &str = "
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

/// Changes to [`VERSION_0`], in order; `PRAGMA user_version` counts those applied. A database
/// made by an older version gets the missing ones when it is opened.
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
    let tables: i64 = tx.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))?;
    if tables == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        tx.execute_batch(VERSION_0)?;
        let applied = version(&tx)?;
        for migration in MIGRATIONS.iter().skip(applied as usize) {
            tx.execute_batch(migration)?;
        }
    }
    tx.pragma_update(None, "user_version", latest)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DailyRecord;
    use crate::store::Store;
    use chrono::NaiveDate;

    /// Every table's columns (name, type, not null, default, key), and its indexes.
    fn shape(conn: &Connection) -> Vec<(String, Vec<String>)> {
        let mut tables = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        let names: Vec<String> = tables
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|n| n.unwrap())
            .collect();
        names
            .into_iter()
            .map(|table| {
                let mut columns = conn
                    .prepare(&format!("SELECT * FROM pragma_table_info('{table}')"))
                    .unwrap();
                let columns = columns
                    .query_map([], |r| {
                        Ok(format!(
                            "{} {} {} {:?} {}",
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, i64>(5)?
                        ))
                    })
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect();
                (table, columns)
            })
            .collect()
    }

    #[test]
    fn a_new_database_has_the_schema_an_old_one_is_migrated_to() {
        let new = SqliteDb::in_memory().unwrap();
        let old = Connection::open_in_memory().unwrap();
        old.execute_batch(VERSION_0).unwrap();
        let migrated = SqliteDb::init(old).unwrap();
        let (new, migrated) = (shape(&new.conn()), shape(&migrated.conn()));
        assert_eq!(new, migrated);
        assert!(new.iter().any(|(t, _)| t == "load_marker"), "{new:?}");
        let version = |db: &SqliteDb| -> i64 {
            db.conn()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            version(&SqliteDb::in_memory().unwrap()),
            MIGRATIONS.len() as i64
        );
    }

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
