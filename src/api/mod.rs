//! The HTTP API and the dashboard: one axum [`Router`], served by `covid-etl serve` locally
//! and by the `api` Lambda (through `lambda_http`) behind an HTTP API on AWS.
//!
//! ```text
//! GET /                        the dashboard (web/, embedded in the binary)
//! GET /api/series?from=&to=    daily records with derived daily new counts
//! GET /api/series/weekly       sums of daily new cases and deaths per ISO week
//! GET /api/series/monthly      … per calendar month
//! GET /api/executions?limit=   recent runs: status, outcome, duration, failed state, counts
//! GET /api/executions/{id}     one run: its summary, warnings and steps
//! GET /api/openapi.yaml        the contract (docs/openapi.yaml)
//! ```
//! Every query parameter is validated: an unknown or repeated parameter, a date that is not a
//! real `YYYY-MM-DD` day, `from` after `to` or a bad `limit` is a 400 with
//! `{"error": "..."}` naming the parameter and the value. The series answers may be cached
//! briefly ([`SERIES_CACHE`]); executions and errors never are.
//!
//! No request scans the table by itself: the series and the recent executions are read at
//! most once per [`STORE_CACHE_TTL`] per process (one warm Lambda instance, or `serve`) and
//! shared by every request in between ([`Cached`]).
//!
//! Derived numbers and how revisions are treated: [`aggregate`].

pub mod aggregate;
mod assets;
pub mod executions;
#[cfg(feature = "server")]
pub mod server;

pub use executions::{
    ExecutionDetail, ExecutionSource, ExecutionSummary, LedgerExecutions, Outcome,
};

use crate::error::EtlError;
use crate::record::DailyRecord;
use crate::store::Store;
use aggregate::{DailyPoint, Granularity, PeriodSum};
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Cache-Control` of the series endpoints: the data changes once a day, so a few minutes
/// of caching (browser, API Gateway, a CDN) costs nothing and spares the store.
pub const SERIES_CACHE: &str = "public, max-age=300";
/// `Cache-Control` of the executions endpoint and of every error.
pub const NO_STORE: &str = "no-store";

/// Default and largest `limit` of `GET /api/executions`.
pub const DEFAULT_EXECUTIONS: u32 = 20;
pub const MAX_EXECUTIONS: u32 = 100;

/// How long the series and the executions read from the store serve requests. The series
/// changes once a day and its answers are already public for 5 minutes ([`SERIES_CACHE`]);
/// 30 s bounds the store to two reads (Scans on DynamoDB) per 30 s per instance whatever
/// the traffic, while a run that just ended appears on the dashboard within half a minute.
pub const STORE_CACHE_TTL: Duration = Duration::from_secs(30);

/// One value read from the store, reused until it is [`STORE_CACHE_TTL`] old. The lock is
/// held while reading, so requests arriving together on an expired value wait for one read
/// instead of each starting their own. Errors are not kept.
struct Cached<T> {
    slot: tokio::sync::Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self {
            slot: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T> Cached<T> {
    async fn get<F>(&self, read: F) -> crate::error::Result<Arc<T>>
    where
        F: std::future::Future<Output = crate::error::Result<T>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref()
            && at.elapsed() < STORE_CACHE_TTL
        {
            return Ok(value.clone());
        }
        let value = Arc::new(read.await?);
        *slot = Some((Instant::now(), value.clone()));
        Ok(value)
    }
}

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    executions: Arc<dyn ExecutionSource>,
    series: Arc<Cached<Vec<DailyRecord>>>,
    /// The newest [`MAX_EXECUTIONS`] runs; a smaller `limit` takes the first ones.
    recent: Arc<Cached<Vec<ExecutionSummary>>>,
}

/// The whole application: API, dashboard and its assets.
pub fn router(store: Arc<dyn Store>, executions: Arc<dyn ExecutionSource>) -> Router {
    Router::new()
        .route("/api/series", get(series))
        .route("/api/series/weekly", get(weekly))
        .route("/api/series/monthly", get(monthly))
        .route("/api/executions", get(recent_executions))
        .route("/api/executions/{execution_id}", get(one_execution))
        .merge(assets::routes())
        .fallback(not_found)
        .with_state(AppState {
            store,
            executions,
            series: Default::default(),
            recent: Default::default(),
        })
}

/// A failed request: its status and the one-line message sent as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<EtlError> for ApiError {
    fn from(e: EtlError) -> Self {
        tracing::error!(error = %e, "api: the store failed");
        let status = match e {
            EtlError::StoreThrottled(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
            message: format!("cannot read the store: {e}"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        response
    }
}

/// JSON with a `Cache-Control` header.
fn json<T: Serialize>(value: &T, cache: &'static str) -> Response {
    let mut response = axum::Json(value).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no such resource: {method} {}", uri.path()),
    }
}

type RawQuery = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The query's parameters, each at most once and each one of `allowed`.
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(query: RawQuery, allowed: &[&str]) -> Result<Self, ApiError> {
        let Query(pairs) =
            query.map_err(|e| ApiError::bad_request(format!("unreadable query string: {e}")))?;
        for (i, (name, value)) in pairs.iter().enumerate() {
            if !allowed.contains(&name.as_str()) {
                let allowed = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter \"{name}\" (value \"{value}\"); allowed: {allowed}"
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_request(format!(
                    "query parameter \"{name}\" is given more than once"
                )));
            }
        }
        Ok(Self { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.get(name).map(|v| parse_date(name, v)).transpose()
    }

    /// `from` and `to`, both optional, inclusive, `from <= to`.
    fn range(&self) -> Result<Range, ApiError> {
        let range = Range {
            from: self.date("from")?,
            to: self.date("to")?,
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(ApiError::bad_request(format!(
                "from \"{from}\" is after to \"{to}\"; the range is inclusive and from must not be later than to"
            )));
        }
        Ok(range)
    }
}

/// A real calendar day written exactly `YYYY-MM-DD` (no other widths, no time part).
fn parse_date(name: &str, value: &str) -> Result<NaiveDate, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid {name} \"{value}\": expected a calendar date written YYYY-MM-DD, e.g. 2020-03-01"
        ))
    };
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shaped {
        return Err(bad());
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Range {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

impl Range {
    fn contains(&self, date: NaiveDate) -> bool {
        self.from.is_none_or(|f| date >= f) && self.to.is_none_or(|t| date <= t)
    }
}

/// Today's whole series with its derived counts, then the requested range. The new counts of
/// the range's first day are against the day before it, when stored.
async fn points(
    state: &AppState,
    range: Range,
) -> Result<(Vec<DailyPoint>, Option<DailyRecord>), ApiError> {
    let series = state.series.get(state.store.series()).await?;
    let latest = series.last().copied();
    let points = aggregate::daily(&series)
        .into_iter()
        .filter(|p| range.contains(p.date))
        .collect();
    Ok((points, latest))
}

/// The store's newest day, as the dashboard's totals show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Latest {
    date: NaiveDate,
    cases: u64,
    deaths: u64,
    recovered: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeriesBody {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    count: usize,
    /// The newest stored day, whatever the range.
    latest: Option<Latest>,
    records: Vec<DailyPoint>,
}

async fn series(State(state): State<AppState>, query: RawQuery) -> Result<Response, ApiError> {
    let range = Params::parse(query, &["from", "to"])?.range()?;
    let (records, latest) = points(&state, range).await?;
    let body = SeriesBody {
        from: range.from,
        to: range.to,
        count: records.len(),
        latest: latest.map(|r| Latest {
            date: r.date,
            cases: r.cases,
            deaths: r.deaths,
            recovered: r.recovered,
        }),
        records,
    };
    Ok(json(&body, SERIES_CACHE))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeriodsBody {
    granularity: Granularity,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    count: usize,
    periods: Vec<PeriodSum>,
}

async fn periods(
    state: AppState,
    query: RawQuery,
    granularity: Granularity,
) -> Result<Response, ApiError> {
    let range = Params::parse(query, &["from", "to"])?.range()?;
    let (points, _) = points(&state, range).await?;
    let periods = aggregate::sums(&points, granularity);
    let body = PeriodsBody {
        granularity,
        from: range.from,
        to: range.to,
        count: periods.len(),
        periods,
    };
    Ok(json(&body, SERIES_CACHE))
}

async fn weekly(State(state): State<AppState>, query: RawQuery) -> Result<Response, ApiError> {
    periods(state, query, Granularity::Week).await
}

async fn monthly(State(state): State<AppState>, query: RawQuery) -> Result<Response, ApiError> {
    periods(state, query, Granularity::Month).await
}

#[derive(Serialize)]
struct ExecutionsBody {
    source: &'static str,
    count: usize,
    executions: Vec<ExecutionSummary>,
}

async fn recent_executions(
    State(state): State<AppState>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(query, &["limit"])?;
    let limit = match params.get("limit") {
        None => DEFAULT_EXECUTIONS,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_EXECUTIONS).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid limit \"{v}\": expected a whole number from 1 to {MAX_EXECUTIONS}"
                ))
            })?,
    };
    let recent = state
        .recent
        .get(state.executions.recent(MAX_EXECUTIONS))
        .await?;
    let executions: Vec<ExecutionSummary> = recent.iter().take(limit as usize).cloned().collect();
    let body = ExecutionsBody {
        source: state.executions.kind(),
        count: executions.len(),
        executions,
    };
    Ok(json(&body, NO_STORE))
}

async fn one_execution(
    State(state): State<AppState>,
    axum::extract::Path(execution_id): axum::extract::Path<String>,
    query: RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(query, &[])?;
    match state.executions.detail(&execution_id).await? {
        Some(detail) => Ok(json(&detail, NO_STORE)),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no execution with id \"{execution_id}\""),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn requests_within_the_ttl_share_one_store_read_and_errors_are_not_kept() {
        let cache: Cached<u32> = Cached::default();
        let reads = AtomicUsize::new(0);
        let read = |value: Option<u32>| {
            let reads = &reads;
            async move {
                reads.fetch_add(1, Ordering::SeqCst);
                value.ok_or_else(|| EtlError::store("down"))
            }
        };
        assert!(cache.get(read(None)).await.is_err());
        for _ in 0..5 {
            assert_eq!(*cache.get(read(Some(7))).await.unwrap(), 7);
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "one failed read, then one read"
        );
        // Once the value is older than the TTL, the next request reads again.
        let backdated = Instant::now().checked_sub(STORE_CACHE_TTL).unwrap();
        *cache.slot.lock().await = Some((backdated, Arc::new(7)));
        assert_eq!(*cache.get(read(Some(9))).await.unwrap(), 9);
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn dates_must_be_real_days_in_one_spelling() {
        assert!(parse_date("from", "2020-03-01").is_ok());
        for bad in [
            "2020-3-1",
            "2020-02-30",
            "20200301",
            "2020-03-01T00:00",
            " 2020-03-01",
            "+2020-03-0",
            "",
        ] {
            let e = parse_date("from", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(&format!("\"{bad}\"")), "{}", e.message);
        }
    }
}
