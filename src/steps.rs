//! One function per state of the state machine. The Lambda binaries and the local engine call
//! exactly these, so a local run exercises the code production runs.

use crate::diff;
use crate::error::{EtlError, Result};
use crate::extract::{self, HttpConfig, Location, SourceKind};
use crate::merge::{self, DateSpan};
use crate::notify::{Notification, Notifier, subject_line};
use crate::payload::*;
use crate::store::Store;
use std::collections::BTreeMap;

/// Where the sources are by default and how to download them.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub nyt: String,
    pub jhu: String,
    pub http: HttpConfig,
}

impl SourceConfig {
    /// The live URLs, overridden by `NYT_URL` / `JHU_URL`, and [`HttpConfig::from_env`].
    pub fn from_env() -> Self {
        let var = |name, default: SourceKind| {
            std::env::var(name).unwrap_or_else(|_| default.default_url().to_string())
        };
        Self {
            nyt: var("NYT_URL", SourceKind::Nyt),
            jhu: var("JHU_URL", SourceKind::Jhu),
            http: HttpConfig::from_env(),
        }
    }

    fn location(&self, kind: SourceKind, options: &RunOptions) -> Location {
        let (overridden, default) = match kind {
            SourceKind::Nyt => (&options.nyt, &self.nyt),
            SourceKind::Jhu => (&options.jhu, &self.jhu),
        };
        Location::parse(overridden.as_deref().unwrap_or(default))
    }
}

/// The extract states: fetch, validate and fingerprint one source.
pub async fn extract(
    kind: SourceKind,
    request: ExtractRequest,
    config: SourceConfig,
) -> Result<extract::Extract> {
    let location = config.location(kind, &request.options);
    extract::extract(kind, &location, &config.http, None, true).await
}

/// The thresholds behind the merge step's data-quality warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityPolicy {
    /// A source whose newest date is older than this many days is reported as stale (both
    /// real sources stopped updating in March 2023: a run must say so, not succeed quietly).
    pub stale_after_days: i64,
    /// Fewer common dates than this is reported (none at all is an error).
    pub min_overlap_days: usize,
}

impl Default for QualityPolicy {
    fn default() -> Self {
        Self {
            stale_after_days: 3,
            min_overlap_days: 30,
        }
    }
}

impl QualityPolicy {
    /// Defaults, overridden by `STALE_AFTER_DAYS` and `MIN_OVERLAP_DAYS`.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<i64>().ok());
        let d = Self::default();
        Self {
            stale_after_days: var("STALE_AFTER_DAYS").unwrap_or(d.stale_after_days),
            min_overlap_days: var("MIN_OVERLAP_DAYS")
                .map_or(d.min_overlap_days, |v| v.max(0) as usize),
        }
    }
}

/// The merge state: join on date, collect the warnings of both sources and add the
/// cross-source ones: stale sources (against `today`, injected so it is testable), a short
/// overlap, and JHU `Recovered` missing on the latest days.
pub fn merge(
    request: MergeRequest,
    policy: &QualityPolicy,
    today: chrono::NaiveDate,
) -> Result<Merged> {
    let MergeRequest { nyt, jhu } = request;
    let joined = merge::join(&nyt.records, &jhu.records)?;
    let mut warnings: Vec<String> = nyt.warnings.into_iter().chain(jhu.warnings).collect();
    for (name, records) in [("nyt", &nyt.records), ("jhu", &jhu.records)] {
        if let Some(newest) = records.last().map(|r| r.date) {
            let age = (today - newest).num_days();
            if age > policy.stale_after_days {
                warnings.push(format!(
                    "{name} is stale: its newest date {} is {age} days old (limit {} days); the source may have stopped updating",
                    crate::record::iso(newest),
                    policy.stale_after_days
                ));
            }
        }
    }
    if joined.records.len() < policy.min_overlap_days {
        warnings.push(format!(
            "the sources overlap on only {} days (fewer than {})",
            joined.records.len(),
            policy.min_overlap_days
        ));
    }
    let missing_recovered = joined
        .records
        .iter()
        .rev()
        .take_while(|r| r.recovered.is_none())
        .count();
    if missing_recovered > 0 {
        let since = joined.records[joined.records.len() - missing_recovered].date;
        warnings.push(format!(
            "jhu Recovered is not reported for the latest {missing_recovered} days (since {})",
            crate::record::iso(since)
        ));
    }
    tracing::info!(
        merged = joined.records.len(),
        nyt_only = ?joined.dropped.nyt_only,
        jhu_only = ?joined.dropped.jhu_only,
        "merged"
    );
    Ok(Merged {
        records: joined.records,
        dropped: joined.dropped,
        warnings,
        fingerprints: Fingerprints {
            nyt: nyt.fingerprint,
            jhu: jhu.fingerprint,
        },
    })
}

/// The diff-and-load state: plan against what the store holds, then write the plan (unless
/// this is a dry run). Nothing is written when nothing changed.
pub async fn diff_and_load(request: LoadRequest, store: &dyn Store) -> Result<LoadReport> {
    let LoadRequest { merged, options } = request;
    let stored = store.series().await?;
    let plan = diff::plan(&stored, &merged.records, options.full_reload);
    let cost = if options.dry_run || plan.writes.is_empty() {
        Default::default()
    } else {
        store.write(&plan.writes).await?
    };
    let report = LoadReport {
        counts: plan.counts,
        written: if options.dry_run {
            0
        } else {
            plan.writes.len() as u64
        },
        dry_run: options.dry_run,
        full_reload: options.full_reload,
        write_requests: cost.requests,
        write_units: cost.write_units,
        latest: merged.records.last().copied(),
        changed: DateSpan::group(plan.changed.iter().map(|(r, _)| r.date)),
    };
    tracing::info!(
        inserted = report.counts.inserted,
        updated = report.counts.updated,
        unchanged = report.counts.unchanged,
        written = report.written,
        dry_run = report.dry_run,
        "loaded"
    );
    Ok(report)
}

/// The notify state: compose the message once and hand it to the notifier.
pub async fn notify(request: NotifyRequest, notifier: &dyn Notifier) -> Result<NotifyResponse> {
    let notification = compose(&request);
    notifier.publish(&notification).await?;
    Ok(NotifyResponse {
        subject: notification.subject,
        request,
    })
}

/// The notification text for a run's outcome.
pub fn compose(r: &NotifyRequest) -> Notification {
    let who = if r.execution_name.is_empty() {
        "covid-etl run".to_string()
    } else {
        format!("covid-etl execution {}", r.execution_name)
    };
    let mut lines = Vec::new();
    let mut attributes = BTreeMap::new();
    let subject;
    match r.status {
        RunStatus::Succeeded => {
            attributes.insert("status".into(), "SUCCEEDED".into());
            let load = r.load.clone().unwrap_or_default();
            let c = load.counts;
            subject = format!(
                "covid-etl SUCCEEDED: {} inserted, {} updated{}",
                c.inserted,
                c.updated,
                load.latest
                    .map(|l| format!(", latest {}", crate::record::iso(l.date)))
                    .unwrap_or_default()
            );
            lines.push(format!("{who} succeeded."));
            lines.push(format!(
                "Loaded: {} inserted, {} updated, {} unchanged{}.",
                c.inserted,
                c.updated,
                c.unchanged,
                if load.dry_run {
                    " (dry run: nothing written)"
                } else if load.full_reload {
                    " (full reload: every row rewritten)"
                } else {
                    ""
                }
            ));
            if let Some(l) = load.latest {
                lines.push(format!(
                    "Latest day {}: {} cases, {} deaths, recovered {}.",
                    crate::record::iso(l.date),
                    l.cases,
                    l.deaths,
                    l.recovered
                        .map_or("not reported".to_string(), |v| v.to_string())
                ));
            }
            if let Some(d) = &r.dropped {
                let list = |spans: &[DateSpan]| {
                    if spans.is_empty() {
                        "none".to_string()
                    } else {
                        spans
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                lines.push(format!(
                    "Dates in one source only (not loaded): NYT only: {}; JHU only: {}.",
                    list(&d.nyt_only),
                    list(&d.jhu_only)
                ));
            }
        }
        RunStatus::Failed => {
            attributes.insert("status".into(), "FAILED".into());
            let state = r.failed_state.clone().unwrap_or_else(|| "unknown".into());
            attributes.insert("failedState".into(), state.clone());
            let (error, message) = r
                .error
                .as_ref()
                .map(|e| (e.error.clone(), e.message()))
                .unwrap_or_else(|| ("unknown".into(), String::new()));
            subject = format!("covid-etl FAILED in {state}: {error}");
            lines.push(format!("{who} failed in state {state}."));
            lines.push(format!("Error: {error}"));
            lines.push(format!("Cause: {message}"));
            lines.push("Nothing from this run was written; a rerun is safe.".into());
        }
    }
    if !r.execution_id.is_empty() {
        lines.push(format!("Execution: {}", r.execution_id));
    }
    if !r.warnings.is_empty() {
        lines.push(format!("Warnings ({}):", r.warnings.len()));
        lines.extend(r.warnings.iter().map(|w| format!("- {w}")));
    }
    Notification {
        subject: subject_line(&subject),
        message: lines.join("\n"),
        attributes,
    }
}

/// A payload that does not deserialize is a mismatch between the definition and the code.
pub fn parse_payload<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| EtlError::InvalidInput(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Dropped;
    use crate::notify::MockNotifier;
    use crate::record::DailyRecord;
    use crate::store::MockStore;
    use chrono::NaiveDate;

    fn load_request(dry_run: bool) -> LoadRequest {
        let d = NaiveDate::from_ymd_opt(2020, 3, 1).unwrap();
        LoadRequest {
            merged: Merged {
                records: vec![DailyRecord::new(d, 1, 0, None)],
                dropped: Dropped::default(),
                warnings: vec![],
                fingerprints: Fingerprints::default(),
            },
            options: RunOptions {
                dry_run,
                ..RunOptions::default()
            },
        }
    }

    #[tokio::test]
    async fn a_throttled_store_surfaces_the_transient_error() {
        let mut store = MockStore::new();
        store.expect_series().returning(|| Ok(vec![]));
        store
            .expect_write()
            .times(1)
            .returning(|_| Err(EtlError::StoreThrottled("slow down".into())));
        let e = diff_and_load(load_request(false), &store)
            .await
            .unwrap_err();
        assert_eq!(e.name(), "StoreThrottled");
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn a_failed_read_writes_nothing_and_a_dry_run_never_writes() {
        let mut store = MockStore::new();
        store
            .expect_series()
            .returning(|| Err(EtlError::StoreError("no such table".into())));
        store.expect_write().never();
        assert_eq!(
            diff_and_load(load_request(false), &store)
                .await
                .unwrap_err()
                .name(),
            "StoreError"
        );

        let mut store = MockStore::new();
        store.expect_series().returning(|| Ok(vec![]));
        store.expect_write().never();
        let report = diff_and_load(load_request(true), &store).await.unwrap();
        assert_eq!((report.counts.inserted, report.written), (1, 0));
    }

    #[tokio::test]
    async fn a_failing_notifier_fails_the_notify_step() {
        let mut notifier = MockNotifier::new();
        notifier
            .expect_publish()
            .withf(|n| n.subject == "covid-etl FAILED in Merge: DataQualityError")
            .returning(|_| Err(EtlError::NotifyError("topic gone".into())));
        let request = NotifyRequest {
            status: RunStatus::Failed,
            execution_id: String::new(),
            execution_name: "x".into(),
            load: None,
            dropped: None,
            warnings: vec![],
            failed_state: Some("Merge".into()),
            error: Some(ErrorInfo {
                error: "DataQualityError".into(),
                cause: ErrorInfo::lambda_cause(&EtlError::NoOverlap("none".into())),
            }),
        };
        let e = notify(request, &notifier).await.unwrap_err();
        assert_eq!(e.name(), "NotifyError");
    }

    #[test]
    fn failure_messages_show_the_lambda_error_message_not_its_json() {
        let request = NotifyRequest {
            status: RunStatus::Failed,
            execution_id: "arn:x".into(),
            execution_name: "daily".into(),
            load: None,
            dropped: None,
            warnings: vec![],
            failed_state: Some("Extract".into()),
            error: Some(ErrorInfo {
                error: "SourceUnavailable".into(),
                cause: r#"{"errorType":"SourceUnavailable","errorMessage":"nyt unavailable at u: HTTP 500"}"#
                    .into(),
            }),
        };
        let n = compose(&request);
        assert_eq!(n.attributes["failedState"], "Extract");
        assert!(
            n.message.contains("Cause: nyt unavailable at u: HTTP 500"),
            "{}",
            n.message
        );
    }
}
