//! The one error type of the pipeline.
//!
//! Every variant that can leave a Lambda has a stable name ([`EtlError::name`]) that the
//! state machine matches in its `Retry` and `Catch` fields, so renaming a variant's name is
//! a breaking change of `statemachine/etl.asl.json`.

use thiserror::Error;

/// What went wrong, in words an operator can act on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EtlError {
    /// The source could not be fetched (network, HTTP 5xx/429, timeout). Transient: retried.
    #[error("{source_name} unavailable at {location}: {reason}")]
    SourceUnavailable {
        source_name: String,
        location: String,
        reason: String,
    },
    /// The server refused the request (HTTP 4xx other than 408/429): a wrong URL or access,
    /// which a retry will not fix.
    #[error("{source_name} refused at {location}: {reason}")]
    SourceRejected {
        source_name: String,
        location: String,
        reason: String,
    },
    /// A source location the configuration does not allow (on AWS: anything but an https URL
    /// on the allowlist, or a redirect off it). Raised before any I/O; never retried.
    #[error("{source_name} location {location} is not allowed: {reason}")]
    SourceNotAllowed {
        source_name: String,
        location: String,
        reason: String,
    },
    /// The source answered, but not with a file we can read (missing column, empty, too big).
    #[error("{source_name}: {reason}")]
    SchemaError { source_name: String, reason: String },
    /// A value in the file breaks a rule; the whole extract is rejected.
    #[error("{source_name} line {line} column \"{column}\": \"{value}\" {reason}")]
    DataQualityError {
        source_name: String,
        line: u64,
        column: String,
        value: String,
        reason: String,
    },
    /// The two sources share no date, so there is nothing to merge.
    #[error("no overlap: {0}")]
    NoOverlap(String),
    /// The store asked us to slow down. Transient: retried.
    #[error("store throttled: {0}")]
    StoreThrottled(String),
    /// Some writes were not applied after bounded retries. Transient: a rerun diffs against
    /// what the store holds and writes exactly what is missing.
    #[error("load incomplete: {0}")]
    LoadIncomplete(String),
    /// Another execution is loading the same store (it holds the SQLite write lock or the
    /// DynamoDB load lease). Transient: retried, and the retry diffs against what that load
    /// committed.
    #[error("load in progress: {0}")]
    LoadInProgress(String),
    /// The store failed in a way a retry will not fix (bad table, permissions, corrupt file).
    #[error("store error: {0}")]
    StoreError(String),
    /// A notification could not be delivered.
    #[error("notify failed: {0}")]
    NotifyError(String),
    /// A state payload did not have the shape the step expects (a definition/code mismatch,
    /// or an execution input that names an unknown key).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A defect of this program, not of its input or its environment (a parser thread that
    /// panicked, an embedded definition that does not load). Never retried.
    #[error("internal error: {0}")]
    Internal(String),
    /// An environment variable has a value the process cannot use; raised once, at start.
    #[error("{variable}={value:?} {reason}")]
    ConfigError {
        variable: &'static str,
        value: String,
        reason: String,
    },
    /// Step Functions, or the local engine in its place, refused an operation on an execution
    /// (the CLI's and the daily starter's calls; never a step's error).
    #[error(transparent)]
    Execution(#[from] crate::execution::ExecutionError),
}

impl EtlError {
    /// The Step Functions error name (`errorType` of the Lambda error).
    pub fn name(&self) -> &'static str {
        match self {
            Self::SourceUnavailable { .. } => "SourceUnavailable",
            Self::SourceRejected { .. } => "SourceRejected",
            Self::SourceNotAllowed { .. } => "SourceNotAllowed",
            Self::SchemaError { .. } => "SchemaError",
            Self::DataQualityError { .. } => "DataQualityError",
            Self::NoOverlap(_) => "NoOverlap",
            Self::StoreThrottled(_) => "StoreThrottled",
            Self::LoadIncomplete(_) => "LoadIncomplete",
            Self::LoadInProgress(_) => "LoadInProgress",
            Self::StoreError(_) => "StoreError",
            Self::NotifyError(_) => "NotifyError",
            Self::InvalidInput(_) => "InvalidInput",
            Self::Internal(_) => "InternalError",
            Self::ConfigError { .. } => "ConfigError",
            Self::Execution(e) => e.code.name(),
        }
    }

    /// Whether the state machine retries this error (it must agree with the ASL `Retry` lists).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::SourceUnavailable { .. }
                | Self::StoreThrottled(_)
                | Self::LoadIncomplete(_)
                | Self::LoadInProgress(_)
        )
    }

    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::StoreError(e.to_string())
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for EtlError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(ref f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Self::StoreThrottled(e.to_string())
            }
            other => Self::store(other),
        }
    }
}

impl From<EtlError> for lambda_runtime::Diagnostic {
    fn from(e: EtlError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.name().to_string(),
            error_message: e.to_string(),
        }
    }
}

pub type Result<T, E = EtlError> = std::result::Result<T, E>;

/// An error and its sources on one line, `outer: inner: root cause`, each message once:
/// "error sending request for url (…): client error (Connect): tcp connect error: Connection
/// refused (os error 111)" instead of the first part alone, and never the `Debug` form.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string().replace('\n', " ");
        // Some errors repeat their source's text in their own: keep the most specific once.
        if !parts.last().is_some_and(|p| p.contains(&text)) && !text.is_empty() {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of each variant that can leave a Lambda (`Execution` is the local engine's
    /// own refusal, never a step's error).
    fn one_of_each() -> Vec<EtlError> {
        let s = String::new;
        vec![
            EtlError::SourceUnavailable {
                source_name: s(),
                location: s(),
                reason: s(),
            },
            EtlError::SourceRejected {
                source_name: s(),
                location: s(),
                reason: s(),
            },
            EtlError::SourceNotAllowed {
                source_name: s(),
                location: s(),
                reason: s(),
            },
            EtlError::SchemaError {
                source_name: s(),
                reason: s(),
            },
            EtlError::DataQualityError {
                source_name: s(),
                line: 1,
                column: s(),
                value: s(),
                reason: s(),
            },
            EtlError::NoOverlap(s()),
            EtlError::StoreThrottled(s()),
            EtlError::LoadIncomplete(s()),
            EtlError::LoadInProgress(s()),
            EtlError::StoreError(s()),
            EtlError::NotifyError(s()),
            EtlError::InvalidInput(s()),
            EtlError::Internal(s()),
            EtlError::ConfigError {
                variable: "X",
                value: s(),
                reason: s(),
            },
        ]
    }

    /// Every Retry list of a Lambda Task in the deployed definition names exactly our
    /// transient errors (beside the Lambda service's own), so `is_transient()` says what
    /// the state machine really does.
    #[test]
    fn the_definitions_retry_lists_are_exactly_the_transient_errors() {
        let definition: serde_json::Value =
            serde_json::from_str(include_str!("../statemachine/etl.asl.json")).unwrap();
        let ours: std::collections::BTreeSet<_> =
            one_of_each().iter().map(EtlError::name).collect();
        let transient: std::collections::BTreeSet<_> = one_of_each()
            .iter()
            .filter(|e| e.is_transient())
            .map(EtlError::name)
            .collect();
        let mut lists = 0;
        let mut stack = vec![&definition["States"]];
        while let Some(states) = stack.pop() {
            for state in states.as_object().unwrap().values() {
                for branch in state["Branches"].as_array().into_iter().flatten() {
                    stack.push(&branch["States"]);
                }
                if state["Resource"].get("Fn::GetAtt").is_none() {
                    continue; // not one of our Lambdas (the sns:publish fallback)
                }
                for retrier in state["Retry"].as_array().into_iter().flatten() {
                    let names: std::collections::BTreeSet<_> = retrier["ErrorEquals"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| n.as_str().unwrap())
                        .filter(|n| ours.contains(n))
                        .collect();
                    assert_eq!(names, transient, "{state}");
                    lists += 1;
                }
            }
        }
        assert!(lists >= 7, "only {lists} Retry lists found");
    }
}
