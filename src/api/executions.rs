//! Where `GET /api/executions` reads recent runs from.
//!
//! Locally, the embedded database's `executions` table (the local engine's runs, with their
//! redrives). On AWS, the run ledger kept in the DynamoDB table (its `run` partition), one
//! record per execution, written by the notify step ([`LedgerExecutions`]).

use crate::diff::LoadCounts;
#[cfg(feature = "sqlite")]
use crate::error::EtlError;
use crate::error::Result;
use crate::execution::{ExecutionRecord, ExecutionStatus};
use crate::ledger::{RunLedger, RunOutcome, RunRecord};
use crate::payload::{NotifyResponse, cause_message};
use crate::report::StepView;
#[cfg(feature = "sqlite")]
use crate::store::SqliteDb;
use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;

/// What a run did, in one word: the dashboard's and the CLI's outcome column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Running,
    /// Succeeded and wrote (or confirmed) the series.
    Loaded,
    /// Succeeded without work: neither source changed.
    NoNewData,
    /// Succeeded, computed the changes and wrote nothing.
    DryRun,
    Failed,
    TimedOut,
    Aborted,
}

impl Outcome {
    /// The serde name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Loaded => "LOADED",
            Self::NoNewData => "NO_NEW_DATA",
            Self::DryRun => "DRY_RUN",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }

    fn of(status: ExecutionStatus, no_new_data: bool, dry_run: bool) -> Self {
        match status {
            ExecutionStatus::Succeeded if no_new_data => Self::NoNewData,
            ExecutionStatus::Succeeded if dry_run => Self::DryRun,
            ExecutionStatus::Succeeded => Self::Loaded,
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => Self::Running,
            ExecutionStatus::TimedOut => Self::TimedOut,
            ExecutionStatus::Aborted => Self::Aborted,
            ExecutionStatus::Failed => Self::Failed,
        }
    }
}

/// One run as the dashboard and `covid-etl executions --json` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    /// The execution's id (an ARN), as `run --json` names it.
    pub execution_id: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub outcome: Outcome,
    /// RFC 3339 timestamps.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `finishedAt - startedAt`; `null` while running.
    pub duration_ms: Option<i64>,
    /// The innermost state that failed, its error name and what it said.
    pub failed_state: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// What the load wrote; `null` when nothing was loaded (the run did not reach the load,
    /// or it was a dry run).
    pub load: Option<LoadCounts>,
    /// What a dry run would have written; `null` otherwise.
    pub planned: Option<LoadCounts>,
    /// A full reload: every merged row was rewritten.
    pub full_reload: bool,
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
        let summary: Option<NotifyResponse> = e
            .output
            .clone()
            .and_then(|o| serde_json::from_value(o).ok());
        let request = summary.map(|s| s.request);
        let load = request.as_ref().and_then(|r| r.load.clone());
        let dry_run = load.as_ref().is_some_and(|l| l.dry_run);
        let no_new_data = request
            .as_ref()
            .is_some_and(|r| r.status == RunOutcome::NoNewData);
        ExecutionSummary {
            outcome: Outcome::of(e.status, no_new_data, dry_run),
            execution_id: e.id,
            name: e.name,
            status: e.status,
            started_at: e.started_at,
            finished_at: e.finished_at,
            duration_ms,
            failed_state: e.failed_state,
            error: e.error,
            cause: e.cause.map(|c| cause_message(&c)),
            load: load.as_ref().filter(|l| !l.dry_run).map(|l| l.counts),
            planned: load.as_ref().filter(|l| l.dry_run).map(|l| l.counts),
            full_reload: load.is_some_and(|l| l.full_reload),
            redrive_count: e.redrive_count,
        }
    }
}

/// One run with what the dashboard's detail view shows: its warnings and, where the
/// source keeps the history (the local engine), its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    pub warnings: Vec<String>,
    /// `null` when the source keeps no history (the ledger on AWS: the Step Functions
    /// console has it).
    pub steps: Option<Vec<StepView>>,
}

/// A source of recent runs.
#[async_trait]
pub trait ExecutionSource: Send + Sync {
    /// A short name for where the list comes from (`sqlite`, `none`, later `dynamodb`),
    /// reported as `source` so the dashboard can say why a list is empty.
    fn kind(&self) -> &'static str;

    /// At most `limit` runs, newest first.
    async fn recent(&self, limit: u32) -> Result<Vec<ExecutionSummary>>;

    /// One run by its execution id, if known.
    async fn detail(&self, execution_id: &str) -> Result<Option<ExecutionDetail>>;
}

#[cfg(feature = "sqlite")]
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

    async fn detail(&self, execution_id: &str) -> Result<Option<ExecutionDetail>> {
        let (db, id) = (self.clone(), execution_id.to_string());
        tokio::task::spawn_blocking(move || {
            // By id only: a name is never taken for an id.
            let Some(record) = db.execution(&id)?.filter(|r| r.id == id) else {
                return Ok(None);
            };
            let steps = crate::report::steps(&db.history(&record.id)?, record.status.is_final());
            let warnings = record
                .output
                .clone()
                .and_then(|o| serde_json::from_value::<NotifyResponse>(o).ok())
                .map_or_else(Vec::new, |r| r.request.all_warnings());
            Ok(Some(ExecutionDetail {
                summary: ExecutionSummary::from(record),
                warnings,
                steps: Some(steps),
            }))
        })
        .await
        .map_err(|e| EtlError::store(format!("execution query panicked: {e}")))?
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

    async fn detail(&self, execution_id: &str) -> Result<Option<ExecutionDetail>> {
        Ok(self.0.run(execution_id).await?.map(|run| ExecutionDetail {
            warnings: run.warnings.clone(),
            summary: ExecutionSummary::from(run),
            steps: None,
        }))
    }
}

impl From<RunRecord> for ExecutionSummary {
    fn from(r: RunRecord) -> Self {
        let finished_at = chrono::DateTime::parse_from_rfc3339(&r.started_at)
            .ok()
            .zip(r.duration_ms)
            .map(|(start, ms)| (start + chrono::Duration::milliseconds(ms)).to_rfc3339());
        let status = r.status.execution_status();
        ExecutionSummary {
            outcome: Outcome::of(status, r.status == RunOutcome::NoNewData, r.dry_run),
            execution_id: r.execution_id,
            name: r.execution_name,
            status,
            started_at: r.started_at,
            finished_at,
            duration_ms: r.duration_ms,
            failed_state: r.failed_state,
            error: r.error,
            cause: r.cause,
            load: r.load.filter(|_| !r.dry_run),
            planned: r.load.filter(|_| r.dry_run),
            full_reload: r.full_reload,
            redrive_count: 0,
        }
    }
}
