//! The `covid-etl` binary end to end on fixtures: runs, reruns, failures, redrive, export,
//! and sources served by a faulty HTTP server on 127.0.0.1.

use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[path = "common/cli.rs"]
mod common_cli;
use common_cli::{cli, fixture, source_server};

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

/// The outbox, oldest first (`notifications` lists the newest first).
fn outbox(db: &Path) -> Vec<Value> {
    let out = cli(db).args(["notifications", "--json"]).output().unwrap();
    let mut newest_first = serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap();
    newest_first.reverse();
    newest_first
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
        stdout.contains("dry run, nothing written: would insert 0, would update 2, 58 unchanged"),
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
    // As RedriveExecution, the redrive reran only the Parallel's branches that failed or were
    // aborted: ExtractJhu runs again only if ExtractNyt's failure cut it short.
    let jhu: Vec<_> = redriven["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "ExtractJhu")
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert!(
        jhu == ["SUCCEEDED"] || jhu == ["ABORTED", "SUCCEEDED"],
        "{jhu:?}: {redriven}"
    );

    // The first run and the redrive are shown apart, each with its steps; the redrive's
    // outcome and the executions list's redrive column say it was redriven.
    let out = cli(&db).args(["execution", "broken"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.find("-- first run, started ").expect(&text);
    let redrive = text.find("-- redrive 1, started ").expect(&text);
    assert!(first < redrive, "{text}");
    assert!(
        text[first..redrive].contains("ExtractNyt             FAILED"),
        "{text}"
    );
    assert!(
        text[redrive..].contains("DiffAndLoad            SUCCEEDED"),
        "{text}"
    );
    let table = String::from_utf8(cli(&db).arg("executions").output().unwrap().stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("REDRIVES"),
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with("broken ")).unwrap();
    assert!(row.split_whitespace().any(|w| w == "1"), "{row}");

    // A succeeded execution cannot be redriven again.
    let out = cli(&db).args(["redrive", "broken"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
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
    assert_eq!(out.status.code(), Some(3), "an operational error");
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
    std::fs::File::create(&db).unwrap();
    let out = cli(&db).args(["execution", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: ExecutionDoesNotExist: no execution named \"nope\" in the local database\n"
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
    source_server(plan, move |reply, request, stream| match reply {
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
    })
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
    assert_eq!(step(&run, "ExtractNyt")["attempts"], 3);

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

#[test]
fn retries_announce_themselves_and_errors_name_their_root_cause() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    // A port nobody listens on: every attempt is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/us.csv");
    let out = cli(&db)
        .env("COVID_ETL_TIME_SCALE", "100")
        .args(["run", "--nyt", &url, "--jhu", &fixture("jhu/combined.csv")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    // The definition gives SourceUnavailable 3 retries: 4 attempts, each line says which.
    for attempt in 2..=4 {
        assert!(
            stderr.contains(&format!(
                "  retry  ExtractNyt: attempt {attempt} of 4 after waiting "
            )),
            "{stderr}"
        );
    }
    let failures: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("  fail   ExtractNyt: "))
        .collect();
    assert_eq!(failures.len(), 4, "{stderr}");
    for (attempt, line) in (1..).zip(&failures) {
        assert!(
            line.ends_with(&format!(" (attempt {attempt} of 4)")),
            "{line}"
        );
        assert!(
            line.starts_with(&format!(
                "  fail   ExtractNyt: SourceUnavailable: nyt unavailable at {url}: "
            )),
            "{line}"
        );
        assert!(
            line.to_lowercase().contains("connection refused"),
            "the root cause: {line}"
        );
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary = stdout.lines().next().unwrap();
    assert!(
        summary.starts_with("FAILED in ExtractNyt: SourceUnavailable: "),
        "{stdout}"
    );
    assert!(
        summary.to_lowercase().contains("connection refused"),
        "{summary}"
    );
}

// ---- no new data, timeouts ---------------------------------------------------------------

/// The step named `name` in a `--json` view.
fn step<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {run}"))
}

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
    assert_eq!(first["outcome"], "LOADED");
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
    assert_eq!(full["outcome"], "LOADED");
    assert_eq!(full["load"]["unchanged"], 60);
    assert_eq!(full["fullReload"], true);
    assert_eq!(
        outbox(&db).pop().unwrap()["subject"],
        "covid-etl SUCCEEDED: full reload, 60 rows rewritten, latest 2020-04-29"
    );

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
    assert_eq!(first["outcome"], "LOADED", "{first}");
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
fn a_missing_file_or_a_directory_is_refused_at_once_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let folder = dir.path().display().to_string();
    for (path, reason) in [
        ("/nonexistent/us.csv", "No such file or directory"),
        (folder.as_str(), "it is a directory, not a file"),
    ] {
        let started = std::time::Instant::now();
        let (run, code) = run_json(&db, &["--nyt", path, "--jhu", &fixture("jhu/combined.csv")]);
        assert_eq!(code, 1);
        assert_eq!(run["failedState"], "ExtractNyt");
        assert_eq!(run["error"], "SourceRejected", "not retried: {run}");
        let cause = run["cause"].as_str().unwrap();
        assert!(
            cause.starts_with(&format!("nyt refused at {path}: ")),
            "{cause}"
        );
        assert!(cause.contains(reason), "{cause}");
        assert_eq!(step(&run, "ExtractNyt")["attempts"], 1, "{run}");
        assert!(started.elapsed() < Duration::from_secs(2), "no retry wait");
    }
}

// ---- process hygiene, names, exit codes ---------------------------------------------------

/// Runs `covid-etl ARGS` with its stdout already closed by the reader (what `| head -1` does
/// once it has its line): the first write fails with EPIPE.
fn with_stdout_closed(db: &Path, args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_covid-etl"))
        .env("COVID_ETL_DB", db)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    assert_eq!(run_json(&db, &["--nyt", &nyt, "--jhu", &jhu]).1, 0);
    let name = executions_json(&db)[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    for args in [
        &["executions"][..],
        &["executions", "--json"],
        &["export"],
        &["export", "--json"],
        &["notifications"],
        &["execution", "--json", &name],
    ] {
        let out = with_stdout_closed(&db, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

fn executions_json(db: &Path) -> Vec<Value> {
    let out = cli(db).args(["executions", "--json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn read_only_commands_on_a_missing_database_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    for args in [
        &["export"][..],
        &["export", "--json"],
        &["executions"],
        &["execution", "daily-2020-04-30"],
        &["notifications"],
        &["redrive", "daily-2020-04-30"],
    ] {
        let out = cli(&db).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.starts_with(&format!("error: no database at {}: ", db.display())),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

#[test]
fn execution_names_follow_the_step_functions_rule_and_never_look_like_ids() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    let longest = "n".repeat(80);
    assert_eq!(
        run_json(&db, &["--nyt", &nyt, "--jhu", &jhu, "--name", &longest]).1,
        0
    );
    let first_id = executions_json(&db)[0]["executionId"]
        .as_str()
        .unwrap()
        .to_string();
    let too_long = "n".repeat(81);
    let huge = "x".repeat(100_000);
    for bad in [
        "", " ", "a b", "a\nb", "a\tb", "a/b:c", "a{b}", "what?", "100%", "a\u{7f}b", &too_long,
        &huge, &first_id,
    ] {
        let out = cli(&db)
            .args(["run", "--nyt", &nyt, "--jhu", &jhu, "--name", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("error: invalid --name: "), "{stderr}");
        assert!(stderr.contains("execution name"), "{stderr}");
        assert!(
            stderr.len() < 600,
            "the value is not echoed whole: {}",
            stderr.len()
        );
    }
    assert_eq!(
        executions_json(&db).len(),
        1,
        "no refused name started a run"
    );
    // The id finds the execution, and so does its name: the two never overlap.
    for key in [&first_id, &longest] {
        let out = cli(&db)
            .args(["execution", "--json", key])
            .output()
            .unwrap();
        let view: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(view["executionId"], first_id.as_str());
    }
}

#[test]
fn exit_codes_tell_success_failure_usage_and_operational_errors_apart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let jhu = fixture("jhu/combined.csv");
    let code = |args: &[&str]| cli(&db).args(args).output().unwrap().status.code();
    let named_run = [
        "run",
        "--nyt",
        &fixture("nyt/us.csv"),
        "--jhu",
        &jhu,
        "--name",
        "a",
    ]
    .map(str::to_string);
    let named_run: Vec<&str> = named_run.iter().map(String::as_str).collect();
    assert_eq!(code(&named_run), Some(0));
    assert_eq!(
        code(&[
            "run",
            "--nyt",
            &fixture("nyt/negative-count.csv"),
            "--jhu",
            &jhu
        ]),
        Some(1),
        "the execution failed"
    );
    assert_eq!(code(&["run", "--bogus"]), Some(2), "usage");
    assert_eq!(code(&["export", "--from", "2020-02-30"]), Some(2), "usage");
    assert_eq!(code(&["executions", "--limit", "0"]), Some(2), "usage");
    assert_eq!(code(&named_run), Some(3), "name used");
    assert_eq!(code(&["execution", "nope"]), Some(3), "no such execution");
    assert_eq!(
        code(&["export", "--from", "2020-04-02", "--to", "2020-04-01"]),
        Some(3)
    );
}

/// Arguments are checked before anything of AWS is configured: a usage error of a command
/// against Step Functions says only what is wrong with the arguments, whatever the AWS
/// profile (a missing one makes the SDK warn about credentials once it is configured).
#[test]
fn a_usage_error_of_an_aws_command_comes_before_any_aws_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&dir.path().join("etl.db"))
        .env("AWS_PROFILE", "no-such-profile")
        .env("AWS_CONFIG_FILE", dir.path().join("missing-config"))
        .args(["executions", "--state-machine-arn"])
        .args(["arn:aws:states:us-east-1:123456789012:stateMachine:covid-etl-prod"])
        .args(["--limit", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: invalid value '0' for '--limit"),
        "{stderr}"
    );
    for word in ["credential", "profile", "region"] {
        assert!(!stderr.to_lowercase().contains(word), "{stderr}");
    }
}

#[test]
fn a_dry_run_is_shown_as_a_dry_run_everywhere_and_never_counted_as_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    let (run, code) = run_json(
        &db,
        &["--nyt", &nyt, "--jhu", &jhu, "--dry-run", "--name", "trial"],
    );
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["outcome"], "DRY_RUN");
    assert_eq!(run["load"], Value::Null, "nothing was loaded");
    assert_eq!(
        run["planned"],
        serde_json::json!({"inserted": 60, "updated": 0, "unchanged": 0})
    );
    let subject = outbox(&db).pop().unwrap()["subject"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        subject,
        "covid-etl DRY RUN: would insert 60, would update 0, latest 2020-04-29"
    );
    let listed = executions_json(&db);
    assert_eq!(listed[0]["outcome"], "DRY_RUN");
    assert_eq!(listed[0]["load"], Value::Null);
    let table = String::from_utf8(cli(&db).arg("executions").output().unwrap().stdout).unwrap();
    let row = table.lines().find(|l| l.starts_with("trial ")).unwrap();
    assert!(row.contains("DRY_RUN"), "{row}");
    assert!(!row.contains(" 60 "), "no write counted: {row}");
    assert_eq!(export(&db), "date,cases,deaths,recovered\n");
}

#[test]
fn export_takes_json_and_a_date_range() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (nyt, jhu) = (fixture("nyt/us.csv"), fixture("jhu/combined.csv"));
    assert_eq!(run_json(&db, &["--nyt", &nyt, "--jhu", &jhu]).1, 0);
    let out = cli(&db)
        .args(["export", "--from", "2020-03-02", "--to", "2020-03-03"])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    let dates: Vec<_> = csv.lines().skip(1).map(|l| &l[..10]).collect();
    assert_eq!(dates, ["2020-03-02", "2020-03-03"]);
    let out = cli(&db)
        .args(["export", "--json", "--to", "2020-03-01"])
        .output()
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["date"], "2020-03-01");
}

// ---- the real snapshots --------------------------------------------------------------------

/// `../shared/data/FILE`, or `None` (with the reason printed) when the snapshots are absent.
fn snapshot(file: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(file);
    if path.exists() {
        Some(path.display().to_string())
    } else {
        eprintln!(
            "skipped: {} is absent (real snapshots live beside the project)",
            path.display()
        );
        None
    }
}

/// Loads the newest real snapshots (NYT 2022-04-19, JHU 2021-03-17) into `db`: the run's
/// `--json`, or `None` when the snapshots are absent.
fn load_newest_snapshots(db: &Path) -> Option<Value> {
    let (nyt, jhu) = (
        snapshot("nyt/us.2022-04-19.csv")?,
        snapshot("jhu/time-series-19-covid-combined.2021-03-17.csv")?,
    );
    let (run, code) = run_json(db, &["--nyt", &nyt, "--jhu", &jhu]);
    assert_eq!(code, 0, "{run}");
    Some(run)
}

fn warnings(run: &Value) -> Vec<String> {
    run["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn jhu_recovered_zeros_after_2020_12_13_are_stored_as_not_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let Some(run) = load_newest_snapshots(&db) else {
        return;
    };
    let warnings = warnings(&run);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("jhu stopped reporting Recovered on 2020-12-14: ")),
        "{warnings:?}"
    );
    let csv = export(&db);
    let recovered = |day: &str| {
        let line = csv.lines().find(|l| l.starts_with(day)).unwrap();
        line.rsplit(',').next().unwrap().to_string()
    };
    assert!(recovered("2020-12-13").parse::<u64>().unwrap() > 6_000_000);
    for day in ["2020-12-14", "2021-01-01", "2021-03-16"] {
        assert_eq!(recovered(day), "", "{day} is not reported, not 0");
    }
    let message = outbox(&db).pop().unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("jhu stopped reporting Recovered on 2020-12-14"),
        "{message}"
    );
    let text = String::from_utf8(
        cli(&db)
            .args(["execution", run["name"].as_str().unwrap()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        text.contains("warning: jhu stopped reporting Recovered"),
        "{text}"
    );
}

#[test]
fn an_older_snapshot_over_newer_data_warns_that_it_moves_dates_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("etl.db");
    let (Some(newer), Some(old_nyt), Some(old_jhu)) = (
        load_newest_snapshots(&db),
        snapshot("nyt/us.2020-08-13.csv"),
        snapshot("jhu/time-series-19-covid-combined.2020-09-03.csv"),
    ) else {
        return;
    };
    assert!(
        !warnings(&newer).iter().any(|w| w.contains("look older")),
        "{}",
        newer["warnings"]
    );
    let (older, code) = run_json(&db, &["--nyt", &old_nyt, "--jhu", &old_jhu, "--dry-run"]);
    assert_eq!(code, 0, "{older}");
    let warning = warnings(&older)
        .into_iter()
        .find(|w| w.starts_with("the sources look older than what is stored: "))
        .unwrap_or_else(|| panic!("{}", older["warnings"]));
    assert!(
        warning.ends_with("the sources' newest date is 2020-08-13"),
        "{warning}"
    );
}
