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
/// `errorType`, which the state machine's Retry and Catch match — an event of the wrong shape
/// too ([`crate::steps::parse_payload`]).
pub async fn run<Req, Resp, F, Fut>(step: F) -> Result<(), lambda_runtime::Error>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, EtlError>> + Send,
{
    init_tracing();
    let step = &step;
    // The payload is read here, not by the runtime: the runtime reports a mismatch under its
    // own Rust type name (`lambda_runtime::deserializer::DeserializeError`), which no Retry or
    // Catch can name; this is `InvalidInput`, with the path of the field.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            step(crate::steps::parse_payload(event.payload)?).await
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use crate::payload::ExtractRequest;
    use crate::steps::parse_payload as request;

    #[test]
    fn an_event_of_the_wrong_shape_is_invalid_input_naming_the_field() {
        let e = request::<ExtractRequest>(serde_json::json!({"options": {"nyt": 42}})).unwrap_err();
        assert_eq!(e.name(), "InvalidInput");
        assert_eq!(
            e.to_string(),
            "invalid input: ExtractRequest at options.nyt: invalid type: integer `42`, expected a string"
        );
        let ok = request::<ExtractRequest>(serde_json::json!({"options": {"nyt": "http://x"}}));
        assert_eq!(ok.unwrap().options.nyt.as_deref(), Some("http://x"));
    }
}
