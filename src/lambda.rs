//! What every Lambda binary shares: JSON logs and the runtime loop around one step.

use crate::error::EtlError;
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

/// Structured JSON logs, as CloudWatch Logs Insights reads them; level from `RUST_LOG`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps each line
        .init();
}

/// Runs `step` for every event. Errors reach Step Functions with their stable name as
/// `errorType`, which the state machine's Retry and Catch match.
pub async fn run<Req, Resp, F, Fut>(step: F) -> Result<(), lambda_runtime::Error>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, EtlError>> + Send,
{
    init_tracing();
    let step = &step;
    // The payload is read here, not by the runtime, so that a malformed input (an unknown
    // key of the execution input) fails as `InvalidInput`, the name the state machine knows.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            step(crate::steps::parse_payload(event.payload)?).await
        },
    ))
    .await
}
