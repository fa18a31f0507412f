//! Running a validated state machine: input/output processing, retries, catches, Parallel
//! branches, timeouts and history events.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::{BoxFuture, try_join_all};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::definition::{Graph, Kind, Selector, State, StateMachine, Text};
use super::history::{EventKind, Flow, HistoryEvent, HistorySink, Recorder};
use super::path::select;
use super::retry::{RetryBudget, matches};
use super::{
    Clock, DATA_LIMIT_EXCEEDED, ExecutionOutcome, ExecutionStatus, Jitter, NO_CHOICE_MATCHED,
    PAYLOAD_LIMIT_BYTES, STATES_RUNTIME, STATES_TIMEOUT, TaskContext, TaskError, TaskHandler,
};

/// Runs executions of one state machine with injected task handler, clock, jitter and sink.
pub struct Executor<'a> {
    machine: &'a StateMachine,
    handler: &'a dyn TaskHandler,
    clock: &'a dyn Clock,
    jitter: &'a dyn Jitter,
    sink: &'a dyn HistorySink,
    state_machine_id: String,
    state_machine_name: String,
    stop: Option<&'a Notify>,
}

/// An error on its way up, with the innermost state that raised it (`None` when the
/// execution was refused before any state ran).
#[derive(Debug)]
struct Failure {
    error: TaskError,
    state: Option<String>,
}

impl Failure {
    fn at(state: &State, error: &str, cause: impl Into<String>) -> Self {
        Self {
            error: TaskError::new(error, cause),
            state: Some(state.name.clone()),
        }
    }
}

/// What a state hands to the next one.
struct Step {
    output: Value,
    /// `output` as JSON text, when the state already serialized it (to check its size).
    text: Option<String>,
    next: Option<String>,
}

impl Step {
    fn to(next: Option<String>, output: Value) -> Self {
        Self {
            output,
            text: None,
            next,
        }
    }
}

/// A top-level state and the raw input it was entered with (as JSON text, parsed only if
/// the execution fails): where a redrive restarts.
type Entry = Option<(String, String)>;

/// Per-execution bookkeeping shared by all branches.
struct Run<'r> {
    ex: &'r Executor<'r>,
    recorder: Recorder<'r>,
    execution_id: &'r str,
    /// `$$` without its `State` part, which differs per state.
    context_base: Value,
    /// The top-level state being run and the input it was entered with.
    current: Mutex<Entry>,
    /// The innermost state of the first caught error: what an operator is shown as the
    /// failed state of a run that went through a Catch.
    first_catch: Mutex<Option<Option<String>>>,
    /// On a redrive into a Parallel state: the outputs of its branches that succeeded in the
    /// previous attempt (`None` for a branch to run again). Step Functions redrives "only the
    /// iterations and branches that failed or aborted".
    redriven_branches: Option<(String, Vec<Option<Value>>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A payload as history events carry it: JSON text, as in AWS's `…EventDetails`. Each
/// payload is serialized once and the text serves the size check and every event that
/// shows it (a state's output is the next state's input).
fn to_text(value: &Value) -> String {
    serde_json::to_string(value).expect("serializing a JSON value cannot fail")
}

/// History event details with one payload field.
fn with_payload(key: &str, text: String) -> Value {
    let mut details = Map::new();
    details.insert(key.to_owned(), Value::String(text));
    Value::Object(details)
}

/// Enforces AWS's 256 KiB payload quota, raising `States.DataLimitExceeded`.
fn check_size(text: &str, state: Option<&str>, what: &str) -> Result<(), Failure> {
    if text.len() <= PAYLOAD_LIMIT_BYTES {
        return Ok(());
    }
    let cause = format!(
        "the {what} is {} bytes, over the {PAYLOAD_LIMIT_BYTES}-byte limit",
        text.len()
    );
    Err(Failure {
        error: TaskError::new(DATA_LIMIT_EXCEEDED, cause),
        state: state.map(str::to_owned),
    })
}

/// InputPath / OutputPath: `null` gives `{}`, a path that selects nothing is an error.
fn apply_selector(selector: &Selector, value: &Value, context: &Value) -> Result<Value, String> {
    match selector {
        Selector::Empty => Ok(Value::Object(Map::new())),
        Selector::Path(path) => select(path, value, context).cloned(),
    }
}

impl<'a> Executor<'a> {
    pub fn new(
        machine: &'a StateMachine,
        handler: &'a dyn TaskHandler,
        clock: &'a dyn Clock,
        jitter: &'a dyn Jitter,
        sink: &'a dyn HistorySink,
    ) -> Self {
        Self {
            machine,
            handler,
            clock,
            jitter,
            sink,
            state_machine_id: "StateMachine".into(),
            state_machine_name: "StateMachine".into(),
            stop: None,
        }
    }

    /// Stops executions when `stop` is notified (Step Functions' StopExecution): the state in
    /// progress is abandoned and the execution ends `ABORTED`, redrivable from the top-level
    /// state it was in. A notification given before the execution starts counts too.
    pub fn with_stop(mut self, stop: &'a Notify) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Sets `$$.StateMachine.Id` (an ARN on AWS) and `$$.StateMachine.Name`.
    pub fn with_state_machine(mut self, id: impl Into<String>, name: impl Into<String>) -> Self {
        self.state_machine_id = id.into();
        self.state_machine_name = name.into();
        self
    }

    /// Runs an execution from `StartAt`. `execution_id` is `$$.Execution.Id` (the execution ARN on AWS).
    pub async fn start(&self, execution_id: &str, name: &str, input: Value) -> ExecutionOutcome {
        let start = self.machine.graph.start_at.as_str();
        self.execute(
            execution_id,
            name,
            start,
            input.clone(),
            input,
            Begin::Start,
        )
        .await
    }

    /// Resumes (redrives) an execution: runs from top-level state `state` with `input` as that
    /// state's raw input, while `$$.Execution.Input` stays `original_input`. Event ids restart
    /// at 1 and the machine timeout restarts too; the first event is `ExecutionRedriven`.
    /// `previous` is the history so far: when `state` is a Parallel, the branches that
    /// succeeded in the last attempt keep their outputs and are not run again.
    pub async fn resume(
        &self,
        execution_id: &str,
        name: &str,
        state: &str,
        input: Value,
        original_input: Value,
        previous: &[HistoryEvent],
    ) -> ExecutionOutcome {
        let redriven_branches = self
            .machine
            .graph
            .states
            .get(state)
            .and_then(|s| match &s.kind {
                Kind::Parallel { branches } => Some(succeeded_branches(branches, state, previous)),
                _ => None,
            })
            .map(|outputs| (state.to_owned(), outputs));
        self.execute(
            execution_id,
            name,
            state,
            input,
            original_input,
            Begin::Redrive(redriven_branches),
        )
        .await
    }

    async fn execute(
        &self,
        execution_id: &str,
        name: &str,
        start: &str,
        input: Value,
        original_input: Value,
        begin: Begin,
    ) -> ExecutionOutcome {
        let (first, redriven_branches) = match begin {
            Begin::Start => (EventKind::ExecutionStarted, None),
            Begin::Redrive(branches) => (EventKind::ExecutionRedriven, branches),
        };
        let context_base = json!({
            "Execution": {"Id": execution_id, "Name": name, "Input": original_input, "StartTime": timestamp(self.clock.now())},
            "StateMachine": {"Id": self.state_machine_id, "Name": self.state_machine_name},
        });
        let run = Run {
            ex: self,
            recorder: Recorder::new(self.sink, self.clock),
            execution_id,
            context_base,
            current: Mutex::new(None),
            first_catch: Mutex::new(None),
            redriven_branches,
        };
        let flow = Flow::after(0);
        let input_text = to_text(&input);
        let mut details = with_payload("input", input_text.clone());
        if first == EventKind::ExecutionRedriven {
            details["redriveFrom"] = json!(start);
        }
        run.recorder.record(&flow, first, None, details);

        let body = async {
            if self.machine.top_level_state_of(start) != Some(start) {
                let cause = format!("cannot start from {start:?}: it is not a top-level state");
                return Err(Failure {
                    error: TaskError::new(STATES_RUNTIME, cause),
                    state: None,
                });
            }
            check_size(&input_text, None, "execution input")?;
            run.run_graph(&self.machine.graph, start, input, input_text, &flow, true)
                .await
        };
        let timeout = or_never(self.machine.timeout.map(|limit| self.clock.sleep(limit)));
        let stop = or_never(self.stop.map(Notify::notified));
        let end = tokio::select! {
            biased;
            result = body => End::Finished(result),
            () = timeout => End::TimedOut,
            () = stop => End::Stopped,
        };
        run.finish(end, &flow)
    }
}

/// How an execution begins: from `StartAt`, or redriven (with the kept outputs of a
/// Parallel's succeeded branches, when it resumes at a Parallel).
enum Begin {
    Start,
    Redrive(Option<(String, Vec<Option<Value>>)>),
}

/// `future`, or one that never completes when there is none.
async fn or_never(future: Option<impl Future<Output = ()>>) {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// How an execution ended.
enum End {
    Finished(Result<Value, Failure>),
    /// The machine's `TimeoutSeconds` passed.
    TimedOut,
    /// [`Executor::with_stop`]'s notification came.
    Stopped,
}

impl Run<'_> {
    /// Records the closing event and builds the outcome.
    fn finish(&self, end: End, flow: &Flow) -> ExecutionOutcome {
        let first_catch = lock(&self.first_catch).take();
        let current = lock(&self.current).take();
        let mut outcome = ExecutionOutcome {
            status: ExecutionStatus::Succeeded,
            output: None,
            error: None,
            cause: None,
            failed_state: None,
            redrive_from: None,
        };
        // The state in progress when the execution was cut short, for a timeout or a stop.
        let cut_short = |error: &str, cause: String| Failure {
            error: TaskError::new(error, cause),
            state: current.as_ref().map(|(name, _)| name.clone()),
        };
        let failure = match end {
            End::Finished(Ok(output)) => {
                self.recorder.record(
                    flow,
                    EventKind::ExecutionSucceeded,
                    None,
                    with_payload("output", to_text(&output)),
                );
                outcome.output = Some(output);
                return outcome;
            }
            End::Finished(Err(failure)) => {
                let details = json!({"error": failure.error.error, "cause": failure.error.cause});
                self.recorder
                    .record(flow, EventKind::ExecutionFailed, None, details);
                outcome.status = ExecutionStatus::Failed;
                failure
            }
            End::TimedOut => {
                let limit = self.ex.machine.timeout.map_or(0, |d| d.as_secs());
                let cause = format!("the execution did not finish within {limit} seconds");
                let failure = cut_short(STATES_TIMEOUT, cause);
                let details = json!({"error": failure.error.error, "cause": failure.error.cause});
                self.recorder
                    .record(flow, EventKind::ExecutionTimedOut, None, details);
                outcome.status = ExecutionStatus::TimedOut;
                failure
            }
            // As StopExecution without an error code: the event and the outcome carry only
            // the cause.
            End::Stopped => {
                let failure = cut_short("", "the execution was stopped".into());
                let details = json!({"cause": failure.error.cause});
                self.recorder
                    .record(flow, EventKind::ExecutionAborted, None, details);
                outcome.status = ExecutionStatus::Aborted;
                failure
            }
        };
        let non_empty = |s: String| Some(s).filter(|s| !s.is_empty());
        outcome.error = non_empty(failure.error.error);
        outcome.cause = non_empty(failure.error.cause);
        outcome.failed_state = first_catch.unwrap_or(failure.state);
        // As Step Functions: a redrive reruns the state the execution ended in (the one
        // entered and never exited), even when that is the Fail state a Catch led to.
        outcome.redrive_from = current.map(|(state, input)| {
            let input = serde_json::from_str(&input).expect("the engine wrote this JSON");
            (state, input)
        });
        outcome
    }

    /// The context object `$$` as seen from inside `state`.
    fn context(&self, state: &str, entered: DateTime<Utc>, retry_count: u32) -> Value {
        let mut context = self.context_base.clone();
        context["State"] =
            json!({"Name": state, "EnteredTime": timestamp(entered), "RetryCount": retry_count});
        context
    }

    fn record(&self, flow: &Flow, kind: EventKind, state: &State, details: Value) -> u64 {
        self.recorder.record(flow, kind, Some(&state.name), details)
    }

    /// Runs a graph from `start` until a terminal state. `top` marks the machine's own graph,
    /// whose states are the ones a redrive can restart from.
    fn run_graph<'f>(
        &'f self,
        graph: &'f Graph,
        start: &'f str,
        input: Value,
        input_text: String,
        flow: &'f Flow,
        top: bool,
    ) -> BoxFuture<'f, Result<Value, Failure>> {
        Box::pin(async move {
            let mut state = &graph.states[start];
            let (mut input, mut input_text) = (input, input_text);
            loop {
                if top {
                    *lock(&self.current) = Some((state.name.clone(), input_text.clone()));
                }
                let type_name = state.kind.type_name();
                if let Some(kind) = EventKind::state(type_name, true) {
                    self.record(flow, kind, state, with_payload("input", input_text));
                }
                let step = self.run_state(state, input, flow).await?;
                let output_text = step.text.unwrap_or_else(|| to_text(&step.output));
                check_size(&output_text, Some(&state.name), "state output")?;
                if let Some(kind) = EventKind::state(type_name, false) {
                    self.record(
                        flow,
                        kind,
                        state,
                        with_payload("output", output_text.clone()),
                    );
                }
                match step.next {
                    Some(next) => {
                        state = &graph.states[&next];
                        input = step.output;
                        input_text = output_text;
                    }
                    None => return Ok(step.output),
                }
            }
        })
    }

    async fn run_state(&self, state: &State, raw: Value, flow: &Flow) -> Result<Step, Failure> {
        let entered = self.ex.clock.now();
        let context = self.context(&state.name, entered, 0);
        let runtime = |cause: String| Failure::at(state, STATES_RUNTIME, cause);
        let effective = || apply_selector(&state.input_path, &raw, &context).map_err(runtime);
        let next = state.next.clone();
        match &state.kind {
            Kind::Task { .. } | Kind::Parallel { .. } => {
                self.run_with_retries(state, raw, entered, &context, flow)
                    .await
            }
            Kind::Pass { result } => {
                let result = match (result, &state.parameters) {
                    (Some(result), _) => result.clone(),
                    (None, Some(template)) => {
                        template.render(&effective()?, &context).map_err(runtime)?
                    }
                    (None, None) => effective()?,
                };
                let (output, text) = shape_output(state, &raw, result, &context)?;
                Ok(Step {
                    output,
                    text: Some(text),
                    next,
                })
            }
            Kind::Choice { rules, default } => {
                let effective = effective()?;
                let mut chosen = default.clone();
                for (condition, target) in rules {
                    if condition.eval(&effective, &context).map_err(runtime)? {
                        chosen = Some(target.clone());
                        break;
                    }
                }
                let Some(next) = chosen else {
                    return Err(Failure::at(
                        state,
                        NO_CHOICE_MATCHED,
                        "no Choices rule matched and there is no Default",
                    ));
                };
                let output =
                    apply_selector(&state.output_path, &effective, &context).map_err(runtime)?;
                Ok(Step::to(Some(next), output))
            }
            Kind::Succeed => {
                let output =
                    apply_selector(&state.output_path, &effective()?, &context).map_err(runtime)?;
                Ok(Step::to(None, output))
            }
            Kind::Fail { error, cause } => {
                let text = |source: &Option<Text>| match source {
                    None => Ok(String::new()),
                    Some(Text::Literal(s)) => Ok(s.clone()),
                    Some(Text::Path(path)) => {
                        match select(path, &raw, &context).map_err(runtime)? {
                            Value::String(s) => Ok(s.clone()),
                            other => Err(runtime(format!(
                                "{} must select a string, found {other}",
                                path.text()
                            ))),
                        }
                    }
                };
                Err(Failure::at(state, &text(error)?, text(cause)?))
            }
        }
    }

    /// Task and Parallel: attempts, then Retry (through the clock), then Catch.
    async fn run_with_retries(
        &self,
        state: &State,
        raw: Value,
        entered: DateTime<Utc>,
        context: &Value,
        flow: &Flow,
    ) -> Result<Step, Failure> {
        let effective = apply_selector(&state.input_path, &raw, context)
            .map_err(|c| Failure::at(state, STATES_RUNTIME, c))?;
        let mut budget = RetryBudget::new(&state.retry);
        let failure = loop {
            let retry_count = budget.retry_count();
            let context = self.context(&state.name, entered, retry_count);
            match self
                .attempt(state, &raw, &effective, context, retry_count, flow)
                .await
            {
                Ok((output, text)) => {
                    return Ok(Step {
                        output,
                        text: Some(text),
                        next: state.next.clone(),
                    });
                }
                Err(failure) => match budget.next_delay(&failure.error.error, self.ex.jitter) {
                    Some(delay) => self.ex.clock.sleep(delay).await,
                    None => break failure,
                },
            }
        };
        let Some(catcher) = state
            .catch
            .iter()
            .find(|c| matches(&c.error_equals, &failure.error.error))
        else {
            return Err(failure);
        };
        let error_output = json!({"Error": failure.error.error, "Cause": failure.error.cause});
        let output = match &catcher.result_path {
            Some(path) => path
                .write(raw, error_output)
                .map_err(|c| Failure::at(state, STATES_RUNTIME, c))?,
            None => raw,
        };
        lock(&self.first_catch).get_or_insert(failure.state);
        Ok(Step::to(Some(catcher.next.clone()), output))
    }

    /// One attempt: Parameters (re-evaluated so `$$.State.RetryCount` is current), the work,
    /// then ResultSelector → ResultPath → OutputPath.
    async fn attempt(
        &self,
        state: &State,
        raw: &Value,
        effective: &Value,
        context: Value,
        retry_count: u32,
        flow: &Flow,
    ) -> Result<(Value, String), Failure> {
        let input = match &state.parameters {
            Some(template) => template
                .render(effective, &context)
                .map_err(|c| Failure::at(state, STATES_RUNTIME, c))?,
            None => effective.clone(),
        };
        let input_text = to_text(&input);
        check_size(
            &input_text,
            Some(&state.name),
            "task input after Parameters",
        )?;
        let result = match &state.kind {
            Kind::Task { resource, timeout } => {
                let ctx = TaskContext {
                    state_name: state.name.clone(),
                    retry_count,
                    execution_id: self.execution_id.to_owned(),
                    context: context.clone(),
                };
                self.invoke(state, resource, *timeout, (input, input_text), &ctx, flow)
                    .await?
            }
            Kind::Parallel { branches } => {
                self.parallel(state, branches, input, input_text, flow)
                    .await?
            }
            _ => unreachable!("only Task and Parallel states retry"),
        };
        shape_output(state, raw, result, &context)
    }

    async fn invoke(
        &self,
        state: &State,
        resource: &Value,
        timeout: Option<Duration>,
        (input, input_text): (Value, String),
        ctx: &TaskContext,
        flow: &Flow,
    ) -> Result<Value, Failure> {
        let mut scheduled = json!({"resource": resource, "retryAttempt": ctx.retry_count});
        scheduled["parameters"] = Value::String(input_text);
        if let Some(limit) = timeout {
            scheduled["timeoutInSeconds"] = json!(limit.as_secs());
        }
        self.record(flow, EventKind::TaskScheduled, state, scheduled);
        self.record(
            flow,
            EventKind::TaskStarted,
            state,
            json!({"resource": resource}),
        );
        let call = self.ex.handler.invoke(resource, input, ctx);
        let result = match timeout {
            Some(limit) => tokio::select! {
                biased;
                result = call => result,
                () = self.ex.clock.sleep(limit) => {
                    let error = TaskError::new(STATES_TIMEOUT, format!("the task did not finish within {} seconds", limit.as_secs()));
                    let details = json!({"resource": resource, "error": error.error, "cause": error.cause});
                    self.record(flow, EventKind::TaskTimedOut, state, details);
                    return Err(Failure { error, state: Some(state.name.clone()) });
                }
            },
            None => call.await,
        };
        match result {
            Ok(output) => {
                let text = to_text(&output);
                let size = check_size(&text, Some(&state.name), "task result");
                let mut details = json!({"resource": resource});
                details["output"] = Value::String(text);
                self.record(flow, EventKind::TaskSucceeded, state, details);
                size?;
                Ok(output)
            }
            Err(error) => {
                let details =
                    json!({"resource": resource, "error": error.error, "cause": error.cause});
                self.record(flow, EventKind::TaskFailed, state, details);
                Err(Failure {
                    error,
                    state: Some(state.name.clone()),
                })
            }
        }
    }

    /// Runs all branches concurrently on the same input. The first failure drops (cancels)
    /// the other branches and becomes the Parallel's own failure, keeping the branch's
    /// `{Error, Cause}` and innermost state.
    async fn parallel(
        &self,
        state: &State,
        branches: &[Graph],
        input: Value,
        input_text: String,
        flow: &Flow,
    ) -> Result<Value, Failure> {
        let started = self.record(flow, EventKind::ParallelStateStarted, state, json!({}));
        let kept = match &self.redriven_branches {
            Some((name, outputs)) if *name == state.name => outputs.as_slice(),
            _ => &[],
        };
        let runs = branches.iter().enumerate().map(|(i, graph)| {
            let (input, text) = (input.clone(), input_text.clone());
            let kept = kept.get(i).cloned().flatten();
            async move {
                if let Some(output) = kept {
                    return Ok(output);
                }
                let branch_flow = Flow::after(started);
                self.run_graph(graph, &graph.start_at, input, text, &branch_flow, false)
                    .await
            }
        });
        match try_join_all(runs).await {
            Ok(outputs) => {
                self.record(flow, EventKind::ParallelStateSucceeded, state, json!({}));
                Ok(Value::Array(outputs))
            }
            Err(failure) => {
                let details = json!({"error": failure.error.error, "cause": failure.error.cause});
                self.record(flow, EventKind::ParallelStateFailed, state, details);
                Err(failure)
            }
        }
    }
}

/// The outputs of `parallel`'s branches that ended successfully in the last attempt recorded
/// in `previous` (after its last `ParallelStateStarted`), in branch order; `None` for the
/// others. A branch's output is the output of its terminal state's `…StateExited` event.
fn succeeded_branches(
    branches: &[Graph],
    parallel: &str,
    previous: &[HistoryEvent],
) -> Vec<Option<Value>> {
    let last_attempt = previous
        .iter()
        .rposition(|e| {
            e.kind == EventKind::ParallelStateStarted && e.state_name.as_deref() == Some(parallel)
        })
        .map_or(&[][..], |i| &previous[i..]);
    branches
        .iter()
        .map(|graph| {
            last_attempt.iter().find_map(|e| {
                let state = graph.states.get(e.state_name.as_deref()?)?;
                let exited = EventKind::state(state.kind.type_name(), false) == Some(e.kind);
                let terminal = state.next.is_none() && !matches!(state.kind, Kind::Choice { .. });
                let output = e.details.get("output")?;
                (exited && terminal).then(|| match output {
                    Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                    other => other.clone(),
                })
            })
        })
        .collect()
}

/// ResultSelector → ResultPath (into the raw input) → OutputPath, then the payload limit.
/// Returns the output and its JSON text.
fn shape_output(
    state: &State,
    raw: &Value,
    result: Value,
    context: &Value,
) -> Result<(Value, String), Failure> {
    let runtime = |cause: String| Failure::at(state, STATES_RUNTIME, cause);
    let result = match &state.result_selector {
        Some(template) => template.render(&result, context).map_err(runtime)?,
        None => result,
    };
    let combined = match &state.result_path {
        Some(path) => path.write(raw.clone(), result).map_err(runtime)?,
        None => raw.clone(),
    };
    let output = apply_selector(&state.output_path, &combined, context).map_err(runtime)?;
    let text = to_text(&output);
    check_size(&text, Some(&state.name), "state output")?;
    Ok((output, text))
}
