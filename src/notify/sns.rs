//! Delivers notifications to an SNS topic.
//!
//! The subject and message are the ones [`super::compose`] built (the subject already
//! fits SNS's rules); every entry of [`Notification::attributes`] (`status`, `failedState`,
//! and `dryRun` on a dry run) becomes a `String` message attribute, so subscriptions can
//! filter, e.g. with the policy `{"status": ["FAILED"]}`, or `{"dryRun": [{"exists": false}]}`
//! (the deployed email subscription: no mail for the deploy's dry-run smoke test).

use super::{Notification, Notifier};
use crate::aws::sdk_error_text;
use crate::error::{EtlError, Result};
use async_trait::async_trait;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;

/// SNS error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &["Throttled", "ThrottledException", "Throttling"];

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self {
            client,
            topic_arn: topic_arn.into(),
        }
    }

    /// A notifier whose client is built from `config` (see [`crate::aws::sdk_config`]).
    pub fn from_conf(config: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        Self::new(Client::new(config), topic_arn)
    }

    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<()> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(&notification.message);
        // SNS rejects an empty subject and empty attribute values: leave those out.
        if !notification.subject.is_empty() {
            request = request.subject(&notification.subject);
        }
        for (name, value) in &notification.attributes {
            if value.is_empty() {
                continue;
            }
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| EtlError::NotifyError(format!("attribute {name}: {e}")))?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(out) => {
                tracing::info!(
                    topic = %self.topic_arn,
                    message_id = out.message_id().unwrap_or_default(),
                    subject = %notification.subject,
                    "published"
                );
                Ok(())
            }
            Err(e) => {
                let (code, message) = sdk_error_text(&e);
                let throttled = code
                    .as_deref()
                    .is_some_and(|c| THROTTLING_CODES.contains(&c));
                Err(EtlError::NotifyError(if throttled {
                    format!(
                        "SNS throttled the publish to {} (retry later): {message}",
                        self.topic_arn
                    )
                } else {
                    format!("SNS publish to {}: {message}", self.topic_arn)
                }))
            }
        }
    }
}
