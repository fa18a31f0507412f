//! The command line: clap commands over the library. User mistakes and failed executions
//! are one clear line on stderr and a non-zero exit code, never a backtrace.

mod local;
mod remote;
mod serve;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "covid-etl",
    version,
    about = "Daily US COVID-19 ETL: NYT + JHU, merged, diffed and loaded; one state machine, run here or on AWS Step Functions."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
pub(crate) struct DbArg {
    /// The embedded database (series, executions, outbox).
    #[arg(long, default_value = "covid-etl.db", env = "COVID_ETL_DB")]
    db: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run one execution of the state machine on the local engine.
    Run(local::RunArgs),
    /// Start an execution of a deployed state machine (the console's "Start execution").
    Start {
        #[arg(long, value_name = "ARN")]
        state_machine_arn: String,
        /// Execution input, e.g. '{"dryRun":true}'.
        #[arg(long, value_name = "JSON", default_value_t = remote::default_input())]
        input: String,
        /// Execution name; Step Functions refuses one already used.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        aws: remote::AwsArgs,
    },
    /// List recent executions (local, or of a deployed state machine).
    Executions {
        #[command(flatten)]
        db: DbArg,
        /// List the executions of this deployed state machine instead of local ones.
        #[arg(long, value_name = "ARN")]
        state_machine_arn: Option<String>,
        #[command(flatten)]
        aws: remote::AwsArgs,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show one execution step by step: state, duration, attempts, output or error.
    Execution {
        /// Local execution name or id, or an AWS execution ARN.
        id: String,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        aws: remote::AwsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Resume a failed execution from the state that failed, with that state's input.
    Redrive {
        /// Local execution name or id, or an AWS execution ARN (RedriveExecution).
        id: String,
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        aws: remote::AwsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Print the stored series, sorted by date.
    Export {
        #[command(flatten)]
        db: DbArg,
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
    },
    /// Serve the dashboard and the HTTP API over the embedded database.
    Serve(serve::ServeArgs),
    /// Show the local notification outbox.
    Notifications {
        #[command(flatten)]
        db: DbArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

/// Why the process exits non-zero.
pub(crate) enum Failure {
    /// The execution ran and failed: its summary was printed already.
    Execution,
    /// A mistake or an error before any execution: one line.
    Error(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    // The commands are I/O-bound with parsing on blocking threads: one scheduler thread is
    // enough, and starts faster and lighter. `serve` answers many clients: all cores.
    let mut builder = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => {
            one_malloc_arena();
            tokio::runtime::Builder::new_current_thread()
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Execution) => ExitCode::from(1),
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// glibc gives each new thread its own malloc arena; for a command's two short-lived parser
/// threads that is about 250 KiB of resident memory (measured) for no gain: no contention to
/// avoid.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(args) => local::run(args).await,
        Command::Start {
            state_machine_arn,
            input,
            name,
            aws,
        } => remote::start(&aws, &state_machine_arn, name.as_deref(), &input).await,
        Command::Executions {
            state_machine_arn: Some(arn),
            aws,
            limit,
            json,
            ..
        } => remote::executions(&aws, &arn, limit, json).await,
        Command::Executions {
            db, limit, json, ..
        } => local::executions(&db, limit, json).await,
        Command::Execution { id, aws, json, .. } if remote::is_remote(&id) => {
            remote::execution(&aws, &id, json).await
        }
        Command::Execution { id, db, json, .. } => local::execution(&db, &id, json),
        Command::Redrive { id, aws, .. } if remote::is_remote(&id) => {
            remote::redrive(&aws, &id).await
        }
        Command::Redrive { id, db, json, .. } => local::redrive(&db, &id, json).await,
        Command::Export { db, format } => local::export(&db, matches!(format, Format::Json)).await,
        Command::Notifications { db, json } => local::notifications(&db, json),
        Command::Serve(args) => serve::serve(args).await,
    }
}
