//! An in-memory notifier for tests.

use super::{Notification, Notifier};
use crate::error::Result;
use async_trait::async_trait;
use std::sync::Mutex;

/// Keeps what was published, for tests.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    pub sent: Mutex<Vec<Notification>>,
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn publish(&self, n: &Notification) -> Result<()> {
        self.sent.lock().unwrap().push(n.clone());
        Ok(())
    }
}
