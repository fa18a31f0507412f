//! Commands against a state machine deployed on AWS Step Functions (or any endpoint that
//! speaks its API, such as a local test server). Rendering is shared with local executions.

use super::{Failure, out, outln};
use covid_etl::aws::{self, sfn};
use covid_etl::report;
use serde_json::{Value, json};

/// `--endpoint-url` overrides the standard configuration (otherwise `AWS_ENDPOINT_URL`,
/// the profile, region and credentials chain apply as everywhere in the AWS SDK).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct AwsArgs {
    /// AWS API endpoint (default: the standard configuration, `AWS_ENDPOINT_URL` included).
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,
}

/// Is this an execution on AWS (an ARN) rather than a local execution name?
pub(crate) fn is_remote(id: &str) -> bool {
    id.starts_with("arn:aws")
}

async fn client(args: &AwsArgs) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&aws::sdk_config(args.endpoint_url.as_deref()).await)
}

pub(crate) async fn start(
    aws: &AwsArgs,
    state_machine_arn: &str,
    name: Option<&str>,
    input: &str,
) -> Result<(), Failure> {
    let arn = sfn::start_execution(&client(aws).await, state_machine_arn, name, input).await?;
    outln!("{arn}");
    Ok(())
}

/// The newest executions of a deployed state machine, with the same columns as local ones:
/// each execution's output (DescribeExecution; ListExecutions has none) says its outcome
/// (loaded, no new data, dry run) and counts.
pub(crate) async fn executions(
    aws: &AwsArgs,
    state_machine_arn: &str,
    limit: u32,
    as_json: bool,
) -> Result<(), Failure> {
    let client = client(aws).await;
    let rows = sfn::list_executions(&client, state_machine_arn, limit as usize).await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        records.push(sfn::describe(&client, &row.execution_arn).await?.into());
    }
    super::local::print_executions(&records, as_json)
}

pub(crate) async fn execution(aws: &AwsArgs, arn: &str, as_json: bool) -> Result<(), Failure> {
    let client = client(aws).await;
    let d = sfn::describe(&client, arn).await?;
    let events = sfn::history_events(&client, arn).await?;
    let steps = report::steps(&events, d.status.is_final());
    if as_json {
        let mut view = serde_json::to_value(&d)?;
        view["steps"] = json!(steps);
        outln!("{view}");
        return Ok(());
    }
    outln!("{}  {}  started {}", d.name, d.status, d.start.to_rfc3339());
    out!("{}", report::table(&steps));
    if let Some(error) = &d.error {
        let cause = covid_etl::payload::cause_message(d.cause.as_deref().unwrap_or_default());
        outln!("{} : {error}: {cause}", d.status);
    }
    Ok(())
}

pub(crate) async fn redrive(aws: &AwsArgs, arn: &str) -> Result<(), Failure> {
    let date = sfn::redrive(&client(aws).await, arn).await?;
    outln!(
        "redriven at {}: follow it with `covid-etl execution {arn}`",
        date.to_rfc3339()
    );
    Ok(())
}

/// The execution input `start` sends when none is given: a scheduled run's `{}`.
pub(crate) fn default_input() -> String {
    Value::Object(Default::default()).to_string()
}
