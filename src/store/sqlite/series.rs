//! The merged series and its load marker: the embedded [`Store`].

use super::SqliteDb;
use crate::error::{EtlError, Result};
use crate::record::{DailyRecord, iso};
use crate::store::{Applied, Load, LoadMarker, MarkerState, Store, WriteReport};
use async_trait::async_trait;
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};

impl SqliteDb {
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
