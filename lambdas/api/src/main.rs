//! The HTTP API and the dashboard on AWS: `covid_etl::api::router` behind an API Gateway HTTP
//! API, through `lambda_http`. The same router `covid-etl serve` runs locally.
//!
//! `TABLE_NAME` selects the DynamoDB table (`Backends::from_env`; used read-only: the
//! series through `Store::series`, the executions from the run ledger), `COVID_ETL_DB` the
//! embedded database instead, for running the binary locally.
use covid_etl::backends::Backends;
use covid_etl::{api, lambda};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda::init_tracing();
    let backends = Backends::from_env().await?;
    let executions = Arc::new(api::LedgerExecutions(backends.ledger));
    lambda_http::run(api::router(backends.store, executions)).await
}

#[cfg(test)]
mod tests {
    use covid_etl::DailyRecord;
    use covid_etl::store::{MemoryStore, Store};
    use lambda_http::Service;
    use std::sync::Arc;

    /// An API Gateway HTTP API (payload 2.0) event, as the Lambda receives it.
    fn event(path: &str, query: &str) -> lambda_http::Request {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": {"accept": "application/json", "host": "abc.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc",
                "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc",
                "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "23/Nov/2026:10:00:00 +0000",
                "timeEpoch": 1795000000000_u64
            },
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).expect("an HTTP API event")
    }

    async fn call(path: &str, query: &str) -> (u16, String, serde_json::Value) {
        let db = MemoryStore::default();
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2020, 3, d).unwrap();
        db.write(&[
            DailyRecord::new(day(1), 100, 2, None),
            DailyRecord::new(day(2), 137, 2, Some(5)),
            DailyRecord::new(day(3), 170, 3, Some(6)),
        ])
        .await
        .unwrap();
        let mut app = covid_etl::api::router(
            Arc::new(db),
            Arc::new(covid_etl::api::LedgerExecutions(Arc::new(
                MemoryStore::default(),
            ))),
        );
        let response = app.call(event(path, query)).await.unwrap();
        let status = response.status().as_u16();
        let cache = response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, cache, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_router_reads_path_and_query_of_an_http_api_event() {
        let (status, cache, body) = call("/api/series", "from=2020-03-02&to=2020-03-03").await;
        assert_eq!((status, cache.as_str()), (200, "public, max-age=300"));
        assert_eq!(body["count"], 2);
        assert_eq!(body["records"][0]["newCases"], 37);

        let (status, cache, body) = call("/api/series", "from=2020-02-30").await;
        assert_eq!((status, cache.as_str()), (400, "no-store"));
        assert!(body["error"].as_str().unwrap().contains("\"2020-02-30\""));

        let (status, _, body) = call("/api/executions", "").await;
        assert_eq!(
            (status, &body["source"]),
            (200, &serde_json::json!("ledger"))
        );
    }
}
