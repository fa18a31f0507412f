//! The store equals the sources it last loaded — through `kill -9` at any moment, runs at
//! once, notifications that fail after the load, orphaned and doubly redriven executions.
//!
//! Every check compares the stored series (read back with `covid-etl export`) with a join of
//! the fixture files computed here, independently of the library's parsers and merge.

use covid_etl::backends::Backends;
use covid_etl::config::SourceConfig;
use covid_etl::engine::{MemoryHistory, ScaledClock};
use covid_etl::execution::{ExecutionRecord, ExecutionStatus};
use covid_etl::ledger::{RunLedger, RunOutcome};
use covid_etl::merge::QualityPolicy;
use covid_etl::notify::{MemoryNotifier, Notification, Notifier};
use covid_etl::payload::RunOptions;
use covid_etl::steps::NotifySettings;
use covid_etl::store::{MarkerState, SqliteDb, Store};
use covid_etl::workflow::{LocalRunner, LocalTasks};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One version of both sources.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Version {
    nyt: &'static str,
    jhu: &'static str,
}

const ORIGINAL: Version = Version {
    nyt: "nyt/us.csv",
    jhu: "jhu/combined.csv",
};
/// Revised values on two days, and two more days: a superset of [`ORIGINAL`]'s dates.
const REVISED: Version = Version {
    nyt: "nyt/us-revised.csv",
    jhu: "jhu/combined-revised.csv",
};

/// `date -> (cases, deaths, recovered)`.
type Series = BTreeMap<String, (u64, u64, Option<u64>)>;

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
}

/// Splits one CSV line, honouring double quotes (`"Korea, South"`).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.trim_end_matches('\r').chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

/// The rows of a CSV file as maps from header name to value.
fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = fields(lines.next().unwrap());
    lines
        .filter(|l| !l.is_empty())
        .map(|l| header.iter().cloned().zip(fields(l)).collect())
        .collect()
}

/// The inner join on date: cases and deaths from the NYT file, recovered from the country-level
/// US rows of the JHU file (empty: not reported).
fn expected(v: Version) -> Series {
    let jhu: BTreeMap<String, Option<u64>> = rows(&fixture(v.jhu))
        .into_iter()
        .filter(|r| r["Country/Region"] == "US" && r["Province/State"].is_empty())
        .map(|r| (r["Date"].clone(), r["Recovered"].parse().ok()))
        .collect();
    rows(&fixture(v.nyt))
        .into_iter()
        .filter_map(|r| {
            let recovered = *jhu.get(&r["date"])?;
            let n = |k: &str| r[k].parse::<u64>().unwrap();
            Some((r["date"].clone(), (n("cases"), n("deaths"), recovered)))
        })
        .collect()
}

fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_covid-etl"));
    // Retry waits (the LoadInProgress retry among them) shortened a hundredfold.
    cmd.env("COVID_ETL_TIME_SCALE", "100")
        .env_remove("COVID_ETL_DB")
        .env("NOTIFY_NO_NEW_DATA", "true");
    cmd
}

fn run_args(db: &Path, v: Version) -> Vec<String> {
    [
        "run",
        "--json",
        "--db",
        db.to_str().unwrap(),
        "--nyt",
        fixture(v.nyt).to_str().unwrap(),
        "--jhu",
        fixture(v.jhu).to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// A run to completion; its `--json` summary.
fn run(db: &Path, v: Version) -> Value {
    let out = cli().args(run_args(db, v)).output().unwrap();
    summary(&out)
}

fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The stored series, read back with `covid-etl export`.
fn stored(db: &Path) -> Series {
    let out = cli()
        .args(["export", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f = fields(l);
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            (f[0].clone(), (n(1), n(2), f[3].parse().ok()))
        })
        .collect()
}

/// The store holds `v`'s join on `v`'s dates; any other date is one of `other`'s, with its
/// values (nothing is ever deleted, so a version's extra days outlive a later load of a
/// version without them).
fn assert_holds(db: &Path, v: Version, other: Version, context: &str) {
    let (want, extra) = (expected(v), expected(other));
    let have = stored(db);
    for (date, values) in &have {
        match want.get(date) {
            Some(w) => assert_eq!(values, w, "{context}: {date} differs from {v:?}"),
            None => assert_eq!(
                Some(values),
                extra.get(date),
                "{context}: {date} is in neither version"
            ),
        }
    }
    for date in want.keys() {
        assert!(have.contains_key(date), "{context}: {date} is missing");
    }
}

fn executions(db: &Path) -> Vec<Value> {
    let out = cli()
        .args(["executions", "--json", "--limit", "1000", "--db"])
        .arg(db)
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// A small xorshift: random kill moments without another dependency, reproducible from the
/// printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// 100 runs alternating two versions, each killed with SIGKILL at a random moment of its run
/// (some before it starts, some mid-load, some after it ended), then one run of each version:
/// the store equals that version's join, and no execution is left RUNNING.
#[test]
fn kill_9_at_random_moments_then_one_run_leaves_the_store_equal_to_its_sources() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let started = Instant::now();
    assert_eq!(run(&db, ORIGINAL)["status"], "SUCCEEDED");
    let typical = started.elapsed().as_micros() as u64;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}, a run takes {typical} µs");
    let mut rng = Rng(seed);
    let mut finished = 0;
    for i in 0..100 {
        let v = if i % 2 == 0 { REVISED } else { ORIGINAL };
        let mut child = cli()
            .args(run_args(&db, v))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(typical * 3 / 2)));
        child.kill().unwrap();
        if child.wait().unwrap().code().is_some() {
            finished += 1;
        }
    }
    eprintln!("{finished} of 100 runs ended before their SIGKILL");
    for (v, other) in [(ORIGINAL, REVISED), (REVISED, ORIGINAL)] {
        let last = run(&db, v);
        assert_eq!(last["status"], "SUCCEEDED", "{last}");
        assert_holds(&db, v, other, &format!("after the kills, a run of {v:?}"));
    }
    assert_eq!(stored(&db), expected(REVISED), "REVISED has every date");
    // A run killed before it registered its execution leaves none.
    let all = executions(&db);
    assert!((3..=103).contains(&all.len()), "{}", all.len());
    let status = |s: &str| all.iter().filter(|e| e["status"] == s).count();
    assert_eq!(status("RUNNING"), 0, "every killed execution is reconciled");
    eprintln!(
        "{} executions, {} killed ones reconciled to ABORTED",
        all.len(),
        status("ABORTED")
    );
    assert!(status("ABORTED") > 0, "some kill landed mid-run");
}

/// 40 pairs of runs of different versions started at once on one database (no
/// `--full-reload`): both succeed (the loser of the write lock waits), the store always holds
/// exactly what its marker names, and the next run of either version converges — it never
/// answers NO_NEW_DATA over a store that holds the other version.
#[test]
fn concurrent_runs_of_different_versions_converge_without_false_no_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("concurrent.db");
    let sha = |path: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(fixture(path)).unwrap()))
    };
    let mut no_new_data = 0;
    for i in 0..40 {
        let pair: Vec<_> = [ORIGINAL, REVISED]
            .map(|v| {
                cli()
                    .args(run_args(&db, v))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .into_iter()
            .collect();
        for child in pair {
            let out = child.wait_with_output().unwrap();
            let s = summary(&out);
            assert_eq!(s["status"], "SUCCEEDED", "pair {i}: {s}");
        }
        // The marker names the version the store holds.
        let marker = futures::executor::block_on(SqliteDb::open(&db).unwrap().marker())
            .unwrap()
            .expect("a marker");
        assert_eq!(marker.state, MarkerState::Loaded);
        let (held, other) = if marker.fingerprints.nyt.sha256 == sha(ORIGINAL.nyt) {
            (ORIGINAL, REVISED)
        } else {
            (REVISED, ORIGINAL)
        };
        assert_eq!(marker.fingerprints.jhu.sha256, sha(held.jhu), "pair {i}");
        assert_holds(&db, held, other, &format!("pair {i}: the marker's version"));

        let (next, other) = if i % 2 == 0 {
            (ORIGINAL, REVISED)
        } else {
            (REVISED, ORIGINAL)
        };
        let after = run(&db, next);
        assert_eq!(after["status"], "SUCCEEDED", "{after}");
        if after["outcome"] == "NO_NEW_DATA" {
            no_new_data += 1;
            assert_eq!(held, next, "pair {i}: NO_NEW_DATA over the other version");
        }
        assert_holds(&db, next, other, &format!("pair {i}: the run after it"));
    }
    eprintln!("{no_new_data} of 40 follow-up runs found no new data (rightly)");
}

/// Delivers every message but success ones to `inner`; success ones fail, as SNS can.
struct FailsOnSuccess {
    inner: Arc<MemoryNotifier>,
}

#[async_trait::async_trait]
impl Notifier for FailsOnSuccess {
    async fn publish(&self, n: &Notification) -> covid_etl::Result<()> {
        if n.attributes["status"] == "SUCCEEDED" {
            return Err(covid_etl::EtlError::NotifyError("topic unavailable".into()));
        }
        self.inner.publish(n).await
    }
}

fn runner_tasks(db: &SqliteDb, notifier: Arc<dyn Notifier>) -> LocalTasks {
    LocalTasks {
        sources: SourceConfig::default(),
        quality: QualityPolicy::default(),
        backends: Backends {
            store: Arc::new(db.clone()),
            ledger: Arc::new(db.clone()),
            notifier: notifier.clone(),
            fallback: notifier,
            history: Some(db.clone()),
        },
        notify_settings: NotifySettings {
            notify_no_new_data: true,
        },
    }
}

async fn run_in_process(db: &SqliteDb, notifier: Arc<dyn Notifier>, v: Version) -> ExecutionRecord {
    let tasks = runner_tasks(db, notifier);
    let runner = LocalRunner {
        machine: &covid_etl::workflow::state_machine().unwrap(),
        db,
        tasks: &tasks,
        clock: &ScaledClock { speedup: 1000.0 },
        jitter: &covid_etl::engine::FixedJitter(0.5),
        observer: &MemoryHistory::new(),
        stop: &tokio::sync::Notify::new(),
    };
    let options = RunOptions {
        nyt: Some(fixture(v.nyt).display().to_string()),
        jhu: Some(fixture(v.jhu).display().to_string()),
        ..RunOptions::default()
    };
    runner.start(None, &options).await.unwrap()
}

/// NotifySuccess fails after DiffAndLoad committed: the execution fails, and the failure
/// message says what was committed instead of "nothing was written"; the store's marker says
/// the sources are loaded, so the next run of them rightly finds no new data, and a run of
/// other sources loads them.
#[tokio::test]
async fn a_notification_failing_after_the_load_says_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.db");
    let db = SqliteDb::open(&path).unwrap();
    let delivered = Arc::new(MemoryNotifier::default());
    let failing = Arc::new(FailsOnSuccess {
        inner: delivered.clone(),
    });
    let failed = run_in_process(&db, failing, ORIGINAL).await;
    assert_eq!(failed.status, ExecutionStatus::Failed);
    assert_eq!(failed.failed_state.as_deref(), Some("NotifySuccess"));
    let sent = delivered.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0].subject,
        "covid-etl FAILED in NotifySuccess: NotifyError after loading 60 inserted, 0 updated"
    );
    assert!(
        sent[0].message.contains(
            "This run's load was committed: loaded 60 inserted, 0 updated (0 unchanged); then NotifySuccess failed: NotifyError."
        ),
        "{}",
        sent[0].message
    );
    assert!(
        !sent[0]
            .message
            .contains("Nothing from this run was written")
    );
    // The ledger records the failure with what it committed.
    let record = db.run(&failed.id).await.unwrap().unwrap();
    assert_eq!(record.status, RunOutcome::Failed);
    assert_eq!(record.load.unwrap().inserted, 60);
    assert_holds(&path, ORIGINAL, REVISED, "after the failed notification");

    let working = Arc::new(MemoryNotifier::default());
    let again = run_in_process(&db, working.clone(), ORIGINAL).await;
    assert_eq!(again.status, ExecutionStatus::Succeeded);
    assert_eq!(again.output.as_ref().unwrap()["status"], "NO_NEW_DATA");
    let revised = run_in_process(&db, working, REVISED).await;
    assert_eq!(revised.output.as_ref().unwrap()["status"], "SUCCEEDED");
    assert_eq!(stored(&path), expected(REVISED));

    // A failure before any load still says nothing was written.
    let early = run_in_process(
        &db,
        Arc::new(FailsOnSuccess {
            inner: delivered.clone(),
        }),
        Version {
            nyt: "nyt/negative-count.csv",
            jhu: ORIGINAL.jhu,
        },
    )
    .await;
    assert_eq!(early.status, ExecutionStatus::Failed);
    let last = delivered.sent.lock().unwrap().last().cloned().unwrap();
    assert!(
        last.message
            .contains("Nothing from this run was written; a rerun is safe."),
        "{}",
        last.message
    );
}

/// An HTTP source on 127.0.0.1 that never answers its first request and serves `body` to
/// every later one. Returns its URL and a receiver told when the first request arrived.
fn stalling_source(body: Vec<u8>) -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/us.csv", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            if i == 0 {
                held.push(stream); // never answered
                let _ = tx.send(());
                continue;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (url, rx)
}

/// A run killed while it waits on a stalled download: the next command that opens the
/// database records the execution ABORTED with its history so far, and a redrive resumes it.
#[test]
fn an_orphaned_execution_is_reconciled_to_aborted_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orphan.db");
    let (url, first_request) = stalling_source(std::fs::read(fixture(ORIGINAL.nyt)).unwrap());
    let mut child = cli()
        .args(["run", "--name", "orphan", "--db", db.to_str().unwrap()])
        .args([
            "--nyt",
            &url,
            "--jhu",
            fixture(ORIGINAL.jhu).to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    first_request
        .recv_timeout(Duration::from_secs(60))
        .expect("the run asks for the NYT file");
    child.kill().unwrap();
    child.wait().unwrap();

    let out = cli()
        .args([
            "execution",
            "orphan",
            "--json",
            "--db",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let view = summary(&out);
    assert_eq!(view["status"], "ABORTED", "{view}");
    assert_eq!(view["failedState"], "Extract", "{view}");
    assert!(view["cause"].as_str().unwrap().contains("died"), "{view}");
    let steps = view["steps"].as_array().unwrap();
    assert!(
        steps.iter().any(|s| s["name"] == "Prepare"),
        "the history up to the kill is kept: {view}"
    );

    let out = cli()
        .args(["redrive", "orphan", "--json", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let redriven = summary(&out);
    assert_eq!(redriven["status"], "SUCCEEDED", "{redriven}");
    assert_eq!(redriven["redriveCount"], 1);
    assert_eq!(stored(&db), expected(ORIGINAL));
}

/// Two redrives of one failed execution at once: exactly one runs it, the other is refused
/// with ExecutionNotRedrivable; one success notification, one ExecutionRedriven event.
#[test]
fn of_two_concurrent_redrives_exactly_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("redrive.db");
    let nyt = dir.path().join("us.csv");
    let out = cli()
        .args([
            "run",
            "--name",
            "twice",
            "--json",
            "--db",
            db.to_str().unwrap(),
        ])
        .args(["--nyt", nyt.to_str().unwrap()])
        .args(["--jhu", fixture(ORIGINAL.jhu).to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(summary(&out)["status"], "FAILED");
    std::fs::copy(fixture(ORIGINAL.nyt), &nyt).unwrap();

    let redrives: Vec<_> = (0..2)
        .map(|_| {
            cli()
                .args(["redrive", "twice", "--json", "--db", db.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = redrives
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!((won.len(), lost.len()), (1, 1), "{outs:?}");
    let refusal = String::from_utf8_lossy(&lost[0].stderr);
    assert!(refusal.contains("ExecutionNotRedrivable"), "{refusal}");

    let out = cli()
        .args(["execution", "twice", "--json", "--db", db.to_str().unwrap()])
        .output()
        .unwrap();
    let view = summary(&out);
    assert_eq!(view["status"], "SUCCEEDED");
    assert_eq!(view["redriveCount"], 1);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT COUNT(*) FROM history WHERE event LIKE '%\"ExecutionRedriven\"%'"),
        1
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE subject LIKE 'covid-etl SUCCEEDED%'"),
        1
    );
    assert_eq!(stored(&db), expected(ORIGINAL));
}
