//! The local engine's executions and their history, in the embedded database: what
//! `covid-etl executions`, `execution` and `redrive` read.

use super::SqliteDb;
use crate::engine::HistoryEvent;
use crate::error::{EtlError, Result};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

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

impl ExecutionRecord {
    /// A new execution, as registered when it starts.
    pub fn running(id: String, name: String, started_at: String, input: Value) -> Self {
        Self {
            id,
            name,
            started_at,
            finished_at: None,
            status: "RUNNING".into(),
            input,
            output: None,
            error: None,
            cause: None,
            failed_state: None,
            redrive_from: None,
            redrive_count: 0,
        }
    }
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
            let next_id = |table: &str, column: &str| -> Result<u64> {
                Ok(tx.query_row(
                    &format!(
                        "SELECT COALESCE(MAX({column}), 0) FROM {table} WHERE execution_id = ?1"
                    ),
                    [&e.id],
                    |r| r.get::<_, i64>(0).map(|v| v as u64),
                )?)
            };
            let offset = next_id("history", "event_id")?;
            let mut payloads = PayloadWriter {
                stmt: tx.prepare_cached(
                    "INSERT INTO payloads (execution_id, payload_id, payload) VALUES (?1, ?2, ?3)",
                )?,
                execution_id: &e.id,
                next_id: next_id("payloads", "payload_id")? + 1,
                seen: HashMap::new(),
            };
            let mut stmt = tx.prepare_cached(
                "INSERT INTO history (execution_id, event_id, event) VALUES (?1, ?2, ?3)",
            )?;
            for event in events {
                let stored = HistoryEvent {
                    id: event.id + offset,
                    previous_event_id: match event.previous_event_id {
                        0 => 0,
                        previous => previous + offset,
                    },
                    timestamp: event.timestamp,
                    kind: event.kind,
                    state_name: event.state_name.clone(),
                    details: payloads.details_by_reference(&event.details)?,
                };
                let text = serde_json::to_string(&stored).map_err(EtlError::store)?;
                stmt.execute(params![e.id, stored.id as i64, text])?;
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
            conn.prepare("SELECT payload_id, payload FROM payloads WHERE execution_id = ?1")?;
        let payloads = stmt
            .query_map([execution_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<HashMap<_, _>>>()?;
        let mut stmt =
            conn.prepare("SELECT event FROM history WHERE execution_id = ?1 ORDER BY event_id")?;
        let rows = stmt.query_map([execution_id], |r| r.get::<_, String>(0))?;
        rows.map(|text| {
            let mut event: HistoryEvent = serde_json::from_str(&text?).map_err(EtlError::store)?;
            let refs = event
                .details
                .as_object_mut()
                .and_then(|d| d.remove(PAYLOAD_REFS));
            for (key, id) in refs
                .as_ref()
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let payload = id
                    .as_i64()
                    .and_then(|id| payloads.get(&id))
                    .ok_or_else(|| {
                        EtlError::store(format!("event {}: payload {id} is missing", event.id))
                    })?;
                event.details[key] = Value::String(payload.clone());
            }
            Ok(event)
        })
        .collect()
    }
}

/// Where a stored event's details name the payloads kept in the `payloads` table:
/// `{"input": 3}` means `input` is payload 3 of the execution.
const PAYLOAD_REFS: &str = "payloadRefs";

/// Payloads at least this long are stored once per execution and referenced; shorter ones
/// stay in the event.
const SHARED_PAYLOAD_BYTES: usize = 256;

/// Stores each distinct large payload of a batch of events once. Consecutive events mostly
/// repeat one payload (a state's output is the next state's input, a Task's parameters its
/// input): stored inline, the history was over 80% of a run's writes.
struct PayloadWriter<'a, 's> {
    stmt: rusqlite::CachedStatement<'s>,
    execution_id: &'a str,
    next_id: u64,
    seen: HashMap<&'a str, u64>,
}

impl<'a> PayloadWriter<'a, '_> {
    fn details_by_reference(&mut self, details: &'a Value) -> Result<Value> {
        let Some(fields) = details.as_object() else {
            return Ok(details.clone());
        };
        let mut kept = serde_json::Map::new();
        let mut refs = serde_json::Map::new();
        for (key, value) in fields {
            match value.as_str() {
                Some(text)
                    if PAYLOAD_KEYS.contains(&key.as_str())
                        && text.len() >= SHARED_PAYLOAD_BYTES =>
                {
                    let id = match self.seen.get(text) {
                        Some(&id) => id,
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            self.stmt
                                .execute(params![self.execution_id, id as i64, text])?;
                            self.seen.insert(text, id);
                            id
                        }
                    };
                    refs.insert(key.clone(), Value::from(id));
                }
                _ => {
                    kept.insert(key.clone(), value.clone());
                }
            }
        }
        if !refs.is_empty() {
            kept.insert(PAYLOAD_REFS.into(), Value::Object(refs));
        }
        Ok(Value::Object(kept))
    }
}

/// The details fields that hold payloads (JSON text, as in AWS's event details).
const PAYLOAD_KEYS: [&str; 3] = ["input", "output", "parameters"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EventKind;
    use serde_json::json;

    fn event(id: u64, kind: EventKind, details: Value) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: id - 1,
            timestamp: chrono::Utc::now(),
            kind,
            state_name: Some("S".into()),
            details,
        }
    }

    /// A large payload repeated by consecutive events is stored once, and every event reads
    /// back exactly as recorded, across a redrive's second batch too.
    #[test]
    fn repeated_payloads_are_stored_once_and_read_back_whole() {
        let db = SqliteDb::in_memory().unwrap();
        let record = ExecutionRecord::running(
            "arn:x".into(),
            "x".into(),
            "2020-01-01T00:00:00.000Z".into(),
            json!({}),
        );
        db.insert_execution(&record).unwrap();
        let big = format!("[{}]", vec!["1"; 400].join(","));
        let first = vec![
            event(1, EventKind::TaskStateEntered, json!({"input": big})),
            event(
                2,
                EventKind::TaskScheduled,
                json!({"parameters": big, "resource": "r"}),
            ),
            event(3, EventKind::TaskSucceeded, json!({"output": "{}"})),
            event(4, EventKind::TaskStateExited, json!({"output": big})),
        ];
        db.finish_execution(&record, &first).unwrap();
        let second = vec![event(
            1,
            EventKind::ExecutionRedriven,
            json!({"input": big}),
        )];
        db.finish_execution(&record, &second).unwrap();

        let stored: i64 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM payloads", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 2, "one per batch");
        let history = db.history("arn:x").unwrap();
        assert_eq!(history.len(), 5);
        assert_eq!(history[..4], first[..]);
        assert_eq!(history[4].id, 5);
        assert_eq!(history[4].details, second[0].details);
    }
}
