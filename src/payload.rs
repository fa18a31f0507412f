//! The JSON documents that travel between states: each step's input and output. Field names
//! are camelCase and stable (the state machine's paths refer to them); records use the compact
//! one-line form of [`DailyRecord`] so the whole series stays far below the 256 KiB state limit.

use crate::diff::LoadCounts;
use crate::error::EtlError;
use crate::extract::{Extract, Fingerprint};
use crate::merge::{DateSpan, Dropped};
use crate::record::DailyRecord;
use serde::{Deserialize, Serialize};

/// The execution input: every field is optional, so a scheduled run starts with `{}`. An
/// unknown key is refused (`InvalidInput` naming it), not ignored: `{"dry_run": true}` typed
/// in the console must not become a real load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunOptions {
    /// Compute and report the changes, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Rewrite every merged record, changed or not.
    #[serde(default)]
    pub full_reload: bool,
    /// Override the NYT source (a URL or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nyt: Option<String>,
    /// Override the JHU source (a URL or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jhu: Option<String>,
}

/// Input of the two extract states.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractRequest {
    #[serde(default)]
    pub options: RunOptions,
    /// Send the last successful run's HTTP validators, so an unchanged source answers 304.
    #[serde(default = "yes")]
    pub conditional: bool,
}

impl Default for ExtractRequest {
    fn default() -> Self {
        Self {
            options: RunOptions::default(),
            conditional: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// Input of the merge state: the Parallel state's two results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeRequest {
    pub nyt: Extract,
    pub jhu: Extract,
}

/// Output of the merge state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Merged {
    pub records: Vec<DailyRecord>,
    pub dropped: Dropped,
    pub warnings: Vec<String>,
    pub fingerprints: Fingerprints,
}

/// The fingerprint of each source, by its name. A source missing from a stored record reads
/// as unknown (the default), so a record written before a source was added stays readable
/// and that source counts as changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Fingerprints {
    pub nyt: Fingerprint,
    pub jhu: Fingerprint,
}

/// Input of the diff-and-load state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadRequest {
    pub merged: Merged,
    #[serde(default)]
    pub options: RunOptions,
    /// `$$.Execution.Id`: the store's load marker names the execution that loaded it, so a
    /// failure notification can say what this execution committed.
    #[serde(default)]
    pub execution_id: String,
}

/// Output of the diff-and-load state: what changed, what it cost, and the newest day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    #[serde(flatten)]
    pub counts: LoadCounts,
    /// Rows written (0 on a dry run; every row on a full reload).
    pub written: u64,
    pub dry_run: bool,
    pub full_reload: bool,
    pub write_requests: u64,
    pub write_units: u64,
    /// The newest merged day, with its totals.
    pub latest: Option<DailyRecord>,
    /// The inserted and updated dates, as spans.
    pub changed: Vec<DateSpan>,
    /// What the load noticed, such as sources older than what the store holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

pub use crate::ledger::RunOutcome;

/// Step Functions' error output, `{"Error": …, "Cause": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// What a Step Functions `Cause` says in words: a Lambda failure's Cause is a JSON document
/// whose `errorMessage` is what the function said; other causes are plain text.
pub fn cause_message(cause: &str) -> String {
    serde_json::from_str::<serde_json::Value>(cause)
        .ok()
        .and_then(|v| v.get("errorMessage")?.as_str().map(str::to_string))
        .unwrap_or_else(|| cause.to_string())
}

impl ErrorInfo {
    /// The human message of the Cause ([`cause_message`]).
    pub fn message(&self) -> String {
        cause_message(&self.cause)
    }

    /// The Cause a Lambda function reports for `e`, exactly as Step Functions passes it on.
    pub fn lambda_cause(e: &EtlError) -> String {
        serde_json::json!({"errorType": e.name(), "errorMessage": e.to_string()}).to_string()
    }
}

/// Input of the notify state, on the success path and in the failure branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyRequest {
    pub status: RunOutcome,
    #[serde(default)]
    pub execution_id: String,
    #[serde(default)]
    pub execution_name: String,
    /// `$$.Execution.StartTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprints: Option<Fingerprints>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Dropped>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl NotifyRequest {
    /// Every warning of the run: the merge's, then the load's.
    pub fn all_warnings(&self) -> Vec<String> {
        let load = self.load.iter().flat_map(|l| l.warnings.iter());
        self.warnings.iter().chain(load).cloned().collect()
    }
}

/// Output of the notify state (on success, the execution's output): the request's summary
/// plus the subject that was sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotifyResponse {
    pub subject: String,
    #[serde(flatten)]
    pub request: NotifyRequest,
}

/// What the notify function receives: a state's request, or an EventBridge "Step Functions
/// Execution Status Change" event for an execution that ended where no Catch could see it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NotifyEvent {
    Step(Box<NotifyRequest>),
    StatusChange(StatusChangeEvent),
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatusChangeEvent {
    pub detail: StatusChangeDetail,
}

/// The `detail` of the EventBridge event (times in epoch milliseconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeDetail {
    pub execution_arn: String,
    pub name: String,
    pub status: crate::execution::ExecutionStatus,
    #[serde(default)]
    pub start_date: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// What the notify function returns for either kind of event (`null` when a status change
/// was already reported by the failure branch).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum NotifyOutcome {
    Sent(Box<NotifyResponse>),
    AlreadyReported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_of_a_record_that_lacks_a_source_read_as_unknown() {
        let old: Fingerprints = serde_json::from_str(r#"{"nyt": {"sha256": "ab"}}"#).unwrap();
        assert_eq!(old.nyt.sha256, "ab");
        assert_eq!(old.jhu, Default::default());
    }
}
