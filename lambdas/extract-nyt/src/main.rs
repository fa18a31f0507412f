//! The ExtractNyt state: fetch and validate the NYT national series.
use covid_etl::{extract::SourceKind, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = steps::SourceConfig::from_env();
    lambda::run(move |request| steps::extract(SourceKind::Nyt, request, config.clone())).await
}
