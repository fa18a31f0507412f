//! The ExtractJhu state: fetch and validate the JHU combined series (US rows).
use covid_etl::{extract::SourceKind, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = steps::SourceConfig::from_env();
    lambda::run(move |request| steps::extract(SourceKind::Jhu, request, config.clone())).await
}
