//! The notify states (success, no new data, failure) and the EventBridge rule for executions
//! that ended where no Catch could see them (timed out, aborted).
use covid_etl::config::{Config, Role};
use covid_etl::payload::NotifyEvent;
use covid_etl::{adapters, aws, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = Config::from_env(Role::Lambda)?.notify;
    let ledger = adapters::table_from_env().await?.ledger;
    let notifier = adapters::notifier_from_env().await?;
    let sfn = aws_sdk_sfn::Client::new(aws::default_config().await);
    lambda::run(move |event: NotifyEvent| {
        let (ledger, notifier, sfn) = (ledger.clone(), notifier.clone(), sfn.clone());
        async move {
            let now = chrono::Utc::now();
            match event {
                NotifyEvent::Step(request) => {
                    steps::notify(*request, notifier.as_ref(), ledger.as_ref(), settings, now)
                        .await
                        .map(|r| covid_etl::payload::NotifyOutcome::Sent(Box::new(r)))
                }
                NotifyEvent::StatusChange(event) => {
                    let last = aws::sfn::last_failure(&sfn, &event.detail.execution_arn).await?;
                    let (n, l) = (notifier.as_ref(), ledger.as_ref());
                    steps::status_change(event.detail, last, n, l, settings, now).await
                }
            }
        }
    })
    .await
}
