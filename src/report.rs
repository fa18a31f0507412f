//! One view of an execution, step by step, built from its history events — the same code
//! renders a local execution and one fetched from AWS Step Functions.

use crate::engine::{EventKind, HistoryEvent};
use crate::payload::cause_message;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// One visit to a state, as the Step Functions console's "events" view summarises it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub name: String,
    /// Task, Parallel, Pass, Choice, Succeed or Fail.
    #[serde(rename = "type")]
    pub state_type: String,
    /// SUCCEEDED; CAUGHT (failed, and a Catch routed on); FAILED (the error ended the state
    /// without an exit: the run or the enclosing branch failed); ABORTED (a sibling Parallel
    /// branch failed first); RUNNING (the execution is still going).
    pub status: String,
    pub started_at: String,
    pub duration_ms: Option<i64>,
    /// Task attempts (1 when the first one succeeded).
    pub attempts: u32,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub output: Option<String>,
}

/// Folds history events into steps, in the order the states were entered. `finished` says
/// whether the execution has ended (then a step left running was aborted).
pub fn steps(events: &[HistoryEvent], finished: bool) -> Vec<StepView> {
    let mut steps: Vec<StepView> = Vec::new();
    let mut entered_at: Vec<chrono::DateTime<chrono::Utc>> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for event in events {
        let Some(name) = event.state_name.clone() else {
            continue;
        };
        let kind = format!("{:?}", event.kind);
        if let Some(state_type) = kind.strip_suffix("StateEntered") {
            open.insert(name.clone(), steps.len());
            entered_at.push(event.timestamp);
            let mut step = StepView {
                name,
                state_type: state_type.to_string(),
                status: "RUNNING".into(),
                started_at: event
                    .timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                duration_ms: None,
                attempts: 0,
                error: None,
                cause: None,
                output: None,
            };
            if event.kind == EventKind::FailStateEntered {
                step.status = "FAILED".into();
                step.duration_ms = Some(0);
            }
            steps.push(step);
            continue;
        }
        let Some(&i) = open.get(&name) else { continue };
        let step = &mut steps[i];
        match event.kind {
            EventKind::TaskScheduled => step.attempts += 1,
            EventKind::TaskFailed | EventKind::TaskTimedOut | EventKind::ParallelStateFailed => {
                step.error = text(&event.details, "error");
                step.cause = text(&event.details, "cause").map(|c| cause_message(&c));
                step.status = "FAILED".into();
            }
            EventKind::TaskSucceeded => {
                step.status = "SUCCEEDED".into();
                step.error = None;
                step.cause = None;
            }
            _ if kind.ends_with("StateExited") => {
                // A state whose error a Catch handled still exits: it is "caught", not fine.
                step.status = if step.error.is_some() {
                    "CAUGHT"
                } else {
                    "SUCCEEDED"
                }
                .into();
                step.duration_ms = Some((event.timestamp - entered_at[i]).num_milliseconds());
                step.output = event.details.get("output").map(summarize);
            }
            _ => {}
        }
    }
    // A failed step that never exited ends at its last event.
    for (i, step) in steps.iter_mut().enumerate() {
        if finished && step.status == "RUNNING" {
            step.status = "ABORTED".into();
        }
        if step.duration_ms.is_none() && step.status == "FAILED" {
            let last = events
                .iter()
                .filter(|e| {
                    e.state_name.as_deref() == Some(step.name.as_str())
                        && e.timestamp >= entered_at[i]
                })
                .map(|e| e.timestamp)
                .max()
                .unwrap_or(entered_at[i]);
            step.duration_ms = Some((last - entered_at[i]).num_milliseconds());
        }
    }
    steps
}

/// The last error of an execution and the state it happened in, for executions whose end no
/// Catch saw (timed out, aborted): what an operator needs first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastFailure {
    pub state: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

pub fn last_failure(events: &[HistoryEvent]) -> LastFailure {
    let failing = events.iter().rev().find(|e| {
        matches!(
            e.kind,
            EventKind::TaskFailed
                | EventKind::TaskTimedOut
                | EventKind::ParallelStateFailed
                | EventKind::ExecutionFailed
                | EventKind::ExecutionTimedOut
                | EventKind::ExecutionAborted
        ) && (text(&e.details, "error").is_some() || e.state_name.is_some())
    });
    let last_entered = events
        .iter()
        .rev()
        .find(|e| format!("{:?}", e.kind).ends_with("StateEntered"))
        .and_then(|e| e.state_name.clone());
    LastFailure {
        state: failing.and_then(|e| e.state_name.clone()).or(last_entered),
        error: failing.and_then(|e| text(&e.details, "error")),
        cause: failing
            .and_then(|e| text(&e.details, "cause"))
            .map(|c| cause_message(&c)),
    }
}

fn text(details: &Value, key: &str) -> Option<String> {
    details.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A one-line summary of a state's output: sizes of arrays, short scalars, nested keys.
pub fn summarize(value: &Value) -> String {
    fn one(v: &Value) -> String {
        match v {
            Value::Array(a) => format!("[{}]", a.len()),
            Value::Object(o) => format!("{{{}}}", o.keys().cloned().collect::<Vec<_>>().join(",")),
            Value::String(s) if s.len() > 24 => format!("\"{}…\"", &s[..s.floor_char_boundary(24)]),
            other => other.to_string(),
        }
    }
    let s = match value {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", one(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(a) => a.iter().map(one).collect::<Vec<_>>().join(" "),
        other => one(other),
    };
    if s.chars().count() > 100 {
        format!("{}…", s.chars().take(99).collect::<String>())
    } else {
        s
    }
}

/// The steps as an aligned table for a terminal.
pub fn table(steps: &[StepView]) -> String {
    let mut out = format!(
        "{:<22} {:<9} {:>9} {:>8}  {}\n",
        "STATE", "STATUS", "DURATION", "ATTEMPTS", "DETAIL"
    );
    for s in steps {
        let detail = match (&s.error, &s.cause) {
            (Some(e), Some(c)) => format!("{e}: {c}"),
            (Some(e), None) => e.clone(),
            _ => s.output.clone().unwrap_or_default(),
        };
        let duration = s.duration_ms.map_or("-".into(), |d| format!("{d} ms"));
        let attempts = if s.state_type == "Task" {
            s.attempts.to_string()
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:<22} {:<9} {:>9} {:>8}  {}\n",
            s.name, s.status, duration, attempts, detail
        ));
    }
    out
}
