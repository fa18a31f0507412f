//! The composition root: the one place that picks the backends — the embedded SQLite file, or
//! a DynamoDB table and an SNS topic — and builds all of them together, once, from one
//! configuration. The CLI and every Lambda binary get their series store, run ledger,
//! notifier and fallback from here, so the ledger and the no-new-data marker always live
//! with the series they describe.

use crate::error::{EtlError, Result};
use crate::ledger::RunLedger;
use crate::notify::{Notifier, SnsNotifier};
#[cfg(feature = "sqlite")]
use crate::store::SqliteDb;
use crate::store::{DynamoStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the series, its load marker and the run ledger live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded database file.
    Sqlite(PathBuf),
    /// A DynamoDB table (series, ledger and marker share it).
    DynamoDb { table: String },
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyConfig {
    /// The outbox table of the embedded database file.
    Outbox(PathBuf),
    /// An SNS topic.
    Sns { topic_arn: String },
    /// No topic: a function that never notifies is deployed without `TOPIC_ARN` (each
    /// function gets only the environment it reads). Publishing is refused as a
    /// configuration error; the notify function requires the topic at start instead
    /// ([`BackendConfig::require_topic`]).
    Unset,
}

/// Everything [`Backends::build`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub store: StoreConfig,
    pub notify: NotifyConfig,
    /// Where the local engine keeps its executions and their history (the CLI); `None` on
    /// AWS, where Step Functions keeps them.
    pub history: Option<PathBuf>,
    /// An AWS endpoint other than the standard one (a local server); `None`: the standard
    /// configuration chain, which honours `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
}

impl BackendConfig {
    /// Everything in one embedded database file.
    pub fn local(db: impl Into<PathBuf>) -> Self {
        let db = db.into();
        Self {
            store: StoreConfig::Sqlite(db.clone()),
            notify: NotifyConfig::Outbox(db.clone()),
            history: Some(db),
            endpoint_url: None,
        }
    }

    /// A Lambda's environment: `COVID_ETL_DB` selects the embedded database (running the
    /// binaries locally); otherwise `TABLE_NAME` selects DynamoDB and `TOPIC_ARN`, where the
    /// function has it, SNS.
    pub fn from_env() -> Result<Self> {
        if let Ok(path) = std::env::var("COVID_ETL_DB") {
            return Ok(Self::local(path));
        }
        Ok(Self {
            store: StoreConfig::DynamoDb {
                table: required("TABLE_NAME")?,
            },
            notify: std::env::var("TOPIC_ARN").map_or(NotifyConfig::Unset, |topic_arn| {
                NotifyConfig::Sns { topic_arn }
            }),
            history: None,
            endpoint_url: None,
        })
    }

    /// For a process whose job is to notify: no topic is an error at start, not at the
    /// first message.
    pub fn require_topic(self) -> Result<Self> {
        match self.notify {
            NotifyConfig::Unset => Err(EtlError::ConfigError {
                variable: "TOPIC_ARN",
                value: String::new(),
                reason: "is not set: the notify function needs the topic".into(),
            }),
            _ => Ok(self),
        }
    }
}

/// The notifier of a process configured without a topic.
struct NoTopic;

#[async_trait::async_trait]
impl Notifier for NoTopic {
    async fn publish(&self, _: &crate::notify::Notification) -> Result<()> {
        Err(EtlError::ConfigError {
            variable: "TOPIC_ARN",
            value: String::new(),
            reason: "is not set: this function was deployed without a topic".into(),
        })
    }
}

fn required(name: &'static str) -> Result<String> {
    std::env::var(name).map_err(|_| EtlError::ConfigError {
        variable: name,
        value: String::new(),
        reason: "is not set".into(),
    })
}

/// The backends of one process, built together.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub ledger: Arc<dyn RunLedger>,
    pub notifier: Arc<dyn Notifier>,
    /// Where the failure branch's direct `sns:publish` goes (on AWS, the same topic).
    pub fallback: Arc<dyn Notifier>,
    /// The local engine's executions and history, when configured.
    #[cfg(feature = "sqlite")]
    pub history: Option<SqliteDb>,
}

impl Backends {
    /// Opens each backend once; one file shared by several roles is opened once.
    pub async fn build(config: &BackendConfig) -> Result<Self> {
        #[cfg(feature = "sqlite")]
        let mut files = SqliteFiles::default();
        let endpoint = config.endpoint_url.as_deref();
        let (store, ledger): (Arc<dyn Store>, Arc<dyn RunLedger>) = match &config.store {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite(path) => {
                let db = Arc::new(files.open(path)?);
                (db.clone(), db)
            }
            #[cfg(not(feature = "sqlite"))]
            StoreConfig::Sqlite(path) => return Err(no_database(path)),
            StoreConfig::DynamoDb { table } => {
                let dynamo = Arc::new(DynamoStore::from_conf(&aws_config(endpoint).await, table));
                (dynamo.clone(), dynamo)
            }
        };
        let notifier: Arc<dyn Notifier> = match &config.notify {
            #[cfg(feature = "sqlite")]
            NotifyConfig::Outbox(path) => Arc::new(files.open(path)?),
            #[cfg(not(feature = "sqlite"))]
            NotifyConfig::Outbox(path) => return Err(no_database(path)),
            NotifyConfig::Sns { topic_arn } => Arc::new(SnsNotifier::from_conf(
                &aws_config(endpoint).await,
                topic_arn,
            )),
            NotifyConfig::Unset => Arc::new(NoTopic),
        };
        #[cfg(feature = "sqlite")]
        let history = config.history.as_ref().map(|p| files.open(p)).transpose()?;
        Ok(Self {
            store,
            ledger,
            fallback: notifier.clone(),
            notifier,
            #[cfg(feature = "sqlite")]
            history,
        })
    }

    /// [`BackendConfig::from_env`], built: what a Lambda binary starts with.
    pub async fn from_env() -> Result<Self> {
        Self::build(&BackendConfig::from_env()?).await
    }
}

/// The embedded database files of one process: a file that plays several roles (series,
/// outbox, history) is opened once.
#[cfg(feature = "sqlite")]
#[derive(Default)]
struct SqliteFiles {
    opened: Option<(PathBuf, SqliteDb)>,
}

#[cfg(feature = "sqlite")]
impl SqliteFiles {
    fn open(&mut self, path: &PathBuf) -> Result<SqliteDb> {
        match &self.opened {
            Some((p, db)) if p == path => Ok(db.clone()),
            _ => {
                let db = SqliteDb::open(path).map_err(|e| {
                    EtlError::StoreError(format!("cannot open {}: {e}", path.display()))
                })?;
                self.opened = Some((path.clone(), db.clone()));
                Ok(db)
            }
        }
    }
}

/// A build without the embedded database (every Lambda function) refuses a file.
#[cfg(not(feature = "sqlite"))]
fn no_database(path: &std::path::Path) -> EtlError {
    EtlError::ConfigError {
        variable: "COVID_ETL_DB",
        value: path.display().to_string(),
        reason: "this build has no embedded database (built without the `sqlite` feature)".into(),
    }
}

/// The shared per-process configuration for the standard endpoint, a fresh one otherwise.
async fn aws_config(endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    match endpoint_url {
        None => crate::aws::default_config().await.clone(),
        Some(url) => crate::aws::sdk_config(Some(url)).await,
    }
}
