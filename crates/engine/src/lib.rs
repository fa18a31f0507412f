//! A small Amazon States Language interpreter that runs our state machine locally with the
//! same semantics as AWS Step Functions.
//!
//! Why our own: the `asl` crate cannot run Parallel or Retry and mangles Catch output, and
//! the complete emulators are either AGPL or differ from AWS on jitter, retry counters,
//! Parallel cancellation and the payload limit (see `/work/shared/ASL-SEMANTICS.md`).
//!
//! Scope is deliberately narrow: Task, Parallel, Pass, Choice, Succeed and Fail states,
//! reference paths only, four intrinsic functions. Anything else is refused when the
//! definition is loaded ([`StateMachine::from_json`]) rather than silently ignored.
//!
//! The engine knows nothing about what tasks do: a [`TaskHandler`] receives each Task's
//! `Resource` (uninterpreted JSON) and effective input. Time, randomness and history
//! storage are injected ([`Clock`], [`Jitter`], [`HistorySink`]) so tests never sleep and
//! FULL jitter is deterministic.
//!
//! Choices where AWS documentation is silent:
//! - A failed Parallel state reports the failing branch's own `{Error, Cause}` (not a
//!   wrapper such as `States.BranchFailed`); sibling branches are dropped, i.e. cancelled.
//! - Path, template and intrinsic-function failures all raise `States.Runtime`.
//! - A Choice with no matching rule and no Default raises `States.NoChoiceMatched`.

mod choice;
mod definition;
mod executor;
mod history;
mod path;
mod retry;

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use definition::{DefinitionError, StateMachine};
pub use executor::Executor;
pub use history::{EventKind, HistoryEvent, HistorySink, MemoryHistory};

/// Matches every error except [`STATES_RUNTIME`] and [`DATA_LIMIT_EXCEEDED`].
pub const STATES_ALL: &str = "States.ALL";
/// Matches every error except [`STATES_TIMEOUT`] and the two terminal ones.
pub const TASK_FAILED: &str = "States.TaskFailed";
/// A Task ran past its `TimeoutSeconds`, or the execution past the machine's.
pub const STATES_TIMEOUT: &str = "States.Timeout";
/// Input/output processing failed (a path selected nothing): never retried nor caught.
pub const STATES_RUNTIME: &str = "States.Runtime";
/// A payload exceeded [`PAYLOAD_LIMIT_BYTES`]; catchable only by naming it.
pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
/// A Choice state matched no rule and has no Default.
pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
/// AWS's limit on a task input/result, state output or execution input: 256 KiB of UTF-8 JSON.
pub const PAYLOAD_LIMIT_BYTES: usize = 256 * 1024;

/// A Step Functions error: what a task returns on failure and what Catch writes out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause")]
    pub cause: String,
}

impl TaskError {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

/// What a handler learns about the attempt it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskContext {
    pub state_name: String,
    /// Retries already made for this visit to the state (0 on the first attempt).
    pub retry_count: u32,
    pub execution_id: String,
    /// The full context object, as `$$` sees it.
    pub context: Value,
}

/// Runs Task states. Errors are returned by name (e.g. `Lambda.ServiceException`) so the
/// definition's Retry and Catch can match them.
#[async_trait::async_trait]
pub trait TaskHandler: Send + Sync {
    /// Called once per attempt with the state's effective input (after InputPath and Parameters).
    async fn invoke(
        &self,
        resource: &Value,
        input: Value,
        ctx: &TaskContext,
    ) -> Result<Value, TaskError>;
}

/// Time as the engine sees it: injectable so retries and timeouts are testable without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock: `Utc::now` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Real time, with every wait (retry delays, timeouts) divided by `speedup`: runs the real
/// definition against real sources fast, for end-to-end tests and demos. Timestamps stay real.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    pub speedup: f64,
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d.div_f64(self.speedup.max(1.0))))
    }
}

/// The random source for FULL jitter: a sample uniform in [0, 1).
pub trait Jitter: Send + Sync {
    fn sample(&self) -> f64;
}

/// FULL jitter from the thread-local generator of `rand`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn sample(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// Always the same sample: deterministic FULL jitter for tests and reproducible runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn sample(&self) -> f64 {
        self.0
    }
}

/// Final status of an execution, serialized as AWS spells it (`SUCCEEDED`, `FAILED`,
/// `TIMED_OUT`, `ABORTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

/// The result of [`Executor::start`] or [`Executor::resume`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionOutcome {
    pub status: ExecutionStatus,
    /// The final output, for a succeeded execution.
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The innermost state whose error ended the run, or, when the run went through a Catch,
    /// the state whose error was caught first (e.g. "ExtractNyt" inside a Parallel branch,
    /// not the Parallel and not the Fail state at the end of the failure branch).
    pub failed_state: Option<String>,
    /// The top-level state containing `failed_state` and the input it was entered with:
    /// what [`Executor::resume`] needs to redrive the execution.
    pub redrive_from: Option<(String, Value)>,
}

#[cfg(test)]
mod api_tests {
    use super::*;

    #[test]
    fn public_types_serialize_like_aws() {
        let error =
            serde_json::to_value(TaskError::new("Lambda.ServiceException", "boom")).unwrap();
        assert_eq!(
            error,
            serde_json::json!({"Error": "Lambda.ServiceException", "Cause": "boom"})
        );
        let statuses = [
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
        ];
        let names: Vec<_> = statuses
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(names, ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]);
        let sample = RandomJitter.sample();
        assert!((0.0..1.0).contains(&sample));
    }

    #[tokio::test]
    async fn system_clock_sleeps_through_tokio() {
        let before = SystemClock.now();
        SystemClock.sleep(Duration::from_millis(1)).await;
        assert!(SystemClock.now() >= before);
    }
}
