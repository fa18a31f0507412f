//! The local engine's executions and their history, in the embedded database: what
//! `covid-etl executions`, `execution` and `redrive` read.
//!
//! An execution's events are written as they happen ([`HistoryWriter`]), with the process
//! that runs it ([`Owner`]) and a heartbeat, so the execution of a process that died is
//! found by the next command that opens the database and recorded as `ABORTED` with its
//! history up to the last event ([`SqliteDb::reconcile_orphans`]), ready to be redriven.

use super::SqliteDb;
use super::owner::Owner;
use crate::engine::HistoryEvent;
use crate::error::{EtlError, Result};
use crate::execution::{ExecutionError, ExecutionErrorCode, ExecutionRecord, ExecutionStatus};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

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
        status: status(r.get_ref(4)?)?,
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

/// A status column as written by [`ExecutionStatus::name`].
fn status(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<ExecutionStatus> {
    let text = v.as_str().map_err(rusqlite::Error::from)?;
    text.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
    })
}

fn to_text(v: &Value) -> String {
    v.to_string()
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The statuses a redrive accepts ([`ExecutionStatus::is_redrivable`]) as an SQL list:
/// `('FAILED', 'TIMED_OUT', 'ABORTED')`.
fn redrivable() -> String {
    let names: Vec<String> = ExecutionStatus::ALL
        .into_iter()
        .filter(|s| s.is_redrivable())
        .map(|s| format!("'{}'", s.name()))
        .collect();
    format!("({})", names.join(", "))
}

impl SqliteDb {
    /// Registers a new execution run by this process; a name already used is refused, as
    /// Step Functions refuses it.
    pub fn insert_execution(&self, e: &ExecutionRecord) -> Result<()> {
        let owner = Owner::current();
        let inserted = self.conn().execute(
            &format!("INSERT INTO executions ({COLUMNS}, owner_host, owner_pid, owner_started, heartbeat_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17) ON CONFLICT DO NOTHING"),
            params![
                e.id, e.name, e.started_at, e.finished_at, e.status.name(), to_text(&e.input),
                e.output.as_ref().map(to_text), e.error, e.cause, e.failed_state,
                e.redrive_from.as_ref().map(|(s, _)| s), e.redrive_from.as_ref().map(|(_, v)| to_text(v)),
                e.redrive_count, owner.host, owner.pid, owner.started, stamp(chrono::Utc::now())
            ],
        )?;
        if inserted == 0 {
            return Err(ExecutionError::new(
                ExecutionErrorCode::ExecutionAlreadyExists,
                format!("an execution named \"{}\" already exists", e.name),
            )
            .into());
        }
        Ok(())
    }

    /// Takes a failed, timed-out or aborted execution for a redrive by this process: one
    /// conditional update, so of two concurrent redrives exactly one gets it and the other is
    /// refused with `ExecutionNotRedrivable`.
    pub fn claim_redrive(&self, id_or_name: &str) -> Result<ExecutionRecord> {
        let record = self.execution(id_or_name)?.ok_or_else(|| {
            ExecutionError::new(
                ExecutionErrorCode::ExecutionDoesNotExist,
                format!("no execution \"{id_or_name}\" in the local database"),
            )
        })?;
        let owner = Owner::current();
        let claimed = self.conn().execute(
            &format!(
                "UPDATE executions SET status = 'RUNNING', redrive_count = redrive_count + 1,
                   finished_at = NULL, owner_host = ?2, owner_pid = ?3, owner_started = ?4,
                   heartbeat_at = ?5
                 WHERE id = ?1 AND status IN {}",
                redrivable()
            ),
            params![
                record.id,
                owner.host,
                owner.pid,
                owner.started,
                stamp(chrono::Utc::now())
            ],
        )?;
        let claimed = self.execution(&record.id)?.filter(|_| claimed == 1);
        claimed.ok_or_else(|| {
            let message = format!(
                "execution \"{}\" is {}: only a failed, timed-out or aborted execution can be redriven, once at a time",
                record.name,
                self.execution(&record.id)
                    .ok()
                    .flatten()
                    .map_or(record.status, |r| r.status)
            );
            ExecutionError::new(ExecutionErrorCode::ExecutionNotRedrivable, message).into()
        })
    }

    /// Records how an execution ended; its events were written as they happened.
    pub fn finish_execution(&self, e: &ExecutionRecord) -> Result<()> {
        self.conn().execute(
            "UPDATE executions SET finished_at = ?2, status = ?3, output = ?4, error = ?5,
               cause = ?6, failed_state = ?7, redrive_state = ?8, redrive_input = ?9,
               redrive_count = ?10, owner_host = NULL, owner_pid = NULL, owner_started = NULL
             WHERE id = ?1",
            params![
                e.id,
                e.finished_at,
                e.status.name(),
                e.output.as_ref().map(to_text),
                e.error,
                e.cause,
                e.failed_state,
                e.redrive_from.as_ref().map(|(s, _)| s),
                e.redrive_from.as_ref().map(|(_, v)| to_text(v)),
                e.redrive_count
            ],
        )?;
        Ok(())
    }

    /// Refreshes the heartbeat of a running execution (every [`super::HEARTBEAT_EVERY`]).
    pub fn heartbeat(&self, execution_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE executions SET heartbeat_at = ?2 WHERE id = ?1 AND status = 'RUNNING'",
            params![execution_id, stamp(chrono::Utc::now())],
        )?;
        Ok(())
    }

    /// The history writer of an execution: its events are numbered after those stored.
    pub fn history_writer(&self, execution_id: &str) -> Result<HistoryWriter> {
        let next_id = |table: &str, column: &str| -> Result<u64> {
            Ok(self.conn().query_row(
                &format!("SELECT COALESCE(MAX({column}), 0) FROM {table} WHERE execution_id = ?1"),
                [execution_id],
                |r| r.get::<_, i64>(0).map(|v| v as u64),
            )?)
        };
        Ok(HistoryWriter {
            db: self.clone(),
            execution_id: execution_id.to_string(),
            offset: next_id("history", "event_id")?,
            payloads: Mutex::new(PayloadIds {
                next_id: next_id("payloads", "payload_id")? + 1,
                seen: HashMap::new(),
            }),
        })
    }

    /// Turns every `RUNNING` execution whose process died into `ABORTED`: its history stays
    /// as recorded, an `ExecutionAborted` event closes it, and it resumes (redrive) from the
    /// top-level state it had reached. Safe to run from several processes at once: each
    /// update is conditional on the execution still being owned by the dead process.
    pub fn reconcile_orphans(&self) -> Result<()> {
        let now = chrono::Utc::now();
        let running: Vec<RunningRow> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, owner_host, owner_pid, owner_started, heartbeat_at
                 FROM executions WHERE status = 'RUNNING'",
            )?;
            stmt.query_map([], |r| {
                Ok(RunningRow {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    pid: r.get(2)?,
                    started: r.get(3)?,
                    heartbeat: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?
        };
        for RunningRow {
            id,
            host,
            pid,
            started,
            heartbeat,
        } in running
        {
            let beat = heartbeat
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc());
            let owner = Owner {
                host: host.clone().unwrap_or_default(),
                pid: pid.unwrap_or_default(),
                started: started.clone().unwrap_or_default(),
            };
            if !owner.is_dead(beat, now) {
                continue;
            }
            let cause = format!(
                "the process running it (pid {} on {}) died; last heartbeat {}",
                owner.pid,
                owner.host,
                heartbeat.as_deref().unwrap_or("never")
            );
            tracing::warn!(execution = %id, %cause, "reconciling an orphaned execution to ABORTED");
            self.transaction(|tx| {
                let changed = tx.execute(
                    "UPDATE executions SET status = 'ABORTED', finished_at = COALESCE(heartbeat_at, started_at),
                       cause = ?2, failed_state = redrive_state,
                       owner_host = NULL, owner_pid = NULL, owner_started = NULL
                     WHERE id = ?1 AND status = 'RUNNING' AND owner_host IS ?3
                       AND owner_pid IS ?4 AND owner_started IS ?5",
                    params![id, cause, host, pid, started],
                )?;
                if changed == 0 {
                    return Ok(()); // another process reconciled it, or it finished
                }
                let last: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(event_id), 0) FROM history WHERE execution_id = ?1",
                    [&id],
                    |r| r.get(0),
                )?;
                let event = HistoryEvent {
                    id: last as u64 + 1,
                    previous_event_id: last as u64,
                    timestamp: now,
                    kind: crate::engine::EventKind::ExecutionAborted,
                    state_name: None,
                    details: serde_json::json!({"cause": cause}),
                };
                let text = serde_json::to_string(&event).map_err(EtlError::store)?;
                tx.execute(
                    "INSERT INTO history (execution_id, event_id, event) VALUES (?1, ?2, ?3)",
                    params![id, event.id as i64, text],
                )?;
                Ok(())
            })?;
        }
        Ok(())
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

/// A `RUNNING` execution's owner columns, as stored (NULL for rows of older versions).
struct RunningRow {
    id: String,
    host: Option<String>,
    pid: Option<u32>,
    started: Option<String>,
    heartbeat: Option<String>,
}

/// Writes an execution's events as they happen, each in its own transaction, storing each
/// distinct large payload once per execution. The heartbeat is not touched here: the runner
/// beats every [`super::HEARTBEAT_EVERY`] on its own, and an UPDATE per event was one more
/// page written per event (measured: about a third of a run's WAL writes).
/// Consecutive events mostly repeat one payload (a state's output is the next state's input,
/// a Task's parameters its input): stored inline, the history was over 80% of a run's writes.
pub struct HistoryWriter {
    db: SqliteDb,
    execution_id: String,
    /// The largest event id stored before this writer: a redrive numbers its events from 1
    /// again, stored ids continue the execution's.
    offset: u64,
    payloads: Mutex<PayloadIds>,
}

struct PayloadIds {
    next_id: u64,
    seen: HashMap<String, u64>,
}

impl HistoryWriter {
    /// Stores `event`; with `checkpoint`, the event is a top-level state entered, and the
    /// state and its input become where a redrive resumes if this process dies.
    pub fn append(&self, event: &HistoryEvent, checkpoint: bool) -> Result<()> {
        let mut payloads = self.payloads.lock().unwrap_or_else(|p| p.into_inner());
        self.db.transaction(|tx| {
            let stored = HistoryEvent {
                id: event.id + self.offset,
                previous_event_id: match event.previous_event_id {
                    0 => 0,
                    previous => previous + self.offset,
                },
                timestamp: event.timestamp,
                kind: event.kind,
                state_name: event.state_name.clone(),
                details: payloads.details_by_reference(tx, &self.execution_id, &event.details)?,
            };
            let text = serde_json::to_string(&stored).map_err(EtlError::store)?;
            tx.prepare_cached(
                "INSERT INTO history (execution_id, event_id, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![self.execution_id, stored.id as i64, text])?;
            if let (true, Some(state), Some(Value::String(input))) =
                (checkpoint, &event.state_name, event.details.get("input"))
            {
                tx.prepare_cached(
                    "UPDATE executions SET heartbeat_at = ?2, redrive_state = ?3, redrive_input = ?4
                     WHERE id = ?1",
                )?
                .execute(params![self.execution_id, stamp(chrono::Utc::now()), state, input])?;
            }
            Ok(())
        })
    }
}

impl PayloadIds {
    fn details_by_reference(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        execution_id: &str,
        details: &Value,
    ) -> Result<Value> {
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
                            tx.prepare_cached(
                                "INSERT INTO payloads (execution_id, payload_id, payload) VALUES (?1, ?2, ?3)",
                            )?
                            .execute(params![execution_id, id as i64, text])?;
                            self.next_id += 1;
                            self.seen.insert(text.to_string(), id);
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
        let writer = db.history_writer(&record.id).unwrap();
        for e in &first {
            writer.append(e, false).unwrap();
        }
        let second = [event(
            1,
            EventKind::ExecutionRedriven,
            json!({"input": big}),
        )];
        db.history_writer(&record.id)
            .unwrap()
            .append(&second[0], false)
            .unwrap();

        let stored: i64 = db
            .conn()
            .query_row("SELECT COUNT(*) FROM payloads", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, 2, "one per writer (a run, then its redrive)");
        let history = db.history("arn:x").unwrap();
        assert_eq!(history.len(), 5);
        assert_eq!(history[..4], first[..]);
        assert_eq!(history[4].id, 5);
        assert_eq!(history[4].details, second[0].details);
    }
}
