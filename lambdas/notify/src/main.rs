//! The notify states (success, no new data, failure) and the EventBridge rule for executions
//! that ended where no Catch could see them (timed out, aborted).
use covid_etl::backends::{BackendConfig, Backends};
use covid_etl::config::{Config, Role};
use covid_etl::payload::NotifyEvent;
use covid_etl::{aws, lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let settings = Config::from_env(Role::Lambda)?.notify;
    let backends = Backends::build(&BackendConfig::from_env()?.require_topic()?).await?;
    let sfn = aws_sdk_sfn::Client::new(aws::default_config().await);
    lambda::run(move |event: NotifyEvent| {
        let (b, sfn) = (backends.clone(), sfn.clone());
        async move {
            let now = chrono::Utc::now();
            let (n, l, s) = (b.notifier.as_ref(), b.ledger.as_ref(), b.store.as_ref());
            match event {
                NotifyEvent::Step(request) => steps::notify(*request, n, l, s, settings, now)
                    .await
                    .map(|r| covid_etl::payload::NotifyOutcome::Sent(Box::new(r))),
                NotifyEvent::StatusChange(event) => {
                    let last = aws::sfn::last_failure(&sfn, &event.detail.execution_arn).await?;
                    steps::status_change(event.detail, last, n, l, s, settings, now).await
                }
            }
        }
    })
    .await
}
