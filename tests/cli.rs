//! The `covid-etl` binary end to end on fixtures: runs, reruns, failures, redrive, export,
//! and sources served by a faulty HTTP server on 127.0.0.1.

use assert_cmd::Command;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

fn cli(db: &Path) -> Command {
    let mut cmd = Command::cargo_bin("covid-etl").unwrap();
    cmd.env("COVID_ETL_DB", db).env_remove("RUST_LOG");
    cmd
}

fn run_json(db: &Path, args: &[&str]) -> (Value, i32) {
    run_json_with(db, &[], args)
}

/// `covid-etl run --json ARGS` with extra environment variables.
fn run_json_with(db: &Path, env: &[(&str, &str)], args: &[&str]) -> (Value, i32) {
    let out = cli(db)
        .envs(env.iter().copied())
        .arg("run")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (json, out.status.code().unwrap())
}

fn export(db: &Path) -> String {
    let out = cli(db).arg("export").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn outbox(db: &Path) -> Vec<Value> {
    let out = cli(db).args(["notifications", "--json"]).output().unwrap();
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[test]
fn clean_run_then_idempotent_rerun_then_export() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    let (run, code) = run_json(&db, &["--nyt", &nyt, "--jhu", &jhu]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["status"], "SUCCEEDED");
    assert_eq!(
        run["load"],
        serde_json::json!({"inserted": 60, "updated": 0, "unchanged": 0})
    );
    let names: Vec<_> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Prepare",
            "Extract",
            "ExtractNyt",
            "ExtractJhu",
            "CheckForNewData",
            "Merge",
            "DiffAndLoad",
            "NotifySuccess"
        ]
    );

    // The same data in a different file (columns reordered): the diff finds nothing to write.
    let reordered = fixture("nyt/us-reordered.csv");
    let (rerun, code) = run_json(&db, &["--nyt", &reordered, "--jhu", &jhu]);
    assert_eq!(code, 0);
    assert_eq!(
        rerun["load"],
        serde_json::json!({"inserted": 0, "updated": 0, "unchanged": 60})
    );

    let csv = export(&db);
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(lines[0], "date,cases,deaths,recovered");
    assert_eq!(lines.len(), 61);
    assert_eq!(lines[1], "2020-03-01,100,2,10");

    // The human output: one line per step on stderr, a summary on stdout.
    let revised = fixture("nyt/us-revised.csv");
    let out = cli(&db)
        .args(["run", "--nyt", &revised, "--jhu", &jhu, "--dry-run"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("SUCCEEDED"), "{stdout}");
    assert_eq!(export(&db), csv, "a dry run writes nothing");
    assert!(
        stdout.contains("0 inserted, 2 updated, 58 unchanged (dry run"),
        "{stdout}"
    );
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("ok      DiffAndLoad")
    );
}

#[test]
fn a_bad_source_fails_at_its_state_notifies_and_redrive_resumes_after_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let nyt = dir.path().join("us.csv");
    std::fs::copy(fixture("nyt/us.csv"), &nyt).unwrap();
    let nyt = nyt.display().to_string();
    let jhu = fixture("jhu/combined.csv");
    let (_, code) = run_json(&db, &["--nyt", &nyt, "--jhu", &jhu]);
    assert_eq!(code, 0);
    let before = export(&db);

    std::fs::copy(fixture("nyt/negative-count.csv"), &nyt).unwrap();
    let (run, code) = run_json(&db, &["--nyt", &nyt, "--jhu", &jhu, "--name", "broken"]);
    assert_eq!(code, 1);
    assert_eq!(run["status"], "FAILED");
    assert_eq!(run["failedState"], "ExtractNyt");
    assert_eq!(run["error"], "DataQualityError");
    assert_eq!(
        run["cause"],
        "nyt line 22 column \"cases\": \"-88\" is negative"
    );
    assert_eq!(export(&db), before, "a failed run writes nothing");
    let last = outbox(&db).pop().unwrap();
    assert_eq!(
        last["subject"],
        "covid-etl FAILED in ExtractNyt: DataQualityError"
    );
    assert_eq!(last["attributes"]["status"], "FAILED");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("\"-88\" is negative")
    );

    // Inspect it step by step.
    let out = cli(&db).args(["execution", "broken"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ExtractNyt             FAILED"), "{text}");
    assert!(text.contains("Extract                FAILED"), "{text}");

    // Fix the file and resume from the state that failed.
    std::fs::copy(fixture("nyt/us-revised.csv"), &nyt).unwrap();
    let out = cli(&db)
        .args(["redrive", "broken", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let redriven: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(redriven["status"], "SUCCEEDED");
    assert_eq!(redriven["redriveCount"], 1);
    assert_eq!(
        redriven["load"],
        serde_json::json!({"inserted": 0, "updated": 2, "unchanged": 58})
    );
    // As RedriveExecution, the redrive reran the Parallel's branches that failed or were
    // aborted: ExtractJhu was cut short when ExtractNyt failed, so both ran again. (The
    // engine's tests show a branch that had succeeded keeping its output.)
    let jhu: Vec<_> = redriven["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "ExtractJhu")
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(jhu, ["ABORTED", "SUCCEEDED"], "{redriven}");

    // A succeeded execution cannot be redriven again.
    let out = cli(&db).args(["redrive", "broken"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("error: ExecutionNotRedrivable")
    );
}

#[test]
fn a_reused_name_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let args = [
        "--nyt",
        &fixture("nyt/us.csv"),
        "--jhu",
        &fixture("jhu/combined.csv"),
        "--name",
        "daily-2020-04-30",
    ];
    let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    assert_eq!(run_json(&db, &args).1, 0);
    let out = cli(&db).arg("run").args(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: ExecutionAlreadyExists: an execution named \"daily-2020-04-30\" already exists"
    );
    assert_eq!(outbox(&db).len(), 1);
}

#[test]
fn user_mistakes_are_one_line_without_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let out = cli(&db).args(["execution", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: no execution \"nope\" in the local database\n"
    );
    let out = cli(&db).args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for cmd in [
        "run",
        "executions",
        "execution",
        "redrive",
        "export",
        "notifications",
    ] {
        assert!(
            cli(&db)
                .args([cmd, "--help"])
                .output()
                .unwrap()
                .status
                .success(),
            "{cmd}"
        );
    }
}

// ---- a faulty HTTP source on 127.0.0.1 ---------------------------------------------------

/// What the server does with the n-th request (0-based).
#[derive(Clone, Copy)]
enum Reply {
    Error500,
    Stall,
    Serve,
    /// Serves with `ETag: "v1"`, and answers `304` to `If-None-Match: "v1"`.
    ServeWithEtag,
}

/// Serves `body` according to `plan` (the last entry repeats); counts requests.
fn serve(body: Vec<u8>, plan: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/us.csv", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let reply = plan[n.min(plan.len() - 1)];
            let body = body.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut line, mut request) = (String::new(), String::new());
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    request.push_str(&line.to_ascii_lowercase());
                    line.clear();
                }
                match reply {
                    Reply::Error500 => {
                        let _ = stream.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    }
                    Reply::Stall => std::thread::sleep(Duration::from_secs(10)),
                    Reply::ServeWithEtag if request.contains("if-none-match: \"v1\"") => {
                        let _ = stream.write_all(
                            b"HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\nconnection: close\r\n\r\n",
                        );
                    }
                    Reply::Serve | Reply::ServeWithEtag => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\netag: \"v1\"\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                    }
                }
            });
        }
    });
    (url, count)
}

#[test]
fn a_flaky_source_is_retried_until_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (url, count) = serve(body, vec![Reply::Error500, Reply::Stall, Reply::Serve]);
    let jhu = fixture("jhu/combined.csv");
    let (run, code) = run_json_with(
        &db,
        &[("COVID_ETL_HTTP_TIMEOUT_SECS", "1")],
        &["--nyt", &url, "--jhu", &jhu],
    );
    assert_eq!(code, 0);
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    let nyt = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ExtractNyt")
        .unwrap();
    assert_eq!(nyt["attempts"], 3);

    let out = cli(&db)
        .args(["execution", run["name"].as_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("ExtractNyt") && l.contains("SUCCEEDED") && l.contains(" 3  ")),
        "{text}"
    );
}

#[test]
fn a_source_that_never_recovers_ends_in_the_failure_branch() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (url, count) = serve(Vec::new(), vec![Reply::Error500]);
    let jhu = fixture("jhu/combined.csv");
    let (run, code) = run_json_with(&db, &[], &["--nyt", &url, "--jhu", &jhu]);
    assert_eq!(code, 1);
    assert_eq!(run["failedState"], "ExtractNyt");
    assert_eq!(run["error"], "SourceUnavailable");
    assert!(run["cause"].as_str().unwrap().contains("HTTP 500"), "{run}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        4,
        "one attempt and three retries"
    );
    let last = outbox(&db).pop().unwrap();
    assert_eq!(
        last["subject"],
        "covid-etl FAILED in ExtractNyt: SourceUnavailable"
    );
    assert_eq!(
        export(&db).lines().count(),
        1,
        "only the header: nothing was loaded"
    );
}

// ---- no new data, timeouts ---------------------------------------------------------------

fn step_names(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_unchanged_rerun_takes_the_no_new_data_path_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let args = [
        "--nyt".to_string(),
        fixture("nyt/us.csv"),
        "--jhu".to_string(),
        fixture("jhu/combined.csv"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (first, _) = run_json(&db, &args);
    assert_eq!(first["outcome"], "SUCCEEDED");
    let before = export(&db);

    let (again, code) = run_json(&db, &args);
    assert_eq!(code, 0, "{again}");
    assert_eq!(
        (&again["status"], &again["outcome"]),
        (&"SUCCEEDED".into(), &"NO_NEW_DATA".into())
    );
    assert_eq!(again["load"], Value::Null);
    let names = step_names(&again);
    assert!(
        names.contains(&"NotifyNoNewData".to_string()) && !names.contains(&"Merge".to_string()),
        "{names:?}"
    );
    assert_eq!(export(&db), before);
    assert_eq!(
        outbox(&db).pop().unwrap()["subject"],
        "covid-etl NO_NEW_DATA: sources unchanged since the last load"
    );

    // A full reload ignores the fingerprints and rewrites every row.
    let mut reload = args.clone();
    reload.push("--full-reload");
    let (full, _) = run_json(&db, &reload);
    assert_eq!(full["outcome"], "SUCCEEDED");
    assert_eq!(full["load"]["unchanged"], 60);

    // A changed file is loaded again.
    let revised = [
        "--nyt".to_string(),
        fixture("nyt/us-revised.csv"),
        "--jhu".to_string(),
        fixture("jhu/combined.csv"),
    ];
    let (changed, _) = run_json(&db, &revised.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(changed["load"]["updated"], 2);
}

#[test]
fn a_source_answering_304_ends_the_run_as_no_new_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (url, count) = serve(body, vec![Reply::ServeWithEtag]);
    let args = ["--nyt", &url, "--jhu", &fixture("jhu/combined.csv")].map(str::to_string);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (first, _) = run_json(&db, &args);
    assert_eq!(first["outcome"], "SUCCEEDED", "{first}");
    let (second, _) = run_json(&db, &args);
    assert_eq!(second["outcome"], "NO_NEW_DATA", "{second}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let runs: Vec<Value> = {
        let out = cli(&db).args(["executions", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(runs.len(), 2);
}

/// Ctrl-C in the middle of a download: the run ends ABORTED with the history so far (not
/// killed and left RUNNING), and a redrive finishes it from the state it was in.
#[cfg(unix)]
#[test]
fn an_interrupted_run_is_recorded_as_aborted_and_redrive_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let body = std::fs::read(fixture("nyt/us.csv")).unwrap();
    let (url, count) = serve(body, vec![Reply::Stall, Reply::Serve]);
    let jhu = fixture("jhu/combined.csv");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_covid-etl"))
        .env("COVID_ETL_DB", &db)
        .env_remove("RUST_LOG")
        .args(["run", "--json", "--nyt", &url, "--jhu", &jhu])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the NYT request hangs on the server.
    for _ in 0..200 {
        if count.load(Ordering::SeqCst) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the run never asked for NYT"
    );
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "ABORTED", "{run}");
    assert_eq!(run["failedState"], "Extract", "{run}");
    assert_eq!(run["cause"], "the execution was stopped");
    let name = run["name"].as_str().unwrap();
    let steps = run["steps"].as_array().unwrap();
    let nyt = steps.iter().find(|s| s["name"] == "ExtractNyt").unwrap();
    assert_eq!(nyt["status"], "ABORTED", "{run}");

    let out = cli(&db).args(["redrive", name, "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let redriven: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(redriven["status"], "SUCCEEDED", "{redriven}");
    assert_eq!(redriven["redriveCount"], 1);
    assert!(
        redriven["load"]["inserted"].as_u64().unwrap() > 0,
        "{redriven}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[test]
fn a_task_that_overruns_its_timeout_fails_with_states_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (url, _) = serve(Vec::new(), vec![Reply::Stall]);
    // The real definition (ExtractNyt: TimeoutSeconds 180) with every engine wait / 100.
    let jhu = fixture("jhu/combined.csv");
    let (run, code) = run_json_with(
        &db,
        &[("COVID_ETL_TIME_SCALE", "100")],
        &["--nyt", &url, "--jhu", &jhu],
    );
    assert_eq!(code, 1);
    assert_eq!(run["failedState"], "ExtractNyt");
    assert_eq!(run["error"], "States.Timeout");
    let last = outbox(&db).pop().unwrap();
    assert_eq!(
        last["subject"],
        "covid-etl FAILED in ExtractNyt: States.Timeout"
    );
}

#[test]
fn a_missing_file_is_source_unavailable_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (run, code) = run_json(
        &db,
        &[
            "--nyt",
            "/nonexistent/us.csv",
            "--jhu",
            &fixture("jhu/combined.csv"),
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(run["failedState"], "ExtractNyt");
    assert_eq!(run["error"], "SourceUnavailable");
    let cause = run["cause"].as_str().unwrap();
    assert!(
        cause.starts_with("nyt unavailable at /nonexistent/us.csv: "),
        "{cause}"
    );
}
