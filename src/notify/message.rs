//! The text of every notification: one message per run outcome, composed once for every
//! channel (email through SNS, the local outbox).

use super::{Notification, subject_line};
use crate::ledger::RunOutcome;
use crate::merge::DateSpan;
use crate::payload::NotifyRequest;
use crate::store::{Committed, MarkerState};
use std::collections::BTreeMap;

/// The message attribute (value `true`) of a dry run's notification. The email subscription
/// on AWS filters on its absence (`{"dryRun": [{"exists": false}]}`, serverless.yml).
pub const DRY_RUN_ATTRIBUTE: &str = "dryRun";

/// The notification text for a run's outcome; a failure says what this run committed.
pub fn compose(r: &NotifyRequest, committed: &Committed) -> Notification {
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
            let latest = load
                .latest
                .map(|l| format!(", latest {}", crate::record::iso(l.date)))
                .unwrap_or_default();
            // A dry run's counts are what it would have written, never writes.
            let (headline, what) = if load.dry_run {
                (
                    format!(
                        "DRY RUN: would insert {}, would update {}",
                        c.inserted, c.updated
                    ),
                    format!(
                        "Dry run, nothing written: would insert {}, would update {}, {} unchanged.",
                        c.inserted, c.updated, c.unchanged
                    ),
                )
            } else if load.full_reload {
                (
                    format!("SUCCEEDED: full reload, {} rows rewritten", load.written),
                    format!(
                        "Full reload: {} rows rewritten ({} new, {} changed, {} unchanged).",
                        load.written, c.inserted, c.updated, c.unchanged
                    ),
                )
            } else {
                (
                    format!("SUCCEEDED: {} inserted, {} updated", c.inserted, c.updated),
                    format!(
                        "Loaded: {} inserted, {} updated, {} unchanged.",
                        c.inserted, c.updated, c.unchanged
                    ),
                )
            };
            subject = format!("covid-etl {headline}{latest}");
            lines.push(format!("{who} succeeded."));
            lines.push(what);
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
            let after_load = match committed {
                Committed::Load(m) if m.state == MarkerState::Loaded => format!(
                    " after loading {} inserted, {} updated",
                    m.counts.inserted, m.counts.updated
                ),
                _ => String::new(),
            };
            subject = format!("covid-etl {status} in {state}: {error}{after_load}");
            lines.push(format!("{who} ended {status} in state {state}."));
            lines.push(format!("Error: {error}"));
            lines.push(format!("Cause: {message}"));
            lines.push(committed_sentence(committed, &state, &error));
        }
    }
    if !r.execution_id.is_empty() {
        lines.push(format!("Execution: {}", r.execution_id));
    }
    if let Some(link) = crate::aws::console_link(&r.execution_id) {
        lines.push(format!("Console: {link}"));
    }
    let warnings = r.all_warnings();
    if !warnings.is_empty() {
        lines.push(format!("Warnings ({}):", warnings.len()));
        lines.extend(warnings.iter().map(|w| format!("- {w}")));
    }
    Notification {
        subject: subject_line(&subject),
        message: lines.join("\n"),
        attributes,
    }
}

/// The line a failure message ends with: what this run changed in the store.
fn committed_sentence(committed: &Committed, failed_state: &str, failure: &str) -> String {
    match committed {
        Committed::Load(m) if m.state == MarkerState::Loaded => format!(
            "This run's load was committed: loaded {} inserted, {} updated ({} unchanged); then {failed_state} failed: {failure}. The store holds this run's sources; a rerun is safe.",
            m.counts.inserted, m.counts.updated, m.counts.unchanged
        ),
        Committed::Load(m) => format!(
            "This run's load started and did not finish ({} inserted and {} updated planned; some may be written); then {failed_state} failed: {failure}. The next run diffs against what the store holds and completes it.",
            m.counts.inserted, m.counts.updated
        ),
        Committed::Nothing if failed_state == "NotifySuccess" => format!(
            "This run's load was committed before {failed_state} failed ({failure}); another execution has loaded since. A rerun is safe."
        ),
        Committed::Nothing | Committed::NotAsked => {
            "Nothing from this run was written; a rerun is safe.".into()
        }
        Committed::Unknown(e) => format!(
            "Whether this run wrote anything is unknown: the store's load marker could not be read ({e}). A rerun diffs against what the store holds."
        ),
    }
}
