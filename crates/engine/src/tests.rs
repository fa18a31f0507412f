//! End-to-end tests of the engine against the rules in ASL-SEMANTICS.md, with a scripted
//! task handler and a fake clock that records sleeps instead of waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::*;

/// Virtual time: a sleep records its duration and advances `now` on first poll (so a timeout
/// raced against a prompt handler is never counted), then yields once so that concurrent
/// Parallel branches get polled, as they would during a real wait.
#[derive(Clone)]
struct FakeClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl FakeClock {
    fn new() -> Self {
        Self {
            now: Arc::new(Mutex::new(
                Utc.with_ymd_and_hms(2021, 3, 17, 12, 0, 0).unwrap(),
            )),
            sleeps: Arc::default(),
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let (now, sleeps) = (self.now.clone(), self.sleeps.clone());
        Box::pin(async move {
            sleeps.lock().unwrap().push(d);
            *now.lock().unwrap() += chrono::Duration::from_std(d).unwrap();
            tokio::task::yield_now().await;
        })
    }
}

/// What a scripted task does on one call.
#[derive(Clone)]
enum Reply {
    Ok(Value),
    Err(&'static str),
    /// Return the input unchanged.
    Echo,
    /// Never finish (until dropped, which is counted as a cancellation).
    Hang,
}

struct CancelGuard<'a>(&'a AtomicUsize);

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Replies per state name, in call order; the last reply repeats. Unknown states echo.
#[derive(Default)]
struct Scripted {
    scripts: HashMap<String, Vec<Reply>>,
    calls: Mutex<Vec<(String, Value, u32, Value)>>,
    cancelled: AtomicUsize,
}

#[async_trait::async_trait]
impl TaskHandler for Scripted {
    async fn invoke(
        &self,
        resource: &Value,
        input: Value,
        ctx: &TaskContext,
    ) -> Result<Value, TaskError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push((
                ctx.state_name.clone(),
                input.clone(),
                ctx.retry_count,
                resource.clone(),
            ));
            calls.iter().filter(|c| c.0 == ctx.state_name).count() - 1
        };
        let reply = self
            .scripts
            .get(&ctx.state_name)
            .map_or(Reply::Echo, |s| s[n.min(s.len() - 1)].clone());
        match reply {
            Reply::Ok(v) => Ok(v),
            Reply::Err(name) => Err(TaskError::new(
                name,
                format!("{} failed on call {n}", ctx.state_name),
            )),
            Reply::Echo => Ok(input),
            Reply::Hang => {
                let _guard = CancelGuard(&self.cancelled);
                futures::future::pending().await
            }
        }
    }
}

struct Harness {
    machine: StateMachine,
    handler: Scripted,
    clock: FakeClock,
    jitter: FixedJitter,
    history: MemoryHistory,
}

impl Harness {
    fn new(definition: Value, scripts: &[(&str, Vec<Reply>)]) -> Self {
        let machine =
            StateMachine::from_json(&definition.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let scripts = scripts
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Self {
            machine,
            handler: Scripted {
                scripts,
                ..Default::default()
            },
            clock: FakeClock::new(),
            jitter: FixedJitter(0.5),
            history: MemoryHistory::new(),
        }
    }

    /// A machine starting at "T" with the given states.
    fn states(states: Value, scripts: &[(&str, Vec<Reply>)]) -> Self {
        Self::new(json!({"StartAt": "T", "States": states}), scripts)
    }

    fn executor(&self) -> Executor<'_> {
        Executor::new(
            &self.machine,
            &self.handler,
            &self.clock,
            &self.jitter,
            &self.history,
        )
        .with_state_machine("arn:aws:states:us-east-1:1:stateMachine:etl", "etl")
    }

    async fn run(&self, input: Value) -> ExecutionOutcome {
        self.executor()
            .start(
                "arn:aws:states:us-east-1:1:execution:etl:run-1",
                "run-1",
                input,
            )
            .await
    }

    fn sleeps(&self) -> Vec<Duration> {
        self.clock.sleeps.lock().unwrap().clone()
    }

    fn calls(&self, state: &str) -> Vec<Value> {
        self.handler
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == state)
            .map(|c| c.1.clone())
            .collect()
    }

    fn events(&self) -> Vec<(EventKind, Option<String>)> {
        self.history
            .events()
            .into_iter()
            .map(|e| (e.kind, e.state_name))
            .collect()
    }
}

fn task(extra: Value) -> Value {
    let mut t = json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true});
    t.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    t
}

fn secs(list: &[f64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

const CATCH_ALL_TO_H: &str =
    r#"[{"ErrorEquals": ["States.ALL"], "Next": "H", "ResultPath": "$.error"}]"#;

fn catch_all() -> Value {
    serde_json::from_str(CATCH_ALL_TO_H).unwrap()
}

#[tokio::test]
async fn transient_failure_is_retried_then_succeeds() {
    let h = Harness::states(
        json!({"T": task(json!({"Retry": [{"ErrorEquals": ["Lambda.ServiceException"]}]}))}),
        &[(
            "T",
            vec![
                Reply::Err("Lambda.ServiceException"),
                Reply::Err("Lambda.ServiceException"),
                Reply::Ok(json!(7)),
            ],
        )],
    );
    let outcome = h.run(json!({"day": "2021-03-17"})).await;
    assert_eq!(
        (outcome.status, outcome.output),
        (ExecutionStatus::Succeeded, Some(json!(7)))
    );
    assert_eq!(h.sleeps(), secs(&[1.0, 2.0]));
    let attempts: Vec<_> = h
        .history
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::TaskScheduled)
        .map(|e| e.details["retryAttempt"].clone())
        .collect();
    assert_eq!(attempts, [json!(0), json!(1), json!(2)]);
    use EventKind::*;
    let t = Some("T".to_string());
    #[rustfmt::skip]
    let expected = [
        (ExecutionStarted, None), (TaskStateEntered, t.clone()),
        (TaskScheduled, t.clone()), (TaskStarted, t.clone()), (TaskFailed, t.clone()),
        (TaskScheduled, t.clone()), (TaskStarted, t.clone()), (TaskFailed, t.clone()),
        (TaskScheduled, t.clone()), (TaskStarted, t.clone()), (TaskSucceeded, t.clone()),
        (TaskStateExited, t.clone()), (ExecutionSucceeded, None),
    ];
    assert_eq!(h.events(), expected);
}

#[tokio::test]
async fn retry_then_catch_routing() {
    // (Retry, script for T, expected calls of T, expected sleeps, caught error)
    let err = |e| Reply::Err(e);
    let cases = [
        // exhausted retries go to Catch
        (
            json!([{"ErrorEquals": ["A"], "MaxAttempts": 2}]),
            vec![err("A")],
            3,
            secs(&[1.0, 2.0]),
            "A",
        ),
        // an error not listed in Retry goes straight to Catch
        (
            json!([{"ErrorEquals": ["A"]}]),
            vec![err("B")],
            1,
            vec![],
            "B",
        ),
        // MaxAttempts 0 never retries
        (
            json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}]),
            vec![err("A")],
            1,
            vec![],
            "A",
        ),
        // counters are per retrier: A, B, A, B then A exhausted
        (
            json!([{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["B"], "MaxAttempts": 1, "IntervalSeconds": 5}]),
            vec![err("A"), err("B"), err("A")],
            3,
            secs(&[1.0, 5.0]),
            "A",
        ),
        // the first matching retrier wins; once exhausted the catch-all retrier is not tried
        (
            json!([{"ErrorEquals": ["A"], "MaxAttempts": 1}, {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}]),
            vec![err("A")],
            2,
            secs(&[1.0]),
            "A",
        ),
    ];
    for (retry, script, calls, sleeps, caught) in cases {
        let h = Harness::states(
            json!({"T": task(json!({"End": null, "Next": "Done", "Retry": retry, "Catch": catch_all()})),
                   "Done": {"Type": "Succeed"}, "H": {"Type": "Pass", "End": true}}),
            &[("T", script)],
        );
        let outcome = h.run(json!({"k": 1})).await;
        assert_eq!(h.calls("T").len(), calls, "{retry}");
        assert_eq!(h.sleeps(), sleeps, "{retry}");
        assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{retry}");
        assert_eq!(outcome.output.unwrap()["error"]["Error"], caught, "{retry}");
    }
}

#[tokio::test]
async fn retry_waits_follow_backoff_cap_and_jitter() {
    let cases = [
        (json!({"ErrorEquals": ["E"]}), 0.5, secs(&[1.0, 2.0, 4.0])),
        (
            json!({"ErrorEquals": ["E"], "IntervalSeconds": 3, "BackoffRate": 1.5}),
            0.5,
            secs(&[3.0, 4.5, 6.75]),
        ),
        (
            json!({"ErrorEquals": ["E"], "IntervalSeconds": 2, "MaxAttempts": 4, "MaxDelaySeconds": 5}),
            0.5,
            secs(&[2.0, 4.0, 5.0, 5.0]),
        ),
        (
            json!({"ErrorEquals": ["E"], "IntervalSeconds": 4, "JitterStrategy": "FULL"}),
            0.25,
            secs(&[1.0, 2.0, 4.0]),
        ),
        (
            json!({"ErrorEquals": ["E"], "IntervalSeconds": 4, "MaxAttempts": 4, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}),
            0.5,
            secs(&[2.0, 4.0, 5.0, 5.0]),
        ),
    ];
    for (retrier, sample, expected) in cases {
        let mut h = Harness::states(
            json!({"T": task(json!({"Retry": [retrier]}))}),
            &[("T", vec![Reply::Err("E")])],
        );
        h.jitter = FixedJitter(sample);
        let outcome = h.run(json!({})).await;
        assert_eq!(outcome.error.as_deref(), Some("E"));
        assert_eq!(h.sleeps(), expected, "{retrier}");
    }
}

#[tokio::test]
async fn catch_output_is_error_object_placed_into_raw_input() {
    // The state's own ResultSelector/ResultPath/OutputPath must not touch the error output.
    let own = json!({"InputPath": "$.inner", "ResultSelector": {"r.$": "$"}, "ResultPath": "$.res", "OutputPath": "$.res"});
    let error = json!({"Error": "Boom", "Cause": "T failed on call 0"});
    let cases = [
        (json!("$.error"), json!({"inner": {"a": 1}, "error": error})),
        (json!("$"), error.clone()),
        (Value::Null, json!({"inner": {"a": 1}})),
        (
            json!("$.deep.err"),
            json!({"inner": {"a": 1}, "deep": {"err": error}}),
        ),
    ];
    for (result_path, expected) in cases {
        let mut t = task(own.clone());
        t["Catch"] = json!([{"ErrorEquals": ["Boom"], "Next": "H", "ResultPath": result_path}]);
        let h = Harness::states(
            json!({"T": t, "H": {"Type": "Pass", "End": true}}),
            &[("T", vec![Reply::Err("Boom")])],
        );
        let outcome = h.run(json!({"inner": {"a": 1}})).await;
        assert_eq!(outcome.output, Some(expected), "{result_path}");
        assert_eq!(h.calls("T"), [json!({"a": 1})]);
    }
    // Without ResultPath the catcher defaults to `$`.
    let mut t = task(json!({}));
    t["Catch"] = json!([{"ErrorEquals": ["Boom"], "Next": "H"}]);
    let h = Harness::states(
        json!({"T": t, "H": {"Type": "Pass", "End": true}}),
        &[("T", vec![Reply::Err("Boom")])],
    );
    assert_eq!(h.run(json!({"x": 1})).await.output, Some(error));
}

#[tokio::test]
async fn wildcards_and_terminal_errors() {
    let big = json!("x".repeat(PAYLOAD_LIMIT_BYTES));
    // (ErrorEquals of the only catcher, extra fields on T, script, caught?, final error)
    let cases = [
        (
            json!(["States.ALL"]),
            json!({}),
            Reply::Err("Custom"),
            true,
            "Custom",
        ),
        (
            json!(["States.ALL"]),
            json!({"InputPath": "$.missing"}),
            Reply::Echo,
            false,
            STATES_RUNTIME,
        ),
        (
            json!(["States.ALL"]),
            json!({"Parameters": {"x.$": "$.missing"}}),
            Reply::Echo,
            false,
            STATES_RUNTIME,
        ),
        (
            json!(["States.ALL"]),
            json!({"OutputPath": "$.missing"}),
            Reply::Echo,
            false,
            STATES_RUNTIME,
        ),
        (
            json!(["States.ALL"]),
            json!({"ResultSelector": {"x.$": "$.missing"}}),
            Reply::Echo,
            false,
            STATES_RUNTIME,
        ),
        (
            json!(["States.ALL"]),
            json!({}),
            Reply::Ok(big.clone()),
            false,
            DATA_LIMIT_EXCEEDED,
        ),
        (
            json!(["States.DataLimitExceeded"]),
            json!({}),
            Reply::Ok(big.clone()),
            true,
            DATA_LIMIT_EXCEEDED,
        ),
        (
            json!(["States.TaskFailed"]),
            json!({}),
            Reply::Err("Lambda.ServiceException"),
            true,
            "Lambda.ServiceException",
        ),
        (
            json!(["States.TaskFailed"]),
            json!({"TimeoutSeconds": 5}),
            Reply::Hang,
            false,
            STATES_TIMEOUT,
        ),
        (
            json!(["States.Timeout"]),
            json!({"TimeoutSeconds": 5}),
            Reply::Hang,
            true,
            STATES_TIMEOUT,
        ),
        (
            json!(["States.ALL"]),
            json!({"TimeoutSeconds": 5}),
            Reply::Hang,
            true,
            STATES_TIMEOUT,
        ),
        (
            json!(["Lambda.ServiceException"]),
            json!({}),
            Reply::Err("Lambda.SdkClientException"),
            false,
            "Lambda.SdkClientException",
        ),
    ];
    for (errors, extra, reply, caught, error) in cases {
        let mut t = task(extra.clone());
        t["Retry"] = json!([{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1}]);
        t["Catch"] = json!([{"ErrorEquals": errors, "Next": "H", "ResultPath": "$.error"}]);
        let h = Harness::states(
            json!({"T": t, "H": {"Type": "Pass", "End": true}}),
            &[("T", vec![reply])],
        );
        let outcome = h.run(json!({"k": 1})).await;
        let label = format!("{errors} {extra} {error}");
        if caught {
            assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{label}");
            assert_eq!(outcome.output.unwrap()["error"]["Error"], error, "{label}");
        } else {
            assert_eq!(
                (outcome.status, outcome.error.as_deref()),
                (ExecutionStatus::Failed, Some(error)),
                "{label}"
            );
            assert_eq!(outcome.failed_state.as_deref(), Some("T"), "{label}");
        }
        // States.Runtime and States.DataLimitExceeded are never retried by States.ALL.
        let expected_calls = match error {
            STATES_RUNTIME
                if extra.get("InputPath").is_some() || extra.get("Parameters").is_some() =>
            {
                0
            }
            STATES_RUNTIME | DATA_LIMIT_EXCEEDED => 1,
            _ => 2,
        };
        assert_eq!(h.calls("T").len(), expected_calls, "{label}");
    }
}

#[tokio::test]
async fn payload_limit_applies_to_task_input_result_and_state_output() {
    let just_fits = "x".repeat(PAYLOAD_LIMIT_BYTES - 2); // with its quotes: exactly 262144 bytes
    let over = "x".repeat(PAYLOAD_LIMIT_BYTES - 1);
    let cases = [
        (
            task(json!({"ResultPath": null})),
            json!({}),
            Reply::Ok(json!(just_fits)),
            None,
        ),
        (
            task(json!({"ResultPath": null})),
            json!({}),
            Reply::Ok(json!(over)),
            Some(1),
        ),
        (
            task(json!({"Parameters": {"s.$": "$.s"}})),
            json!({"s": over.clone()}),
            Reply::Echo,
            Some(0),
        ),
        (
            task(json!({"ResultPath": "$.copy"})),
            json!({"s": just_fits[..200_000].to_string()}),
            Reply::Echo,
            Some(1),
        ),
        (
            json!({"Type": "Pass", "Result": over.clone(), "End": true}),
            json!({}),
            Reply::Echo,
            Some(0),
        ),
    ];
    for (state, input, reply, failure_calls) in cases {
        let h = Harness::states(json!({"T": state}), &[("T", vec![reply])]);
        let outcome = h.run(input).await;
        match failure_calls {
            None => assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{state}"),
            Some(calls) => {
                assert_eq!(
                    outcome.error.as_deref(),
                    Some(DATA_LIMIT_EXCEEDED),
                    "{state}"
                );
                assert_eq!(h.calls("T").len(), calls, "{state}");
            }
        }
    }
    let h = Harness::states(json!({"T": task(json!({}))}), &[]);
    let outcome = h.run(json!(over)).await;
    assert_eq!(
        (outcome.error.as_deref(), outcome.failed_state),
        (Some(DATA_LIMIT_EXCEEDED), None)
    );
}

fn production_machine() -> Value {
    let lambda = |name: &str| json!({"Fn::GetAtt": [name, "Arn"]});
    json!({
        "Comment": "ETL shape: parallel extract, failure branch with an SNS fallback",
        "StartAt": "ExtractAll",
        "States": {
            "ExtractAll": {
                "Type": "Parallel",
                "Next": "Merge",
                "Branches": [
                    {"StartAt": "ExtractNyt", "States": {"ExtractNyt": {"Type": "Task", "Resource": lambda("ExtractNyt"), "End": true,
                        "Retry": [{"ErrorEquals": ["Lambda.ServiceException"], "MaxAttempts": 2, "IntervalSeconds": 2}]}}},
                    {"StartAt": "ExtractJhu", "States": {"ExtractJhu": {"Type": "Task", "Resource": lambda("ExtractJhu"), "End": true}}}
                ],
                "ResultSelector": {"nyt.$": "$[0]", "jhu.$": "$[1]"},
                "ResultPath": "$.extracted",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "NotifyFailure", "ResultPath": "$.error"}]
            },
            "Merge": {"Type": "Task", "Resource": lambda("Merge"), "End": true, "InputPath": "$.extracted"},
            "NotifyFailure": {
                "Type": "Task", "Resource": lambda("Notify"), "Next": "FailRun", "ResultPath": null,
                "Parameters": {"subject": "ETL failed", "message.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "NotifyFallback", "ResultPath": "$.notifyError"}]
            },
            "NotifyFallback": {
                "Type": "Task", "Resource": "arn:aws:states:::sns:publish", "Next": "FailRun", "ResultPath": null,
                "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:1:etl", "Message.$": "States.JsonToString($)"}
            },
            "FailRun": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
        }
    })
}

/// The production shape with the Parallel's failures left uncaught, as our definition has them.
fn production_machine_without_catch() -> Value {
    let mut definition = production_machine();
    definition["States"]["ExtractAll"]
        .as_object_mut()
        .unwrap()
        .remove("Catch");
    definition
}

#[tokio::test]
async fn parallel_success_collects_branch_outputs_in_order() {
    let h = Harness::new(
        production_machine(),
        &[
            ("ExtractNyt", vec![Reply::Ok(json!("nyt-rows"))]),
            ("ExtractJhu", vec![Reply::Ok(json!("jhu-rows"))]),
        ],
    );
    let outcome = h.run(json!({"day": "2021-03-17"})).await;
    assert_eq!(
        outcome.output,
        Some(json!({"nyt": "nyt-rows", "jhu": "jhu-rows"}))
    );
    assert_eq!(h.calls("ExtractNyt"), [json!({"day": "2021-03-17"})]);
    assert_eq!(h.calls("ExtractJhu"), [json!({"day": "2021-03-17"})]);
    let names: Vec<_> = h.events().into_iter().filter_map(|(_, s)| s).collect();
    assert!(names.contains(&"ExtractNyt".to_string()) && names.contains(&"ExtractJhu".to_string()));
    let resource = h.handler.calls.lock().unwrap()[0].3.clone();
    assert_eq!(resource["Fn::GetAtt"][1], "Arn");
}

#[tokio::test]
async fn failing_branch_cancels_sibling_and_catch_chain_reaches_fallback() {
    let h = Harness::new(
        production_machine(),
        &[
            ("ExtractNyt", vec![Reply::Err("Lambda.ServiceException")]),
            ("ExtractJhu", vec![Reply::Hang]),
            (
                "NotifyFailure",
                vec![Reply::Err("Lambda.TooManyRequestsException")],
            ),
            (
                "NotifyFallback",
                vec![Reply::Ok(json!({"MessageId": "m-1"}))],
            ),
        ],
    );
    let input = json!({"day": "2021-03-17"});
    let outcome = h.run(input.clone()).await;
    // ExtractNyt retries inside its branch, then the hanging ExtractJhu branch is dropped
    assert_eq!(h.handler.cancelled.load(Ordering::SeqCst), 1);
    assert_eq!(h.calls("ExtractNyt").len(), 3);
    assert_eq!(h.sleeps(), secs(&[2.0, 4.0]));
    let cause = "ExtractNyt failed on call 2";
    assert_eq!(outcome.status, ExecutionStatus::Failed);
    assert_eq!(
        (outcome.error.as_deref(), outcome.cause.as_deref()),
        (Some("Lambda.ServiceException"), Some(cause))
    );
    assert_eq!(outcome.failed_state.as_deref(), Some("ExtractNyt"));
    // Step Functions redrives the state the execution ended in, entered and never exited:
    // after a Catch, that is the Fail state at the end of the failure branch.
    let (redrive_state, redrive_input) = outcome.redrive_from.clone().unwrap();
    assert_eq!(redrive_state, "FailRun");
    assert_eq!(redrive_input["day"], input["day"]);
    assert_eq!(
        h.calls("NotifyFailure"),
        [json!({"subject": "ETL failed", "message": format!("Lambda.ServiceException: {cause}")})]
    );
    let fallback = &h.calls("NotifyFallback")[0];
    let message: Value = serde_json::from_str(fallback["Message"].as_str().unwrap()).unwrap();
    assert_eq!(
        message["error"],
        json!({"Error": "Lambda.ServiceException", "Cause": cause})
    );
    assert_eq!(
        message["notifyError"]["Error"],
        "Lambda.TooManyRequestsException"
    );
    let failed: Vec<_> = h
        .history
        .events()
        .into_iter()
        .filter(|e| e.kind == EventKind::ParallelStateFailed)
        .collect();
    assert_eq!(failed[0].details["error"], "Lambda.ServiceException");
    assert_eq!(h.events().last().unwrap().0, EventKind::ExecutionFailed);
    assert!(
        h.events()
            .contains(&(EventKind::FailStateEntered, Some("FailRun".into())))
    );
}

#[tokio::test]
async fn uncaught_branch_failure_reports_innermost_state() {
    let definition = production_machine_without_catch();
    let h = Harness::new(
        definition,
        &[
            ("ExtractJhu", vec![Reply::Err("DataQualityError")]),
            ("ExtractNyt", vec![Reply::Hang]),
        ],
    );
    let outcome = h.run(json!({})).await;
    assert_eq!(outcome.error.as_deref(), Some("DataQualityError"));
    assert_eq!(outcome.failed_state.as_deref(), Some("ExtractJhu"));
    assert_eq!(
        outcome.redrive_from,
        Some(("ExtractAll".to_string(), json!({})))
    );
}

/// RedriveExecution "reschedules and redrives only the iterations and branches that failed or
/// aborted": the branch that succeeded keeps its output from the last attempt.
#[tokio::test]
async fn a_redriven_parallel_reruns_only_the_failed_branch() {
    let definition = production_machine_without_catch();
    let h = Harness::new(
        definition.clone(),
        &[
            (
                "ExtractNyt",
                vec![Reply::Ok(json!({"from": "first attempt"}))],
            ),
            ("ExtractJhu", vec![Reply::Err("DataQualityError")]),
        ],
    );
    let failed = h.run(json!({"day": 1})).await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let (state, input) = failed.redrive_from.unwrap();
    assert_eq!(state, "ExtractAll");
    let previous = h.history.events();

    let h = Harness::new(definition, &[("ExtractNyt", vec![Reply::Err("NotCalled")])]);
    let outcome = h
        .executor()
        .resume("arn:exec", "r", &state, input, json!({"day": 1}), &previous)
        .await;
    assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{outcome:?}");
    assert!(
        h.calls("ExtractNyt").is_empty(),
        "the succeeded branch ran again"
    );
    assert_eq!(h.calls("ExtractJhu").len(), 1);
    // Without the previous history both branches run.
    let h = Harness::new(production_machine(), &[]);
    h.executor()
        .resume("arn:exec", "r", "ExtractAll", json!({}), json!({}), &[])
        .await;
    assert_eq!(
        (h.calls("ExtractNyt").len(), h.calls("ExtractJhu").len()),
        (1, 1)
    );
}

#[tokio::test]
async fn task_timeout_raises_states_timeout() {
    let h = Harness::states(
        json!({"T": task(json!({"TimeoutSeconds": 10}))}),
        &[("T", vec![Reply::Hang])],
    );
    let outcome = h.run(json!({})).await;
    assert_eq!(
        (outcome.status, outcome.error.as_deref()),
        (ExecutionStatus::Failed, Some(STATES_TIMEOUT))
    );
    assert_eq!(h.sleeps(), secs(&[10.0]));
    assert!(
        h.events()
            .contains(&(EventKind::TaskTimedOut, Some("T".into())))
    );
    // a prompt handler wins the race and no timeout is counted
    let h = Harness::states(json!({"T": task(json!({"TimeoutSeconds": 10}))}), &[]);
    assert_eq!(h.run(json!({"a": 1})).await.output, Some(json!({"a": 1})));
    assert!(h.sleeps().is_empty());
}

#[tokio::test]
async fn machine_timeout_is_not_catchable() {
    let definition = json!({"StartAt": "P", "TimeoutSeconds": 60, "States": {
        "P": {"Type": "Pass", "Next": "T"},
        "T": task(json!({"Catch": catch_all()})),
        "H": {"Type": "Pass", "End": true}}});
    let h = Harness::new(definition, &[("T", vec![Reply::Hang])]);
    let outcome = h.run(json!({"x": 1})).await;
    assert_eq!(outcome.status, ExecutionStatus::TimedOut);
    assert_eq!(outcome.error.as_deref(), Some(STATES_TIMEOUT));
    assert_eq!(outcome.failed_state.as_deref(), Some("T"));
    assert_eq!(
        outcome.redrive_from,
        Some(("T".to_string(), json!({"x": 1})))
    );
    assert_eq!(h.events().last().unwrap().0, EventKind::ExecutionTimedOut);
    assert_eq!(serde_json::to_value(outcome.status).unwrap(), "TIMED_OUT");
}

/// StopExecution: the hanging state is dropped, its Catch does not see it, and the execution
/// ends ABORTED, redrivable from that state with its input.
#[tokio::test]
async fn a_stop_aborts_the_state_in_progress_and_leaves_it_redrivable() {
    let definition = json!({"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Next": "T"},
        "T": task(json!({"Catch": catch_all()})),
        "H": {"Type": "Pass", "End": true}}});
    let h = Harness::new(definition, &[("T", vec![Reply::Hang])]);
    let stop = tokio::sync::Notify::new();
    stop.notify_one();
    let outcome = h
        .executor()
        .with_stop(&stop)
        .start(
            "arn:aws:states:us-east-1:1:execution:etl:run-1",
            "run-1",
            json!({"x": 1}),
        )
        .await;
    assert_eq!(outcome.status, ExecutionStatus::Aborted);
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.cause.as_deref(), Some("the execution was stopped"));
    assert_eq!(outcome.failed_state.as_deref(), Some("T"));
    assert_eq!(
        outcome.redrive_from,
        Some(("T".to_string(), json!({"x": 1})))
    );
    assert_eq!(h.handler.cancelled.load(Ordering::SeqCst), 1);
    let events = h.events();
    assert_eq!(events.last().unwrap().0, EventKind::ExecutionAborted);
    assert!(
        !events
            .iter()
            .any(|(_, state)| state.as_deref() == Some("H"))
    );
}

#[tokio::test]
async fn choice_routes_on_rules_and_default() {
    let definition = json!({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Default": "Other", "Choices": [
            {"Variable": "$.changed", "NumericGreaterThan": 0, "Next": "Load"},
            {"And": [{"Variable": "$.source", "StringEquals": "nyt"}, {"Variable": "$.dryRun", "BooleanEquals": true}], "Next": "DryRun"},
            {"Or": [{"Variable": "$.skip", "IsPresent": true}, {"Variable": "$.count", "NumericLessThan": 0}], "Next": "Skip"},
            {"Variable": "$.source", "IsNull": true, "Next": "Skip"},
            {"Not": {"Variable": "$.expected", "StringEqualsPath": "$.source"}, "Next": "Mismatch"}
        ]},
        "Load": {"Type": "Succeed"}, "DryRun": {"Type": "Succeed"}, "Skip": {"Type": "Succeed"},
        "Mismatch": {"Type": "Succeed"}, "Other": {"Type": "Succeed"}}});
    let cases = [
        (json!({"changed": 3}), "Load"),
        (
            json!({"changed": 0, "source": "nyt", "dryRun": true}),
            "DryRun",
        ),
        (
            json!({"changed": 0, "source": "jhu", "skip": false}),
            "Skip",
        ),
        (json!({"changed": 0, "source": "jhu", "count": -1}), "Skip"),
        (json!({"changed": 0, "source": null, "count": 1}), "Skip"),
        (
            json!({"changed": 0, "source": "nyt", "dryRun": false, "count": 1, "expected": "jhu"}),
            "Mismatch",
        ),
        (
            json!({"changed": 0, "source": "nyt", "dryRun": false, "count": 1, "expected": "nyt"}),
            "Other",
        ),
    ];
    for (input, expected) in cases {
        let h = Harness::new(definition.clone(), &[]);
        let outcome = h.run(input.clone()).await;
        assert_eq!(outcome.status, ExecutionStatus::Succeeded, "{input}");
        assert!(
            h.events()
                .contains(&(EventKind::SucceedStateEntered, Some(expected.into()))),
            "{input} → {expected}"
        );
    }
    let no_default = json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
        {"Variable": "$.n", "NumericEquals": 1, "Next": "S"}]}, "S": {"Type": "Succeed"}}});
    let cases = [
        (json!({"n": 2}), NO_CHOICE_MATCHED),
        (json!({}), STATES_RUNTIME),
    ];
    for (input, error) in cases {
        let outcome = Harness::new(no_default.clone(), &[]).run(input).await;
        assert_eq!(
            (outcome.error.as_deref(), outcome.failed_state.as_deref()),
            (Some(error), Some("C"))
        );
    }
}

#[tokio::test]
async fn parameters_are_reevaluated_per_attempt_with_context_object() {
    let h = Harness::states(
        json!({"T": task(json!({
            "Parameters": {"attempt.$": "$$.State.RetryCount", "state.$": "$$.State.Name", "exec.$": "$$.Execution.Id",
                           "name.$": "$$.Execution.Name", "input.$": "$$.Execution.Input", "machine.$": "$$.StateMachine.Name",
                           "started.$": "$$.Execution.StartTime", "entered.$": "$$.State.EnteredTime"},
            "Retry": [{"ErrorEquals": ["States.TaskFailed"]}]}))}),
        &[(
            "T",
            vec![
                Reply::Err("Transient"),
                Reply::Err("Transient"),
                Reply::Echo,
            ],
        )],
    );
    h.run(json!({"day": 1})).await;
    let calls = h.calls("T");
    let attempts: Vec<_> = calls.iter().map(|c| c["attempt"].clone()).collect();
    assert_eq!(attempts, [json!(0), json!(1), json!(2)]);
    let retry_counts: Vec<_> = h
        .handler
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.2)
        .collect();
    assert_eq!(retry_counts, [0, 1, 2]);
    let expected = json!({"attempt": 0, "state": "T", "exec": "arn:aws:states:us-east-1:1:execution:etl:run-1", "name": "run-1",
        "input": {"day": 1}, "machine": "etl", "started": "2021-03-17T12:00:00.000Z", "entered": "2021-03-17T12:00:00.000Z"});
    assert_eq!(calls[0], expected);
    // EnteredTime is the time the state was entered, not the time of the retry
    assert_eq!(calls[2]["entered"], expected["entered"]);
}

#[tokio::test]
async fn input_and_output_processing() {
    let input = json!({"a": {"b": 1, "c": [10, 20]}, "keep": true});
    // (fields of an echoing Task, expected output)
    let cases = [
        (json!({}), input.clone()),
        (json!({"InputPath": "$.a"}), json!({"b": 1, "c": [10, 20]})),
        (json!({"InputPath": null}), json!({})),
        (
            json!({"InputPath": "$.a.c[1]", "ResultPath": "$.picked"}),
            json!({"a": {"b": 1, "c": [10, 20]}, "keep": true, "picked": 20}),
        ),
        (
            json!({"ResultPath": null, "Parameters": {"x": 1}}),
            input.clone(),
        ),
        (
            json!({"Parameters": {"x.$": "$.a.b", "lit": "v"}, "ResultSelector": {"y.$": "$.x"}, "ResultPath": "$.r"}),
            json!({"a": {"b": 1, "c": [10, 20]}, "keep": true, "r": {"y": 1}}),
        ),
        (
            json!({"ResultPath": "$.r", "OutputPath": "$.r.keep"}),
            json!(true),
        ),
        (json!({"OutputPath": null}), json!({})),
    ];
    for (fields, expected) in cases {
        let h = Harness::states(json!({"T": task(fields.clone())}), &[]);
        assert_eq!(
            h.run(input.clone()).await.output,
            Some(expected),
            "{fields}"
        );
    }
    // Pass: Result, then ResultPath; Parameters without Result
    let cases = [
        (
            json!({"Result": {"r": 1}, "ResultPath": "$.res"}),
            json!({"keep": true, "res": {"r": 1}}),
        ),
        (json!({"Parameters": {"k.$": "$.keep"}}), json!({"k": true})),
        (json!({}), json!({"keep": true})),
    ];
    for (fields, expected) in cases {
        let mut pass = json!({"Type": "Pass", "End": true});
        pass.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let h = Harness::states(json!({"T": pass}), &[]);
        assert_eq!(
            h.run(json!({"keep": true})).await.output,
            Some(expected),
            "{fields}"
        );
    }
}

#[tokio::test]
async fn fail_state_without_prior_catch_is_the_failed_state() {
    let cases = [
        (
            json!({"Type": "Fail", "Error": "NoData", "Cause": "nothing to load"}),
            Some("NoData"),
            Some("nothing to load"),
        ),
        (
            json!({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}),
            Some("FromInput"),
            Some("why"),
        ),
        (json!({"Type": "Fail"}), None, None),
        (
            json!({"Type": "Fail", "ErrorPath": "$.n"}),
            Some(STATES_RUNTIME),
            Some("$.n must select a string, found 3"),
        ),
    ];
    for (fail, error, cause) in cases {
        let h = Harness::states(json!({"T": fail}), &[]);
        let outcome = h.run(json!({"e": "FromInput", "c": "why", "n": 3})).await;
        assert_eq!(
            (outcome.error.as_deref(), outcome.cause.as_deref()),
            (error, cause)
        );
        assert_eq!(outcome.failed_state.as_deref(), Some("T"));
        assert_eq!(h.events()[1].0, EventKind::FailStateEntered);
    }
}

#[tokio::test]
async fn resume_runs_from_a_top_level_state() {
    let h = Harness::new(production_machine(), &[]);
    let original = json!({"day": "2021-03-17"});
    let input = json!({"day": "2021-03-17"});
    let outcome = h
        .executor()
        .resume(
            "arn:exec",
            "run-1",
            "ExtractAll",
            input.clone(),
            original.clone(),
            &[],
        )
        .await;
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    assert_eq!(outcome.output, Some(json!({"nyt": input, "jhu": input})));
    let first = &h.history.events()[0];
    assert_eq!(
        (first.kind, first.details["redriveFrom"].clone()),
        (EventKind::ExecutionRedriven, json!("ExtractAll"))
    );

    let h = Harness::states(
        json!({"A": task(json!({"Next": "T", "End": null})), "T": task(json!({"Parameters": {"orig.$": "$$.Execution.Input"}}))}),
        &[],
    );
    let outcome = h
        .executor()
        .resume(
            "arn:exec",
            "run-1",
            "T",
            json!({"mid": 1}),
            json!({"start": 0}),
            &[],
        )
        .await;
    assert_eq!(outcome.output, Some(json!({"orig": {"start": 0}})));
    assert!(h.calls("A").is_empty());

    let outcome = Harness::new(production_machine(), &[])
        .executor()
        .resume("arn:exec", "r", "ExtractNyt", json!({}), json!({}), &[])
        .await;
    assert_eq!(
        (outcome.status, outcome.error.as_deref()),
        (ExecutionStatus::Failed, Some(STATES_RUNTIME))
    );
}

#[test]
fn load_time_refusals() {
    let cases = [
        (
            json!({"StartAt": "T", "States": {"T": task(json!({"ResultPathh": "$"}))}}),
            "ResultPathh",
        ),
        (
            json!({"StartAt": "T", "States": {"T": task(json!({"Retry": [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["A"]}]}))}}),
            "States.ALL",
        ),
        (
            json!({"StartAt": "T", "States": {"T": task(json!({"Catch": [{"ErrorEquals": ["States.ALL", "A"], "Next": "T"}]}))}}),
            "States.ALL",
        ),
        (
            json!({"StartAt": "T", "States": {"T": task(json!({"Parameters": {"id.$": "States.UUID()"}}))}}),
            "States.UUID",
        ),
        (
            json!({"StartAt": "T", "States": {"T": task(json!({}))}, "QueryLanguage": "JSONata"}),
            "QueryLanguage",
        ),
    ];
    for (definition, needle) in cases {
        let error = StateMachine::from_json(&definition.to_string())
            .unwrap_err()
            .to_string();
        assert!(error.contains(needle), "{error:?} should mention {needle}");
    }
    assert!(matches!(
        StateMachine::from_json("{"),
        Err(DefinitionError::Json(_))
    ));
}

#[test]
fn executions_can_be_spawned() {
    fn assert_send<T: Send>(_: T) {}
    let h = Harness::states(json!({"T": task(json!({}))}), &[]);
    let executor = h.executor();
    assert_send(executor.start("id", "name", json!({})));
    assert_send(executor.resume("id", "name", "T", json!({}), json!({}), &[]));
}

/// The definition we deploy must stay within what this engine accepts.
#[test]
fn production_definition_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../statemachine/etl.asl.json"
    );
    let text = std::fs::read_to_string(path).expect("statemachine/etl.asl.json");
    let machine = StateMachine::from_json(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(machine.top_level_state_of("ExtractNyt"), Some("Extract"));
}

/// What a progress line says as "attempt 2 of 4": the first retrier that matches, as a run
/// picks it, found inside Parallel branches too.
#[test]
fn attempts_count_the_first_matching_retrier() {
    let definition = json!({
        "StartAt": "Both",
        "States": {
            "Both": {"Type": "Parallel", "End": true, "Branches": [{
                "StartAt": "Work",
                "States": {"Work": {
                    "Type": "Task", "Resource": "work", "End": true,
                    "Retry": [
                        {"ErrorEquals": ["Flaky"], "MaxAttempts": 3},
                        {"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 1}
                    ]
                }}
            }]}
        }
    });
    let machine = StateMachine::from_json(&definition.to_string()).unwrap();
    assert_eq!(machine.attempts("Work", "Flaky"), 4);
    assert_eq!(machine.attempts("Work", "Other"), 2, "States.TaskFailed");
    assert_eq!(
        machine.attempts("Work", "States.Timeout"),
        1,
        "not a TaskFailed"
    );
    assert_eq!(
        machine.attempts("Both", "Flaky"),
        1,
        "the Parallel has no Retry"
    );
    assert_eq!(machine.attempts("Nowhere", "Flaky"), 1);
}
