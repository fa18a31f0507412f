//! One function per state of the state machine. The Lambda binaries and the local engine call
//! exactly these, so a local run exercises the code production runs.

use crate::config::SourceConfig;
use crate::diff;
use crate::error::{EtlError, Result};
use crate::execution::ExecutionStatus;
use crate::extract::{self, SourceKind};
use crate::ledger::{RunLedger, RunOutcome, RunRecord};
use crate::merge::{self, DateSpan, QualityPolicy};
use crate::notify::{Notifier, compose};
use crate::payload::*;
use crate::store::{Committed, Load, Store, WriteReport};

/// The extract states: fetch, validate and fingerprint one source. The fingerprint of the
/// sources the store holds (its load marker, written with the data) tells whether the source
/// changed, and over HTTP makes the request conditional; a store whose last load did not
/// finish holds no known sources, so everything is loaded again. A full reload ignores the
/// marker: everything is fetched and rewritten.
pub async fn extract(
    kind: SourceKind,
    request: ExtractRequest,
    config: SourceConfig,
    store: &dyn Store,
) -> Result<extract::Extract> {
    // Refused before any I/O, the ledger read included.
    let location = config.location(kind, &request.options)?;
    let previous = if request.options.full_reload {
        None
    } else {
        store
            .marker()
            .await?
            .and_then(|marker| marker.loaded().cloned())
    };
    let previous = previous.map(|f| match kind {
        SourceKind::Nyt => f.nyt,
        SourceKind::Jhu => f.jhu,
    });
    extract::extract(
        kind,
        &location,
        &config.http,
        &config.policy,
        previous.as_ref(),
        request.conditional,
    )
    .await
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
    warnings.extend(merge::quality_warnings(
        &nyt.records,
        &jhu.records,
        &joined,
        policy,
        today,
    ));
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

/// The diff-and-load state: plan against what the store holds and, unless this is a dry
/// run, apply the plan and record the load marker, as one load of the store
/// ([`Store::load`]: one at a time per store). Nothing is written when nothing changed.
pub async fn diff_and_load(request: LoadRequest, store: &dyn Store) -> Result<LoadReport> {
    let LoadRequest {
        merged,
        options,
        execution_id,
    } = request;
    let latest = merged.records.last().copied();
    let (plan, cost) = if options.dry_run {
        let stored = store.series().await?;
        let plan = diff::plan(&stored, &merged.records, options.full_reload);
        (plan, WriteReport::default())
    } else {
        let applied = store
            .load(&Load {
                execution_id,
                records: merged.records,
                fingerprints: merged.fingerprints,
                full_reload: options.full_reload,
            })
            .await?;
        (applied.plan, applied.cost)
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
        latest,
        changed: DateSpan::group(plan.changed.iter().map(|(r, _)| r.date)),
        warnings: diff::older_sources_warning(&plan, latest)
            .into_iter()
            .collect(),
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

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            notify_no_new_data: true,
        }
    }
}

/// The notify states: record the run in the ledger, compose the message once and hand it to
/// the notifier. The ledger is written first, so a rerun after a delivery failure finds the
/// run already recorded (writing it again is harmless). For a failure, the store's load
/// marker says whether this execution's load was committed before it failed.
pub async fn notify(
    request: NotifyRequest,
    notifier: &dyn Notifier,
    ledger: &dyn RunLedger,
    store: &dyn Store,
    settings: NotifySettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NotifyResponse> {
    let committed = match request.status {
        RunOutcome::Succeeded | RunOutcome::NoNewData => Committed::NotAsked,
        _ => Committed::read(store, &request.execution_id).await,
    };
    ledger
        .record_run(&RunRecord::of(&request, &committed, now))
        .await?;
    let notification = compose(&request, &committed);
    if request.status != RunOutcome::NoNewData || settings.notify_no_new_data {
        notifier.publish(&notification).await?;
    }
    Ok(NotifyResponse {
        subject: notification.subject,
        request,
    })
}

/// An execution that failed in a step, timed out or was aborted, as EventBridge reports it
/// (and the local runner, in its place). `last` is its last error read from the execution's
/// history. A FAILED execution whose last attempt reached the definition's failure branch
/// (a Fail state) published its own message and is not reported twice.
pub async fn status_change(
    detail: StatusChangeDetail,
    last: crate::report::LastFailure,
    notifier: &dyn Notifier,
    ledger: &dyn RunLedger,
    store: &dyn Store,
    settings: NotifySettings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<NotifyOutcome> {
    let status = match detail.status {
        ExecutionStatus::TimedOut => RunOutcome::TimedOut,
        ExecutionStatus::Aborted => RunOutcome::Aborted,
        ExecutionStatus::Failed if !last.reached_fail_state => RunOutcome::Failed,
        _ => return Ok(NotifyOutcome::AlreadyReported),
    };
    let started_at = detail
        .start_date
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let error = last
        .error
        .or(detail.error)
        .unwrap_or_else(|| detail.status.name().to_string());
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
    notify(request, notifier, ledger, store, settings, now)
        .await
        .map(|r| NotifyOutcome::Sent(Box::new(r)))
}

/// A payload as the step's request type. One that does not deserialize (a mismatch between
/// the definition and the code, or an unknown key in the execution input) is `InvalidInput`,
/// naming the type and the path of the field.
pub fn parse_payload<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let what = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("event");
        EtlError::InvalidInput(format!("{what} at {}: {}", e.path(), e.inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Dropped;
    use crate::notify::MockNotifier;
    use crate::record::DailyRecord;
    use crate::store::MockStore;
    use crate::store::{LoadMarker, MarkerState};
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
            execution_id: "arn:x".into(),
        }
    }

    #[tokio::test]
    async fn a_throttled_store_surfaces_the_transient_error() {
        let mut store = MockStore::new();
        store
            .expect_load()
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
        store.expect_load().never();
        assert_eq!(
            diff_and_load(load_request(true), &store)
                .await
                .unwrap_err()
                .name(),
            "StoreError"
        );

        let mut store = MockStore::new();
        store.expect_series().returning(|| Ok(vec![]));
        store.expect_load().never();
        let report = diff_and_load(load_request(true), &store).await.unwrap();
        assert_eq!((report.counts.inserted, report.written), (1, 0));
    }

    #[tokio::test]
    async fn a_failing_notifier_fails_the_notify_step() {
        let mut notifier = MockNotifier::new();
        notifier
            .expect_publish()
            .withf(|n| n.subject == "covid-etl FAILED in Merge: NoOverlap")
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
                error: "NoOverlap".into(),
                cause: ErrorInfo::lambda_cause(&EtlError::NoOverlap("none".into())),
            }),
        };
        let ledger = crate::store::MemoryStore::default();
        let settings = NotifySettings {
            notify_no_new_data: true,
        };
        let e = notify(
            request,
            &notifier,
            &ledger,
            &ledger,
            settings,
            chrono::Utc::now(),
        )
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
        let n = compose(&request, &Committed::Nothing);
        assert_eq!(n.attributes["failedState"], "Extract");
        assert!(
            n.message.contains("Cause: nyt unavailable at u: HTTP 500"),
            "{}",
            n.message
        );
    }

    /// What a failure message says a run left in the store, for each thing the marker can tell.
    #[test]
    fn failure_messages_say_what_the_run_committed() {
        let failed_in = |state: &str| NotifyRequest {
            status: RunOutcome::Failed,
            execution_id: "arn:x".into(),
            execution_name: "x".into(),
            started_at: None,
            fingerprints: None,
            load: None,
            dropped: None,
            warnings: vec![],
            failed_state: Some(state.into()),
            error: Some(ErrorInfo {
                error: "NotifyError".into(),
                cause: "topic gone".into(),
            }),
        };
        let marker = |state| {
            Committed::Load(Box::new(LoadMarker {
                execution_id: "arn:x".into(),
                state,
                fingerprints: Fingerprints::default(),
                counts: crate::diff::LoadCounts {
                    inserted: 215,
                    updated: 116,
                    unchanged: 3,
                },
            }))
        };
        let says = |state: &str, committed: &Committed| compose(&failed_in(state), committed);
        let done = says("NotifySuccess", &marker(MarkerState::Loaded));
        assert!(done.message.contains(
            "loaded 215 inserted, 116 updated (3 unchanged); then NotifySuccess failed: NotifyError"
        ), "{}", done.message);
        assert!(
            done.subject
                .ends_with("after loading 215 inserted, 116 updated")
        );
        let cut = says("DiffAndLoad", &marker(MarkerState::Loading));
        assert!(cut.message.contains("did not finish"), "{}", cut.message);
        let replaced = says("NotifySuccess", &Committed::Nothing);
        assert!(
            replaced
                .message
                .contains("was committed before NotifySuccess failed")
        );
        let early = says("Extract", &Committed::Nothing);
        assert!(early.message.contains("Nothing from this run was written"));
        let unknown = says("Extract", &Committed::Unknown("timeout".into()));
        assert!(unknown.message.contains("unknown"), "{}", unknown.message);
    }

    fn detail(status: &str) -> StatusChangeDetail {
        StatusChangeDetail {
            execution_arn:
                "arn:aws:states:eu-west-1:123456789012:execution:covid-etl-prod:daily-2026-11-23"
                    .into(),
            name: "daily-2026-11-23".into(),
            status: status.parse().unwrap(),
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
            reached_fail_state: false,
        };
        let settings = NotifySettings::default();
        let outcome = status_change(
            detail("TIMED_OUT"),
            last,
            &notifier,
            &ledger,
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
            .run(&detail("FAILED").execution_arn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.status, RunOutcome::TimedOut);
        assert_eq!(run.started_at, "2026-11-23T08:00:00.000Z");
    }

    #[tokio::test]
    async fn a_failure_is_reported_unless_the_failure_branch_reported_it() {
        let (ledger, notifier) = (
            crate::store::MemoryStore::default(),
            crate::notify::MemoryNotifier::default(),
        );
        let settings = NotifySettings::default();
        let now = chrono::Utc::now();
        let failed_in_a_step = crate::report::LastFailure {
            state: Some("DiffAndLoad".into()),
            error: Some("StoreError".into()),
            ..Default::default()
        };
        let report = |last| {
            status_change(
                detail("FAILED"),
                last,
                &notifier,
                &ledger,
                &ledger,
                settings,
                now,
            )
        };
        // A step failed, uncaught: reported, and again after a redrive that fails once more.
        for _ in 0..2 {
            let sent = report(failed_in_a_step.clone()).await.unwrap();
            assert!(matches!(sent, NotifyOutcome::Sent(_)));
        }
        // The failure branch (a Fail state) published its own message: not reported twice.
        let branch = crate::report::LastFailure {
            reached_fail_state: true,
            ..failed_in_a_step.clone()
        };
        assert!(matches!(
            report(branch).await.unwrap(),
            NotifyOutcome::AlreadyReported
        ));
        let ok = status_change(
            detail("SUCCEEDED"),
            failed_in_a_step,
            &notifier,
            &ledger,
            &ledger,
            settings,
            now,
        )
        .await
        .unwrap();
        assert!(matches!(ok, NotifyOutcome::AlreadyReported));
        assert_eq!(notifier.sent.lock().unwrap().len(), 2);
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
        let run = RunRecord::of(&request, &Committed::NotAsked, now);
        assert_eq!(run.fingerprints, None);
        assert_eq!(run.duration_ms, Some(1500));
        assert!(run.dry_run);
        let subject = compose(&request, &Committed::NotAsked).subject;
        assert_eq!(subject, "covid-etl DRY RUN: would insert 0, would update 0");
    }

    #[test]
    fn an_older_snapshot_warns_from_a_week_of_dates_moved_back() {
        let day = |d| chrono::NaiveDate::from_ymd_opt(2021, 1, d).unwrap();
        let rec = |d, cases| crate::record::DailyRecord::new(day(d), cases, 0, None);
        let stored: Vec<_> = (1..=10).map(|d| rec(d, 100 + d as u64)).collect();
        let back = |n: u32| -> Vec<_> {
            (1..=9)
                .map(|d| rec(d, if d <= n { 50 } else { 100 + d as u64 }))
                .collect()
        };
        let six = diff::plan(&stored, &back(6), false);
        assert_eq!(
            diff::older_sources_warning(&six, back(6).last().copied()),
            None,
            "a few revisions are normal"
        );
        let seven = diff::plan(&stored, &back(7), false);
        assert_eq!(
            diff::older_sources_warning(&seven, back(7).last().copied()).unwrap(),
            "the sources look older than what is stored: 7 dates move back to smaller counts (2021-01-01..2021-01-07); the sources' newest date is 2021-01-09"
        );
    }
}
