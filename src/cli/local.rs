//! Commands on the local engine and the embedded database.

use super::{DbArg, Failure, out, outln};
use chrono::NaiveDate;
use covid_etl::api::ExecutionSummary;
use covid_etl::backends::{BackendConfig, Backends, NotifyConfig, StoreConfig};
use covid_etl::config::{Config, Role};
use covid_etl::diff::LoadCounts;
use covid_etl::engine::{
    EventKind, HistoryEvent, HistorySink, RandomJitter, ScaledClock, StateMachine,
};
use covid_etl::execution::{ExecutionRecord, ExecutionStatus};
use covid_etl::payload::{LoadReport, NotifyRequest, NotifyResponse, RunOptions, RunOutcome};
use covid_etl::report;
use covid_etl::store::{SqliteDb, Store};
use covid_etl::workflow::{LocalRunner, LocalTasks};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// NYT `us.csv`: a path or an http(s) URL [default: the live NYT file]
    #[arg(long, value_name = "PATH|URL")]
    nyt: Option<String>,
    /// JHU combined time series: a path or an http(s) URL [default: the live datasets/covid-19 file]
    #[arg(long, value_name = "PATH|URL")]
    jhu: Option<String>,
    #[command(flatten)]
    db: DbArg,
    /// Compute and report the changes; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rewrite every row, changed or not.
    #[arg(long)]
    full_reload: bool,
    /// Execution name: 1-80 characters, no white space, brackets, wildcards, control
    /// characters or any of " # % \ ^ | ~ ` $ & , ; : / (Step Functions' rule). A name already
    /// used is refused (ExecutionAlreadyExists). Default: run-<UTC time>-<4 hex digits>.
    #[arg(long, value_parser = super::ExecutionName)]
    name: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Where the series goes: the embedded database, or a DynamoDB table (with --table).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// DynamoDB table, with --store dynamodb.
    #[arg(long, required_if_eq("store", "dynamodb"))]
    table: Option<String>,
    /// SNS topic for notifications (default: the local outbox).
    #[arg(long, value_name = "ARN")]
    topic_arn: Option<String>,
    #[command(flatten)]
    aws: super::remote::AwsArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    Sqlite,
    Dynamodb,
}

fn open(db: &DbArg) -> Result<SqliteDb, Failure> {
    SqliteDb::open(&db.db)
        .map_err(|e| Failure::Error(format!("cannot open {}: {e}", db.db.display())))
}

/// For a command that only reads the database (or, like `redrive`, needs what an earlier
/// run left): a missing file is said so, and not created empty.
fn require_database(db: &DbArg) -> Result<(), Failure> {
    if db.db.exists() {
        Ok(())
    } else {
        Err(Failure::Error(format!(
            "no database at {}: nothing has been run there (`covid-etl run` creates it; --db or COVID_ETL_DB chooses another)",
            db.db.display()
        )))
    }
}

fn open_existing(db: &DbArg) -> Result<SqliteDb, Failure> {
    require_database(db)?;
    open(db)
}

/// Prints a line per step as the engine records it, as it happens: each state's end with
/// its duration, each failed attempt, and each retry with the wait before it.
struct Progress {
    enabled: bool,
    /// The definition the run executes: how many attempts its Retry gives each error.
    machine: StateMachine,
    states: std::sync::Mutex<StepClock>,
}

/// What the progress lines need to remember between events.
#[derive(Default)]
struct StepClock {
    /// When each open state was entered.
    entered: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// The states whose last attempt failed (a Catch may route on): when, and the error.
    failed_at: HashMap<String, (chrono::DateTime<chrono::Utc>, String)>,
    /// Each Task's current attempt (1-based).
    attempt: HashMap<String, u64>,
}

impl Progress {
    fn new(enabled: bool, machine: StateMachine) -> Self {
        Self {
            enabled,
            machine,
            states: Default::default(),
        }
    }
}

/// A duration for people: `840 ms`, `4.8 s`.
fn human_duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds();
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

impl HistorySink for Progress {
    fn record(&self, e: &HistoryEvent) {
        if !self.enabled {
            return;
        }
        let Some(name) = e.state_name.as_deref() else {
            return;
        };
        let detail = |k: &str| e.details.get(k).and_then(Value::as_str).unwrap_or("");
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let since = |at: &chrono::DateTime<chrono::Utc>| human_duration(e.timestamp - *at);
        let line = match e.kind {
            EventKind::TaskStateEntered | EventKind::ParallelStateEntered => {
                states.entered.insert(name.to_string(), e.timestamp);
                return;
            }
            EventKind::TaskStateExited | EventKind::ParallelStateExited => {
                let caught = states.failed_at.remove(name).is_some();
                let took = states.entered.remove(name).map(|t| since(&t));
                format!(
                    "  {}  {name}  {}",
                    if caught { "caught" } else { "ok    " },
                    took.unwrap_or_default()
                )
            }
            EventKind::TaskScheduled => {
                let attempt = e.details["retryAttempt"].as_u64().unwrap_or(0) + 1;
                states.attempt.insert(name.to_string(), attempt);
                match states.failed_at.remove(name) {
                    Some((failed, error)) if attempt > 1 => format!(
                        "  retry  {name}: attempt {attempt} of {} after waiting {}",
                        self.machine.attempts(name, &error),
                        since(&failed)
                    ),
                    _ => return,
                }
            }
            EventKind::TaskSucceeded => {
                states.failed_at.remove(name);
                return;
            }
            EventKind::ParallelStateFailed => {
                let error = detail("error").to_string();
                states
                    .failed_at
                    .insert(name.to_string(), (e.timestamp, error));
                return;
            }
            EventKind::TaskFailed | EventKind::TaskTimedOut => {
                let error = detail("error").to_string();
                let cause = covid_etl::payload::cause_message(detail("cause"));
                let attempt = states.attempt.get(name).copied().unwrap_or(1);
                let total = self.machine.attempts(name, &error);
                // Whether it is retried is the engine's to decide; the count says where the
                // run stands: "attempt 1 of 4" is followed by a retry line, "4 of 4" is not.
                let line =
                    format!("  fail   {name}: {error}: {cause} (attempt {attempt} of {total})");
                states
                    .failed_at
                    .insert(name.to_string(), (e.timestamp, error));
                line
            }
            EventKind::FailStateEntered => format!("  end    {name}"),
            _ => return,
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<(), Failure> {
    let options = RunOptions {
        dry_run: args.dry_run,
        full_reload: args.full_reload,
        nyt: args.nyt,
        jhu: args.jhu,
    };
    // Backfilling or debugging against AWS from a laptop: the local engine with the real
    // table (series, ledger and load marker) and topic. Executions stay in the local database.
    let config = BackendConfig {
        store: match (args.store, args.table) {
            (StoreKind::Dynamodb, Some(table)) => StoreConfig::DynamoDb { table },
            _ => StoreConfig::Sqlite(args.db.db.clone()),
        },
        notify: match args.topic_arn {
            Some(topic_arn) => NotifyConfig::Sns { topic_arn },
            None => NotifyConfig::Outbox(args.db.db.clone()),
        },
        history: Some(args.db.db.clone()),
        endpoint_url: args.aws.endpoint_url.clone(),
    };
    let session = Session::open(&config, args.json).await?;
    let stop = stop_on_signal()?;
    let record = session.runner(&stop).start(args.name, &options).await?;
    finish(&session.db, &record, args.json)
}

pub(crate) async fn redrive(db: &DbArg, id: &str, as_json: bool) -> Result<(), Failure> {
    require_database(db)?;
    let session = Session::open(&BackendConfig::local(&db.db), as_json).await?;
    let stop = stop_on_signal()?;
    let record = session.runner(&stop).redrive(id).await?;
    finish(&session.db, &record, as_json)
}

/// Ctrl-C (SIGINT) or SIGTERM stops the execution in progress: it is recorded as `ABORTED`
/// with its history so far and can be redriven, instead of the process dying mid-run and
/// leaving it `RUNNING` in the database for ever.
fn stop_on_signal() -> std::io::Result<Arc<Notify>> {
    #[cfg(unix)]
    let signalled = {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered now, before the run starts, not when the task below is first polled.
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let signalled = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let stop = Arc::new(Notify::new());
    let notify = stop.clone();
    tokio::spawn(async move {
        signalled.await;
        notify.notify_one();
    });
    Ok(stop)
}

/// What `run` and `redrive` share: the database, the in-process tasks, the progress lines.
struct Session {
    machine: StateMachine,
    clock: ScaledClock,
    db: SqliteDb,
    tasks: LocalTasks,
    progress: Progress,
}

impl Session {
    async fn open(config: &BackendConfig, as_json: bool) -> Result<Self, Failure> {
        // Before the backends are built: a bad setting creates nothing.
        let settings = Config::from_env(Role::Cli).map_err(|e| Failure::Usage(e.to_string()))?;
        let backends = Backends::build(config).await?;
        let db = backends
            .history
            .clone()
            .ok_or_else(|| Failure::Error("no local database for the executions".into()))?;
        let tasks = LocalTasks {
            sources: settings.sources,
            quality: settings.quality,
            backends,
            notify_settings: settings.notify,
        };
        let machine = covid_etl::workflow::state_machine()?;
        // COVID_ETL_TIME_SCALE divides every engine wait (retry delays, Task and execution
        // timeouts): the end-to-end tests run the real definition without waiting minutes.
        Ok(Self {
            progress: Progress::new(!as_json, machine.clone()),
            machine,
            clock: ScaledClock {
                speedup: settings.time_scale,
            },
            db,
            tasks,
        })
    }

    fn runner<'a>(&'a self, stop: &'a Notify) -> LocalRunner<'a> {
        LocalRunner {
            machine: &self.machine,
            db: &self.db,
            tasks: &self.tasks,
            clock: &self.clock,
            jitter: &RandomJitter,
            observer: &self.progress,
            stop,
        }
    }
}

/// Prints the outcome of a run or redrive; a failed execution exits non-zero.
fn finish(db: &SqliteDb, record: &ExecutionRecord, as_json: bool) -> Result<(), Failure> {
    let steps = report::steps(&db.history(&record.id)?, record.status.is_final());
    if as_json {
        let mut view = execution_json(record);
        view["steps"] = json!(steps);
        outln!("{view}");
    } else {
        out!("{}", summary_text(record));
    }
    if record.status == ExecutionStatus::Succeeded {
        Ok(())
    } else {
        Err(Failure::Execution)
    }
}

/// The execution's output as the notify step wrote it (a succeeded run's summary).
fn run_summary(record: &ExecutionRecord) -> Option<NotifyResponse> {
    serde_json::from_value(record.output.clone()?).ok()
}

/// One execution as every `--json` of the CLI shows it: `run`, `redrive`, `execution` (each
/// adding `steps`) and each element of `executions`. The same field names as
/// `GET /api/executions`.
fn execution_json(record: &ExecutionRecord) -> Value {
    let summary = ExecutionSummary::from(record.clone());
    let warnings = run_summary(record).map_or_else(Vec::new, |r| r.request.all_warnings());
    let mut view = serde_json::to_value(&summary).unwrap_or(Value::Null);
    view["cause"] = json!(record.cause);
    view["warnings"] = json!(warnings);
    view
}

/// What the load did, in words: a dry run "would" write, a full reload rewrote every row.
fn load_sentence(load: &LoadReport) -> String {
    let c = load.counts;
    if load.dry_run {
        format!(
            "dry run, nothing written: would insert {}, would update {}, {} unchanged",
            c.inserted, c.updated, c.unchanged
        )
    } else if load.full_reload {
        format!(
            "full reload: {} rows rewritten ({} new, {} changed, {} unchanged)",
            load.written, c.inserted, c.updated, c.unchanged
        )
    } else {
        format!(
            "{} inserted, {} updated, {} unchanged",
            c.inserted, c.updated, c.unchanged
        )
    }
}

fn summary_text(record: &ExecutionRecord) -> String {
    let mut out = String::new();
    let took = duration(record);
    let summary = run_summary(record);
    let request = summary.as_ref().map(|s| &s.request);
    if request.is_some_and(|r| r.status == RunOutcome::NoNewData) {
        out.push_str(&format!(
            "SUCCEEDED  {} in {took}: no new data (neither source changed since the last load); nothing written\n",
            record.name
        ));
    } else if record.status == ExecutionStatus::Succeeded {
        let load = request.and_then(|r| r.load.clone()).unwrap_or_default();
        out.push_str(&format!(
            "SUCCEEDED  {} in {took}: {}\n",
            record.name,
            load_sentence(&load)
        ));
        if let Some(latest) = load.latest {
            out.push_str(&format!(
                "latest day {}: {} cases, {} deaths, recovered {}\n",
                covid_etl::record::iso(latest.date),
                latest.cases,
                latest.deaths,
                latest
                    .recovered
                    .map_or("not reported".to_string(), |v| v.to_string())
            ));
        }
    } else {
        // A stopped execution has a cause but no error name, as on AWS.
        let error = record
            .error
            .as_deref()
            .map(|e| format!("{e}: "))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} in {}: {error}{}\n",
            record.status,
            record.failed_state.as_deref().unwrap_or("?"),
            record.cause.as_deref().unwrap_or("")
        ));
        out.push_str(&format!(
            "inspect: covid-etl execution {0}    resume: covid-etl redrive {0}\n",
            record.name
        ));
    }
    for warning in request.map(NotifyRequest::all_warnings).unwrap_or_default() {
        out.push_str(&format!("warning: {warning}\n"));
    }
    out
}

pub(crate) async fn executions(db: &DbArg, limit: u32, as_json: bool) -> Result<(), Failure> {
    let db = open_existing(db)?;
    print_executions(&db.executions(limit)?, as_json)
}

/// The executions list of `covid-etl executions`, local or deployed: the table, or with
/// `--json` an array of the API's execution summaries (with cause and warnings).
pub(crate) fn print_executions(list: &[ExecutionRecord], as_json: bool) -> Result<(), Failure> {
    if as_json {
        let rows: Vec<Value> = list.iter().map(execution_json).collect();
        outln!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    outln!(
        "{:<32} {:<24} {:>9} {:<10} {:<11} {:>8} {:>7} {:>8}  FAILED STATE",
        "NAME",
        "STARTED",
        "DURATION",
        "STATUS",
        "OUTCOME",
        "INSERTED",
        "UPDATED",
        "REDRIVES"
    );
    for e in list {
        let summary = ExecutionSummary::from(e.clone());
        // Only what was written is counted: a dry run's "would" counts are not writes.
        let count = |f: fn(&LoadCounts) -> u64| {
            summary
                .load
                .as_ref()
                .map_or(String::new(), |l| f(l).to_string())
        };
        outln!(
            "{:<32} {:<24} {:>9} {:<10} {:<11} {:>8} {:>7} {:>8}  {}",
            e.name,
            e.started_at,
            duration(e),
            e.status,
            summary.outcome.name(),
            count(|l| l.inserted),
            count(|l| l.updated),
            e.redrive_count,
            e.failed_state.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

fn duration(e: &ExecutionRecord) -> String {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (
        parse(&e.started_at),
        e.finished_at.as_deref().and_then(parse),
    ) {
        (Some(a), Some(b)) => human_duration(b - a),
        _ => "-".into(),
    }
}

pub(crate) fn execution(db: &DbArg, id: &str, as_json: bool) -> Result<(), Failure> {
    let db = open_existing(db)?;
    let record = db.execution(id)?.ok_or_else(|| {
        Failure::Error(format!(
            "ExecutionDoesNotExist: no execution named \"{id}\" in {}",
            "the local database"
        ))
    })?;
    if as_json {
        let steps = report::steps(&db.history(&record.id)?, record.status.is_final());
        let mut view = execution_json(&record);
        view["steps"] = json!(steps);
        outln!("{view}");
        return Ok(());
    }
    outln!(
        "{}  {}  started {}  took {}",
        record.name,
        record.status,
        record.started_at,
        duration(&record)
    );
    // The first run and each redrive apart, each with the steps it ran.
    let events = db.history(&record.id)?;
    let bounds: Vec<usize> = std::iter::once(0)
        .chain((1..events.len()).filter(|&i| events[i].kind == EventKind::ExecutionRedriven))
        .chain(std::iter::once(events.len()))
        .collect();
    for (n, run) in bounds.windows(2).enumerate() {
        let part = &events[run[0]..run[1]];
        if bounds.len() > 2 {
            let at = part
                .first()
                .map(|e| e.timestamp.to_rfc3339())
                .unwrap_or_default();
            match n {
                0 => outln!("-- first run, started {at}"),
                n => outln!("-- redrive {n}, started {at}"),
            }
        }
        let ended = run[1] < events.len() || record.status.is_final();
        out!("{}", report::table(&report::steps(part, ended)));
    }
    out!("{}", summary_text(&record));
    Ok(())
}

pub(crate) async fn export(
    db: &DbArg,
    as_json: bool,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(), Failure> {
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(Failure::Error(format!(
            "--from {from} is after --to {to}; the range is inclusive"
        )));
    }
    let series = open_existing(db)?.series().await?;
    let rows = series
        .iter()
        .filter(|r| from.is_none_or(|f| r.date >= f) && to.is_none_or(|t| r.date <= t));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if as_json {
        let rows: Vec<Value> = rows
            .map(|r| json!({"date": covid_etl::record::iso(r.date), "cases": r.cases, "deaths": r.deaths, "recovered": r.recovered}))
            .collect();
        writeln!(out, "{}", serde_json::to_string(&rows)?).map_err(Failure::stdout)?;
    } else {
        writeln!(out, "date,cases,deaths,recovered").map_err(Failure::stdout)?;
        for r in rows {
            let recovered = r.recovered.map(|v| v.to_string()).unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{recovered}",
                covid_etl::record::iso(r.date),
                r.cases,
                r.deaths
            )
            .map_err(Failure::stdout)?;
        }
    }
    out.flush().map_err(Failure::stdout)?;
    Ok(())
}

pub(crate) fn notifications(db: &DbArg, limit: u32, as_json: bool) -> Result<(), Failure> {
    let mut outbox = open_existing(db)?.outbox()?;
    // Newest first, as `executions` lists runs.
    outbox.reverse();
    outbox.truncate(limit as usize);
    if as_json {
        outln!("{}", serde_json::to_string(&outbox)?);
        return Ok(());
    }
    for entry in outbox {
        outln!(
            "#{} {}  {}",
            entry.id,
            entry.created_at,
            entry.notification.subject
        );
        for line in entry.notification.message.lines() {
            outln!("    {line}");
        }
    }
    Ok(())
}
