//! The daily schedule's starter (the `start-daily` Lambda): one execution per business date.
//!
//! EventBridge invokes the function with its scheduled event
//! (`{"time": "2026-11-23T06:00:00Z", …}`); the execution is named after the event's UTC
//! date, `daily-2026-11-23`. Step Functions refuses a second execution with a name already
//! used (`ExecutionAlreadyExists`), so a double trigger — EventBridge's at-least-once
//! delivery, a retried invocation, a hand-started duplicate — cannot load twice; the starter
//! reports that refusal as "already started", a success, so nothing retries or alarms.
//!
//! (On AWS a repeated start with the same name *and input* while the first execution is still
//! running is not refused: the service answers with the running execution's ARN. Either way
//! one execution exists for the day.)

use crate::aws::sfn;
use crate::error::{EtlError, Result};
use crate::execution::{ExecutionError, ExecutionErrorCode};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Prefix of every scheduled execution name.
pub const NAME_PREFIX: &str = "daily-";

/// The execution input of a scheduled run (the same as the console's default).
pub const INPUT: &str = "{}";

/// The part of the EventBridge scheduled event the starter reads; other fields are ignored.
/// `time` may also be given by hand (`aws lambda invoke --payload '{"time": "…"}'`) to start
/// the run of a given day.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduledEvent {
    #[serde(default)]
    pub time: Option<String>,
}

/// The business date of a scheduled event: the UTC date of its `time` (RFC 3339).
pub fn business_date(event: &ScheduledEvent) -> Result<NaiveDate> {
    let time = event.time.as_deref().ok_or_else(|| {
        EtlError::InvalidInput("scheduled event has no \"time\" field".to_string())
    })?;
    let time = DateTime::parse_from_rfc3339(time).map_err(|e| {
        EtlError::InvalidInput(format!(
            "scheduled event time {time:?} is not an RFC 3339 time: {e}"
        ))
    })?;
    Ok(time.with_timezone(&Utc).date_naive())
}

/// `daily-YYYY-MM-DD` for a business date.
pub fn execution_name(date: NaiveDate) -> String {
    format!("{NAME_PREFIX}{}", crate::record::iso(date))
}

/// The ARN an execution named `name` of `state_machine_arn` has
/// (`arn:aws:states:R:A:stateMachine:M` → `arn:aws:states:R:A:execution:M:name`), or `None`
/// when the state machine ARN is not of that shape.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> Option<String> {
    let mut parts: Vec<&str> = state_machine_arn.split(':').collect();
    if parts.len() != 7 || parts[0] != "arn" || parts[2] != "states" || parts[5] != "stateMachine" {
        return None;
    }
    parts[5] = "execution";
    Some(format!("{}:{name}", parts.join(":")))
}

/// What a scheduled start did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StartStatus {
    /// The execution was started now (or, on AWS, was still running with the same input).
    Started,
    /// An execution with this name already exists: the day's run was started before.
    AlreadyStarted,
}

/// The function's result: `{"status", "name", "executionArn"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StartOutcome {
    pub status: StartStatus,
    pub name: String,
    /// The execution's ARN (for `AlreadyStarted`, derived from the state machine ARN).
    pub execution_arn: Option<String>,
}

/// Maps the answer of `StartExecution` to the outcome: `ExecutionAlreadyExists` is a success
/// (`AlreadyStarted`); every other error stays an error.
pub fn outcome(
    state_machine_arn: &str,
    name: &str,
    started: Result<String>,
) -> Result<StartOutcome> {
    match started {
        Ok(arn) => Ok(StartOutcome {
            status: StartStatus::Started,
            name: name.to_string(),
            execution_arn: Some(arn),
        }),
        Err(EtlError::Execution(ExecutionError {
            code: ExecutionErrorCode::ExecutionAlreadyExists,
            ..
        })) => Ok(StartOutcome {
            status: StartStatus::AlreadyStarted,
            name: name.to_string(),
            execution_arn: execution_arn(state_machine_arn, name),
        }),
        Err(e) => Err(e),
    }
}

/// Starts the day's execution of `state_machine_arn` for a scheduled event, and logs what
/// happened ("started" or "already started").
pub async fn start_daily(
    client: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    event: &ScheduledEvent,
) -> Result<StartOutcome> {
    let name = execution_name(business_date(event)?);
    let started = sfn::start_execution(client, state_machine_arn, Some(&name), INPUT).await;
    let outcome = outcome(state_machine_arn, &name, started).inspect_err(|e| {
        tracing::error!(name = %name, error = e.name(), message = %e, "could not start");
    })?;
    let arn = outcome.execution_arn.as_deref().unwrap_or_default();
    match outcome.status {
        StartStatus::Started => {
            tracing::info!(name = %name, execution_arn = arn, "started")
        }
        StartStatus::AlreadyStarted => {
            tracing::info!(name = %name, execution_arn = arn, "already started")
        }
    }
    Ok(outcome)
}

/// The state machine to start, from `STATE_MACHINE_ARN`.
pub fn state_machine_arn_from_env() -> Result<String> {
    std::env::var("STATE_MACHINE_ARN")
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| EtlError::ConfigError {
            variable: "STATE_MACHINE_ARN",
            value: String::new(),
            reason: "is not set".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:covid-etl-prod";

    fn event(time: &str) -> ScheduledEvent {
        serde_json::from_value(serde_json::json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time,
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/covid-etl-prod-daily"],
            "detail": {}
        }))
        .unwrap()
    }

    fn name_of(time: &str) -> Result<String> {
        business_date(&event(time)).map(execution_name)
    }

    #[test]
    fn the_name_is_the_utc_date_of_the_event_time() {
        assert_eq!(name_of("2026-11-23T06:00:00Z").unwrap(), "daily-2026-11-23");
        assert_eq!(name_of("2026-11-23T00:00:00Z").unwrap(), "daily-2026-11-23");
        assert_eq!(name_of("2026-11-23T23:59:59Z").unwrap(), "daily-2026-11-23");
        // An offset is converted to UTC first.
        assert_eq!(
            name_of("2026-11-24T01:30:00+02:00").unwrap(),
            "daily-2026-11-23"
        );
        assert_eq!(
            name_of("2026-11-23T22:00:00-05:00").unwrap(),
            "daily-2026-11-24"
        );
        assert_eq!(
            name_of("2024-02-29T12:00:00.123Z").unwrap(),
            "daily-2024-02-29"
        );
    }

    #[test]
    fn two_triggers_on_one_day_share_a_name() {
        assert_eq!(
            name_of("2026-11-23T06:00:00Z").unwrap(),
            name_of("2026-11-23T06:00:41Z").unwrap()
        );
        assert_ne!(
            name_of("2026-11-23T06:00:00Z").unwrap(),
            name_of("2026-11-24T06:00:00Z").unwrap()
        );
    }

    #[test]
    fn an_event_without_a_valid_time_is_invalid_input() {
        let e = business_date(&ScheduledEvent::default()).unwrap_err();
        assert_eq!(e.name(), "InvalidInput");
        assert!(e.to_string().contains("time"), "{e}");
        for bad in ["2026-11-23", "yesterday", "2026-13-01T00:00:00Z", ""] {
            let e = business_date(&event(bad)).unwrap_err();
            assert_eq!(e.name(), "InvalidInput", "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn names_are_valid_execution_names() {
        // 1-80 characters from [A-Za-z0-9-_], as the console and CloudWatch require.
        let name = name_of("2026-11-23T06:00:00Z").unwrap();
        assert!(name.len() <= 80);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn execution_arn_is_derived_from_the_state_machine_arn() {
        assert_eq!(
            execution_arn(MACHINE, "daily-2026-11-23").as_deref(),
            Some("arn:aws:states:us-east-1:123456789012:execution:covid-etl-prod:daily-2026-11-23")
        );
        assert_eq!(
            execution_arn(
                "arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:m",
                "n"
            )
            .as_deref(),
            Some("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:m:n")
        );
        assert_eq!(execution_arn("not-an-arn", "n"), None);
        assert_eq!(
            execution_arn("arn:aws:lambda:us-east-1:123456789012:function:f", "n"),
            None
        );
    }

    #[test]
    fn a_new_start_is_started() {
        let arn = format!(
            "{}:daily-2026-11-23",
            MACHINE.replace("stateMachine", "execution")
        );
        let o = outcome(MACHINE, "daily-2026-11-23", Ok(arn.clone())).unwrap();
        assert_eq!(o.status, StartStatus::Started);
        assert_eq!(o.execution_arn, Some(arn));
        assert_eq!(
            serde_json::to_value(&o).unwrap()["status"],
            serde_json::json!("started")
        );
    }

    #[test]
    fn execution_already_exists_is_already_started_and_a_success() {
        let refused = Err(EtlError::from(ExecutionError::new(
            ExecutionErrorCode::ExecutionAlreadyExists,
            "StartExecution …: Execution Already Exists",
        )));
        let o = outcome(MACHINE, "daily-2026-11-23", refused).unwrap();
        assert_eq!(o.status, StartStatus::AlreadyStarted);
        assert_eq!(o.name, "daily-2026-11-23");
        assert_eq!(
            o.execution_arn.as_deref(),
            Some("arn:aws:states:us-east-1:123456789012:execution:covid-etl-prod:daily-2026-11-23")
        );
        assert_eq!(
            serde_json::to_value(&o).unwrap()["status"],
            serde_json::json!("alreadyStarted")
        );
    }

    #[test]
    fn other_errors_stay_errors() {
        for code in [
            ExecutionErrorCode::ExecutionLimitExceeded,
            ExecutionErrorCode::StateMachineDoesNotExist,
            ExecutionErrorCode::ThrottlingException,
            ExecutionErrorCode::StepFunctionsError,
        ] {
            let refused = Err(ExecutionError::new(code, "no").into());
            let e = outcome(MACHINE, "daily-2026-11-23", refused).unwrap_err();
            assert_eq!(e.name(), code.name());
        }
        let e = outcome(
            MACHINE,
            "daily-2026-11-23",
            Err(EtlError::InvalidInput("x".into())),
        )
        .unwrap_err();
        assert_eq!(e.name(), "InvalidInput");
    }
}
