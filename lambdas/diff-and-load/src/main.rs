//! The DiffAndLoad state: write what changed to the table.
use covid_etl::{backends::Backends, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let store = Backends::from_env().await?.store;
    lambda::run(move |request| {
        let store = store.clone();
        async move { steps::diff_and_load(request, store.as_ref()).await }
    })
    .await
}
