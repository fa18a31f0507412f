//! What an execution is, for everything that shows or stores one: its status as Step
//! Functions names it, and the local engine's record of it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An execution's status, spelled as Step Functions spells it (`RUNNING`, `SUCCEEDED`,
/// `FAILED`, `TIMED_OUT`, `ABORTED`, `PENDING_REDRIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    /// Step Functions only: a redrive was accepted and has not started yet.
    PendingRedrive,
}

impl ExecutionStatus {
    pub const ALL: [Self; 6] = [
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Aborted,
        Self::PendingRedrive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
            Self::PendingRedrive => "PENDING_REDRIVE",
        }
    }

    /// The statuses RedriveExecution accepts.
    pub fn is_redrivable(self) -> bool {
        matches!(self, Self::Failed | Self::TimedOut | Self::Aborted)
    }

    /// Neither running nor about to run again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running | Self::PendingRedrive)
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ExecutionStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.name() == s)
            .ok_or_else(|| format!("unknown execution status {s:?}"))
    }
}

impl From<crate::engine::ExecutionStatus> for ExecutionStatus {
    fn from(s: crate::engine::ExecutionStatus) -> Self {
        use crate::engine::ExecutionStatus as Engine;
        match s {
            Engine::Succeeded => Self::Succeeded,
            Engine::Failed => Self::Failed,
            Engine::TimedOut => Self::TimedOut,
            Engine::Aborted => Self::Aborted,
        }
    }
}

/// One execution of the local engine, as the embedded database keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub id: String,
    pub name: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: ExecutionStatus,
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
            status: ExecutionStatus::Running,
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

/// What Step Functions calls the refusals of its execution API. The local engine refuses
/// with the same names where it refuses the same thing (a reused name, a redrive of an
/// execution that did not fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionErrorCode {
    ExecutionDoesNotExist,
    ExecutionNotRedrivable,
    ExecutionAlreadyExists,
    ExecutionLimitExceeded,
    StateMachineDoesNotExist,
    StateMachineDeleting,
    InvalidArn,
    InvalidName,
    InvalidExecutionInput,
    InvalidToken,
    ValidationException,
    ThrottlingException,
    /// Any other error of the Step Functions API (the message names it).
    StepFunctionsError,
}

impl ExecutionErrorCode {
    const ALL: [Self; 13] = [
        Self::ExecutionDoesNotExist,
        Self::ExecutionNotRedrivable,
        Self::ExecutionAlreadyExists,
        Self::ExecutionLimitExceeded,
        Self::StateMachineDoesNotExist,
        Self::StateMachineDeleting,
        Self::InvalidArn,
        Self::InvalidName,
        Self::InvalidExecutionInput,
        Self::InvalidToken,
        Self::ValidationException,
        Self::ThrottlingException,
        Self::StepFunctionsError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ExecutionDoesNotExist => "ExecutionDoesNotExist",
            Self::ExecutionNotRedrivable => "ExecutionNotRedrivable",
            Self::ExecutionAlreadyExists => "ExecutionAlreadyExists",
            Self::ExecutionLimitExceeded => "ExecutionLimitExceeded",
            Self::StateMachineDoesNotExist => "StateMachineDoesNotExist",
            Self::StateMachineDeleting => "StateMachineDeleting",
            Self::InvalidArn => "InvalidArn",
            Self::InvalidName => "InvalidName",
            Self::InvalidExecutionInput => "InvalidExecutionInput",
            Self::InvalidToken => "InvalidToken",
            Self::ValidationException => "ValidationException",
            Self::ThrottlingException => "ThrottlingException",
            Self::StepFunctionsError => "StepFunctionsError",
        }
    }

    /// The code of a service error name; [`Self::StepFunctionsError`] for one we do not name.
    pub fn of_service(code: Option<&str>) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| Some(c.name()) == code)
            .unwrap_or(Self::StepFunctionsError)
    }
}

/// A refused operation on an execution: its code and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct ExecutionError {
    pub code: ExecutionErrorCode,
    pub message: String,
}

impl ExecutionError {
    pub fn new(code: ExecutionErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_spelled_as_step_functions_spells_them() {
        for status in ExecutionStatus::ALL {
            let json = serde_json::to_value(status).unwrap();
            assert_eq!(json, status.name());
            assert_eq!(status.name().parse::<ExecutionStatus>(), Ok(status));
        }
        assert!("Succeeded".parse::<ExecutionStatus>().is_err());
    }

    #[test]
    fn service_error_names_map_to_their_codes() {
        for code in ExecutionErrorCode::ALL {
            assert_eq!(ExecutionErrorCode::of_service(Some(code.name())), code);
        }
        let other = ExecutionErrorCode::of_service(Some("KmsAccessDeniedException"));
        assert_eq!(other, ExecutionErrorCode::StepFunctionsError);
        assert_eq!(ExecutionErrorCode::of_service(None), other);
    }
}
