//! The NotifySuccess and NotifyFailure states: tell the operators.
use covid_etl::{adapters, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let notifier = adapters::notifier_from_env().await?;
    lambda::run(move |request| {
        let notifier = notifier.clone();
        async move { steps::notify(request, notifier.as_ref()).await }
    })
    .await
}
