//! The DynamoDB store: the series, its load marker and the run ledger in one table.
//!
//! # Table layout
//! A single-table design keyed so that every read is a GetItem or a Query on its own
//! partition, never a Scan — what a run or an API request reads grows with the series, not
//! with the number of runs. Partition key `pk` (S), sort key `sk` (S):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | one day of the series | `series` | `YYYY-MM-DD` | `cases`, `deaths`, `recovered` when reported |
//! | the load lease and marker | `meta` | `load` | `leaseHolder`, `leaseExpires`, `marker` |
//! | one execution's ledger record | `run` | the execution id | `startedAt`, `record` |
//!
//! An unknown `recovered` is an *absent* attribute, never 0. The local secondary index
//! [`RUNS_BY_START`] sorts the `run` partition by `startedAt`, so the newest runs are one
//! Query with a `Limit`; day items have no `startedAt` and are not in it. [`create_table`] is
//! the table as `serverless.yml` deploys it (a deployment test compares the two).
//!
//! # Reading
//! [`Store::series`] is one strongly consistent Query of the `series` partition (paged):
//! about 54 bytes a day, 6 read units for the 420 days of 2020-01-22…2021-03-16, whatever
//! the ledger holds. The load marker is one GetItem. The read units are computed
//! from the items' sizes with DynamoDB's rule and counted ([`DynamoStore::read_units`]), as
//! the write units are, because local servers report made-up consumed capacity.
//!
//! # Writing
//! [`Store::write`] puts the records with BatchWriteItem, [`MAX_BATCH`] (25) items per request,
//! at most [`WritePolicy::concurrency`] requests in flight. Items the service hands back as
//! `UnprocessedItems`, and whole requests refused with a throttling error
//! (`ProvisionedThroughputExceededException`, `ThrottlingException`, `RequestLimitExceeded`),
//! are re-sent with exponential backoff and full jitter, up to [`WritePolicy::max_attempts`]
//! sends per batch. What is still unwritten then fails the write with the retryable
//! [`EtlError::LoadIncomplete`] (or [`EtlError::StoreThrottled`] if the last answer was a
//! throttling error), naming how many items are missing; puts are idempotent and the next run
//! diffs against what the table holds, so it writes exactly what is missing. Any other error
//! is an [`EtlError::StoreError`] carrying the service's code and message.
//!
//! # Loading
//! [`Store::load`] serializes loads with a lease: the item `meta`/`load` names the load that
//! holds it and until when (a conditional UpdateItem takes it only when it is free or
//! expired). The same item holds the [`LoadMarker`]: set to `Loading` (under the lease)
//! before the first batch, and to `Loaded` with the sources' fingerprints after the last, in
//! the same conditional update that releases the lease. A load cut short anywhere leaves
//! `Loading` (or the previous marker, before any write): never a marker claiming data the
//! table does not hold. A load that finds the lease taken waits for it, up to
//! [`LeasePolicy::wait`], then fails with the retryable [`EtlError::LoadInProgress`].
//!
//! The cost reported in [`WriteReport::write_units`] is computed from the items' sizes with
//! DynamoDB's rule (attribute names plus values; 1 WCU per started KB per item), not taken
//! from the service: local servers report made-up figures. The service's own
//! `ConsumedCapacity` (requested as `TOTAL`) is logged next to it.

use super::{Applied, Load, LoadMarker, MarkerState, Store, WriteReport};
use crate::aws::sdk_error_text;
use crate::error::{EtlError, Result};
use crate::ledger::{RunLedger, RunRecord};
use crate::record::{DailyRecord, iso};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, ReturnConsumedCapacity, WriteRequest};
use futures::{StreamExt, stream};
use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The most items one BatchWriteItem request may carry.
pub const MAX_BATCH: usize = 25;

/// Error codes that mean "slow down": retried with backoff, [`EtlError::StoreThrottled`] if
/// they persist.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
];

/// How [`DynamoStore::write`] batches and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePolicy {
    /// Items per BatchWriteItem request (1..=25).
    pub batch_size: usize,
    /// BatchWriteItem requests in flight at once.
    pub concurrency: usize,
    /// Sends per batch, the first included, before giving up on what is left of it.
    pub max_attempts: u32,
    /// The backoff before the n-th re-send is drawn uniformly from
    /// `0..=min(max_delay, base_delay * 2^(n-1))` ("full jitter").
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for WritePolicy {
    fn default() -> Self {
        Self {
            batch_size: MAX_BATCH,
            concurrency: 4,
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl WritePolicy {
    /// The randomized wait before re-send number `retry` (1-based).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let cap = self
            .base_delay
            .saturating_mul(factor)
            .min(self.max_delay)
            .as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=cap))
    }
}

/// How [`DynamoStore::load`] takes the load lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasePolicy {
    /// How long a lease holds without being released. Longer than the DiffAndLoad Task's
    /// `TimeoutSeconds` (300), so a live load never outlasts its lease; a crashed one frees
    /// the table when it expires.
    pub duration: Duration,
    /// How long a load waits for a lease held by another before `LoadInProgress`.
    pub wait: Duration,
    /// The pause between two attempts to take it.
    pub poll: Duration,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(330),
            wait: Duration::from_secs(20),
            poll: Duration::from_millis(250),
        }
    }
}

/// The partition and sort key attributes.
const PK: &str = "pk";
const SK: &str = "sk";
/// The partitions.
const SERIES: &str = "series";
const META: &str = "meta";
const RUNS: &str = "run";
/// The sort key of the item that holds the load lease and the load marker.
const LOAD: &str = "load";
/// The local secondary index of the ledger by start time (`startedAt`).
pub const RUNS_BY_START: &str = "runs-by-start";

/// The series table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    policy: WritePolicy,
    lease: LeasePolicy,
    /// Read units consumed so far, computed from the sizes of the items read.
    read_units: Arc<AtomicU64>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            policy: WritePolicy::default(),
            lease: LeasePolicy::default(),
            read_units: Arc::default(),
        }
    }

    /// The strongly consistent read units this store's reads have consumed: per request,
    /// 1 per started 4 KB of the items it returned (at least 1).
    pub fn read_units(&self) -> u64 {
        self.read_units.load(Ordering::Relaxed)
    }

    fn count_read<'a>(&self, items: impl IntoIterator<Item = &'a HashMap<String, AttributeValue>>) {
        let bytes: usize = items.into_iter().map(item_size).sum();
        let units = (bytes.div_ceil(4096) as u64).max(1);
        self.read_units.fetch_add(units, Ordering::Relaxed);
    }

    /// A Query of one partition (of the table, or of `index`), newest-first when `backwards`,
    /// at most `limit` items, only the `projection` attributes (all when empty); every
    /// page's items in turn go to `each`.
    async fn query(
        &self,
        partition: &str,
        index: Option<&str>,
        backwards: bool,
        limit: Option<usize>,
        projection: &[&str],
        mut each: impl FnMut(&HashMap<String, AttributeValue>) -> Result<()>,
    ) -> Result<()> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index.map(str::to_string))
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(partition.into()))
            .scan_index_forward(!backwards)
            .set_limit(limit.map(|l| l.clamp(1, i32::MAX as usize) as i32));
        // A placeholder for every name: `date`-like reserved words never surprise.
        let names: Vec<String> = (0..projection.len()).map(|i| format!("#p{i}")).collect();
        for (placeholder, name) in names.iter().zip(projection) {
            request = request.expression_attribute_names(placeholder, *name);
        }
        if !names.is_empty() {
            request = request.projection_expression(names.join(", "));
        }
        let mut pages = request.into_paginator().send();
        let mut seen = 0usize;
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.call_error("Query", partition, sdk_error_text(&e).1))?;
            self.count_read(page.items());
            for item in page.items() {
                each(item)?;
                seen += 1;
                if limit.is_some_and(|l| seen >= l) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One item by its key, strongly consistent.
    async fn get(
        &self,
        partition: &str,
        sort: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(partition.into()))
            .key(SK, AttributeValue::S(sort.into()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| {
                let what = format!("{partition} {sort}");
                self.call_error("GetItem", what, sdk_error_text(&e).1)
            })?;
        self.count_read(out.item());
        Ok(out.item)
    }

    /// Replaces how the load lease is held and waited for.
    pub fn with_lease(mut self, lease: LeasePolicy) -> Self {
        self.lease = lease;
        self
    }

    /// A store whose client is built from `config` (see [`crate::aws::sdk_config`]).
    pub fn from_conf(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::new(Client::new(config), table)
    }

    /// Replaces the batching and retry policy (the batch size is clamped to 1..=25).
    pub fn with_policy(mut self, mut policy: WritePolicy) -> Self {
        policy.batch_size = policy.batch_size.clamp(1, MAX_BATCH);
        policy.concurrency = policy.concurrency.max(1);
        policy.max_attempts = policy.max_attempts.max(1);
        self.policy = policy;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one batch until every item is written or the attempts run out.
    async fn write_batch(&self, batch: &[DailyRecord]) -> BatchOutcome {
        let mut pending: Vec<WriteRequest> = batch.iter().map(put_request).collect();
        let mut outcome = BatchOutcome::default();
        for attempt in 1..=self.policy.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(self.policy.backoff(attempt - 1)).await;
            }
            outcome.requests += 1;
            let sent = pending.len();
            let result = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let reported: f64 = out
                        .consumed_capacity()
                        .iter()
                        .filter_map(|c| c.capacity_units())
                        .sum();
                    pending = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(&self.table))
                        .unwrap_or_default();
                    tracing::debug!(
                        table = %self.table,
                        sent,
                        unprocessed = pending.len(),
                        attempt,
                        service_reported_wcu = reported,
                        "BatchWriteItem"
                    );
                    outcome.failure = None;
                    if pending.is_empty() {
                        return outcome;
                    }
                    tracing::warn!(
                        table = %self.table,
                        unprocessed = pending.len(),
                        attempt,
                        "BatchWriteItem returned UnprocessedItems; re-sending them"
                    );
                }
                Err(e) => {
                    let (code, message) = sdk_error_text(&e);
                    if code
                        .as_deref()
                        .is_some_and(|c| THROTTLING_CODES.contains(&c))
                    {
                        tracing::warn!(table = %self.table, attempt, %message, "BatchWriteItem throttled");
                        outcome.failure = Some(Failure::Throttled(message));
                    } else {
                        outcome.unwritten = pending.len();
                        outcome.failure = Some(Failure::Fatal(message));
                        return outcome;
                    }
                }
            }
        }
        outcome.unwritten = pending.len();
        outcome
    }
}

#[derive(Debug, Default)]
struct BatchOutcome {
    requests: u64,
    /// Items of the batch not written when it gave up.
    unwritten: usize,
    /// The last error, when the last answer was one.
    failure: Option<Failure>,
}

#[derive(Debug)]
enum Failure {
    Throttled(String),
    Fatal(String),
}

#[async_trait]
impl Store for DynamoStore {
    async fn series(&self) -> Result<Vec<DailyRecord>> {
        let mut records = Vec::new();
        // Whole items: a projection would not lower the units (DynamoDB bills a Query by
        // the size of the items it reads), and whole items let them be counted exactly.
        self.query(SERIES, None, false, None, &[], |item| {
            records.push(record_from_item(item)?);
            Ok(())
        })
        .await?;
        tracing::debug!(table = %self.table, days = records.len(), "queried the series");
        Ok(records)
    }

    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport> {
        if records.is_empty() {
            return Ok(WriteReport::default());
        }
        // Futures are lazy: building them all up front sends nothing; `buffer_unordered`
        // then polls at most `concurrency` of them at a time.
        let batches: Vec<_> = records
            .chunks(self.policy.batch_size)
            .map(|batch| self.write_batch(batch))
            .collect();
        let outcomes: Vec<BatchOutcome> = stream::iter(batches)
            .buffer_unordered(self.policy.concurrency)
            .collect()
            .await;

        let requests: u64 = outcomes.iter().map(|o| o.requests).sum();
        let unwritten: usize = outcomes.iter().map(|o| o.unwritten).sum();
        let fatal = outcomes.iter().find_map(|o| match &o.failure {
            Some(Failure::Fatal(m)) => Some(m.clone()),
            _ => None,
        });
        let throttled = outcomes.iter().find_map(|o| match &o.failure {
            Some(Failure::Throttled(m)) if o.unwritten > 0 => Some(m.clone()),
            _ => None,
        });
        let what = format!(
            "{unwritten} of {} items not written to {} ({requests} BatchWriteItem requests, \
             up to {} attempts per batch); a rerun writes exactly the missing days",
            records.len(),
            self.table,
            self.policy.max_attempts
        );
        if let Some(message) = fatal {
            return Err(EtlError::StoreError(format!(
                "BatchWriteItem {}: {message}; {what}",
                self.table
            )));
        }
        if let Some(message) = throttled {
            return Err(EtlError::StoreThrottled(format!("{message}; {what}")));
        }
        if unwritten > 0 {
            return Err(EtlError::LoadIncomplete(format!(
                "UnprocessedItems left after retries: {what}"
            )));
        }
        let write_units = records.iter().map(write_units).sum();
        tracing::info!(
            table = %self.table,
            items = records.len(),
            requests,
            write_units,
            "written"
        );
        Ok(WriteReport {
            requests,
            write_units,
        })
    }

    async fn load(&self, load: &Load) -> Result<Applied> {
        let holder = format!("{}#{:016x}", load.execution_id, rand::random::<u64>());
        self.take_lease(&holder).await?;
        let result = self.load_under_lease(load, &holder).await;
        if result.is_err() {
            // Best effort: an expired lease frees the table anyway.
            if let Err(e) = self.set_marker(&holder, None).await {
                tracing::warn!(table = %self.table, error = %e, "could not release the load lease");
            }
        }
        result
    }

    async fn marker(&self) -> Result<Option<LoadMarker>> {
        self.get(META, LOAD)
            .await?
            .as_ref()
            .and_then(|item| item.get("marker"))
            .map(|v| {
                let text = v
                    .as_s()
                    .map_err(|_| EtlError::StoreError("load marker is not a string".into()))?;
                serde_json::from_str(text).map_err(EtlError::store)
            })
            .transpose()
    }
}

fn epoch_ms(t: std::time::SystemTime) -> String {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

impl DynamoStore {
    /// A failed call on the table: `{op} {table} ({what it was about}): {service message}`.
    fn call_error(&self, op: &str, what: impl Display, e: impl Display) -> EtlError {
        EtlError::StoreError(format!("{op} {} ({what}): {e}", self.table))
    }

    fn meta_error(&self, op: &str, e: impl Display) -> EtlError {
        self.call_error(op, format_args!("{META} {LOAD}"), e)
    }

    /// Takes the lease for `holder` when it is free or expired, waiting up to
    /// [`LeasePolicy::wait`] for another holder to finish.
    async fn take_lease(&self, holder: &str) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            let now = std::time::SystemTime::now();
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, AttributeValue::S(META.into()))
                .key(SK, AttributeValue::S(LOAD.into()))
                .update_expression("SET leaseHolder = :me, leaseExpires = :until")
                .condition_expression("attribute_not_exists(leaseHolder) OR leaseExpires < :now")
                .expression_attribute_values(":me", AttributeValue::S(holder.into()))
                .expression_attribute_values(
                    ":until",
                    AttributeValue::N(epoch_ms(now + self.lease.duration)),
                )
                .expression_attribute_values(":now", AttributeValue::N(epoch_ms(now)))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    if started.elapsed() >= self.lease.wait {
                        return Err(EtlError::LoadInProgress(format!(
                            "another execution holds the load lease of {} (waited {} s)",
                            self.table,
                            self.lease.wait.as_secs()
                        )));
                    }
                    tokio::time::sleep(self.lease.poll).await;
                }
                Err(e) => return Err(self.meta_error("UpdateItem", sdk_error_text(&e).1)),
            }
        }
    }

    /// Sets the marker while `holder` holds the lease; `Loaded` (or `None`: no new marker)
    /// also releases the lease.
    async fn set_marker(&self, holder: &str, marker: Option<&LoadMarker>) -> Result<()> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(META.into()))
            .key(SK, AttributeValue::S(LOAD.into()))
            .condition_expression("leaseHolder = :me")
            .expression_attribute_values(":me", AttributeValue::S(holder.into()));
        let release = "REMOVE leaseHolder, leaseExpires";
        update = match marker {
            Some(m) => {
                let text = serde_json::to_string(m).map_err(EtlError::store)?;
                let expression = match m.state {
                    MarkerState::Loading => "SET #m = :m".to_string(),
                    MarkerState::Loaded => format!("SET #m = :m {release}"),
                };
                // A placeholder for every name, as for `date`: no reserved-word surprises.
                update
                    .update_expression(expression)
                    .expression_attribute_names("#m", "marker")
                    .expression_attribute_values(":m", AttributeValue::S(text))
            }
            None => update.update_expression(release),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Err(EtlError::LoadIncomplete(format!(
                    "the load lease of {} expired before the load finished; the marker says \
                     Loading until a load completes",
                    self.table
                )))
            }
            Err(e) => Err(self.meta_error("UpdateItem", sdk_error_text(&e).1)),
        }
    }

    async fn load_under_lease(&self, load: &Load, holder: &str) -> Result<Applied> {
        let plan = load.plan(&self.series().await?);
        let mut cost = WriteReport::default();
        if !plan.writes.is_empty() {
            self.set_marker(holder, Some(&load.marker(&plan, MarkerState::Loading)))
                .await?;
            cost = self.write(&plan.writes).await?;
        }
        self.set_marker(holder, Some(&load.marker(&plan, MarkerState::Loaded)))
            .await?;
        Ok(Applied { plan, cost })
    }
}

/// The item for one day: `recovered` is left out when unknown.
pub fn item(record: &DailyRecord) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PK.to_string(), AttributeValue::S(SERIES.into())),
        (SK.to_string(), AttributeValue::S(iso(record.date))),
        (
            "cases".to_string(),
            AttributeValue::N(record.cases.to_string()),
        ),
        (
            "deaths".to_string(),
            AttributeValue::N(record.deaths.to_string()),
        ),
    ]);
    if let Some(r) = record.recovered {
        item.insert("recovered".to_string(), AttributeValue::N(r.to_string()));
    }
    item
}

fn put_request(record: &DailyRecord) -> WriteRequest {
    let put = PutRequest::builder()
        .set_item(Some(item(record)))
        .build()
        .expect("a PutRequest with an item is complete");
    WriteRequest::builder().put_request(put).build()
}

/// The day a `series` item holds; a malformed one is a corrupt day, a [`EtlError::StoreError`].
pub fn record_from_item(item: &HashMap<String, AttributeValue>) -> Result<DailyRecord> {
    let key = match item.get(SK) {
        Some(AttributeValue::S(key)) => key.as_str(),
        _ => {
            return Err(EtlError::StoreError(
                "a series item without its date (sk)".into(),
            ));
        }
    };
    let date = crate::record::parse_iso(key.as_bytes())
        .map_err(|_| EtlError::StoreError(format!("series item {key:?}: sk is not a date")))?;
    let number = |name: &str| -> Result<Option<u64>> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
                EtlError::StoreError(format!("item {key}: {name} = {n} is not a count"))
            }),
            Some(other) => Err(EtlError::StoreError(format!(
                "item {key}: {name} is not a number ({other:?})"
            ))),
        }
    };
    let required = |name: &str| -> Result<u64> {
        number(name)?.ok_or_else(|| EtlError::StoreError(format!("item {key}: {name} is missing")))
    };
    Ok(DailyRecord::new(
        date,
        required("cases")?,
        required("deaths")?,
        number("recovered")?,
    ))
}

/// The size DynamoDB bills for an item: each attribute's name (UTF-8 bytes) plus its value; a
/// string is its UTF-8 length, a number is 1 byte plus 1 per two significant digits.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => number_size(n),
                    AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                    other => format!("{other:?}").len(),
                }
        })
        .sum()
}

fn number_size(n: &str) -> usize {
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

/// Write capacity units to put `record`: 1 per started KB of its item.
pub fn write_units(record: &DailyRecord) -> u64 {
    (item_size(&item(record)).div_ceil(1024) as u64).max(1)
}

fn parse_run(item: &HashMap<String, AttributeValue>) -> Result<RunRecord> {
    let text = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| EtlError::StoreError("a run item without its record".into()))?;
    serde_json::from_str(text).map_err(EtlError::store)
}

/// The run ledger shares the series table, in its own partition (`run`): one table keeps the
/// deployment, IAM and backups simple, and no read of one partition touches the other.
#[async_trait]
impl RunLedger for DynamoStore {
    async fn record_run(&self, run: &RunRecord) -> Result<()> {
        let text = serde_json::to_string(run).map_err(EtlError::store)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, AttributeValue::S(RUNS.into()))
            .item(SK, AttributeValue::S(run.execution_id.clone()))
            .item("startedAt", AttributeValue::S(run.started_at.clone()))
            .item("record", AttributeValue::S(text))
            .send()
            .await
            .map_err(|e| self.call_error("PutItem", "run ledger", sdk_error_text(&e).1))?;
        Ok(())
    }

    async fn run(&self, execution_id: &str) -> Result<Option<RunRecord>> {
        self.get(RUNS, execution_id)
            .await?
            .as_ref()
            .map(parse_run)
            .transpose()
    }

    async fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut runs = Vec::new();
        if limit == 0 {
            return Ok(runs);
        }
        let index = Some(RUNS_BY_START);
        self.query(RUNS, index, true, Some(limit), &["record"], |item| {
            runs.push(parse_run(item)?);
            Ok(())
        })
        .await?;
        Ok(runs)
    }
}

/// Creates the table as `serverless.yml` deploys it (keys, index, on-demand billing): for
/// tests against a local server, and for anyone running the pipeline on their own table.
pub async fn create_table(client: &Client, name: &str) -> Result<()> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let string = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("a complete attribute definition")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("a complete key element")
    };
    let by_start = LocalSecondaryIndex::builder()
        .index_name(RUNS_BY_START)
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key("startedAt", KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("record")
                .build(),
        )
        .build()
        .expect("a complete index");
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(string(PK))
        .attribute_definitions(string(SK))
        .attribute_definitions(string("startedAt"))
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .local_secondary_indexes(by_start)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| {
            EtlError::StoreError(format!("CreateTable {name}: {}", sdk_error_text(&e).1))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, cases: u64, deaths: u64, recovered: Option<u64>) -> DailyRecord {
        DailyRecord::new(
            crate::record::parse_iso(d.as_bytes()).unwrap(),
            cases,
            deaths,
            recovered,
        )
    }

    #[test]
    fn items_omit_unknown_recovered_and_round_trip() {
        let known = day("2020-03-01", 75, 1, Some(7));
        let unknown = day("2020-03-02", 100, 0, None);
        assert_eq!(item(&known).len(), 5);
        assert!(!item(&unknown).contains_key("recovered"));
        assert_eq!(record_from_item(&item(&known)).unwrap(), known);
        assert_eq!(record_from_item(&item(&unknown)).unwrap(), unknown);
    }

    #[test]
    fn broken_days_are_errors() {
        let mut not_a_date = item(&day("2020-03-01", 1, 1, None));
        not_a_date.insert(SK.into(), AttributeValue::S("2020-02-30".into()));
        assert!(matches!(
            record_from_item(&not_a_date),
            Err(EtlError::StoreError(m)) if m.contains("sk is not a date")
        ));
        let mut broken = item(&day("2020-03-01", 1, 1, None));
        broken.remove("deaths");
        assert!(matches!(
            record_from_item(&broken),
            Err(EtlError::StoreError(m)) if m.contains("deaths is missing")
        ));
    }

    #[test]
    fn item_sizes_follow_the_dynamodb_rule() {
        // pk(2)+6, sk(2)+10, cases(5)+1+ceil(5/2)=9, deaths(6)+1+1=8, recovered(9)+1+1=11
        let r = day("2020-03-01", 12345, 1, Some(7));
        assert_eq!(item_size(&item(&r)), 8 + 12 + 9 + 8 + 11);
        assert_eq!(number_size("1000000"), 2);
        assert_eq!(number_size("0"), 1);
        assert_eq!(write_units(&r), 1);
        let big = HashMap::from([("date".to_string(), AttributeValue::S("x".repeat(2000)))]);
        assert_eq!(item_size(&big).div_ceil(1024), 2);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = WritePolicy::default();
        for retry in 1..20 {
            assert!(p.backoff(retry) <= p.max_delay);
        }
        assert!(p.backoff(1) <= p.base_delay);
    }
}
