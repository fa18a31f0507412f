//! A moto standalone server (PyPI `moto[server]`, pinned in `requirements-dev.txt`, installed
//! into `.venv` by `scripts/setup-tools.sh`) on a free 127.0.0.1 port, one per test, killed
//! when dropped.
//!
//! Where the binary is not installed the test prints why and is skipped — except under
//! `CI=true`, where a missing server is a failure: CI must never pass by skipping.
//! `MOTO_SERVER` overrides the binary's path.

#![allow(dead_code)]

use serde_json::Value;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    pub endpoint: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    /// How long the server took to answer its first request.
    pub startup: Duration,
}

fn binary() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"))
}

impl Moto {
    /// Starts a server, or returns `None` (after saying why) when moto is not installed.
    pub async fn start() -> Option<Moto> {
        let bin = binary();
        if !bin.exists() {
            let why = format!(
                "moto server not found at {} (run scripts/setup-tools.sh)",
                bin.display()
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}; CI=true, so this is a failure, not a skip");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log file");
        let started = Instant::now();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // The state machine interpreter calls Lambda and SNS at localhost:$MOTO_PORT.
            .env("MOTO_PORT", port.to_string())
            .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
            startup: Duration::ZERO,
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Some(status) = moto.child.try_wait().expect("child status") {
                panic!("moto server exited with {status}:\n{}", moto.log());
            }
            let probe = moto
                .http
                .get(format!("{}/moto-api/reset", moto.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if probe.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto server did not answer within 60 s:\n{}",
                moto.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto.startup = started.elapsed();
        eprintln!(
            "moto server on {} answered after {:?}",
            moto.endpoint, moto.startup
        );
        Some(moto)
    }

    /// Creates the table the project deploys (`covid_etl::store::dynamodb::create_table`).
    pub async fn create_table(&self, config: &aws_config::SdkConfig, name: &str) {
        let client = aws_sdk_dynamodb::Client::new(config);
        covid_etl::store::dynamodb::create_table(&client, name)
            .await
            .expect("create table");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// The project's configuration loader pointed at this server, with a region and dummy
    /// credentials (moto accepts any).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        covid_etl::aws::loader(Some(&self.endpoint))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> String {
        let response = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!(
            response.status().is_success(),
            "POST {path}: {}",
            response.status()
        );
        response.text().await.expect("body")
    }

    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.text().await.expect("body")
    }

    /// moto's model dump (`/moto-api/data.json`).
    pub async fn data(&self) -> Value {
        serde_json::from_str(&self.get_text("/moto-api/data.json").await).expect("data.json")
    }

    /// Starts (or restarts from empty) the server-side request recording.
    pub async fn record(&self) {
        self.post("/moto-api/recorder/reset-recording", &Value::Null)
            .await;
        self.post("/moto-api/recorder/start-recording", &Value::Null)
            .await;
    }

    /// The `X-Amz-Target` header of every request recorded since [`Moto::record`], in order
    /// (`DynamoDB_20120810.BatchWriteItem`, …).
    pub async fn recorded_targets(&self) -> Vec<String> {
        self.get_text("/moto-api/recorder/download-recording")
            .await
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| {
                let entry: Value = serde_json::from_str(l).expect("recording line");
                entry["headers"]
                    .as_object()?
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
                    .and_then(|(_, v)| v.as_str().map(str::to_string))
            })
            .collect()
    }

    pub async fn count_target(&self, target: &str) -> usize {
        self.recorded_targets()
            .await
            .iter()
            .filter(|t| *t == target)
            .count()
    }

    /// Messages published to `topic_arn`, as moto stores them:
    /// `[message_id, message, subject, attributes, group_id]`.
    pub async fn published(&self, topic_arn: &str) -> Vec<Value> {
        let data = self.data().await;
        data["sns"]["Topic"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["arn"] == topic_arn)
            .flat_map(|t| {
                t["sent_notifications"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
