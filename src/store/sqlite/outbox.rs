//! Local delivery: the outbox table of the embedded database (plus a log line).

use super::SqliteDb;
use crate::error::{EtlError, Result};
use crate::notify::{Notification, Notifier};
use async_trait::async_trait;
use serde::Serialize;

/// A delivered notification as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub id: i64,
    pub created_at: String,
    #[serde(flatten)]
    pub notification: Notification,
}

#[async_trait]
impl Notifier for SqliteDb {
    async fn publish(&self, n: &Notification) -> Result<()> {
        let attributes = serde_json::to_string(&n.attributes)
            .map_err(|e| EtlError::NotifyError(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO outbox (created_at, subject, message, attributes) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                n.subject,
                n.message,
                attributes
            ],
        )?;
        tracing::info!(subject = %n.subject, "notification written to the local outbox");
        Ok(())
    }
}

impl SqliteDb {
    /// The outbox, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, created_at, subject, message, attributes FROM outbox ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let attributes: String = r.get(4)?;
            Ok(OutboxEntry {
                id: r.get(0)?,
                created_at: r.get(1)?,
                notification: Notification {
                    subject: r.get(2)?,
                    message: r.get(3)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
