//! covid-etl: the daily US COVID-19 series, from two public sources to one table.
//!
//! ```text
//! extract (nyt, jhu) ──► merge on date ──► diff against the store ──► load ──► notify
//! ```
//! Each arrow is a state of `statemachine/etl.asl.json`. [`steps`] holds one function per
//! state; the Lambda binaries and the local engine ([`engine`]) both call exactly those.
//! The domain talks to the world only through [`store::Store`] and [`notify::Notifier`].

pub mod api;
pub mod aws;
pub mod backends;
pub mod config;
pub mod diff;
pub mod engine;
pub mod error;
pub mod extract;
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
pub mod workflow;

pub use error::{EtlError, Result};
pub use record::DailyRecord;
