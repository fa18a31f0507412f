//! One function per state of the state machine. The Lambda binaries and the local engine call
//! exactly these, so a local run exercises the code production runs.

use crate::diff;
use crate::error::{EtlError, Result};
use crate::extract::{self, HttpConfig, Location, SourceKind};
use crate::ledger::{RunLedger, RunOutcome, RunRecord};
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

/// The extract states: fetch, validate and fingerprint one source. The last successful
/// run's fingerprint (from the ledger) tells whether the source changed, and over HTTP makes
/// the request conditional. A full reload ignores it: everything is fetched and rewritten.
pub async fn extract(
    kind: SourceKind,
    request: ExtractRequest,
    config: SourceConfig,
    ledger: &dyn RunLedger,
) -> Result<extract::Extract> {
    let location = config.location(kind, &request.options);
    let previous = if request.options.full_reload {
        None
    } else {
        ledger
            .last_success()
            .await?
            .and_then(|run| run.fingerprints)
    };
    let previous = previous.map(|f| match kind {
        SourceKind::Nyt => f.nyt,
        SourceKind::Jhu => f.jhu,
    });
    extract::extract(
        kind,
        &location,
        &config.http,
        previous.as_ref(),
        request.conditional,
    )
    .await
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

/// Whether a run that found no new data sends a message (it is always recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifySettings {
    pub notify_no_new_data: bool,
}

impl NotifySettings {
    /// `NOTIFY_NO_NEW_DATA=false` silences the short "no new data" message.
    pub fn from_env() -> Self {
        Self {
            notify_no_new_data: std::env::var("NOTIFY_NO_NEW_DATA").map_or(true, |v| v != "false"),
        }
    }
}

/// The notify states: record the run in the ledger, compose the message once and hand it to
/// the notifier. The ledger is written first, so a rerun after a delivery failure finds the
/// run already recorded (writing it again is harmless).
pub async fn notify(
    request: NotifyRequest,
    notifier: &dyn Notifier,
    ledger: &dyn RunLedger,
    settings: NotifySettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NotifyResponse> {
    ledger.record_run(&run_record(&request, now)).await?;
    let notification = compose(&request);
    if request.status != RunOutcome::NoNewData || settings.notify_no_new_data {
        notifier.publish(&notification).await?;
    }
    Ok(NotifyResponse {
        subject: notification.subject,
        request,
    })
}

/// An execution that timed out, was aborted, or failed outside the failure branch, as
/// EventBridge reports it. `last` is its last error read from the execution's history. A
/// FAILED execution the failure branch already recorded is not reported twice.
pub async fn status_change(
    detail: StatusChangeDetail,
    last: crate::report::LastFailure,
    notifier: &dyn Notifier,
    ledger: &dyn RunLedger,
    settings: NotifySettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NotifyOutcome> {
    let status = match detail.status.as_str() {
        "TIMED_OUT" => RunOutcome::TimedOut,
        "ABORTED" => RunOutcome::Aborted,
        "FAILED" if ledger.run(&detail.execution_arn).await?.is_none() => RunOutcome::Failed,
        _ => return Ok(NotifyOutcome::AlreadyReported),
    };
    let started_at = detail
        .start_date
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let error = last
        .error
        .or(detail.error)
        .unwrap_or_else(|| detail.status.clone());
    let cause = last.cause.or(detail.cause).unwrap_or_default();
    let request = NotifyRequest {
        status,
        execution_id: detail.execution_arn,
        execution_name: detail.name,
        started_at,
        fingerprints: None,
        load: None,
        dropped: None,
        warnings: vec![],
        failed_state: last.state,
        error: Some(ErrorInfo { error, cause }),
    };
    notify(request, notifier, ledger, settings, now)
        .await
        .map(|r| NotifyOutcome::Sent(Box::new(r)))
}

/// The ledger's record of a run, from what the notify state is told. A dry run records no
/// fingerprints: it loaded nothing, so the next run must not take its sources as loaded.
pub fn run_record(r: &NotifyRequest, now: chrono::DateTime<chrono::Utc>) -> RunRecord {
    let started = r
        .started_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let dry_run = r.load.as_ref().is_some_and(|l| l.dry_run);
    RunRecord {
        execution_id: r.execution_id.clone(),
        execution_name: r.execution_name.clone(),
        started_at: r.started_at.clone().unwrap_or_else(|| now.to_rfc3339()),
        duration_ms: started.map(|s| (now - s.with_timezone(&chrono::Utc)).num_milliseconds()),
        status: r.status,
        fingerprints: r.fingerprints.clone().filter(|_| !dry_run),
        load: r.load.as_ref().map(|l| l.counts),
        dropped: r.dropped.clone(),
        warnings: r.warnings.clone(),
        failed_state: r.failed_state.clone(),
        error: r.error.as_ref().map(|e| e.error.clone()),
        cause: r.error.as_ref().map(ErrorInfo::message),
    }
}

/// The message attribute (value `true`) of a dry run's notification. The email subscription
/// on AWS filters on its absence (`{"dryRun": [{"exists": false}]}`, serverless.yml).
pub const DRY_RUN_ATTRIBUTE: &str = "dryRun";

/// The notification text for a run's outcome.
pub fn compose(r: &NotifyRequest) -> Notification {
    let who = if r.execution_name.is_empty() {
        "covid-etl run".to_string()
    } else {
        format!("covid-etl execution {}", r.execution_name)
    };
    let mut lines = Vec::new();
    let mut attributes = BTreeMap::new();
    attributes.insert("status".into(), r.status.name().into());
    // The deploy's smoke test on prod is a dry run: the subscribers' filter drops it.
    if r.load.as_ref().is_some_and(|l| l.dry_run) {
        attributes.insert(DRY_RUN_ATTRIBUTE.into(), "true".into());
    }
    let subject;
    match r.status {
        RunOutcome::Succeeded => {
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
        RunOutcome::NoNewData => {
            subject = "covid-etl NO_NEW_DATA: sources unchanged since the last load".to_string();
            lines.push(format!(
                "{who} found no new data: neither source changed since the last successful load, so nothing was merged or written."
            ));
        }
        RunOutcome::Failed | RunOutcome::TimedOut | RunOutcome::Aborted => {
            let status = r.status.name();
            let state = r.failed_state.clone().unwrap_or_else(|| "unknown".into());
            attributes.insert("failedState".into(), state.clone());
            let (error, message) = r
                .error
                .as_ref()
                .map(|e| (e.error.clone(), e.message()))
                .unwrap_or_else(|| ("unknown".into(), String::new()));
            subject = format!("covid-etl {status} in {state}: {error}");
            lines.push(format!("{who} ended {status} in state {state}."));
            lines.push(format!("Error: {error}"));
            lines.push(format!("Cause: {message}"));
            lines.push("Nothing from this run was written; a rerun is safe.".into());
        }
    }
    if !r.execution_id.is_empty() {
        lines.push(format!("Execution: {}", r.execution_id));
    }
    if let Some(link) = console_link(&r.execution_id) {
        lines.push(format!("Console: {link}"));
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

/// The Step Functions console page of an execution ARN
/// (`arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`).
pub fn console_link(execution_arn: &str) -> Option<String> {
    let region = execution_arn
        .strip_prefix("arn:aws:states:")?
        .split(':')
        .next()?;
    Some(format!(
        "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"
    ))
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
            status: RunOutcome::Failed,
            execution_id: String::new(),
            execution_name: "x".into(),
            started_at: None,
            fingerprints: None,
            load: None,
            dropped: None,
            warnings: vec![],
            failed_state: Some("Merge".into()),
            error: Some(ErrorInfo {
                error: "DataQualityError".into(),
                cause: ErrorInfo::lambda_cause(&EtlError::NoOverlap("none".into())),
            }),
        };
        let ledger = crate::store::MemoryStore::default();
        let settings = NotifySettings {
            notify_no_new_data: true,
        };
        let e = notify(request, &notifier, &ledger, settings, chrono::Utc::now())
            .await
            .unwrap_err();
        assert_eq!(e.name(), "NotifyError");
    }

    #[test]
    fn failure_messages_show_the_lambda_error_message_not_its_json() {
        let request = NotifyRequest {
            status: RunOutcome::Failed,
            execution_id: "arn:x".into(),
            execution_name: "daily".into(),
            started_at: None,
            fingerprints: None,
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

    fn detail(status: &str) -> StatusChangeDetail {
        StatusChangeDetail {
            execution_arn:
                "arn:aws:states:eu-west-1:123456789012:execution:covid-etl-prod:daily-2026-11-23"
                    .into(),
            name: "daily-2026-11-23".into(),
            status: status.into(),
            start_date: Some(1_795_420_800_000),
            error: None,
            cause: None,
        }
    }

    #[tokio::test]
    async fn a_timed_out_execution_is_reported_with_its_last_error_and_a_console_link() {
        let (ledger, notifier) = (
            crate::store::MemoryStore::default(),
            crate::notify::MemoryNotifier::default(),
        );
        let last = crate::report::LastFailure {
            state: Some("DiffAndLoad".into()),
            error: Some("States.Timeout".into()),
            cause: Some("Task timed out after 300 s".into()),
        };
        let settings = NotifySettings::from_env();
        let outcome = status_change(
            detail("TIMED_OUT"),
            last,
            &notifier,
            &ledger,
            settings,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        assert!(matches!(outcome, NotifyOutcome::Sent(_)));
        let sent = notifier.sent.lock().unwrap().pop().unwrap();
        assert_eq!(
            sent.subject,
            "covid-etl TIMED_OUT in DiffAndLoad: States.Timeout"
        );
        assert_eq!(sent.attributes["status"], "TIMED_OUT");
        assert!(sent.message.contains(
            "Console: https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:"
        ), "{}", sent.message);
        assert!(sent.message.contains("Cause: Task timed out after 300 s"));
        let run = ledger
            .run(&detail("x").execution_arn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.status, RunOutcome::TimedOut);
        assert_eq!(run.started_at, "2026-11-23T08:00:00.000Z");
    }

    #[tokio::test]
    async fn a_failure_the_failure_branch_recorded_is_not_reported_twice() {
        let (ledger, notifier) = (
            crate::store::MemoryStore::default(),
            crate::notify::MemoryNotifier::default(),
        );
        let settings = NotifySettings::from_env();
        let last = crate::report::LastFailure::default();
        let now = chrono::Utc::now();
        // Not yet recorded (the failure branch itself failed): reported.
        let first = status_change(
            detail("FAILED"),
            last.clone(),
            &notifier,
            &ledger,
            settings,
            now,
        )
        .await
        .unwrap();
        assert!(matches!(first, NotifyOutcome::Sent(_)));
        // Recorded now: the second event is not reported again; SUCCEEDED is never reported.
        let again = status_change(
            detail("FAILED"),
            last.clone(),
            &notifier,
            &ledger,
            settings,
            now,
        )
        .await
        .unwrap();
        assert!(matches!(again, NotifyOutcome::AlreadyReported));
        let ok = status_change(detail("SUCCEEDED"), last, &notifier, &ledger, settings, now)
            .await
            .unwrap();
        assert!(matches!(ok, NotifyOutcome::AlreadyReported));
        assert_eq!(notifier.sent.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_dry_run_records_no_fingerprints_so_the_next_run_still_loads() {
        let request = NotifyRequest {
            status: RunOutcome::Succeeded,
            execution_id: "e".into(),
            execution_name: "e".into(),
            started_at: Some("2026-11-23T06:00:00Z".into()),
            fingerprints: Some(Fingerprints::default()),
            load: Some(LoadReport {
                dry_run: true,
                ..LoadReport::default()
            }),
            dropped: None,
            warnings: vec![],
            failed_state: None,
            error: None,
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T06:00:01.5Z")
            .unwrap()
            .to_utc();
        let run = run_record(&request, now);
        assert_eq!(run.fingerprints, None);
        assert_eq!(run.duration_ms, Some(1500));
    }
}
