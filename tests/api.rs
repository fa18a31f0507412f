//! The HTTP API (issue 7) on a real listener on 127.0.0.1, over the embedded database loaded
//! by the CLI from the fixtures, and over DynamoDB on moto's server.
//!
//! Expected numbers are computed here straight from the fixture CSV files (the US rows both
//! files share), not with the library's merge or aggregation code.

#[path = "common/moto.rs"]
mod moto;

use chrono::{Datelike, NaiveDate};
use covid_etl::DailyRecord;
use covid_etl::api::{self, ExecutionSource, LedgerExecutions};
use covid_etl::ledger::{RunLedger, RunRecord};
use covid_etl::store::{DynamoStore, MemoryStore, SqliteDb, Store, WriteReport};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// The fixtures' merged series, computed independently: NYT cases and deaths, JHU recovered
/// (US country rows, empty province), on the dates both files have.
fn expected_series() -> Vec<DailyRecord> {
    let mut nyt = BTreeMap::new();
    let mut r = csv::Reader::from_path(fixture("nyt/us.csv")).unwrap();
    for row in r.records() {
        let row = row.unwrap();
        nyt.insert(
            date(&row[0]),
            (
                row[1].parse::<u64>().unwrap(),
                row[2].parse::<u64>().unwrap(),
            ),
        );
    }
    let mut r = csv::Reader::from_path(fixture("jhu/combined.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (d, country, province, recovered) = (
        col("Date"),
        col("Country/Region"),
        col("Province/State"),
        col("Recovered"),
    );
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.unwrap();
        if &row[country] != "US" || !row[province].is_empty() {
            continue;
        }
        let day = date(&row[d]);
        if let Some(&(cases, deaths)) = nyt.get(&day) {
            let rec = row[recovered].parse::<u64>().ok();
            out.push(DailyRecord::new(day, cases, deaths, rec));
        }
    }
    out.sort_by_key(|r| r.date);
    out
}

/// A server on 127.0.0.1:0 running the router; aborted when dropped.
struct Server {
    base: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(store: Arc<dyn Store>, executions: Arc<dyn ExecutionSource>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = api::router(store, executions);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            base,
            http: reqwest::Client::new(),
            task,
        }
    }

    async fn get(&self, path: &str) -> (u16, HashMap<String, String>, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        (status, headers, response.text().await.unwrap())
    }

    /// GET that must answer 200 JSON with the given Cache-Control.
    async fn json(&self, path: &str, cache: &str) -> Value {
        let (status, headers, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "GET {path}");
        assert_eq!(headers["cache-control"], cache, "GET {path}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A database loaded by the CLI from the fixtures: one successful run, then a failed one.
fn fixture_db(dir: &Path) -> PathBuf {
    let db = dir.join("api.db");
    let run = |nyt: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_covid-etl"))
            .args(["run", "--json", "--db"])
            .arg(&db)
            .arg("--nyt")
            .arg(fixture(nyt))
            .arg("--jhu")
            .arg(fixture("jhu/combined.csv"))
            .output()
            .unwrap()
    };
    let ok = run("nyt/us.csv");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let failed = run("nyt/negative-count.csv");
    assert_eq!(failed.status.code(), Some(1));
    db
}

async fn fixture_server(dir: &Path) -> Server {
    let db = SqliteDb::open(fixture_db(dir)).unwrap();
    Server::start(Arc::new(db.clone()), Arc::new(db)).await
}

fn record_json(r: &DailyRecord) -> Value {
    serde_json::json!({
        "date": r.date.to_string(),
        "cases": r.cases,
        "deaths": r.deaths,
        "recovered": r.recovered,
    })
}

fn diff(now: u64, before: u64) -> i64 {
    now as i64 - before as i64
}

/// Sums of daily new cases and deaths per key, with the day before the first as "no delta".
fn expected_sums<K: Ord>(
    series: &[DailyRecord],
    keep: impl Fn(NaiveDate) -> bool,
    key: impl Fn(NaiveDate) -> K,
) -> Vec<(K, u32, i64, i64)> {
    let mut groups: BTreeMap<K, (u32, i64, i64)> = BTreeMap::new();
    for (i, r) in series.iter().enumerate() {
        if !keep(r.date) {
            continue;
        }
        let g = groups.entry(key(r.date)).or_default();
        g.0 += 1;
        if i > 0 {
            g.1 += diff(r.cases, series[i - 1].cases);
            g.2 += diff(r.deaths, series[i - 1].deaths);
        }
    }
    groups
        .into_iter()
        .map(|(k, (days, c, d))| (k, days, c, d))
        .collect()
}

fn period_tuples(body: &Value) -> Vec<(String, u32, i64, i64)> {
    body["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["days"].as_u64().unwrap() as u32,
                p["newCases"].as_i64().unwrap(),
                p["newDeaths"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn series_returns_the_stored_days_with_daily_new_counts_and_filters_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixture_server(dir.path()).await;
    let expected = expected_series();
    assert_eq!(expected.len(), 60);

    let body = server.json("/api/series", "public, max-age=300").await;
    assert_eq!(body["count"], 60);
    assert_eq!(body["from"], Value::Null);
    assert_eq!(body["latest"], record_json(expected.last().unwrap()));
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 60);
    for (i, (got, want)) in records.iter().zip(&expected).enumerate() {
        for k in ["date", "cases", "deaths", "recovered"] {
            assert_eq!(got[k], record_json(want)[k], "day {i} {k}");
        }
        if i == 0 {
            for k in ["newCases", "newDeaths", "newRecovered"] {
                assert_eq!(got[k], Value::Null, "the first day has no previous day");
            }
        } else {
            let prev = &expected[i - 1];
            assert_eq!(got["newCases"], diff(want.cases, prev.cases));
            assert_eq!(got["newDeaths"], diff(want.deaths, prev.deaths));
            let new_recovered = want.recovered.zip(prev.recovered).map(|(a, b)| diff(a, b));
            assert_eq!(got["newRecovered"], serde_json::json!(new_recovered));
        }
    }

    // An inclusive range; the first day's new counts are against the day before it.
    let body = server
        .json(
            "/api/series?from=2020-04-01&to=2020-04-29",
            "public, max-age=300",
        )
        .await;
    assert_eq!(
        (body["from"].as_str(), body["to"].as_str()),
        (Some("2020-04-01"), Some("2020-04-29"))
    );
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 29);
    assert_eq!(records[0]["date"], "2020-04-01");
    assert_eq!(records[28]["date"], "2020-04-29");
    let i = expected
        .iter()
        .position(|r| r.date == date("2020-04-01"))
        .unwrap();
    assert_eq!(
        records[0]["newCases"],
        diff(expected[i].cases, expected[i - 1].cases)
    );

    let tail = server
        .json("/api/series?from=2020-04-27", "public, max-age=300")
        .await;
    assert_eq!(tail["count"], 3);
    let head = server
        .json("/api/series?to=2020-03-05", "public, max-age=300")
        .await;
    assert_eq!(head["count"], 5);
    assert_eq!(head["records"][4]["date"], "2020-03-05");
    let one = server
        .json(
            "/api/series?from=2020-03-10&to=2020-03-10",
            "public, max-age=300",
        )
        .await;
    assert_eq!(one["count"], 1);
    // A range with no stored day: empty, but the latest totals are still there.
    let none = server
        .json(
            "/api/series?from=2021-01-01&to=2021-12-31",
            "public, max-age=300",
        )
        .await;
    assert_eq!(none["count"], 0);
    assert_eq!(none["records"], serde_json::json!([]));
    assert_eq!(none["latest"]["date"], "2020-04-29");
}

#[tokio::test]
async fn weekly_and_monthly_sums_match_sums_computed_from_the_csv_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixture_server(dir.path()).await;
    let expected = expected_series();
    let week = |d: NaiveDate| {
        let w = d.iso_week();
        format!("{}-W{:02}", w.year(), w.week())
    };
    let month = |d: NaiveDate| format!("{}-{:02}", d.year(), d.month());

    for (query, keep) in [
        ("", Box::new(|_| true) as Box<dyn Fn(NaiveDate) -> bool>),
        (
            "?from=2020-03-10&to=2020-04-12",
            Box::new(|d| d >= date("2020-03-10") && d <= date("2020-04-12")),
        ),
    ] {
        let weekly = server
            .json(&format!("/api/series/weekly{query}"), "public, max-age=300")
            .await;
        assert_eq!(weekly["granularity"], "week");
        assert_eq!(
            period_tuples(&weekly),
            expected_sums(&expected, &keep, week),
            "weekly{query}"
        );
        let monthly = server
            .json(
                &format!("/api/series/monthly{query}"),
                "public, max-age=300",
            )
            .await;
        assert_eq!(monthly["granularity"], "month");
        assert_eq!(
            period_tuples(&monthly),
            expected_sums(&expected, &keep, month),
            "monthly{query}"
        );
    }

    // Whole series: the sums telescope to last minus first, and the bounds are calendar ones.
    let weekly = server
        .json("/api/series/weekly", "public, max-age=300")
        .await;
    let total: i64 = period_tuples(&weekly).iter().map(|p| p.2).sum();
    let (first, last) = (expected.first().unwrap(), expected.last().unwrap());
    assert_eq!(total, diff(last.cases, first.cases));
    assert_eq!(weekly["count"], 10);
    let w10 = &weekly["periods"][1];
    assert_eq!(
        (
            w10["period"].as_str(),
            w10["start"].as_str(),
            w10["end"].as_str()
        ),
        (Some("2020-W10"), Some("2020-03-02"), Some("2020-03-08"))
    );
    let monthly = server
        .json("/api/series/monthly", "public, max-age=300")
        .await;
    let april = &monthly["periods"][1];
    assert_eq!(april["period"], "2020-04");
    assert_eq!(
        (april["start"].as_str(), april["end"].as_str()),
        (Some("2020-04-01"), Some("2020-04-30"))
    );
    assert_eq!(
        (april["firstDate"].as_str(), april["lastDate"].as_str()),
        (Some("2020-04-01"), Some("2020-04-29"))
    );
    assert_eq!(april["days"], 29);
    assert_eq!(april["revisions"], 0);
}

#[tokio::test]
async fn a_downward_revision_is_a_negative_day_kept_in_the_sums_and_counted() {
    let db = SqliteDb::in_memory().unwrap();
    // Mon 2020-03-02 .. Sun 2020-03-08, then Mon 2020-03-09; cases drop on 03-05 (revision).
    let cases = [100, 120, 150, 140, 160, 170, 180, 200];
    let deaths = [1, 1, 2, 2, 2, 3, 3, 3];
    let records: Vec<_> = (0..8)
        .map(|i| {
            DailyRecord::new(
                date("2020-03-02") + chrono::Duration::days(i),
                cases[i as usize],
                deaths[i as usize],
                None,
            )
        })
        .collect();
    db.write(&records).await.unwrap();
    let server = Server::start(
        Arc::new(db),
        Arc::new(LedgerExecutions(Arc::new(MemoryStore::default()))),
    )
    .await;

    let series = server.json("/api/series", "public, max-age=300").await;
    assert_eq!(series["records"][3]["newCases"], -10);
    assert_eq!(series["records"][3]["newRecovered"], Value::Null);
    let weekly = server
        .json("/api/series/weekly", "public, max-age=300")
        .await;
    let w = &weekly["periods"][0];
    assert_eq!(w["period"], "2020-W10");
    // 20 + 30 - 10 + 20 + 10 + 10 = 80 = 180 - 100: the revision is in the sum.
    assert_eq!(
        (
            w["days"].as_u64(),
            w["newCases"].as_i64(),
            w["newDeaths"].as_i64()
        ),
        (Some(7), Some(80), Some(2))
    );
    assert_eq!(w["revisions"], 1);
    assert_eq!(weekly["periods"][1]["newCases"], 20);
    assert_eq!(weekly["periods"][1]["revisions"], 0);

    // An empty ledger: an empty list that says where it looked.
    let executions = server.json("/api/executions", "no-store").await;
    assert_eq!(executions["source"], "ledger");
    assert_eq!(executions["executions"], serde_json::json!([]));
}

#[tokio::test]
async fn executions_list_recent_runs_with_status_duration_failed_state_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixture_server(dir.path()).await;
    let body = server.json("/api/executions", "no-store").await;
    assert_eq!(body["source"], "sqlite");
    assert_eq!(body["count"], 2);
    let list = body["executions"].as_array().unwrap();
    let (failed, ok) = (&list[0], &list[1]);
    assert_eq!(failed["status"], "FAILED", "newest first");
    assert_eq!(failed["outcome"], "FAILED");
    assert_eq!(failed["failedState"], "ExtractNyt");
    assert_eq!(failed["error"], "DataQualityError");
    assert_eq!(
        failed["cause"],
        "nyt line 22 column \"cases\": \"-88\" is negative"
    );
    assert_eq!(failed["load"], Value::Null);
    assert_eq!(ok["status"], "SUCCEEDED");
    assert_eq!(ok["outcome"], "LOADED");
    assert_eq!(ok["failedState"], Value::Null);
    assert_eq!(
        ok["load"],
        serde_json::json!({"inserted": 60, "updated": 0, "unchanged": 0})
    );
    assert_eq!(ok["planned"], Value::Null);
    assert!(
        ok["executionId"]
            .as_str()
            .unwrap()
            .starts_with("arn:local:")
    );
    assert_eq!(ok.get("id"), None, "one name per concept: executionId");
    for e in list {
        assert!(e["durationMs"].as_i64().unwrap() >= 0);
        assert!(e["name"].as_str().unwrap().starts_with("run-"));
        assert!(e["startedAt"].as_str().unwrap().ends_with('Z'));
        assert!(e["finishedAt"].is_string());
    }
    // One execution by its id (URL-encoded), with its steps; a name is not an id.
    let id = failed["executionId"].as_str().unwrap();
    let encoded: String = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let detail = server
        .json(&format!("/api/executions/{encoded}"), "no-store")
        .await;
    assert_eq!(detail["executionId"], id);
    let steps: Vec<String> = detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}",
                s["name"].as_str().unwrap(),
                s["status"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        steps.contains(&"ExtractNyt:FAILED".to_string()),
        "{steps:?}"
    );
    let by_name = format!("/api/executions/{}", failed["name"].as_str().unwrap());
    assert_eq!(server.get(&by_name).await.0, 404);

    let one = server.json("/api/executions?limit=1", "no-store").await;
    assert_eq!(one["count"], 1);
    assert_eq!(one["executions"][0]["status"], "FAILED");
    let max = server.json("/api/executions?limit=100", "no-store").await;
    assert_eq!(max["count"], 2);
}

/// A store that counts its reads.
struct CountingStore {
    inner: SqliteDb,
    reads: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn series(&self) -> covid_etl::Result<Vec<DailyRecord>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.series().await
    }
    async fn write(&self, records: &[DailyRecord]) -> covid_etl::Result<WriteReport> {
        self.inner.write(records).await
    }
    async fn load(
        &self,
        load: &covid_etl::store::Load,
    ) -> covid_etl::Result<covid_etl::store::Applied> {
        self.inner.load(load).await
    }
    async fn marker(&self) -> covid_etl::Result<Option<covid_etl::store::LoadMarker>> {
        self.inner.marker().await
    }
}

#[tokio::test]
async fn repeated_requests_do_not_each_read_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDb::open(fixture_db(dir.path())).unwrap();
    let store = Arc::new(CountingStore {
        inner: db.clone(),
        reads: AtomicUsize::new(0),
    });
    let server = Server::start(store.clone(), Arc::new(db)).await;
    for path in [
        "/api/series",
        "/api/series?from=2020-03-01",
        "/api/series/weekly",
    ]
    .iter()
    .cycle()
    .take(12)
    {
        assert_eq!(server.get(path).await.0, 200, "{path}");
    }
    assert_eq!(
        store.reads.load(Ordering::SeqCst),
        1,
        "12 requests within {:?} share one read",
        api::STORE_CACHE_TTL
    );
}

#[tokio::test]
async fn bad_parameters_are_400_with_a_message_naming_parameter_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let server = fixture_server(dir.path()).await;
    let cases: &[(&str, &[&str])] = &[
        (
            "/api/series?from=2020-02-30",
            &["from", "\"2020-02-30\"", "YYYY-MM-DD"],
        ),
        ("/api/series?to=2020-13-01", &["to", "\"2020-13-01\""]),
        ("/api/series?from=2020-3-1", &["from", "\"2020-3-1\""]),
        ("/api/series?from=03/01/2020", &["from", "\"03/01/2020\""]),
        (
            "/api/series?from=2020-03-01T00:00:00Z",
            &["from", "\"2020-03-01T00:00:00Z\""],
        ),
        ("/api/series?from=", &["from", "\"\""]),
        ("/api/series?to=yesterday", &["to", "\"yesterday\""]),
        (
            "/api/series?from=2020-04-10&to=2020-04-01",
            &["from \"2020-04-10\" is after to \"2020-04-01\""],
        ),
        (
            "/api/series?since=2020-04-01",
            &[
                "unknown query parameter \"since\"",
                "\"2020-04-01\"",
                "allowed: from, to",
            ],
        ),
        (
            "/api/series?from=2020-04-01&from=2020-04-02",
            &["\"from\" is given more than once"],
        ),
        (
            "/api/series/weekly?from=2020-04-31",
            &["from", "\"2020-04-31\""],
        ),
        (
            "/api/series/monthly?from=2020-04-02&to=2020-04-01",
            &["is after to"],
        ),
        (
            "/api/series/monthly?granularity=day",
            &["unknown query parameter \"granularity\""],
        ),
        ("/api/executions?limit=0", &["limit", "\"0\"", "1 to 100"]),
        ("/api/executions?limit=101", &["limit", "\"101\""]),
        ("/api/executions?limit=ten", &["limit", "\"ten\""]),
        ("/api/executions?limit=-1", &["limit", "\"-1\""]),
        (
            "/api/executions?from=2020-04-01",
            &["unknown query parameter \"from\"", "allowed: limit"],
        ),
    ];
    for (path, needles) in cases {
        let (status, headers, body) = server.get(path).await;
        assert_eq!(status, 400, "GET {path}: {body}");
        assert_eq!(headers["content-type"], "application/json", "GET {path}");
        assert_eq!(headers["cache-control"], "no-store", "GET {path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {body}"));
        assert_eq!(
            body.as_object().unwrap().len(),
            1,
            "{path}: only an error field"
        );
        for needle in *needles {
            assert!(
                message.contains(needle),
                "GET {path}: {message:?} lacks {needle:?}"
            );
        }
    }
    // Unknown resources are JSON 404s; a write is refused.
    let (status, headers, body) = server.get("/api/serie").await;
    assert_eq!(
        (status, headers["cache-control"].as_str()),
        (404, "no-store")
    );
    assert!(body.contains("/api/serie"), "{body}");
    let post = server
        .http
        .post(format!("{}/api/series", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);
}

#[tokio::test]
async fn the_dashboard_and_the_contract_are_served_from_the_binary() {
    let db = SqliteDb::in_memory().unwrap();
    let server = Server::start(Arc::new(db.clone()), Arc::new(db)).await;
    let (status, headers, html) = server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(headers["content-security-policy"].contains("default-src 'self'"));
    for asset in [
        "/app.js",
        "/app.css",
        "/vendor/uPlot.iife.min.js",
        "/vendor/uPlot.min.css",
    ] {
        assert!(html.contains(asset), "index.html references {asset}");
        let (status, headers, body) = server.get(asset).await;
        assert_eq!(status, 200, "{asset}");
        assert_eq!(headers["cache-control"], "public, max-age=3600", "{asset}");
        assert!(!body.is_empty());
    }
    // No third-party origin anywhere in the page's own files.
    for asset in ["/", "/app.js", "/app.css"] {
        let (_, _, body) = server.get(asset).await;
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{asset} loads nothing remote"
        );
    }
    let (status, _, yaml) = server.get("/api/openapi.yaml").await;
    assert_eq!(status, 200);
    assert!(yaml.starts_with("openapi: 3."));
    for path in [
        "/api/series:",
        "/api/series/weekly:",
        "/api/series/monthly:",
        "/api/executions:",
        "/api/executions/{executionId}:",
    ] {
        assert!(
            yaml.contains(&format!("\n  {path}\n")),
            "openapi.yaml documents {path}"
        );
    }
    // The empty store: no days, no latest.
    let body = server.json("/api/series", "public, max-age=300").await;
    assert_eq!(
        (body["count"].as_u64(), &body["latest"]),
        (Some(0), &Value::Null)
    );
    let weekly = server
        .json("/api/series/weekly", "public, max-age=300")
        .await;
    assert_eq!(weekly["periods"], serde_json::json!([]));
}

#[tokio::test]
async fn the_same_router_serves_the_series_from_dynamodb_on_moto() {
    let Some(moto) = moto::Moto::start().await else {
        return;
    };
    let started = Instant::now();
    let config = moto.sdk_config().await;
    moto.create_table(&config, "covid-api").await;
    let store = Arc::new(DynamoStore::from_conf(&config, "covid-api"));
    let expected = expected_series();
    store.write(&expected).await.unwrap();
    // One run in the ledger that shares the table: the series must not see it, the
    // executions endpoint must.
    let run: RunRecord = serde_json::from_value(serde_json::json!({
        "executionId": "arn:aws:states:us-east-1:123456789012:execution:covid-etl-ci:daily-2020-04-30",
        "executionName": "daily-2020-04-30", "startedAt": "2020-04-30T06:00:00Z", "durationMs": 1500,
        "status": "SUCCEEDED", "load": {"inserted": 60, "updated": 0, "unchanged": 0}, "warnings": []
    }))
    .unwrap();
    store.record_run(&run).await.unwrap();
    let server = Server::start(store.clone(), Arc::new(LedgerExecutions(store))).await;

    let body = server.json("/api/series", "public, max-age=300").await;
    assert_eq!(body["count"], 60);
    assert_eq!(body["latest"], record_json(expected.last().unwrap()));
    let got: Vec<Value> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::json!({"date": r["date"], "cases": r["cases"], "deaths": r["deaths"], "recovered": r["recovered"]})
        })
        .collect();
    assert_eq!(got, expected.iter().map(record_json).collect::<Vec<_>>());
    let filtered = server
        .json(
            "/api/series?from=2020-04-01&to=2020-04-29",
            "public, max-age=300",
        )
        .await;
    assert_eq!(filtered["count"], 29);
    let monthly = server
        .json("/api/series/monthly", "public, max-age=300")
        .await;
    let month = |d: NaiveDate| format!("{}-{:02}", d.year(), d.month());
    assert_eq!(
        period_tuples(&monthly),
        expected_sums(&expected, |_| true, month)
    );
    let (status, _, body) = server.get("/api/series?to=2020-02-31").await;
    assert_eq!(status, 400, "{body}");
    let executions = server.json("/api/executions", "no-store").await;
    assert_eq!(executions["source"], "ledger");
    assert_eq!(executions["count"], 1);
    let e = &executions["executions"][0];
    assert_eq!(
        (&e["name"], &e["status"]),
        (&"daily-2020-04-30".into(), &"SUCCEEDED".into())
    );
    assert_eq!(e["load"]["inserted"], 60);
    assert_eq!(e["durationMs"], 1500);
    eprintln!(
        "moto start {:?}, test body {:?}",
        moto.startup,
        started.elapsed()
    );
}
