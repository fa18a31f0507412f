//! The Merge state: join the two extracts on date.
use covid_etl::{lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(|request| async move { steps::merge(request) }).await
}
