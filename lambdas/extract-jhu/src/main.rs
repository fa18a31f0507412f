//! The ExtractJhu state: fetch and validate the JHU combined series (US rows).
use covid_etl::config::{Config, Role};
use covid_etl::{backends::Backends, extract::SourceKind, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // The allowlist of source origins comes with it: overrides in the input are checked.
    let config = Config::from_env(Role::Lambda)?.sources;
    let store = Backends::from_env().await?.store;
    lambda::run(move |request| {
        let (config, store) = (config.clone(), store.clone());
        async move { steps::extract(SourceKind::Jhu, request, config, store.as_ref()).await }
    })
    .await
}
