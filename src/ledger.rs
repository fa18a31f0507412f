//! The run ledger: one record per execution — what ran, on which versions of the sources,
//! what it changed and how it ended. Operators read it (`covid-etl executions`, the
//! dashboard). Whether the sources changed is not decided here but by the store's own load
//! marker ([`crate::store::LoadMarker`]), written with the data it describes.

use crate::diff::LoadCounts;
use crate::error::Result;
use crate::execution::ExecutionStatus;
use crate::merge::Dropped;
use crate::payload::{ErrorInfo, Fingerprints, NotifyRequest};
use crate::store::Committed;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// How an execution ended, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunOutcome {
    Succeeded,
    /// Succeeded without work: neither source changed since the last successful load.
    NoNewData,
    Failed,
    TimedOut,
    Aborted,
}

impl RunOutcome {
    /// The name as Step Functions and the notifications spell it (the serde form).
    pub fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::NoNewData => "NO_NEW_DATA",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }

    /// The execution's status: the ledger records NO_NEW_DATA as its own outcome; Step
    /// Functions calls it SUCCEEDED.
    pub fn execution_status(self) -> ExecutionStatus {
        match self {
            Self::Succeeded | Self::NoNewData => ExecutionStatus::Succeeded,
            Self::Failed => ExecutionStatus::Failed,
            Self::TimedOut => ExecutionStatus::TimedOut,
            Self::Aborted => ExecutionStatus::Aborted,
        }
    }
}

/// One execution's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub execution_id: String,
    pub execution_name: String,
    /// RFC 3339, from `$$.Execution.StartTime`.
    pub started_at: String,
    pub duration_ms: Option<i64>,
    pub status: RunOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Fingerprints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadCounts>,
    /// A dry run: `load` says what it would have written; nothing was.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// A full reload: every merged row was rewritten.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub full_reload: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Dropped>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// Where run records live: the embedded database locally, the series table (in its `run`
/// partition) on AWS.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RunLedger: Send + Sync {
    /// Stores `run`, replacing an earlier record of the same execution (a redrive, or the
    /// status-change notifier after the failure branch): writing twice is harmless.
    async fn record_run(&self, run: &RunRecord) -> Result<()>;

    /// One execution's record.
    async fn run(&self, execution_id: &str) -> Result<Option<RunRecord>>;

    /// The newest runs first.
    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>>;
}

impl RunRecord {
    /// The ledger's record of a run, from what the notify state is told and what the store says
    /// it committed. A dry run records no fingerprints: it loaded nothing.
    pub fn of(
        r: &NotifyRequest,
        committed: &Committed,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let started = r
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
        let dry_run = r.load.as_ref().is_some_and(|l| l.dry_run);
        Self {
            execution_id: r.execution_id.clone(),
            execution_name: r.execution_name.clone(),
            started_at: r.started_at.clone().unwrap_or_else(|| now.to_rfc3339()),
            duration_ms: started.map(|s| (now - s.with_timezone(&chrono::Utc)).num_milliseconds()),
            status: r.status,
            fingerprints: r.fingerprints.clone().filter(|_| !dry_run),
            load: r.load.as_ref().map(|l| l.counts).or(match committed {
                Committed::Load(m) => Some(m.counts),
                _ => None,
            }),
            dry_run,
            full_reload: r.load.as_ref().is_some_and(|l| l.full_reload),
            dropped: r.dropped.clone(),
            warnings: r.all_warnings(),
            failed_state: r.failed_state.clone(),
            error: r.error.as_ref().map(|e| e.error.clone()),
            cause: r.error.as_ref().map(ErrorInfo::message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_names_are_their_serde_names() {
        use RunOutcome::*;
        for outcome in [Succeeded, NoNewData, Failed, TimedOut, Aborted] {
            assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.name());
        }
    }
}
