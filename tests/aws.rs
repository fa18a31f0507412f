//! The AWS adapters against a real AWS API server (moto, on 127.0.0.1), and the paths moto
//! cannot show (UnprocessedItems, throttling, the 25-item limit, RedriveExecution) against the
//! AWS SDK's own test doubles (`aws-smithy-mocks`).
//!
//! Requests are counted on the server side, from moto's request recorder, grouped by the
//! `X-Amz-Target` header — not from the adapters' own bookkeeping.

#[path = "common/moto.rs"]
mod moto;

use aws_sdk_dynamodb::types::AttributeValue;
use covid_etl::aws::sfn;
use covid_etl::config::SourceConfig;
use covid_etl::execution::ExecutionStatus;
use covid_etl::extract::SourceKind;
use covid_etl::notify::{Notifier, SnsNotifier};
use covid_etl::payload::*;
use covid_etl::steps;
use covid_etl::store::dynamodb::LeasePolicy;
use covid_etl::store::dynamodb::{self, WritePolicy};
use covid_etl::store::{DynamoStore, Load, MarkerState, MemoryStore, Store};
use covid_etl::{DailyRecord, EtlError};
use moto::Moto;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BATCH_WRITE: &str = "DynamoDB_20120810.BatchWriteItem";
const SCAN: &str = "DynamoDB_20120810.Scan";
const QUERY: &str = "DynamoDB_20120810.Query";

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

fn options(nyt: &Path, jhu: &Path) -> RunOptions {
    RunOptions {
        nyt: Some(nyt.display().to_string()),
        jhu: Some(jhu.display().to_string()),
        ..RunOptions::default()
    }
}

/// Extract both sources and merge them, as the first states do.
async fn extract_and_merge(nyt: &Path, jhu: &Path) -> (Extract2, Merged) {
    let config = SourceConfig::default();
    let request = ExtractRequest {
        options: options(nyt, jhu),
        ..ExtractRequest::default()
    };
    let fresh = MemoryStore::default();
    let (n, j) = tokio::try_join!(
        steps::extract(SourceKind::Nyt, request.clone(), config.clone(), &fresh),
        steps::extract(SourceKind::Jhu, request, config, &fresh),
    )
    .expect("extract");
    // "Today" just after the fixtures end, so no staleness warning depends on the clock.
    let today = chrono::NaiveDate::from_ymd_opt(2020, 5, 2).unwrap();
    let merged = steps::merge(
        MergeRequest {
            nyt: n.clone(),
            jhu: j.clone(),
        },
        &covid_etl::merge::QualityPolicy::default(),
        today,
    )
    .expect("merge");
    ((n, j), merged)
}

type Extract2 = (covid_etl::extract::Extract, covid_etl::extract::Extract);

/// The whole chain through the given store and notifier.
async fn run_chain(
    nyt: &Path,
    jhu: &Path,
    store: &dyn Store,
    notifier: &dyn Notifier,
) -> (Merged, LoadReport, NotifyResponse) {
    let (_, merged) = extract_and_merge(nyt, jhu).await;
    let load = steps::diff_and_load(
        LoadRequest {
            merged: merged.clone(),
            options: options(nyt, jhu),
            execution_id: "local:aws-test".into(),
        },
        store,
    )
    .await
    .expect("diff and load");
    let response = notify(
        NotifyRequest {
            status: RunOutcome::Succeeded,
            execution_id: "local:aws-test".into(),
            execution_name: "aws-test".into(),
            started_at: None,
            fingerprints: None,
            load: Some(load.clone()),
            dropped: Some(merged.dropped.clone()),
            warnings: merged.warnings.clone(),
            failed_state: None,
            error: None,
        },
        notifier,
        store,
    )
    .await
    .expect("notify");
    (merged, load, response)
}

/// The notify step with a throwaway ledger, messages for no new data on.
async fn notify(
    request: NotifyRequest,
    notifier: &dyn Notifier,
    store: &dyn Store,
) -> covid_etl::Result<NotifyResponse> {
    let settings = steps::NotifySettings {
        notify_no_new_data: true,
    };
    let ledger = MemoryStore::default();
    steps::notify(
        request,
        notifier,
        &ledger,
        store,
        settings,
        chrono::Utc::now(),
    )
    .await
}

async fn create_topic(config: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_sns::Client::new(config)
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic arn")
        .to_string()
}

fn attr(notification: &Value, name: &str) -> Value {
    notification[3][name]["Value"].clone()
}

#[tokio::test]
async fn pipeline_loads_dynamodb_notifies_sns_and_counts_requests_server_side() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let began = Instant::now();
    let config = moto.sdk_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    moto.create_table(&config, "covid").await;
    let topic = create_topic(&config, "covid-etl-alerts").await;
    let store = DynamoStore::from_conf(&config, "covid");
    let notifier = SnsNotifier::from_conf(&config, &topic);
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));

    // Initial load: ceil(N/25) BatchWriteItem requests, as the server saw them.
    moto.record().await;
    let (merged, load, response) = run_chain(&nyt, &jhu, &store, &notifier).await;
    let n = merged.records.len();
    assert_eq!(n, 60, "the fixtures overlap on 60 days");
    assert_eq!(load.counts.inserted, n as u64);
    assert_eq!(moto.count_target(BATCH_WRITE).await, n.div_ceil(25));
    assert_eq!(load.write_requests, n.div_ceil(25) as u64);
    assert_eq!(load.write_units, n as u64, "each ~50-byte item costs 1 WCU");

    // The table holds exactly the merged series; unknown `recovered` is an absent attribute.
    assert_eq!(store.series().await.unwrap(), merged.records);
    let items = ddb
        .scan()
        .table_name("covid")
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    // The days in the `series` partition, and the load's marker in `meta`.
    assert_eq!(items.len(), n + 1);
    let (days, other): (Vec<_>, Vec<_>) = items
        .iter()
        .partition(|i| i["pk"] == AttributeValue::S("series".into()));
    assert_eq!(other[0]["pk"], AttributeValue::S("meta".into()));
    assert_eq!(other[0]["sk"], AttributeValue::S("load".into()));
    for item in days {
        let day = dynamodb::record_from_item(item).unwrap();
        assert_eq!(item.contains_key("recovered"), day.recovered.is_some());
        assert!(
            !matches!(item.get("recovered"), Some(AttributeValue::N(v)) if v == "0" && day.recovered != Some(0))
        );
    }

    // Unchanged rerun: one Query of the series, and not a single write.
    moto.record().await;
    let (_, rerun, _) = run_chain(&nyt, &jhu, &store, &notifier).await;
    assert_eq!(
        (
            rerun.counts.inserted,
            rerun.counts.updated,
            rerun.counts.unchanged
        ),
        (0, 0, n as u64)
    );
    assert_eq!(moto.count_target(BATCH_WRITE).await, 0);
    assert_eq!(rerun.write_requests, 0);
    assert!(moto.count_target(QUERY).await >= 1);
    assert_eq!(
        moto.count_target(SCAN).await,
        0,
        "no Scan: every read is by key"
    );

    // Revised sources: only the changed and new days are written, in one request.
    moto.record().await;
    let (revised, update, _) = run_chain(
        &fixture("nyt/us-revised.csv"),
        &fixture("jhu/combined-revised.csv"),
        &store,
        &notifier,
    )
    .await;
    let changed = update.counts.inserted + update.counts.updated;
    assert!(changed > 0 && changed < 25, "{:?}", update.counts);
    assert_eq!(moto.count_target(BATCH_WRITE).await, 1);
    assert_eq!(update.write_units, changed);
    assert_eq!(store.series().await.unwrap(), revised.records);

    // What subscribers received: subject and filterable attributes.
    let published = moto.published(&topic).await;
    assert_eq!(published.len(), 3);
    assert_eq!(published[0][2], json!(response.subject));
    assert!(
        response
            .subject
            .starts_with("covid-etl SUCCEEDED: 60 inserted, 0 updated"),
        "{}",
        response.subject
    );
    assert_eq!(attr(&published[0], "status"), json!("SUCCEEDED"));
    assert_eq!(published[0][3]["status"]["Type"], json!("String"));
    assert!(published[0][1].as_str().unwrap().contains("60 inserted"));

    // A failure notification carries `failedState`.
    let failed = notify(
        NotifyRequest {
            status: RunOutcome::Failed,
            execution_id: "local:aws-test".into(),
            execution_name: "aws-test".into(),
            started_at: None,
            fingerprints: None,
            load: None,
            dropped: None,
            warnings: vec![],
            failed_state: Some("DiffAndLoad".into()),
            error: Some(ErrorInfo {
                error: "StoreThrottled".into(),
                cause: ErrorInfo::lambda_cause(&EtlError::StoreThrottled("slow down".into())),
            }),
        },
        &notifier,
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    let published = moto.published(&topic).await;
    let last = published.last().unwrap();
    assert_eq!(last[2], json!(failed.subject));
    assert_eq!(
        last[2],
        json!("covid-etl FAILED in DiffAndLoad: StoreThrottled")
    );
    assert_eq!(attr(last, "status"), json!("FAILED"));
    assert_eq!(attr(last, "failedState"), json!("DiffAndLoad"));
    eprintln!(
        "moto start {:?}, test body {:?}",
        moto.startup,
        began.elapsed()
    );
}

#[tokio::test]
async fn missing_table_and_topic_are_named_errors() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    let store = DynamoStore::from_conf(&config, "no-such-table");
    let e = store.series().await.unwrap_err();
    assert!(
        matches!(&e, EtlError::StoreError(m) if m.contains("ResourceNotFoundException")),
        "{e}"
    );
    let day = DailyRecord::new(
        chrono::NaiveDate::from_ymd_opt(2020, 3, 1).unwrap(),
        1,
        0,
        None,
    );
    let e = store.write(&[day]).await.unwrap_err();
    assert!(
        matches!(&e, EtlError::StoreError(m) if m.contains("ResourceNotFoundException")),
        "{e}"
    );
    assert!(!e.is_transient());

    let notifier =
        SnsNotifier::from_conf(&config, "arn:aws:sns:us-east-1:123456789012:no-such-topic");
    let e = notifier
        .publish(&covid_etl::notify::compose(
            &NotifyRequest {
                status: RunOutcome::Succeeded,
                execution_id: String::new(),
                execution_name: String::new(),
                started_at: None,
                fingerprints: None,
                load: None,
                dropped: None,
                warnings: vec![],
                failed_state: None,
                error: None,
            },
            &covid_etl::store::Committed::NotAsked,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EtlError::NotifyError(m) if m.contains("NotFound")),
        "{e}"
    );
}

/// `statemachine/etl.asl.json` with the deployment's placeholders filled: Lambda ARNs for
/// `{"Fn::GetAtt": [X, "Arn"]}` and the topic for `{"Ref": "AlertTopic"}`.
fn definition(topic_arn: &str) -> String {
    fn fill(v: Value, topic: &str) -> Value {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(a)) = m.get("Fn::GetAtt") {
                    let name = a[0].as_str().unwrap();
                    return json!(format!(
                        "arn:aws:lambda:us-east-1:123456789012:function:covid-etl-{name}"
                    ));
                }
                if m.get("Ref") == Some(&json!("AlertTopic")) {
                    return json!(topic);
                }
                Value::Object(m.into_iter().map(|(k, v)| (k, fill(v, topic))).collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(|v| fill(v, topic)).collect()),
            other => other,
        }
    }
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("statemachine/etl.asl.json"),
    )
    .unwrap();
    let filled = fill(serde_json::from_str(&text).unwrap(), topic_arn).to_string();
    assert!(!filled.contains("Fn::GetAtt") && !filled.contains("\"Ref\""));
    filled
}

async fn create_state_machine(config: &aws_config::SdkConfig, name: &str, topic: &str) -> String {
    aws_sdk_sfn::Client::new(config)
        .create_state_machine()
        .name(name)
        .definition(definition(topic))
        .role_arn("arn:aws:iam::123456789012:role/covid-etl-states")
        .send()
        .await
        .expect("create state machine")
        .state_machine_arn()
        .to_string()
}

async fn wait_for_end(client: &aws_sdk_sfn::Client, arn: &str) -> sfn::ExecutionDescription {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = sfn::describe(client, arn).await.unwrap();
        if d.status.is_final() {
            return d;
        }
        assert!(Instant::now() < deadline, "execution still running: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn states_entered(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .filter(|e| e["type"].as_str().unwrap().ends_with("StateEntered"))
        .map(|e| e["stateName"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn step_functions_start_list_describe_history_and_redrive() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    let client = aws_sdk_sfn::Client::new(&config);
    let topic = create_topic(&config, "alerts").await;
    let machine = create_state_machine(&config, "covid-etl", &topic).await;

    let e = sfn::start_execution(&client, &machine, None, "not json")
        .await
        .unwrap_err();
    assert_eq!(e.name(), "InvalidInput");
    let arn = sfn::start_execution(&client, &machine, Some("daily-1"), r#"{"dryRun":true}"#)
        .await
        .unwrap();
    assert!(arn.ends_with(":daily-1"), "{arn}");
    let second = sfn::start_execution(&client, &machine, None, "{}")
        .await
        .unwrap();

    let rows = sfn::list_executions(&client, &machine, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.execution_arn == arn && r.name == "daily-1")
    );
    assert!(rows.iter().any(|r| r.execution_arn == second));
    assert_eq!(
        sfn::list_executions(&client, &machine, 1)
            .await
            .unwrap()
            .len(),
        1
    );

    let d = sfn::describe(&client, &arn).await.unwrap();
    assert_eq!(d.name, "daily-1");
    assert_eq!(d.input, Some(json!({"dryRun": true})));
    assert_eq!(d.state_machine_arn, machine);

    // Without execute_state_machine, moto serves a canned history: still a real
    // GetExecutionHistory response, so the conversion is exercised.
    let history = sfn::history(&client, &arn).await.unwrap();
    assert!(!history.is_empty());
    for (i, e) in history.iter().enumerate() {
        assert_eq!(e["id"], json!(i + 1), "{e}");
        assert!(e["previousEventId"].is_i64());
        assert!(e["type"].is_string());
        assert!(chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap()).is_ok());
        assert!(e["details"].is_object());
    }

    let missing = format!("{}-nope", arn);
    let e = sfn::describe(&client, &missing).await.unwrap_err();
    assert_eq!(e.name(), "ExecutionDoesNotExist", "{e}");
    assert!(!e.to_string().contains('\n'));

    // moto does not implement RedriveExecution: the call fails with a one-line error.
    let e = sfn::redrive(&client, &arn).await.unwrap_err();
    assert!(matches!(e, EtlError::Execution { .. }), "{e:?}");
    assert!(!e.to_string().contains('\n'), "{e}");
    eprintln!("moto RedriveExecution answer: {e}");
}

/// Queues results for moto's simulated Lambda functions (with `lambda.use_docker` off, an
/// invocation returns the next queued result, else echoes its input).
async fn queue_lambda_results(moto: &Moto, results: &[String]) {
    moto.post(
        "/moto-api/static/lambda-simple/response",
        &json!({"results": results, "region": "us-east-1"}),
    )
    .await;
}

async fn executing_moto() -> Option<Moto> {
    let moto = Moto::start().await?;
    moto.post(
        "/moto-api/config",
        &json!({"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker": false}}),
    )
    .await;
    Some(moto)
}

/// The real definition created on a moto that executes state machines, with its topic.
async fn deployed_machine() -> Option<(Moto, aws_sdk_sfn::Client, String, String)> {
    let moto = executing_moto().await?;
    let config = moto.sdk_config().await;
    let client = aws_sdk_sfn::Client::new(&config);
    let topic = create_topic(&config, "alerts").await;
    let machine = create_state_machine(&config, "covid-etl", &topic).await;
    Some((moto, client, topic, machine))
}

/// What the real extract, merge and diff-and-load functions return for the fixtures (into an
/// empty table): the results moto's simulated Lambda is given to return.
async fn fixture_step_results() -> (Extract2, Merged, LoadReport) {
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    let ((n, j), merged) = extract_and_merge(&nyt, &jhu).await;
    let load = steps::diff_and_load(
        LoadRequest {
            merged: merged.clone(),
            options: RunOptions::default(),
            execution_id: String::new(),
        },
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    ((n, j), merged, load)
}

#[tokio::test]
async fn deployed_definition_routes_a_successful_run_through_every_state() {
    let Some((moto, client, topic, machine)) = deployed_machine().await else {
        return;
    };

    // The Lambda results are what the real functions return for the fixtures.
    let ((n, j), merged, load) = fixture_step_results().await;
    let notify_request = NotifyRequest {
        status: RunOutcome::Succeeded,
        execution_id: String::new(),
        execution_name: "daily".into(),
        started_at: None,
        fingerprints: None,
        load: Some(load.clone()),
        dropped: Some(merged.dropped.clone()),
        warnings: merged.warnings.clone(),
        failed_state: None,
        error: None,
    };
    let notified = notify(
        notify_request,
        &covid_etl::notify::MemoryNotifier::default(),
        &MemoryStore::default(),
    )
    .await
    .unwrap();
    // Both extract branches run concurrently and take the first two results in either
    // order; Merge's result is canned, so the order does not matter.
    let results = [
        serde_json::to_string(&n).unwrap(),
        serde_json::to_string(&j).unwrap(),
        serde_json::to_string(&merged).unwrap(),
        serde_json::to_string(&load).unwrap(),
        serde_json::to_string(&notified).unwrap(),
    ];
    queue_lambda_results(&moto, &results).await;

    let arn = sfn::start_execution(&client, &machine, Some("daily"), "{}")
        .await
        .unwrap();
    let d = wait_for_end(&client, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Succeeded, "{d:?}");
    assert_eq!(d.output, Some(serde_json::to_value(&notified).unwrap()));

    let history = sfn::history(&client, &arn).await.unwrap();
    let entered = states_entered(&history);
    for state in [
        "Prepare",
        "Extract",
        "ExtractNyt",
        "CheckForNewData",
        "ExtractJhu",
        "Merge",
        "DiffAndLoad",
        "NotifySuccess",
    ] {
        assert!(
            entered.contains(&state.to_string()),
            "{state} not in {entered:?}"
        );
    }
    assert!(
        !entered
            .iter()
            .any(|s| s.ends_with("Failed") || s.contains("Failure"))
    );

    // The definition's Parameters, as the Lambda functions received them.
    let lambda_input = |state: &str| -> Value {
        history
            .iter()
            .find(|e| e["type"] == "LambdaFunctionScheduled" && e["stateName"] == state)
            .unwrap_or_else(|| panic!("no LambdaFunctionScheduled for {state}"))["details"]["input"]
            .as_str()
            .and_then(|text| serde_json::from_str(text).ok())
            .expect("the input as JSON text, as AWS gives it")
    };
    assert_eq!(
        lambda_input("ExtractNyt"),
        json!({"options": {}, "conditional": true})
    );
    assert_eq!(
        lambda_input("DiffAndLoad"),
        json!({"merged": merged, "options": {}, "executionId": arn})
    );
    let notify_input = lambda_input("NotifySuccess");
    assert_eq!(notify_input["status"], "SUCCEEDED");
    assert_eq!(notify_input["executionId"], json!(arn));
    assert_eq!(notify_input["executionName"], "daily");
    assert_eq!(notify_input["load"], serde_json::to_value(&load).unwrap());
    assert_eq!(
        notify_input["dropped"],
        serde_json::to_value(&merged.dropped).unwrap()
    );
    // The request must parse as the notify step's input.
    steps::parse_payload::<NotifyRequest>(notify_input).unwrap();
    assert!(moto.published(&topic).await.is_empty());
}

#[tokio::test]
async fn deployed_definition_falls_back_to_a_direct_sns_publish() {
    let Some((moto, client, topic, machine)) = deployed_machine().await else {
        return;
    };

    // moto's simulated Lambda can only fail one way: a result over Lambda's 6 MB limit is
    // turned into a `Function.ResponseSizeTooLarge` function error. The work steps succeed;
    // NotifySuccess and then NotifyFailure fail that way, so the run must reach
    // PublishFailureDirect. (A failing work step is not caught: it ends the execution in
    // that step, for redrive, and the status-change rule reports it.)
    let ((n, j), merged, load) = fixture_step_results().await;
    let too_big = json!({"padding": "x".repeat(6_100_000)}).to_string();
    let results = [
        serde_json::to_string(&n).unwrap(),
        serde_json::to_string(&j).unwrap(),
        serde_json::to_string(&merged).unwrap(),
        serde_json::to_string(&load).unwrap(),
        too_big.clone(),
        too_big,
    ];
    queue_lambda_results(&moto, &results).await;

    let arn = sfn::start_execution(&client, &machine, Some("broken"), "{}")
        .await
        .unwrap();
    let d = wait_for_end(&client, &arn).await;
    assert_eq!(d.status, ExecutionStatus::Failed, "{d:?}");
    assert_eq!(d.error.as_deref(), Some("Function.ResponseSizeTooLarge"));

    let history = sfn::history(&client, &arn).await.unwrap();
    let entered = states_entered(&history);
    for state in [
        "DiffAndLoad",
        "NotifySuccess",
        "NotifySuccessFailed",
        "NotifyFailure",
        "PublishFailureDirect",
        "Failed",
    ] {
        assert!(
            entered.contains(&state.to_string()),
            "{state} not in {entered:?}"
        );
    }
    let publish = history
        .iter()
        .find(|e| e["type"] == "TaskScheduled")
        .expect("the sns:publish task");
    assert_eq!(publish["stateName"], "PublishFailureDirect");
    assert_eq!(publish["details"]["resourceType"], "sns");
    let parameters: Value =
        serde_json::from_str(publish["details"]["parameters"].as_str().unwrap()).unwrap();
    assert_eq!(parameters["TopicArn"], json!(topic));

    let published = moto.published(&topic).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0][2], json!("covid-etl FAILED in NotifySuccess"));
    assert_eq!(attr(&published[0], "status"), json!("FAILED"));
    assert_eq!(attr(&published[0], "failedState"), json!("NotifySuccess"));
    let message = published[0][1].as_str().unwrap();
    assert!(
        message.contains(&arn) && message.contains("Function.ResponseSizeTooLarge"),
        "{message}"
    );
}

// ---------------------------------------------------------------------------------------
// What moto cannot show, against the SDK's test doubles.

/// DynamoDB cost on the full real series (issue 9), counted by the server: a first load,
/// a daily update that brings one new day (and JHU's revision of the day before), and an
/// unchanged rerun, against one PutItem per row.
#[tokio::test]
async fn real_series_costs_a_request_per_25_rows_and_nothing_when_unchanged() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if !data.join("nyt/us.2022-04-19.csv").exists() {
        eprintln!(
            "skipped: {} is absent (real snapshots live beside the project)",
            data.display()
        );
        return;
    }
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    moto.create_table(&config, "real").await;
    let store = DynamoStore::from_conf(&config, "real");
    let notifier = covid_etl::notify::MemoryNotifier::default();
    let nyt = data.join("nyt/us.2022-04-19.csv");
    let jhu = |day: &str| data.join(format!("jhu/time-series-19-covid-combined.{day}.csv"));

    moto.record().await;
    let (merged, first, _) = run_chain(&nyt, &jhu("2021-03-16"), &store, &notifier).await;
    let rows = merged.records.len();
    let requests = moto.count_target(BATCH_WRITE).await;
    assert_eq!(requests, rows.div_ceil(25));
    assert_eq!(first.write_units, rows as u64, "every item is under 1 KB");
    assert!(
        rows / requests >= 20,
        "{rows} PutItem requests vs {requests} batches"
    );
    eprintln!(
        "first load: {rows} rows, {requests} BatchWriteItem, {} WCU",
        first.write_units
    );

    moto.record().await;
    let (_, daily, _) = run_chain(&nyt, &jhu("2021-03-17"), &store, &notifier).await;
    assert_eq!(daily.counts.inserted, 1, "one new day");
    assert_eq!(moto.count_target(BATCH_WRITE).await, 1);
    eprintln!(
        "daily update: {} inserted, {} updated, 1 BatchWriteItem, {} WCU",
        daily.counts.inserted, daily.counts.updated, daily.write_units
    );

    moto.record().await;
    let (_, unchanged, _) = run_chain(&nyt, &jhu("2021-03-17"), &store, &notifier).await;
    assert_eq!(
        (unchanged.counts.inserted, unchanged.counts.updated),
        (0, 0)
    );
    assert_eq!(moto.count_target(BATCH_WRITE).await, 0);
}

/// The `covid-etl` binary against the local AWS server: the local engine writing to
/// DynamoDB and SNS (the operator's backfill), then the Step Functions commands.
#[tokio::test]
async fn the_cli_loads_dynamodb_and_operates_a_deployed_state_machine() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    moto.create_table(&config, "cli-table").await;
    let topic = create_topic(&config, "cli-alerts").await;
    let machine = create_state_machine(&config, "covid-etl-cli", &topic).await;
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("covid-etl")
            .unwrap()
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("COVID_ETL_DB", dir.path().join("local.db"))
            .args(args)
            .args(["--endpoint-url", &moto.endpoint])
            .output()
            .unwrap()
    };
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    let (nyt, jhu) = (nyt.to_str().unwrap(), jhu.to_str().unwrap());
    let run = |extra: &[&str]| -> Value {
        let mut args = vec![
            "run",
            "--json",
            "--store",
            "dynamodb",
            "--table",
            "cli-table",
        ];
        args.extend(["--topic-arn", &topic, "--nyt", nyt, "--jhu", jhu]);
        args.extend(extra);
        let out = cli(&args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    // A local run first: its ledger and load marker are in the local file, and must not make
    // a DynamoDB backfill believe the table holds these sources.
    let local: Value =
        serde_json::from_slice(&cli(&["run", "--json", "--nyt", nyt, "--jhu", jhu]).stdout)
            .unwrap();
    assert_eq!(local["outcome"], "LOADED", "{local}");
    // A table that cannot be reached is a failure, never "no new data".
    let out = assert_cmd::Command::cargo_bin("covid-etl")
        .unwrap()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("COVID_ETL_TIME_SCALE", "1000")
        .env("COVID_ETL_DB", dir.path().join("local.db"))
        .args([
            "run",
            "--json",
            "--store",
            "dynamodb",
            "--table",
            "no-such-table",
        ])
        .args([
            "--nyt",
            nyt,
            "--jhu",
            jhu,
            "--endpoint-url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let unreachable: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{unreachable}");
    assert_eq!(unreachable["status"], "FAILED", "{unreachable}");
    assert_eq!(unreachable["error"], "StoreError", "{unreachable}");

    let first = run(&[]);
    assert_eq!(first["outcome"], "LOADED", "{first}");
    assert_eq!(first["load"]["inserted"], 60);
    let store = DynamoStore::from_conf(&config, "cli-table");
    assert_eq!(store.series().await.unwrap().len(), 60);
    // Series, run ledger and load marker, all in the table.
    let keys: Vec<String> = aws_sdk_dynamodb::Client::new(&config)
        .scan()
        .table_name("cli-table")
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .filter_map(|i| i.get("pk")?.as_s().ok().cloned())
        .filter(|k| k != "series")
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"meta".to_string()), "{keys:?}");
    assert!(keys.contains(&"run".to_string()), "{keys:?}");
    let marker = store.marker().await.unwrap().unwrap();
    assert_eq!(marker.state, MarkerState::Loaded);
    assert_eq!(marker.execution_id, first["executionId"].as_str().unwrap());
    // The load marker in the same table remembers the sources: a rerun has nothing to do.
    let again = run(&[]);
    assert_eq!(again["outcome"], "NO_NEW_DATA", "{again}");
    let published = moto.published(&topic).await;
    assert_eq!(published.len(), 2);
    assert_eq!(attr(&published[1], "status"), json!("NO_NEW_DATA"));

    // Step Functions: start, list, inspect, redrive.
    let out = cli(&[
        "start",
        "--state-machine-arn",
        &machine,
        "--name",
        "by-hand",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let arn = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(arn.ends_with(":by-hand"), "{arn}");
    let out = cli(&["executions", "--state-machine-arn", &machine]);
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(
        listing.lines().any(|l| l.starts_with("by-hand")),
        "{listing}"
    );
    // The columns and the JSON of local executions: an outcome, one name per field.
    assert!(
        listing.lines().next().unwrap().contains(" OUTCOME "),
        "{listing}"
    );
    let out = cli(&["executions", "--state-machine-arn", &machine, "--json"]);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "by-hand")
        .cloned()
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["executionId"], arn.as_str(), "{row}");
    assert!(row["outcome"].is_string(), "{row}");
    let out = cli(&["execution", &arn]);
    let view = String::from_utf8(out.stdout).unwrap();
    assert!(view.starts_with("by-hand  "), "{view}");
    assert!(view.contains("STATE"), "{view}");
    let out = cli(&["execution", &arn, "--json"]);
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["name"], "by-hand");
    assert!(view["steps"].is_array());
    // moto does not implement RedriveExecution: the error is one line, not a backtrace.
    let out = cli(&["redrive", &arn]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// Loads take turns through the lease item: a live lease held by another makes a load wait
/// and then fail with the retryable LoadInProgress, writing nothing; an expired one is taken
/// over; two loads at once of different versions both succeed, one after the other, and the
/// table holds the version its marker names.
#[tokio::test]
async fn dynamodb_loads_take_turns_through_a_lease_and_mark_what_they_loaded() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    moto.create_table(&config, "lease-table").await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let lease = LeasePolicy {
        duration: Duration::from_secs(30),
        wait: Duration::from_millis(600),
        poll: Duration::from_millis(50),
    };
    let store = DynamoStore::from_conf(&config, "lease-table").with_lease(lease.clone());
    let load_of = |id: &str, merged: &Merged| Load {
        execution_id: id.into(),
        records: merged.records.clone(),
        fingerprints: merged.fingerprints.clone(),
        full_reload: false,
    };
    let (_, original) =
        extract_and_merge(&fixture("nyt/us.csv"), &fixture("jhu/combined.csv")).await;
    let (_, revised) = extract_and_merge(
        &fixture("nyt/us-revised.csv"),
        &fixture("jhu/combined-revised.csv"),
    )
    .await;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let hold = |until: i64| {
        client
            .put_item()
            .table_name("lease-table")
            .item("pk", AttributeValue::S("meta".into()))
            .item("sk", AttributeValue::S("load".into()))
            .item("leaseHolder", AttributeValue::S("another-execution".into()))
            .item("leaseExpires", AttributeValue::N(until.to_string()))
            .send()
    };

    hold(now_ms() + 60_000).await.unwrap();
    let started = Instant::now();
    let e = store.load(&load_of("first", &original)).await.unwrap_err();
    assert_eq!(e.name(), "LoadInProgress", "{e}");
    assert!(e.is_transient());
    assert!(started.elapsed() >= lease.wait, "it waited for the lease");
    assert!(store.series().await.unwrap().is_empty());
    assert_eq!(store.marker().await.unwrap(), None);

    hold(now_ms() - 1).await.unwrap();
    let applied = store.load(&load_of("first", &original)).await.unwrap();
    assert_eq!(applied.plan.counts.inserted, 60);
    let marker = store.marker().await.unwrap().unwrap();
    assert_eq!(
        (marker.execution_id.as_str(), marker.state),
        ("first", MarkerState::Loaded)
    );
    assert_eq!(marker.fingerprints, original.fingerprints);
    let item = client
        .get_item()
        .table_name("lease-table")
        .key("pk", AttributeValue::S("meta".into()))
        .key("sk", AttributeValue::S("load".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let item = item.item().unwrap();
    assert!(!item.contains_key("leaseHolder"), "released: {item:?}");

    // Two stores (two processes' clients) at once, different versions.
    let other = DynamoStore::from_conf(&config, "lease-table").with_lease(LeasePolicy {
        wait: Duration::from_secs(20),
        ..lease.clone()
    });
    let patient = store.clone().with_lease(LeasePolicy {
        wait: Duration::from_secs(20),
        ..lease
    });
    let (first, second) = (load_of("original", &original), load_of("revised", &revised));
    let (a, b) = tokio::join!(patient.load(&first), other.load(&second));
    let (a, b) = (a.unwrap(), b.unwrap());
    let marker = store.marker().await.unwrap().unwrap();
    let held = match marker.execution_id.as_str() {
        "original" => &original,
        "revised" => &revised,
        id => panic!("marker of {id}"),
    };
    assert_eq!(marker.fingerprints, held.fingerprints);
    // Together they inserted the two days only the revised version has, once.
    assert_eq!(a.plan.counts.inserted + b.plan.counts.inserted, 2);
    // The store holds what its marker names (a stale read would leave the other's values).
    let series = store.series().await.unwrap();
    for r in &held.records {
        assert!(series.contains(r), "{r:?} not stored");
    }
}

mod mocked {
    use super::*;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    use aws_sdk_dynamodb::types::WriteRequest;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use chrono::NaiveDate;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    fn days(n: usize) -> Vec<DailyRecord> {
        let start = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        (0..n)
            .map(|i| {
                let recovered = (i % 3 == 0).then_some(i as u64 * 7);
                DailyRecord::new(
                    start + chrono::Days::new(i as u64),
                    1000 + i as u64,
                    i as u64,
                    recovered,
                )
            })
            .collect()
    }

    fn fast() -> WritePolicy {
        WritePolicy {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..WritePolicy::default()
        }
    }

    fn date_of(w: &WriteRequest) -> String {
        match w.put_request().unwrap().item().get("sk") {
            Some(AttributeValue::S(s)) => s.clone(),
            other => panic!("no date: {other:?}"),
        }
    }

    fn requests_of(
        input: &aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput,
    ) -> Vec<WriteRequest> {
        input.request_items().unwrap()["covid"].clone()
    }

    /// A DynamoDB error response as the service sends it (awsJson 1.0), so the SDK's own
    /// deserializer and error metadata are exercised.
    fn error_body(code: &str, message: &str) -> String {
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": message})
            .to_string()
    }

    #[tokio::test]
    async fn unprocessed_items_are_resent_until_the_table_is_complete() {
        let table = Arc::new(Mutex::new(BTreeSet::new()));
        let largest = Arc::new(Mutex::new(0usize));
        let (t, l) = (table.clone(), largest.clone());
        // The service writes the first half (rounded up) of each request and hands the rest
        // back as UnprocessedItems.
        let rule =
            mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(move |input| {
                let requests = requests_of(input);
                let mut l = l.lock().unwrap();
                *l = (*l).max(requests.len());
                let done = requests.len().div_ceil(2);
                t.lock()
                    .unwrap()
                    .extend(requests[..done].iter().map(date_of));
                let rest = requests[done..].to_vec();
                let mut out = BatchWriteItemOutput::builder();
                if !rest.is_empty() {
                    out = out.unprocessed_items("covid", rest);
                }
                out.build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let store = DynamoStore::new(client, "covid").with_policy(fast());
        let records = days(60);
        let report = store.write(&records).await.unwrap();

        let expected: BTreeSet<String> = records
            .iter()
            .map(|r| covid_etl::record::iso(r.date))
            .collect();
        assert_eq!(*table.lock().unwrap(), expected);
        assert_eq!(*largest.lock().unwrap(), 25, "chunks of at most 25");
        // 25 → 13+12 → 6+6 → 3+3 → 2+1 → 1: 5 sends; 10 → 5,5 → 3,2 → 1,1 → 1: 4 sends.
        assert_eq!(report.requests, 5 + 5 + 4);
        assert_eq!(report.requests, rule.num_calls() as u64);
        assert_eq!(report.write_units, 60);
    }

    #[tokio::test]
    async fn unprocessed_items_left_after_the_limit_are_a_retryable_load_incomplete() {
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_compute_output(|input| {
            // Every request comes back whole.
            BatchWriteItemOutput::builder()
                .unprocessed_items("covid", requests_of(input))
                .build()
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let policy = WritePolicy {
            max_attempts: 3,
            ..fast()
        };
        let store = DynamoStore::new(client, "covid").with_policy(policy);
        let e = store.write(&days(60)).await.unwrap_err();
        assert_eq!(e.name(), "LoadIncomplete");
        assert!(e.is_transient());
        assert!(e.to_string().contains("60 of 60 items not written"), "{e}");
        assert_eq!(rule.num_calls(), 3 * 3, "3 batches × 3 attempts");
    }

    #[tokio::test]
    async fn throttling_is_retried_then_reported_as_store_throttled() {
        // Twice throttled, then accepted.
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .sequence()
            .http_status(
                400,
                Some(error_body(
                    "ProvisionedThroughputExceededException",
                    "The level of configured provisioned throughput for the table was exceeded",
                )),
            )
            .http_status(
                400,
                Some(error_body("ThrottlingException", "Rate exceeded")),
            )
            .output(|| BatchWriteItemOutput::builder().build())
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let store = DynamoStore::new(client, "covid").with_policy(fast());
        let report = store.write(&days(10)).await.unwrap();
        assert_eq!((report.requests, report.write_units), (3, 10));
        assert_eq!(rule.num_calls(), 3);

        // Throttled for good.
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .sequence()
            .http_status(
                400,
                Some(error_body("RequestLimitExceeded", "Too many requests")),
            )
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let policy = WritePolicy {
            max_attempts: 4,
            ..fast()
        };
        let store = DynamoStore::new(client, "covid").with_policy(policy);
        let e = store.write(&days(10)).await.unwrap_err();
        assert_eq!(e.name(), "StoreThrottled", "{e}");
        assert!(e.is_transient());
        assert!(
            e.to_string()
                .contains("RequestLimitExceeded: Too many requests"),
            "{e}"
        );
        assert!(e.to_string().contains("10 of 10 items not written"), "{e}");
        assert_eq!(rule.num_calls(), 4);
    }

    #[tokio::test]
    async fn other_errors_are_store_errors_with_the_service_message_and_not_retried() {
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .sequence()
            .http_status(
                400,
                Some(error_body(
                    "ResourceNotFoundException",
                    "Requested resource not found",
                )),
            )
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let store = DynamoStore::new(client, "covid").with_policy(fast());
        let e = store.write(&days(3)).await.unwrap_err();
        assert_eq!(e.name(), "StoreError");
        assert!(
            e.to_string()
                .contains("ResourceNotFoundException: Requested resource not found"),
            "{e}"
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_empty_write_sends_nothing() {
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item)
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule]);
        let store = DynamoStore::new(client, "covid");
        assert_eq!(store.write(&[]).await.unwrap(), Default::default());
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn write_units_come_from_item_sizes_not_the_service_figure() {
        use aws_sdk_dynamodb::types::ConsumedCapacity;
        // The service claims 1000 units; the report counts 1 per started KB per item.
        let rule = mock!(aws_sdk_dynamodb::Client::batch_write_item).then_output(|| {
            BatchWriteItemOutput::builder()
                .consumed_capacity(
                    ConsumedCapacity::builder()
                        .table_name("covid")
                        .capacity_units(1000.0)
                        .build(),
                )
                .build()
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule], |c| c
            .retry_config(RetryConfig::disabled()));
        let store = DynamoStore::new(client, "covid");
        let records = days(30);
        let report = store.write(&records).await.unwrap();
        assert_eq!(report.requests, 2);
        assert_eq!(report.write_units, 30);
        let units: u64 = records.iter().map(dynamodb::write_units).sum();
        assert_eq!(units, 30);
    }

    #[tokio::test]
    async fn sns_throttling_is_named_in_the_notify_error() {
        let body = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>Throttled</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        let rule = mock!(aws_sdk_sns::Client::publish)
            .sequence()
            .http_status(400, Some(body.to_string()))
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_sns, RuleMode::Sequential, [&rule], |c| c
            .retry_config(aws_sdk_sns::config::retry::RetryConfig::disabled()));
        let notifier = SnsNotifier::new(client, "arn:aws:sns:us-east-1:123456789012:alerts");
        let e = notifier
            .publish(&covid_etl::notify::Notification {
                subject: "s".into(),
                message: "m".into(),
                attributes: Default::default(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.name(), "NotifyError");
        assert!(e.to_string().contains("throttled"), "{e}");
        assert!(e.to_string().contains("Rate exceeded"), "{e}");
    }

    fn sfn_error(code: &str, message: &str) -> String {
        json!({"__type": code, "message": message}).to_string()
    }

    #[tokio::test]
    async fn redrive_sends_the_request_and_names_its_errors() {
        use aws_sdk_sfn::operation::redrive_execution::RedriveExecutionOutput;
        use aws_sdk_sfn::primitives::DateTime;
        let arn = "arn:aws:states:us-east-1:123456789012:execution:covid-etl:daily";
        let ok = mock!(aws_sdk_sfn::Client::redrive_execution)
            .match_requests(move |r| r.execution_arn() == Some(arn))
            .then_output(|| {
                RedriveExecutionOutput::builder()
                    .redrive_date(DateTime::from_secs(1_700_000_000))
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_sfn, RuleMode::Sequential, [&ok]);
        let when = sfn::redrive(&client, arn).await.unwrap();
        assert_eq!(when.timestamp(), 1_700_000_000);
        assert_eq!(ok.num_calls(), 1);

        for (code, message) in [
            (
                "ExecutionNotRedrivable",
                "Execution can't be redriven because it succeeded",
            ),
            ("ExecutionDoesNotExist", "Execution Does Not Exist: 'arn'"),
        ] {
            let rule = mock!(aws_sdk_sfn::Client::redrive_execution)
                .sequence()
                .http_status(400, Some(sfn_error(code, message)))
                .build();
            let client = mock_client!(aws_sdk_sfn, RuleMode::Sequential, [&rule], |c| c
                .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled()));
            let e = sfn::redrive(&client, arn).await.unwrap_err();
            assert_eq!(e.name(), code, "{e}");
            assert_eq!(
                e.to_string(),
                format!("{code}: RedriveExecution {arn}: {code}: {message}")
            );
        }
    }
}

const FORM: &str = "application/x-www-form-urlencoded";
/// moto's server picks the service from the credential scope of the (unchecked) signature.
const SQS_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
                        SignedHeaders=host, Signature=0";

/// An SQS queue on moto (query protocol, which moto serves without the SQS SDK): its URL
/// and ARN. `name` is plain `[a-z-]`, so it needs no form encoding.
async fn create_queue(moto: &Moto, name: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let body = http
        .post(&moto.endpoint)
        .header("content-type", FORM)
        .header("authorization", SQS_AUTH)
        .body(format!("Action=CreateQueue&QueueName={name}"))
        .send()
        .await
        .expect("CreateQueue")
        .text()
        .await
        .expect("CreateQueue body");
    let url = body
        .split("<QueueUrl>")
        .nth(1)
        .and_then(|rest| rest.split("</QueueUrl>").next())
        .unwrap_or_else(|| panic!("CreateQueue: {body}"))
        .to_string();
    (url, format!("arn:aws:sqs:us-east-1:123456789012:{name}"))
}

/// The bodies of the messages waiting in a queue (at most 10).
async fn received(queue_url: &str) -> Vec<String> {
    let body = reqwest::Client::new()
        .post(queue_url)
        .header("content-type", FORM)
        .header("authorization", SQS_AUTH)
        .body("Action=ReceiveMessage&MaxNumberOfMessages=10")
        .send()
        .await
        .expect("ReceiveMessage")
        .text()
        .await
        .expect("ReceiveMessage body");
    body.split("<Body>")
        .skip(1)
        .map(|b| b.split("</Body>").next().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_dry_run_notification_is_filtered_out_by_the_subscribers_policy() {
    // The deployed email subscription's filter (serverless.yml AlertEmailSubscription), on an
    // SQS subscription moto delivers to: a dry run is dropped, every other message passes —
    // including one without attributes, like the state machine's direct fallback.
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    let topic = create_topic(&config, "covid-etl-alerts").await;
    let sns = aws_sdk_sns::Client::new(&config);
    let (filtered_url, filtered_arn) = create_queue(&moto, "subscriber").await;
    let (all_url, all_arn) = create_queue(&moto, "everything").await;
    let policy = json!({ covid_etl::notify::DRY_RUN_ATTRIBUTE: [{"exists": false}] }).to_string();
    for (arn, filter) in [(&filtered_arn, Some(policy)), (&all_arn, None)] {
        let mut subscribe = sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true");
        if let Some(filter) = filter {
            subscribe = subscribe
                .attributes("FilterPolicyScope", "MessageAttributes")
                .attributes("FilterPolicy", filter);
        }
        subscribe.send().await.expect("subscribe");
    }

    let notifier = SnsNotifier::from_conf(&config, &topic);
    let run = |dry_run: bool| NotifyRequest {
        status: RunOutcome::Succeeded,
        execution_id: format!("local:smoke-{dry_run}"),
        execution_name: format!("smoke-{dry_run}"),
        started_at: None,
        fingerprints: None,
        load: Some(LoadReport {
            dry_run,
            full_reload: true,
            ..LoadReport::default()
        }),
        dropped: None,
        warnings: vec![],
        failed_state: None,
        error: None,
    };
    for dry_run in [true, false] {
        notify(run(dry_run), &notifier, &MemoryStore::default())
            .await
            .expect("notify");
    }
    // The state machine's fallback publishes with no attributes at all.
    sns.publish()
        .topic_arn(&topic)
        .message("covid-etl: the notify step failed")
        .send()
        .await
        .expect("publish without attributes");

    let published = moto.published(&topic).await;
    assert_eq!(attr(&published[0], "dryRun"), json!("true"));
    assert_eq!(attr(&published[1], "dryRun"), Value::Null);

    let everything = received(&all_url).await;
    assert_eq!(everything.len(), 3, "{everything:?}");
    let subscriber = received(&filtered_url).await;
    assert_eq!(subscriber.len(), 2, "{subscriber:?}");
    assert!(
        subscriber.iter().all(|m| !m.contains("smoke-true")),
        "the dry run reached the subscriber: {subscriber:?}"
    );
    assert!(subscriber.iter().any(|m| m.contains("smoke-false")));
    assert!(subscriber.iter().any(|m| m.contains("notify step failed")));
}

/// The table's key design (src/store/dynamodb.rs): a run reads the load marker (GetItem,
/// both extracts) and the series (one Query of its partition, the diff); the API reads the
/// series and the newest runs (a Query of the ledger's index with a Limit). None of it
/// grows with the number of ledger records: measured here after 1 and after 1,000 of them,
/// in read units computed from the sizes of the items each request returned.
#[tokio::test]
async fn reads_grow_with_the_series_not_with_the_ledger() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    let config = moto.sdk_config().await;
    moto.create_table(&config, "growth").await;
    let store = DynamoStore::from_conf(&config, "growth");
    use covid_etl::ledger::RunLedger;
    let notifier = covid_etl::notify::MemoryNotifier::default();
    let (merged, _, _) = run_chain(
        &fixture("nyt/us.csv"),
        &fixture("jhu/combined.csv"),
        &store,
        &notifier,
    )
    .await;
    let record = |i: usize| -> covid_etl::ledger::RunRecord {
        serde_json::from_value(serde_json::json!({
            "executionId": format!("arn:aws:states:us-east-1:123456789012:execution:covid-etl-prod:daily-{i:04}"),
            "executionName": format!("daily-{i:04}"),
            "startedAt": format!("2026-01-01T00:00:00.{i:03}Z"),
            "durationMs": 5000,
            "status": "SUCCEEDED",
            "load": {"inserted": 1, "updated": 0, "unchanged": 419},
            "warnings": ["nyt: cases fell from 100 to 99 on 2020-03-02"],
        }))
        .unwrap()
    };
    // (units of a run's reads, units of an API request's reads, runs listed)
    let reads = async || {
        let before = store.read_units();
        store.marker().await.unwrap(); // ExtractNyt
        store.marker().await.unwrap(); // ExtractJhu
        assert_eq!(store.series().await.unwrap(), merged.records); // DiffAndLoad
        let run = store.read_units() - before;
        let before = store.read_units();
        store.series().await.unwrap();
        let listed = store.runs(20).await.unwrap();
        (run, store.read_units() - before, listed)
    };
    store.record_run(&record(0)).await.unwrap();
    moto.record().await;
    let (run_1, api_1, listed) = reads().await;
    assert_eq!(listed.len(), 1);
    for i in 1..20 {
        store.record_run(&record(i)).await.unwrap();
    }
    let (run_20, api_20, _) = reads().await;
    for i in 20..1000 {
        store.record_run(&record(i)).await.unwrap();
    }
    let (run_1000, api_1000, listed) = reads().await;
    assert_eq!(
        moto.count_target(SCAN).await,
        0,
        "no Scan: every read is by key"
    );
    println!(
        "read units after 1, 20 and 1,000 ledger records ({} days): a run {run_1}, {run_20}, \
         {run_1000}; an API request (series and the newest 20 runs) {api_1}, {api_20}, {api_1000}",
        merged.records.len()
    );
    assert_eq!((run_20, run_1000), (run_1, run_1));
    // The API lists at most 20 runs: its reads stop growing at 20 records.
    assert_eq!(api_1000, api_20);
    // The newest 20, newest first; one of them is found by its id.
    let names: Vec<_> = listed.iter().map(|r| r.execution_name.as_str()).collect();
    assert_eq!(names.first(), Some(&"daily-0999"));
    assert_eq!(names.len(), 20);
    assert_eq!(names[19], "daily-0980");
    let one = store.run(&record(500).execution_id).await.unwrap();
    assert_eq!(one.map(|r| r.execution_name).as_deref(), Some("daily-0500"));
}
