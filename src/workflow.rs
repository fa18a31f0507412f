//! The state machine on the local engine: the one definition file, the in-process task
//! handlers its resources map to, and executions persisted in the embedded database.

use crate::engine::{
    Clock, ExecutionOutcome, ExecutionStatus, Executor, HistoryEvent, HistorySink, Jitter,
    MemoryHistory, StateMachine, TaskContext, TaskError, TaskHandler,
};
use crate::error::{EtlError, Result};
use crate::extract::SourceKind;
use crate::ledger::RunLedger;
use crate::notify::{Notification, Notifier, subject_line};
use crate::payload::{ErrorInfo, RunOptions};
use crate::steps::{self, SourceConfig};
use crate::store::{ExecutionRecord, SqliteDb, Store};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::Notify;

/// `statemachine/etl.asl.json`, compiled into the binary: the same file AWS runs.
pub const DEFINITION: &str = include_str!("../statemachine/etl.asl.json");

/// The Lambda functions the definition names in `{"Fn::GetAtt": [name, "Arn"]}`.
const FUNCTIONS: [&str; 5] = ["ExtractNyt", "ExtractJhu", "Merge", "DiffAndLoad", "Notify"];
const SNS_PUBLISH: &str = "arn:aws:states:::sns:publish";

pub fn state_machine() -> Result<StateMachine> {
    let machine = StateMachine::from_json(DEFINITION)
        .map_err(|e| EtlError::InvalidInput(format!("statemachine/etl.asl.json: {e}")))?;
    Ok(machine)
}

/// What a Task resource of our definition means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Function(&'static str),
    SnsPublish,
}

impl Resource {
    pub fn parse(resource: &Value) -> Option<Self> {
        if resource.as_str() == Some(SNS_PUBLISH) {
            return Some(Self::SnsPublish);
        }
        let name = resource.get("Fn::GetAtt")?.get(0)?.as_str()?;
        FUNCTIONS
            .iter()
            .find(|f| **f == name)
            .map(|f| Self::Function(f))
    }
}

/// Runs each Task in-process with the same step functions the Lambdas run. A step's error
/// reaches the engine exactly as Step Functions sees a Lambda error: its stable name as
/// `Error`, and the Lambda-shaped JSON as `Cause`.
pub struct LocalTasks {
    pub sources: SourceConfig,
    pub quality: steps::QualityPolicy,
    pub store: Arc<dyn Store>,
    pub ledger: Arc<dyn RunLedger>,
    pub notifier: Arc<dyn Notifier>,
    pub notify_settings: steps::NotifySettings,
    /// Where the direct `sns:publish` fallback goes (on AWS, the same topic).
    pub fallback: Arc<dyn Notifier>,
}

#[async_trait::async_trait]
impl TaskHandler for LocalTasks {
    async fn invoke(
        &self,
        resource: &Value,
        input: Value,
        _ctx: &TaskContext,
    ) -> std::result::Result<Value, TaskError> {
        let result = match Resource::parse(resource) {
            Some(Resource::Function(name)) => self.function(name, input).await,
            Some(Resource::SnsPublish) => self.sns_publish(input).await,
            None => Err(EtlError::InvalidInput(format!(
                "unknown resource {resource}"
            ))),
        };
        result.map_err(|e| TaskError::new(e.name(), ErrorInfo::lambda_cause(&e)))
    }
}

impl LocalTasks {
    async fn function(&self, name: &str, input: Value) -> Result<Value> {
        match name {
            "ExtractNyt" | "ExtractJhu" => {
                let kind = if name == "ExtractNyt" {
                    SourceKind::Nyt
                } else {
                    SourceKind::Jhu
                };
                to_value(
                    steps::extract(
                        kind,
                        steps::parse_payload(input)?,
                        self.sources.clone(),
                        self.ledger.as_ref(),
                    )
                    .await?,
                )
            }
            "Merge" => to_value(steps::merge(
                steps::parse_payload(input)?,
                &self.quality,
                chrono::Utc::now().date_naive(),
            )?),
            "DiffAndLoad" => to_value(
                steps::diff_and_load(steps::parse_payload(input)?, self.store.as_ref()).await?,
            ),
            "Notify" => to_value(
                steps::notify(
                    steps::parse_payload(input)?,
                    self.notifier.as_ref(),
                    self.ledger.as_ref(),
                    self.notify_settings,
                    chrono::Utc::now(),
                )
                .await?,
            ),
            other => Err(EtlError::InvalidInput(format!(
                "no local handler for {other}"
            ))),
        }
    }

    /// The `sns:publish` service integration: `Subject`, `Message`, `MessageAttributes`.
    async fn sns_publish(&self, input: Value) -> Result<Value> {
        let text = |k: &str| {
            input
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let attributes = input
            .get("MessageAttributes")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        Some((k.clone(), v.get("StringValue")?.as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let notification = Notification {
            subject: subject_line(&text("Subject")),
            message: text("Message"),
            attributes,
        };
        self.fallback
            .publish(&notification)
            .await
            .map_err(|e| EtlError::Execution {
                name: "SNS.InternalErrorException",
                message: e.to_string(),
            })?;
        Ok(serde_json::json!({"MessageId": "local"}))
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| EtlError::InvalidInput(e.to_string()))
}

/// Runs executions of the definition on the local engine and keeps them in the database.
pub struct LocalRunner<'a> {
    pub db: &'a SqliteDb,
    pub tasks: &'a LocalTasks,
    pub clock: &'a dyn Clock,
    pub jitter: &'a dyn Jitter,
    /// Sees every event as it happens (progress lines); may be a no-op.
    pub observer: &'a dyn HistorySink,
    /// Stops the execution in progress when notified (the CLI's Ctrl-C): it is recorded as
    /// `ABORTED` with its history so far, and can be redriven.
    pub stop: &'a Notify,
}

/// Forwards events to the observer and keeps them for the database.
struct Tee<'a> {
    keep: MemoryHistory,
    observer: &'a dyn HistorySink,
}

impl HistorySink for Tee<'_> {
    fn record(&self, event: &HistoryEvent) {
        self.observer.record(event);
        self.keep.record(event);
    }
}

const LOCAL_STATE_MACHINE: &str = "arn:local:states:::stateMachine:covid-etl";

impl LocalRunner<'_> {
    /// Starts an execution named `name` (a fresh name when `None`). A name that was already
    /// used is refused with `ExecutionAlreadyExists`, as Step Functions refuses it, so a
    /// double trigger of the same daily run cannot load twice.
    pub async fn start(
        &self,
        name: Option<String>,
        options: &RunOptions,
    ) -> Result<ExecutionRecord> {
        let machine = state_machine()?;
        let now = self.clock.now();
        let name = name.unwrap_or_else(|| {
            format!(
                "run-{}-{:04x}",
                now.format("%Y%m%dT%H%M%S"),
                rand::random::<u16>()
            )
        });
        let input = to_value(options)?;
        let mut record = ExecutionRecord::running(
            format!("arn:local:states:::execution:covid-etl:{name}"),
            name,
            stamp(now),
            input.clone(),
        );
        self.db.insert_execution(&record)?;
        let tee = self.tee();
        let outcome = self
            .executor(&machine, &tee)
            .start(&record.id, &record.name, input)
            .await;
        self.finish(&mut record, outcome, tee)?;
        Ok(record)
    }

    /// Redrives a failed execution from the state that failed, with that state's recorded
    /// input, keeping the original execution input (Step Functions' RedriveExecution).
    pub async fn redrive(&self, id_or_name: &str) -> Result<ExecutionRecord> {
        let machine = state_machine()?;
        let mut record = self
            .db
            .execution(id_or_name)?
            .ok_or_else(|| EtlError::Execution {
                name: "ExecutionDoesNotExist",
                message: format!("no execution \"{id_or_name}\" in {}", "the local database"),
            })?;
        let Some((state, input)) = record
            .redrive_from
            .clone()
            .filter(|_| record.status != "SUCCEEDED" && record.status != "RUNNING")
        else {
            return Err(EtlError::Execution {
                name: "ExecutionNotRedrivable",
                message: format!(
                    "execution \"{}\" is {}: only a failed execution can be redriven",
                    record.name, record.status
                ),
            });
        };
        record.redrive_count += 1;
        record.status = "RUNNING".into();
        let tee = self.tee();
        let outcome = self
            .executor(&machine, &tee)
            .resume(
                &record.id,
                &record.name,
                &state,
                input,
                record.input.clone(),
            )
            .await;
        self.finish(&mut record, outcome, tee)?;
        Ok(record)
    }

    fn tee(&self) -> Tee<'_> {
        Tee {
            keep: MemoryHistory::new(),
            observer: self.observer,
        }
    }

    fn executor<'m>(&'m self, machine: &'m StateMachine, sink: &'m Tee<'_>) -> Executor<'m> {
        Executor::new(machine, self.tasks, self.clock, self.jitter, sink)
            .with_state_machine(LOCAL_STATE_MACHINE, "covid-etl")
            .with_stop(self.stop)
    }

    fn finish(
        &self,
        record: &mut ExecutionRecord,
        outcome: ExecutionOutcome,
        tee: Tee<'_>,
    ) -> Result<()> {
        record.finished_at = Some(stamp(self.clock.now()));
        record.status = match outcome.status {
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
        }
        .into();
        record.output = outcome.output;
        record.error = outcome.error;
        record.cause = outcome.cause.as_deref().map(crate::payload::cause_message);
        record.failed_state = outcome.failed_state;
        record.redrive_from = outcome.redrive_from;
        self.db.finish_execution(record, &tee.keep.into_events())
    }
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FixedJitter, SystemClock};
    use crate::notify::{MemoryNotifier, MockNotifier};
    use crate::store::MemoryStore;

    fn fixture(name: &str) -> Option<String> {
        Some(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
    }

    /// The production definition with a notify function that always fails: the failure
    /// branch falls back to the direct `sns:publish`, and the execution still fails with the
    /// original error.
    #[tokio::test]
    async fn a_failing_notify_function_falls_back_to_sns_publish() {
        let mut broken = MockNotifier::new();
        broken
            .expect_publish()
            .returning(|_| Err(EtlError::NotifyError("topic unavailable".into())));
        let fallback = Arc::new(MemoryNotifier::default());
        let store = Arc::new(MemoryStore::default());
        let tasks = LocalTasks {
            sources: SourceConfig::default(),
            quality: steps::QualityPolicy::default(),
            store: store.clone(),
            ledger: store.clone(),
            notifier: Arc::new(broken),
            notify_settings: steps::NotifySettings {
                notify_no_new_data: true,
            },
            fallback: fallback.clone(),
        };
        let db = SqliteDb::in_memory().unwrap();
        let runner = LocalRunner {
            db: &db,
            tasks: &tasks,
            clock: &SystemClock,
            jitter: &FixedJitter(0.0),
            observer: &MemoryHistory::new(),
            stop: &Notify::new(),
        };
        let options = RunOptions {
            nyt: fixture("nyt/invalid-date.csv"),
            jhu: fixture("jhu/combined.csv"),
            ..RunOptions::default()
        };
        let run = runner
            .start(Some("fallback".into()), &options)
            .await
            .unwrap();
        assert_eq!(run.status, "FAILED");
        assert_eq!(run.failed_state.as_deref(), Some("ExtractNyt"));
        assert_eq!(run.error.as_deref(), Some("DataQualityError"));
        let sent = fallback.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "covid-etl FAILED in Extract");
        assert_eq!(sent[0].attributes["failedState"], "Extract");
        assert!(
            sent[0].message.contains("2020-02-30"),
            "{}",
            sent[0].message
        );
        let steps = crate::report::steps(&db.history(&run.id).unwrap(), true);
        let names: Vec<_> = steps
            .iter()
            .map(|s| (s.name.as_str(), s.status.as_str()))
            .collect();
        assert!(names.contains(&("NotifyFailure", "CAUGHT")), "{names:?}");
        assert!(
            names.contains(&("PublishFailureDirect", "SUCCEEDED")),
            "{names:?}"
        );
        assert_eq!(store.write_calls(), 0);
    }
}
