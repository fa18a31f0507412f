//! Chooses the adapters a Lambda binary uses, from its environment.
//!
//! `COVID_ETL_DB` selects the embedded SQLite store and outbox (for running the binaries
//! locally); otherwise `TABLE_NAME` and `TOPIC_ARN` select DynamoDB and SNS, with clients built
//! from the standard AWS configuration ([`crate::aws::default_config`], which honours
//! `AWS_ENDPOINT_URL`).

use crate::error::{EtlError, Result};
use crate::ledger::RunLedger;
use crate::notify::{Notifier, SnsNotifier};
use crate::store::{DynamoStore, SqliteDb, Store};
use std::sync::Arc;

fn required(name: &str) -> Result<String> {
    std::env::var(name)
        .map_err(|_| EtlError::InvalidInput(format!("environment variable {name} is not set")))
}

/// The table: the series and the run ledger live in the same place.
pub struct Table {
    pub store: Arc<dyn Store>,
    pub ledger: Arc<dyn RunLedger>,
}

pub async fn table_from_env() -> Result<Table> {
    if let Ok(path) = std::env::var("COVID_ETL_DB") {
        let db = Arc::new(SqliteDb::open(path)?);
        return Ok(Table {
            store: db.clone(),
            ledger: db,
        });
    }
    let table = required("TABLE_NAME")?;
    let dynamo = Arc::new(DynamoStore::from_conf(
        crate::aws::default_config().await,
        table,
    ));
    Ok(Table {
        store: dynamo.clone(),
        ledger: dynamo,
    })
}

pub async fn notifier_from_env() -> Result<Arc<dyn Notifier>> {
    if let Ok(path) = std::env::var("COVID_ETL_DB") {
        return Ok(Arc::new(SqliteDb::open(path)?));
    }
    let topic = required("TOPIC_ARN")?;
    Ok(Arc::new(SnsNotifier::from_conf(
        crate::aws::default_config().await,
        topic,
    )))
}
