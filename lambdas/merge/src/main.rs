//! The Merge state: join the two extracts on date.
use covid_etl::config::{Config, Role};
use covid_etl::{lambda, steps};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let policy = Config::from_env(Role::Lambda)?.quality;
    lambda::run(move |request| async move {
        steps::merge(request, &policy, chrono::Utc::now().date_naive())
    })
    .await
}
