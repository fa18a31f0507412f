//! Commands on the local engine and the embedded database.

use super::{DbArg, Failure};
use covid_etl::backends::{BackendConfig, Backends, NotifyConfig, StoreConfig};
use covid_etl::config::{Config, Role};
use covid_etl::engine::{EventKind, HistoryEvent, HistorySink, RandomJitter, ScaledClock};
use covid_etl::ledger::{RunLedger, RunRecord};
use covid_etl::payload::RunOptions;
use covid_etl::report::{self, StepView};
use covid_etl::store::{ExecutionRecord, SqliteDb, Store};
use covid_etl::workflow::{LocalRunner, LocalTasks};
use serde_json::{Value, json};
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
    /// Execution name; a name already used is refused (ExecutionAlreadyExists).
    #[arg(long)]
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

/// Prints a progress line per step as the engine records it.
struct Progress {
    enabled: bool,
    failed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            failed: Default::default(),
        }
    }
}

impl HistorySink for Progress {
    fn record(&self, e: &HistoryEvent) {
        if !self.enabled {
            return;
        }
        let name = e.state_name.as_deref().unwrap_or("");
        let detail = |k: &str| {
            e.details
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let line = match e.kind {
            EventKind::TaskStateExited | EventKind::ParallelStateExited => {
                let caught = self.failed.lock().unwrap().remove(name);
                format!("  {}  {name}", if caught { "caught" } else { "ok    " })
            }
            EventKind::TaskSucceeded => {
                self.failed.lock().unwrap().remove(name);
                return;
            }
            EventKind::ParallelStateFailed => {
                self.failed.lock().unwrap().insert(name.to_string());
                return;
            }
            EventKind::TaskFailed | EventKind::TaskTimedOut => {
                self.failed.lock().unwrap().insert(name.to_string());
                let cause = covid_etl::payload::cause_message(&detail("cause"));
                format!("  fail  {name}: {}: {cause}", detail("error"))
            }
            EventKind::FailStateEntered => format!("  end   {name}"),
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
    clock: ScaledClock,
    db: SqliteDb,
    tasks: LocalTasks,
    progress: Progress,
}

impl Session {
    async fn open(config: &BackendConfig, as_json: bool) -> Result<Self, Failure> {
        // Before the backends are built: a bad setting creates nothing.
        let settings = Config::from_env(Role::Cli)?;
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
        // COVID_ETL_TIME_SCALE divides every engine wait (retry delays, Task and execution
        // timeouts): the end-to-end tests run the real definition without waiting minutes.
        Ok(Self {
            clock: ScaledClock {
                speedup: settings.time_scale,
            },
            db,
            tasks,
            progress: Progress::new(!as_json),
        })
    }

    fn runner<'a>(&'a self, stop: &'a Notify) -> LocalRunner<'a> {
        LocalRunner {
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
    let steps = report::steps(&db.history(&record.id)?, record.status != "RUNNING");
    if as_json {
        println!("{}", summary_json(record, &steps));
    } else {
        print!("{}", summary_text(record));
    }
    if record.status == "SUCCEEDED" {
        Ok(())
    } else {
        Err(Failure::Execution)
    }
}

fn load_counts(record: &ExecutionRecord) -> Value {
    record
        .output
        .as_ref()
        .and_then(|o| o.get("load"))
        .map(|l| json!({"inserted": l["inserted"], "updated": l["updated"], "unchanged": l["unchanged"]}))
        .unwrap_or(Value::Null)
}

fn summary_json(record: &ExecutionRecord, steps: &[StepView]) -> Value {
    json!({
        "executionId": record.id,
        "name": record.name,
        "status": record.status,
        "startedAt": record.started_at,
        "finishedAt": record.finished_at,
        "failedState": record.failed_state,
        "error": record.error,
        "cause": record.cause,
        "outcome": record.output.as_ref().and_then(|o| o.get("status")).cloned().unwrap_or(Value::Null),
        "load": load_counts(record),
        "redriveCount": record.redrive_count,
        "steps": steps,
    })
}

fn summary_text(record: &ExecutionRecord) -> String {
    let mut out = String::new();
    let no_new_data = record
        .output
        .as_ref()
        .is_some_and(|o| o["status"] == "NO_NEW_DATA");
    if no_new_data {
        out.push_str(&format!(
            "SUCCEEDED  {}: no new data (neither source changed since the last load); nothing written\n",
            record.name
        ));
    } else if record.status == "SUCCEEDED" {
        let load = record
            .output
            .as_ref()
            .and_then(|o| o.get("load"))
            .cloned()
            .unwrap_or(Value::Null);
        out.push_str(&format!(
            "SUCCEEDED  {}: {} inserted, {} updated, {} unchanged{}\n",
            record.name,
            load["inserted"],
            load["updated"],
            load["unchanged"],
            if load["dryRun"] == true {
                " (dry run: nothing written)"
            } else {
                ""
            }
        ));
        if let Some(latest) = load.get("latest").and_then(Value::as_array) {
            out.push_str(&format!(
                "latest day {}: {} cases, {} deaths, recovered {}\n",
                latest[0].as_str().unwrap_or(""),
                latest[1],
                latest[2],
                latest
                    .get(3)
                    .map_or("not reported".to_string(), Value::to_string)
            ));
        }
        let warnings = record
            .output
            .as_ref()
            .and_then(|o| o["warnings"].as_array())
            .map_or(0, Vec::len);
        if warnings > 0 {
            out.push_str(&format!(
                "{warnings} data warnings: see `covid-etl notifications`\n"
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
    out
}

pub(crate) async fn executions(db: &DbArg, limit: u32, as_json: bool) -> Result<(), Failure> {
    let db = open(db)?;
    let list = db.executions(limit)?;
    // The run ledger adds what each run did: outcome, counts, fingerprints, warnings.
    let runs: std::collections::HashMap<String, RunRecord> = db
        .runs(limit as usize * 2)
        .await?
        .into_iter()
        .map(|r| (r.execution_id.clone(), r))
        .collect();
    if as_json {
        let rows: Vec<Value> = list
            .iter()
            .map(|e| {
                let mut row = serde_json::to_value(e).unwrap_or(Value::Null);
                row["run"] = serde_json::to_value(runs.get(&e.id)).unwrap_or(Value::Null);
                row
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<32} {:<24} {:>9} {:<10} {:<11} {:>8} {:>7}  FAILED STATE",
        "NAME", "STARTED", "DURATION", "STATUS", "OUTCOME", "INSERTED", "UPDATED"
    );
    for e in list {
        let run = runs.get(&e.id);
        let outcome = run.map_or("", |r| r.status.name());
        let count = |f: fn(&covid_etl::diff::LoadCounts) -> u64| {
            run.and_then(|r| r.load.as_ref())
                .map_or(String::new(), |l| f(l).to_string())
        };
        println!(
            "{:<32} {:<24} {:>9} {:<10} {:<11} {:>8} {:>7}  {}",
            e.name,
            e.started_at,
            duration(&e),
            e.status,
            outcome,
            count(|l| l.inserted),
            count(|l| l.updated),
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
        (Some(a), Some(b)) => format!("{} ms", (b - a).num_milliseconds()),
        _ => "-".into(),
    }
}

pub(crate) fn execution(db: &DbArg, id: &str, as_json: bool) -> Result<(), Failure> {
    let db = open(db)?;
    let record = db.execution(id)?.ok_or_else(|| {
        Failure::Error(format!("no execution \"{id}\" in {}", "the local database"))
    })?;
    let steps = report::steps(&db.history(&record.id)?, record.status != "RUNNING");
    if as_json {
        println!("{}", summary_json(&record, &steps));
    } else {
        println!(
            "{}  {}  started {}  {}",
            record.name,
            record.status,
            record.started_at,
            duration(&record)
        );
        if record.redrive_count > 0 {
            println!("redriven {} time(s)", record.redrive_count);
        }
        print!("{}", report::table(&steps));
        if record.status != "SUCCEEDED" {
            print!("{}", summary_text(&record));
        }
    }
    Ok(())
}

pub(crate) async fn export(db: &DbArg, as_json: bool) -> Result<(), Failure> {
    let series = open(db)?.series().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if as_json {
        let rows: Vec<Value> = series
            .iter()
            .map(|r| json!({"date": covid_etl::record::iso(r.date), "cases": r.cases, "deaths": r.deaths, "recovered": r.recovered}))
            .collect();
        writeln!(out, "{}", serde_json::to_string(&rows)?)?;
    } else {
        writeln!(out, "date,cases,deaths,recovered")?;
        for r in series {
            let recovered = r.recovered.map(|v| v.to_string()).unwrap_or_default();
            writeln!(
                out,
                "{},{},{},{recovered}",
                covid_etl::record::iso(r.date),
                r.cases,
                r.deaths
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn notifications(db: &DbArg, as_json: bool) -> Result<(), Failure> {
    let outbox = open(db)?.outbox()?;
    if as_json {
        println!("{}", serde_json::to_string(&outbox)?);
        return Ok(());
    }
    for entry in outbox {
        println!(
            "#{} {}  {}",
            entry.id, entry.created_at, entry.notification.subject
        );
        for line in entry.notification.message.lines() {
            println!("    {line}");
        }
    }
    Ok(())
}
