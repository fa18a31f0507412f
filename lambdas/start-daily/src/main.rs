//! The daily schedule's target: starts the execution `daily-YYYY-MM-DD`, once per day.
use covid_etl::schedule::{self, ScheduledEvent};
use covid_etl::{aws, lambda};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let machine = schedule::state_machine_arn_from_env()?;
    let sfn = aws_sdk_sfn::Client::new(aws::default_config().await);
    lambda::run(move |event: ScheduledEvent| {
        let (sfn, machine) = (sfn.clone(), machine.clone());
        async move { schedule::start_daily(&sfn, &machine, &event).await }
    })
    .await
}
