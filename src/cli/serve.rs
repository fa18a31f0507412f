//! `covid-etl serve`: the dashboard and the HTTP API ([`covid_etl::api`]) over the embedded
//! database, the same router the `api` Lambda serves on AWS.

use super::{DbArg, Failure};
use covid_etl::api::{self, ExecutionSource};
use covid_etl::store::{SqliteDb, Store};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    db: DbArg,
    /// Address to listen on; port 0 picks a free port (the line on stderr names it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

pub(crate) async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let path = &args.db.db;
    // Serving a file that is not there would create an empty database and show nothing.
    if !path.exists() {
        return Err(Failure::Error(format!(
            "no database at {}: run `covid-etl run` first, or pass --db",
            path.display()
        )));
    }
    let db = SqliteDb::open(path)
        .map_err(|e| Failure::Error(format!("cannot open {}: {e}", path.display())))?;
    let store: Arc<dyn Store> = Arc::new(db.clone());
    let executions: Arc<dyn ExecutionSource> = Arc::new(db);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| Failure::Error(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener.local_addr()?;
    eprintln!(
        "covid-etl serve: {} on http://{local}/ (API under /api/, contract at /api/openapi.yaml)",
        path.display()
    );
    let limits = api::server::ServerLimits::default();
    api::server::serve(listener, api::router(store, executions), limits)
        .await
        .map_err(|e| Failure::Error(format!("server stopped: {e}")))
}
