//! Step Functions operations behind the CLI: start, list, describe, history, redrive.
//!
//! Every function takes a ready [`Client`] (build it from [`super::sdk_config`]) and maps the
//! service's errors to an [`ExecutionError`] with the service's error name
//! (`ExecutionDoesNotExist`, `ExecutionNotRedrivable`, …) and a one-line message.
//!
//! [`history`] converts AWS history events to the JSON shape of the local engine's history,
//! so one renderer shows both:
//! `{"id", "previousEventId", "timestamp" (RFC 3339), "type", "stateName", "details"}` where
//! `details` flattens AWS's `…EventDetails` (`input`, `output`, `error`, `cause`, `resource`,
//! `resourceType`, `parameters`, …), payloads kept as the JSON text AWS gives (the local
//! engine records them the same way).

use crate::aws::sdk_error_text;
use crate::error::{EtlError, Result};
use crate::execution::{ExecutionError, ExecutionErrorCode, ExecutionRecord, ExecutionStatus};
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::HistoryEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// A failed Step Functions call as an [`ExecutionError`]: `{op} {target}: {service message}`.
fn sfn_error<E>(op: &str, target: &str, e: SdkError<E, HttpResponse>) -> EtlError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (code, message) = sdk_error_text(&e);
    let message = message.replace('\n', " ");
    ExecutionError::new(
        ExecutionErrorCode::of_service(code.as_deref()),
        format!("{op} {target}: {message}"),
    )
    .into()
}

fn time(t: &aws_sdk_sfn::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_default()
}

/// A JSON payload of a description: parsed when it is JSON, else the text.
fn payload(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Starts an execution of `state_machine_arn` (the console's "Start execution") and returns
/// its ARN. `input` must be a JSON document (`{}` for a scheduled-style run).
pub async fn start_execution(
    client: &Client,
    state_machine_arn: &str,
    name: Option<&str>,
    input: &str,
) -> Result<String> {
    serde_json::from_str::<Value>(input)
        .map_err(|e| EtlError::InvalidInput(format!("execution input is not JSON: {e}")))?;
    let out = client
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .set_name(name.map(str::to_string))
        .input(input)
        .send()
        .await
        .map_err(|e| sfn_error("StartExecution", state_machine_arn, e))?;
    Ok(out.execution_arn().to_string())
}

/// The service's status as ours. A status newer than this SDK reads as `RUNNING`: shown, and
/// never taken for an ending.
fn status(s: &aws_sdk_sfn::types::ExecutionStatus) -> ExecutionStatus {
    s.as_str().parse().unwrap_or(ExecutionStatus::Running)
}

/// One line of `covid-etl executions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummaryRow {
    pub execution_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
}

/// The newest executions of a state machine first, at most `max` of them (paging as needed).
pub async fn list_executions(
    client: &Client,
    state_machine_arn: &str,
    max: usize,
) -> Result<Vec<ExecutionSummaryRow>> {
    let mut rows = Vec::new();
    let mut token: Option<String> = None;
    while rows.len() < max {
        let page_size = (max - rows.len()).min(1000) as i32;
        let out = client
            .list_executions()
            .state_machine_arn(state_machine_arn)
            .max_results(page_size)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sfn_error("ListExecutions", state_machine_arn, e))?;
        rows.extend(out.executions().iter().map(|e| ExecutionSummaryRow {
            execution_arn: e.execution_arn().to_string(),
            name: e.name().to_string(),
            status: status(e.status()),
            start: time(e.start_date()),
            stop: e.stop_date().map(time),
        }));
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    rows.truncate(max);
    Ok(rows)
}

/// What `covid-etl execution` shows above the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionDescription {
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub status: ExecutionStatus,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub start: DateTime<Utc>,
    pub stop: Option<DateTime<Utc>>,
    pub redrive_count: i32,
    /// `REDRIVABLE`, `NOT_REDRIVABLE`, `REDRIVABLE_BY_MAP_RUN`, when the service says.
    pub redrive_status: Option<String>,
    pub redrive_status_reason: Option<String>,
    pub redrive_date: Option<DateTime<Utc>>,
}

/// A deployed execution as the local engine records its own: one renderer and one summary
/// (outcome, counts) for both. The failed state is not in the description (the history has
/// it: `covid-etl execution ARN`).
impl From<ExecutionDescription> for ExecutionRecord {
    fn from(d: ExecutionDescription) -> Self {
        let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        Self {
            id: d.execution_arn,
            name: d.name,
            started_at: stamp(d.start),
            finished_at: d.stop.map(stamp),
            status: d.status,
            input: d.input.unwrap_or(Value::Null),
            output: d.output,
            error: d.error,
            cause: d.cause,
            failed_state: None,
            redrive_from: None,
            redrive_count: u32::try_from(d.redrive_count).unwrap_or(0),
        }
    }
}

pub async fn describe(client: &Client, execution_arn: &str) -> Result<ExecutionDescription> {
    let d = client
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(|e| sfn_error("DescribeExecution", execution_arn, e))?;
    Ok(ExecutionDescription {
        execution_arn: d.execution_arn().to_string(),
        state_machine_arn: d.state_machine_arn().to_string(),
        name: d.name().unwrap_or_default().to_string(),
        status: status(d.status()),
        input: d.input().map(payload),
        output: d.output().map(payload),
        error: d.error().map(str::to_string),
        cause: d.cause().map(str::to_string),
        start: time(d.start_date()),
        stop: d.stop_date().map(time),
        redrive_count: d.redrive_count().unwrap_or(0),
        redrive_status: d.redrive_status().map(|s| s.as_str().to_string()),
        redrive_status_reason: d.redrive_status_reason().map(str::to_string),
        redrive_date: d.redrive_date().map(time),
    })
}

/// The whole history of an execution, oldest event first, every page of GetExecutionHistory,
/// each event converted by [`event_json`].
pub async fn history(client: &Client, execution_arn: &str) -> Result<Vec<Value>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .include_execution_data(true)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sfn_error("GetExecutionHistory", execution_arn, e))?;
        events.extend(out.events().iter().cloned());
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(convert_history(&events))
}

/// Converts a history. AWS names the state only on `…StateEntered`/`…StateExited` events; the
/// local engine also names it on the task events in between, so a converted event without a
/// name inherits the one of the event it follows (`previousEventId`), execution-level events
/// excepted.
pub fn convert_history(events: &[HistoryEvent]) -> Vec<Value> {
    let mut names: HashMap<i64, String> = HashMap::new();
    events
        .iter()
        .map(|e| {
            let mut v = event_json(e);
            let kind = e.r#type().as_str();
            if v["stateName"].is_null()
                && !kind.starts_with("Execution")
                && let Some(n) = names.get(&e.previous_event_id())
            {
                v["stateName"] = Value::String(n.clone());
            }
            // A state's exit hands control to the next state, not its name.
            if let Some(n) = v["stateName"]
                .as_str()
                .filter(|_| !kind.ends_with("StateExited"))
            {
                names.insert(e.id(), n.to_string());
            }
            v
        })
        .collect()
}

/// One AWS history event in the local engine's shape (see the module docs).
pub fn event_json(e: &HistoryEvent) -> Value {
    let mut d = Map::new();
    let mut state_name: Option<String> = None;
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(v) = value {
            d.insert(key.to_string(), v);
        }
    };
    let text = |s: Option<&str>| s.map(|s| Value::String(s.to_string()));
    let nonempty = |s: &str| (!s.is_empty()).then(|| Value::String(s.to_string()));

    if let Some(x) = e.execution_started_event_details() {
        put("input", text(x.input()));
        put("roleArn", text(x.role_arn()));
    }
    if let Some(x) = e.execution_succeeded_event_details() {
        put("output", text(x.output()));
    }
    if let Some(x) = e.execution_failed_event_details() {
        put("error", text(x.error()));
        put("cause", text(x.cause()));
    }
    if let Some(x) = e.execution_aborted_event_details() {
        put("error", text(x.error()));
        put("cause", text(x.cause()));
    }
    if let Some(x) = e.execution_timed_out_event_details() {
        put("error", text(x.error()));
        put("cause", text(x.cause()));
    }
    if let Some(x) = e.execution_redriven_event_details() {
        put("redriveCount", x.redrive_count().map(Value::from));
    }
    if let Some(x) = e.state_entered_event_details() {
        state_name = Some(x.name().to_string());
        put("input", text(x.input()));
    }
    if let Some(x) = e.state_exited_event_details() {
        state_name = Some(x.name().to_string());
        put("output", text(x.output()));
    }
    if let Some(x) = e.task_scheduled_event_details() {
        put("resourceType", nonempty(x.resource_type()));
        put("resource", nonempty(x.resource()));
        put("region", nonempty(x.region()));
        put(
            "parameters",
            text(Some(x.parameters()).filter(|p| !p.is_empty())),
        );
        put("timeoutInSeconds", x.timeout_in_seconds().map(Value::from));
    }
    if let Some(x) = e.task_started_event_details() {
        put("resourceType", nonempty(x.resource_type()));
        put("resource", nonempty(x.resource()));
    }
    if let Some(x) = e.task_submitted_event_details() {
        put("resourceType", nonempty(x.resource_type()));
        put("resource", nonempty(x.resource()));
        put("output", text(x.output()));
    }
    if let Some(x) = e.task_succeeded_event_details() {
        put("resourceType", nonempty(x.resource_type()));
        put("resource", nonempty(x.resource()));
        put("output", text(x.output()));
    }
    macro_rules! failure {
        ($($getter:ident),* $(,)?) => {$(
            if let Some(x) = e.$getter() {
                put("error", text(x.error()));
                put("cause", text(x.cause()));
            }
        )*};
    }
    macro_rules! task_failure {
        ($($getter:ident),* $(,)?) => {$(
            if let Some(x) = e.$getter() {
                put("resourceType", nonempty(x.resource_type()));
                put("resource", nonempty(x.resource()));
                put("error", text(x.error()));
                put("cause", text(x.cause()));
            }
        )*};
    }
    task_failure!(
        task_failed_event_details,
        task_timed_out_event_details,
        task_start_failed_event_details,
        task_submit_failed_event_details,
    );
    failure!(
        lambda_function_failed_event_details,
        lambda_function_timed_out_event_details,
        lambda_function_start_failed_event_details,
        lambda_function_schedule_failed_event_details,
        activity_failed_event_details,
        activity_timed_out_event_details,
        activity_schedule_failed_event_details,
    );
    if let Some(x) = e.lambda_function_scheduled_event_details() {
        put("resourceType", Some(json!("lambda")));
        put("resource", nonempty(x.resource()));
        put("input", text(x.input()));
        put("timeoutInSeconds", x.timeout_in_seconds().map(Value::from));
    }
    if let Some(x) = e.lambda_function_succeeded_event_details() {
        put("output", text(x.output()));
    }
    if let Some(x) = e.activity_scheduled_event_details() {
        put("resource", nonempty(x.resource()));
        put("input", text(x.input()));
    }
    if let Some(x) = e.activity_started_event_details() {
        put("workerName", text(x.worker_name()));
    }
    if let Some(x) = e.activity_succeeded_event_details() {
        put("output", text(x.output()));
    }
    if let Some(x) = e.map_state_started_event_details() {
        put("length", Some(Value::from(x.length())));
    }
    for x in [
        e.map_iteration_started_event_details(),
        e.map_iteration_succeeded_event_details(),
        e.map_iteration_failed_event_details(),
        e.map_iteration_aborted_event_details(),
    ]
    .into_iter()
    .flatten()
    {
        put("index", Some(Value::from(x.index())));
        if state_name.is_none() {
            state_name = x.name().map(str::to_string);
        }
    }

    json!({
        "id": e.id(),
        "previousEventId": e.previous_event_id(),
        "timestamp": time(e.timestamp()).to_rfc3339_opts(SecondsFormat::Millis, true),
        "type": e.r#type().as_str(),
        "stateName": state_name,
        "details": Value::Object(d),
    })
}

/// Redrives a failed, timed-out or aborted execution from the states that did not succeed
/// (RedriveExecution) and returns when the service accepted it. An execution that cannot be
/// redriven fails with `ExecutionNotRedrivable` and the service's reason, an unknown ARN with
/// `ExecutionDoesNotExist`.
pub async fn redrive(client: &Client, execution_arn: &str) -> Result<DateTime<Utc>> {
    let out = client
        .redrive_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .map_err(|e| sfn_error("RedriveExecution", execution_arn, e))?;
    Ok(time(out.redrive_date()))
}

/// The history as the local engine's event type, for the shared rendering. Events of kinds
/// the local engine never emits (Map, Wait, …) do not change the step view and are left out.
pub async fn history_events(
    client: &Client,
    execution_arn: &str,
) -> Result<Vec<crate::engine::HistoryEvent>> {
    Ok(history(client, execution_arn)
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// The last error of an execution and the state it happened in, read from its history.
pub async fn last_failure(
    client: &Client,
    execution_arn: &str,
) -> Result<crate::report::LastFailure> {
    Ok(crate::report::last_failure(
        &history_events(client, execution_arn).await?,
    ))
}
