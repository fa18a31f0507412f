//! Criterion benchmarks for the hot paths of one run: the two parsers, the merge (join on
//! date) and the diff against the stored series. `cargo bench --bench pipeline`.
//!
//! Inputs are the real snapshots in `../shared/data` when that folder is there (NYT
//! 2022-04-19, JHU 2021-03-17), else the bundled fixtures. Before the benchmarks it prints
//! the sizes of the JSON payloads that travel between states for that series, so the
//! Step Functions limit (256 KiB) can be checked against the full real series.

use covid_etl::extract::{self, HttpConfig, Location, SourceKind, SourcePolicy, jhu, nyt};
use covid_etl::payload::{LoadRequest, MergeRequest, RunOptions};
use covid_etl::record::DailyRecord;
use covid_etl::{diff, merge, steps};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::path::PathBuf;

fn input(real: &str, fixture: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let real = root.join("../shared/data").join(real);
    if real.exists() {
        real
    } else {
        root.join("fixtures").join(fixture)
    }
}

fn nyt_path() -> PathBuf {
    input("nyt/us.2022-04-19.csv", "nyt/us.csv")
}

fn jhu_path() -> PathBuf {
    input(
        "jhu/time-series-19-covid-combined.2021-03-17.csv",
        "jhu/combined.csv",
    )
}

fn parsers(c: &mut Criterion) {
    let nyt_bytes = std::fs::read(nyt_path()).unwrap();
    let jhu_bytes = std::fs::read(jhu_path()).unwrap();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(nyt_bytes.len() as u64));
    group.bench_function("nyt", |b| {
        b.iter(|| nyt::parse(black_box(nyt_bytes.as_slice())).unwrap())
    });
    group.throughput(Throughput::Bytes(jhu_bytes.len() as u64));
    group.bench_function("jhu", |b| {
        b.iter(|| jhu::parse(black_box(jhu_bytes.as_slice())).unwrap())
    });
    // The csv crate's own ByteRecord loop over the same JHU bytes: the floor the parser
    // had before its prefilter.
    group.bench_function("jhu_csv_crate_loop", |b| {
        b.iter(|| {
            let mut csv = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(black_box(jhu_bytes.as_slice()));
            let mut row = csv::ByteRecord::new();
            let mut us = 0usize;
            while csv.read_byte_record(&mut row).unwrap() {
                us += usize::from(&row[1] == b"US" && row[2].is_empty());
            }
            us
        })
    });
    group.finish();
}

fn series() -> (Vec<DailyRecord>, Vec<DailyRecord>) {
    let nyt = nyt::parse(std::fs::File::open(nyt_path()).unwrap()).unwrap();
    let jhu = jhu::parse(std::fs::File::open(jhu_path()).unwrap()).unwrap();
    (nyt.records, jhu.records)
}

fn merge_and_diff(c: &mut Criterion) {
    let (nyt, jhu) = series();
    let merged = merge::join(&nyt, &jhu).unwrap().records;
    c.bench_function("merge/join", |b| {
        b.iter(|| merge::join(black_box(&nyt), black_box(&jhu)).unwrap())
    });
    // A first load (nothing stored), a daily update (all stored but the newest day, one
    // day revised) and an unchanged rerun.
    let mut yesterday = merged[..merged.len() - 1].to_vec();
    if let Some(r) = yesterday.get_mut(merged.len() / 2) {
        r.cases += 1;
    }
    let mut group = c.benchmark_group("diff/plan");
    for (name, stored) in [
        ("first_load", Vec::new()),
        ("one_new_day", yesterday),
        ("unchanged", merged.clone()),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), &stored, |b, stored| {
            b.iter(|| diff::plan(black_box(stored), black_box(&merged), false))
        });
    }
    group.finish();
}

/// The JSON documents between states for the full series: each extract, the merge input
/// (the Parallel state's two results, the largest), its output and the load input.
fn print_payload_sizes() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let extract = |kind, path: PathBuf| {
        rt.block_on(extract::extract(
            kind,
            &Location::Path(path),
            &HttpConfig::default(),
            &SourcePolicy::Anywhere,
            None,
            true,
        ))
        .unwrap()
    };
    let nyt = extract(SourceKind::Nyt, nyt_path());
    let jhu = extract(SourceKind::Jhu, jhu_path());
    let request = MergeRequest { nyt, jhu };
    let size = |v: &dyn erased::Json| v.json_len();
    let sizes = [
        ("ExtractNyt output", size(&request.nyt)),
        ("ExtractJhu output", size(&request.jhu)),
        ("Merge input (both extracts)", size(&request)),
    ];
    let today = request
        .nyt
        .records
        .last()
        .map_or_else(|| chrono::Utc::now().date_naive(), |r| r.date);
    let merged = steps::merge(request, &covid_etl::merge::QualityPolicy::default(), today).unwrap();
    let load = LoadRequest {
        merged: merged.clone(),
        options: RunOptions::default(),
        execution_id: "arn:aws:states:us-east-1:123456789012:execution:covid-etl:daily-2023-03-10"
            .into(),
    };
    eprintln!(
        "payload sizes for {} and {} (Step Functions limit 262144 bytes):",
        nyt_path().display(),
        jhu_path().display()
    );
    for (name, bytes) in sizes.into_iter().chain([
        ("Merge output", size(&merged)),
        ("DiffAndLoad input", size(&load)),
    ]) {
        eprintln!("  {name:<28} {bytes:>7} bytes");
    }
}

mod erased {
    pub trait Json {
        fn json_len(&self) -> usize;
    }
    impl<T: serde::Serialize> Json for T {
        fn json_len(&self) -> usize {
            serde_json::to_vec(self).unwrap().len()
        }
    }
}

criterion_group!(benches, parsers, merge_and_diff);

fn main() {
    print_payload_sizes();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
