//! Where `GET /api/executions` reads recent runs from.
//!
//! Locally, the embedded database's `executions` table (the local engine's runs, with their
//! redrives). On AWS, the run ledger kept in the DynamoDB table (items keyed `run#…`), one
//! record per execution, written by the notify step ([`LedgerExecutions`]).

use crate::diff::LoadCounts;
use crate::error::{EtlError, Result};
use crate::ledger::{RunLedger, RunRecord};
use crate::store::{ExecutionRecord, SqliteDb};
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;

/// One run as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub id: String,
    pub name: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`, as Step Functions spells
    /// them.
    pub status: String,
    /// RFC 3339 timestamps.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `finishedAt - startedAt`; `null` while running.
    pub duration_ms: Option<i64>,
    /// The innermost state that failed, and its error name.
    pub failed_state: Option<String>,
    pub error: Option<String>,
    /// What the load wrote (`output.load`); `null` when the run did not reach the load.
    pub load: Option<LoadCounts>,
    pub redrive_count: u32,
}

impl From<ExecutionRecord> for ExecutionSummary {
    fn from(e: ExecutionRecord) -> Self {
        let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let duration_ms = match (
            parse(&e.started_at),
            e.finished_at.as_deref().and_then(parse),
        ) {
            (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
            _ => None,
        };
        let load = e
            .output
            .as_ref()
            .and_then(|o| o.get("load"))
            .filter(|l| !l.is_null())
            .and_then(|l| serde_json::from_value::<LoadCounts>(l.clone()).ok());
        ExecutionSummary {
            id: e.id,
            name: e.name,
            status: e.status,
            started_at: e.started_at,
            finished_at: e.finished_at,
            duration_ms,
            failed_state: e.failed_state,
            error: e.error,
            load,
            redrive_count: e.redrive_count,
        }
    }
}

/// A source of recent runs.
#[async_trait]
pub trait ExecutionSource: Send + Sync {
    /// A short name for where the list comes from (`sqlite`, `none`, later `dynamodb`),
    /// reported as `source` so the dashboard can say why a list is empty.
    fn kind(&self) -> &'static str;

    /// At most `limit` runs, newest first.
    async fn recent(&self, limit: u32) -> Result<Vec<ExecutionSummary>>;
}

#[async_trait]
impl ExecutionSource for SqliteDb {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn recent(&self, limit: u32) -> Result<Vec<ExecutionSummary>> {
        let db = self.clone();
        let records = tokio::task::spawn_blocking(move || db.executions(limit))
            .await
            .map_err(|e| EtlError::store(format!("executions query panicked: {e}")))??;
        Ok(records.into_iter().map(ExecutionSummary::from).collect())
    }
}

/// The run ledger as the executions source: what the API Lambda reads from DynamoDB, where
/// executions themselves live in Step Functions and each run leaves one ledger record.
pub struct LedgerExecutions(pub Arc<dyn RunLedger>);

#[async_trait]
impl ExecutionSource for LedgerExecutions {
    fn kind(&self) -> &'static str {
        "ledger"
    }

    async fn recent(&self, limit: u32) -> Result<Vec<ExecutionSummary>> {
        let runs = self.0.runs(limit as usize).await?;
        Ok(runs.into_iter().map(ExecutionSummary::from).collect())
    }
}

impl From<RunRecord> for ExecutionSummary {
    fn from(r: RunRecord) -> Self {
        let finished_at = chrono::DateTime::parse_from_rfc3339(&r.started_at)
            .ok()
            .zip(r.duration_ms)
            .map(|(start, ms)| (start + chrono::Duration::milliseconds(ms)).to_rfc3339());
        let status = r.status.name().to_string();
        ExecutionSummary {
            id: r.execution_id,
            name: r.execution_name,
            status,
            started_at: r.started_at,
            finished_at,
            duration_ms: r.duration_ms,
            failed_state: r.failed_state,
            error: r.error,
            load: r.load,
            redrive_count: 0,
        }
    }
}
