//! Retry and Catch: which error names match, how long to wait, and when to give up.
//!
//! Kept apart from the executor so the AWS rules (wildcards, per-retrier counters,
//! backoff with cap then jitter) can be tested without running a state machine.

use std::time::Duration;

use serde::Deserialize;

use super::path::Path;
use super::{DATA_LIMIT_EXCEEDED, Jitter, STATES_ALL, STATES_RUNTIME, STATES_TIMEOUT, TASK_FAILED};

/// AWS's upper bound for MaxDelaySeconds (exclusive).
const MAX_DELAY_LIMIT: u64 = 31_622_401;

/// Whether an error name is matched by a Retry/Catch `ErrorEquals` list.
///
/// `States.Runtime` is matched by nothing: AWS never retries or catches it.
/// `States.DataLimitExceeded` is terminal for the wildcards but may be named explicitly.
/// `States.TaskFailed` matches everything `States.ALL` does except `States.Timeout`.
pub(crate) fn matches(patterns: &[String], error: &str) -> bool {
    if error == STATES_RUNTIME {
        return false;
    }
    patterns.iter().any(|pattern| match pattern.as_str() {
        _ if pattern == error => true,
        _ if error == DATA_LIMIT_EXCEEDED => false,
        STATES_ALL => true,
        TASK_FAILED => error != STATES_TIMEOUT,
        _ => false,
    })
}

/// Checks the error lists of a Retry or Catch field: non-empty, `States.ALL` alone and in
/// the last entry, and no `States.Runtime` (it could never match, so naming it is a mistake).
pub(crate) fn validate_error_lists<'a>(
    lists: impl ExactSizeIterator<Item = &'a [String]>,
) -> Result<(), String> {
    let count = lists.len();
    for (i, list) in lists.enumerate() {
        if list.is_empty() {
            return Err("ErrorEquals must not be empty".into());
        }
        if list.iter().any(|e| e == STATES_ALL) && (list.len() != 1 || i + 1 != count) {
            return Err("States.ALL must appear alone in ErrorEquals of the last entry".into());
        }
        if list.iter().any(|e| e == STATES_RUNTIME) {
            return Err("States.Runtime can never be retried or caught".into());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub(crate) enum JitterStrategy {
    #[serde(rename = "FULL")]
    Full,
    #[serde(rename = "NONE")]
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawRetrier {
    error_equals: Vec<String>,
    interval_seconds: Option<u64>,
    max_attempts: Option<u32>,
    backoff_rate: Option<f64>,
    max_delay_seconds: Option<u64>,
    jitter_strategy: Option<JitterStrategy>,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
}

/// One Retry entry with AWS defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Retrier {
    pub(crate) error_equals: Vec<String>,
    interval_seconds: u64,
    max_attempts: u32,
    backoff_rate: f64,
    max_delay_seconds: Option<u64>,
    jitter: JitterStrategy,
}

impl Retrier {
    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    pub(crate) fn compile(raw: RawRetrier) -> Result<Self, String> {
        let retrier = Self {
            error_equals: raw.error_equals,
            interval_seconds: raw.interval_seconds.unwrap_or(1),
            max_attempts: raw.max_attempts.unwrap_or(3),
            backoff_rate: raw.backoff_rate.unwrap_or(2.0),
            max_delay_seconds: raw.max_delay_seconds,
            jitter: raw.jitter_strategy.unwrap_or(JitterStrategy::None),
        };
        if retrier.interval_seconds == 0 {
            return Err("IntervalSeconds must be a positive integer".into());
        }
        if retrier.backoff_rate < 1.0 {
            return Err("BackoffRate must be at least 1.0".into());
        }
        if retrier
            .max_delay_seconds
            .is_some_and(|d| d == 0 || d >= MAX_DELAY_LIMIT)
        {
            return Err(format!(
                "MaxDelaySeconds must be greater than 0 and less than {MAX_DELAY_LIMIT}"
            ));
        }
        Ok(retrier)
    }

    /// The wait before retry number `attempt` (0-based): `IntervalSeconds × BackoffRate^attempt`,
    /// capped by MaxDelaySeconds, then scaled by a uniform sample for FULL jitter.
    fn delay(&self, attempt: u32, jitter: &dyn Jitter) -> Duration {
        let mut seconds = self.interval_seconds as f64 * self.backoff_rate.powf(f64::from(attempt));
        if let Some(cap) = self.max_delay_seconds {
            seconds = seconds.min(cap as f64);
        }
        if self.jitter == JitterStrategy::Full {
            seconds *= jitter.sample().clamp(0.0, 1.0);
        }
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}

/// The retry counters of one visit to a state: one per retrier, as AWS keeps them.
pub(crate) struct RetryBudget<'r> {
    retriers: &'r [Retrier],
    used: Vec<u32>,
}

impl<'r> RetryBudget<'r> {
    pub(crate) fn new(retriers: &'r [Retrier]) -> Self {
        Self {
            retriers,
            used: vec![0; retriers.len()],
        }
    }

    /// Retries made so far in this visit (the context object's `State.RetryCount`).
    pub(crate) fn retry_count(&self) -> u32 {
        self.used.iter().sum()
    }

    /// The wait before retrying `error`, or `None` when the error must go to Catch: no
    /// retrier matches, or the *first* matching one is exhausted (later ones are not tried).
    pub(crate) fn next_delay(&mut self, error: &str, jitter: &dyn Jitter) -> Option<Duration> {
        let index = self
            .retriers
            .iter()
            .position(|r| matches(&r.error_equals, error))?;
        let retrier = &self.retriers[index];
        let attempt = self.used[index];
        if attempt >= retrier.max_attempts {
            return None;
        }
        self.used[index] += 1;
        Some(retrier.delay(attempt, jitter))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct RawCatcher {
    pub(crate) error_equals: Vec<String>,
    pub(crate) next: String,
    #[serde(default, deserialize_with = "super::definition::nullable")]
    pub(crate) result_path: Option<Option<String>>,
    #[serde(rename = "Comment")]
    _comment: Option<String>,
}

/// One Catch entry. `result_path` is `None` for `"ResultPath": null` (keep the raw input).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Catcher {
    pub(crate) error_equals: Vec<String>,
    pub(crate) next: String,
    pub(crate) result_path: Option<Path>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FixedJitter;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn retrier(json: &str) -> Retrier {
        Retrier::compile(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn wildcard_matching() {
        let cases = [
            (&["States.ALL"][..], "Custom", true),
            (&["States.ALL"], "States.Timeout", true),
            (&["States.ALL"], "States.Runtime", false),
            (&["States.ALL"], "States.DataLimitExceeded", false),
            (
                &["States.DataLimitExceeded"],
                "States.DataLimitExceeded",
                true,
            ),
            (&["States.Runtime"], "States.Runtime", false),
            (&["States.TaskFailed"], "Lambda.ServiceException", true),
            (&["States.TaskFailed"], "States.Timeout", false),
            (&["States.TaskFailed"], "States.DataLimitExceeded", false),
            (&["States.Timeout"], "States.Timeout", true),
            (
                &["Lambda.ServiceException"],
                "Lambda.SdkClientException",
                false,
            ),
            (
                &["A", "Lambda.TooManyRequestsException"],
                "Lambda.TooManyRequestsException",
                true,
            ),
        ];
        for (patterns, error, expected) in cases {
            assert_eq!(
                matches(&names(patterns), error),
                expected,
                "{patterns:?} vs {error}"
            );
        }
    }

    #[test]
    fn error_list_validation() {
        let cases: [(&[&[&str]], bool); 6] = [
            (&[&["A"], &["States.ALL"]], true),
            (&[&["States.ALL"], &["A"]], false),
            (&[&["A", "States.ALL"]], false),
            (&[&[]], false),
            (&[&["States.Runtime"]], false),
            (&[&["States.TaskFailed"], &["States.ALL"]], true),
        ];
        for (lists, ok) in cases {
            let owned: Vec<Vec<String>> = lists.iter().map(|l| names(l)).collect();
            let result = validate_error_lists(owned.iter().map(Vec::as_slice));
            assert_eq!(result.is_ok(), ok, "{lists:?}");
        }
    }

    #[test]
    fn retrier_field_validation() {
        for bad in [
            r#"{"ErrorEquals":["A"],"IntervalSeconds":0}"#,
            r#"{"ErrorEquals":["A"],"BackoffRate":0.5}"#,
            r#"{"ErrorEquals":["A"],"MaxDelaySeconds":0}"#,
            r#"{"ErrorEquals":["A"],"MaxDelaySeconds":31622401}"#,
        ] {
            assert!(
                Retrier::compile(serde_json::from_str(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_str::<RawRetrier>(r#"{"ErrorEquals":["A"],"JitterStrategy":"HALF"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<RawRetrier>(r#"{"ErrorEquals":["A"],"Backoff":2}"#).is_err()
        );
    }

    #[test]
    fn delay_sequences() {
        let secs = |v: &[f64]| {
            v.iter()
                .map(|s| Duration::from_secs_f64(*s))
                .collect::<Vec<_>>()
        };
        let cases = [
            (r#"{"ErrorEquals":["A"]}"#, 0.0, secs(&[1.0, 2.0, 4.0])),
            (
                r#"{"ErrorEquals":["A"],"IntervalSeconds":3,"BackoffRate":1.5,"MaxAttempts":4}"#,
                0.0,
                secs(&[3.0, 4.5, 6.75, 10.125]),
            ),
            (
                r#"{"ErrorEquals":["A"],"IntervalSeconds":2,"MaxDelaySeconds":5,"MaxAttempts":4}"#,
                0.0,
                secs(&[2.0, 4.0, 5.0, 5.0]),
            ),
            (
                r#"{"ErrorEquals":["A"],"IntervalSeconds":2,"JitterStrategy":"FULL"}"#,
                0.5,
                secs(&[1.0, 2.0, 4.0]),
            ),
            (
                r#"{"ErrorEquals":["A"],"IntervalSeconds":2,"MaxDelaySeconds":5,"JitterStrategy":"FULL","MaxAttempts":4}"#,
                0.25,
                secs(&[0.5, 1.0, 1.25, 1.25]),
            ),
            (
                r#"{"ErrorEquals":["A"],"JitterStrategy":"NONE"}"#,
                0.5,
                secs(&[1.0, 2.0, 4.0]),
            ),
        ];
        for (json, sample, expected) in cases {
            let retriers = [retrier(json)];
            let mut budget = RetryBudget::new(&retriers);
            let waits: Vec<_> =
                std::iter::from_fn(|| budget.next_delay("A", &FixedJitter(sample))).collect();
            assert_eq!(waits, expected, "{json}");
        }
    }

    #[test]
    fn counters_are_per_retrier_and_first_match_wins() {
        let retriers = [
            retrier(r#"{"ErrorEquals":["A"],"MaxAttempts":1}"#),
            retrier(r#"{"ErrorEquals":["B"],"MaxAttempts":2,"IntervalSeconds":10}"#),
            retrier(r#"{"ErrorEquals":["States.ALL"],"MaxAttempts":5}"#),
        ];
        let mut budget = RetryBudget::new(&retriers);
        let j = FixedJitter(0.0);
        let steps = [
            ("A", Some(1)),
            ("B", Some(10)),
            ("B", Some(20)),
            ("B", None), // B's retrier is exhausted: the catch-all behind it is not consulted
            ("A", None),
            ("C", Some(1)),
            ("States.Runtime", None),
        ];
        for (error, expected) in steps {
            assert_eq!(
                budget.next_delay(error, &j),
                expected.map(Duration::from_secs),
                "{error}"
            );
        }
        assert_eq!(budget.retry_count(), 4);
    }

    #[test]
    fn max_attempts_zero_never_retries() {
        let retriers = [retrier(r#"{"ErrorEquals":["States.ALL"],"MaxAttempts":0}"#)];
        assert_eq!(
            RetryBudget::new(&retriers).next_delay("X", &FixedJitter(0.0)),
            None
        );
    }
}
