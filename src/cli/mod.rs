//! The command line: clap commands over the library. User mistakes and failed executions
//! are one clear line on stderr and a non-zero exit code, never a backtrace.
//!
//! Exit codes: 0 success (also when the reader of stdout went away, as `| head` does: ripgrep
//! does the same); 1 the execution failed, timed out or was stopped; 2 a usage error (clap's
//! own code: unknown flag, bad value, invalid execution name); 3 an operational error (no
//! such execution or database, a name already used, an AWS or database failure).

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
        /// The deployed state machine.
        #[arg(long, value_name = "ARN")]
        state_machine_arn: String,
        /// Execution input, e.g. '{"dryRun":true}'.
        #[arg(long, value_name = "JSON", default_value_t = remote::default_input())]
        input: String,
        /// Execution name (1-80 characters, see --help of `run`); Step Functions refuses one already used.
        #[arg(long, value_parser = ExecutionName)]
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
        /// How many to show, newest first.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print a JSON array instead of the table.
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
        /// Print one JSON object (the shape of `run --json`) instead of the table.
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
        /// Print one JSON object (the shape of `run --json`) instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Print the stored series, sorted by date (CSV: date,cases,deaths,recovered).
    Export {
        #[command(flatten)]
        db: DbArg,
        /// Print a JSON array instead of CSV.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format (`--json` is the same as `--format json`).
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// First date to print, inclusive (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = iso_date)]
        from: Option<chrono::NaiveDate>,
        /// Last date to print, inclusive (YYYY-MM-DD).
        #[arg(long, value_name = "DATE", value_parser = iso_date)]
        to: Option<chrono::NaiveDate>,
    },
    /// Serve the dashboard and the HTTP API over the embedded database.
    Serve(serve::ServeArgs),
    /// Show the local notification outbox.
    Notifications {
        #[command(flatten)]
        db: DbArg,
        /// How many to show, newest first.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print a JSON array instead of the messages.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

/// Why a command stops early.
pub(crate) enum Failure {
    /// The execution ran and failed or was stopped: its summary was printed already (exit 1).
    Execution,
    /// An operational error: no such execution or database, a name already used, an AWS or
    /// database failure. One line (exit 3).
    Error(String),
    /// A setting in the environment is unusable: the invocation is wrong, like a bad flag
    /// (exit 2, as clap's usage errors).
    Usage(String),
    /// Whoever read stdout closed it (`covid-etl executions | head -1`): not an error (exit 0).
    StdoutClosed,
}

/// Exit code of an operational error.
const EXIT_OPERATIONAL: u8 = 3;

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.to_string())
    }
}

impl Failure {
    /// A failed write to stdout: a closed pipe ends the command quietly.
    pub(crate) fn stdout(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::StdoutClosed
        } else {
            Failure::Error(format!("cannot write to stdout: {e}"))
        }
    }
}

/// `println!` that ends the command quietly when stdout is closed instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::Failure::stdout)?
    }};
}
/// `print!` with the same rule as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::Failure::stdout)?
    }};
}
pub(crate) use {out, outln};

/// The longest execution name Step Functions accepts.
const MAX_EXECUTION_NAME: usize = 80;

/// Validates an execution name as Step Functions' StartExecution does
/// (<https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html>,
/// `name`: length 1-80; no white space, brackets `< > { } [ ]`, wildcards `? *`, the special
/// characters `"` `#` `%` `\` `^` `|` `~` `` ` `` `$` `&` `,` `;` `:` `/`, control characters
/// (U+0000-001F, U+007F-009F, U+FFFE-FFFF), surrogates or U+10FFFF). A name that passes can
/// never be taken for an execution id: local ids are ARNs, full of `:`.
fn check_execution_name(name: &str) -> Result<(), String> {
    let length = name.chars().count();
    if !(1..=MAX_EXECUTION_NAME).contains(&length) {
        return Err(format!(
            "an execution name has 1 to {MAX_EXECUTION_NAME} characters, this one has {length}"
        ));
    }
    let forbidden = |c: char| {
        c.is_whitespace()
            || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c)
            || matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}' | '\u{10ffff}')
    };
    match name.chars().find(|c| forbidden(*c)) {
        Some(c) => Err(format!(
            "{c:?} is not allowed in an execution name (Step Functions refuses white space, brackets, ? * \" # % \\ ^ | ~ ` $ & , ; : / and control characters)"
        )),
        None => Ok(()),
    }
}

/// `--name` as clap parses it: [`check_execution_name`], with an error that quotes the
/// value only when it is short (clap's own would echo 100,000 characters back).
#[derive(Clone)]
pub(crate) struct ExecutionName;

impl clap::builder::TypedValueParser for ExecutionName {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid --name: {why}\n"),
            )
        };
        let name = value
            .to_str()
            .ok_or_else(|| refuse("an execution name is UTF-8 text".into()))?;
        check_execution_name(name).map_err(|why| {
            if name.chars().count() <= MAX_EXECUTION_NAME {
                refuse(format!("{name:?}: {why}"))
            } else {
                refuse(why)
            }
        })?;
        Ok(name.to_string())
    }
}

/// A real calendar day written `YYYY-MM-DD`.
fn iso_date(text: &str) -> Result<chrono::NaiveDate, String> {
    covid_etl::record::parse_iso(text.as_bytes())
        .map_err(|e| format!("expected a calendar date written YYYY-MM-DD: {e}"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a piped or captured log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
            return ExitCode::from(EXIT_OPERATIONAL);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) | Err(Failure::StdoutClosed) => ExitCode::SUCCESS,
        Err(Failure::Execution) => ExitCode::from(1),
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_OPERATIONAL)
        }
        Err(Failure::Usage(message)) => {
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
        Command::Export {
            db,
            json,
            format,
            from,
            to,
        } => local::export(&db, json || matches!(format, Format::Json), from, to).await,
        Command::Notifications { db, limit, json } => local::notifications(&db, limit, json),
        Command::Serve(args) => serve::serve(args).await,
    }
}
