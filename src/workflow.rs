//! The state machine on the local engine: the one definition file, the in-process task
//! handlers its resources map to, and executions persisted in the embedded database.

use crate::backends::Backends;
use crate::config::SourceConfig;
use crate::engine::{
    Clock, EventKind, ExecutionOutcome, Executor, HistoryEvent, HistorySink, Jitter, StateMachine,
    TaskContext, TaskError, TaskHandler,
};
use crate::error::{EtlError, Result};
use crate::execution::{ExecutionRecord, ExecutionStatus};
use crate::extract::SourceKind;
use crate::functions::Step;
use crate::merge::QualityPolicy;
use crate::notify::{Notification, subject_line};
use crate::payload::{ErrorInfo, RunOptions};
use crate::steps;
use crate::store::{HEARTBEAT_EVERY, HistoryWriter, SqliteDb};
use serde_json::Value;
use std::sync::Mutex;
use tokio::sync::Notify;

/// `statemachine/etl.asl.json`, compiled into the binary: the same file AWS runs.
pub const DEFINITION: &str = include_str!("../statemachine/etl.asl.json");

const SNS_PUBLISH: &str = "arn:aws:states:::sns:publish";

pub fn state_machine() -> Result<StateMachine> {
    let machine = StateMachine::from_json(DEFINITION)
        .map_err(|e| EtlError::Internal(format!("statemachine/etl.asl.json: {e}")))?;
    Ok(machine)
}

/// What a Task resource of our definition means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `{"Fn::GetAtt": [KEY, "Arn"]}`: a step's Lambda function.
    Function(Step),
    SnsPublish,
}

impl Resource {
    pub fn parse(resource: &Value) -> Option<Self> {
        if resource.as_str() == Some(SNS_PUBLISH) {
            return Some(Self::SnsPublish);
        }
        let key = resource.get("Fn::GetAtt")?.get(0)?.as_str()?;
        Step::from_key(key).map(Self::Function)
    }
}

/// Runs each Task in-process with the same step functions the Lambdas run. A step's error
/// reaches the engine exactly as Step Functions sees a Lambda error: its stable name as
/// `Error`, and the Lambda-shaped JSON as `Cause`.
pub struct LocalTasks {
    pub sources: SourceConfig,
    pub quality: QualityPolicy,
    /// Store, ledger, notifier and the direct `sns:publish` fallback, built together.
    pub backends: Backends,
    pub notify_settings: steps::NotifySettings,
}

#[async_trait::async_trait]
impl TaskHandler for LocalTasks {
    async fn invoke(
        &self,
        resource: &Value,
        input: Value,
        _ctx: &TaskContext,
    ) -> std::result::Result<Value, TaskError> {
        let lambda_error = |e: EtlError| TaskError::new(e.name(), ErrorInfo::lambda_cause(&e));
        match Resource::parse(resource) {
            Some(Resource::Function(step)) => {
                self.function(step, input).await.map_err(lambda_error)
            }
            Some(Resource::SnsPublish) => self.sns_publish(input).await,
            None => Err(lambda_error(EtlError::Internal(format!(
                "the definition names a resource with no local handler: {resource}"
            )))),
        }
    }
}

impl LocalTasks {
    async fn function(&self, step: Step, input: Value) -> Result<Value> {
        match step {
            Step::ExtractNyt | Step::ExtractJhu => {
                let kind = if step == Step::ExtractNyt {
                    SourceKind::Nyt
                } else {
                    SourceKind::Jhu
                };
                to_value(
                    steps::extract(
                        kind,
                        steps::parse_payload(input)?,
                        self.sources.clone(),
                        self.backends.store.as_ref(),
                    )
                    .await?,
                )
            }
            Step::Merge => to_value(steps::merge(
                steps::parse_payload(input)?,
                &self.quality,
                chrono::Utc::now().date_naive(),
            )?),
            Step::DiffAndLoad => to_value(
                steps::diff_and_load(steps::parse_payload(input)?, self.backends.store.as_ref())
                    .await?,
            ),
            Step::Notify => to_value(
                steps::notify(
                    steps::parse_payload(input)?,
                    self.backends.notifier.as_ref(),
                    self.backends.ledger.as_ref(),
                    self.backends.store.as_ref(),
                    self.notify_settings,
                    chrono::Utc::now(),
                )
                .await?,
            ),
        }
    }

    /// The `sns:publish` service integration: `Subject`, `Message`, `MessageAttributes`. Its
    /// error is named as Step Functions names a failed SNS integration (`SNS.` and the
    /// service's exception).
    async fn sns_publish(&self, input: Value) -> std::result::Result<Value, TaskError> {
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
        self.backends
            .fallback
            .publish(&notification)
            .await
            .map_err(|e| TaskError::new("SNS.InternalErrorException", e.to_string()))?;
        Ok(serde_json::json!({"MessageId": "local"}))
    }
}

fn to_value<T: serde::Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| EtlError::Internal(e.to_string()))
}

/// Runs executions of the definition on the local engine and keeps them in the database.
pub struct LocalRunner<'a> {
    /// The definition ([`state_machine`]), parsed once by whoever runs it.
    pub machine: &'a StateMachine,
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

/// Forwards events to the observer and writes each to the database as it happens, with the
/// redrive checkpoint: the last top-level state entered, which is where Step Functions
/// redrives from (the state entered and never exited). If the process dies, the execution is
/// reconciled to `ABORTED` and resumes from there.
struct Persisting<'a> {
    observer: &'a dyn HistorySink,
    machine: &'a StateMachine,
    history: HistoryWriter,
    progress: Mutex<Checkpointing>,
}

#[derive(Default)]
struct Checkpointing {
    /// The first error writing the history, reported when the execution ends.
    error: Option<EtlError>,
}

impl HistorySink for Persisting<'_> {
    fn record(&self, event: &HistoryEvent) {
        self.observer.record(event);
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        use EventKind::*;
        let checkpoint = matches!(
            event.kind,
            TaskStateEntered
                | ParallelStateEntered
                | PassStateEntered
                | ChoiceStateEntered
                | SucceedStateEntered
                | FailStateEntered
        ) && event
            .state_name
            .as_deref()
            .is_some_and(|s| self.machine.top_level_state_of(s) == Some(s));
        if let Err(e) = self.history.append(event, checkpoint) {
            tracing::error!(error = %e, "cannot record a history event");
            progress.error.get_or_insert(e);
        }
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
        let now = self.clock.now();
        // A generated name must not collide: runs started in the same second (a scheduler
        // firing twice, the integrity tests' hundreds of runs) each draw 32 random bits. With
        // 16, two concurrent runs of a CI run drew the same name and one was refused.
        let name = name.unwrap_or_else(|| {
            format!(
                "run-{}-{:08x}",
                now.format("%Y%m%dT%H%M%S"),
                rand::random::<u32>()
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
        let sink = self.persisting(&record.id)?;
        let executor = self.executor(&sink);
        let run = executor.start(&record.id, &record.name, input);
        let outcome = self.with_heartbeat(&record.id, run).await;
        self.finish(&mut record, outcome, sink).await?;
        Ok(record)
    }

    /// Redrives a failed, timed-out or aborted execution from the state that failed (or the
    /// state it had reached), with that state's recorded input, keeping the original execution
    /// input (Step Functions' RedriveExecution). The execution is claimed with one conditional
    /// update, so two concurrent redrives cannot both run it.
    pub async fn redrive(&self, id_or_name: &str) -> Result<ExecutionRecord> {
        let mut record = self.db.claim_redrive(id_or_name)?;
        // Killed before its first state: from the start, with the execution input.
        let (state, input) = record
            .redrive_from
            .clone()
            .unwrap_or_else(|| (self.machine.start_at().to_string(), record.input.clone()));
        let previous = self.db.history(&record.id)?;
        let sink = self.persisting(&record.id)?;
        let executor = self.executor(&sink);
        let run = executor.resume(
            &record.id,
            &record.name,
            &state,
            input,
            record.input.clone(),
            &previous,
        );
        let outcome = self.with_heartbeat(&record.id, run).await;
        self.finish(&mut record, outcome, sink).await?;
        Ok(record)
    }

    /// Runs `execution` while refreshing its heartbeat.
    async fn with_heartbeat(
        &self,
        execution_id: &str,
        execution: impl std::future::Future<Output = ExecutionOutcome>,
    ) -> ExecutionOutcome {
        let beat = async {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = self.db.heartbeat(execution_id) {
                    tracing::warn!(error = %e, "cannot refresh the execution's heartbeat");
                }
            }
        };
        tokio::select! {
            outcome = execution => outcome,
            () = beat => unreachable!("the heartbeat loop never ends"),
        }
    }

    fn persisting(&self, execution_id: &str) -> Result<Persisting<'_>> {
        Ok(Persisting {
            observer: self.observer,
            machine: self.machine,
            history: self.db.history_writer(execution_id)?,
            progress: Mutex::default(),
        })
    }

    fn executor<'m>(&'m self, sink: &'m Persisting<'_>) -> Executor<'m> {
        Executor::new(self.machine, self.tasks, self.clock, self.jitter, sink)
            .with_state_machine(LOCAL_STATE_MACHINE, "covid-etl")
            .with_stop(self.stop)
    }

    /// Persists the execution's end, then does what the status-change rule does on AWS: a run
    /// that failed or timed out without reaching the definition's own failure branch is
    /// reported (ledger and notification) by [`steps::status_change`]. A local stop sends
    /// nothing: the operator who pressed Ctrl-C knows.
    async fn finish(
        &self,
        record: &mut ExecutionRecord,
        outcome: ExecutionOutcome,
        sink: Persisting<'_>,
    ) -> Result<()> {
        record.finished_at = Some(stamp(self.clock.now()));
        record.status = outcome.status.into();
        record.output = outcome.output;
        record.error = outcome.error;
        record.cause = outcome.cause.as_deref().map(crate::payload::cause_message);
        record.failed_state = outcome.failed_state;
        record.redrive_from = outcome.redrive_from;
        self.db.finish_execution(record)?;
        if let Some(e) = sink
            .progress
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .error
        {
            return Err(e);
        }
        if matches!(
            record.status,
            ExecutionStatus::Failed | ExecutionStatus::TimedOut
        ) {
            self.report_failure(record).await?;
        }
        Ok(())
    }

    async fn report_failure(&self, record: &ExecutionRecord) -> Result<()> {
        let detail = crate::payload::StatusChangeDetail {
            execution_arn: record.id.clone(),
            name: record.name.clone(),
            status: record.status,
            start_date: chrono::DateTime::parse_from_rfc3339(&record.started_at)
                .ok()
                .map(|t| t.timestamp_millis()),
            error: record.error.clone(),
            cause: record.cause.clone(),
        };
        let backends = &self.tasks.backends;
        let last = crate::report::last_failure(&self.db.history(&record.id)?);
        let reported = steps::status_change(
            detail,
            last.clone(),
            backends.notifier.as_ref(),
            backends.ledger.as_ref(),
            backends.store.as_ref(),
            self.tasks.notify_settings,
            self.clock.now(),
        )
        .await;
        let Err(error) = reported else {
            return Ok(());
        };
        // As the definition's PublishFailureDirect: when the notify function fails, the
        // failure still reaches the topic, in a plainer message.
        tracing::warn!(%error, "reporting the failed execution failed; publishing directly");
        let state = last.state.as_deref().unwrap_or("?");
        let attributes = [("status", record.status.name()), ("failedState", state)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let notification = Notification {
            subject: subject_line(&format!("covid-etl {} in {state}", record.status)),
            message: format!(
                "covid-etl execution {} {} in state {state}: {}: {}\nReporting it failed: {error}",
                record.id,
                record.status,
                last.error.as_deref().unwrap_or_default(),
                last.cause.as_deref().unwrap_or_default(),
            ),
            attributes,
        };
        backends.fallback.publish(&notification).await
    }
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{FixedJitter, MemoryHistory, SystemClock};
    use crate::notify::{MemoryNotifier, MockNotifier};
    use crate::store::MemoryStore;
    use std::sync::Arc;

    fn fixture(name: &str) -> Option<String> {
        Some(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")))
    }

    /// The production definition with a notify function that always fails. A step that fails
    /// ends the execution in that step; reporting it through the notify function fails, and
    /// the report falls back to publishing directly, as PublishFailureDirect does on AWS.
    #[tokio::test]
    async fn a_failing_notify_function_falls_back_to_a_direct_publish() {
        let mut broken = MockNotifier::new();
        broken
            .expect_publish()
            .returning(|_| Err(EtlError::NotifyError("topic unavailable".into())));
        let fallback = Arc::new(MemoryNotifier::default());
        let store = Arc::new(MemoryStore::default());
        let tasks = LocalTasks {
            sources: SourceConfig::default(),
            quality: QualityPolicy::default(),
            backends: Backends {
                store: store.clone(),
                ledger: store.clone(),
                notifier: Arc::new(broken),
                fallback: fallback.clone(),
                history: None,
            },
            notify_settings: steps::NotifySettings {
                notify_no_new_data: true,
            },
        };
        let db = SqliteDb::in_memory().unwrap();
        let runner = LocalRunner {
            machine: &state_machine().unwrap(),
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
        assert_eq!(run.status, ExecutionStatus::Failed);
        assert_eq!(run.failed_state.as_deref(), Some("ExtractNyt"));
        assert_eq!(run.error.as_deref(), Some("DataQualityError"));
        let sent = fallback.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "covid-etl FAILED in ExtractNyt");
        assert_eq!(sent[0].attributes["failedState"], "ExtractNyt");
        assert!(
            sent[0].message.contains("2020-02-30"),
            "{}",
            sent[0].message
        );
        // Redrivable from the step that failed, not from a Fail state.
        assert_eq!(
            run.redrive_from.as_ref().map(|(state, _)| state.as_str()),
            Some("Extract")
        );
        assert_eq!(store.write_calls(), 0);
    }
}
