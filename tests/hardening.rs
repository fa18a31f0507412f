//! Hostile and out-of-bounds inputs (issues #15 and #16): bounds on values and sizes, the
//! configuration, what an error may carry, which source locations a run may read, the
//! execution input's keys, and the local server under a flood of half-open connections.
//! Only fixtures, files written here and servers on 127.0.0.1.

use covid_etl::extract::{self, HttpConfig, Location, SourceKind, SourcePolicy, jhu, nyt};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[path = "common/cli.rs"]
mod common_cli;
use common_cli::{cli, fixture, source_server};

/// `covid-etl run --json ARGS` with extra environment variables: its JSON, exit code and
/// everything it printed.
fn run(db: &Path, env: &[(&str, &str)], args: &[&str]) -> (Value, i32, String) {
    let out = cli(db)
        .envs(env.iter().copied())
        .args(["run", "--json"])
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (json, out.status.code().unwrap(), printed)
}

fn nyt_text(text: &str) -> covid_etl::error::Result<extract::SourceSeries> {
    nyt::parse(text.as_bytes())
}

fn error_of(text: &str) -> String {
    nyt_text(text).unwrap_err().to_string()
}

// ---- #15.6 bounds ------------------------------------------------------------------------

#[test]
fn a_count_above_i64_max_is_refused_by_name() {
    let ok = nyt_text("date,cases,deaths\n2020-03-01,9223372036854775807,0\n").unwrap();
    assert_eq!(ok.records[0].cases, i64::MAX as u64);
    for big in [
        "9223372036854775808",
        "18446744073709551615",
        "99999999999999999999999",
    ] {
        let e = nyt_text(&format!("date,cases,deaths\n2020-03-01,{big},0\n")).unwrap_err();
        assert_eq!(e.name(), "DataQualityError");
        assert_eq!(
            e.to_string(),
            format!(
                "nyt line 2 column \"cases\": \"{big}\" is larger than 9223372036854775807, the largest count stored"
            )
        );
    }
}

#[test]
fn integral_decimals_are_whole_numbers_and_fractions_are_not() {
    // The JHU file of 2020-10-29 wrote the US deaths of 2020-10-28 as 227685.0.
    let text = "Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\n\
                2020-10-28,US,,8856413,3518140.00,227685.0\n";
    let s = jhu::parse(text.as_bytes()).unwrap();
    assert_eq!(
        serde_json::to_string(&s.records).unwrap(),
        r#"["2020-10-28,8856413,227685,3518140"]"#
    );
    for bad in [
        "227685.5",
        "227685.",
        ".0",
        "227685.0.0",
        "1e5",
        "-1.0",
        "227685,0",
    ] {
        let e = jhu::parse(
            format!(
                "Date,Country/Region,Province/State,Confirmed,Recovered,Deaths\n\
                 2020-10-28,US,,1,1,\"{bad}\"\n"
            )
            .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.name(), "DataQualityError", "{bad}");
        assert!(e.to_string().contains(&format!("\"{bad}\"")), "{bad}: {e}");
    }
}

#[test]
fn a_date_after_tomorrow_utc_is_refused() {
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let later = tomorrow + chrono::Days::new(2);
    let e = error_of(&format!("date,cases,deaths\n2020-03-01,1,0\n{later},2,0\n"));
    assert!(
        e.starts_with(&format!(
            "nyt line 3 column \"date\": \"{later}\" is in the future"
        )),
        "{e}"
    );
    let e = error_of("date,cases,deaths\n9999-12-31,1,0\n");
    assert!(e.contains("\"9999-12-31\" is in the future"), "{e}");
    // Tomorrow itself is accepted: a source ahead of UTC may publish it already (unless the
    // clock turned midnight in between, which this test does not race).
    let yesterday = tomorrow - chrono::Days::new(2);
    assert!(nyt_text(&format!("date,cases,deaths\n{yesterday},1,0\n")).is_ok());
}

#[test]
fn a_duplicated_header_column_is_a_schema_error_naming_it() {
    let e = nyt_text("date,cases,cases,deaths\n2020-03-01,1,2,0\n").unwrap_err();
    assert_eq!(e.name(), "SchemaError");
    assert_eq!(
        e.to_string(),
        "nyt: column \"cases\" appears twice in the header (header: date,cases,cases,deaths)"
    );
    // A duplicated column the parser does not read is refused as well: the file is ambiguous.
    let text = "Date,Country/Region,Province/State,Lat,Lat,Confirmed,Recovered,Deaths\n";
    let e = jhu::parse(text.as_bytes()).unwrap_err();
    assert!(
        e.to_string().contains("column \"Lat\" appears twice"),
        "{e}"
    );
}

/// A file over `COVID_ETL_MAX_BODY_BYTES` is refused from its size, before it is read (a
/// 2 GiB sparse file fails as fast as a small one), and a file whose size says nothing
/// (`/dev/zero`) is cut at the limit while it is read, instead of being read until memory
/// runs out.
#[test]
fn local_files_obey_the_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let jhu = fixture("jhu/combined.csv");
    let huge = dir.path().join("huge.csv");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let limit = [("COVID_ETL_MAX_BODY_BYTES", "1048576")];
    for nyt in [huge.to_str().unwrap(), "/dev/zero"] {
        let (json, code, _) = run(&db, &limit, &["--nyt", nyt, "--jhu", &jhu]);
        assert_eq!(code, 1);
        assert_eq!(json["error"], "SchemaError", "{nyt}: {json}");
        assert_eq!(
            json["cause"],
            "nyt: body is larger than the 1048576-byte limit (COVID_ETL_MAX_BODY_BYTES)",
            "{nyt}"
        );
    }
    // The same limit for a download: exactly the limit passes, one byte over it does not.
    let nyt = fixture("nyt/us.csv");
    let body = std::fs::read(&jhu).unwrap();
    assert!(std::fs::metadata(&nyt).unwrap().len() < body.len() as u64);
    let (url, _) = serve(vec![Reply::Body(body.clone())]);
    let (exact, short) = (body.len().to_string(), (body.len() - 1).to_string());
    let (json, code, _) = run(
        &db,
        &[("COVID_ETL_MAX_BODY_BYTES", &exact)],
        &["--nyt", &nyt, "--jhu", &url, "--dry-run"],
    );
    assert_eq!(
        (code, &json["status"]),
        (0, &Value::from("SUCCEEDED")),
        "{json}"
    );
    let (json, _, _) = run(
        &db,
        &[("COVID_ETL_MAX_BODY_BYTES", &short)],
        &["--nyt", &nyt, "--jhu", &url],
    );
    assert_eq!(json["error"], "SchemaError", "{json}");
    assert_eq!(
        json["cause"],
        format!("jhu: body is larger than the {short}-byte limit (COVID_ETL_MAX_BODY_BYTES)")
    );
}

/// The 40 real daily versions of both files in ../shared/data/replay, each accepted whole —
/// among them the JHU file of 2020-10-29 with its `227685.0`.
#[test]
fn all_forty_replay_days_are_accepted() {
    let replay = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/replay");
    if !replay.join("nyt").is_dir() {
        println!("skipped: {} is absent", replay.display());
        return;
    }
    let mut days: Vec<_> = std::fs::read_dir(replay.join("nyt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| Some(n.strip_prefix("us.")?.strip_suffix(".csv")?.to_string()))
        .collect();
    days.sort();
    assert_eq!(days.len(), 40, "{days:?}");
    for day in days {
        let nyt_file = std::fs::File::open(replay.join(format!("nyt/us.{day}.csv"))).unwrap();
        let nyt = nyt::parse(nyt_file).unwrap_or_else(|e| panic!("nyt {day}: {e}"));
        assert!(nyt.records.len() > 250, "nyt {day}");
        // The JHU files are stored gzip-compressed: decompressed by gzip, streamed.
        let gz = replay.join(format!("jhu/time-series-19-covid-combined.{day}.csv.gz"));
        let mut gunzip = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&gz)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        let jhu =
            jhu::parse(gunzip.stdout.take().unwrap()).unwrap_or_else(|e| panic!("jhu {day}: {e}"));
        assert!(gunzip.wait().unwrap().success());
        assert!(jhu.records.len() > 250, "jhu {day}");
    }
}

// ---- #15.7 configuration -----------------------------------------------------------------

#[test]
fn a_bad_setting_is_one_line_naming_it_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    for (name, value, reason) in [
        (
            "COVID_ETL_HTTP_TIMEOUT_SECS",
            "-1",
            "is not a positive number of seconds",
        ),
        (
            "COVID_ETL_HTTP_TIMEOUT_SECS",
            "NaN",
            "is not a positive number of seconds",
        ),
        (
            "COVID_ETL_HTTP_TIMEOUT_SECS",
            "inf",
            "is not a positive number of seconds",
        ),
        (
            "COVID_ETL_MAX_BODY_BYTES",
            "abc",
            "is not a whole number of bytes ≥ 1",
        ),
        (
            "COVID_ETL_MAX_BODY_BYTES",
            "-5",
            "is not a whole number of bytes ≥ 1",
        ),
        (
            "STALE_AFTER_DAYS",
            "three",
            "is not a whole number of days ≥ 0",
        ),
    ] {
        let out = cli(&db)
            .env(name, value)
            .args(["run", "--nyt", &nyt, "--jhu", &jhu])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            format!("error: {name}=\"{value}\" {reason}\n")
        );
        assert!(!db.exists(), "{name}={value} created the database");
    }
}

// ---- #16.1 what an error may carry -------------------------------------------------------

/// Every byte the run left: what it printed, the database files (the outbox, the ledger, the
/// execution history), and what the read commands print from them.
fn everything(db: &Path, printed: &str) -> Vec<u8> {
    let mut all = printed.as_bytes().to_vec();
    for entry in std::fs::read_dir(db.parent().unwrap()).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for args in [
        &["notifications", "--json"][..],
        &["executions", "--json"],
        &["export"],
    ] {
        all.extend(cli(db).args(args).output().unwrap().stdout);
    }
    all
}

#[test]
fn a_secret_in_the_environment_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let secret = format!("hunter2-{:016x}", rand_seed());
    let jhu = fixture("jhu/combined.csv");
    let (json, code, printed) = run(
        &db,
        &[("FOO_SECRET", &secret), ("RUST_LOG", "info")],
        &["--nyt", "/proc/self/environ", "--jhu", &jhu],
    );
    assert_eq!(code, 1);
    assert_eq!(json["error"], "SchemaError", "{json}");
    assert_eq!(
        json["cause"],
        "nyt: missing required column \"date\" (the body is binary, not CSV text)"
    );
    let all = everything(&db, &printed);
    assert!(all.len() > 10_000, "the database was written");
    assert!(
        !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret leaked"
    );
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn a_body_that_is_not_csv_is_classified_not_quoted() {
    for (body, kind) in [
        (
            &b"<!DOCTYPE html><html><body>token=abc</body></html>\n"[..],
            "HTML",
        ),
        (b"  <html>\n", "HTML"),
        (
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00token=abc\n",
            "gzip-compressed",
        ),
        (b"{\"token\": \"abc\"}\n", "JSON"),
        (b"date\xff,token=abc\n", "not UTF-8"),
        (b"token=abc\x00PATH=/bin\n", "binary"),
    ] {
        let e = nyt::parse(body).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("nyt: missing required column \"date\" (the body is {kind}, not CSV text)")
        );
        assert!(!e.to_string().contains("abc"));
    }
    // CSV text is quoted short, with its commas.
    assert_eq!(
        error_of("date,cases\n2020-03-01,1\n"),
        "nyt: missing required column \"deaths\" (header: date,cases)"
    );
    let long = format!("date,cases,{}\n", "x".repeat(500));
    let e = error_of(&long);
    assert!(e.ends_with("xxx…)") && e.len() < 260, "{e}");
    // A bad value that is not text is described, not quoted.
    let e = error_of("date,cases,deaths\n2020-03-01,\u{1}secret,0\n");
    assert_eq!(
        e,
        "nyt line 2 column \"cases\": \"(7 bytes, binary)\" is not a whole number"
    );
}

// ---- #16.2 source locations --------------------------------------------------------------

#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    /// `302 Found` to this URL.
    Redirect(String),
}

/// A server on 127.0.0.1 giving `replies` in turn (the last repeats); counts requests.
fn serve(replies: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
    source_server(replies, |reply, _, stream| {
        let _ = match reply {
            Reply::Body(body) => stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .and_then(|()| stream.write_all(&body)),
            Reply::Redirect(to) => stream.write_all(
                format!(
                    "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .as_bytes(),
            ),
        };
    })
}

fn origin(url: &str) -> String {
    url.trim_end_matches("/us.csv").to_string()
}

/// With an allowlist (always on Lambda; on the command line when the user sets one), a path,
/// `file://`, an internal URL and a redirect off the list are refused as `SourceNotAllowed`
/// before any I/O: the servers they name see no request, and nothing is retried.
#[test]
fn each_refused_override_is_refused_before_any_io() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (internal, internal_hits) = serve(vec![Reply::Body(body.clone())]);
    let (allowed, allowed_hits) = serve(vec![Reply::Redirect(internal.clone())]);
    let (jhu_url, _) = serve(vec![Reply::Body(
        std::fs::read(fixture("jhu/combined.csv")).unwrap(),
    )]);
    let list = format!("{},{}", origin(&allowed), origin(&jhu_url));
    let env = [("COVID_ETL_SOURCE_ALLOWLIST", list.as_str())];
    let path = fixture("nyt/us.csv");
    let file_url = format!("file://{path}");
    for (nyt, reason) in [
        (path.as_str(), "a local path is not allowed"),
        (file_url.as_str(), "scheme \"file\" is not allowed"),
        ("/proc/self/environ", "a local path is not allowed"),
        (internal.as_str(), "is not on the allowlist"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "is not on the allowlist",
        ),
        (
            allowed.as_str(),
            "the server redirected to http://127.0.0.1",
        ),
    ] {
        let (json, code, _) = run(&db, &env, &["--nyt", nyt, "--jhu", &jhu_url]);
        assert_eq!(code, 1, "{nyt}");
        assert_eq!(json["error"], "SourceNotAllowed", "{nyt}: {json}");
        assert_eq!(json["failedState"], "ExtractNyt");
        let cause = json["cause"].as_str().unwrap();
        assert!(cause.contains(reason), "{nyt}: {cause}");
        let extract = json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "ExtractNyt")
            .unwrap();
        assert_eq!(extract["attempts"], 1, "{nyt}: retried");
    }
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the internal server was reached"
    );
    assert_eq!(
        allowed_hits.load(Ordering::SeqCst),
        1,
        "one request, its redirect refused"
    );
    // The allowlisted origin itself is read.
    let (ok, _) = serve(vec![Reply::Body(body)]);
    let list = format!("{},{}", origin(&ok), origin(&jhu_url));
    let (json, code, _) = run(
        &db,
        &[("COVID_ETL_SOURCE_ALLOWLIST", &list)],
        &["--nyt", &ok, "--jhu", &jhu_url],
    );
    assert_eq!(
        (code, &json["status"]),
        (0, &Value::from("SUCCEEDED")),
        "{json}"
    );
}

/// Without an allowlist the command line reads what its user names: paths and any http(s),
/// redirects included; the URL the body came from is recorded with its fingerprint.
#[tokio::test]
async fn the_final_url_is_recorded_with_the_fingerprint() {
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (target, _) = serve(vec![Reply::Body(body)]);
    let (start, _) = serve(vec![Reply::Redirect(target.clone())]);
    for policy in [
        SourcePolicy::Anywhere,
        SourcePolicy::Allowlist(
            extract::Allowlist::parse(&format!("{},{}", origin(&start), origin(&target))).unwrap(),
        ),
    ] {
        let got = extract::extract(
            SourceKind::Nyt,
            &Location::parse(&start),
            &HttpConfig::default(),
            &policy,
            None,
            true,
        )
        .await
        .unwrap();
        assert_eq!(got.location, start);
        assert_eq!(got.fingerprint.final_url.as_deref(), Some(target.as_str()));
        assert_eq!(got.records.len(), 61);
    }
}

#[test]
fn an_unknown_key_in_the_execution_input_is_refused() {
    use covid_etl::payload::{ExtractRequest, RunOptions};
    let e = covid_etl::steps::parse_payload::<ExtractRequest>(
        serde_json::json!({"options": {"dry_run": true}, "conditional": true}),
    )
    .unwrap_err();
    assert_eq!(e.name(), "InvalidInput");
    assert!(e.to_string().contains("unknown field `dry_run`"), "{e}");
    let ok: RunOptions =
        covid_etl::steps::parse_payload(serde_json::json!({"dryRun": true})).unwrap();
    assert!(ok.dry_run);
}

// ---- #16.3 the local server --------------------------------------------------------------

/// 2000 connections that send half a request: a normal request is still answered, and every
/// half-open connection is closed by the server within seconds.
#[test]
fn half_open_connections_are_closed_and_a_request_is_still_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (_, code, _) = run(
        &db,
        &[],
        &[
            "--nyt",
            &fixture("nyt/us.csv"),
            "--jhu",
            &fixture("jhu/combined.csv"),
        ],
    );
    assert_eq!(code, 0);
    let mut server = std::process::Command::new(assert_cmd::cargo::cargo_bin("covid-etl"))
        .env("COVID_ETL_DB", &db)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{banner}"))
        .to_string();

    let half_open: Vec<TcpStream> = (0..2000)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET /api/series HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();

    let mut normal = TcpStream::connect(&addr).unwrap();
    normal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    normal
        .write_all(b"GET /api/series HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    normal.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

    // Every half-open connection sees the end of the stream (or a reset) within a bounded
    // wait: none is held open.
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut s in half_open {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a half-open connection stayed open: {e}"),
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A refused location is final: no `Retry` of the state machine names it (nor a catch-all
/// that would include it), so it goes straight to the failure branch.
#[test]
fn a_refused_source_is_in_no_retry_list() {
    fn retried(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for retry in map
                    .get("Retry")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for name in retry["ErrorEquals"].as_array().unwrap() {
                        out.push(name.as_str().unwrap().to_string());
                    }
                }
                map.values().for_each(|v| retried(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| retried(v, out)),
            _ => {}
        }
    }
    let definition: Value = serde_json::from_str(covid_etl::workflow::DEFINITION).unwrap();
    let mut names = Vec::new();
    retried(&definition, &mut names);
    assert!(
        names.contains(&"SourceUnavailable".to_string()),
        "{names:?}"
    );
    for never in [
        "SourceNotAllowed",
        "InvalidInput",
        "ConfigError",
        "States.ALL",
    ] {
        assert!(!names.iter().any(|n| n == never), "{never} is retried");
    }
}

/// The Lambda configuration (no allowlist set: the real sources' origin only) refuses every
/// override through the extract step the Lambda runs, before the ledger or the source is
/// touched; a listed loopback origin is read.
#[tokio::test]
async fn the_lambda_configuration_allows_only_its_allowlist() {
    use covid_etl::config::{Config, Role};
    use covid_etl::payload::{ExtractRequest, RunOptions};
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (url, hits) = serve(vec![Reply::Body(body)]);
    let ledger = covid_etl::store::MemoryStore::default();
    let request = |nyt: &str| ExtractRequest {
        options: RunOptions {
            nyt: Some(nyt.to_string()),
            ..RunOptions::default()
        },
        conditional: true,
    };
    let lambda = Config::from_vars(Role::Lambda, |_| None).unwrap();
    for nyt in [
        url.as_str(),
        "/etc/passwd",
        "file:///etc/passwd",
        "http://169.254.169.254/",
    ] {
        let e = covid_etl::steps::extract(
            SourceKind::Nyt,
            request(nyt),
            lambda.sources.clone(),
            &ledger,
        )
        .await
        .unwrap_err();
        assert_eq!(e.name(), "SourceNotAllowed", "{nyt}: {e}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let listed = origin(&url);
    let test_stage = Config::from_vars(Role::Lambda, |name| {
        (name == "COVID_ETL_SOURCE_ALLOWLIST").then(|| listed.clone().into())
    })
    .unwrap();
    let got =
        covid_etl::steps::extract(SourceKind::Nyt, request(&url), test_stage.sources, &ledger)
            .await
            .unwrap();
    assert_eq!((got.records.len(), hits.load(Ordering::SeqCst)), (61, 1));
}
