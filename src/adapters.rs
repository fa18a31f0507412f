//! Chooses the adapters a Lambda binary uses, from its environment.
//!
//! `COVID_ETL_DB` selects the embedded SQLite store and outbox (for running the binaries
//! locally); otherwise `TABLE_NAME` and `TOPIC_ARN` select DynamoDB and SNS.

use crate::error::{EtlError, Result};
use crate::notify::Notifier;
use crate::store::{SqliteDb, Store};
use std::sync::Arc;

fn required(name: &str) -> Result<String> {
    std::env::var(name)
        .map_err(|_| EtlError::InvalidInput(format!("environment variable {name} is not set")))
}

pub async fn store_from_env() -> Result<Arc<dyn Store>> {
    if let Ok(path) = std::env::var("COVID_ETL_DB") {
        return Ok(Arc::new(SqliteDb::open(path)?));
    }
    let table = required("TABLE_NAME")?;
    Err(EtlError::InvalidInput(format!(
        "DynamoDB store for {table} is not built yet"
    )))
}

pub async fn notifier_from_env() -> Result<Arc<dyn Notifier>> {
    if let Ok(path) = std::env::var("COVID_ETL_DB") {
        return Ok(Arc::new(SqliteDb::open(path)?));
    }
    let topic = required("TOPIC_ARN")?;
    Err(EtlError::InvalidInput(format!(
        "SNS notifier for {topic} is not built yet"
    )))
}
