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
    pub status: StepStatus,
    pub started_at: String,
    pub duration_ms: Option<i64>,
    /// Task attempts (1 when the first one succeeded).
    pub attempts: u32,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub output: Option<String>,
}

/// How one step ended, as the execution tables show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepStatus {
    /// The execution is still in it.
    Running,
    Succeeded,
    /// Failed, and a Catch routed on.
    Caught,
    /// The error ended the state without an exit: the run or the enclosing branch failed.
    Failed,
    /// A sibling Parallel branch failed first, or the execution stopped.
    Aborted,
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Caught => "CAUGHT",
            Self::Failed => "FAILED",
            Self::Aborted => "ABORTED",
        })
    }
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
                status: StepStatus::Running,
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
                step.status = StepStatus::Failed;
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
                step.status = StepStatus::Failed;
            }
            EventKind::TaskSucceeded => {
                step.status = StepStatus::Succeeded;
                step.error = None;
                step.cause = None;
            }
            _ if kind.ends_with("StateExited") => {
                // A state whose error a Catch handled still exits: it is "caught", not fine.
                step.status = if step.error.is_some() {
                    StepStatus::Caught
                } else {
                    StepStatus::Succeeded
                };
                step.duration_ms = Some((event.timestamp - entered_at[i]).num_milliseconds());
                step.output = event.details.get("output").map(summarize);
            }
            _ => {}
        }
    }
    // A failed step that never exited ends at its last event.
    for (i, step) in steps.iter_mut().enumerate() {
        if finished && step.status == StepStatus::Running {
            step.status = StepStatus::Aborted;
        }
        if step.duration_ms.is_none() && step.status == StepStatus::Failed {
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
/// Catch saw (a failing step, a timeout, an abort): what an operator needs first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastFailure {
    pub state: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
    /// The last attempt entered a Fail state: the definition's failure branch, which has
    /// already published its own message.
    pub reached_fail_state: bool,
}

pub fn last_failure(events: &[HistoryEvent]) -> LastFailure {
    // A redriven execution's history holds every attempt; the last one decides.
    let attempt = events
        .iter()
        .rposition(|e| {
            matches!(
                e.kind,
                EventKind::ExecutionStarted | EventKind::ExecutionRedriven
            )
        })
        .map_or(events, |i| &events[i..]);
    let events = attempt;
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
    let error = failing.and_then(|e| text(&e.details, "error"));
    // The innermost Task that raised the execution's error (a Parallel or the execution
    // itself only passes it on), else the state the execution was in.
    let innermost = events
        .iter()
        .rev()
        .find(|e| {
            matches!(e.kind, EventKind::TaskFailed | EventKind::TaskTimedOut)
                && error.is_some()
                && text(&e.details, "error") == error
        })
        .and_then(|e| e.state_name.clone());
    LastFailure {
        state: innermost
            .or_else(|| failing.and_then(|e| e.state_name.clone()))
            .or(last_entered),
        error,
        cause: failing
            .and_then(|e| text(&e.details, "cause"))
            .map(|c| cause_message(&c)),
        reached_fail_state: events.iter().any(|e| e.kind == EventKind::FailStateEntered),
    }
}

fn text(details: &Value, key: &str) -> Option<String> {
    details.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A one-line summary of a state's output: its fields with their values, nested objects'
/// scalars shown by value (`load={inserted=215 updated=116 …}`), arrays by their length.
/// History events carry payloads as JSON text, as AWS does (events stored by earlier
/// versions hold the value itself); the text is read three levels deep, never built as a
/// whole tree.
pub fn summarize(output: &Value) -> String {
    let outline: Option<Outline> = match output {
        Value::String(text) => serde_json::from_str(text).ok(),
        _ => None,
    }
    .or_else(|| serde::Deserialize::deserialize(output).ok());
    let s = match outline {
        Some(Node::Object(fields)) => fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.one()))
            .collect::<Vec<_>>()
            .join(" "),
        Some(Node::Array(items)) => items.iter().map(Brief::one).collect::<Vec<_>>().join(" "),
        Some(Node::Scalar(v)) => scalar(&v),
        None => String::new(),
    };
    if s.chars().count() > SUMMARY_CHARS {
        format!("{}…", s.chars().take(SUMMARY_CHARS - 1).collect::<String>())
    } else {
        s
    }
}

/// The longest summary line.
const SUMMARY_CHARS: usize = 160;

/// A JSON value with its members read as `M`: skipped with `IgnoredAny` (only an array's
/// length and an object's keys are kept), or as a further `Node`.
enum Node<M> {
    Object(Vec<(String, M)>),
    Array(Vec<M>),
    Scalar(Value),
}

/// A member's member: a scalar by value, an array by length, an object by its keys.
type Leaf = Node<serde::de::IgnoredAny>;
/// A member as [`summarize`] shows it: scalars and its own members as [`Leaf`]s.
type Brief = Node<Leaf>;
/// A document as [`summarize`] shows it: its top level and a [`Brief`] of each member.
type Outline = Node<Brief>;

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 24 => format!("\"{}…\"", &s[..s.floor_char_boundary(24)]),
        other => other.to_string(),
    }
}

impl Leaf {
    fn one(&self) -> String {
        match self {
            Self::Array(items) => format!("[{}]", items.len()),
            Self::Object(fields) => {
                let keys: Vec<_> = fields.iter().map(|(k, _)| k.as_str()).collect();
                format!("{{{}}}", keys.join(","))
            }
            Self::Scalar(v) => scalar(v),
        }
    }
}

impl Brief {
    fn one(&self) -> String {
        match self {
            Self::Array(items) => format!("[{}]", items.len()),
            Self::Object(fields) => {
                let members: Vec<_> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.one()))
                    .collect();
                format!("{{{}}}", members.join(" "))
            }
            Self::Scalar(v) => scalar(v),
        }
    }
}

impl<'de, M: serde::Deserialize<'de>> serde::Deserialize<'de> for Node<M> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{MapAccess, SeqAccess, Visitor};
        struct V<M>(std::marker::PhantomData<M>);
        impl<'de, M: serde::Deserialize<'de>> Visitor<'de> for V<M> {
            type Value = Node<M>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::from(v)))
            }
            fn visit_unit<E>(self) -> Result<Node<M>, E> {
                Ok(Node::Scalar(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<M>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<M>, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Node::Object(fields))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Payloads as JSON text (how events carry them) and as values (events stored by earlier
    /// versions) summarize the same way.
    #[test]
    fn summaries_show_sizes_keys_and_short_scalars() {
        let output = json!({
            "records": ["2020-01-22,1,0", "2020-01-23,2,0"],
            "load": {"inserted": 2, "updated": 0},
            "status": "SUCCEEDED",
            "note": "a string longer than twenty-four bytes",
            "count": 7,
        });
        let expected = "records=[2] load={inserted=2 updated=0} status=\"SUCCEEDED\" \
                        note=\"a string longer than twe…\" count=7";
        assert_eq!(summarize(&Value::String(output.to_string())), expected);
        assert_eq!(summarize(&output), expected);
        assert_eq!(summarize(&Value::String("[1,{\"a\":1}]".into())), "1 {a=1}");
        assert_eq!(summarize(&Value::String("not json".into())), "\"not json\"");
    }
}
