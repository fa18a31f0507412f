//! The daily starter (`covid_etl::schedule`, the `start-daily` Lambda) against moto's Step
//! Functions on 127.0.0.1: triggers on one day start one execution; once it has ended, a
//! second trigger is refused (`ExecutionAlreadyExists`) and reported as "already started", a
//! success.

#[path = "common/moto.rs"]
mod moto;

use covid_etl::aws::sfn;
use covid_etl::schedule::{self, ScheduledEvent, StartStatus};
use moto::Moto;
use serde_json::{Value, json};
use std::path::PathBuf;

/// `statemachine/etl.asl.json` with fake Lambda ARNs and topic in place of its intrinsics.
fn definition() -> String {
    fn fill(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(a)) = m.get("Fn::GetAtt") {
                    let name = a[0].as_str().unwrap();
                    return json!(format!(
                        "arn:aws:lambda:us-east-1:123456789012:function:covid-etl-{name}"
                    ));
                }
                if m.get("Ref") == Some(&json!("AlertTopic")) {
                    return json!("arn:aws:sns:us-east-1:123456789012:covid-etl-alerts");
                }
                Value::Object(m.into_iter().map(|(k, v)| (k, fill(v))).collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(fill).collect()),
            other => other,
        }
    }
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("statemachine/etl.asl.json"),
    )
    .unwrap();
    fill(serde_json::from_str(&text).unwrap()).to_string()
}

async fn create_state_machine(client: &aws_sdk_sfn::Client, name: &str) -> String {
    client
        .create_state_machine()
        .name(name)
        .definition(definition())
        .role_arn("arn:aws:iam::123456789012:role/covid-etl-states")
        .send()
        .await
        .expect("create state machine")
        .state_machine_arn()
        .to_string()
}

fn scheduled(time: &str) -> ScheduledEvent {
    serde_json::from_value(json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/covid-etl-ci-daily"],
        "detail": {}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_double_trigger_starts_one_execution_per_day() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    let client = aws_sdk_sfn::Client::new(&config);
    let machine = create_state_machine(&client, "covid-etl-ci").await;

    let first = schedule::start_daily(&client, &machine, &scheduled("2026-11-23T06:00:00Z"))
        .await
        .expect("first trigger");
    assert_eq!(first.status, StartStatus::Started);
    assert_eq!(first.name, "daily-2026-11-23");
    let arn = first.execution_arn.clone().expect("execution ARN");
    assert!(
        arn.ends_with(":execution:covid-etl-ci:daily-2026-11-23"),
        "{arn}"
    );

    // The same day again while that execution still runs (EventBridge delivers at least
    // once). Step Functions — and moto — treat a start with the same name AND input of a
    // RUNNING execution as idempotent: the answer is the running execution, no new one.
    let again = schedule::start_daily(&client, &machine, &scheduled("2026-11-23T06:00:00Z"))
        .await
        .expect("a repeated trigger while running is a success");
    assert_eq!(again.status, StartStatus::Started);
    assert_eq!(again.execution_arn.as_deref(), Some(arn.as_str()));
    assert_eq!(
        sfn::list_executions(&client, &machine, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // Once the day's execution has ended, the name is refused: ExecutionAlreadyExists, which
    // the starter reports as "already started", a success. (moto cannot finish an execution
    // without running its Lambdas; stopping it ends it just as well.)
    client
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("stop execution");
    assert_eq!(
        sfn::describe(&client, &arn).await.unwrap().status,
        covid_etl::execution::ExecutionStatus::Aborted
    );
    let second = schedule::start_daily(&client, &machine, &scheduled("2026-11-23T18:30:00Z"))
        .await
        .expect("a second trigger on the same day is a success");
    assert_eq!(second.status, StartStatus::AlreadyStarted);
    assert_eq!(second.name, "daily-2026-11-23");
    assert_eq!(
        second.execution_arn.as_deref(),
        Some(arn.as_str()),
        "the ARN derived for the refused start is the first execution's"
    );

    let rows = sfn::list_executions(&client, &machine, 10).await.unwrap();
    assert_eq!(rows.len(), 1, "one execution for the day: {rows:?}");
    assert_eq!(rows[0].name, "daily-2026-11-23");
    assert_eq!(rows[0].execution_arn, arn);
    let d = sfn::describe(&client, &arn).await.unwrap();
    assert_eq!(
        d.input,
        Some(json!({})),
        "scheduled runs get the input {{}}"
    );

    // The next day is a new execution.
    let next = schedule::start_daily(&client, &machine, &scheduled("2026-11-24T06:00:00Z"))
        .await
        .unwrap();
    assert_eq!(next.status, StartStatus::Started);
    assert_eq!(next.name, "daily-2026-11-24");
    let names: Vec<String> = sfn::list_executions(&client, &machine, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"daily-2026-11-24".to_string()));
}

#[tokio::test]
async fn other_start_errors_are_errors() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    let client = aws_sdk_sfn::Client::new(&config);
    let missing = "arn:aws:states:us-east-1:123456789012:stateMachine:no-such-machine";
    let e = schedule::start_daily(&client, missing, &scheduled("2026-11-23T06:00:00Z"))
        .await
        .unwrap_err();
    assert_eq!(e.name(), "StateMachineDoesNotExist", "{e}");

    // No time, no start: the error names the field before any call is made.
    let e = schedule::start_daily(&client, missing, &ScheduledEvent::default())
        .await
        .unwrap_err();
    assert_eq!(e.name(), "InvalidInput", "{e}");
}
