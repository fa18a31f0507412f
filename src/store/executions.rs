//! The local engine's executions and their history, in the embedded database: what
//! `covid-etl executions`, `execution` and `redrive` read.

use super::SqliteDb;
use crate::engine::HistoryEvent;
use crate::error::{EtlError, Result};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// One execution of the local engine, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub id: String,
    pub name: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` or `TIMED_OUT`, as Step Functions spells them.
    pub status: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub failed_state: Option<String>,
    /// Where a redrive resumes: the top-level state that failed and its recorded input.
    #[serde(skip)]
    pub redrive_from: Option<(String, Value)>,
    pub redrive_count: u32,
}

const COLUMNS: &str = "id, name, started_at, finished_at, status, input, output, error, cause, \
                       failed_state, redrive_state, redrive_input, redrive_count";

fn row_to_execution(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    let json = |i: usize| -> rusqlite::Result<Option<Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|t| serde_json::from_str(&t).ok()))
    };
    let redrive_state: Option<String> = r.get(10)?;
    Ok(ExecutionRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        started_at: r.get(2)?,
        finished_at: r.get(3)?,
        status: r.get(4)?,
        input: json(5)?.unwrap_or(Value::Null),
        output: json(6)?,
        error: r.get(7)?,
        cause: r.get(8)?,
        failed_state: r.get(9)?,
        redrive_from: redrive_state
            .map(|s| Ok::<_, rusqlite::Error>((s, json(11)?.unwrap_or(Value::Null))))
            .transpose()?,
        redrive_count: r.get(12)?,
    })
}

fn to_text(v: &Value) -> String {
    v.to_string()
}

impl SqliteDb {
    /// Registers a new execution; a name already used is refused, as Step Functions refuses it.
    pub fn insert_execution(&self, e: &ExecutionRecord) -> Result<()> {
        let inserted = self.conn().execute(
            &format!("INSERT INTO executions ({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13) ON CONFLICT DO NOTHING"),
            params![
                e.id, e.name, e.started_at, e.finished_at, e.status, to_text(&e.input),
                e.output.as_ref().map(to_text), e.error, e.cause, e.failed_state,
                e.redrive_from.as_ref().map(|(s, _)| s), e.redrive_from.as_ref().map(|(_, v)| to_text(v)),
                e.redrive_count
            ],
        )?;
        if inserted == 0 {
            return Err(EtlError::Execution {
                name: "ExecutionAlreadyExists",
                message: format!("an execution named \"{}\" already exists", e.name),
            });
        }
        Ok(())
    }

    /// Records how an execution ended, with the history events it produced, atomically.
    pub fn finish_execution(&self, e: &ExecutionRecord, events: &[HistoryEvent]) -> Result<()> {
        self.transaction(|tx| {
            tx.execute(
                "UPDATE executions SET finished_at = ?2, status = ?3, output = ?4, error = ?5,
                   cause = ?6, failed_state = ?7, redrive_state = ?8, redrive_input = ?9,
                   redrive_count = ?10 WHERE id = ?1",
                params![
                    e.id,
                    e.finished_at,
                    e.status,
                    e.output.as_ref().map(to_text),
                    e.error,
                    e.cause,
                    e.failed_state,
                    e.redrive_from.as_ref().map(|(s, _)| s),
                    e.redrive_from.as_ref().map(|(_, v)| to_text(v)),
                    e.redrive_count
                ],
            )?;
            // A redrive numbers its events from 1 again; stored ids continue the execution's.
            let offset: u64 = tx.query_row(
                "SELECT COALESCE(MAX(event_id), 0) FROM history WHERE execution_id = ?1",
                [&e.id],
                |r| r.get::<_, i64>(0).map(|v| v as u64),
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO history (execution_id, event_id, event) VALUES (?1, ?2, ?3)",
            )?;
            for event in events {
                let mut event = event.clone();
                event.id += offset;
                if event.previous_event_id > 0 {
                    event.previous_event_id += offset;
                }
                let text = serde_json::to_string(&event).map_err(EtlError::store)?;
                stmt.execute(params![e.id, event.id as i64, text])?;
            }
            Ok(())
        })
    }

    /// Recent executions, newest first.
    pub fn executions(&self, limit: u32) -> Result<Vec<ExecutionRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM executions ORDER BY started_at DESC, rowid DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit], row_to_execution)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One execution by id or by name.
    pub fn execution(&self, id_or_name: &str) -> Result<Option<ExecutionRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM executions WHERE id = ?1 OR name = ?1"),
                [id_or_name],
                row_to_execution,
            )
            .optional()?)
    }

    pub fn history(&self, execution_id: &str) -> Result<Vec<HistoryEvent>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT event FROM history WHERE execution_id = ?1 ORDER BY event_id")?;
        let rows = stmt.query_map([execution_id], |r| r.get::<_, String>(0))?;
        rows.map(|text| serde_json::from_str(&text?).map_err(EtlError::store))
            .collect()
    }
}
