//! Shared AWS configuration for every client the project builds (DynamoDB, SNS, Step Functions).
//!
//! Configuration follows the standard AWS chain, exactly as the AWS CLI does: `AWS_PROFILE` and
//! `~/.aws/config`, `AWS_REGION`, the credentials chain (environment, profile, SSO, web
//! identity, container and instance metadata). The endpoint can be overridden for a local AWS
//! API server (moto, LocalStack):
//!
//! 1. an explicit `endpoint_url` argument (the CLI's `--endpoint-url` flag), else
//! 2. `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` or the profile's `endpoint_url`, which
//!    `aws-config` reads itself (see `aws_config::default_provider::endpoint_url`).

pub mod sfn;

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::OnceCell;

/// The loader behind [`sdk_config`], for callers that override more (tests set a region and
/// static credentials on it).
pub fn loader(endpoint_url: Option<&str>) -> ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    match endpoint_url {
        Some(url) => loader.endpoint_url(url),
        None => loader,
    }
}

/// Loads the standard AWS configuration, with `endpoint_url` (when given) taking precedence
/// over `AWS_ENDPOINT_URL`.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    loader(endpoint_url).load().await
}

/// [`sdk_config`] without an explicit endpoint, loaded once per process: the Lambda binaries
/// build their store and notifier from it, and a warm container reuses it.
pub async fn default_config() -> &'static SdkConfig {
    static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();
    CONFIG.get_or_init(|| sdk_config(None)).await
}

/// The error's code (for service errors) and a one-line message: `Code: message` from the
/// service, the HTTP status for an answer that is no AWS error, or the whole error chain for
/// timeouts and connection failures.
pub(crate) fn sdk_error_text<E>(e: &SdkError<E, HttpResponse>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().map(str::to_string);
            let message = match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                // Not an AWS error document (a proxy's or a local server's HTML page).
                _ => format!(
                    "HTTP {} without an AWS error code",
                    s.raw().status().as_u16()
                ),
            };
            (code, message)
        }
        // "dispatch failure: io error: …: Connection refused (os error 111)", not the
        // `Debug` text of the SDK's error structs.
        other => (None, crate::error::with_causes(other)),
    }
}
/// The Step Functions console page of an execution ARN
/// (`arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`).
pub fn console_link(execution_arn: &str) -> Option<String> {
    let region = execution_arn
        .strip_prefix("arn:aws:states:")?
        .split(':')
        .next()?;
    Some(format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    ))
}
