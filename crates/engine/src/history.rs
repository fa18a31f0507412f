//! Execution history shaped like AWS's `GetExecutionHistory`, written to a caller's sink.
//!
//! The engine only emits events; persisting them (SQLite, logs) is the caller's job, so a
//! `MemoryHistory` is enough for tests and the engine stays free of storage concerns.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Clock;

/// Event types, serialized with their AWS names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    ExecutionStarted,
    /// Emitted instead of `ExecutionStarted` when a run resumes from a state (redrive).
    ExecutionRedriven,
    ExecutionSucceeded,
    ExecutionFailed,
    ExecutionTimedOut,
    /// Only in AWS histories (the local engine has no abort).
    ExecutionAborted,
    TaskStateEntered,
    TaskStateExited,
    ParallelStateEntered,
    ParallelStateExited,
    PassStateEntered,
    PassStateExited,
    ChoiceStateEntered,
    ChoiceStateExited,
    SucceedStateEntered,
    SucceedStateExited,
    FailStateEntered,
    #[serde(alias = "LambdaFunctionScheduled")]
    TaskScheduled,
    #[serde(alias = "LambdaFunctionStarted")]
    TaskStarted,
    #[serde(alias = "LambdaFunctionSucceeded")]
    TaskSucceeded,
    #[serde(alias = "LambdaFunctionFailed")]
    TaskFailed,
    #[serde(alias = "LambdaFunctionTimedOut")]
    TaskTimedOut,
    ParallelStateStarted,
    ParallelStateSucceeded,
    ParallelStateFailed,
}

impl EventKind {
    /// `{Type}StateEntered` / `{Type}StateExited` for a state type. Fail states have no
    /// Exited event in AWS histories, so `None` is returned for them.
    pub(crate) fn state(type_name: &str, entered: bool) -> Option<Self> {
        use EventKind::*;
        Some(match (type_name, entered) {
            ("Task", true) => TaskStateEntered,
            ("Task", false) => TaskStateExited,
            ("Parallel", true) => ParallelStateEntered,
            ("Parallel", false) => ParallelStateExited,
            ("Pass", true) => PassStateEntered,
            ("Pass", false) => PassStateExited,
            ("Choice", true) => ChoiceStateEntered,
            ("Choice", false) => ChoiceStateExited,
            ("Succeed", true) => SucceedStateEntered,
            ("Succeed", false) => SucceedStateExited,
            ("Fail", true) => FailStateEntered,
            _ => return None,
        })
    }
}

/// One history event. `details` holds what AWS puts in the matching `…EventDetails`
/// (`input`, `output`, `error`, `cause`, `resource`, `parameters`, `retryAttempt`), with
/// payloads kept as JSON values rather than AWS's JSON-in-a-string.
///
/// Serialized as `{"id","previousEventId","timestamp","type","stateName","details"}`, the shape
/// `covid_etl::aws::sfn::history` gives AWS's events, so one renderer serves both.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    pub id: u64,
    #[serde(default)]
    pub previous_event_id: u64,
    pub timestamp: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub state_name: Option<String>,
    pub details: Value,
}

/// Where events go, one call per event, in order.
pub trait HistorySink: Send + Sync {
    fn record(&self, event: &HistoryEvent);
}

/// A sink that keeps events in memory (tests, or callers that persist at the end).
#[derive(Debug, Default)]
pub struct MemoryHistory {
    events: Mutex<Vec<HistoryEvent>>,
}

impl MemoryHistory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<HistoryEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The events, without copying them.
    pub fn into_events(self) -> Vec<HistoryEvent> {
        self.events.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl HistorySink for MemoryHistory {
    fn record(&self, event: &HistoryEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

/// Numbers events for one run and stamps them with the clock.
pub(crate) struct Recorder<'a> {
    sink: &'a dyn HistorySink,
    clock: &'a dyn Clock,
    next_id: AtomicU64,
}

/// The last event of one line of execution (the run itself, or one Parallel branch), so that
/// `previous_event_id` follows causality as in AWS even when branches interleave.
pub(crate) struct Flow(AtomicU64);

impl Flow {
    pub(crate) fn after(id: u64) -> Self {
        Self(AtomicU64::new(id))
    }
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(sink: &'a dyn HistorySink, clock: &'a dyn Clock) -> Self {
        Self {
            sink,
            clock,
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn record(
        &self,
        flow: &Flow,
        kind: EventKind,
        state: Option<&str>,
        details: Value,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let previous_event_id = flow.0.swap(id, Ordering::Relaxed);
        self.sink.record(&HistoryEvent {
            id,
            previous_event_id,
            timestamp: self.clock.now(),
            kind,
            state_name: state.map(str::to_owned),
            details,
        });
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;
    use serde_json::json;

    #[test]
    fn events_serialize_with_aws_names_and_chain_per_flow() {
        let sink = MemoryHistory::new();
        let clock = SystemClock;
        let recorder = Recorder::new(&sink, &clock);
        let main = Flow::after(0);
        recorder.record(
            &main,
            EventKind::ExecutionStarted,
            None,
            json!({"input": {}}),
        );
        let started = recorder.record(&main, EventKind::ParallelStateStarted, Some("P"), json!({}));
        let (a, b) = (Flow::after(started), Flow::after(started));
        recorder.record(&a, EventKind::TaskStateEntered, Some("A"), json!({}));
        recorder.record(&b, EventKind::TaskStateEntered, Some("B"), json!({}));
        recorder.record(&a, EventKind::TaskScheduled, Some("A"), json!({}));
        let chain: Vec<_> = sink
            .events()
            .iter()
            .map(|e| (e.id, e.previous_event_id))
            .collect();
        assert_eq!(chain, [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3)]);
        let json = serde_json::to_value(&sink.events()[4]).unwrap();
        assert_eq!(json["type"], "TaskScheduled");
        assert_eq!(json["previousEventId"], 3);
        assert_eq!(EventKind::state("Fail", false), None);
        assert_eq!(
            EventKind::state("Choice", true),
            Some(EventKind::ChoiceStateEntered)
        );
    }
}
