//! The whole chain — extract both, merge, diff, load into the embedded store, notify — on the
//! bundled fixtures and, when `../shared/data` is present, on the real snapshots.

use chrono::NaiveDate;
use covid_etl::config::SourceConfig;
use covid_etl::extract::SourceKind;
use covid_etl::merge::QualityPolicy;
use covid_etl::notify::MemoryNotifier;
use covid_etl::payload::*;
use covid_etl::steps;
use covid_etl::store::{Applied, Load, LoadMarker, MemoryStore, SqliteDb, Store, WriteReport};
use covid_etl::{DailyRecord, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts the writes that reach the store, independently of what the steps report.
struct CountingStore {
    inner: SqliteDb,
    writes: AtomicU64,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn series(&self) -> Result<Vec<DailyRecord>> {
        self.inner.series().await
    }
    async fn write(&self, records: &[DailyRecord]) -> Result<WriteReport> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(records).await
    }
    async fn load(&self, load: &Load) -> Result<Applied> {
        let applied = self.inner.load(load).await?;
        if !applied.plan.writes.is_empty() {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(applied)
    }
    async fn marker(&self) -> Result<Option<LoadMarker>> {
        self.inner.marker().await
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn run_chain(
    nyt: &Path,
    jhu: &Path,
    store: &dyn Store,
    notifier: &MemoryNotifier,
) -> Result<(Merged, LoadReport)> {
    run_chain_on(
        nyt,
        jhu,
        store,
        notifier,
        NaiveDate::from_ymd_opt(2020, 5, 2).unwrap(),
    )
    .await
}

/// The chain with the merge step's clock set to `today`.
async fn run_chain_on(
    nyt: &Path,
    jhu: &Path,
    store: &dyn Store,
    notifier: &MemoryNotifier,
    today: NaiveDate,
) -> Result<(Merged, LoadReport)> {
    let config = SourceConfig::default();
    let options = RunOptions {
        nyt: Some(nyt.display().to_string()),
        jhu: Some(jhu.display().to_string()),
        ..RunOptions::default()
    };
    let request = ExtractRequest {
        options: options.clone(),
        ..ExtractRequest::default()
    };
    // Extracts compare with a fresh store's marker: these chains test loading; the
    // no-new-data path has its own tests.
    let fresh = MemoryStore::default();
    let (n, j) = tokio::try_join!(
        steps::extract(SourceKind::Nyt, request.clone(), config.clone(), &fresh),
        steps::extract(SourceKind::Jhu, request, config.clone(), &fresh),
    )?;
    // Every payload crosses a state boundary as JSON: round-trip them like Step Functions.
    let merged = steps::merge(
        roundtrip(&MergeRequest { nyt: n, jhu: j }),
        &QualityPolicy::default(),
        today,
    )?;
    let load = steps::diff_and_load(
        roundtrip(&LoadRequest {
            merged: merged.clone(),
            options,
            execution_id: "local:test".into(),
        }),
        store,
    )
    .await?;
    steps::notify(
        NotifyRequest {
            status: RunOutcome::Succeeded,
            execution_id: "local:test".into(),
            execution_name: "test".into(),
            started_at: None,
            fingerprints: None,
            load: Some(load.clone()),
            dropped: Some(merged.dropped.clone()),
            warnings: merged.warnings.clone(),
            failed_state: None,
            error: None,
        },
        notifier,
        &fresh,
        store,
        steps::NotifySettings {
            notify_no_new_data: true,
        },
        chrono::Utc::now(),
    )
    .await?;
    Ok((merged, load))
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

fn store() -> CountingStore {
    CountingStore {
        inner: SqliteDb::in_memory().unwrap(),
        writes: AtomicU64::new(0),
    }
}

#[tokio::test]
async fn fixtures_load_then_revise_then_rerun_idempotently() {
    let f = root().join("fixtures");
    let (store, notifier) = (store(), MemoryNotifier::default());

    let (merged, load) = run_chain(
        &f.join("nyt/us.csv"),
        &f.join("jhu/combined.csv"),
        &store,
        &notifier,
    )
    .await
    .unwrap();
    assert_eq!(merged.records.len(), 60);
    assert_eq!((load.counts.inserted, load.counts.updated), (60, 0));
    assert_eq!(
        serde_json::to_string(&merged.dropped).unwrap(),
        r#"{"nytOnly":["2020-04-30"],"jhuOnly":["2020-02-29"]}"#
    );

    let (_, load) = run_chain(
        &f.join("nyt/us-revised.csv"),
        &f.join("jhu/combined-revised.csv"),
        &store,
        &notifier,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            load.counts.inserted,
            load.counts.updated,
            load.counts.unchanged
        ),
        (2, 2, 58)
    );
    assert_eq!(
        serde_json::to_value(&load.changed).unwrap(),
        serde_json::json!(["2020-03-10", "2020-04-01", "2020-04-30..2020-05-01"])
    );
    let writes_before = store.writes.load(Ordering::SeqCst);
    let (_, load) = run_chain(
        &f.join("nyt/us-revised.csv"),
        &f.join("jhu/combined-revised.csv"),
        &store,
        &notifier,
    )
    .await
    .unwrap();
    assert_eq!((load.counts.inserted, load.counts.updated), (0, 0));
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        writes_before,
        "an unchanged rerun writes nothing"
    );

    let sent = notifier.sent.lock().unwrap();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[1].subject,
        "covid-etl SUCCEEDED: 2 inserted, 2 updated, latest 2020-05-01"
    );
    assert_eq!(sent[1].attributes["status"], "SUCCEEDED");
}

#[tokio::test]
async fn a_bad_file_fails_the_extract_and_writes_nothing() {
    let f = root().join("fixtures");
    let cases = [
        (
            "invalid-date",
            "nyt line 22 column \"date\": \"2020-02-30\" is not a real calendar date",
        ),
        (
            "swapped-day-month",
            "nyt line 22 column \"date\": \"2020-21-03\" is not a real calendar date",
        ),
        (
            "negative-count",
            "nyt line 22 column \"cases\": \"-88\" is negative",
        ),
        (
            "non-numeric-count",
            "nyt line 22 column \"deaths\": \"12a\" is not a whole number",
        ),
        (
            "duplicate-date",
            "nyt line 23 column \"date\": \"2020-03-21\" appears twice (first on line 22)",
        ),
    ];
    for (name, message) in cases {
        let (store, notifier) = (store(), MemoryNotifier::default());
        let e = run_chain(
            &f.join(format!("nyt/{name}.csv")),
            &f.join("jhu/combined.csv"),
            &store,
            &notifier,
        )
        .await
        .unwrap_err();
        assert_eq!(e.name(), "DataQualityError", "{name}");
        assert_eq!(e.to_string(), message);
        assert_eq!(store.writes.load(Ordering::SeqCst), 0);
        assert!(store.series().await.unwrap().is_empty());
    }
    let e = run_chain(
        &f.join("nyt/missing-column.csv"),
        &f.join("jhu/combined.csv"),
        &store(),
        &MemoryNotifier::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.name(), "SchemaError");
    assert!(e.to_string().contains("\"deaths\""), "{e}");
}

#[tokio::test]
async fn reordered_columns_and_the_older_jhu_schema_give_the_same_series() {
    let f = root().join("fixtures");
    let (a, _) = run_chain(
        &f.join("nyt/us.csv"),
        &f.join("jhu/combined.csv"),
        &store(),
        &MemoryNotifier::default(),
    )
    .await
    .unwrap();
    let (b, _) = run_chain(
        &f.join("nyt/us-reordered.csv"),
        &f.join("jhu/combined-lat-long.csv"),
        &store(),
        &MemoryNotifier::default(),
    )
    .await
    .unwrap();
    assert_eq!(a.records.len(), b.records.len());
    for (x, y) in a.records.iter().zip(&b.records) {
        assert_eq!((x.date, x.cases, x.deaths), (y.date, y.cases, y.deaths));
    }
    // The last two days have an empty Recovered in the older file: absent, not zero.
    let last = b.records.last().unwrap();
    assert_eq!(last.recovered, None);
    assert!(
        b.warnings.contains(
            &"jhu Recovered is not reported for the latest 2 days (since 2020-04-28)".to_string()
        ),
        "{:?}",
        b.warnings
    );
    assert_eq!(a.records.last().unwrap().recovered, Some(600));
}

// ---- the real snapshots ----------------------------------------------------------------

fn shared_data() -> Option<PathBuf> {
    let dir = root().join("../shared/data");
    if dir.join("nyt/us.2020-08-13.csv").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is absent (real snapshots live beside the project)",
            dir.display()
        );
        None
    }
}

/// An independent reading of the files, to check the pipeline against: plain string splits.
fn expected_merge(nyt: &Path, jhu: &Path) -> BTreeMap<String, (u64, u64, Option<u64>)> {
    let nyt_text = std::fs::read_to_string(nyt).unwrap();
    let mut lines = nyt_text.lines();
    let header: Vec<_> = lines.next().unwrap().split(',').collect();
    let col = |h: &[&str], name| h.iter().position(|c| *c == name).unwrap();
    let (d, c, de) = (
        col(&header, "date"),
        col(&header, "cases"),
        col(&header, "deaths"),
    );
    let nyt: BTreeMap<String, (u64, u64)> = lines
        .map(|l| {
            let f: Vec<_> = l.split(',').collect();
            (
                f[d].to_string(),
                (f[c].parse().unwrap(), f[de].parse().unwrap()),
            )
        })
        .collect();
    let jhu_text = std::fs::read_to_string(jhu).unwrap();
    let mut lines = jhu_text.lines();
    let header: Vec<_> = lines.next().unwrap().split(',').collect();
    let (d, country, province, rec) = (
        col(&header, "Date"),
        col(&header, "Country/Region"),
        col(&header, "Province/State"),
        col(&header, "Recovered"),
    );
    let mut recovered: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for l in lines {
        let f: Vec<_> = l.split(',').collect();
        if f.len() == header.len() && f[country] == "US" && f[province].is_empty() {
            recovered.insert(f[d].to_string(), f[rec].parse().ok());
        }
    }
    // JHU stopped counting recoveries on 2020-12-14 and wrote 0 from then on: a 0 after a
    // positive count is "not reported".
    let mut counting = false;
    let mut out = BTreeMap::new();
    for (date, value) in recovered {
        let value = match value {
            Some(0) if counting => None,
            other => other,
        };
        counting |= value.is_some_and(|v| v > 0);
        if let Some((cases, deaths)) = nyt.get(&date) {
            out.insert(date, (*cases, *deaths, value));
        }
    }
    out
}

#[tokio::test]
async fn real_snapshots_load_update_and_rerun() {
    let Some(data) = shared_data() else { return };
    let first = (
        data.join("nyt/us.2020-08-13.csv"),
        data.join("jhu/time-series-19-covid-combined.2020-09-03.csv"),
    );
    let second = (
        data.join("nyt/us.2022-04-19.csv"),
        data.join("jhu/time-series-19-covid-combined.2021-03-17.csv"),
    );
    let expected1 = expected_merge(&first.0, &first.1);
    let expected2 = expected_merge(&second.0, &second.1);
    let new_dates = expected2
        .keys()
        .filter(|d| !expected1.contains_key(*d))
        .count() as u64;
    let revised = expected2
        .iter()
        .filter(|(d, v)| expected1.get(*d).is_some_and(|old| old != *v))
        .count() as u64;
    assert!(
        new_dates > 0 && revised > 0,
        "the snapshots revise earlier days"
    );

    let (store, notifier) = (store(), MemoryNotifier::default());
    let (merged, load) = run_chain(&first.0, &first.1, &store, &notifier)
        .await
        .unwrap();
    assert_eq!(load.counts.inserted, expected1.len() as u64);
    assert_eq!(load.counts.updated, 0);

    // The largest payloads stay far below Step Functions' 256 KiB state limit.
    let size = serde_json::to_string(&merged).unwrap().len();
    assert!(size < 128 * 1024, "merged payload is {size} bytes");

    let (merged, load) = run_chain(&second.0, &second.1, &store, &notifier)
        .await
        .unwrap();
    assert_eq!(load.counts.inserted, new_dates);
    assert_eq!(load.counts.updated, revised);
    assert_eq!(
        load.counts.unchanged,
        expected2.len() as u64 - new_dates - revised
    );
    let size = serde_json::to_string(&merged).unwrap().len();
    assert!(size < 128 * 1024, "merged payload is {size} bytes");
    assert!(
        merged
            .warnings
            .iter()
            .any(|w| w.starts_with("nyt cases fell")),
        "the real NYT file has decreases: {:?}",
        merged.warnings
    );

    let stored = store.series().await.unwrap();
    let mut want: BTreeMap<String, (u64, u64, Option<u64>)> = expected1;
    want.extend(expected2);
    let got: BTreeMap<_, _> = stored
        .iter()
        .map(|r| {
            (
                covid_etl::record::iso(r.date),
                (r.cases, r.deaths, r.recovered),
            )
        })
        .collect();
    assert_eq!(got, want);

    let writes = store.writes.load(Ordering::SeqCst);
    let (_, load) = run_chain(&second.0, &second.1, &store, &notifier)
        .await
        .unwrap();
    assert_eq!((load.counts.inserted, load.counts.updated), (0, 0));
    assert_eq!(store.writes.load(Ordering::SeqCst), writes);
}

#[tokio::test]
async fn staleness_is_reported_against_the_injected_clock() {
    let Some(data) = shared_data() else { return };
    let nyt = data.join("nyt/us.2020-08-13.csv");
    let jhu = data.join("jhu/time-series-19-covid-combined.2020-09-03.csv");
    let at = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let stale = |merged: &Merged| {
        merged
            .warnings
            .iter()
            .filter(|w| w.contains("is stale"))
            .cloned()
            .collect::<Vec<_>>()
    };

    let (merged, _) = run_chain_on(
        &nyt,
        &jhu,
        &store(),
        &MemoryNotifier::default(),
        at(2020, 9, 1),
    )
    .await
    .unwrap();
    assert_eq!(
        stale(&merged),
        [
            "nyt is stale: its newest date 2020-08-13 is 19 days old (limit 3 days); the source may have stopped updating"
        ]
    );
    let notifier = MemoryNotifier::default();
    let (merged, _) = run_chain_on(&nyt, &jhu, &store(), &notifier, at(2020, 8, 14))
        .await
        .unwrap();
    assert!(stale(&merged).is_empty(), "{:?}", merged.warnings);
}
