//! Telling operators what happened. The message text is built here, once, for every channel;
//! [`Notifier`] implementations only deliver it (the local outbox, SNS).

mod memory;
mod message;
mod sns;

#[cfg(feature = "sqlite")]
pub use crate::store::sqlite::OutboxEntry;
pub use memory::MemoryNotifier;
pub use message::{DRY_RUN_ATTRIBUTE, compose};
pub use sns::SnsNotifier;

use crate::error::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A message ready to deliver. `subject` fits SNS's rules (ASCII, one line, at most 100
/// characters); `attributes` are the SNS message attributes subscribers filter on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub subject: String,
    pub message: String,
    pub attributes: BTreeMap<String, String>,
}

#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn publish(&self, notification: &Notification) -> Result<()>;
}

/// The longest subject SNS accepts.
pub const MAX_SUBJECT: usize = 100;

/// Makes `text` a valid SNS subject: printable ASCII on one line, cut to [`MAX_SUBJECT`].
pub fn subject_line(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .collect();
    if s.len() > MAX_SUBJECT {
        s.truncate(MAX_SUBJECT - 3);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_ascii_one_line_and_short() {
        assert_eq!(subject_line("a\nb — c"), "a b   c");
        let long = subject_line(&"x".repeat(300));
        assert_eq!(long.len(), MAX_SUBJECT);
        assert!(long.ends_with("..."));
    }
}
