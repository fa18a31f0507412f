//! The process configuration: every environment variable the pipeline reads, read once at
//! start into one validated [`Config`]. A value that is set but unusable is a one-line
//! `ConfigError` naming the variable and the value — never a panic, never silently replaced
//! by the default.
//!
//! Who builds the configuration chooses the source policy ([`Role`]): a Lambda function
//! reads only https URLs on an allowlist; the command line reads what its user points it at.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `NYT_URL`, `JHU_URL` | the real sources | where the sources are when the input names none |
//! | `COVID_ETL_SOURCE_ALLOWLIST` | Lambda: the origins of `NYT_URL`/`JHU_URL`; CLI: unset, anything | origins sources may come from |
//! | `COVID_ETL_HTTP_CONNECT_TIMEOUT_SECS` | 10 | seconds, > 0 |
//! | `COVID_ETL_HTTP_TIMEOUT_SECS` | 120 | seconds for a whole download, > 0 |
//! | `COVID_ETL_MAX_BODY_BYTES` | 536870912 | bytes a source may have (file or download), ≥ 1 |
//! | `STALE_AFTER_DAYS` | 3 | whole days ≥ 0 |
//! | `MIN_OVERLAP_DAYS` | 30 | whole days ≥ 0 |
//! | `NOTIFY_NO_NEW_DATA` | true | `true` or `false` |
//! | `COVID_ETL_TIME_SCALE` | 1 | divides engine waits (tests), > 0 |

use crate::error::{EtlError, Result};
use crate::extract::{Allowlist, HttpConfig, Location, SourceKind, SourcePolicy};
use crate::merge::QualityPolicy;
use crate::payload::RunOptions;
use crate::steps::NotifySettings;
use std::time::Duration;

/// Who runs the pipeline, which decides the default source policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The `covid-etl` command on its user's machine: paths and http(s) URLs.
    Cli,
    /// A Lambda function on AWS: https URLs on the allowlist only.
    Lambda,
}

/// Everything the environment configures.
#[derive(Debug, Clone)]
pub struct Config {
    pub sources: SourceConfig,
    pub quality: QualityPolicy,
    pub notify: NotifySettings,
    /// `COVID_ETL_TIME_SCALE`: every engine wait is divided by it.
    pub time_scale: f64,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(role: Role) -> Result<Self> {
        Self::from_vars(role, |name| std::env::var_os(name))
    }

    /// Reads the variables `var` returns (the environment, or a test's map).
    pub fn from_vars(role: Role, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self> {
        let env = Vars(&var);
        let http_defaults = HttpConfig::default();
        let http = HttpConfig {
            connect_timeout: env
                .parsed("COVID_ETL_HTTP_CONNECT_TIMEOUT_SECS", seconds)?
                .unwrap_or(http_defaults.connect_timeout),
            total_timeout: env
                .parsed("COVID_ETL_HTTP_TIMEOUT_SECS", seconds)?
                .unwrap_or(http_defaults.total_timeout),
            max_body_bytes: env
                .parsed("COVID_ETL_MAX_BODY_BYTES", |v| {
                    whole(v)
                        .filter(|&b| b >= 1)
                        .ok_or("is not a whole number of bytes ≥ 1")
                })?
                .unwrap_or(http_defaults.max_body_bytes),
        };
        let url = |name, kind: SourceKind| {
            env.parsed(name, |v| {
                if v.trim().is_empty() {
                    Err("is empty")
                } else {
                    Ok(v.to_string())
                }
            })
            .map(|v| v.unwrap_or_else(|| kind.default_url().to_string()))
        };
        let (nyt, jhu) = (
            url("NYT_URL", SourceKind::Nyt)?,
            url("JHU_URL", SourceKind::Jhu)?,
        );
        let allowlist = env.parsed("COVID_ETL_SOURCE_ALLOWLIST", Allowlist::parse)?;
        let policy = match (allowlist, role) {
            (Some(list), _) => SourcePolicy::Allowlist(list),
            (None, Role::Cli) => SourcePolicy::Anywhere,
            (None, Role::Lambda) => {
                // The deployment's own source URLs (the real ones unless the deployer set
                // others): trusted as the list itself is, by who deploys.
                for (variable, url) in [("NYT_URL", &nyt), ("JHU_URL", &jhu)] {
                    Allowlist::of_urls([url.as_str()]).map_err(|reason| EtlError::ConfigError {
                        variable,
                        value: url.clone(),
                        reason: format!("is not an allowed source origin: {reason}"),
                    })?;
                }
                let list = Allowlist::of_urls([nyt.as_str(), jhu.as_str()])
                    .map_err(EtlError::InvalidInput)?;
                SourcePolicy::Allowlist(list)
            }
        };
        let quality_defaults = QualityPolicy::default();
        let days = |v: &str| whole(v).ok_or("is not a whole number of days ≥ 0");
        let quality = QualityPolicy {
            stale_after_days: env
                .parsed("STALE_AFTER_DAYS", |v| {
                    days(v).and_then(|d| i64::try_from(d).map_err(|_| "is too large"))
                })?
                .unwrap_or(quality_defaults.stale_after_days),
            min_overlap_days: env
                .parsed("MIN_OVERLAP_DAYS", |v| {
                    days(v).and_then(|d| usize::try_from(d).map_err(|_| "is too large"))
                })?
                .unwrap_or(quality_defaults.min_overlap_days),
        };
        let notify = NotifySettings {
            notify_no_new_data: env
                .parsed("NOTIFY_NO_NEW_DATA", |v| match v {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err("is neither true nor false"),
                })?
                .unwrap_or(NotifySettings::default().notify_no_new_data),
        };
        let time_scale = env
            .parsed("COVID_ETL_TIME_SCALE", |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or("is not a positive number")
            })?
            .unwrap_or(1.0);
        Ok(Self {
            sources: SourceConfig {
                nyt,
                jhu,
                http,
                policy,
            },
            quality,
            notify,
            time_scale,
        })
    }
}

/// The variables, each read through one function that turns an unusable value into a
/// `ConfigError`.
struct Vars<'a, F>(&'a F);

impl<F: Fn(&str) -> Option<std::ffi::OsString>> Vars<'_, F> {
    /// `None` when the variable is unset; its parsed value; or the error naming it.
    fn parsed<T, E: std::fmt::Display>(
        &self,
        name: &'static str,
        parse: impl FnOnce(&str) -> std::result::Result<T, E>,
    ) -> Result<Option<T>> {
        let Some(raw) = (self.0)(name) else {
            return Ok(None);
        };
        let error = |value: String, reason: String| EtlError::ConfigError {
            variable: name,
            value,
            reason,
        };
        let text = raw
            .to_str()
            .ok_or_else(|| error(raw.to_string_lossy().into_owned(), "is not UTF-8".into()))?;
        parse(text)
            .map(Some)
            .map_err(|reason| error(text.chars().take(200).collect(), reason.to_string()))
    }
}

/// A positive, finite number of seconds that fits a `Duration`.
fn seconds(v: &str) -> std::result::Result<Duration, &'static str> {
    v.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or("is not a positive number of seconds")
}

/// Decimal digits only (no sign, no spaces), as a `u64`.
fn whole(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Where the sources are by default, how to download them, and which locations a run may
/// read. Built by [`Config`].
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub nyt: String,
    pub jhu: String,
    pub http: HttpConfig,
    pub policy: SourcePolicy,
}

impl Default for SourceConfig {
    /// The real sources, default limits, any location (the command line's policy).
    fn default() -> Self {
        Self {
            nyt: SourceKind::Nyt.default_url().to_string(),
            jhu: SourceKind::Jhu.default_url().to_string(),
            http: HttpConfig::default(),
            policy: SourcePolicy::Anywhere,
        }
    }
}

impl SourceConfig {
    /// The location this run reads `kind` from, if the policy allows it.
    pub fn location(&self, kind: SourceKind, options: &RunOptions) -> Result<Location> {
        let (overridden, default) = match kind {
            SourceKind::Nyt => (&options.nyt, &self.nyt),
            SourceKind::Jhu => (&options.jhu, &self.jhu),
        };
        self.policy
            .locate(kind.name(), overridden.as_deref().unwrap_or(default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(role: Role, vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(role, |name| map.get(name).map(Into::into))
    }

    #[test]
    fn unset_variables_take_the_defaults() {
        let c = config(Role::Cli, &[]).unwrap();
        assert_eq!(c.sources.nyt, SourceKind::Nyt.default_url());
        assert_eq!(c.sources.http.max_body_bytes, 512 * 1024 * 1024);
        assert_eq!(c.sources.policy, SourcePolicy::Anywhere);
        assert_eq!(c.quality, QualityPolicy::default());
        assert!(c.notify.notify_no_new_data);
        assert_eq!(c.time_scale, 1.0);
        let lambda = config(Role::Lambda, &[]).unwrap();
        assert_eq!(
            lambda.sources.policy,
            SourcePolicy::Allowlist(Allowlist::parse("https://raw.githubusercontent.com").unwrap())
        );
    }

    #[test]
    fn set_values_are_read() {
        let c = config(
            Role::Cli,
            &[
                ("COVID_ETL_HTTP_TIMEOUT_SECS", "2.5"),
                ("COVID_ETL_MAX_BODY_BYTES", "1000"),
                ("STALE_AFTER_DAYS", "0"),
                ("NOTIFY_NO_NEW_DATA", "false"),
                ("COVID_ETL_SOURCE_ALLOWLIST", "http://127.0.0.1:8080"),
            ],
        )
        .unwrap();
        assert_eq!(c.sources.http.total_timeout, Duration::from_millis(2500));
        assert_eq!(c.sources.http.max_body_bytes, 1000);
        assert_eq!(c.quality.stale_after_days, 0);
        assert!(!c.notify.notify_no_new_data);
        assert!(matches!(c.sources.policy, SourcePolicy::Allowlist(_)));
    }

    /// Every value the issue saw panic or be ignored, and their kin: one line naming the
    /// variable and the value.
    #[test]
    fn a_bad_value_is_an_error_naming_variable_and_value() {
        for (name, value) in [
            ("COVID_ETL_HTTP_TIMEOUT_SECS", "-1"),
            ("COVID_ETL_HTTP_TIMEOUT_SECS", "NaN"),
            ("COVID_ETL_HTTP_TIMEOUT_SECS", "inf"),
            ("COVID_ETL_HTTP_TIMEOUT_SECS", "0"),
            ("COVID_ETL_HTTP_TIMEOUT_SECS", "1e300"),
            ("COVID_ETL_HTTP_CONNECT_TIMEOUT_SECS", "ten"),
            ("COVID_ETL_MAX_BODY_BYTES", "abc"),
            ("COVID_ETL_MAX_BODY_BYTES", "-5"),
            ("COVID_ETL_MAX_BODY_BYTES", "0"),
            ("COVID_ETL_MAX_BODY_BYTES", "1.5"),
            ("COVID_ETL_MAX_BODY_BYTES", "99999999999999999999999"),
            ("STALE_AFTER_DAYS", "three"),
            ("STALE_AFTER_DAYS", "-1"),
            ("MIN_OVERLAP_DAYS", " 30"),
            ("NOTIFY_NO_NEW_DATA", "no"),
            ("COVID_ETL_TIME_SCALE", "0"),
            ("NYT_URL", ""),
            ("COVID_ETL_SOURCE_ALLOWLIST", "http://10.0.0.1"),
            ("COVID_ETL_SOURCE_ALLOWLIST", ""),
        ] {
            for role in [Role::Cli, Role::Lambda] {
                let e = config(role, &[(name, value)]).unwrap_err();
                assert_eq!(e.name(), "ConfigError");
                let text = e.to_string();
                assert!(
                    text.starts_with(&format!("{name}={value:?} ")),
                    "{name}={value}: {text}"
                );
                assert!(!text.contains('\n'), "{text}");
            }
        }
    }

    #[test]
    fn a_non_utf8_value_is_an_error_not_ignored() {
        use std::os::unix::ffi::OsStringExt;
        let e = Config::from_vars(Role::Cli, |name| {
            (name == "STALE_AFTER_DAYS").then(|| std::ffi::OsString::from_vec(vec![0xff]))
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("STALE_AFTER_DAYS="), "{e}");
    }
}
