//! The ExtractJhu state: fetch and validate the JHU combined series (US rows).
use covid_etl::config::{Config, Role};
use covid_etl::{adapters, extract::SourceKind, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The allowlist of source origins comes with it: overrides in the input are checked.
    let config = Config::from_env(Role::Lambda)?.sources;
    let ledger = adapters::table_from_env().await?.ledger;
    lambda::run(move |request| {
        let (config, ledger) = (config.clone(), ledger.clone());
        async move { steps::extract(SourceKind::Jhu, request, config, ledger.as_ref()).await }
    })
    .await
}
