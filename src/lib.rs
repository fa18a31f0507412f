//! covid-etl: the daily US COVID-19 series, from two public sources to one table.
//!
//! ```text
//! extract (nyt, jhu) ──► merge on date ──► diff against the store ──► load ──► notify
//! ```
//! Each arrow is a state of `statemachine/etl.asl.json`. [`steps`] holds one function per
//! state; the Lambda binaries and the local engine ([`engine`]) both call exactly those.
//! The domain talks to the world only through [`store::Store`] and [`notify::Notifier`].

#[cfg(feature = "api")]
pub mod api;
pub mod aws;
pub mod backends;
pub mod config;
pub mod diff;
pub mod error;
pub mod execution;
pub mod extract;
pub mod functions;
pub mod lambda;
pub mod ledger;
pub mod merge;
pub mod notify;
pub mod payload;
pub mod record;
pub mod report;
pub mod schedule;
pub mod steps;
pub mod store;
#[cfg(feature = "sqlite")]
pub mod workflow;

/// The ASL interpreter, its own crate (`crates/engine`): it knows nothing of the domain.
pub use engine;
pub use error::{EtlError, Result};
pub use record::DailyRecord;
