//! `covid-etl`: run the pipeline on the local engine, inspect and redrive executions, and
//! read what was loaded.

mod cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
